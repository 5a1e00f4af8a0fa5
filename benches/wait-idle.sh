#!/usr/bin/env bash
# Waits until the machine is idle before a timed run: on a shared VM (2 CPUs, other people's
# cargo builds and test suites, hypervisor steal) a busy neighbour doubles wall times.
#
# Usage: benches/wait-idle.sh [MAX_SECONDS [LOG]]
#   Samples /proc/stat over 2 s windows until less than IDLE_BUSY percent (default 10) of the
#   CPU time is busy (user+nice+system+irq+softirq+steal; iowait counts as idle), or until
#   MAX_SECONDS (default 600) have passed. Appends one line to LOG (if given):
#     HH:MM:SS busy=N% steal=N% waited=Ns [timeout]
#   Always exits 0: a timeout is recorded, not fatal.
set -u
max=${1:-600}
log=${2:-}
threshold=${IDLE_BUSY:-10}
start=$SECONDS
while :; do
  read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat
  sleep 2
  read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
  total=$(( (b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8) - (a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8) ))
  idle=$(( (b4 + b5) - (a4 + a5) ))
  steal=$(( b8 - a8 ))
  [ "$total" -gt 0 ] || total=1
  busy=$(( 100 * (total - idle) / total ))
  stealp=$(( 100 * steal / total ))
  waited=$(( SECONDS - start ))
  if [ "$busy" -lt "$threshold" ]; then
    [ -n "$log" ] && echo "$(date +%T) busy=${busy}% steal=${stealp}% waited=${waited}s" >> "$log"
    exit 0
  fi
  if [ "$waited" -ge "$max" ]; then
    [ -n "$log" ] && echo "$(date +%T) busy=${busy}% steal=${stealp}% waited=${waited}s timeout" >> "$log"
    exit 0
  fi
done
