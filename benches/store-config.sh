#!/usr/bin/env bash
# Store configuration sweep: inline threshold and per-object zstd compression, on the four
# images base-v1, app-v1, base-v2, app-v2 imported in that order into a fresh store per config.
# Configs (CONFIGS, default all 12): t0 t64 t512 t4096 t16384 (layerstore init --inline-threshold
# T), each also with --compress (level 3, suffix z3), and t4096z9, t4096z19 (--compress=9, =19).
# Per config:
#   disk pass (DISK_DIR, default /var/tmp/store-config: the real ext4, for allocated bytes):
#     one import of the four images (wall), then du -sb (apparent), du -s --block-size=1
#     (allocated), find | wc -l (inodes), layerstore df --json (stored figures)
#   tmpfs pass (TMPFS, times without disk noise): hyperfine --runs $RUNS of the four imports
#     into a fresh store, and of `checkout app-v2 DEST --mode hardlink` (--prepare rm -rf DEST)
# Peers in the same run, same four images, same filesystems:
#   ostree     commit of umoci's rootfs of each image into one repo, mode bare-user (uncompressed
#              objects, like layerstore without --compress) and archive (zlib per object, like
#              --compress); checkout -U -H app-v2 from the bare-user repo as the hardlink peer
#   skopeo-cs  skopeo copy of the four images into containers-storage (overlay)
# The umoci unpacks the ostree commits need are made once, untimed, on the tmpfs.
#
# Usage (as root): benches/store-config.sh
#   LAYERSTORE_CORPUS (the corpus dir, default /work/corpus; see benches/README.md),
#   BENCH (default /var/tmp/ls-bench), LAYERSTORE (default $BENCH/layerstore), DISK_DIR, TMPFS (default $BENCH/tmpfs; a 4 GiB tmpfs is mounted
#   there if it is not a mount point, and unmounted at the end), RUNS (default 3), IDLE_WAIT
#   (default 60: seconds to wait for an idle machine before each timed run), CONFIGS,
#   PEERS (default "ostree skopeo-cs"), OUT (default $BENCH/store-config-out),
#   REPORT (default RUN_DIR/store-config.md; RUN_DIR is benches/results/runs/DATE-MACHINE,
#   see run_dir in benches/lib.sh)
set -euo pipefail
BENCH_NAME=store-config
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
DISK_DIR=${DISK_DIR:-/var/tmp/store-config}
RUNS=${RUNS:-3}
IDLE_WAIT=${IDLE_WAIT:-60}
CONFIGS=${CONFIGS:-t0 t0z3 t64 t64z3 t512 t512z3 t4096 t4096z3 t4096z9 t4096z19 t16384 t16384z3}
PEERS=${PEERS:-ostree skopeo-cs}
OUT=${OUT:-$BENCH/store-config-out}
REPORT=${REPORT:-$(run_dir)/store-config.md}
IMAGES="base-v1 app-v1 base-v2 app-v2"

