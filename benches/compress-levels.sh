#!/usr/bin/env bash
# Space and import time of the 4 main corpus images (base-v1, app-v1, base-v2, app-v2) in a
# plain store and in compressed stores at several zstd levels, on tmpfs; writes a table to
# REPORT. Compare with the 80 MB goal of issue 6 (restic 79 MB, casync 110 MB).
# Usage: benches/compress-levels.sh [LEVEL...]   (default levels: 3 6 9)
#   LAYERSTORE_CORPUS  the corpus dir (default /work/corpus; OCI layout in oci/), see benches/README.md
#   LAYERSTORE  binary (default <repo>/target/release/layerstore)
#   WORK        tmpfs work dir (default /dev/shm/ls-compress-levels)
#   REPORT      the Markdown report (default RUN_DIR/compress-levels.md; RUN_DIR is
#               benches/results/runs/DATE-MACHINE, see run_dir in benches/lib.sh)
set -euo pipefail
BENCH_NAME=compress-levels
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
L=${LAYERSTORE:-$repo/target/release/layerstore}
need_corpus
WORK=${WORK:-/dev/shm/ls-compress-levels}
REPORT=${REPORT:-$(run_dir)/compress-levels.md}
levels=("$@")
[ ${#levels[@]} -gt 0 ] || levels=(3 6 9)
rm -rf "$WORK"; mkdir -p "$WORK"
rows=()
for cfg in plain "${levels[@]}"; do
  s=$WORK/$cfg
  if [ "$cfg" = plain ]; then "$L" --store "$s" init > /dev/null; else "$L" --store "$s" init --compress="$cfg" > /dev/null; fi
  t0=$(date +%s.%N)
  for t in base-v1 app-v1 base-v2 app-v2; do "$L" -q --store "$s" import "oci:$GOCI:$t" > /dev/null; done
  t1=$(date +%s.%N)
  apparent=$(du -s --apparent-size -B1 "$s" | cut -f1)
  allocated=$(du -s -B1 "$s" | cut -f1)
  files=$(find "$s/objects" -type f | wc -l)
  index=$(stat -c %s "$s/index.sqlite")
  rows+=("$(python3 -c 'import sys; c,t0,t1,a,b,f,i=sys.argv[1:]; print(f"| {c} | {float(t1)-float(t0):.2f} | {int(a)/1e6:.1f} | {int(b)/1e6:.1f} | {f} | {int(i)/1e6:.1f} |")' "$cfg" "$t0" "$t1" "$apparent" "$allocated" "$files" "$index")")
  rm -rf "$s"
done
out=$REPORT
mkdir -p "$(dirname "$out")"
{
  echo "# Compression levels: the 4 main corpus images"
  echo
  echo "Made by \`benches/compress-levels.sh\`: \`init [--compress=LEVEL]\`, then \`import\` of base-v1, app-v1,"
  echo "base-v2 and app-v2 (gzip OCI layout), one after the other, on tmpfs. MB = 10^6 bytes."
  echo
  echo "    date: $(date -u '+%F %T UTC')"
  echo "    uname: $(uname -srm), nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "    layerstore: $L sha256 $(sha256sum "$L" | cut -c1-16); HEAD $(git -C "$repo" rev-parse --short HEAD)"
  echo "    corpus: $GOCI"
  echo
  echo "| store | import of the 4 images, s | apparent MB | allocated MB | object files | index MB |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  printf '%s\n' "${rows[@]}"
} > "$out"
cat "$out"
