#!/usr/bin/env bash
# Import figures of one layerstore binary, no peers: a fresh base-v1 from the three source
# transports, an update, space of the 4 main images, concurrent imports, a callgrind count,
# checkout against umoci and ostree, max RSS, df/images/fsck times (sections a-h below).
# Writes a transcript (REPORT) in which every measured command is echoed with a "$ " prefix;
# a summary of it is written by hand.
#
# Usage (as root): LAYERSTORE_CORPUS=/work/corpus LAYERSTORE=/tmp/layerstore-bench OUT=/tmp/if-out \
#                  benches/import-figures.sh [SECTION...]
#   SECTION: a b c d e f g h (default: all). Stores live in $EXT4_DIR (default /var/tmp/import-figures)
#   and $TMPFS_DIR (default /dev/shm/import-figures); both are removed at the end.
#   LAYERSTORE_CORPUS: the corpus dir (default /work/corpus; OCI layout in oci/), see benches/README.md.
#   ARCHIVES: oci-archive and docker-archive copies of base-v1 and app-v1 for sections a and g
#   (default $LAYERSTORE_CORPUS/archives if it exists, else $OUT/archives); the missing ones are
#   made with skopeo, untimed.
#   REPORT: the transcript (default RUN_DIR/import-figures.txt; RUN_DIR is
#   benches/results/runs/DATE-MACHINE, see run_dir in benches/lib.sh).
#   RUNS (default 5) hyperfine runs; hyperfine JSON goes to $OUT/*.json.
#   Before each timed run the script waits (QUIET_WAIT, default 600 s at most) until the
#   machine is idle (benches/wait-idle.sh) and prints how busy it was: on a shared 2-CPU VM a
#   neighbour's cargo build or test suite doubles the wall times.
set -euo pipefail
BENCH_NAME=import-figures
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
need_corpus
L=${LAYERSTORE:-/tmp/layerstore-bench}
OUT=${OUT:-/tmp/import-figures-out}
ARCHIVES=${ARCHIVES:-$([ -d "$CORPUS/archives" ] && echo "$CORPUS/archives" || echo "$OUT/archives")}
REPORT=${REPORT:-$(run_dir)/import-figures.txt}
RUNS=${RUNS:-5}
EXT4_DIR=${EXT4_DIR:-/var/tmp/import-figures}
TMPFS_DIR=${TMPFS_DIR:-/dev/shm/import-figures}
SECTIONS=${*:-a b c d e f g h}
mkdir -p "$OUT" "$EXT4_DIR" "$TMPFS_DIR"
touch "$OUT/idle.log"
WAIT_IDLE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/wait-idle.sh
cleanup() { rm -rf "$EXT4_DIR" "$TMPFS_DIR"; }
trap cleanup EXIT

declare -A FS=([ext4]=$EXT4_DIR [tmpfs]=$TMPFS_DIR)
declare -A SRC=(
  [oci]="oci:$CORPUS/oci:base-v1"
  [oci-archive]="oci-archive:$ARCHIVES/base-v1.oci.tar"
  [docker-archive]="docker-archive:$ARCHIVES/base-v1.docker.tar"
)
run() { echo "\$ $*" >&2; "$@"; }
wait_quiet() { # before a /usr/bin/time run: benches/wait-idle.sh, then say how busy the machine was
  bash "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/wait-idle.sh" "${QUIET_WAIT:-600}" "$OUT/idle.log"
  echo "($(tail -n 1 "$OUT/idle.log"))"
}
hf() { # NAME PREPARE COMMAND [HYPERFINE_OPTION...]: default --runs $RUNS --warmup 0
  local name=$1 prep=$2 cmd=$3; shift 3
  local before; before=$(wc -l < "$OUT/idle.log")
  echo "\$ hyperfine --runs $RUNS --warmup 0 $* --prepare '$prep' '$cmd'"
  hyperfine --style basic --runs "$RUNS" --warmup 0 "$@" --export-json "$OUT/$name.json" -n "$name" \
    --prepare "$prep; bash $WAIT_IDLE ${QUIET_WAIT:-600} $OUT/idle.log" "$cmd"
  echo "(idle wait before each run: $(tail -n +$((before + 1)) "$OUT/idle.log" | awk '{print $2}' | tr '\n' ' ')$(tail -n +$((before + 1)) "$OUT/idle.log" | grep -c timeout) started busy)"
}
rss() { # LABEL COMMAND...: max RSS in kB and wall, from /usr/bin/time -v
  local label=$1; shift
  wait_quiet
  echo "\$ /usr/bin/time -v $*"
  /usr/bin/time -v -o "$OUT/time-$label.txt" "$@" > /dev/null
  echo "RSS $label: $(awk -F': ' '/Maximum resident/ {print $2}' "$OUT/time-$label.txt") kB," \
    "wall $(awk -F': ' '/Elapsed/ {print $2}' "$OUT/time-$label.txt")," \
    "user $(awk -F': ' '/User time/ {print $2}' "$OUT/time-$label.txt") s, sys $(awk -F': ' '/System time/ {print $2}' "$OUT/time-$label.txt") s"
}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
if want a || want g; then
  printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' > "$OUT/policy.json"
  mkdir -p "$ARCHIVES"
  for t in base-v1 app-v1; do
    [ -f "$ARCHIVES/$t.oci.tar" ] ||
      skopeo --policy "$OUT/policy.json" copy -q "oci:$GOCI:$t" "oci-archive:$ARCHIVES/$t.oci.tar:$t"
    [ -f "$ARCHIVES/$t.docker.tar" ] ||
      skopeo --policy "$OUT/policy.json" copy -q "oci:$GOCI:$t" "docker-archive:$ARCHIVES/$t.docker.tar:$t:latest"
  done
