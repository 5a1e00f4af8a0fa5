#!/usr/bin/env bash
# A long read, a gc and an import on one store: does gc wait for the reader, and does the import
# queue behind that gc? The read is `export-layer` into a pipe that is drained only after
# HOLD seconds (a stand-in for a long checkout or disk); gc starts 0.2 s after it, an import of
# an image whose layer is stored 0.8 s after it. Prints when each finished, and appends the
# same lines under a heading naming the binary to REPORT (run it once per binary to compare).
# Needs no corpus.
# Usage: benches/long-read-gc.sh LAYERSTORE-BINARY STORE-TEMPLATE OCI-LAYOUT [RUNS]
#   STORE-TEMPLATE  a store to copy before each run (e.g. gc-scale.sh's WORK/store.before-gc)
#   OCI-LAYOUT      a layout holding img0 (gc-scale.sh's WORK/oci)
#   HOLD            seconds the pipe stays undrained (default 3)
#   REPORT          appended to (default RUN_DIR/long-read-gc.txt; RUN_DIR is
#                   benches/results/runs/DATE-MACHINE, see run_dir in benches/lib.sh)
set -euo pipefail
BENCH_NAME=long-read-gc
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
[ $# -ge 3 ] || die "usage: benches/long-read-gc.sh LAYERSTORE-BINARY STORE-TEMPLATE OCI-LAYOUT [RUNS]"
B=$1 TEMPLATE=$2 OCI=$3 RUNS=${4:-2} HOLD=${HOLD:-3}
REPORT=${REPORT:-$(run_dir)/long-read-gc.txt}
mkdir -p "$(dirname "$REPORT")"
echo "== $B (sha256 $(sha256sum "$B" | cut -c1-16)), $(date -u '+%F %T UTC'), template $TEMPLATE, $RUNS runs, HOLD $HOLD s" >> "$REPORT"
exec > >(tee -a "$REPORT")
W=$(mktemp -d -p "$(dirname "$TEMPLATE")")
trap 'rm -rf "$W"' EXIT
for _ in $(seq "$RUNS"); do
  rm -rf "$W/store" "$W/fifo"
  cp -a "$TEMPLATE" "$W/store"
  sync
  s=$W/store
  d=$("$B" --store "$s" refs --kind layer --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["target"])')
  mkfifo "$W/fifo"
  t0=$(date +%s.%N)
  ( sleep "$HOLD"; cat "$W/fifo" > /dev/null ) & drain=$!
  "$B" --store "$s" -q export-layer "$d" -o "$W/fifo" & ex=$!
  sleep 0.2
  "$B" --store "$s" --json gc > "$W/gc.json" & gcp=$!
  sleep 0.6
  p0=$(date +%s.%N)
  "$B" --store "$s" -q import "oci:$OCI:img0" --tag probe
  p1=$(date +%s.%N)
  wait $gcp; g1=$(date +%s.%N)
  wait $ex; e1=$(date +%s.%N)
  wait $drain
  python3 - "$t0" "$p0" "$p1" "$e1" "$g1" "$W/gc.json" <<'PY'
import json, sys
t0, p0, p1, e1, g1 = map(float, sys.argv[1:6])
d = json.load(open(sys.argv[6]))
ms = lambda k: d[k] * 1000 if isinstance(d[k], (int, float)) else d[k]["secs"] * 1000 + d[k]["nanos"] / 1e6  # seconds, or {secs, nanos} from older binaries
print(f"read done {e1 - t0:.2f} s | gc done {g1 - t0:.2f} s (lock wait {ms('lock_wait'):.0f} ms, "
      f"held {ms('lock_held'):.0f} ms) | import arriving at 0.8 s took {1000 * (p1 - p0):.0f} ms")
PY
done
