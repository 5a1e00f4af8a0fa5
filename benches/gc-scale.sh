#!/usr/bin/env bash
# gc, df and images at scale: a store with 100,000 objects (10 images of 10,000 distinct files,
# sized like a distribution: ~60% inline in the index, the rest loose files), half of them
# unreferenced after `rm` of five images. Times gc (and how long it holds the exclusive lock),
# df and images with hyperfine, and how long an import that arrives while gc holds the
# exclusive lock waits for it; writes a report (REPORT). Needs no corpus: make-many-files makes
# the images.
# Usage: benches/gc-scale.sh [WORKDIR]   (needs target/release/{layerstore,make-many-files})
#   BIN_DIR  where layerstore and make-many-files are (default <repo>/target/release); use a copy
#            (e.g. /var/tmp/ls-bench) when others rebuild target/ while this runs
#   PROBES   how many times the concurrent import is measured (default 5)
#   REPORT   the Markdown report (default RUN_DIR/gc-scale-FSTYPE.md, FSTYPE the filesystem of
#            WORKDIR, e.g. gc-scale-tmpfs.md; RUN_DIR is benches/results/runs/DATE-MACHINE, see
#            run_dir in benches/lib.sh)
#   IDLE_WAIT  before each timed gc and probe, wait up to this many seconds for an idle machine
#            (benches/wait-idle.sh; default 0: off)
set -euo pipefail
BENCH_NAME=gc-scale
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
bin=${BIN_DIR:-$repo/target/release}
work=${1:-$(mktemp -d)}
mkdir -p "$work"
REPORT=${REPORT:-$(run_dir)/gc-scale-$(findmnt -n -o FSTYPE -T "$work" | head -n 1).md}
ls=$bin/layerstore
[ -x "$ls" ] && [ -x "$bin/make-many-files" ] || { echo "build first: cargo build --release -p layerstore-cli -p layerstore-tests" >&2; exit 2; }
[ -d "$work/oci" ] || "$bin/make-many-files" "$work/oci" 10 10000
rm -rf "$work/store"
export LAYERSTORE_STORE=$work/store
t0=$(date +%s.%N)
for i in $(seq 0 9); do "$ls" -q import "oci:$work/oci:img$i"; done
t1=$(date +%s.%N)
objects=$("$ls" df --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["objects"], d["loose_objects"])')
"$ls" -q rm img5 img6 img7 img8 img9
plan=$("$ls" gc --dry-run --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["objects"], d["loose_files"])')
rm -rf "$work/store.before-gc" "$work/store.full"
cp -a "$work/store" "$work/store.before-gc"
gc_json=$(mktemp)
idle="bash $repo/benches/wait-idle.sh ${IDLE_WAIT:-0}"
hyperfine --runs 5 --prepare "rm -rf $work/store && cp -a $work/store.before-gc $work/store && sync && $idle" \
  "$ls gc" --export-json "$gc_json" >/dev/null
gc_mean=$(python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["results"][0]["mean"])' "$gc_json")
rm -rf "$work/store" && cp -a "$work/store.before-gc" "$work/store"
gc_once=$(mktemp)
"$ls" gc --json > "$gc_once"
# gc --json durations are seconds (a number); binaries before the CLI split printed {secs, nanos}:
# both are read, so the script can A/B an old binary against a new one.
read -r held unlink < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); ms=lambda k: d[k]*1000 if isinstance(d[k], (int, float)) else d[k]["secs"]*1000 + d[k]["nanos"]/1e6; print("%.1f %.1f" % (ms("lock_held"), ms("unlink")))' "$gc_once")
"$ls" fsck -q >/dev/null
# An import that arrives while gc holds the exclusive lock: `import oci:…:img0 --tag probe`
# (its layer is stored and survives gc, so the import itself is short and its wall time is
# mostly the wait). Started as soon as `flock -n -s STORE/lock` fails (gc holds it
# exclusively); "alone" is the same import on the same store without gc.
probe() { "$ls" -q import "oci:$work/oci:img0" --tag probe > /dev/null; }
ms() { python3 -c "import sys; print('%.1f' % ((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$1" "$2"; }
alone=() during=() holds=()
for i in $(seq 1 "${PROBES:-5}"); do
  rm -rf "$work/store" && cp -a "$work/store.before-gc" "$work/store"
  sync
  $idle
  p0=$(date +%s.%N); probe; p1=$(date +%s.%N); alone+=("$(ms "$p0" "$p1")")
  rm -rf "$work/store" && cp -a "$work/store.before-gc" "$work/store"
  sync
  $idle
  "$ls" gc --json > "$gc_once" &
  gc_pid=$!
  while flock -n -s "$work/store/lock" true 2> /dev/null && kill -0 "$gc_pid" 2> /dev/null; do :; done
  p0=$(date +%s.%N); probe; p1=$(date +%s.%N); during+=("$(ms "$p0" "$p1")")
  wait "$gc_pid"
  holds+=("$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); h=d["lock_held"]; print("%.1f" % (h*1000 if isinstance(h, (int, float)) else h["secs"]*1000 + h["nanos"]/1e6))' "$gc_once")")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