fi
mkdir -p "$(dirname "$REPORT")"
exec > >(tee "$REPORT") 2>&1
echo "corpus: $GOCI; archives: $ARCHIVES"

echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "uname -a: $(uname -a)"
echo "nproc: $(nproc)"
echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
for fs in ext4 tmpfs; do echo "$fs dir ${FS[$fs]}: $(findmnt -n -o FSTYPE,SOURCE,OPTIONS -T "${FS[$fs]}" | head -n 1)"; done
echo "layerstore: $L sha256 $(sha256sum "$L" | cut -c1-16), $("$L" --version)"

if want a; then
  echo "=== a. fresh import of base-v1"
  for fs in tmpfs ext4; do
    d=${FS[$fs]}
    for s in oci oci-archive docker-archive; do
      hf "a-$fs-$s" "rm -rf $d/s; sync" "$L --store $d/s import ${SRC[$s]}"
    done
  done
  for fs in tmpfs ext4; do
    d=${FS[$fs]}
    for s in oci oci-archive docker-archive; do
      for i in 1 2 3; do rm -rf "$d/s"; sync; rss "a-$fs-$s-$i" "$L" --store "$d/s" import "${SRC[$s]}"; done
    done
  done
  rm -rf "$TMPFS_DIR/s"
  echo "--- syscalls of one fresh oci import on ext4 (strace -c -f)"
  rm -rf "$EXT4_DIR/s"; sync
  strace -c -f -o "$OUT/strace-a-ext4.txt" "$L" --store "$EXT4_DIR/s" import "${SRC[oci]}" > /dev/null
  head -n 25 "$OUT/strace-a-ext4.txt"
  rm -rf "$EXT4_DIR/s"
fi

if want b; then
  echo "=== b. update import base-v2 into a store holding base-v1"
  for fs in tmpfs ext4; do
    d=${FS[$fs]}
    hf "b-$fs" "rm -rf $d/s; $L --store $d/s import oci:$CORPUS/oci:base-v1 >/dev/null; sync" \
      "$L --store $d/s import oci:$CORPUS/oci:base-v2"
    rm -rf "$d/s"
    run "$L" --store "$d/s" import "oci:$CORPUS/oci:base-v1" > /dev/null
    sync
    echo "before: df $("$L" --store "$d/s" --json df | jq -c '{stored_bytes,object_bytes,loose_bytes,index_bytes,objects,loose_objects}')"
    echo "before: du -sb objects $(du -sb "$d/s/objects" | cut -f1), du -sb store $(du -sb "$d/s" | cut -f1)"
    echo "\$ $L --store $d/s --json import oci:$CORPUS/oci:base-v2"
    "$L" --store "$d/s" --json import "oci:$CORPUS/oci:base-v2" | tee "$OUT/b-$fs-import.json"
    echo
    echo "after: df $("$L" --store "$d/s" --json df | jq -c '{stored_bytes,object_bytes,loose_bytes,index_bytes,objects,loose_objects}')"
    echo "after: du -sb objects $(du -sb "$d/s/objects" | cut -f1), du -sb store $(du -sb "$d/s" | cut -f1)"
    rm -rf "$d/s"
  done
fi

if want c || want h; then
  echo "=== c. base-v1, app-v1, base-v2, app-v2 into one store"
  for fs in tmpfs ext4; do
    d=${FS[$fs]}
    rm -rf "$d/c"
    for t in base-v1 app-v1 base-v2 app-v2; do run "$L" --store "$d/c" import "oci:$CORPUS/oci:$t"; done
    sync
    run "$L" --store "$d/c" --json df | tee "$OUT/c-$fs-df.json" | jq -c '{logical_bytes,stored_bytes,object_bytes,loose_bytes,index_bytes,objects,loose_objects,inline_objects,dedup_ratio}'
    for p in "$d/c" "$d/c/objects" "$d/c/index.sqlite"; do run du -sb "$p"; done # one du each: du counts a dir once
    run du -s --block-size=1 "$d/c"
    run "$L" --store "$d/c" fsck
    if want h; then
      echo "=== h. df and images on that store ($fs)"
      hf "h-$fs-df" "true" "$L --store $d/c df" -N --warmup 1 --runs 10
      hf "h-$fs-df-json" "true" "$L --store $d/c --json df" -N --warmup 1 --runs 10
      hf "h-$fs-images" "true" "$L --store $d/c images" -N --warmup 1 --runs 10
      hf "h-$fs-fsck" "true" "$L --store $d/c fsck" -N --warmup 1 --runs 5
    fi
    rm -rf "$d/c"
  done
