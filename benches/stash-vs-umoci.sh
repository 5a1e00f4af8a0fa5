#!/usr/bin/env bash
# stash-vs-umoci.sh: the same modification of app-v2's root stashed as a new layer by
# `layerstore stash` and by `umoci repack` (and `buildah commit` where buildah runs), in paired
# rounds (every tool once per round, order alternating): wall and CPU time, and the new layer's
# size (uncompressed tar, and gzip -6 of it beside umoci's own gzip blob).
#
# The modification: every 20th regular file of the unpacked app-v2 (sorted by path, 5%) gets
# a line appended. umoci unpacks app-v2 into a bundle and the change is made in its rootfs;
# layerstore stashes that very rootfs on app-v2 (imported into a store that is copied fresh
# before each round, so every round writes the layer as the first did). buildah (vfs driver,
# its own root) commits a working container of app-v2 with the same change made in its mount.
#
# Env: LAYERSTORE (binary), LAYERSTORE_CORPUS, RUNS (default 5), WORK_PARENT (default
# /var/tmp), REPORT (default benches/results/runs/DATE-MACHINE/stash.md), TOOLS (default
# "layerstore layerstore-trust-mtime umoci buildah").
set -euo pipefail
BENCH_NAME=stash-vs-umoci
# shellcheck source=lib.sh
. "$(dirname "$(readlink -f "$0")")/lib.sh"
need_corpus
[ "$(id -u)" = 0 ] || die "run as root (umoci unpack keeps owners, device nodes)"
command -v umoci > /dev/null || die "umoci is not installed"
RUNS=${RUNS:-5}
TOOLS=${TOOLS:-layerstore layerstore-trust-mtime umoci buildah}
W=${WORK_PARENT:-/var/tmp}/stash-bench
REPORT=${REPORT:-$(run_dir)/stash.md}
[ -x "$L" ] || die "no layerstore binary at $L (set LAYERSTORE)"

rm -rf "$W"
mkdir -p "$W"
echo "== setup in $W" >&2
cp -a "$GOCI" "$W/oci"
umoci unpack --image "$W/oci:app-v2" "$W/bundle" > /dev/null
"$L" --store "$W/store.base" -q import "oci:$GOCI:app-v2" --tag app-v2 > /dev/null
modify() { # ROOTFS: append a line to every 20th regular file (sorted by path)
  (cd "$1" && find . -type f | LC_ALL=C sort | awk 'NR % 20 == 0' |
    while IFS= read -r f; do printf 'stash-bench\n' >> "$f"; done)
}
modify "$W/bundle/rootfs"
files=$(find "$W/bundle/rootfs" -type f | wc -l)
changed=$(find "$W/bundle/rootfs" -type f | awk 'NR % 20 == 0' | wc -l)

variants=()
for t in $TOOLS; do
  case $t in
    layerstore)
      variants+=("{\"name\": \"layerstore\", \"prepare\": \"rm -rf $W/store && cp -a $W/store.base $W/store\", \"cmd\": \"$L --store $W/store --json stash $W/bundle/rootfs --tag bench --parent app-v2 > $W/ls.json\"}")
      ;;
    layerstore-trust-mtime)
      variants+=("{\"name\": \"layerstore-trust-mtime\", \"prepare\": \"rm -rf $W/store && cp -a $W/store.base $W/store\", \"cmd\": \"$L --store $W/store --json stash $W/bundle/rootfs --tag bench --parent app-v2 --trust-mtime > $W/ls-trust.json\"}")
      ;;
    umoci)
      variants+=("{\"name\": \"umoci\", \"prepare\": \"true\", \"cmd\": \"umoci repack --image $W/oci:app-v2-stash $W/bundle\"}")
      ;;
    buildah)
      B="buildah --root $W/buildah --runroot $W/buildah-run --storage-driver vfs"
      if command -v buildah > /dev/null &&
        ctr=$($B from --pull-never "oci:$W/oci:app-v2" 2> "$W/buildah.log") &&
        mnt=$($B mount "$ctr" 2>> "$W/buildah.log"); then
        modify "$mnt"
        variants+=("{\"name\": \"buildah\", \"prepare\": \"$B rmi -f stash-bench > /dev/null 2>&1 || true\", \"cmd\": \"$B commit --quiet $ctr stash-bench\"}")
      else
        echo "buildah does not run here (see $W/buildah.log); left out" >&2
      fi
      ;;
    *) die "unknown tool $t" ;;
  esac
done
spec=$(IFS=,; echo "{\"variants\": [${variants[*]}]}")
echo "$spec" > "$W/spec.json"

