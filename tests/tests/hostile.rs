//! Hostile and malformed input: every case gets either a typed rejection that names the entry or
//! digest and leaves nothing behind, or an acceptance whose tree stays inside the image root.

mod common;

use std::path::Path;

use common::*;
use layerstore_import::Error;
use layerstore_store::{CheckoutOptions, EntryKind, Limits, Store, StoreOptions};
use layerstore_tests::{
    Compression, Entry, ImageSpec, Layer, LayerBuilder, OciLayout, RawHeader, RawTar, TarFormat,
};

/// What a case must produce.
enum Verdict {
    /// Rejected; the message contains this text.
    Reject(&'static str),
    /// Accepted; these paths exist in the merged tree and these do not.
    Accept {
        has: &'static [&'static str],
        lacks: &'static [&'static str],
    },
}
use Verdict::*;

fn tar(entries: Vec<Entry>, format: TarFormat) -> Vec<u8> {
    LayerBuilder::new(format).with_entries(entries).tar_bytes()
}

/// Run one case: layers (bottom first) into a fresh store, check the verdict, then check that
/// nothing leaked: a canary beside the checkout is untouched, fsck is clean, no staging is left.
fn check(name: &str, layers: Vec<Vec<u8>>, verdict: Verdict) {
    check_with(name, layers, verdict, StoreOptions::default(), |_, _| {})
}

fn check_with(
    name: &str,
    layers: Vec<Vec<u8>>,
    verdict: Verdict,
    opts: StoreOptions,
    tamper: impl FnOnce(&Path, &layerstore_tests::WrittenImage),
) {
    check_compressed(name, layers, Compression::Gzip, verdict, opts, tamper)
}

fn check_compressed(
    name: &str,
    layers: Vec<Vec<u8>>,
    compression: Compression,
    verdict: Verdict,
    opts: StoreOptions,
    tamper: impl FnOnce(&Path, &layerstore_tests::WrittenImage),
) {
    let tmp = tempfile::tempdir().unwrap();
    let canary = tmp.path().join("canary");
    std::fs::create_dir_all(canary.join("etc")).unwrap();
    std::fs::write(canary.join("etc/passwd"), "root:x:0:0\n").unwrap();
    let before = snapshot(tmp.path());
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let spec = ImageSpec::new(
        layers
            .into_iter()
            .map(|t| Layer::new(t, compression))
            .collect(),
    );
    let written = layout.add_image("case", &spec).unwrap();
    tamper(&oci, &written);
    let store = Store::init(&tmp.path().join("store"), &opts).unwrap();
    let res = import(&store, &format!("oci:{}:case", oci.display()));
    match (verdict, res) {
        (Reject(text), Err(e)) => {
            let msg = format!("{e:#}");
            let chain = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            assert!(
                chain.contains(text),
                "{name}: error {chain:?} does not mention {text:?} ({msg})"
            );
            assert!(
                store.images().unwrap().is_empty(),
                "{name}: an image ref was published"
            );
            assert!(
                store.refs(None).unwrap().is_empty(),
                "{name}: refs were published"
            );
        }
        (Reject(text), Ok(_)) => {
            panic!("{name}: accepted, expected a rejection mentioning {text:?}")
        }
        (Accept { .. }, Err(e)) => panic!("{name}: rejected: {e:#}"),
        (Accept { has, lacks }, Ok(_)) => {
            let img = store.resolve_image("case").unwrap();
            let tree = store.merged_tree(&img).unwrap();
            for p in has {
                assert!(
                    tree.entries.contains_key(p.as_bytes()),
                    "{name}: {p} missing; tree: {:?}",
                    tree.entries
                        .keys()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect::<Vec<_>>()
                );
            }
            for p in lacks {
                assert!(
                    !tree.entries.contains_key(p.as_bytes()),
                    "{name}: {p} present"
                );
            }
            let dest = tmp.path().join("checkout");
            store
                .checkout(&tree, &dest, &CheckoutOptions::default())
                .unwrap_or_else(|e| panic!("{name}: checkout: {e}"));
            // Round trip: every layer exports to its diff_id.
            for l in &img.layers {
                let mut out = Vec::new();
                store.export_layer_tar(&l.diff_id, &mut out).unwrap();
                assert_eq!(
                    layerstore_store::Digest::of(&out),
                    l.diff_id,
                    "{name}: round trip"
                );
            }
            std::fs::remove_dir_all(&dest).unwrap();
        }
    }
    assert_sound(&store);
    drop(store);
    std::fs::remove_dir_all(tmp.path().join("store")).unwrap();
    std::fs::remove_dir_all(&oci).unwrap();
    assert_eq!(
        snapshot(tmp.path()),
        before,
        "{name}: something was written outside the store"
    );
}