fi

if want d; then
  echo "=== d. two imports (base-v1, base-v2) into two empty stores: sequential vs concurrent"
  for fs in tmpfs ext4; do
    d=${FS[$fs]}
    prep="rm -rf $d/p1 $d/p2; sync"
    hf "d-$fs-seq" "$prep" "$L --store $d/p1 import oci:$CORPUS/oci:base-v1 && $L --store $d/p2 import oci:$CORPUS/oci:base-v2"
    hf "d-$fs-par" "$prep" "$L --store $d/p1 import oci:$CORPUS/oci:base-v1 & $L --store $d/p2 import oci:$CORPUS/oci:base-v2 & wait"
    rm -rf "$d/p1" "$d/p2"
  done
fi

if want e; then
  echo "=== e. instruction count of one base-v1 import (perf has no hardware counters here: callgrind)"
  d=$TMPFS_DIR
  rm -rf "$d/s"
  echo "\$ timeout 600 valgrind --tool=callgrind --callgrind-out-file=$OUT/callgrind.out $L --store $d/s import oci:$CORPUS/oci:base-v1"
  if /usr/bin/time -f 'callgrind wall %e s' timeout 600 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
    "$L" --store "$d/s" import "oci:$CORPUS/oci:base-v1" > /dev/null 2> "$OUT/callgrind.err"; then
    tail -n 5 "$OUT/callgrind.err"
    callgrind_annotate "$OUT/callgrind.out" 2> /dev/null | head -n 40 > "$OUT/callgrind-top.txt" || true
    head -n 40 "$OUT/callgrind-top.txt"
  else
    echo "callgrind failed or took more than 10 minutes:"; tail -n 5 "$OUT/callgrind.err"
  fi
  rm -rf "$d/s"
fi

if want f; then
  echo "=== f. checkout app-v2"
  for fs in tmpfs ext4; do
    d=${FS[$fs]}
    rm -rf "$d/f" "$d/unpack" "$d/repo"
    run "$L" --store "$d/f" import "oci:$CORPUS/oci:app-v2" > /dev/null
    run umoci unpack --image "$CORPUS/oci:app-v2" "$d/unpack" > /dev/null
    run ostree --repo="$d/repo" init --mode=bare
    run ostree --repo="$d/repo" commit --branch=x --tree=dir="$d/unpack/rootfs" > /dev/null
    sync
    hf "f-$fs-ls-hardlink" "rm -rf $d/dest; sync" "$L --store $d/f checkout app-v2 $d/dest --mode hardlink"
    hf "f-$fs-ls-copy" "rm -rf $d/dest; sync" "$L --store $d/f checkout app-v2 $d/dest --mode copy"
    hf "f-$fs-umoci" "rm -rf $d/dest; sync" "umoci unpack --image $CORPUS/oci:app-v2 $d/dest"
    hf "f-$fs-ostree-H" "rm -rf $d/dest; sync" "ostree --repo=$d/repo checkout -H x $d/dest"
    hf "f-$fs-ostree-copy" "rm -rf $d/dest; sync" "ostree --repo=$d/repo checkout --force-copy x $d/dest"
    echo "--- sanity: layerstore checkouts vs the umoci rootfs (content, mode, owner, symlinks)"
    for m in hardlink copy; do
      rm -rf "$d/dest"; "$L" --store "$d/f" checkout app-v2 "$d/dest" --mode "$m" > /dev/null
      echo "$m: $(rsync -rlpgoDcn --delete --itemize-changes "$d/unpack/rootfs/" "$d/dest/" | wc -l) differing entries (rsync -rlpgoDcn)"
      rsync -rlpgoDcn --delete --itemize-changes "$d/unpack/rootfs/" "$d/dest/" | head -n 10
    done
    run "$L" --store "$d/f" fsck
    rm -rf "$d/f" "$d/unpack" "$d/repo" "$d/dest"
  done
fi

if want g; then
  echo "=== g. max RSS importing app-v1"
  for s in "oci:$CORPUS/oci:app-v1" "oci-archive:$ARCHIVES/app-v1.oci.tar" "docker-archive:$ARCHIVES/app-v1.docker.tar"; do
    for i in 1 2 3; do rm -rf "$TMPFS_DIR/s"; rss "g-${s%%:*}-$i" "$L" --store "$TMPFS_DIR/s" import "$s"; done
  done
  echo "--- app-v1 into a store already holding base-v1"
  rm -rf "$TMPFS_DIR/s"; "$L" --store "$TMPFS_DIR/s" import "oci:$CORPUS/oci:base-v1" > /dev/null
  rss "g-oci-after-base" "$L" --store "$TMPFS_DIR/s" import "oci:$CORPUS/oci:app-v1"
  rm -rf "$TMPFS_DIR/s"
fi
