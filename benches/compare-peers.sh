#!/usr/bin/env bash
# Compares layerstore's import with what peer tools do with the same OCI images:
#   skopeo-cs   skopeo copy into containers-storage (overlay driver, temporary graph root)
#   umoci       umoci unpack into a runtime bundle (no store at all: the floor for "untar")
#   ostree      ostree commit of the unpacked rootfs into a bare repo (file-level dedup)
#   layerstore  $LAYERSTORE --store DIR import oci:LAYOUT:TAG
# Two scenarios, each timed with hyperfine (--warmup 0 --runs $RUNS, state cleared by --prepare):
#   single   import base-v1 into an empty store
#   update   import base-v2 into a store that already holds base-v1 (the base-v1 import
#            is part of --prepare, so only the update is timed)
#   fresh2   (opt-in, SCENARIOS) import base-v2 into an empty store: the baseline the update
#            is compared with ("update speedup" = fresh2 mean / update mean, per tool)
# and stored bytes (du -sb of each tool's store) after base-v1 and after base-v1 + base-v2.
#
# Usage (as root: containers-storage overlay, umoci unpack and ostree bare mode need it):
#   LAYERSTORE_CORPUS=/work/corpus [LAYERSTORE=target/release/layerstore] benches/compare-peers.sh
# Environment:
#   LAYERSTORE_CORPUS  corpus dir with the OCI layout in oci/ (shared/corpus/build-debian-series;
#                default /work/corpus; CORPUS, the older name, is still read)
#   LAYERSTORE   layerstore binary (default: <repo>/target/release/layerstore); if missing,
#                the layerstore rows are skipped with a note and the peers still run
#   IMAGE1/IMAGE2  tags to import (default base-v1 / base-v2)
#   RUNS         hyperfine runs per benchmark (default 3)
#   SCENARIOS    space-separated subset of: single update fresh2 (default: single update;
#                single always runs, the others need it to succeed)
#   CS_DRIVER    containers-storage driver to try first (default overlay; falls back to vfs)
#   TOOLS        space-separated subset of: skopeo-cs umoci ostree layerstore (default: all)
#   DROP_CACHES  1 = drop the page cache before every timed run (default 0: warm cache)
#   REPORT       the Markdown report (default RUN_DIR/compare-peers-FSTYPE.md, FSTYPE the
#                filesystem of WORK_PARENT, e.g. compare-peers-ext4.md; RUN_DIR is
#                benches/results/runs/DATE-MACHINE, see run_dir in benches/lib.sh)
#   IDLE_WAIT    seconds (default 0: off): before every timed run, wait at most this long for the
#                machine to be idle (benches/wait-idle.sh); the report counts the runs that
#                started busy anyway. Use it on a shared VM where other builds and tests run
#   WORK_PARENT  where the temporary stores live (default ${TMPDIR:-/var/tmp}); same
#                filesystem for every tool, so stored bytes are comparable. On a VM whose
#                disk is noisy, WORK_PARENT=/dev/shm (tmpfs) gives steadier CPU-side numbers;
#                say which one a result used (the report records the filesystem)
# Output: a table on stdout and $REPORT
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/.." && pwd)
# As in lib.sh, which the timed entry points below do not source (it would add to every timing).
CORPUS=${LAYERSTORE_CORPUS:-${CORPUS:-/work/corpus}}

# ---------------------------------------------------------------------------
# Internal entry point used by hyperfine --prepare (runs as a fresh process).
# ---------------------------------------------------------------------------
drop_caches() {
  if [ "${DROP_CACHES:-0}" = 1 ]; then
    sync
    echo 3 > /proc/sys/vm/drop_caches
  fi
}
umount_under() { # DIR: unmount everything mounted at or below DIR, deepest first
  local d=$1 m
  [ -d "$d" ] || return 0
  d=$(readlink -f "$d")
  findmnt -rn -o TARGET | awk -v d="$d" '$0 == d || index($0, d "/") == 1' | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}