fn raw_file(name: &[u8], data: &[u8]) -> Vec<u8> {
    RawTar::new()
        .header(
            &RawHeader::ustar(b'0')
                .name(name)
                .size(data.len() as u64)
                .mode(0o644),
        )
        .data(data)
        .end()
        .finish_record()
}

#[test]
fn names_stay_inside_the_root() {
    check(
        "dotdot in ustar name",
        vec![raw_file(b"../escape", b"x")],
        Reject("'..'"),
    );
    check(
        "dotdot inside a path",
        vec![raw_file(b"a/../../escape", b"x")],
        Reject("'..'"),
    );
    check(
        "dotdot through PAX path",
        vec![
            RawTar::new()
                .pax([("path", "../../etc/passwd")])
                .header(&RawHeader::ustar(b'0').name(b"harmless").size(1))
                .data(b"x")
                .end()
                .finish_record(),
        ],
        Reject("'..'"),
    );
    check(
        "dotdot through a GNU long name",
        vec![
            RawTar::new()
                .gnu_long_name(format!("{}/../../../x", "d".repeat(120)).as_bytes())
                .header(&RawHeader::gnu(b'0').name(b"short").size(1))
                .data(b"x")
                .end()
                .finish_record(),
        ],
        Reject("'..'"),
    );
    check(
        "absolute names are rooted",
        vec![raw_file(b"/etc/passwd", b"img")],
        Accept {
            has: &["etc/passwd"],
            lacks: &[],
        },
    );
    check(
        "NUL in a PAX path",
        vec![
            RawTar::new()
                .pax([(&b"path"[..], &b"a\0b"[..])])
                .header(&RawHeader::ustar(b'0').name(b"x").size(0))
                .end()
                .finish_record(),
        ],
        Reject("NUL"),
    );
    check(
        "component over 255 bytes",
        vec![tar(vec![Entry::file("x".repeat(256), "x")], TarFormat::Pax)],
        Reject("too long"),
    );
    let deep: String = (0..300).map(|_| "d/").collect::<String>() + "f";
    check(
        "nested too deeply",
        vec![tar(vec![Entry::file(deep, "x")], TarFormat::Pax)],
        Reject("nested too deeply"),
    );
    check(
        "root replaced by a symlink",
        vec![tar(vec![Entry::symlink("./", "/etc")], TarFormat::Pax)],
        Reject("root must be a directory"),
    );
    check(
        "empty name",
        vec![raw_file(b"", b"x")],
        Reject("root must be a directory"),
    );
}