cp -a "$work/store.before-gc" "$work/store.full"
export LAYERSTORE_STORE=$work/store.full
stat_json=$(mktemp)
hyperfine --warmup 3 --runs 20 "$ls df" "$ls images" --export-json "$stat_json" >/dev/null
read -r df_ms images_ms < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.1f %.1f" % (r[0]["mean"]*1000, r[1]["mean"]*1000))' "$stat_json")
out=$REPORT
mkdir -p "$(dirname "$out")"
{
  echo "# gc, df and images at scale"
  echo
  echo "Made by \`benches/gc-scale.sh\`: 10 images × 10,000 distinct files (make-many-files), then \`rm\` of 5."
  echo
  echo "    date: $(date -u '+%F %T UTC')"
  echo "    uname: $(uname -srm), nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "    filesystem: $(findmnt -n -o FSTYPE,OPTIONS -T "$work")"
  echo "    layerstore: $ls sha256 $(sha256sum "$ls" | cut -c1-16)$( [ -f "$bin/GIT_HEAD" ] && echo ", built at $(cat "$bin/GIT_HEAD")"); HEAD now $(git -C "$repo" rev-parse --short HEAD)"
  echo
  echo "Commands: \`make-many-files OCI 10 10000\`, \`import oci:OCI:imgN\` for N in 0..9, \`rm img5 … img9\`; then"
  echo "\`hyperfine --runs 5 --prepare 'restore the store' 'layerstore gc'\`; one \`gc --json\` for the lock figures;"
  echo "\`hyperfine --warmup 3 --runs 20 'layerstore df' 'layerstore images'\` on the store before gc;"
  echo "${PROBES:-5} times: restore, start \`gc\`, poll \`flock -n -s STORE/lock\` until it fails, then time"
  echo "\`import oci:OCI:img0 --tag probe\` (layer already stored: the wall time is mostly the wait)."
  echo
  echo "| figure | value |"
  echo "| --- | ---: |"
  echo "| import of 10 images (100,000 files), s | $(python3 -c "print('%.1f' % ($t1 - $t0))") |"
  echo "| objects (total, loose) | $objects |"
  echo "| unreferenced after rm (objects, loose files) | $plan |"
  echo "| gc wall time, mean of 5, s | $gc_mean |"
  echo "| gc exclusive lock held, ms (one gc --json) | $held |"
  echo "| gc unlinks after releasing the lock, ms | $unlink |"
  echo "| import arriving while gc holds the lock, wall ms (median of ${#during[@]}: ${during[*]}) | $(med "${during[@]}") |"
  echo "| same import without gc, wall ms (median: ${alone[*]}) | $(med "${alone[@]}") |"
  echo "| so the import waited about, ms | $(python3 -c "print('%.0f' % ($(med "${during[@]}") - $(med "${alone[@]}")))") |"
  echo "| gc lock held in those runs, ms | ${holds[*]} |"
  echo "| df on the 100,000-object store, ms | $df_ms |"
  echo "| images on the same store, ms | $images_ms |"
} > "$out"
cat "$out"
