#!/usr/bin/env bash
# gc, df and images at scale: a store with 100,000 objects (10 images of 10,000 distinct files,
# sized like a distribution: ~60% inline in the index, the rest loose files), half of them
# unreferenced after `rm` of five images. Times gc (and how long it holds the exclusive lock),
# df and images with hyperfine; records the results in benches/results/.
# Usage: benches/gc-scale.sh [WORKDIR]   (needs target/release/{layerstore,make-many-files})
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$repo/target/release
work=${1:-$(mktemp -d)}
mkdir -p "$work"
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
hyperfine --runs 5 --prepare "rm -rf $work/store && cp -a $work/store.before-gc $work/store" \
  "$ls gc" --export-json "$gc_json" >/dev/null
gc_mean=$(python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["results"][0]["mean"])' "$gc_json")
rm -rf "$work/store" && cp -a "$work/store.before-gc" "$work/store"
held=$("$ls" gc --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f" % (d["lock_held"]["secs"]*1000 + d["lock_held"]["nanos"]/1e6))')
"$ls" fsck -q >/dev/null
cp -a "$work/store.before-gc" "$work/store.full"
export LAYERSTORE_STORE=$work/store.full
stat_json=$(mktemp)
hyperfine --warmup 3 --runs 20 "$ls df" "$ls images" --export-json "$stat_json" >/dev/null
read -r df_ms images_ms < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.1f %.1f" % (r[0]["mean"]*1000, r[1]["mean"]*1000))' "$stat_json")
out=$repo/benches/results/$(date +%F)-gc-scale.md
{
  echo "# gc, df and images at scale"
  echo
  echo "Made by \`benches/gc-scale.sh\`: 10 images × 10,000 distinct files (make-many-files), then \`rm\` of 5."
  echo
  echo "    date: $(date -u '+%F %T UTC')"
  echo "    uname: $(uname -srm), nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "    filesystem: $(findmnt -n -o FSTYPE -T "$work")"
  echo
  echo "| figure | value |"
  echo "| --- | ---: |"
  echo "| import of 10 images (100,000 files), s | $(python3 -c "print('%.1f' % ($t1 - $t0))") |"
  echo "| objects (total, loose) | $objects |"
  echo "| unreferenced after rm (objects, loose files) | $plan |"
  echo "| gc wall time, mean of 5, s | $gc_mean |"
  echo "| gc exclusive lock held, ms | $held |"
  echo "| df on the 100,000-object store, ms | $df_ms |"
  echo "| images on the same store, ms | $images_ms |"
} > "$out"
cat "$out"
