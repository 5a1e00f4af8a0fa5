#!/usr/bin/env bash
# Performance drive: the import, scaling and checkout figures of layerstore, each as a ratio
# against a peer (or a floor) measured in the same invocation, on a tmpfs so disk noise is out.
# Sections (SECTIONS, default all, in this order):
#   tput      import throughput: MB/s of uncompressed tar, wall and per core (tar bytes /
#             (user+sys)), for gzip layers (the corpus) and zstd layers (a skopeo-recompressed
#             copy), base-v1 (1 layer) and app-v1 (2 layers, also with --jobs 1); peers in the
#             same table: skopeo -> containers-storage overlay (gzip and zstd), umoci unpack
#             (gzip only: umoci 0.4.7 has no zstd), and the decompression floor (gzip -dc,
#             zstd -dc of the same blobs)
#   peers     benches/compare-peers.sh on the tmpfs with SCENARIOS="single update fresh2":
#             fresh base-v1 vs skopeo->c/s, umoci, ostree commit; base-v2 update vs fresh
#   scale     two imports sequentially vs concurrently (two processes), pairs:
#               sep-base   base-v1 + base-v2 (gzip), two fresh stores
#               sep-app    base-v1 + app-v1 (gzip), two fresh stores
#             (one-store pairs start from an empty store made by `layerstore init`: two imports
#             that both create the store race, one fails "not a layerstore store (no meta.json)")
#               one-app    base-v1 + app-v1 (gzip), one store (they share the base layer)
#               one-zb2    base-v1 (gzip) + base-v2 (zstd), one store (no layer shared, ~all files)
#               one-other  base-v1 (gzip) + OTHER_TREE as a zstd image, one store (shares nothing)
#   checkout  app-v2: layerstore checkout --mode hardlink vs ostree checkout -H from a bare repo
#             committed from umoci's rootfs of app-v2 (and both copy modes)
#   profile   perf record -e cpu-clock of one base-v1 import, gzip and zstd: CPU per thread and
#             the top symbols (where the per-core throughput goes)
# Every timed run is a hyperfine run (--warmup 0, --runs $RUNS) whose --prepare clears the state,
# syncs and waits up to IDLE_WAIT s for an idle machine (benches/wait-idle.sh); the report says
# how many runs started busy anyway.
#
# Usage (as root: containers-storage overlay, ostree bare, mount):
#   cargo build --release -p layerstore-cli -p layerstore-tests
#   mkdir -p /var/tmp/ls-bench && cp target/release/{layerstore,make-many-files} /var/tmp/ls-bench/
#   git rev-parse HEAD > /var/tmp/ls-bench/GIT_HEAD          # which commit the copy is
#   benches/perf-drive.sh
# Environment:
#   LAYERSTORE_CORPUS  the corpus dir (default /work/corpus; OCI layout in oci/), see benches/README.md
#   BENCH       work dir holding the binary copies (default /var/tmp/ls-bench)
#   LAYERSTORE  binary (default $BENCH/layerstore)
#   TMPFS       tmpfs dir (default $BENCH/tmpfs); if it is not a mount point a 4 GiB tmpfs is
#               mounted there and unmounted at the end
#   ZOCI        zstd copy of the corpus (default $BENCH/zoci; made with skopeo copy
#               --dest-compress-format zstd when missing)
#   XOCI        extra images (default $BENCH/xoci; made by benches/make-bench-images.py)
#   OTHER_TREE  directory tarred into the share-nothing image (default ~/.cargo/registry/src,
#               cut at 120 MB; the one-other pair is skipped when missing)
#   RUNS (default 5), IDLE_WAIT (default 60), SECTIONS (default: tput peers scale checkout profile)
#   OUT         raw hyperfine JSON and logs (default $BENCH/perf-drive-out)
#   REPORT      Markdown report (default RUN_DIR/perf-drive.md, or perf-drive-SECTIONS.md when
#               SECTIONS is not all, e.g. perf-drive-checkout.md; RUN_DIR is
#               benches/results/runs/DATE-MACHINE, see run_dir in benches/lib.sh)
set -euo pipefail
BENCH_NAME=perf-drive
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
ZOCI=${ZOCI:-$BENCH/zoci}
XOCI=${XOCI:-$BENCH/xoci}
OTHER_TREE=${OTHER_TREE:-${CARGO_HOME:-$HOME/.cargo}/registry/src}
RUNS=${RUNS:-5}
IDLE_WAIT=${IDLE_WAIT:-60}
all_sections="tput peers scale checkout profile"
SECTIONS=${SECTIONS:-$all_sections}
OUT=${OUT:-$BENCH/perf-drive-out}
# A run of some sections only is its own subject (perf-drive-checkout.md): it must not replace
# the report of a whole run.
subject=perf-drive
# shellcheck disable=SC2086 # unquoted: one dash between the words, however they are spaced
[ "$SECTIONS" = "$all_sections" ] || subject=perf-drive-$(echo $SECTIONS | tr ' ' '-')
REPORT=${REPORT:-$(run_dir)/$subject.md}

