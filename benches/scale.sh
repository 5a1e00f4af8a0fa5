#!/usr/bin/env bash
# Scale on the real disk (issue 20): stores of 100,000, 300,000 and 1,000,000 objects built from
# make-many-files images (10,000 distinct files each, ~60% inline, the rest loose files), and at
# each size, in the same run:
#   - the imports that built it: wall and CPU of each, the first against the last;
#   - df, images and gc --dry-run on the full store (half of it unnamed by `rm`);
#   - gc: wall, exclusive lock held, renames and unlinks after it, beside `rm -rf` of a copy of
#     exactly the files gc removes (the floor), in paired rounds (order alternating);
#   - an import that arrives while gc runs: how long it takes, beside the same import alone.
# At the largest size it also counts the instructions (callgrind) of the first and of the last
# import of the series, and times, in paired rounds, one more image imported into the full store
# (before any rm) and into an empty one.
# Usage: benches/scale.sh WORKDIR   (WORKDIR on the disk to measure; it needs about
#   1.5 x the largest store: SHRINK 8 makes 1,000,000 objects about 5.5 GB)
#   BIN_DIR  where layerstore and make-many-files are (default <repo>/target/release); use a copy
#            (cp target/release/{layerstore,make-many-files} DIR) while others rebuild target/
#   SIZES    objects per store, multiples of 10000 (default "100000 300000 1000000")
#   SHRINK   make-many-files' SHRINK: bytes above 4 KiB divided by it (default 8; 1 is the size
#            distribution of gc-scale.sh, 216 MB an image)
#   ROUNDS   paired gc/rm -rf rounds per size (default 3; at 1,000,000 ROUNDS_1M, default 1:
#            each round there needs another copy of the 5.6 GB store)
#   CALLGRIND  1 (default) to count instructions of the first and last import at the largest size
#   PROBE_SIZES  the sizes at which an import arriving during gc is timed (default 100000)
#   PAIR_ROUNDS  rounds of the one-more-image pair at the largest size (default 4)
#   SETTLE   seconds to wait after deleting a store before building the next (default 370: ext4
#            without a journal skips inodes freed in the last 60 s, and in the last 360 s while
#            their inode-table block is dirty, which the next creates make it; 65 was too short)
#   PEER     1 (default) to time, first, a fresh import of the corpus's base-v1 against skopeo
#            into containers-storage (import-ab.sh; root, skopeo, LAYERSTORE_CORPUS), PEER_ROUNDS
#            paired rounds (default 8)
#   REPORT   the Markdown report (default RUN_DIR/scale.md, see run_dir in benches/lib.sh)
# Raw data (per-import times, gc JSON, pair samples) go to WORKDIR/out.
set -euo pipefail
BENCH_NAME=scale
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
bin=${BIN_DIR:-$repo/target/release}
work=${1:?usage: benches/scale.sh WORKDIR}
mkdir -p "$work/out"
work=$(readlink -f "$work")
out=$work/out
ls=$bin/layerstore
mmf=$bin/make-many-files
[ -x "$ls" ] && [ -x "$mmf" ] || die "build first: cargo build --release -p layerstore-cli -p layerstore-tests"
SIZES=${SIZES:-100000 300000 1000000}
SHRINK=${SHRINK:-8}
ROUNDS=${ROUNDS:-3}
REPORT=${REPORT:-$(run_dir)/scale.md}
fstype=$(findmnt -n -o FSTYPE -T "$work" | head -n 1)
max_images=0
for n in $SIZES; do [ $((n / 10000)) -gt $max_images ] && max_images=$((n / 10000)); done
probe_tag=img$max_images # one image more than the largest store uses: the probe
PAIR_ROUNDS=${PAIR_ROUNDS:-4}
# The probe, then one image per round of the one-more-image pair (img101, img102, ...).
n_images=$((max_images + PAIR_ROUNDS + 1))
if [ ! -f "$work/oci/done-$n_images-$SHRINK" ]; then
  rm -rf "$work/oci"
  "$mmf" "$work/oci" $n_images 10000 "$SHRINK"
  touch "$work/oci/done-$n_images-$SHRINK"