cs_ref() { # TAG: containers-storage reference into the temporary graph root
  printf 'containers-storage:[%s@%s/cs/graph+%s/cs/run]localhost/%s' "$CS_DRIVER_USED" "$W" "$W" "$1"
}
skopeo_cs() { # TAG
  skopeo --policy "$W/policy.json" copy -q "oci:$CORPUS/oci:$1" "$(cs_ref "$1")"
}
reset() { # TOOL: empty store
  case $1 in
    skopeo-cs) umount_under "$W/cs"; rm -rf "$W/cs"; mkdir -p "$W/cs/graph" "$W/cs/run" ;;
    umoci) rm -rf "$W/bundle" ;;
    ostree) rm -rf "$W/repo"; ostree --repo="$W/repo" init --mode=bare ;;
    layerstore) rm -rf "$W/ls" ;;
  esac
}
import() { # TOOL TAG: the operation being measured
  case $1 in
    skopeo-cs) skopeo_cs "$2" ;;
    umoci) umoci unpack --image "$CORPUS/oci:$2" "$W/bundle" > /dev/null ;;
    ostree) ostree --repo="$W/repo" commit --branch=images --subject="$2" --tree=dir="$W/rootfs-$2" > /dev/null ;;
    layerstore) "$LAYERSTORE" --store "$W/ls" import "oci:$CORPUS/oci:$2" > /dev/null ;;
  esac
}
if [ "${1:-}" = _prepare ]; then # _prepare TOOL [TAG...]: reset, import the TAGs, drop caches
  tool=$2; shift 2
  reset "$tool"
  for tag in "$@"; do import "$tool" "$tag"; done
  sync # no writeback left over from the reset or the previous run in the timed run
  drop_caches
  if [ "${IDLE_WAIT:-0}" -gt 0 ]; then
    bash "$(dirname "$self")/wait-idle.sh" "$IDLE_WAIT" "$W/idle.log"
  fi
  exit 0
fi
if [ "${1:-}" = _import ]; then # _import TOOL TAG
  import "$2" "$3"
  exit 0
fi

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
BENCH_NAME=compare-peers
source "$(dirname "$self")/lib.sh" # exports LAYERSTORE_CORPUS for the entry points
export LAYERSTORE=${LAYERSTORE:-$repo/target/release/layerstore}
IMAGE1=${IMAGE1:-base-v1}
IMAGE2=${IMAGE2:-base-v2}
RUNS=${RUNS:-3}
CS_DRIVER=${CS_DRIVER:-overlay}
TOOLS=${TOOLS:-skopeo-cs umoci ostree layerstore}
SCENARIOS=${SCENARIOS:-single update}
export DROP_CACHES=${DROP_CACHES:-0}
export IDLE_WAIT=${IDLE_WAIT:-0}
WORK_PARENT=${WORK_PARENT:-${TMPDIR:-/var/tmp}}
work_fs=$(findmnt -n -o FSTYPE -T "$WORK_PARENT" 2> /dev/null | head -n 1)
REPORT=${REPORT:-$(run_dir)/compare-peers-${work_fs:-unknown-fs}.md}

notes=()
note() { echo "compare-peers: note: $*" >&2; notes+=("$*"); }

[ "$(id -u)" = 0 ] || die "run as root (containers-storage overlay, umoci unpack with owners, ostree bare)"
for t in hyperfine python3 findmnt du; do
  command -v "$t" > /dev/null || die "$t is required (apt-get install hyperfine python3 util-linux coreutils)"