[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$L" ] || die "no layerstore binary at $L (see Usage)"
need_corpus
for t in hyperfine skopeo umoci ostree python3 zstd gzip rsync; do
  command -v $t > /dev/null || die "$t is required"
done
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
mkdir -p "$OUT" "$TMPFS"
rm -f "$OUT"/*.json "$OUT"/idle-*.log "$OUT/records.tsv"
mount_tmpfs
W=$TMPFS/w
cleanup() {
  local rc=$?
  umount_under "$W"
  rm -rf "$W"
  umount_tmpfs
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$W"; mkdir -p "$W"

# ---------------------------------------------------------------------------------------------
# Inputs: zstd copy of the corpus, extra images, tar bytes of every layer.
# ---------------------------------------------------------------------------------------------
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' > "$W/policy.json"
if [ ! -f "$ZOCI/index.json" ]; then
  for t in base-v1 app-v1 base-v2 app-v2 app-v3; do
    echo "\$ skopeo copy --dest-compress-format zstd oci:$GOCI:$t oci:$ZOCI:$t" >&2
    skopeo --policy "$W/policy.json" copy -q --dest-compress-format zstd "oci:$GOCI:$t" "oci:$ZOCI:$t"
  done
fi
if [ ! -f "$XOCI/index.json" ] || ! grep -q '"app-top"' "$XOCI/index.json"; then
  python3 "$here/make-bench-images.py" layer "$ZOCI" app-v1 1 "$XOCI" app-top
fi
have_other=0
if grep -qs '"other"' "$XOCI/index.json"; then have_other=1
elif [ -d "$OTHER_TREE" ]; then
  python3 "$here/make-bench-images.py" tree "$OTHER_TREE" 120000000 zstd "$XOCI" other >&2 && have_other=1
fi
# Layers of LAYOUT:TAG as "media_type blob_path" lines.
layers_of() {
  python3 - "$1" "$2" << 'EOF'
import json, sys, os
layout, tag = sys.argv[1:3]
idx = json.load(open(os.path.join(layout, "index.json")))
m = next(m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
man = json.load(open(os.path.join(layout, "blobs/sha256", m["digest"][7:])))
for l in man["layers"]:
    print(l["mediaType"], os.path.join(layout, "blobs/sha256", l["digest"][7:]))
EOF
}
tar_bytes() { # LAYOUT TAG: sum of the uncompressed layer sizes
  local total=0 mt p n
  while read -r mt p; do
    case $mt in
      *zstd) n=$(zstd -dc "$p" | wc -c) ;;
      *gzip) n=$(gzip -dc "$p" | wc -c) ;;
      *) n=$(wc -c < "$p") ;;
    esac
    total=$((total + n))
  done < <(layers_of "$1" "$2")
  echo $total
}
blobs_of() { layers_of "$1" "$2" | awk '{print $2}' | tr '\n' ' '; }

# ---------------------------------------------------------------------------------------------
# Timing helpers. records.tsv: section  key  json  tar_bytes  note
# ---------------------------------------------------------------------------------------------
WAIT="bash $here/wait-idle.sh $IDLE_WAIT"
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$OUT/records.tsv"; }
: > "$OUT/records.tsv"
# compare-peers.sh's own entry points run skopeo -> containers-storage and umoci exactly as it
# does (same policy, storage.conf and graph root layout under $W).
export W CS_DRIVER_USED=overlay CONTAINERS_STORAGE_CONF=$W/storage.conf
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/cs/graph"\nrunroot = "%s/cs/run"\n' "$W" "$W" > "$W/storage.conf"
mkdir -p "$W/zcorpus"; ln -sfn "$ZOCI" "$W/zcorpus/oci"
cp_cmd() { # CORPUS_DIR ACTION TOOL [TAG...]: a compare-peers.sh entry point as a command line
  local c=$1; shift
  echo "env LAYERSTORE_CORPUS=$c LAYERSTORE=$L IDLE_WAIT=0 DROP_CACHES=0 bash $here/compare-peers.sh $*"
}

S=$TMPFS/s
if want tput; then
  for fmt in gzip zstd; do
    if [ $fmt = gzip ]; then lay=$GOCI; cdir=$CORPUS; dec="gzip -dc"; else lay=$ZOCI; cdir=$W/zcorpus; dec="zstd -dc"; fi
    for img in base-v1 app-v1; do
      tb=$(tar_bytes "$lay" "$img")
      hf "tput-$fmt-$img-layerstore" "rm -rf $S" "$L --store $S import oci:$lay:$img"
      rec tput "$fmt $img layerstore" "$OUT/tput-$fmt-$img-layerstore.json" "$tb" "layerstore --store \$S import oci:LAYOUT:$img"
      if [ $img = app-v1 ]; then
        hf "tput-$fmt-$img-layerstore-j1" "rm -rf $S" "$L --store $S import oci:$lay:$img --jobs 1"
        rec tput "$fmt $img layerstore --jobs 1" "$OUT/tput-$fmt-$img-layerstore-j1.json" "$tb" "layerstore --store \$S import oci:LAYOUT:$img --jobs 1"
      fi
      hf "tput-$fmt-$img-skopeo-cs" "$(cp_cmd "$cdir" _prepare skopeo-cs)" "$(cp_cmd "$cdir" _import skopeo-cs "$img")"
      rec tput "$fmt $img skopeo-cs" "$OUT/tput-$fmt-$img-skopeo-cs.json" "$tb" "skopeo copy oci:LAYOUT:$img containers-storage:[overlay@\$W/cs/graph+\$W/cs/run]localhost/$img"
      if [ $fmt = gzip ]; then
        hf "tput-$fmt-$img-umoci" "$(cp_cmd "$cdir" _prepare umoci)" "$(cp_cmd "$cdir" _import umoci "$img")"
        rec tput "$fmt $img umoci" "$OUT/tput-$fmt-$img-umoci.json" "$tb" "umoci unpack --image LAYOUT:$img \$W/bundle"
      fi
      hf "tput-$fmt-$img-floor" "true" "$dec $(blobs_of "$lay" "$img")"
      rec tput "$fmt $img floor ($dec)" "$OUT/tput-$fmt-$img-floor.json" "$tb" "$dec BLOBS > /dev/null (decompression only)"
    done
  done
  eval "$(cp_cmd "$CORPUS" _prepare skopeo-cs)" > /dev/null 2>&1 || true # unmount the graph root
  rm -rf "$S" "$W/cs" "$W/bundle"
fi

if want peers; then
  echo "== compare-peers.sh (tmpfs, single update fresh2)" >&2
  mkdir -p "$W/cp"
  env LAYERSTORE_CORPUS="$CORPUS" LAYERSTORE="$L" RUNS="$RUNS" IDLE_WAIT="$IDLE_WAIT" SCENARIOS="single update fresh2" \
    WORK_PARENT="$W/cp" REPORT="$OUT/compare-peers.md" bash "$here/compare-peers.sh" > /dev/null
  rec peers compare-peers "$OUT/compare-peers.md" "" ""
fi

if want scale; then
  s1=$TMPFS/p1 s2=$TMPFS/p2
  pair() { # KEY DESCRIPTION CMD_A CMD_B PREP
    local key=$1 desc=$2 a=$3 b=$4 prep=$5
    hf "scale-$key-a" "$prep" "$a"
    hf "scale-$key-b" "$prep" "$b"
    hf "scale-$key-seq" "$prep" "$a && $b"
    hf "scale-$key-par" "$prep" "$a & p=\$!; $b; r=\$?; wait \$p && [ \$r = 0 ]"
    rec scale "$key" "$OUT/scale-$key" "" "$desc"
  }
  imp() { echo "$L --store $1 import oci:$2 > /dev/null"; }
  pair sep-base "base-v1 + base-v2 (gzip), two fresh stores" \
    "$(imp $s1 "$GOCI:base-v1")" "$(imp $s2 "$GOCI:base-v2")" "rm -rf $s1 $s2"
  pair sep-app "base-v1 + app-v1 (gzip), two fresh stores" \
    "$(imp $s1 "$GOCI:base-v1")" "$(imp $s2 "$GOCI:app-v1")" "rm -rf $s1 $s2"
  pair one-app "base-v1 + app-v1 (gzip), one fresh store (shared base layer)" \
    "$(imp $s1 "$GOCI:base-v1")" "$(imp $s1 "$GOCI:app-v1")" "rm -rf $s1 && $L --store $s1 init > /dev/null"
  pair one-zb2 "base-v1 (gzip) + base-v2 (zstd), one fresh store (no shared layer, most files shared)" \
    "$(imp $s1 "$GOCI:base-v1")" "$(imp $s1 "$ZOCI:base-v2")" "rm -rf $s1 && $L --store $s1 init > /dev/null"
  if [ $have_other = 1 ]; then
    pair one-other "base-v1 (gzip) + other (zstd, $OTHER_TREE cut at 120 MB), one fresh store (nothing shared)" \
      "$(imp $s1 "$GOCI:base-v1")" "$(imp $s1 "$XOCI:other")" "rm -rf $s1 && $L --store $s1 init > /dev/null"
  fi
  rm -rf "$s1" "$s2"
fi

if want checkout; then
  c=$TMPFS/co
  rm -rf "$c"; mkdir -p "$c"
  "$L" --store "$c/ls" import "oci:$GOCI:app-v2" > /dev/null
  umoci unpack --image "$GOCI:app-v2" "$c/bundle" > /dev/null
  ostree --repo="$c/repo" init --mode=bare
  ostree --repo="$c/repo" commit --branch=app-v2 --tree=dir="$c/bundle/rootfs" > /dev/null
  hf co-layerstore-hardlink "rm -rf $c/dest" "$L --store $c/ls checkout app-v2 $c/dest --mode hardlink"
  hf co-ostree-hardlink "rm -rf $c/dest" "ostree --repo=$c/repo checkout -H app-v2 $c/dest"
  hf co-layerstore-copy "rm -rf $c/dest" "$L --store $c/ls checkout app-v2 $c/dest --mode copy"
  hf co-ostree-copy "rm -rf $c/dest" "ostree --repo=$c/repo checkout --force-copy app-v2 $c/dest"
  entries=$(find "$c/bundle/rootfs" | wc -l)
  rm -rf "$c/dest"; "$L" --store "$c/ls" checkout app-v2 "$c/dest" --mode hardlink > /dev/null
  diff_content=$(rsync -rlcn --delete --itemize-changes "$c/bundle/rootfs/" "$c/dest/" | wc -l)
  diff_meta=$(rsync -rlpgoDcn --delete --itemize-changes "$c/bundle/rootfs/" "$c/dest/" | wc -l)
  linked_ls=$(find "$c/dest" -type f -links +1 | wc -l)
  rm -rf "$c/dest"; ostree --repo="$c/repo" checkout -H app-v2 "$c/dest"
  linked_os=$(find "$c/dest" -type f -links +1 | wc -l)
  files=$(find "$c/dest" -type f | wc -l)
  rec checkout co "" "" "entries=$entries files=$files rsync_content_diff=$diff_content rsync_metadata_diff=$diff_meta hardlinked_layerstore=$linked_ls hardlinked_ostree=$linked_os"
  rm -rf "$c"
fi

if want profile && command -v perf > /dev/null; then
  for fmt in gzip zstd; do
    lay=$GOCI; [ $fmt = zstd ] && lay=$ZOCI
    rm -rf "$S"; sync; $WAIT "$OUT/idle-profile-$fmt.log"
    perf record -q -e cpu-clock -F 4000 -o "$W/perf-$fmt.data" "$L" --store "$S" import "oci:$lay:base-v1" > /dev/null 2>&1
    perf report -i "$W/perf-$fmt.data" --no-children --sort pid --stdio 2> /dev/null | grep '%' > "$OUT/profile-$fmt-threads.txt" || true
    perf report -i "$W/perf-$fmt.data" --no-children --sort pid,symbol --stdio 2> /dev/null | grep '%' | head -n 25 > "$OUT/profile-$fmt-symbols.txt" || true
    perf report -i "$W/perf-$fmt.data" --no-children --sort dso,symbol --stdio 2> /dev/null | grep '%' > "$OUT/profile-$fmt-all.txt" || true
    rec profile "$fmt" "$OUT/profile-$fmt" "$(tar_bytes "$lay" base-v1)" "perf record -e cpu-clock -F 4000 layerstore --store \$S import oci:LAYOUT:base-v1"
    rm -rf "$S"
  done
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
{
  machine_lines
  echo "filesystem: $(findmnt -n -o FSTYPE,SOURCE,OPTIONS -T "$TMPFS" | head -n 1) (all stores, checkouts and peer stores)"
  echo "layerstore: $L sha256 $(sha256sum "$L" | cut -c1-16), $("$L" --version)"
  echo "git: binary built at $(cat "$BENCH/GIT_HEAD" 2> /dev/null || echo 'unknown (no $BENCH/GIT_HEAD)'); HEAD when the report was written: $(git -C "$repo" rev-parse --short HEAD)"
  [ -s "$BENCH/GIT_STATUS" ] && head -n 5 "$BENCH/GIT_STATUS" | sed 's/^/build note: /'
  echo "corpus: $GOCI (gzip), $ZOCI (zstd, skopeo copy --dest-compress-format zstd), $XOCI"
  echo "runs: $RUNS per benchmark (hyperfine --warmup 0), warm page cache, idle wait up to ${IDLE_WAIT}s before each run"
  echo "versions: $(skopeo --version), $(umoci --version), ostree $(ostree --version | awk -F"'" '/Version/ {print $2}'), $(hyperfine --version), zstd $(zstd --version | awk '{print $5}' | tr -d ,), $(gzip --version | head -n 1)"
} > "$OUT/env.txt"
PYTHONPATH="$here" python3 - "$OUT" "$REPORT" << 'EOF'
import json, os, sys, glob, re
from mdtable import head
out, report = sys.argv[1:3]
recs = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "records.tsv")) if l.strip()]
def res(path):
    r = json.load(open(path))["results"][0]
    return dict(mean=r["mean"], sd=r.get("stddev") or 0.0, min=r["min"], cpu=r["user"] + r["system"], user=r["user"], sys=r["system"])
def busy(*keys):
    b = n = 0
    for key in keys:
        p = os.path.join(out, f"idle-{key}.log")
        if os.path.exists(p):
            lines = open(p).read().splitlines()
            b += sum("timeout" in l for l in lines); n += len(lines)
    return f"{b} of {n}"
md = ["# Performance drive: import throughput, peers, scaling, checkout", "",
      "Made by `benches/perf-drive.sh` (raw hyperfine JSON in its OUT dir). MB = 10^6 bytes. "
      "Every time is a hyperfine mean over the runs given below; **busy** = runs that started "
      "while the machine was still busy after the idle wait (another engineer's build or tests).", "",
      "## Machine", ""]
md += ["    " + l for l in open(os.path.join(out, "env.txt")).read().splitlines()]
md.append("")

tput = [r for r in recs if r[0] == "tput"]
if tput:
    md += ["## 1. Import throughput (tmpfs, fresh store per run)", "",
           "tar MB = uncompressed layer bytes read; wall MB/s = tar MB / wall; MB/s per core = tar MB / (user+sys). "
           "× = the row's figure relative to layerstore's on the same image and compression "
           "(time ratio: above 1 the row is slower; the floor only decompresses).", "",
           *head(['compression', 'image', 'tool', 'tar MB', 'wall s ± σ', 'user+sys s', 'wall MB/s', 'MB/s per core', 'cores used', 'wall × layerstore', 'cpu × layerstore', 'busy'], left=3)]
    base = {}
    for sec, key, js, tb, note in tput:
        fmt, img, tool = key.split(" ", 2)
        r = res(js)
        if tool == "layerstore": base[(fmt, img)] = r
    for sec, key, js, tb, note in tput:
        fmt, img, tool = key.split(" ", 2)
        r = res(js); b = base.get((fmt, img)); mb = int(tb) / 1e6
        k = os.path.basename(js)[:-5]
        md.append(f"| {fmt} | {img} | {tool} | {mb:.1f} | {r['mean']:.3f} ± {r['sd']:.3f} | {r['cpu']:.3f} | {mb / r['mean']:.0f} | {mb / r['cpu']:.0f} | "
                  f"{r['cpu'] / r['mean']:.2f} | {r['mean'] / b['mean']:.2f} | {r['cpu'] / b['cpu']:.2f} | {busy(k)} |")
    md += ["", "Commands (LAYOUT = the gzip or zstd layout; hyperfine --prepare removes the store):", ""]
    seen = set()
    for sec, key, js, tb, note in tput:
        tool = key.split(" ", 2)[2]
        if tool not in seen:
            seen.add(tool); md.append(f"- {tool}: `{note}`")
    md.append("")

peers = [r for r in recs if r[0] == "peers"]
if peers:
    text = open(peers[0][2]).read()
    body = text.split("## Results", 1)[1] if "## Results" in text else text
    notes = ""
    if "## Notes" in body:
        body, notes = body.split("## Notes", 1)
    md += ["## 2 and 4. Fresh import and update vs peers (benches/compare-peers.sh on the same tmpfs)", "",
           "Run by this script as `SCENARIOS=\"single update fresh2\" WORK_PARENT=<tmpfs> benches/compare-peers.sh`; "
           "its tables follow (headings demoted). Its Machine block is the one above.", ""]
    md += [re.sub(r"^### ", "#### ", l) for l in body.strip().splitlines()]
    if notes.strip():
        md += ["", "compare-peers notes:", ""] + [l for l in notes.strip().splitlines()]
    md.append("")

scale = [r for r in recs if r[0] == "scale"]
if scale:
    md += ["## 3. Parallel scaling: two imports one after the other vs at once (two processes, tmpfs)", "",
           "A, B = each import alone (for the one-store pairs B alone is into an empty store, while in "
           "seq it runs after A); seq = `A && B`; par = `A & B` (wait for both). speedup = seq / par. "
           "cpu = user+sys of the whole command; the best par can do on 2 cores is max(A, B, cpu(par)/2).", "",
           *head(['pair', 'A s', 'B s', 'seq s', 'par s', '**speedup**', 'seq cpu s', 'par cpu s', 'cores used par', 'bound on speedup', 'busy'])]
    for sec, key, js, tb, desc in scale:
        a, b, s, p = (res(f"{js}-{x}.json") for x in ("a", "b", "seq", "par"))
        bound = s["mean"] / max(a["mean"], b["mean"], p["cpu"] / 2)
        bz = busy(*(f"scale-{key}-{x}" for x in ("a", "b", "seq", "par")))
        md.append(f"| {key}: {desc} | {a['mean']:.3f} | {b['mean']:.3f} | {s['mean']:.3f} | {p['mean']:.3f} | **{s['mean'] / p['mean']:.2f}** | "
                  f"{s['cpu']:.3f} | {p['cpu']:.3f} | {p['cpu'] / p['mean']:.2f} | {bound:.2f} | {bz} |")
    md.append("")

co = [r for r in recs if r[0] == "checkout"]
if co:
    ls_h, os_h = res(os.path.join(out, "co-layerstore-hardlink.json")), res(os.path.join(out, "co-ostree-hardlink.json"))
    ls_c, os_c = res(os.path.join(out, "co-layerstore-copy.json")), res(os.path.join(out, "co-ostree-copy.json"))
    md += ["## 5. Checkout of app-v2 (tmpfs)", "",
           "ostree repo: `ostree init --mode=bare` + `ostree commit --tree=dir=<umoci unpack rootfs of app-v2>`; "
           "layerstore store: default config with app-v2 imported. `--prepare 'rm -rf DEST'`.", "",
           *head(['mode', 'layerstore s ± σ', 'cpu s', 'ostree s ± σ', 'cpu s', 'ostree / layerstore', 'busy']),
           f"| hardlink (`checkout --mode hardlink` vs `checkout -H`) | {ls_h['mean']:.3f} ± {ls_h['sd']:.3f} | {ls_h['cpu']:.3f} | {os_h['mean']:.3f} ± {os_h['sd']:.3f} | {os_h['cpu']:.3f} | **{os_h['mean'] / ls_h['mean']:.2f}** | {busy('co-layerstore-hardlink', 'co-ostree-hardlink')} |",
           f"| copy (`--mode copy` vs `--force-copy`) | {ls_c['mean']:.3f} ± {ls_c['sd']:.3f} | {ls_c['cpu']:.3f} | {os_c['mean']:.3f} ± {os_c['sd']:.3f} | {os_c['cpu']:.3f} | {os_c['mean'] / ls_c['mean']:.2f} | {busy('co-layerstore-copy', 'co-ostree-copy')} |",
           "", f"Tree facts: {co[0][4]} (entries = `find rootfs | wc -l` of umoci's rootfs; files = regular files; "
           "rsync_content_diff / rsync_metadata_diff = lines of `rsync -rlcn` / `rsync -rlpgoDcn --itemize-changes` "
           "between umoci's rootfs and the layerstore hardlink checkout (metadata: the linked objects are 0444 by design); "
           "hardlinked = regular files with link count > 1 in each hardlink checkout).", ""]

prof = [r for r in recs if r[0] == "profile"]
if prof:
    md += ["## Profile: where one base-v1 import spends its CPU (perf record -e cpu-clock, tmpfs)", ""]
    for sec, fmt, base, tb, note in prof:
        threads = open(base + "-threads.txt").read().splitlines()
        syms = open(base + "-symbols.txt").read().splitlines()
        md += [f"{fmt}: `{note}`; share of samples per thread (pid = thread id):", "", "```"] + [t.strip() for t in threads] + ["```", "",
               f"{fmt}: top symbols (thread, symbol):", "", "```"] + [re.sub(r"\s+", " ", s.strip()) for s in syms[:18]] + ["```", ""]

md += ["## Interpretation", "", "(written by hand after the run, see below)", ""]
os.makedirs(os.path.dirname(report), exist_ok=True)
open(report, "w").write("\n".join(md))
print("\n".join(md))
EOF
echo "perf-drive: wrote $REPORT" >&2