fi
now() { date +%s.%N; }
secs() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
# cpu_of CMD...: runs it, prints "wall user+sys" in seconds
timed() { python3 - "$@" << 'EOF'
import resource, subprocess, sys, time
r0 = resource.getrusage(resource.RUSAGE_CHILDREN); t0 = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
t1 = time.perf_counter(); r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
if p.returncode: sys.exit(p.returncode)
print("%.3f %.3f" % (t1 - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)))
EOF
}
# The loose files a gc of STORE removes: those of unnamed images' layers (make-many-files'
# images share no content), as objects/ab/cdef… paths.
doomed_files() {
  python3 - "$1" << 'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}/index.sqlite?mode=ro", uri=True)
live = """SELECT e.object FROM entries e JOIN layers l ON l.id = e.layer JOIN image_layers il
  ON il.diff_id = l.diff_id JOIN images i ON i.id = il.image JOIN refs r ON r.target = i.manifest_digest
  WHERE r.name LIKE 'image/%' AND e.object IS NOT NULL"""
for (h,) in db.execute(f"SELECT lower(hex(id)) FROM objects WHERE loose = 1 AND id NOT IN ({live})"):
    print(f"objects/{h[:2]}/{h[2:]}")
EOF
}
ms_mean() { # hyperfine JSON -> mean ms of each result
  python3 -c 'import json,sys; print(" ".join("%.1f" % (r["mean"]*1000) for r in json.load(open(sys.argv[1]))["results"]))' "$1"
}
json_get() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(str(d[k]) for k in sys.argv[2:]))' "$@"; }

rows_import=() rows_stat=() rows_gc=() rows_probe=() notes=()
# First, while nothing has been deleted on the disk yet: a fresh import of the corpus's base-v1
# against skopeo copy into containers-storage (import-ab.sh, paired rounds, fresh directories).
if [ "${PEER:-1}" = 1 ] && [ -f "$GOCI/index.json" ]; then
  rm -rf "$work/import-ab"
  VARIANTS="layerstore=$ls" ROUNDS=${PEER_ROUNDS:-8} FOUR=0 W=$work/import-ab \
    "$here/import-ab.sh" "$out/import-ab.json" > "$out/import-ab.txt" 2>&1 ||
    notes+=("import-ab.sh failed: see $out/import-ab.txt")
