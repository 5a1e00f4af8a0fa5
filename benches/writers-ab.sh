#!/usr/bin/env bash
# A/B of the import's writer-pool size on a real disk (issue 20, target 5): fresh import of one
# image into an empty store by layerstore binaries built with different WRITERS constants, and
# skopeo copy into containers-storage, in paired rounds (every variant once per round, order
# rotating by one per round) so that load from other work on the machine hits all variants alike.
#
# Usage (as root, containers-storage overlay needs it):
#   BINS="/var/tmp/ls-writers/layerstore-w2 ..." [ROUNDS=8] [W=/var/tmp/ls-writers/work] \
#   [TAG=base-v1] [LAYERSTORE_CORPUS=/work/corpus] benches/writers-ab.sh OUT.json
# Each binary's name after the last '-' (e.g. w8) names its variant.
set -euo pipefail
self=$(readlink -f "$0"); here=$(dirname "$self")
source "$here/lib.sh"
out=${1:?usage: writers-ab.sh OUT.json}
CORPUS=${LAYERSTORE_CORPUS:-/work/corpus}
ROUNDS=${ROUNDS:-8}; TAG=${TAG:-base-v1}
W=${W:-/var/tmp/ls-writers/work}; CS_DRIVER=${CS_DRIVER:-overlay}
mkdir -p "$W"
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' > "$W/policy.json"
printf '[storage]\ndriver = "%s"\ngraphroot = "%s/cs/graph"\nrunroot = "%s/cs/run"\n' \
  "$CS_DRIVER" "$W" "$W" > "$W/storage.conf"
export CONTAINERS_STORAGE_CONF=$W/storage.conf
cs_reset="umount_under() { findmnt -rn -o TARGET | awk -v d=\"\$1\" '\$0 == d || index(\$0, d \"/\") == 1' | sort -r | while read -r m; do umount \"\$m\" 2>/dev/null || umount -l \"\$m\"; done; }; umount_under $W/cs; rm -rf $W/cs; mkdir -p $W/cs/graph $W/cs/run"
cs_cmd="skopeo --policy $W/policy.json copy -q oci:$CORPUS/oci:$TAG 'containers-storage:[$CS_DRIVER@$W/cs/graph+$W/cs/run]localhost/$TAG'"
python3 - "$W/spec.json" "$W" "$CORPUS" "$TAG" "$cs_reset" "$cs_cmd" $BINS <<'PY'
import json, sys
spec, w, corpus, tag, cs_reset, cs_cmd, *bins = sys.argv[1:]
v = []
for b in bins:
    n = b.rsplit("-", 1)[1]
    v.append(dict(name=n, prepare=f"rm -rf {w}/ls-{n}", cmd=f"{b} --store {w}/ls-{n} import oci:{corpus}/oci:{tag}"))
v.append(dict(name="skopeo-cs", prepare=cs_reset, cmd=cs_cmd))
json.dump(dict(variants=v, order="rotate"), open(spec, "w"), indent=1)
PY
python3 "$here/results/runs/2026-12-06-kvm-epyc-2core/pair.py" "$out" "$ROUNDS" "$W/spec.json"
# Per-round skopeo/variant ratios (pair.py only pairs its first two variants).
python3 - "$out" <<'PY'
import json, sys, statistics as st
d = json.load(open(sys.argv[1])); s = d["samples"]
names = [v["name"] for v in d["spec"]["variants"]]
rounds = sorted({x["round"] for x in s})
get = lambda r, n: next((x for x in s if x["round"] == r and x["name"] == n and x["rc"] == 0), None)
print("\n| variant | n | wall median (min–max) s | user+sys median s | skopeo/variant per round | median ratio |")
print("|---|---|---|---|---|---|")
for n in names:
    xs = [x for x in s if x["name"] == n and x["rc"] == 0]
    w = [x["wall"] for x in xs]; c = [x["cpu"] for x in xs]
    rat = [get(r, "skopeo-cs")["wall"] / get(r, n)["wall"] for r in rounds if get(r, n) and get(r, "skopeo-cs")]
    print(f"| {n} | {len(w)} | {st.median(w):.3f} ({min(w):.3f}–{max(w):.3f}) | {st.median(c):.3f} | "
          f"{' '.join('%.2f' % r for r in rat)} | {st.median(rat):.2f} |")
print(f"load1 at samples: min {min(x['load1'] for x in s):.2f} median {st.median(x['load1'] for x in s):.2f} max {max(x['load1'] for x in s):.2f}")
PY
# Position effect: median wall by position in the round (0 = first).
python3 - "$out" <<'PY'
import json, sys, statistics as st
d = json.load(open(sys.argv[1])); s = [x for x in d["samples"] if x["rc"] == 0 and "pos" in x]
for n in [v["name"] for v in d["spec"]["variants"]]:
    by = {}
    for x in s:
        if x["name"] == n: by.setdefault(x["pos"], []).append(x["wall"])
    print(f"{n:10s} wall by position: " + "  ".join(f"{p}: {st.median(w):.3f}" for p, w in sorted(by.items())))
PY