python3 - "$W/pair.json" "$RUNS" "$W/spec.json" << 'EOF'
# Paired rounds: each round runs every variant once, the order alternating by round; wall and
# user+sys of the timed command (rusage of children) and the load average.
import json, os, resource, subprocess, sys, time
out, rounds, spec = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
samples = []
for r in range(rounds):
    order = spec["variants"] if r % 2 == 0 else list(reversed(spec["variants"]))
    for v in order:
        subprocess.run(v["prepare"], shell=True, check=True, stdout=subprocess.DEVNULL)
        subprocess.run("sync", shell=True)
        load = os.getloadavg()[0]
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run(v["cmd"], shell=True, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            sys.exit(f"FAILED {v['cmd']}: {p.stderr.decode()[-800:]}")
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        samples.append(dict(round=r, name=v["name"], wall=wall, cpu=cpu, load1=load))
        print(f"round {r} {v['name']:24s} wall {wall:7.3f} s  cpu {cpu:7.3f} s  load {load:5.2f}",
              file=sys.stderr, flush=True)
json.dump(dict(spec=spec, samples=samples), open(out, "w"), indent=1)
EOF

# Layer sizes. layerstore: the stash's tar (export-layer), and gzip -6 of it; umoci: its gzip
# blob and what it inflates to; buildah: the layer as containers-storage keeps it (tar-split
# aside, the uncompressed diff size it records).
diff_id=$(jq -r .diff_id "$W/ls.json" 2> /dev/null || jq -r .diff_id "$W/ls-trust.json")
ls_tar=$("$L" --store "$W/store" export-layer "$diff_id" | wc -c)
ls_gz=$("$L" --store "$W/store" export-layer "$diff_id" | gzip -6 -n | wc -c)
um_gz=- um_tar=-
if [[ " $TOOLS " == *" umoci "* ]]; then
  m=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "app-v2-stash") | .digest' "$W/oci/index.json" | sed 's/sha256://')
  blob=$(jq -r '.layers[-1].digest' "$W/oci/blobs/sha256/$m" | sed 's/sha256://')
  um_gz=$(stat -c %s "$W/oci/blobs/sha256/$blob")
  um_tar=$(zcat "$W/oci/blobs/sha256/$blob" | wc -c)
fi
bu_tar=-
if grep -q '"buildah"' "$W/spec.json"; then
  bu_tar=$(buildah --root "$W/buildah" --runroot "$W/buildah-run" --storage-driver vfs \
    inspect --type image stash-bench 2> /dev/null | jq -r '.OCIv1.rootfs.diff_ids[-1]' | sed 's/sha256://' |
    { read -r d; jq -r --arg d "sha256:$d" '.[] | select(.["diff-digest"] == $d) | .["diff-size"]' "$W/buildah/vfs-layers/layers.json" 2> /dev/null || echo -; })
fi

mkdir -p "$(dirname "$REPORT")"
python3 - "$W/pair.json" "$REPORT" "$L" "$files" "$changed" "$ls_tar" "$ls_gz" "$um_tar" "$um_gz" "$bu_tar" "$(machine_lines)" "$(cat "$BENCH/GIT_HEAD" 2> /dev/null || git -C "$repo" rev-parse --short HEAD)" << 'EOF'
import json, statistics as st, sys
pair, report, binary, files, changed, ls_tar, ls_gz, um_tar, um_gz, bu_tar, machine, head = sys.argv[1:]
d = json.load(open(pair))
names = [v["name"] for v in d["spec"]["variants"]]
by = {n: [s for s in d["samples"] if s["name"] == n] for n in names}
def med(n, k): return st.median(s[k] for s in by[n])
def mn(n, k): return min(s[k] for s in by[n])
rounds = max(s["round"] for s in d["samples"]) + 1
lines = [
    "# stash vs umoci repack (and buildah commit)", "",
    "```", machine, f"commit: {head}", f"binary: {binary}", "```", "",
    f"app-v2 of the corpus, unpacked by umoci: {files} regular files, {changed} of them (every 20th, "
    "5%) with a line appended. layerstore stashes the bundle's rootfs on app-v2 (`stash ROOT --tag "
    "bench --parent app-v2`, a fresh copy of a store holding app-v2 each round); umoci repacks the "
    "bundle (`umoci repack --image oci:app-v2-stash`); buildah (vfs) commits a working container of "
    "app-v2 with the same change. "
    f"{rounds} paired rounds (every tool once per round, order alternating); median wall (minimum) "
    "and median user+sys CPU of the process tree; load average of the shared machine beside.", "",
    "| tool | wall, median (min) | CPU, median | load (1 min) |", "| --- | ---: | ---: | ---: |",
]
for n in names:
    lines.append(f"| {n} | {med(n,'wall'):.3f} s ({mn(n,'wall'):.3f} s) | {med(n,'cpu'):.3f} s | {med(n,'load1'):.1f} |")
if "layerstore" in by and "umoci" in by:
    ratios = []
    for r in range(rounds):
        a = [s for s in by["layerstore"] if s["round"] == r]
        b = [s for s in by["umoci"] if s["round"] == r]
        if a and b: ratios.append(b[0]["wall"] / a[0]["wall"])
    lines += ["", f"umoci repack / layerstore stash, per-round wall ratio: median {st.median(ratios):.2f}x "
              f"(range {min(ratios):.2f}-{max(ratios):.2f}); CPU {med('umoci','cpu')/med('layerstore','cpu'):.2f}x."]
lines += ["", "| new layer | uncompressed tar | gzip |", "| --- | ---: | ---: |",
          f"| layerstore (stored as the tar; gzip -6 -n of it for comparison) | {ls_tar} B | {ls_gz} B |",
          f"| umoci (its gzip blob, and what it inflates to) | {um_tar} B | {um_gz} B |"]
if bu_tar != "-":
    lines.append(f"| buildah (containers-storage's diff size) | {bu_tar} B | - |")
lines += ["", "Reproduce (as root): `LAYERSTORE=/var/tmp/ls-bench/layerstore RUNS=5 benches/stash-vs-umoci.sh`; "
          "raw samples in `stash-pair.json` beside this file.", ""]
open(report, "w").write("\n".join(lines))
print("\n".join(lines))
EOF
cp "$W/pair.json" "$(dirname "$REPORT")/stash-pair.json"