fi
for n in $SIZES; do
  images=$((n / 10000))
  store=$work/store-$n
  rm -rf "$store" "$work/floor" "$work/store.copy"
  # Let the inodes the last size freed age: on an ext4 without a journal, creating files next to
  # thousands deleted in the last minute costs several times the kernel time (import-ab.sh), and
  # would be charged to the first imports of this series.
  sync
  sleep "${SETTLE:-370}"
  export LAYERSTORE_STORE=$store
  : > "$out/imports-$n.txt"
  for i in $(seq 0 $((images - 1))); do
    if [ "${CALLGRIND:-1}" = 1 ] && [ "$n" = "${SIZES##* }" ] && { [ "$i" = 0 ] || [ "$i" = $((images - 1)) ]; }; then
      valgrind --tool=callgrind --callgrind-out-file="$out/callgrind-import-$n-$i.out" \
        "$ls" -q import "oci:$work/oci:img$i" 2> "$out/callgrind-import-$n-$i.log"
      echo "$i callgrind" >> "$out/imports-$n.txt"
    else
      read -r w c < <(timed "$ls" -q import "oci:$work/oci:img$i")
      echo "$i $w $c $(cut -d' ' -f1 /proc/loadavg)" >> "$out/imports-$n.txt"
    fi
  done
  "$ls" --json df > "$out/df-full-$n.json"
  read -r objects loose < <(json_get "$out/df-full-$n.json" objects loose_objects)
  rows_import+=("$(python3 - "$out/imports-$n.txt" "$n" "$objects" "$loose" << 'EOF'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
t = [(int(r[0]), float(r[1]), float(r[2])) for r in rows if r[1] != "callgrind"]
k = min(5, len(t) // 2) or 1
first, last = t[:k], t[-k:]
fw, lw = st.median(x[1] for x in first), st.median(x[1] for x in last)
fc, lc = st.median(x[2] for x in first), st.median(x[2] for x in last)
print(f"| {int(sys.argv[2]):,} | {int(sys.argv[3]):,} ({int(sys.argv[4]):,} loose) | {len(rows)} | "
      f"{fw:.2f} / {fc:.2f} (imports {first[0][0]+1}-{first[-1][0]+1}) | {lw:.2f} / {lc:.2f} (imports {last[0][0]+1}-{last[-1][0]+1}) | {lw/fw:.2f} / {lc/fc:.2f} |")
EOF
)")
  if [ "$n" = "${SIZES##* }" ]; then
    # One more image into the full store (every image named) and the same image into a new
    # empty one, paired rounds: round r imports img(max_images + 1 + r) into each. Nothing is
    # deleted between samples (after an rm -rf or a gc, ext4 without a journal makes file
    # creation in those block groups several times slower for minutes: see import-ab.sh).
    cat > "$out/pair-import-spec.json" << EOF
{"variants": [
 {"name": "empty", "prepare": "true", "cmd": "i=\$(($max_images + 1 + {r})); LAYERSTORE_STORE=$work/empty-{r} $ls -q import oci:$work/oci:img\$i"},
 {"name": "full", "prepare": "true", "cmd": "i=\$(($max_images + 1 + {r})); LAYERSTORE_STORE=$store $ls -q import oci:$work/oci:img\$i"}
], "order": "rotate"}
EOF
    python3 "$repo/benches/pair.py" "$out/pair-import.json" "$PAIR_ROUNDS" \
      "$out/pair-import-spec.json" > "$out/pair-import.txt" 2>&1 || notes+=("pair-import failed")
    rm -rf "$work"/empty-*
  fi
  # Half the images unnamed: what gc will collect.
  "$ls" -q rm $(seq -f 'img%g' $((images / 2)) $((images - 1)))
  hyperfine -N --style basic --warmup 2 --runs 10 --export-json "$out/stat-$n.json" \
    "$ls df" "$ls images" "$ls gc --dry-run" > "$out/stat-$n.log" 2>&1
  read -r df_ms images_ms plan_ms < <(ms_mean "$out/stat-$n.json")
  rows_stat+=("| $(printf "%'d" "$n") | $df_ms | $images_ms | $plan_ms |")
  rounds=$ROUNDS
  [ "$n" -ge 1000000 ] && rounds=${ROUNDS_1M:-1}
  [ "$rounds" -gt 1 ] && cp -a "$store" "$work/store.copy"
  doomed_files "$store" > "$out/doomed-$n.txt"
  ndoomed=$(wc -l < "$out/doomed-$n.txt")
  : > "$out/gc-pairs-$n.txt"
  for r in $(seq 1 "$rounds"); do
    if [ "$r" -gt 1 ]; then rm -rf "$store" && cp -a "$work/store.copy" "$store"; fi
    rm -rf "$work/floor" && mkdir -p "$work/floor"
    tar -C "$store" -cf - -T "$out/doomed-$n.txt" | tar -C "$work/floor" -xf -
    sync
    gc_once() { read -r gw gc < <(timed sh -c "'$ls' --json gc > '$out/gc-$n-$r.json'" || echo "0 0"); }
    rm_once() { read -r rw rc < <(timed rm -rf "$work/floor"); }
    if [ $((r % 2)) = 1 ]; then gc_once; sync; rm_once; else rm_once; sync; gc_once; fi
    # A failed gc (e.g. a full disk) is a note in the report, not the end of the run.
    read -r held renames unlink loose_removed < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.1f %.1f %.1f %d" % (d["lock_held"]*1000, d.get("renames", 0)*1000, d["unlink"]*1000, d["removed"]["loose_files"]))' "$out/gc-$n-$r.json" 2> /dev/null || echo "failed failed failed 0")
    [ "$held" = failed ] && notes+=("gc at $n, round $r failed: see $out/gc-$n-$r.json")
    echo "$r $gw $gc $rw $rc $held $renames $unlink $loose_removed $ndoomed $(cut -d' ' -f1 /proc/loadavg)" >> "$out/gc-pairs-$n.txt"
    rows_gc+=("| $(printf "%'d" "$n") | $r | $loose_removed ($ndoomed copied) | $gw | $rw | $(python3 -c "print('%.2f' % ($gw / $rw))" 2> /dev/null) | $held | $renames | $unlink |")
  done
  "$ls" -q fsck > /dev/null || notes+=("fsck after gc at $n found problems")
  # An import arriving while gc runs, beside the same import alone (both of the probe image
  # into the store as it was before gc; the copy at sizes with several rounds).
  if [[ " ${PROBE_SIZES:-100000} " == *" $n "* ]] && [ "$rounds" -gt 1 ]; then
    for r in 1 2; do
      rm -rf "$store" && cp -a "$work/store.copy" "$store" && sync
      read -r alone _ < <(timed "$ls" -q import "oci:$work/oci:$probe_tag")
      rm -rf "$store" && cp -a "$work/store.copy" "$store" && sync
      "$ls" --json gc > "$out/gc-probe-$n-$r.json" &
      gc_pid=$!
      while flock -n -s "$store/lock" true 2> /dev/null && kill -0 "$gc_pid" 2> /dev/null; do :; done
      read -r during _ < <(timed "$ls" -q import "oci:$work/oci:$probe_tag")
      wait "$gc_pid"
      held=$(python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["lock_held"]*1000))' "$out/gc-probe-$n-$r.json")
      rows_probe+=("| $(printf "%'d" "$n") | $r | $alone | $during | $held |")
    done
  fi
  rm -rf "$store" "$work/store.copy" "$work/floor"
done

callgrind_line=""
for f in "$out"/callgrind-import-*-0.out; do
  [ -f "$f" ] || continue
  last=$(ls "$out"/callgrind-import-*.out | grep -v -- '-0.out$' | head -n 1)
  ir() { awk '/^summary:/ {print $2}' "$1"; }
  a=$(ir "$f") b=$(ir "$last")
  callgrind_line="instructions (callgrind, whole process): first import $(printf "%'d" "$a"), last import $(printf "%'d" "$b"): ratio $(python3 -c "print('%.3f' % ($b / $a))")"
done

mkdir -p "$(dirname "$REPORT")"
{
  echo "# Scale: gc, df, images and imports at 100k-1M objects (benches/scale.sh)"
  echo
  machine_lines
  echo "filesystem: $fstype ($(findmnt -n -o SOURCE,OPTIONS -T "$work" | head -n 1))"
  echo "binary: $ls (sha256 $(sha256sum "$ls" | cut -c1-12), commit $(cat "$bin/GIT_HEAD" 2>/dev/null || git -C "$repo" rev-parse --short HEAD))"
  echo "images: make-many-files OUT $((max_images + 1)) 10000 $SHRINK; load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  if [ -f "$out/import-ab.txt" ]; then
    echo "## Fresh import of base-v1 against skopeo copy into containers-storage (import-ab.sh)"
    echo
    grep -E '^\|' "$out/import-ab.txt" || true
    grep '^load1' "$out/import-ab.txt" || true
    echo
  fi
  echo "## Imports of the series (wall / CPU s, medians)"
  echo
  echo "| store | objects | imports | first | last | last/first |"
  echo "| --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows_import[@]}"
  echo
  [ -n "$callgrind_line" ] && echo "$callgrind_line" && echo
  if [ -f "$out/pair-import.txt" ]; then
    echo "One more image into the full store vs the same image into an empty store (pair.py, $PAIR_ROUNDS rounds):"
    echo; echo '```'; tail -n 4 "$out/pair-import.txt"; echo '```'; echo
  fi
  echo "## df, images, gc --dry-run (hyperfine, 10 runs, mean ms; half the images unnamed)"
  echo
  echo "| objects | df | images | gc --dry-run |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${rows_stat[@]}"
  echo
  echo "## gc against rm -rf of the same files (paired rounds, order alternating)"
  echo
  echo "| objects | round | loose files removed | gc wall s | rm -rf s | gc / rm -rf | lock held ms | renames after it ms | unlinks ms |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows_gc[@]}"
  echo
  if [ ${#rows_probe[@]} -gt 0 ]; then
    echo "## An import arriving during gc (s)"
    echo
    echo "| objects | round | import alone | import during gc | gc lock held ms |"
    echo "| --- | --- | --- | --- | --- |"
    printf '%s\n' "${rows_probe[@]}"
    echo
  fi
  for note in "${notes[@]}"; do echo "- $note"; done
} > "$REPORT"
echo "report: $REPORT"
