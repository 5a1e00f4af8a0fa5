#!/bin/bash
# build-gc-store.sh B: the gc-scale.sh store (10 images imported, 5 rm-ed) built with /var/tmp/ls-bench-B/layerstore
# into /var/tmp/perf-ab/gc-B/store.before-gc (gc-B/oci: make-many-files OCI 10 10000, shared by both binaries)
set -eu
b=$1; w=/var/tmp/perf-ab/gc-$b; ls=/var/tmp/ls-bench-$b/layerstore
rm -rf $w/store $w/store.before-gc
export LAYERSTORE_STORE=$w/store
t0=$(date +%s.%N)
for i in $(seq 0 9); do $ls -q import "oci:$w/oci:img$i"; done
t1=$(date +%s.%N)
echo "import10 $b $(python3 -c "print('%.1f' % ($t1 - $t0))") s load $(cut -d' ' -f1 /proc/loadavg)"
$ls --json df > $w/df-full.json
$ls -q rm img5 img6 img7 img8 img9
$ls --json gc --dry-run > $w/gc-plan.json
mv $w/store $w/store.before-gc
echo built $b