#[test]
fn symlinks_resolve_inside_the_root() {
    check(
        "write through an absolute symlink",
        vec![tar(
            vec![
                Entry::dir("etc"),
                Entry::symlink("x", "/etc"),
                Entry::file("x/passwd", "img"),
            ],
            TarFormat::Pax,
        )],
        Accept {
            has: &["etc/passwd", "x"],
            lacks: &["x/passwd"],
        },
    );
    check(
        "write through a dotdot symlink",
        vec![tar(
            vec![Entry::symlink("s", ".."), Entry::file("s/a/b", "img")],
            TarFormat::Pax,
        )],
        Accept {
            has: &["a/b", "s"],
            lacks: &[],
        },
    );
    check(
        "symlink in a lower layer",
        vec![
            tar(
                vec![Entry::symlink("lib", "usr/lib"), Entry::dir("usr/lib")],
                TarFormat::Gnu,
            ),
            tar(vec![Entry::file("lib/libc.so", "c")], TarFormat::Gnu),
        ],
        Accept {
            has: &["usr/lib/libc.so", "lib"],
            lacks: &["lib/libc.so"],
        },
    );
    check(
        "symlink then a file at the same path",
        vec![tar(
            vec![
                Entry::symlink("p", "/etc/shadow"),
                Entry::file("p", "plain"),
            ],
            TarFormat::Pax,
        )],
        Accept {
            has: &["p"],
            lacks: &["etc/shadow", "etc"],
        },
    );
    check(
        "symlink loop",
        vec![tar(
            vec![
                Entry::symlink("a", "b"),
                Entry::symlink("b", "a"),
                Entry::file("a/x", "x"),
            ],
            TarFormat::Pax,
        )],
        Reject("too many levels of symbolic links"),
    );
    check(
        "whiteout through a symlinked parent",
        vec![
            tar(
                vec![
                    Entry::dir("real"),
                    Entry::file("real/f", "1"),
                    Entry::symlink("link", "real"),
                ],
                TarFormat::Pax,
            ),
            tar(vec![Entry::whiteout("link/f")], TarFormat::Pax),
        ],
        Accept {
            has: &["real", "link"],
            lacks: &["real/f"],
        },
    );
}

#[test]
fn hard_links_name_earlier_entries_of_the_layer() {
    check(
        "hard link to an absolute path",
        vec![tar(
            vec![Entry::hardlink("l", "/etc/passwd")],
            TarFormat::Pax,
        )],
        Reject("not earlier in this layer"),
    );
    check(
        "hard link with dotdot",
        vec![tar(
            vec![Entry::file("a", "x"), Entry::hardlink("l", "../a")],
            TarFormat::Pax,
        )],
        Reject("'..'"),
    );
    check(
        "hard link to itself",
        vec![tar(vec![Entry::hardlink("l", "l")], TarFormat::Pax)],
        Reject("hard link to itself"),
    );
    check(
        "hard link to a directory",
        vec![tar(
            vec![Entry::dir("d"), Entry::hardlink("l", "d")],
            TarFormat::Pax,
        )],
        Reject("hard link to a directory"),
    );
    check(
        "forward reference",
        vec![tar(
            vec![Entry::hardlink("l", "later"), Entry::file("later", "x")],
            TarFormat::Pax,
        )],
        Reject("not earlier in this layer"),
    );
    check(
        "absolute hard link to an earlier file",
        vec![tar(
            vec![Entry::file("etc/a", "x"), Entry::hardlink("b", "/etc/a")],
            TarFormat::Pax,
        )],
        Accept {
            has: &["etc/a", "b"],
            lacks: &[],
        },
    );
}

#[test]
fn tar_format_abuse() {
    let good = RawHeader::ustar(b'0').name(b"f").size(3);
    check(
        "bad header checksum",
        vec![
            RawTar::new()
                .header(&good.clone().cksum_delta(1))
                .data(b"abc")
                .end()
                .finish_record(),
        ],
        Reject("checksum"),
    );
    check(
        "unknown type flag",
        vec![
            RawTar::new()
                .header(&RawHeader::ustar(b'Z').name(b"f").size(0))
                .end()
                .finish_record(),
        ],
        Reject("unknown entry type"),
    );
    check(
        "GNU sparse entry",
        vec![
            RawTar::new()
                .header(&RawHeader::gnu(b'S').name(b"f").size(0))
                .end()
                .finish_record(),
        ],
        Reject("sparse"),
    );
    check(
        "truncated data",
        vec![
            RawTar::new()
                .header(&RawHeader::ustar(b'0').name(b"f").size(5000))
                .bytes(b"short")
                .finish(),
        ],
        Reject("truncated"),
    );
    check(
        "PAX size wins over the header",
        vec![
            RawTar::new()
                .pax([("size", "5")])
                .header(&RawHeader::ustar(b'0').name(b"f").size(1))
                .data(b"hello")
                .end()
                .finish_record(),
        ],
        Accept {
            has: &["f"],
            lacks: &[],
        },
    );
    check(
        "junk after the end of the archive",
        vec![
            RawTar::new()
                .header(&good)
                .data(b"abc")
                .end()
                .bytes(b"trailing junk")
                .finish(),
        ],
        Accept {
            has: &["f"],
            lacks: &[],
        },
    );
    check(
        "global PAX header",
        vec![
            RawTar::new()
                .global_pax([("comment", "hi")])
                .header(&good)
                .data(b"abc")
                .end()
                .finish_record(),
        ],
        Accept {
            has: &["f"],
            lacks: &[],
        },
    );
    check(
        "extension header at the end",
        vec![RawTar::new().pax([("path", "x")]).end().finish_record()],
        Reject("extension header"),
    );
    check(
        "oversized PAX record",
        vec![
            RawTar::new()
                .pax([("comment".to_string(), "x".repeat(2 << 20))])
                .header(&good)
                .data(b"abc")
                .end()
                .finish_record(),
        ],
        Reject("too large"),
    );
    check(
        "uid beyond 32 bits",
        vec![
            RawTar::new()
                .pax([("uid", "4294967296")])
                .header(&good)
                .data(b"abc")
                .end()
                .finish_record(),
        ],
        Reject("32 bits"),
    );
    check(
        "base-256 uid",
        vec![{
            let mut h = RawHeader::gnu(b'0').name(b"f").size(3);
            h.set_base256(layerstore_tests::Field::Uid, 1 << 40);
            RawTar::new().header(&h).data(b"abc").end().finish_record()
        }],
        Reject("32 bits"),
    );
    check(
        "malformed PAX record",
        vec![
            RawTar::new()
                .pax_typed(b'x', b"p", b"99 path=x\n")
                .header(&good)
                .data(b"abc")
                .end()
                .finish_record(),
        ],
        Reject("PAX"),
    );
}

