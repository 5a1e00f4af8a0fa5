# 4-image stored size and hardlink checkout of app-v2, per variant, paired (w2 then best, then best then w2).
set -e
W=/var/tmp/ls-writers/four
for rep in 1 2; do
for n in $( [ $rep = 1 ] && echo "2 16" || echo "16 2"); do
  B=/var/tmp/ls-writers/layerstore-w$n; S=$W/ls-w$n
  rm -rf $S $W/co-w$n-*; mkdir -p $W; sync
  for t in base-v1 app-v1 base-v2 app-v2; do
    /usr/bin/time -f "import $t w$n %e s wall %U user %S sys" $B --store $S import oci:/work/corpus/oci:$t > /dev/null
  done
  sync; echo "w$n rep$rep du -sb $(du -sb $S | cut -f1) files $(find $S -type f | wc -l)"
  /usr/bin/time -f "checkout1 w$n %e s wall %U user %S sys" $B --store $S checkout app-v2 $W/co-w$n-1 --mode hardlink > /dev/null
  sync
  /usr/bin/time -f "checkout2 w$n %e s wall %U user %S sys" $B --store $S checkout app-v2 $W/co-w$n-2 --mode hardlink > /dev/null
  sync; echo "w$n rep$rep du -sb after checkouts (store) $(du -sb $S | cut -f1)"
done; done