done
[ -f "$CORPUS/oci/index.json" ] || die "no OCI layout at $CORPUS/oci: set LAYERSTORE_CORPUS to a directory built by shared/corpus/build-debian-series (benches/README.md)"
case $LAYERSTORE in /*) ;; *) LAYERSTORE=$(pwd)/$LAYERSTORE ;; esac
if [ "$DROP_CACHES" = 1 ] && ! { sync && echo 3 > /proc/sys/vm/drop_caches; } 2> /dev/null; then
  note "DROP_CACHES=1 but /proc/sys/vm/drop_caches is not writable here: running with a warm cache"
  DROP_CACHES=0
fi

W=$(mktemp -d "$WORK_PARENT/compare-peers.XXXXXX")
export W
cleanup() {
  local rc=$?
  umount_under "$W"
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Which tools can run.
enabled=()
want() { [[ " $TOOLS " == *" $1 "* ]]; }
if want skopeo-cs; then
  if command -v skopeo > /dev/null; then enabled+=(skopeo-cs); else note "skopeo not found: skopeo-cs skipped (apt-get install skopeo)"; fi
fi
if want umoci; then
  if command -v umoci > /dev/null; then enabled+=(umoci); else note "umoci not found: umoci skipped (apt-get install umoci)"; fi
fi
if want ostree; then
  if ! command -v ostree > /dev/null; then note "ostree not found: ostree skipped (apt-get install ostree)"
  elif ! command -v umoci > /dev/null; then note "ostree needs umoci to unpack the rootfs to commit: ostree skipped"
  else enabled+=(ostree); fi
fi
if want layerstore; then
  if [ -x "$LAYERSTORE" ]; then enabled+=(layerstore)
  else note "layerstore binary $LAYERSTORE not found (cargo build --release): layerstore skipped, no ratios"; fi
fi
[ ${#enabled[@]} -gt 0 ] || die "no tool to measure"

# A policy that accepts the local images, whatever /etc/containers/policy.json says, and a
# storage.conf that keeps system settings (mount_program, additional image stores) out.
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' > "$W/policy.json"
write_storage_conf() {
  printf '[storage]\ndriver = "%s"\ngraphroot = "%s/cs/graph"\nrunroot = "%s/cs/run"\n' \
    "$CS_DRIVER_USED" "$W" "$W" > "$W/storage.conf"
}
export CONTAINERS_STORAGE_CONF=$W/storage.conf
export CS_DRIVER_USED=$CS_DRIVER
write_storage_conf

# ostree commits a rootfs: unpack each image once, untimed.
if [[ " ${enabled[*]} " == *" ostree "* ]]; then
  for tag in "$IMAGE1" "$IMAGE2"; do
    umoci unpack --image "$CORPUS/oci:$tag" "$W/unpack-$tag" > /dev/null
    mv "$W/unpack-$tag/rootfs" "$W/rootfs-$tag"
    rm -rf "$W/unpack-$tag"
  done
fi

store_of() { # TOOL: the directory whose du -sb is the tool's stored bytes
  case $1 in
    skopeo-cs) echo "$W/cs/graph" ;;
    umoci) echo "$W/bundle" ;;
    ostree) echo "$W/repo" ;;
    layerstore) echo "$W/ls" ;;
  esac
}
stored_bytes() { du -sb "$(store_of "$1")" 2> /dev/null | cut -f1; }
objects_bytes() { # ostree: repo/objects only
  du -sb "$W/repo/objects" 2> /dev/null | cut -f1
}
command_text() { # TOOL TAG: what is measured, for the report
  case $1 in
    skopeo-cs) echo "skopeo copy oci:\$CORPUS/oci:$2 containers-storage:[$CS_DRIVER_USED@\$TMP/graph+\$TMP/run]localhost/$2" ;;
    umoci) echo "umoci unpack --image \$CORPUS/oci:$2 \$TMP/bundle" ;;
    ostree) echo "ostree --repo=\$TMP/repo commit --branch=images --tree=dir=\$TMP/rootfs-$2 (bare repo)" ;;
    layerstore) echo "layerstore --store \$TMP/ls import oci:\$CORPUS/oci:$2" ;;
  esac
}

records=$W/records.tsv # scenario tool status json bytes_after_1 bytes_after_2 extra command
: > "$records"
bench() { # SCENARIO TOOL TAG PREPARE_TAGS...
  local scenario=$1 tool=$2 tag=$3; shift 3
  local json=$W/$scenario-$tool.json
  local prep t
  prep="bash $(printf %q "$self") _prepare $tool"
  for t in "$@"; do prep+=" $(printf %q "$t")"; done
  echo "== $scenario: $tool ($tag)" >&2
  if hyperfine --style basic --warmup 0 --runs "$RUNS" --export-json "$json" \
    --command-name "$tool" --prepare "$prep" \
    "bash $(printf %q "$self") _import $tool $(printf %q "$tag")" >&2; then
    return 0
  fi
  # hyperfine hides the output: run it once more to say why it failed.
  local why
  why=$( { bash "$self" _prepare "$tool" "$@" && bash "$self" _import "$tool" "$tag"; } 2>&1 | tail -n 3 | tr '\n' ' ' )
  note "$tool ($scenario, $tag) failed: ${why:-no output}"
  return 1
}

run_tool() { # TOOL
  local tool=$1 ok=1 b1="" b2="" o1="" o2=""
  if ! bench single "$tool" "$IMAGE1"; then
    if [ "$tool" = skopeo-cs ] && [ "$CS_DRIVER_USED" != vfs ]; then
      note "containers-storage driver '$CS_DRIVER_USED' failed here; retrying with vfs (full copies per layer)"
      CS_DRIVER_USED=vfs; write_storage_conf
      bench single "$tool" "$IMAGE1" || ok=0
    else
      ok=0
    fi
  fi
  if [ $ok = 0 ]; then
    note "$tool failed on $IMAGE1: its rows are empty"
    printf 'single\t%s\tfailed\t\t\t\t\t%s\n' "$tool" "$(command_text "$tool" "$IMAGE1")" >> "$records"
    return 0
  fi
  # hyperfine leaves the state of its last run: the store holds IMAGE1.
  b1=$(stored_bytes "$tool"); [ "$tool" = ostree ] && o1=$(objects_bytes)
  printf 'single\t%s\tok\t%s\t%s\t\t%s\t%s\n' "$tool" "$W/single-$tool.json" "$b1" "$o1" \
    "$(command_text "$tool" "$IMAGE1")" >> "$records"
  if [[ " $SCENARIOS " == *" fresh2 "* ]]; then
    if bench fresh2 "$tool" "$IMAGE2"; then
      printf 'fresh2\t%s\tok\t%s\t%s\t\t\t%s\n' "$tool" "$W/fresh2-$tool.json" "$(stored_bytes "$tool")" \
        "$(command_text "$tool" "$IMAGE2") (empty store)" >> "$records"
    else
      printf 'fresh2\t%s\tfailed\t\t\t\t\t%s\n' "$tool" "$(command_text "$tool" "$IMAGE2")" >> "$records"
    fi
  fi
  if [ "$tool" = umoci ]; then return 0; fi # no store to update
  [[ " $SCENARIOS " == *" update "* ]] || { reset "$tool" > /dev/null 2>&1 || true; return 0; }
  if bench update "$tool" "$IMAGE2" "$IMAGE1"; then
    b2=$(stored_bytes "$tool"); [ "$tool" = ostree ] && o2=$(objects_bytes)
    printf 'update\t%s\tok\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$W/update-$tool.json" "$b1" "$b2" \
      "${o1:+$o1/$o2}" "$(command_text "$tool" "$IMAGE2") after $IMAGE1" >> "$records"
  else
    note "$tool failed on the update $IMAGE1 -> $IMAGE2"
    printf 'update\t%s\tfailed\t\t\t\t\t%s\n' "$tool" "$(command_text "$tool" "$IMAGE2")" >> "$records"
  fi
  reset "$tool" > /dev/null 2>&1 || true
}

for tool in "${enabled[@]}"; do run_tool "$tool"; done

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
out=$REPORT
mkdir -p "$(dirname "$out")"
if [ "$IDLE_WAIT" -gt 0 ] && [ -f "$W/idle.log" ]; then
  note "idle wait: $(wc -l < "$W/idle.log") timed runs, $(grep -c timeout "$W/idle.log") of them started on a busy machine (waited up to ${IDLE_WAIT}s; busy = CPU not idle over 2 s, threshold ${IDLE_BUSY:-10}%)"
fi
notes_file=$W/notes.txt
: > "$notes_file"
for n in "${notes[@]+"${notes[@]}"}"; do echo "$n" >> "$notes_file"; done
versions() {
  command -v skopeo > /dev/null && skopeo --version
  command -v umoci > /dev/null && umoci --version
  command -v ostree > /dev/null && echo "ostree $(ostree --version | awk -F"'" '/Version/ {print $2}')"
  hyperfine --version
  if [ -x "$LAYERSTORE" ]; then "$LAYERSTORE" --version 2> /dev/null || echo "layerstore (no --version)"; fi
  return 0
}
env_file=$W/env.txt
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "uname -a: $(uname -a)"
  echo "nproc: $(nproc)"
  echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "memory: $(awk '/^MemTotal/ {print $2 " kB"}' /proc/meminfo)"
  echo "store filesystem: $(findmnt -n -o FSTYPE,SOURCE,OPTIONS -T "$W" | head -n 1)" # stacked mounts list twice
  echo "corpus: $CORPUS/oci, $IMAGE1 then $IMAGE2"
  echo "layerstore: $LAYERSTORE$( [ -x "$LAYERSTORE" ] || echo ' (missing)')"
  if [ -x "$LAYERSTORE" ]; then # the binary may predate HEAD: say which one was measured
    echo "layerstore binary: sha256 $(sha256sum "$LAYERSTORE" | cut -c1-16), mtime $(date -u -r "$LAYERSTORE" '+%Y-%m-%d %H:%M:%S UTC')"
  fi
  echo "git: $(git -C "$repo" rev-parse --short HEAD 2> /dev/null || echo 'no commit') (HEAD when the report was written)"
  echo "runs: $RUNS per benchmark, warmup 0, sync before each run, page cache: $([ "$DROP_CACHES" = 1 ] && echo dropped before each run || echo warm), idle wait: $([ "$IDLE_WAIT" -gt 0 ] && echo "up to ${IDLE_WAIT}s before each run" || echo off)"
  echo "containers-storage driver: $CS_DRIVER_USED"
  versions | sed 's/^/version: /'
} > "$env_file"

python3 - "$records" "$env_file" "$notes_file" "$out" "$IMAGE1" "$IMAGE2" << 'EOF'
import json, sys
records, env_file, notes_file, out, img1, img2 = sys.argv[1:7]
rows = []
for line in open(records):
    f = line.rstrip("\n").split("\t")
    scenario, tool, status, js, b1, b2, extra, cmd = (f + [""] * 8)[:8]
    r = dict(scenario=scenario, tool=tool, status=status, cmd=cmd, b1=b1, b2=b2, extra=extra)
    if status == "ok":
        res = json.load(open(js))["results"][0]
        r.update(mean=res["mean"], stddev=res.get("stddev") or 0.0, min=res["min"], max=res["max"],
                 cpu=res.get("user", 0.0) + res.get("system", 0.0))
    rows.append(r)

def mb(b):
    return f"{int(b):,}" if b else ""

def table(scenario):
    sel = [r for r in rows if r["scenario"] == scenario]
    ls = next((r for r in sel if r["tool"] == "layerstore" and r["status"] == "ok"), None)
    lines = []
    if not sel:
        return ""
    if scenario in ("single", "fresh2"):
        lines.append(f"### Import {img1 if scenario == 'single' else img2} into an empty store")
        lines.append("")
        lines.append("| tool | mean s | ± σ | min s | max s | × layerstore | cpu s (user+sys) | stored bytes |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    else:
        lines.append(f"### Update: import {img2} into a store holding {img1} (only the update is timed)")
        lines.append("")
        lines.append(f"| tool | mean s | ± σ | min s | max s | × layerstore | cpu s (user+sys) | bytes after {img1} | bytes after both | added by {img2} |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in sel:
        if r["status"] != "ok":
            ncols = 8 if scenario in ("single", "fresh2") else 10
            lines.append(f"| {r['tool']} | failed |" + " |" * (ncols - 2))
            continue
        ratio = f"{r['mean'] / ls['mean']:.2f}" if ls else "n/a"
        t = f"| {r['tool']} | {r['mean']:.3f} | {r['stddev']:.3f} | {r['min']:.3f} | {r['max']:.3f} | {ratio} | {r['cpu']:.3f} |"
        if scenario in ("single", "fresh2"):
            t += f" {mb(r['b1'])} |"
        else:
            added = int(r["b2"]) - int(r["b1"]) if r["b1"] and r["b2"] else None
            t += f" {mb(r['b1'])} | {mb(r['b2'])} | {'' if added is None else f'{added:,}'} |"
        lines.append(t)
    lines.append("")
    lines.append("× layerstore = tool mean / layerstore mean (above 1: the peer is slower).")
    lines.append("")
    lines.append("Commands:")
    lines.append("")
    for r in sel:
        lines.append(f"- {r['tool']}: `{r['cmd']}`")
    for r in sel:
        if r["tool"] == "ostree" and r["extra"]:
            if scenario == "single":
                lines.append(f"- ostree repo/objects after {img1}: {int(r['extra']):,} bytes")
            else:
                o1, o2 = (int(x) for x in r["extra"].split("/"))
                lines.append(f"- ostree repo/objects: {o1:,} → {o2:,} bytes ({o2 - o1:,} new for {img2})")
    lines.append("")
    return "\n".join(lines)

notes = [n for n in open(notes_file).read().splitlines() if n]
md = ["# Layerstore vs peers: OCI image import", ""]
md.append("Made by `benches/compare-peers.sh`. Stored bytes are `du -sb` of each tool's store "
          "(containers-storage graph root, umoci bundle, ostree repo, layerstore store) on the same filesystem.")
md.append("")
md.append("Times are wall-clock of the import alone; each run starts after `sync`, and the writes it leaves "
          "dirty are not flushed inside the timing unless the tool syncs itself (ostree fsyncs its objects "
          "per file and calls syncfs at the end; umoci calls no sync at all; skopeo into containers-storage "
          "makes a few dozen fdatasync calls and no syncfs: checked with strace on ostree 2022.7, umoci 0.4.7, "
          "skopeo 1.9.3). Compare layerstore against each with its own durability in mind.")
md.append("")
md.append("## Machine")
md.append("")
md += ["    " + l for l in open(env_file).read().splitlines()]
md.append("")
md.append("## Results")
md.append("")
md.append(table("single"))
md.append(table("update"))
md.append(table("fresh2"))
upd = {r["tool"]: r for r in rows if r["scenario"] == "update" and r["status"] == "ok"}
fr2 = {r["tool"]: r for r in rows if r["scenario"] == "fresh2" and r["status"] == "ok"}
both = [t for t in fr2 if t in upd]
if both:
    md.append(f"### Update speedup: {img2} into an empty store vs into a store holding {img1}")
    md.append("")
    md.append("| tool | fresh s | update s | update speedup (fresh / update) | fresh cpu s | update cpu s |")
    md.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for t in both:
        f, u = fr2[t], upd[t]
        md.append(f"| {t} | {f['mean']:.3f} | {u['mean']:.3f} | {f['mean'] / u['mean']:.2f} | {f['cpu']:.3f} | {u['cpu']:.3f} |")
    md.append("")
if notes:
    md.append("## Notes")
    md.append("")
    md += [f"- {n}" for n in notes]
    md.append("")
open(out, "w").write("\n".join(md))
print("\n".join(md))
EOF
echo "compare-peers: wrote $out" >&2
