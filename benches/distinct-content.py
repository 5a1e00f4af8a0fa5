#!/usr/bin/env python3
"""Sum of distinct file contents across one or more unpacked root trees.

Usage: distinct-content.py [--hash sha256|blake3] ROOTDIR...

This is an independent yardstick for layerstore's deduplication: it walks each
ROOTDIR (an unpacked image rootfs, e.g. from `umoci unpack`), hashes the content
of every regular file (content only: no name, mode, owner or times), and prints
JSON with:

  roots[]        per tree: entry counts by type, regular-file bytes as stored
                 path by path, hardlink-collapsed bytes, and its own distinct
                 contents
  total          distinct contents over all trees together (count and bytes):
                 the least a content-addressed store of file contents must hold
  small          distinct contents of size <= 64, <= 512 and <= 4096 bytes
                 (cumulative thresholds) with their count and bytes
  incremental[]  for each tree in the given order, distinct contents not seen in
                 any earlier tree: what an update import must add at least
  pairwise_new   for each ordered pair "B vs A", contents of B absent from A

Symlinks are not followed; directories, symlinks and special files are only
counted. Hardlinks (same st_dev/st_ino) are read once and count once per
distinct content anyway. The hash is sha256 (stdlib); --hash blake3 uses the
`blake3` module if installed. Needs read access to every file (run as root on
trees unpacked as root).
"""

import argparse
import hashlib
import json
import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor

THRESHOLDS = (64, 512, 4096)
CHUNK = 1 << 20


def hasher_factory(name):
    if name == "sha256":
        return hashlib.sha256
    if name == "blake3":
        try:
            import blake3  # type: ignore
        except ImportError:
            sys.exit("distinct-content.py: --hash blake3 needs `pip install blake3`")
        return blake3.blake3
    sys.exit(f"distinct-content.py: unknown hash {name}")


def hash_file(path, new_hasher):
    h = new_hasher()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def scan(root):
    """Walk one tree; return (counts, list of (path, size, (dev, ino)))."""
    counts = {"entries": 0, "dirs": 0, "regular": 0, "symlinks": 0, "other": 0,
              "hardlinked_paths": 0, "empty_files": 0}
    files = []
    seen_inodes = set()
    def onerror(e):
        raise e
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            counts["entries"] += 1
            m = st.st_mode
            if stat.S_ISDIR(m):
                counts["dirs"] += 1
            elif stat.S_ISLNK(m):
                counts["symlinks"] += 1
            elif stat.S_ISREG(m):
                counts["regular"] += 1
                if st.st_size == 0:
                    counts["empty_files"] += 1
                key = (st.st_dev, st.st_ino)
                if key in seen_inodes:
                    counts["hardlinked_paths"] += 1
                    files.append((p, st.st_size, key, False))
                else:
                    seen_inodes.add(key)
                    files.append((p, st.st_size, key, True))
            else:
                counts["other"] += 1
    # os.walk lists symlinks to directories in dirnames without descending: fine.
    return counts, files


def summarize(contents):
    """contents: dict digest -> size."""
    return {"count": len(contents), "bytes": sum(contents.values())}


def small_buckets(contents):
    out = {}
    for t in THRESHOLDS:
        sizes = [s for s in contents.values() if s <= t]
        out[f"le_{t}"] = {"count": len(sizes), "bytes": sum(sizes)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hash", default="sha256", choices=["sha256", "blake3"])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("roots", nargs="+", metavar="ROOTDIR")
    args = ap.parse_args()
    new_hasher = hasher_factory(args.hash)

    inode_digest = {}  # (dev, ino) -> digest, so hardlinks are read once
    per_root = []      # (name, counts, dict digest -> size)
    for root in args.roots:
        if not os.path.isdir(root):
            sys.exit(f"distinct-content.py: not a directory: {root}")
        counts, files = scan(root)
        todo = [(p, k) for (p, _s, k, first) in files if first and k not in inode_digest]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
            for (p, k), d in zip(todo, ex.map(lambda pk: hash_file(pk[0], new_hasher), todo)):
                inode_digest[k] = d
        contents = {}
        path_bytes = 0
        inode_bytes = 0
        for (p, s, k, first) in files:
            path_bytes += s
            if first:
                inode_bytes += s
            contents[inode_digest[k]] = s
        counts["regular_bytes_by_path"] = path_bytes
        counts["regular_bytes_by_inode"] = inode_bytes
        per_root.append((root, counts, contents))

    union = {}
    for _n, _c, contents in per_root:
        union.update(contents)

    incremental = []
    seen = {}
    for name, _c, contents in per_root:
        new = {d: s for d, s in contents.items() if d not in seen}
        incremental.append({"root": name, "new_distinct": summarize(new)})
        seen.update(contents)

    pairwise = {}
    for b_name, _cb, b in per_root:
        for a_name, _ca, a in per_root:
            if a_name == b_name:
                continue
            new = {d: s for d, s in b.items() if d not in a}
            pairwise[f"{b_name} vs {a_name}"] = summarize(new)

    report = {
        "hash": args.hash,
        "roots": [
            dict(root=name, **counts, distinct=summarize(contents))
            for name, counts, contents in per_root
        ],
        "total": {
            "distinct": summarize(union),
            "regular_bytes_by_path": sum(c["regular_bytes_by_path"] for _n, c, _d in per_root),
            "regular_bytes_by_inode": sum(c["regular_bytes_by_inode"] for _n, c, _d in per_root),
        },
        "small": small_buckets(union),
        "incremental": incremental,
        "pairwise_new": pairwise,
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