#[test]
fn whiteouts_follow_the_layer_rules() {
    check(
        "bare .wh.",
        vec![tar(vec![Entry::file("d/.wh.", "")], TarFormat::Pax)],
        Reject("whiteout names nothing"),
    );
    check(
        "whiteout of dotdot",
        vec![tar(vec![Entry::file("d/.wh...", "")], TarFormat::Pax)],
        Reject("whiteout names nothing"),
    );
    check(
        "opaque marker after its siblings",
        vec![
            tar(vec![Entry::file("d/old", "1")], TarFormat::Pax),
            tar(
                vec![Entry::file("d/new", "2"), Entry::opaque("d")],
                TarFormat::Pax,
            ),
        ],
        Accept {
            has: &["d", "d/new"],
            lacks: &["d/old"],
        },
    );
    check(
        "whiteout and file of the same name in one layer",
        vec![
            tar(vec![Entry::file("foo", "old")], TarFormat::Pax),
            tar(
                vec![Entry::file("foo", "new"), Entry::whiteout("foo")],
                TarFormat::Pax,
            ),
        ],
        Accept {
            has: &["foo"],
            lacks: &[],
        },
    );
    check(
        "AUFS hard-link directory",
        vec![tar(
            vec![
                Entry::file(".wh..wh.plnk/123.456", "x"),
                Entry::file("a", "a"),
            ],
            TarFormat::Pax,
        )],
        Accept {
            has: &["a"],
            lacks: &[".wh..wh.plnk"],
        },
    );
}

#[test]
fn metadata_never_reaches_the_store_as_is() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let t = tar(
        vec![
            Entry::file("su", vec![9u8; 10_000]).mode(0o6755),
            Entry::char_dev("dev/null", 1, 3),
            Entry::block_dev("dev/sda", 8, 0),
            Entry::file("ovl", "x").xattr("trusted.overlay.opaque", "y"),
        ],
        TarFormat::Pax,
    );
    layout
        .add_image("m", &ImageSpec::new(vec![Layer::new(t, Compression::Zstd)]))
        .unwrap();
    let store = new_store(tmp.path());
    import(&store, &format!("oci:{}:m", oci.display())).unwrap();
    let img = store.resolve_image("m").unwrap();
    let tree = store.merged_tree(&img).unwrap();
    assert_eq!(
        tree.entries[&b"su"[..]].mode,
        0o6755,
        "the index keeps the mode"
    );
    assert_eq!(tree.entries[&b"dev/null"[..]].kind, EntryKind::CharDevice);
    // Every loose object is a plain read-only file.
    use std::os::unix::fs::MetadataExt;
    let mut loose = 0;
    for sub in std::fs::read_dir(store.path().join("objects")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let m = std::fs::symlink_metadata(f.unwrap().path()).unwrap();
            assert!(m.file_type().is_file());
            assert_eq!(m.mode() & 0o7777, 0o444);
            loose += 1;
        }
    }
    assert_eq!(loose, 1);
    // Overlay xattrs never become overlay markers in a checkout.
    let dest = tmp.path().join("co");
    store
        .checkout(&tree, &dest, &CheckoutOptions::default())
        .unwrap();
    let names = xattr_names(&dest.join("ovl"));
    assert!(!names.iter().any(|n| n.contains("overlay")), "{names:?}");
    assert_sound(&store);
}

