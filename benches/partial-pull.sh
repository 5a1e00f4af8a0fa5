#!/usr/bin/env bash
# Partial pulls (issue 16): the base-v1 -> base-v2 update over a loopback docker-registry, as a
# gzip full pull against zstd:chunked partial pulls, same run, paired rounds (pair.py): wall
# time, CPU, and the bytes each fetched against the new layer's blob.
#
# Variants, each from the same starting store (base-v1 pulled from the registry as gzip):
#   gzip-full        base-v2 as gzip: the whole blob
#   chunked-skopeo   base-v2 as zstd:chunked written by skopeo (older annotation family), the
#                    first partial pull of the store: includes the sha256 backfill of the stored
#                    objects of sizes the TOC names
#   chunked-ls       base-v2 as zstd:chunked written by `layerstore push --compress zstd:chunked`
#                    (current family), same starting store (backfill included)
#   chunked-warm     as chunked-skopeo, from a store whose objects have their sha256 already (a
#                    partial pull made and removed before): the backfill's cost is the difference
#
# Usage (as root): LAYERSTORE=target/release/layerstore benches/partial-pull.sh
#   ROUNDS (default 5); WORK (default /var/tmp/partial-pull, removed at the end);
#   REPORT (default RUN_DIR/partial-pull.md, RUN_DIR as in benches/lib.sh).
set -euo pipefail
BENCH_NAME=partial-pull
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
need_corpus
L=$(readlink -f "${LAYERSTORE:-$repo/target/release/layerstore}")
ROUNDS=${ROUNDS:-5}
WORK=${WORK:-/var/tmp/partial-pull}
REPORT=${REPORT:-$(run_dir)/partial-pull.md}
PAIR=$repo/benches/pair.py
[ -x "$L" ] || die "no layerstore binary at $L (cargo build --release -p layerstore-cli)"
for t in docker-registry skopeo python3; do command -v $t > /dev/null || die "$t is not installed"; done

