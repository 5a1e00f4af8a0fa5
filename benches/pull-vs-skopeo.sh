#!/usr/bin/env bash
# Pulling from a registry (issue 13's benchmark): a loopback docker-registry serves the corpus,
# and in each round, in alternating order, three commands run against empty stores:
#   pull        layerstore import docker://127.0.0.1:PORT/corpus:TAG
#   skopeo-cs   skopeo copy docker://127.0.0.1:PORT/corpus:TAG containers-storage:[DRIVER@…]
#   oci-import  layerstore import oci:$LAYERSTORE_CORPUS/oci:TAG (the same image, no network)
# Paired rounds, so a tool and its peer see the same machine load; the report gives medians
# and minimums of wall time, and user+sys CPU time. Then the bytes an update fetches: TO
# pulled into a store that holds FROM (base-v1 -> base-v2, app-v1 -> app-v2), summed from
# `import --json`'s fetched_bytes, against the whole image's blob bytes.
#
# Usage (as root: the containers-storage overlay driver needs it):
#   LAYERSTORE_CORPUS=/work/corpus [LAYERSTORE=target/release/layerstore] benches/pull-vs-skopeo.sh
# Environment:
#   LAYERSTORE   the binary (default <repo>/target/release/layerstore)
#   IMAGE        tag to pull (default app-v2)
#   RUNS         rounds (default 5)
#   CS_DRIVER    containers-storage driver to try first (default overlay; falls back to vfs)
#   WORK_PARENT  where stores live (default ${TMPDIR:-/var/tmp})
#   REPORT       the Markdown report (default RUN_DIR/pull.md, see run_dir in benches/lib.sh)
# Needs: docker-registry, skopeo, python3.
set -euo pipefail
BENCH_NAME=pull-vs-skopeo
# shellcheck source=benches/lib.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
need_corpus
L=${LAYERSTORE:-$repo/target/release/layerstore}
[ -x "$L" ] || die "no layerstore binary at $L (cargo build --release, or set LAYERSTORE)"
for t in docker-registry skopeo python3; do
  command -v "$t" > /dev/null || die "$t not found"
done
IMAGE=${IMAGE:-app-v2}
RUNS=${RUNS:-5}
CS_DRIVER=${CS_DRIVER:-overlay}
W=$(mktemp -d "${WORK_PARENT:-${TMPDIR:-/var/tmp}}/pull-bench.XXXXXX")
REPORT=${REPORT:-$(run_dir)/pull.md}
reg_pid=
cleanup() {
  [ -z "$reg_pid" ] || kill "$reg_pid" 2> /dev/null || true
  umount_under "$W"
  rm -rf "$W"
}
trap cleanup EXIT

# The registry, on a free loopback port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HOST=127.0.0.1:$port
cat > "$W/registry.yml" << EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $W/registry
http:
  addr: $HOST
EOF
docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
  (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
  sleep 0.1
done
tags=$(python3 -c '
import json, sys
for m in json.load(open(sys.argv[1]))["manifests"]:
    print(m.get("annotations", {}).get("org.opencontainers.image.ref.name", ""))' "$GOCI/index.json")
for t in $tags; do
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$GOCI:$t" "docker://$HOST/corpus:$t"
done

# containers-storage in a temporary graph root; overlay if this kernel and filesystem allow.
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' > "$W/policy.json"
cs_copy() { # DRIVER TAG
  skopeo --policy "$W/policy.json" copy -q --src-tls-verify=false "docker://$HOST/corpus:$2" \
    "containers-storage:[$1@$W/cs/graph+$W/cs/run]localhost/$2"
}
reset_cs() { umount_under "$W/cs"; rm -rf "$W/cs"; mkdir -p "$W/cs/graph" "$W/cs/run"; }
reset_cs
driver=$CS_DRIVER
if ! cs_copy "$driver" "$IMAGE" 2> "$W/cs-probe.log"; then
  driver=vfs
fi
reset_cs

# One timed command: its wall, user and sys seconds on one line.
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$W/time" "$@" > /dev/null
  t1=$(date +%s.%N)
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') $(cat "$W/time")"
}
run_tool() { # TOOL: prepare untimed, then time it (the wrapper below is written first)
  case $1 in
    pull)
      rm -rf "$W/ls-pull"
      sync
      timed "$L" --store "$W/ls-pull" import "docker://$HOST/corpus:$IMAGE" --tls-verify=false
      ;;
    skopeo-cs)
      reset_cs
      sync
      timed "$W/cs_copy_cmd"
      ;;
    oci-import)
      rm -rf "$W/ls-oci"
      sync
      timed "$L" --store "$W/ls-oci" import "oci:$GOCI:$IMAGE"
      ;;
  esac
}
# /usr/bin/time needs a command, not a function: a small wrapper script.
cat > "$W/cs_copy_cmd" << EOF
#!/bin/sh
exec skopeo --policy "$W/policy.json" copy -q --src-tls-verify=false "docker://$HOST/corpus:$IMAGE" \
  "containers-storage:[$driver@$W/cs/graph+$W/cs/run]localhost/$IMAGE"