fn xattr_names(p: &Path) -> Vec<String> {
    let out = std::process::Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(p)
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn broken_images_are_rejected_by_digest() {
    let layer = || vec![tar(vec![Entry::file("f", vec![1u8; 4000])], TarFormat::Pax)];
    let blob = |oci: &Path, w: &layerstore_tests::WrittenImage| {
        oci.join("blobs/sha256")
            .join(w.layers[0].blob_digest.trim_start_matches("sha256:"))
    };
    check_with(
        "flipped byte in a layer blob",
        layer(),
        Reject("sha256:"),
        StoreOptions::default(),
        |oci, w| {
            let p = blob(oci, w);
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len() - 10;
            b[n] ^= 0xff;
            std::fs::write(&p, b).unwrap();
        },
    );
    check_with(
        "truncated layer blob",
        layer(),
        Reject("sha256:"),
        StoreOptions::default(),
        |oci, w| {
            let p = blob(oci, w);
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() / 2]).unwrap();
        },
    );
    check_with(
        "missing layer blob",
        layer(),
        Reject("missing"),
        StoreOptions::default(),
        |oci, w| {
            std::fs::remove_file(blob(oci, w)).unwrap();
        },
    );
    check_with(
        "digest used as a path",
        layer(),
        Reject("index.json"),
        StoreOptions::default(),
        |oci, _| {
            let p = oci.join("index.json");
            let s = std::fs::read_to_string(&p).unwrap();
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            let d = v["manifests"][0]["digest"].as_str().unwrap().to_string();
            std::fs::write(&p, s.replace(&d, "sha256:../../../../etc/passwd")).unwrap();
        },
    );
    check_with(
        "uppercase digest",
        layer(),
        Reject("index.json"),
        StoreOptions::default(),
        |oci, _| {
            let p = oci.join("index.json");
            let s = std::fs::read_to_string(&p).unwrap();
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            let d = v["manifests"][0]["digest"].as_str().unwrap().to_string();
            std::fs::write(
                &p,
                s.replace(&d, &d.to_uppercase().replace("SHA256", "sha256")),
            )
            .unwrap();
        },
    );
    check_with(
        "config diff_id mismatch",
        layer(),
        Reject("diff_id"),
        StoreOptions::default(),
        |oci, w| {
            // Rewrite the config with another diff_id, then the manifest and index to match.
            let cfg_path = oci
                .join("blobs/sha256")
                .join(w.config_digest.trim_start_matches("sha256:"));
            let cfg = std::fs::read_to_string(&cfg_path).unwrap();
            let bad = cfg.replace(&w.layers[0].diff_id, &format!("sha256:{}", "0".repeat(64)));
            relink(oci, w, &w.config_digest, bad.as_bytes());
        },
    );
    check_with(
        "gzip media type holding zstd",
        layer(),
        Reject("promises"),
        StoreOptions::default(),
        |oci, w| {
            let tarball = layerstore_tests::decompress(
                &std::fs::read(blob(oci, w)).unwrap(),
                Compression::Gzip,
            )
            .unwrap();
            let zst = layerstore_tests::compress(&tarball, Compression::Zstd);
            relink(oci, w, &w.layers[0].blob_digest, &zst);
        },
    );
    let small = StoreOptions {
        limits: Limits {
            max_layer_bytes: 1 << 20,
            ..Limits::default()
        },
        ..StoreOptions::default()
    };
    check_with(
        "decompression bomb",
        vec![tar(
            vec![Entry::file("zeros", vec![0u8; 8 << 20])],
            TarFormat::Pax,
        )],
        Reject("exceeds the limit"),
        small,
        |_, _| {},
    );
}

