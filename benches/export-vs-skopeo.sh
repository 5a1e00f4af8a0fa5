#!/usr/bin/env bash
# Export of one corpus image to an oci-archive: `layerstore export` from its store against
# `skopeo copy` of the same image from containers-storage (vfs), in paired rounds (each round
# runs both once, the order alternating), so both see the same load. Issue 14's benchmark.
#
# Setup (not timed): the image is imported into a fresh layerstore store and copied with skopeo
# into a containers-storage at WORK (vfs driver, root and runroot under WORK). Timed: the export
# of each into WORK/*.tar, removed before every run. Both write gzip layers (layerstore: the
# compression the corpus image was imported with; skopeo: its default for oci-archive), and the
# report lists the archive sizes and layer digests beside the times.
#
# Variables: LAYERSTORE (binary; default target/release/layerstore), IMAGE (default app-v2),
# ROUNDS (default 8), WORK (default /var/tmp/ls-export-bench; its filesystem is what is
# measured), REPORT (default benches/results/runs/DATE-MACHINE/export.md), LAYERSTORE_CORPUS.
# Needs: root (containers-storage), skopeo, python3; the corpus (benches/README.md).
set -euo pipefail
BENCH_NAME=export-vs-skopeo
. "$(dirname "$(readlink -f "$0")")/lib.sh"
need_corpus
L=${LAYERSTORE:-$repo/target/release/layerstore}
IMAGE=${IMAGE:-app-v2}
ROUNDS=${ROUNDS:-8}
WORK=${WORK:-/var/tmp/ls-export-bench}
REPORT=${REPORT:-$(run_dir)/export.md}
[ -x "$L" ] || die "no binary at $L (cargo build --release -p layerstore-cli, or set LAYERSTORE)"
command -v skopeo > /dev/null || die "needs skopeo"
[ "$(id -u)" = 0 ] || die "needs root (containers-storage)"

umount_under "$WORK"
rm -rf "$WORK"
mkdir -p "$WORK"
CS="containers-storage:[vfs@$WORK/cs-root+$WORK/cs-run]localhost/bench:$IMAGE"
STORE=$WORK/store
echo "setup: import $IMAGE into $STORE and copy it into containers-storage" >&2
"$L" --store "$STORE" import -q "oci:$GOCI:$IMAGE"
skopeo copy -q "oci:$GOCI:$IMAGE" "$CS"

cat > "$WORK/spec.json" << EOF
{"variants": [
 {"name": "layerstore", "prepare": "rm -f $WORK/ls.tar",
  "cmd": "$L --store $STORE export $IMAGE oci-archive:$WORK/ls.tar:$IMAGE"},
 {"name": "skopeo-cs", "prepare": "rm -f $WORK/sk.tar",
  "cmd": "skopeo copy -q '$CS' oci-archive:$WORK/sk.tar:$IMAGE"}
]}
EOF