rm -rf "$WORK"
mkdir -p "$WORK"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
H=127.0.0.1:$port
cat > "$WORK/registry.yml" << YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: $H
YML
docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
REG=$!
cleanup() { kill "$REG" 2> /dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2> /dev/null && break; sleep 0.1; done

sk() { skopeo --insecure-policy copy -q --dest-tls-verify=false "$@"; }
echo "== pushing base-v2 as skopeo's zstd:chunked, base-v1 (gzip), base-v2 as gzip" >&2
# zstd:chunked first, into a repository of its own: once skopeo's blob info cache knows a blob of
# the same content in the destination, skopeo 1.9 pushes that one instead (without a TOC).
sk --dest-compress-format zstd:chunked "oci:$GOCI:base-v2" "docker://$H/bench/chunked:v2"
skopeo inspect --tls-verify=false --raw "docker://$H/bench/chunked:v2" | grep -q zstd-chunked.manifest-checksum ||
  die "skopeo did not write a zstd:chunked layer"
sk "oci:$GOCI:base-v1" "docker://$H/bench/base:v1"
sk "oci:$GOCI:base-v2" "docker://$H/bench/gzip:v2"
echo "== layerstore push base-v2 --compress zstd:chunked" >&2
"$L" --store "$WORK/src" init > /dev/null
"$L" --store "$WORK/src" import "oci:$GOCI:base-v2" > /dev/null
"$L" --store "$WORK/src" push --tls-verify=false --compress zstd:chunked base-v2 "docker://$H/bench/lz:v2" > /dev/null

imp() { echo "$L --store $1 import --tls-verify=false docker://$H/bench/$2"; }
"$L" --store "$WORK/s0" init > /dev/null
$(imp "$WORK/s0" base:v1) > /dev/null
# s1: s0 after a partial pull was made and removed again: its objects have their sha256.
cp -a "$WORK/s0" "$WORK/s1"
$(imp "$WORK/s1" chunked:v2) > /dev/null
"$L" --store "$WORK/s1" rm "$H/bench/chunked:v2" > /dev/null
"$L" --store "$WORK/s1" gc > /dev/null

fresh() { echo "rm -rf $WORK/s; cp -a $WORK/$1 $WORK/s"; }
cat > "$WORK/spec.json" << JSON
{"variants": [
 {"name": "gzip-full", "prepare": "$(fresh s0)", "cmd": "$(imp "$WORK/s" gzip:v2)"},
 {"name": "chunked-skopeo", "prepare": "$(fresh s0)", "cmd": "$(imp "$WORK/s" chunked:v2)"},
 {"name": "chunked-ls", "prepare": "$(fresh s0)", "cmd": "$(imp "$WORK/s" lz:v2)"},
 {"name": "chunked-warm", "prepare": "$(fresh s1)", "cmd": "$(imp "$WORK/s" chunked:v2)"}
]}
JSON
echo "== $ROUNDS paired rounds" >&2
python3 "$PAIR" "$WORK/pair.json" "$ROUNDS" "$WORK/spec.json" | tee "$WORK/pair.txt" >&2

# Bytes: one more pull of each with --json.
bytes() { # STORE-SNAPSHOT REF -> "fetched blob files held whole backfilled_objects backfilled_bytes"
  rm -rf "$WORK/s"
  cp -a "$WORK/$1" "$WORK/s"
  $(imp "$WORK/s" "$2") --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
l = [x for x in r["layers"] if not x["reused"]][0]
p = (l["stats"] or {}).get("partial")
if p is None:
    print(l["blob_size"], l["blob_size"], "-", "-", "-", "-", "-", "-")
else:
    print(p["fetched_bytes"], p["blob_size"], p["files"], p["held_files"], p["requests"],
          p["backfilled_objects"], p["backfilled_bytes"], p["whole"] or "-")'
}
min_hold_table() { # bytes fetched and ranges per MIN_HOLD, for skopeo's base-v2 blob over base-v1
  python3 - "$GOCI" "$WORK/registry" "$(skopeo inspect --tls-verify=false --raw "docker://$H/bench/chunked:v2")" << 'PY'
import gzip, hashlib, json, subprocess, sys, tarfile
goci, registry, manifest = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
hexd = manifest["layers"][0]["digest"][7:]
blob = f"{registry}/docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"
idx = json.load(open(f"{goci}/index.json"))
d = [m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "base-v1"][0]["digest"]
v1 = json.load(open(f"{goci}/blobs/sha256/{d[7:]}"))["layers"][0]["digest"]
held = set()
with tarfile.open(f"{goci}/blobs/sha256/{v1[7:]}", "r:gz") as t:
    for e in t:
        if e.isreg() and e.size > 0:
            held.add("sha256:" + hashlib.sha256(t.extractfile(e).read()).hexdigest())
ann = manifest["layers"][0]["annotations"]
off, clen = [int(x) for x in [v for k, v in ann.items() if k.endswith("manifest-position")][0].split(":")[:2]]
raw = open(blob, "rb").read()
toc = json.loads(subprocess.run(["zstd", "-dc"], input=raw[off:off + clen], capture_output=True, check=True).stdout)
ents = [e for e in toc["entries"] if e["type"] == "reg" and e.get("size", 0) > 0]
print(f"blob {len(raw)} bytes, {len(ents)} files with content, {sum(e['digest'] in held for e in ents)} of them held by base-v1")
print()
print("| MIN_HOLD | ranges | bytes (ranges) | + part headers | of the blob |")
print("| ---: | ---: | ---: | ---: | ---: |")
for mh in [0, 64, 128, 256, 512, 1024, 2048, 4096]:
    cur, fetch = 0, []
    for e in ents:
        if e["digest"] in held and e["endOffset"] - e["offset"] >= mh:
            if e["offset"] > cur:
                fetch.append(e["offset"] - cur)
            cur = e["endOffset"]
    if off - 8 > cur:
        fetch.append(off - 8 - cur)
    b, n = sum(fetch), len(fetch)
    print(f"| {mh} | {n} | {b} | {b + 170 * n} | {100 * (b + 170 * n) / len(raw):.2f} % |")
PY
}

{
  echo "# Partial pulls: base-v1 -> base-v2 over loopback (issue 16)"
  echo
  echo "Written by benches/partial-pull.sh, $ROUNDS paired rounds (pair.py: every variant once per"
  echo "round, order alternating), binary $L (sha256 $(sha256sum "$L" | cut -c1-16)), commit"
  echo "$(git -C "$repo" rev-parse --short HEAD)."
  echo
  echo '```'
  machine_lines
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "tools: $(skopeo --version), $(docker-registry --version 2> /dev/null | head -1)"
  echo '```'
  echo
  echo "## Bytes fetched for the new layer"
  echo
  echo "| variant | fetched | blob | fetched/blob | files | from the store | requests | backfilled objects | backfilled bytes | pulled whole because |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  for v in "gzip-full s0 gzip:v2" "chunked-skopeo s0 chunked:v2" "chunked-ls s0 lz:v2" "chunked-warm s1 chunked:v2"; do
    set -- $v
    read -r f b files held req bo bb why <<< "$(bytes "$2" "$3")"
    echo "| $1 | $f | $b | $(python3 -c "print(f'{100*$f/$b:.1f} %')") | $files | $held | $req | $bo | $bb | ${why} |"
  done
  echo
  echo "## Tuning: which held contents to skip (chunked::MIN_HOLD)"
  echo
  echo "A held payload shorter than MIN_HOLD compressed bytes is fetched anyway. Computed from skopeo's"
  echo "base-v2 blob and TOC and the contents of base-v1 (not timed); a multipart part header costs"
  echo "~170 bytes in docker-registry's answers (measured: a 3-range answer of 30 bytes was 535 bytes)."
  echo
  min_hold_table
  echo
  echo "## What a range costs docker-registry"
  echo
  echo "One GET of the skopeo blob, 3 times each (curl's time_total, seconds): the whole blob, and"
  echo "1,000 ranges of 100 bytes (the largest request a partial pull makes)."
  echo
  u="http://$H/v2/bench/chunked/blobs/$(skopeo inspect --tls-verify=false --raw "docker://$H/bench/chunked:v2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')"
  r="bytes=$(python3 -c "print(','.join(f'{i*10000}-{i*10000+99}' for i in range(1000)))")"
  echo '```'
  for _ in 1 2 3; do
    echo "whole: $(curl -s -o /dev/null -w '%{time_total}' "$u")  1000 ranges: $(curl -s -o /dev/null -w '%{time_total}' -H "Range: $r" "$u")"
  done
  echo '```'
  echo
  echo "## Wall time and CPU (user+sys of the import process)"
  echo
  echo '```'
  sed -n '/^$/,$p' "$WORK/pair.txt" | sed '1d'
  echo '```'
} > "$REPORT.tmp"
mkdir -p "$(dirname "$REPORT")"
mv "$REPORT.tmp" "$REPORT"
cp "$WORK/pair.json" "$(dirname "$REPORT")/raw/pair-partial-pull.json" 2> /dev/null || true
echo "wrote $REPORT" >&2
