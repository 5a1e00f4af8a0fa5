# shellcheck shell=bash
# What the benchmark scripts share. Sourced (after the script sets BENCH_NAME, its name in
# messages). Gives: here, repo; CORPUS (see below); the defaults of BENCH, L (LAYERSTORE), GOCI
# and TMPFS used by perf-drive.sh and store-config.sh; die; run_dir (where reports go);
# mount_tmpfs / umount_tmpfs (a 4 GiB tmpfs at $TMPFS unless one is mounted there); umount_under;
# hf (one hyperfine benchmark, which needs RUNS, OUT and WAIT); machine_lines (the machine block
# of a report).
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
repo=$(cd "$here/.." && pwd)
BENCH=${BENCH:-/var/tmp/ls-bench}
L=${LAYERSTORE:-$BENCH/layerstore}
# The corpus: the directory shared/corpus/build-debian-series made (its OCI layout is oci/).
# Named by LAYERSTORE_CORPUS, as for the corpus test tier; CORPUS, the scripts' older name, is
# still read. Exported so scripts run by scripts see the same one.
CORPUS=${LAYERSTORE_CORPUS:-${CORPUS:-/work/corpus}}
export LAYERSTORE_CORPUS=$CORPUS
GOCI=$CORPUS/oci
TMPFS=${TMPFS:-$BENCH/tmpfs}

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
need_corpus() { # die unless $GOCI is an OCI layout
  [ -f "$GOCI/index.json" ] ||
    die "no OCI layout at $GOCI: set LAYERSTORE_CORPUS to a directory built by shared/corpus/build-debian-series (benches/README.md)"
}

mounted=0
mount_tmpfs() {
  if ! mountpoint -q "$TMPFS"; then mount -t tmpfs -o size=4g tmpfs "$TMPFS"; mounted=1; fi
}
umount_tmpfs() {
  if [ $mounted = 1 ]; then umount "$TMPFS" || umount -l "$TMPFS"; fi
}

umount_under() { # DIR: unmount everything at or below DIR, deepest first (containers-storage overlay mounts)
  local d=$1 m
  [ -d "$d" ] || return 0
  d=$(readlink -f "$d")
  findmnt -rn -o TARGET | awk -v d="$d" '$0 == d || index($0, d "/") == 1' | sort -r |
    while read -r m; do umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null || true; done
}

# Never pass -N (--shell=none) here: hyperfine then also splits --prepare into words without a
# shell, and "rm -rf DIR; sync; bash wait-idle.sh ..." would remove every word as a path.
hf() { # KEY PREPARE [HYPERFINE_ARGS...] COMMAND: one benchmark -> $OUT/KEY.json
  local key=$1 prep=$2; shift 2
  echo "== $key: ${*: -1}" >&2
  local style=(--style basic)
  [ -z "${HF_DEBUG:-}" ] || style=(--show-output) # HF_DEBUG=1: see what the commands print
  if ! hyperfine "${style[@]}" --warmup 0 --runs "$RUNS" --export-json "$OUT/$key.json" -n "$key" \
    --prepare "$prep; sync; $WAIT $OUT/idle-$key.log" "$@" >&2; then
    echo "$BENCH_NAME: $key failed; once more with its output:" >&2
    sh -c "$prep" >&2 && sh -c "${*: -1}" >&2
    die "$key failed"
  fi
}

machine_lines() { # the machine block every report starts with
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "cpu: $(lscpu | awk -F': *' '/^Model name/ {print $2; exit}'), nproc $(nproc), $(lscpu | awk -F': *' '/^Hypervisor vendor/ {print "hypervisor " $2}')"
  echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "kernel: $(uname -srm)"
}

# A short name for this machine, for the run directory: hypervisor (if any), CPU model, cores,
# e.g. kvm-epyc-2core, or ryzen-9-5950x-32core on bare metal.
machine_slug() {
  local hv cpu
  hv=$(lscpu | awk -F': *' '/^Hypervisor vendor/ {print tolower($2); exit}')
  cpu=$(lscpu | awk -F': *' '/^Model name/ {print tolower($2); exit}' |
    sed -E 's/\((r|tm)\)//g; s/@.*//; s/\b(amd|intel|cpu|processor|[0-9]+-core|with .*)\b//g' |
    tr -cs 'a-z0-9' '-' | sed -E 's/^-+//; s/-+$//')
  echo "${hv:+$hv-}${cpu:-cpu}-$(nproc)core"
}

# Where a run's reports go: benches/results/runs/DATE-MACHINE/ (UTC date of today). Override the
# whole directory with BENCH_RUN_DIR, or its parts with BENCH_DATE and BENCH_MACHINE (e.g. to add
# a report to an earlier run of the same machine). The scripts create it when they write.
run_dir() {
  echo "${BENCH_RUN_DIR:-$repo/benches/results/runs/${BENCH_DATE:-$(date -u +%F)}-${BENCH_MACHINE:-$(machine_slug)}}"
}