[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$L" ] || die "no layerstore binary at $L"
need_corpus
for t in hyperfine skopeo umoci ostree python3; do command -v $t > /dev/null || die "$t is required"; done
want_peer() { [[ " $PEERS " == *" $1 "* ]]; }
mkdir -p "$OUT" "$TMPFS" "$DISK_DIR"
rm -f "$OUT"/*.json "$OUT"/*.tsv "$OUT"/idle-*.log
mount_tmpfs
T=$TMPFS/sc
cleanup() {
  local rc=$?
  umount_under "$T"; umount_under "$DISK_DIR"
  rm -rf "$T" "$DISK_DIR"
  umount_tmpfs
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$T"; mkdir -p "$T"

WAIT="bash $here/wait-idle.sh $IDLE_WAIT"
once() { # KEY COMMAND...: one timed run after sync and the idle wait; wall s to $OUT/KEY.time
  local key=$1; shift
  sync; $WAIT "$OUT/idle-$key.log"
  local t0 t1
  t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N)
  python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$t1" > "$OUT/$key.time"
}
sizes() { # KEY DIR: apparent bytes, allocated bytes, inodes to $OUT/sizes.tsv
  printf '%s\t%s\t%s\t%s\n' "$1" "$(du -sb "$2" | cut -f1)" "$(du -s --block-size=1 "$2" | cut -f1)" \
    "$(find "$2" | wc -l)" >> "$OUT/sizes.tsv"
}
init_args() { # CONFIG -> layerstore init arguments
  local c=$1 t z
  t=${c#t}; t=${t%%z*}
  z=""; [[ $c == *z* ]] && z=${c#*z}
  echo "--inline-threshold $t${z:+ --compress=$z}"
}
import_all() { # STORE
  local s=$1 i
  for i in $IMAGES; do "$L" --store "$s" import "oci:$GOCI:$i" > /dev/null; done
}
import_cmd() { # STORE: the same as one shell command line
  local s=$1 i c=""
  for i in $IMAGES; do c+="${c:+ && }$L --store $s import oci:$GOCI:$i > /dev/null"; done
  echo "$c"
}
: > "$OUT/sizes.tsv"

# ---------------------------------------------------------------------------------------------
# layerstore configs
# ---------------------------------------------------------------------------------------------
for c in $CONFIGS; do
  args=$(init_args "$c")
  # disk pass
  d=$DISK_DIR/$c
  rm -rf "$d"
  sync
  # shellcheck disable=SC2086
  "$L" --store "$d" init $args > /dev/null
  once "disk-import-$c" import_all "$d"
  sync
  sizes "ls-$c" "$d"
  "$L" --store "$d" --json df > "$OUT/df-$c.json"
  rm -rf "$d"
  # tmpfs pass
  s=$T/s
  hf "tmpfs-import-$c" "rm -rf $s && $L --store $s init $args > /dev/null" "$(import_cmd "$s")"
  hf "tmpfs-checkout-$c" "rm -rf $T/dest" "$L --store $s checkout app-v2 $T/dest --mode hardlink"
  rm -rf "$T/dest" "$s"
done

# ---------------------------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------------------------
if want_peer ostree; then
  for i in $IMAGES; do
    umoci unpack --image "$GOCI:$i" "$T/unpack-$i" > /dev/null
  done
  ostree_commit_all() { # REPO
    local i
    for i in $IMAGES; do ostree --repo="$1" commit --branch="$i" --tree=dir="$T/unpack-$i/rootfs" > /dev/null; done
  }
  for mode in bare-user archive; do
    r=$DISK_DIR/ostree-$mode
    rm -rf "$r"; ostree --repo="$r" init --mode=$mode
    once "disk-import-ostree-$mode" ostree_commit_all "$r"
    sync
    sizes "ostree-$mode" "$r"
    rm -rf "$r"
  done
  r=$T/repo
  cmd="" ; for i in $IMAGES; do cmd+="${cmd:+ && }ostree --repo=$r commit --branch=$i --tree=dir=$T/unpack-$i/rootfs > /dev/null"; done
  hf tmpfs-import-ostree-bare-user "rm -rf $r && ostree --repo=$r init --mode=bare-user" "$cmd"
  hf tmpfs-checkout-ostree-bare-user "rm -rf $T/dest" "ostree --repo=$r checkout -U -H app-v2 $T/dest"
  rm -rf "$r" "$T/dest"
  for i in $IMAGES; do rm -rf "$T/unpack-$i"; done
fi
if want_peer skopeo-cs; then
  printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' > "$OUT/policy.json"
  cs_conf() { # ROOT: storage.conf for a graph root under ROOT
    printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/graph"\nrunroot = "%s/run"\n' "$1" "$1" > "$1.conf"
  }
  cs_cmd() { # ROOT
    local c="" i
    for i in $IMAGES; do
      c+="${c:+ && }CONTAINERS_STORAGE_CONF=$1.conf skopeo --policy $OUT/policy.json copy -q oci:$GOCI:$i containers-storage:[overlay@$1/graph+$1/run]localhost/$i"
    done
    echo "$c"
  }
  cs=$DISK_DIR/cs
  umount_under "$cs"; rm -rf "$cs"; mkdir -p "$cs/graph" "$cs/run"; cs_conf "$cs"
  once disk-import-skopeo-cs sh -c "$(cs_cmd "$cs")"
  sync
  sizes skopeo-cs "$cs/graph"
  umount_under "$cs"; rm -rf "$cs" "$cs.conf"
  cs=$T/cs
  cs_conf "$cs"
  hf tmpfs-import-skopeo-cs "$(printf 'findmnt -rn -o TARGET | grep "^%s/" | sort -r | xargs -r umount; rm -rf %s; mkdir -p %s/graph %s/run' "$cs" "$cs" "$cs" "$cs")" "$(cs_cmd "$cs")"
  umount_under "$cs"; rm -rf "$cs" "$cs.conf"
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
{
  machine_lines
  echo "disk pass: $DISK_DIR on $(findmnt -n -o FSTYPE,SOURCE,OPTIONS -T "$DISK_DIR" | head -n 1)"
  echo "tmpfs pass: $TMPFS on $(findmnt -n -o FSTYPE,SOURCE,OPTIONS -T "$TMPFS" | head -n 1)"
  echo "layerstore: $L sha256 $(sha256sum "$L" | cut -c1-16); built at $(cat "$BENCH/GIT_HEAD" 2> /dev/null || echo unknown); HEAD when the report was written: $(git -C "$repo" rev-parse --short HEAD)"
  echo "images: $IMAGES from $GOCI, in that order, into one fresh store per config"
  echo "runs: disk pass 1 per config, tmpfs pass $RUNS (hyperfine --warmup 0); idle wait up to ${IDLE_WAIT}s before each timed run"
  echo "versions: $(skopeo --version), $(umoci --version), ostree $(ostree --version | awk -F"'" '/Version/ {print $2}'), $(hyperfine --version)"
} > "$OUT/env.txt"
PYTHONPATH="$here" python3 - "$OUT" "$REPORT" "$CONFIGS" << 'EOF'
import json, os, sys
from mdtable import head
out, report, configs = sys.argv[1], sys.argv[2], sys.argv[3].split()
sizes = {}
for l in open(os.path.join(out, "sizes.tsv")):
    k, app, alloc, inodes = l.split()
    sizes[k] = dict(app=int(app), alloc=int(alloc), inodes=int(inodes))
def hf(key):
    p = os.path.join(out, key + ".json")
    if not os.path.exists(p): return None
    r = json.load(open(p))["results"][0]
    return dict(mean=r["mean"], sd=r.get("stddev") or 0.0, cpu=r["user"] + r["system"])
def once(key):
    p = os.path.join(out, key + ".time")
    return float(open(p).read()) if os.path.exists(p) else None
def busy():
    b = n = 0
    for f in os.listdir(out):
        if f.startswith("idle-"):
            lines = open(os.path.join(out, f)).read().splitlines()
            b += sum("timeout" in l for l in lines); n += len(lines)
    return b, n
def label(c):
    t = c[1:].split("z")[0]
    z = c.split("z")[1] if "z" in c else None
    return f"T={t}, " + (f"zstd {z}" if z else "no compression")
MB = lambda b: f"{b / 1e6:.1f}"
ref = "t4096"  # the default config: ratios are against it
md = ["# Store configuration sweep: inline threshold × per-object compression", "",
      "Made by `benches/store-config.sh`. MB = 10^6 bytes. Images base-v1, app-v1, base-v2, app-v2 "
      "imported in that order into a fresh store per config (`layerstore init --inline-threshold T "
      "[--compress[=L]]`, default `--compress-min` 512).", "", "## Machine", ""]
md += ["    " + l for l in open(os.path.join(out, "env.txt")).read().splitlines()]
b, n = busy()
md += ["", f"{b} of {n} timed runs started while the machine was still busy after the idle wait.", ""]
md += ["## Space (disk pass, ext4)", "",
       "apparent = `du -sb STORE`; allocated = `du -s --block-size=1 STORE`; inodes = `find STORE | wc -l`; "
       "df stored = `layerstore df --json` stored_bytes (loose + index); loose / index = its loose_bytes / index_bytes; "
       "× default = allocated / allocated of T=4096 without compression.", "",
       *head(['config', 'apparent MB', 'allocated MB', '× default', 'inodes', 'df stored MB', 'loose MB', 'index MB', 'loose objects', 'inline objects'])]
base_alloc = sizes.get("ls-" + ref, {}).get("alloc")
for c in configs:
    s = sizes.get("ls-" + c)
    if not s: continue
    d = json.load(open(os.path.join(out, f"df-{c}.json")))
    x = f"{s['alloc'] / base_alloc:.2f}" if base_alloc else ""
    md.append(f"| {label(c)} | {MB(s['app'])} | {MB(s['alloc'])} | {x} | {s['inodes']:,} | {MB(d['stored_bytes'])} | "
              f"{MB(d['loose_bytes'])} | {MB(d['index_bytes'])} | {d['loose_objects']:,} | {d['inline_objects']:,} |")
for k, name in (("ostree-bare-user", "ostree bare-user repo"), ("ostree-archive", "ostree archive repo (zlib objects)"),
                ("skopeo-cs", "containers-storage overlay (graph root)")):
    s = sizes.get(k)
    if s:
        x = f"{s['alloc'] / base_alloc:.2f}" if base_alloc else ""
        md.append(f"| peer: {name} | {MB(s['app'])} | {MB(s['alloc'])} | {x} | {s['inodes']:,} | | | | | |")
d0 = json.load(open(os.path.join(out, f"df-{configs[0]}.json")))
md += ["", f"Logical bytes of the four images (df): {d0['logical_bytes']:,}; distinct content (df object_bytes): {d0['object_bytes']:,}.", ""]
md += ["## Time", "",
       "import = the four imports into a fresh store; checkout = `checkout app-v2 DEST --mode hardlink`. "
       "tmpfs: hyperfine mean ± σ (the figures to compare); ext4: the single disk-pass run (layerstore syncs its "
       "objects; noisy `discard` disk). × default = time / time of T=4096 without compression (tmpfs).", "",
       *head(['config', 'import tmpfs s', 'cpu s', '× default', 'import ext4 s', 'hardlink checkout tmpfs s', '× default'])]
bi, bc = hf("tmpfs-import-" + ref), hf("tmpfs-checkout-" + ref)
for c in configs:
    i, co, e = hf("tmpfs-import-" + c), hf("tmpfs-checkout-" + c), once("disk-import-" + c)
    if not i: continue
    md.append(f"| {label(c)} | {i['mean']:.2f} ± {i['sd']:.2f} | {i['cpu']:.2f} | {i['mean'] / bi['mean']:.2f} | {e:.2f} | "
              f"{co['mean']:.3f} ± {co['sd']:.3f} | {co['mean'] / bc['mean']:.2f} |")
po = hf("tmpfs-import-ostree-bare-user"); pc = hf("tmpfs-checkout-ostree-bare-user"); pcs = hf("tmpfs-import-skopeo-cs")
if po:
    md.append(f"| peer: ostree commit of the 4 rootfs, bare-user (checkout -U -H) | {po['mean']:.2f} ± {po['sd']:.2f} | {po['cpu']:.2f} | {po['mean'] / bi['mean']:.2f} | "
              f"{once('disk-import-ostree-bare-user'):.2f} | {pc['mean']:.3f} ± {pc['sd']:.3f} | {pc['mean'] / bc['mean']:.2f} |")
    md.append(f"| peer: ostree commit, archive | | | | {once('disk-import-ostree-archive'):.2f} | | |")
if pcs:
    md.append(f"| peer: skopeo → containers-storage overlay | {pcs['mean']:.2f} ± {pcs['sd']:.2f} | {pcs['cpu']:.2f} | {pcs['mean'] / bi['mean']:.2f} | "
              f"{once('disk-import-skopeo-cs'):.2f} | | |")
md += ["", "ostree times exclude the `umoci unpack` of each image its commit needs (done once, untimed).", "",
       "## Interpretation", "", "(written by hand after the run)", ""]
os.makedirs(os.path.dirname(report), exist_ok=True)
open(report, "w").write("\n".join(md))
print("\n".join(md))
EOF
echo "store-config: wrote $REPORT" >&2