/// Replace blob `old` with `new` content and rewrite the manifest and index.json to point at it.
fn relink(oci: &Path, w: &layerstore_tests::WrittenImage, old: &str, new: &[u8]) {
    let new_digest = layerstore_tests::sha256_digest(new);
    std::fs::write(
        oci.join("blobs/sha256")
            .join(new_digest.trim_start_matches("sha256:")),
        new,
    )
    .unwrap();
    let man_path = oci
        .join("blobs/sha256")
        .join(w.manifest_digest.trim_start_matches("sha256:"));
    let mut man: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&man_path).unwrap()).unwrap();
    let obj = man.as_object_mut().unwrap();
    let mut descs: Vec<&mut serde_json::Value> = Vec::new();
    for (k, v) in obj.iter_mut() {
        match k.as_str() {
            "config" => descs.push(v),
            "layers" => descs.extend(v.as_array_mut().unwrap().iter_mut()),
            _ => {}
        }
    }
    for d in descs {
        if d["digest"] == old {
            d["digest"] = new_digest.clone().into();
            d["size"] = new.len().into();
        }
    }
    let man_bytes = serde_json::to_vec(&man).unwrap();
    let man_digest = layerstore_tests::sha256_digest(&man_bytes);
    std::fs::write(
        oci.join("blobs/sha256")
            .join(man_digest.trim_start_matches("sha256:")),
        &man_bytes,
    )
    .unwrap();
    let idx_path = oci.join("index.json");
    let idx = std::fs::read_to_string(&idx_path).unwrap();
    let idx = idx.replace(&w.manifest_digest, &man_digest);
    let mut v: serde_json::Value = serde_json::from_str(&idx).unwrap();
    v["manifests"][0]["size"] = man_bytes.len().into();
    std::fs::write(idx_path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn typed_errors_for_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    assert!(matches!(
        import(&store, "nope"),
        Err(Error::InvalidSource { .. })
    ));
    assert!(matches!(
        import(&store, &format!("oci:{}", tmp.path().display())),
        Err(Error::NoMatchingImage { .. })
    ));
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    layout
        .add_image(
            "a",
            &ImageSpec::new(vec![Layer::new(
                tar(vec![Entry::file("f", "1")], TarFormat::Pax),
                Compression::None,
            )]),
        )
        .unwrap();
    layout
        .add_image(
            "b",
            &ImageSpec::new(vec![Layer::new(
                tar(vec![Entry::file("f", "2")], TarFormat::Pax),
                Compression::None,
            )]),
        )
        .unwrap();
    let e = import(&store, &format!("oci:{}", oci.display())).unwrap_err();
    assert!(e.to_string().contains("name one"), "{e}");
    assert!(matches!(
        import(&store, &format!("oci:{}:c", oci.display())),
        Err(Error::NoMatchingImage { .. })
    ));
    assert_sound(&store);
}

fn limits(f: impl FnOnce(&mut Limits)) -> StoreOptions {
    let mut l = Limits::default();
    f(&mut l);
    StoreOptions {
        limits: l,
        ..StoreOptions::default()
    }
}

