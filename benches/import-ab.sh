#!/usr/bin/env bash
# A/B of fresh imports on a real disk (issue 20, target 5): one image imported into an empty store
# by each layerstore variant, and `skopeo copy` of it into containers-storage, in paired rounds
# (every variant once per round, the order rotating by one per round, so that load from other
# work hits all variants alike). Then, per layerstore variant, the four-image store of the series
# (stored bytes, index bytes, files) and two hardlink checkouts of app-v2 (the first makes the
# variants, the second only links).
#
# Every sample writes into a directory never used before, and nothing is deleted until the end:
# on an ext4 without a journal (this machine's disk), creating files where thousands were deleted
# in the last minutes costs up to 10x the kernel time (ext4 skips recently deleted inodes, one
# inode-table lookup each: `recently_deleted` in perf), which an `rm -rf` of the previous sample's
# store right before each run turned into the larger part of what was measured.
#
# Usage (as root, containers-storage overlay needs it):
#   VARIANTS='NAME=BIN [INIT-ARGS...];NAME=...' [ROUNDS=8] [W=/var/tmp/import-ab] [TAG=base-v1]
#   [CS_DRIVER=overlay] [FOUR=1] [LAYERSTORE_CORPUS=/work/corpus] benches/import-ab.sh OUT.json
# INIT-ARGS, if any, go to `BIN --store DIR init` before the import (e.g. --inline-threshold 16384);
# without them the import creates the store. W needs about (variants+1) x ROUNDS x 130 MB.
set -euo pipefail
BENCH_NAME=import-ab
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
out=$(readlink -f "${1:?usage: import-ab.sh OUT.json}")
need_corpus
ROUNDS=${ROUNDS:-8}
TAG=${TAG:-base-v1}
W=${W:-/var/tmp/import-ab}
CS_DRIVER=${CS_DRIVER:-overlay}
[ -n "${VARIANTS:-}" ] || die "set VARIANTS='NAME=BIN [INIT-ARGS...];...'"
[ ! -e "$W" ] || die "$W exists: give a directory not used before (W=...)"
mkdir -p "$W"
W=$(readlink -f "$W")
cleanup() { umount_under "$W"; rm -rf "$W"; }
trap cleanup EXIT
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' > "$W/policy.json"
python3 - "$W" "$GOCI" "$TAG" "$CS_DRIVER" "$ROUNDS" "$VARIANTS" > "$W/spec.json" << 'PY'
import json, shlex, sys
w, oci, tag, driver, rounds, variants = sys.argv[1:]
v = []
for item in filter(None, (x.strip() for x in variants.split(";"))):
    name, rest = item.split("=", 1)
    binary, *init = shlex.split(rest)
    # {r}: the round, filled in by pair.py (one fresh directory per sample).
    store = f"{w}/s/{name}-{{r}}"
    prep = f"{binary} --store {store} init {shlex.join(init)} > /dev/null" if init else "true"
    v.append(dict(name=name, bin=binary, init=init, prepare=prep,
                  cmd=f"{binary} --store {store} -q import oci:{oci}:{tag} > /dev/null"))
g = f"{w}/s/cs-{{r}}"
v.append(dict(name="skopeo-cs", prepare=f"mkdir -p {g}/graph {g}/run",
              cmd=f"skopeo --policy {w}/policy.json copy -q oci:{oci}:{tag} "
                  f"'containers-storage:[{driver}@{g}/graph+{g}/run]localhost/{tag}'"))
json.dump(dict(variants=v, order="rotate", per_round=True), sys.stdout, indent=1)
PY
mkdir -p "$W/s"
python3 "$here/pair.py" "$out" "$ROUNDS" "$W/spec.json"
python3 - "$out" << 'PY'
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
print(f"\nload1 at samples: min {min(x['load1'] for x in s):.2f} median {st.median(x['load1'] for x in s):.2f} max {max(x['load1'] for x in s):.2f}")
PY
[ "${FOUR:-1}" = 1 ] || exit 0
# The four-image store and hardlink checkouts, per layerstore variant, in fresh directories.
echo
echo "| variant | 4-image store du -sb | index.sqlite | files | checkout 1 wall / CPU s | checkout 2 wall / CPU s |"
echo "|---|---|---|---|---|---|"
python3 -c 'import json,sys; [print(v["name"], v["bin"], *v["init"]) for v in json.load(open(sys.argv[1]))["variants"] if "bin" in v]' \
  "$W/spec.json" | while read -r name bin init; do
  S=$W/four-$name
  # shellcheck disable=SC2086 # INIT-ARGS are words
  [ -z "$init" ] || "$bin" --store "$S" init $init > /dev/null
  for t in base-v1 app-v1 base-v2 app-v2; do "$bin" --store "$S" -q import "oci:$GOCI:$t" > /dev/null; done
  sync
  size=$(du -sb "$S" | cut -f1); index=$(stat -c %s "$S/index.sqlite"); files=$(find "$S" -type f | wc -l)
  c1=$(/usr/bin/time -f '%e / %U+%S' "$bin" --store "$S" checkout app-v2 "$W/co-$name-1" --mode hardlink 2>&1 > /dev/null | tail -n 1)
  sync
  c2=$(/usr/bin/time -f '%e / %U+%S' "$bin" --store "$S" checkout app-v2 "$W/co-$name-2" --mode hardlink 2>&1 > /dev/null | tail -n 1)
  echo "| $name | $size | $index | $files | $c1 | $c2 |"
done
