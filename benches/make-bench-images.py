#!/usr/bin/env python3
"""Builds extra single-layer OCI images for benches/perf-drive.sh (no network, no root).

  make-bench-images.py layer SRC_LAYOUT TAG INDEX DST_LAYOUT NEWTAG
      an image whose only layer is layer INDEX of SRC_LAYOUT:TAG (blob copied as is, so its
      compression is kept; config = the source config with that one diff_id, no history).
      E.g. the top layer of app-v1: a real Debian layer that shares no layer with base-v1.
  make-bench-images.py tree DIR MAX_BYTES gzip|zstd DST_LAYOUT NEWTAG
      an image whose only layer is a tar of the regular files, directories and symlinks under
      DIR (sorted, owner 0:0, mtime 0) cut at MAX_BYTES of file content, compressed with the
      gzip or zstd CLI at its default level. E.g. a Rust toolchain's rlibs: real binary content
      that shares nothing with a Debian image.
The layout's index.json is created or extended (an existing NEWTAG is replaced).
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile


def blob_path(layout, digest):
    return os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])


def put_json(layout, obj):
    b = json.dumps(obj, separators=(",", ":")).encode()
    d = "sha256:" + hashlib.sha256(b).hexdigest()
    with open(blob_path(layout, d), "wb") as f:
        f.write(b)
    return d, len(b)


def put_file(layout, path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    d = "sha256:" + h.hexdigest()
    shutil.move(path, blob_path(layout, d))
    return d, os.path.getsize(blob_path(layout, d))


def add_to_index(layout, manifest, tag):
    md, ms = put_json(layout, manifest)
    ip = os.path.join(layout, "index.json")
    idx = json.load(open(ip)) if os.path.exists(ip) else {"schemaVersion": 2, "manifests": []}
    idx["manifests"] = [m for m in idx["manifests"]
                        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    idx["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "digest": md, "size": ms,
                             "annotations": {"org.opencontainers.image.ref.name": tag}})
    with open(ip, "w") as f:
        json.dump(idx, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')


def init(layout):
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)


def cmd_layer(src, tag, index, dst, newtag):
    init(dst)
    idx = json.load(open(os.path.join(src, "index.json")))
    m = next(m for m in idx["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    man = json.load(open(blob_path(src, m["digest"])))
    cfg = json.load(open(blob_path(src, man["config"]["digest"])))
    layer = man["layers"][int(index)]
    if not os.path.exists(blob_path(dst, layer["digest"])):
        shutil.copyfile(blob_path(src, layer["digest"]), blob_path(dst, layer["digest"]))
    cfg["rootfs"]["diff_ids"] = [cfg["rootfs"]["diff_ids"][int(index)]]
    cfg.pop("history", None)
    cd, cs = put_json(dst, cfg)
    man2 = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [layer]}
    add_to_index(dst, man2, newtag)


def cmd_tree(top, max_bytes, comp, dst, newtag):
    init(dst)
    max_bytes = int(max_bytes)
    tmp = os.path.join(dst, "layer.tar.tmp")
    total = 0
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in [""] + sorted(files):
                p = os.path.join(root, name) if name else root
                rel = os.path.relpath(p, top)
                if rel == ".":
                    continue
                st = os.lstat(p)
                ti = tf.gettarinfo(p, arcname="tree/" + rel)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                ti.mtime = 0
                if ti.isreg():
                    if total + st.st_size > max_bytes:
                        continue
                    total += st.st_size
                    with open(p, "rb") as f:
                        tf.addfile(ti, f)
                elif ti.isdir() or ti.issym():
                    tf.addfile(ti)
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    diff_id = "sha256:" + h.hexdigest()
    z = tmp + (".gz" if comp == "gzip" else ".zst")
    with open(z, "wb") as out:
        if comp == "gzip":
            subprocess.run(["gzip", "-n", "-c", tmp], stdout=out, check=True)
        else:
            subprocess.run(["zstd", "-q", "-c", tmp], stdout=out, check=True)
    os.unlink(tmp)
    ld, ls = put_file(dst, z)
    cfg = {"architecture": "amd64", "os": "linux",
           "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    cd, cs = put_json(dst, cfg)
    mt = "application/vnd.oci.image.layer.v1.tar+" + comp
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
           "layers": [{"mediaType": mt, "digest": ld, "size": ls}]}
    add_to_index(dst, man, newtag)
    print(f"{newtag}: {total} bytes of file content, layer {ls} bytes ({comp})")


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "layer":
        cmd_layer(*sys.argv[2:])
    elif len(sys.argv) == 7 and sys.argv[1] == "tree":
        cmd_tree(*sys.argv[2:])
    else:
        sys.exit(__doc__)