# The paired driver: per run wall time and user+sys CPU of the command (rusage of children).
python3 - "$WORK/pairs.json" "$ROUNDS" "$WORK/spec.json" << 'EOF' | tee "$WORK/pairs.txt" >&2
import json, os, resource, statistics as st, subprocess, sys, time
out, rounds, spec = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
vs, samples = spec["variants"], []
for r in range(rounds):
    for v in (vs if r % 2 == 0 else vs[::-1]):
        subprocess.run(v["prepare"], shell=True, check=True)
        subprocess.run("sync", shell=True, check=True)
        load = os.getloadavg()[0]
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(v["cmd"], shell=True, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        samples.append(dict(round=r, name=v["name"], wall=wall, cpu=cpu, load1=load))
        print(f"round {r} {v['name']:10s} wall {wall:7.3f} s  cpu {cpu:7.3f} s  load {load:5.2f}", flush=True)
json.dump(dict(spec=spec, samples=samples), open(out, "w"), indent=1)
print()
for v in vs:
    w = [s["wall"] for s in samples if s["name"] == v["name"]]
    c = [s["cpu"] for s in samples if s["name"] == v["name"]]
    print(f"SUMMARY {v['name']} wall_median {st.median(w):.3f} wall_min {min(w):.3f} cpu_median {st.median(c):.3f} cpu_min {min(c):.3f}")
a, b = vs[0]["name"], vs[1]["name"]
ratios = [next(s["wall"] for s in samples if s["round"] == r and s["name"] == b) /
          next(s["wall"] for s in samples if s["round"] == r and s["name"] == a) for r in range(rounds)]
cr = [next(s["cpu"] for s in samples if s["round"] == r and s["name"] == b) /
      next(s["cpu"] for s in samples if s["round"] == r and s["name"] == a) for r in range(rounds)]
print(f"RATIO wall {st.median(ratios):.2f} cpu {st.median(cr):.2f} per_round {' '.join('%.2f' % x for x in ratios)}")
loads = [s["load1"] for s in samples]
print(f"LOAD min {min(loads):.2f} median {st.median(loads):.2f} max {max(loads):.2f}")
EOF

field() { awk -v k="$1" -v n="$2" -v f="$3" '$1 == k && $2 == n { for (i = 3; i < NF; i++) if ($i == f) print $(i + 1) }' "$WORK/pairs.txt"; }
ratio() { awk -v f="$1" '$1 == "RATIO" { for (i = 2; i < NF; i++) if ($i == f) print $(i + 1) }' "$WORK/pairs.txt"; }
layers() { skopeo inspect --raw "oci-archive:$1:$IMAGE" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(", ".join(l["digest"][7:19] + " " + l["mediaType"].rsplit(".", 1)[-1] for l in m["layers"]))'; }
commit=$(cat "$BENCH/GIT_HEAD" 2> /dev/null || git -C "$repo" rev-parse --short HEAD)
mkdir -p "$(dirname "$REPORT")"
{
  echo "# Export of $IMAGE to an oci-archive: layerstore vs skopeo from containers-storage"
  echo
  echo '```'
  machine_lines
  echo "filesystem: $(findmnt -no FSTYPE --target "$WORK") ($WORK)"
  echo "binary: $L (sha256 $(sha256sum "$L" | cut -c1-12), commit ${commit:0:12})"
  echo "skopeo: $(skopeo --version)"
  echo "rounds: $ROUNDS paired (order alternating), $(awk '$1 == "LOAD" { print "load average " $3 "-" $7 ", median " $5 }' "$WORK/pairs.txt")"
  echo '```'
  echo
  echo "| tool | wall median | wall min | CPU (user+sys) median | archive |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  echo "| \`layerstore export\` | $(field SUMMARY layerstore wall_median) s | $(field SUMMARY layerstore wall_min) s | $(field SUMMARY layerstore cpu_median) s | $(stat -c %s "$WORK/ls.tar") B |"
  echo "| \`skopeo copy\` containers-storage (vfs) → oci-archive | $(field SUMMARY skopeo-cs wall_median) s | $(field SUMMARY skopeo-cs wall_min) s | $(field SUMMARY skopeo-cs cpu_median) s | $(stat -c %s "$WORK/sk.tar") B |"
  echo
  echo "skopeo / layerstore, per-round medians: wall $(ratio wall)×, CPU $(ratio cpu)× (per round: $(awk '$1 == "RATIO" { for (i = 1; i <= NF; i++) if ($i == "per_round") { for (j = i + 1; j <= NF; j++) printf "%s ", $j } }' "$WORK/pairs.txt"))."
  echo
  echo "Layers (digest prefix, media type): layerstore $(layers "$WORK/ls.tar"); skopeo $(layers "$WORK/sk.tar")."
  echo
  echo "Commands (setup, then each timed with its output removed first):"
  echo
  echo '```sh'
  echo "layerstore --store STORE import oci:\$LAYERSTORE_CORPUS/oci:$IMAGE"
  echo "skopeo copy oci:\$LAYERSTORE_CORPUS/oci:$IMAGE 'containers-storage:[vfs@WORK/cs-root+WORK/cs-run]localhost/bench:$IMAGE'"
  echo "layerstore --store STORE export $IMAGE oci-archive:WORK/ls.tar:$IMAGE"
  echo "skopeo copy 'containers-storage:[vfs@WORK/cs-root+WORK/cs-run]localhost/bench:$IMAGE' oci-archive:WORK/sk.tar:$IMAGE"
  echo '```'
  echo
  echo "Raw samples: \`$WORK/pairs.json\`. Reproduce: \`ROUNDS=$ROUNDS IMAGE=$IMAGE benches/export-vs-skopeo.sh\`."
} > "$REPORT"
echo "$BENCH_NAME: wrote $REPORT" >&2
