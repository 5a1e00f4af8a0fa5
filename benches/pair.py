#!/usr/bin/env python3
"""Interleaved (paired) timing: each round runs every variant once, order alternating by round.

usage: pair.py OUT.json ROUNDS SPEC.json
SPEC: {"variants": [{"name":..., "prepare": "sh cmd", "cmd": "sh cmd"}, ...], "order": "rotate"?}
"order": "rotate" rotates the order by one variant per round instead of reversing it, so that with
N variants every variant takes every position once per N rounds (a position effect, e.g. the one
run after a big delete, then spreads evenly).
"{r}" in a variant's prepare and cmd becomes the round's number (a fresh directory per sample).
Each sample: wall s, user+sys s of the timed command (rusage of children), load average.
"""
import json, os, resource, subprocess, sys, time

out, rounds, spec = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
variants = spec["variants"]
samples = []


def run(cmd):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.stderr.write(f"FAILED {cmd}: {p.stderr.decode()[-500:]}\n")
    return t1 - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), p.returncode


for r in range(rounds):
    if spec.get("order") == "rotate":
        k = r % len(variants)
        order = variants[k:] + variants[:k]
    else:
        order = variants if r % 2 == 0 else list(reversed(variants))
    for v in order:
        subprocess.run(v["prepare"].replace("{r}", str(r)), shell=True, check=True, stdout=subprocess.DEVNULL)
        subprocess.run("sync", shell=True)
        load = os.getloadavg()[0]
        wall, cpu, rc = run(v["cmd"].replace("{r}", str(r)))
        samples.append(dict(round=r, pos=order.index(v), name=v["name"], wall=wall, cpu=cpu, rc=rc, load1=load))
        print(f"round {r} {v['name']:12s} wall {wall:7.3f} s  cpu {cpu:7.3f} s  load {load:5.2f}", flush=True)
        json.dump(dict(spec=spec, samples=samples), open(out, "w"), indent=1)

import statistics as st

print()
names = [v["name"] for v in variants]
for n in names:
    w = [s["wall"] for s in samples if s["name"] == n and s["rc"] == 0]
    c = [s["cpu"] for s in samples if s["name"] == n and s["rc"] == 0]
    if w:
        print(f"{n:12s} n={len(w)} wall median {st.median(w):.3f} mean {st.mean(w):.3f} min {min(w):.3f} max {max(w):.3f} | cpu median {st.median(c):.3f} min {min(c):.3f}")
if len(names) >= 2:
    a, b = names[0], names[1]
    ratios = []
    for r in range(rounds):
        sa = [s for s in samples if s["round"] == r and s["name"] == a]
        sb = [s for s in samples if s["round"] == r and s["name"] == b]
        if sa and sb:
            ratios.append(sb[0]["wall"] / sa[0]["wall"])
    if ratios:
        print(f"paired {b}/{a} wall ratio per round: {' '.join('%.2f' % x for x in ratios)}; median {st.median(ratios):.3f}")
