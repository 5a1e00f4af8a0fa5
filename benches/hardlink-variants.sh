#!/usr/bin/env bash
# Hardlink checkouts with per-metadata variants (issue 19) against `ostree checkout -H`: time of
# the first checkout of each image (layerstore makes its variants), of a second one (all links),
# and the bytes on disk each tool adds beyond its store of distinct content.
# Usage (as root, so owners are kept): benches/hardlink-variants.sh [OCI-LAYOUT] [WORKDIR]
#   OCI-LAYOUT defaults to /work/corpus/oci; WORKDIR (default /var/tmp/ls-hl) is removed first.
# Needs: a release build of layerstore (target/release/layerstore), ostree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
L=${LAYERSTORE:-$here/../target/release/layerstore}
layout=${1:-/work/corpus/oci}
work=${2:-/var/tmp/ls-hl}
tags=$(python3 -c 'import json,sys
for m in json.load(open(sys.argv[1]+"/index.json"))["manifests"]:
    print(m["annotations"]["org.opencontainers.image.ref.name"])' "$layout")
rm -rf "$work"; mkdir -p "$work"
store=$work/store repo=$work/repo
du_k() { du -sk "$@" | awk '{s += $1} END {print s}'; }
now() { date +%s.%N; }
el() { echo "$2 - $1" | bc; }

for t in $tags; do "$L" --store "$store" import -q "oci:$layout:$t"; done
ostree --repo="$repo" init --mode=bare
for t in $tags; do
  "$L" --store "$store" checkout -q "$t" "$work/src-$t"
  ostree --repo="$repo" commit --branch="$t" --tree=dir="$work/src-$t" > /dev/null
  rm -rf "$work/src-$t"
done
sync
store_k=$(du_k "$store"); repo_k=$(du_k "$repo")
echo "store before checkouts: ${store_k} KiB; ostree bare repo: ${repo_k} KiB"

for round in 1 2; do
  for t in $tags; do
    sync
    a=$(now); "$L" --store "$store" checkout -q "$t" "$work/ls-$round-$t" --mode hardlink; b=$(now)
    sync
    c=$(now); ostree --repo="$repo" checkout -H "$t" "$work/os-$round-$t"; d=$(now)
    echo "round $round $t: layerstore $(el "$a" "$b") s, ostree -H $(el "$c" "$d") s"
  done
done
sync
# du counts each inode once per invocation: store + its checkouts against the store alone.
ls_total=$(du_k "$store" "$work"/ls-*); os_total=$(du_k "$repo" "$work"/os-*)
echo "layerstore: store now $(du_k "$store") KiB (variants $(du_k "$store/variants") KiB);" \
  "store + 10 checkouts ${ls_total} KiB: +$((ls_total - store_k)) KiB over the store before"
echo "ostree: repo + 10 checkouts ${os_total} KiB: +$((os_total - repo_k)) KiB over the repo"