#[test]
fn resource_limits_hold() {
    let zeros = || {
        vec![tar(
            vec![Entry::file("zeros", vec![0u8; 8 << 20])],
            TarFormat::Pax,
        )]
    };
    check_compressed(
        "zstd bomb",
        zeros(),
        Compression::Zstd,
        Reject("exceeds the limit"),
        limits(|l| l.max_layer_bytes = 1 << 20),
        |_, _| {},
    );
    check_compressed(
        "plain tar over the cap",
        zeros(),
        Compression::None,
        Reject("exceeds the limit"),
        limits(|l| l.max_layer_bytes = 1 << 20),
        |_, _| {},
    );
    check_with(
        "too many entries",
        vec![tar(
            (0..50).map(|i| Entry::file(format!("f{i}"), "")).collect(),
            TarFormat::Pax,
        )],
        Reject("entry count"),
        limits(|l| l.max_entries = 10),
        |_, _| {},
    );
    check_with(
        "oversized xattr value",
        vec![tar(
            vec![Entry::file("f", "x").xattr("user.big", vec![b'v'; 2048])],
            TarFormat::Pax,
        )],
        Reject("extended attributes are too large"),
        limits(|l| l.max_xattr_bytes = 1024),
        |_, _| {},
    );
    check_with(
        "path over a lowered limit",
        vec![tar(vec![Entry::file("a/b/c/d/e", "x")], TarFormat::Pax)],
        Reject("nested too deeply"),
        limits(|l| l.max_depth = 3),
        |_, _| {},
    );
    // A zstd frame that needs a window over 128 MiB.
    let t = tar(vec![Entry::file("f", vec![7u8; 1 << 20])], TarFormat::Pax);
    check_compressed(
        "zstd window over 128 MiB",
        vec![t],
        Compression::Zstd,
        Reject("decompression failed"),
        StoreOptions::default(),
        |oci, w| {
            let raw = layerstore_tests::decompress(
                &std::fs::read(
                    oci.join("blobs/sha256")
                        .join(w.layers[0].blob_digest.trim_start_matches("sha256:")),
                )
                .unwrap(),
                Compression::Zstd,
            )
            .unwrap();
            let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
            enc.set_parameter(zstd::stream::raw::CParameter::WindowLog(30))
                .unwrap();
            enc.long_distance_matching(true).unwrap();
            std::io::Write::write_all(&mut enc, &raw).unwrap();
            let big = enc.finish().unwrap();
            relink(oci, w, &w.layers[0].blob_digest, &big);
        },
    );
}

#[test]
fn large_but_legitimate_layers_are_accepted() {
    // 10^5 entries in one directory and 10^4 hard links to one file.
    let mut entries: Vec<Entry> = (0..100_000)
        .map(|i| Entry::file(format!("d/f{i:06}"), ""))
        .collect();
    entries.push(Entry::file("target", vec![3u8; 5000]));
    entries.extend((0..10_000).map(|i| Entry::hardlink(format!("links/l{i}"), "target")));
    check(
        "10^5 entries and 10^4 hard links",
        vec![tar(entries, TarFormat::Ustar)],
        Accept {
            has: &["d/f099999", "links/l9999"],
            lacks: &[],
        },
    );
}

#[test]
fn more_link_and_header_tricks() {
    check(
        "hard link before a symlink swaps its parent",
        vec![tar(
            vec![
                Entry::dir("a"),
                Entry::file("a/f", "data"),
                Entry::hardlink("h", "a/f"),
                Entry::symlink("a", "/etc"),
            ],
            TarFormat::Pax,
        )],
        Accept {
            has: &["h", "a"],
            lacks: &["a/f"],
        },
    );
    check(
        "stacked extension headers",
        vec![
            RawTar::new()
                .gnu_long_name(b"from-gnu")
                .pax([("path", "from-pax")])
                .header(&RawHeader::ustar(b'0').name(b"from-header").size(1))
                .data(b"x")
                .end()
                .finish_record(),
        ],
        Accept {
            has: &["from-pax"],
            lacks: &["from-gnu", "from-header"],
        },
    );
    check(
        "symlink then a directory at the same path",
        vec![tar(
            vec![
                Entry::symlink("d", "/etc"),
                Entry::dir("d"),
                Entry::file("d/x", "1"),
            ],
            TarFormat::Pax,
        )],
        Accept {
            has: &["d", "d/x"],
            lacks: &["etc/x"],
        },
    );
    check(
        "negative mtime",
        vec![
            RawTar::new()
                .pax([("mtime", "-100.5")])
                .header(&RawHeader::ustar(b'0').name(b"old").size(0))
                .end()
                .finish_record(),
        ],
        Accept {
            has: &["old"],
            lacks: &[],
        },
    );
    check(
        "non-UTF-8 names through PAX",
        vec![
            RawTar::new()
                .pax([(&b"path"[..], &b"\xff\xfe/x"[..])])
                .header(&RawHeader::ustar(b'0').name(b"x").size(0))
                .end()
                .finish_record(),
        ],
        Accept {
            has: &[],
            lacks: &["x"],
        },
    );
}