EOF
chmod +x "$W/cs_copy_cmd"

tools=(pull skopeo-cs oci-import)
: > "$W/rounds.tsv"
for round in $(seq "$RUNS"); do
  order=("${tools[@]}")
  if [ $((round % 2)) = 0 ]; then order=(oci-import skopeo-cs pull); fi
  for t in "${order[@]}"; do
    echo "round $round: $t" >&2
    echo "$round $t $(run_tool "$t")" >> "$W/rounds.tsv"
  done
done

# Bytes fetched by updates.
fetched() { # FROM TO: bytes TO's import fetches into a store holding FROM; and TO's blob bytes
  rm -rf "$W/ls-upd"
  "$L" --store "$W/ls-upd" import -q "docker://$HOST/corpus:$1" --tls-verify=false
  "$L" --store "$W/ls-upd" --json import "docker://$HOST/corpus:$2" --tls-verify=false |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["fetched_bytes"], sum(l["blob_size"] for l in r["layers"]), sum(1 for l in r["layers"] if l["fetched_bytes"]), len(r["layers"]))'
}
upd_base=$(fetched base-v1 base-v2)
upd_app=$(fetched app-v1 app-v2)

commit=$(git -C "$repo" rev-parse --short HEAD 2> /dev/null || echo unknown)
mkdir -p "$(dirname "$REPORT")"
python3 - "$W/rounds.tsv" "$IMAGE" "$driver" "$RUNS" "$upd_base" "$upd_app" > "$W/table.md" << 'EOF'
import statistics, sys
rows, image, driver, runs, upd_base, upd_app = sys.argv[1:7]
by = {}
for line in open(rows):
    rnd, tool, wall, user, sys_ = line.split()
    by.setdefault(tool, []).append((float(wall), float(user) + float(sys_)))
def med(t, i): return statistics.median(x[i] for x in by[t])
def mn(t, i): return min(x[i] for x in by[t])
print(f"| {image}, {runs} paired rounds | wall median (min) | CPU user+sys median |")
print("| --- | --- | --- |")
names = {"pull": "layerstore pull (docker://, loopback registry)",
         "skopeo-cs": f"skopeo copy docker:// → containers-storage ({driver})",
         "oci-import": "layerstore import oci: (same image, from the layout)"}
for t in ["pull", "skopeo-cs", "oci-import"]:
    print(f"| {names[t]} | {med(t,0):.2f} s ({mn(t,0):.2f} s) | {med(t,1):.2f} s |")
print()
print(f"- skopeo / pull, wall medians: **{med('skopeo-cs',0)/med('pull',0):.2f}×** (issue 13 asks ≥ 3×); "
      f"minimums: {mn('skopeo-cs',0)/mn('pull',0):.2f}×")
print(f"- pull / OCI-layout import, wall medians: **{med('pull',0)/med('oci-import',0):.2f}×** (issue 13 asks ≤ 1.2×); "
      f"minimums: {mn('pull',0)/mn('oci-import',0):.2f}×")
print()
print("| update | fetched | whole image's blobs | layers fetched |")
print("| --- | --- | --- | --- |")
for name, u in [("base-v1 → base-v2", upd_base), ("app-v1 → app-v2", upd_app)]:
    f, total, nf, n = map(int, u.split())
    print(f"| {name} | {f:,} B ({f/1e6:.1f} MB) | {total:,} B ({total/1e6:.1f} MB) | {nf} of {n} |")
print()
print("Per round (wall s, CPU s):")
print()
print("| round | " + " | ".join(["pull", "skopeo-cs", "oci-import"]) + " |")
print("| --- | --- | --- | --- |")
rounds = {}
for line in open(rows):
    rnd, tool, wall, user, sys_ = line.split()
    rounds.setdefault(int(rnd), {})[tool] = f"{float(wall):.2f} ({float(user)+float(sys_):.2f})"
for r in sorted(rounds):
    print(f"| {r} | " + " | ".join(rounds[r].get(t, "-") for t in ["pull", "skopeo-cs", "oci-import"]) + " |")
EOF
{
  echo "# Pull from a loopback registry vs skopeo and vs an OCI-layout import"
  echo
  echo '```'
  machine_lines
  echo "commit: $commit"
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "stores on: $(df -T "$W" | awk 'NR==2 {print $2}') ($W)"
  echo '```'
  echo
  echo "Reproduce: \`LAYERSTORE_CORPUS=$CORPUS LAYERSTORE=target/release/layerstore RUNS=$RUNS benches/pull-vs-skopeo.sh\`"
  echo "(a docker-registry on 127.0.0.1 serves the corpus, pushed with skopeo; every timed"
  echo "command starts from an empty store; pull and skopeo fetch every layer over loopback)."
  echo
  cat "$W/table.md"
} > "$REPORT"
cat "$REPORT"
