# shellcheck shell=bash
# What the whole-process benchmark scripts share (perf-drive.sh, store-config.sh). Sourced after
# the script sets BENCH_NAME (its name in messages). Gives: here, repo, the defaults of BENCH,
# L (LAYERSTORE), CORPUS, GOCI and TMPFS; die; mount_tmpfs / umount_tmpfs (a 4 GiB tmpfs at
# $TMPFS unless one is mounted there); umount_under; hf (one hyperfine benchmark, which needs
# RUNS, OUT and WAIT); machine_lines (the machine block of a report).
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
repo=$(cd "$here/.." && pwd)
BENCH=${BENCH:-/var/tmp/ls-bench}
L=${LAYERSTORE:-$BENCH/layerstore}
CORPUS=${CORPUS:-/work/corpus}
GOCI=$CORPUS/oci
TMPFS=${TMPFS:-$BENCH/tmpfs}

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }

mounted=0
mount_tmpfs() {
  if ! mountpoint -q "$TMPFS"; then mount -t tmpfs -o size=4g tmpfs "$TMPFS"; mounted=1; fi
}
umount_tmpfs() {
  if [ $mounted = 1 ]; then umount "$TMPFS" || umount -l "$TMPFS"; fi
}

umount_under() { # DIR: unmount everything at or below DIR (containers-storage overlay mounts)
  findmnt -rn -o TARGET | awk -v d="$1" '$0 == d || index($0, d "/") == 1' | sort -r |
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