#[test]
fn hostile_oci_documents() {
    let layer = || vec![tar(vec![Entry::file("f", vec![1u8; 4000])], TarFormat::Pax)];
    let edit_index = |f: fn(serde_json::Value) -> serde_json::Value| {
        move |oci: &Path, _: &layerstore_tests::WrittenImage| {
            let p = oci.join("index.json");
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            std::fs::write(&p, serde_json::to_vec(&f(v)).unwrap()).unwrap();
        }
    };
    check_with(
        "unknown digest algorithm",
        layer(),
        Reject("sha256"),
        StoreOptions::default(),
        edit_index(|mut v| {
            v["manifests"][0]["digest"] = format!("sha512:{}", "a".repeat(128)).into();
            v
        }),
    );
    check_with(
        "descriptor size mismatch",
        layer(),
        Reject("bytes, the descriptor says"),
        StoreOptions::default(),
        edit_index(|mut v| {
            v["manifests"][0]["size"] = 3.into();
            v
        }),
    );
    check_with(
        "deeply nested JSON",
        layer(),
        Reject("index.json"),
        StoreOptions::default(),
        |oci, _| {
            let deep = "[".repeat(100_000) + &"]".repeat(100_000);
            std::fs::write(oci.join("index.json"), deep).unwrap();
        },
    );
    check_with(
        "huge index.json",
        layer(),
        Reject("exceeds the limit"),
        StoreOptions::default(),
        |oci, _| {
            let p = oci.join("index.json");
            let mut v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            v["annotations"] = serde_json::json!({ "pad": "x".repeat(5 << 20) });
            std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        },
    );
    check_with(
        "missing config blob",
        layer(),
        Reject("missing"),
        StoreOptions::default(),
        |oci, w| {
            std::fs::remove_file(
                oci.join("blobs/sha256")
                    .join(w.config_digest.trim_start_matches("sha256:")),
            )
            .unwrap();
        },
    );
    check_with(
        "unknown layer media type",
        layer(),
        Reject("media type"),
        StoreOptions::default(),
        |oci, w| {
            let man_path = oci
                .join("blobs/sha256")
                .join(w.manifest_digest.trim_start_matches("sha256:"));
            let s = std::fs::read_to_string(&man_path)
                .unwrap()
                .replace("tar+gzip", "tar+lz4");
            relink_manifest(oci, w, s.as_bytes());
        },
    );
    check_with(
        "config is not JSON",
        layer(),
        Reject("config"),
        StoreOptions::default(),
        |oci, w| {
            relink(oci, w, &w.config_digest, b"\x00\x01 not json");
        },
    );
}

/// Replace the manifest with `new` and point index.json at it.
fn relink_manifest(oci: &Path, w: &layerstore_tests::WrittenImage, new: &[u8]) {
    let d = layerstore_tests::sha256_digest(new);
    std::fs::write(
        oci.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:")),
        new,
    )
    .unwrap();
    let p = oci.join("index.json");
    let mut v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&p)
            .unwrap()
            .replace(&w.manifest_digest, &d),
    )
    .unwrap();
    v["manifests"][0]["size"] = new.len().into();
    std::fs::write(p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn a_full_disk_fails_cleanly() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .status();
    if !ok.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let mut rng = 0x1234_5678u64;
    let files: Vec<Entry> = (0..8)
        .map(|i| {
            let data: Vec<u8> = (0..600_000)
                .map(|_| {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (rng >> 56) as u8
                })
                .collect();
            Entry::file(format!("big{i}"), data)
        })
        .collect();
    layout
        .add_image(
            "big",
            &ImageSpec::new(vec![Layer::new(
                tar(files, TarFormat::Pax),
                Compression::Gzip,
            )]),
        )
        .unwrap();
    let store = Store::init(&mnt.join("store"), &StoreOptions::default()).unwrap();
    let e = import(&store, &format!("oci:{}:big", oci.display())).unwrap_err();
    assert!(
        format!("{e:#}").contains("No space left") || format!("{:?}", e).contains("StorageFull"),
        "{e:#}"
    );
    assert!(store.refs(None).unwrap().is_empty());
    assert_sound(&store);
}
