//! Partial pulls of zstd:chunked layers (issue 16): an update pulled after its previous version
//! fetches only the files the store lacks, and ends in the same layer as a full pull; a TOC not
//! matching its checksum, ranges answered with wrong bytes and a registry ignoring `Range` each
//! end in a verified whole pull that says why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::servers::{Content, DockerRegistry, FaultServer, Req, Resp};
use super::{insecure, pulled};
use crate::common::*;
use layerstore_import::ImportReport;
use layerstore_import::layer_out::Compression as LayerCompression;
use layerstore_import::registry::push::PushOptions;
use layerstore_store::Store;
use layerstore_tests::{Compression, ImageSpec, Layer, OciLayout};

/// base-v1 and base-v2 of the sample series (they share most files) as an OCI layout, gzip.
/// Each tar ends right after its end-of-archive blocks: skopeo 1.9's zstd:chunked compressor
/// drops whatever follows them (tar's record padding), so the layer it writes would no longer
/// match its diff_id, and layerstore rightly refuses it.
fn series(dir: &Path) -> PathBuf {
    let oci = dir.join("series");
    let mut layout = OciLayout::create(&oci).unwrap();
    for v in [1, 2] {
        let tar = unpadded(layerstore_tests::sample::base_layer(v));
        layout
            .add_image(
                &format!("base-v{v}"),
                &ImageSpec::new(vec![Layer::new(tar, Compression::Gzip)]),
            )
            .unwrap();
    }
    oci
}

/// `tar` cut after its last entry's data and two zero blocks.
fn unpadded(tar: Vec<u8>) -> Vec<u8> {
    let mut end = 0;
    let mut archive = tar::Archive::new(&tar[..]);
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        end = (e.raw_file_position() + e.size()).div_ceil(512) * 512;
    }
    let mut out = tar[..end as usize].to_vec();
    out.extend_from_slice(&[0; 1024]);
    out
}

/// `skopeo copy` with extra flags.
fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The partial-pull report of the only layer read by `r`.
#[track_caller]
fn partial(r: &ImportReport) -> &layerstore_import::chunked::PartialPull {
    let read: Vec<_> = r.layers.iter().filter(|l| !l.reused).collect();
    assert_eq!(read.len(), 1, "one layer read");
    read[0]
        .stats
        .as_ref()
        .and_then(|s| s.partial.as_ref())
        .expect("a zstd:chunked layer reports how it was pulled")
}

/// `ours` holds image `name` with the same merged tree and byte-exact layers as `theirs`'s
/// image `their_name`.
#[track_caller]
fn assert_same_image(ours: &Store, name: &str, theirs: &Store, their_name: &str) {
    let a = ours.resolve_image(name).unwrap();
    let b = theirs.resolve_image(their_name).unwrap();
    let (ta, tb) = (
        ours.merged_tree(&a).unwrap(),
        theirs.merged_tree(&b).unwrap(),
    );
    assert_eq!(format!("{ta:?}"), format!("{tb:?}"));
    for l in &a.layers {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        ours.export_layer_tar(&l.diff_id, &mut x).unwrap();
        theirs.export_layer_tar(&l.diff_id, &mut y).unwrap();
        assert!(x == y, "layer {} exports differently", l.diff_id);
    }
}

/// A checkout of `name` equals umoci's unpack of `tag` in the OCI layout `oci` (gzip layers,
/// which this umoci reads), where umoci and root are there.
fn assert_checkout_equals_umoci(store: &Store, name: &str, oci: &Path, tag: &str, tmp: &Path) {
    if !(have("umoci") && is_root()) {
        eprintln!("(umoci unpack comparison left out: needs umoci and root)");
        return;
    }
    let tree = store
        .merged_tree(&store.resolve_image(name).unwrap())
        .unwrap();
    let ours = tmp.join(format!("checkout-{tag}"));
    store
        .checkout(&tree, &ours, &layerstore_store::CheckoutOptions::default())
        .unwrap();
    let bundle = tmp.join(format!("bundle-{tag}"));
    let rootfs = umoci_unpack(&format!("{}:{tag}", oci.display()), &bundle);
    assert_same_tree(&ours, &rootfs);
}

#[test]
fn a_skopeo_zstd_chunked_update_is_pulled_partially_and_equals_a_full_pull() {
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let oci = series(tmp.path());
    let host = reg.host();
    reg.push(&oci, "base-v1", "base:v1", None);
    // skopeo 1.9 writes the older annotation family (io.containers.zstd-chunked.*).
    skopeo(&[
        "--dest-tls-verify=false",
        "--dest-compress-format",
        "zstd:chunked",
        &format!("oci:{}:base-v2", oci.display()),
        &format!("docker://{host}/base:v2"),
    ]);
    let store = new_store(&tmp.path().join("s"));
    pulled(&store, &host, "base:v1");
    let r = pulled(&store, &host, "base:v2");
    let p = partial(&r);
    assert_eq!(p.whole, None, "pulled partially");
    assert!(p.held_files > 0 && p.held_files <= p.files);
    assert!(p.fetched_bytes < p.blob_size, "{p:?}");
    let read = r.layers.iter().find(|l| !l.reused).unwrap();
    assert_eq!(read.fetched_bytes, p.fetched_bytes);
    assert_eq!(r.fetched_bytes, p.fetched_bytes);
    // The stored layer is the one a full pull of the same image from the layout makes.
    let full = new_store(&tmp.path().join("full"));
    import(&full, &format!("oci:{}:base-v2", oci.display())).unwrap();
    assert_same_image(&store, &r.name, &full, "base-v2");
    assert_checkout_equals_umoci(&store, &r.name, &oci, "base-v2", tmp.path());
    assert_sound(&store);
    // base-v1 came as gzip: its contents got their sha256 in a backfill, once. With base-v2
    // removed and collected, a new pull of it finds them without one (the rows of the
    // contents only base-v2 had went with their objects).
    assert!(p.backfilled_objects > 0);
    store
        .remove_refs(&[layerstore_store::RefName::image(&r.name).unwrap()])
        .unwrap();
    layerstore_gc::collect(&store, &layerstore_gc::GcOptions::default()).unwrap();
    let again = pulled(&store, &host, "base:v2");
    let p2 = partial(&again);
    assert_eq!((p2.whole.as_deref(), p2.backfilled_objects), (None, 0));
    assert_eq!(p2.held_files, p.held_files);
    assert_same_image(&store, &again.name, &full, "base-v2");
    assert_sound(&store);
}

#[test]
fn a_layerstore_zstd_chunked_push_is_plain_zstd_and_pulled_partially() {
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let oci = series(tmp.path());
    let host = reg.host();
    let src = new_store(&tmp.path().join("src"));
    for tag in ["base-v1", "base-v2"] {
        import(&src, &format!("oci:{}:{tag}", oci.display())).unwrap();
    }
    let opts = PushOptions {
        registry: insecure(),
        compression: LayerCompression::ZstdChunked,
        ..PushOptions::default()
    };
    for (tag, dest) in [("base-v1", "lz:v1"), ("base-v2", "lz:v2")] {
        let r = layerstore_import::registry::push::push(
            &src,
            tag,
            &format!("docker://{host}/{dest}"),
            &opts,
        )
        .unwrap();
        assert!(
            r.layers.iter().all(|l| l
                .annotations
                .contains_key("io.github.containers.zstd-chunked.manifest-checksum")),
            "{r:?}"
        );
    }
    // skopeo reads the blob as zstd (it recompresses it to gzip), umoci unpacks that to the
    // tree a checkout writes; the diff_ids are unchanged.
    let back = tmp.path().join("back");
    skopeo(&[
        "--src-tls-verify=false",
        "--dest-compress",
        "--dest-compress-format",
        "gzip",
        &format!("docker://{host}/lz:v2"),
        &format!("oci:{}:v2", back.display()),
    ]);
    let s_back = new_store(&tmp.path().join("back-store"));
    import(&s_back, &format!("oci:{}:v2", back.display())).unwrap();
    assert_same_image(&s_back, "v2", &src, "base-v2");
    assert_checkout_equals_umoci(&src, "base-v2", &back, "v2", tmp.path());

    let store = new_store(&tmp.path().join("s"));
    let r1 = pulled(&store, &host, "lz:v1");
    assert_eq!(
        partial(&r1).whole.as_deref(),
        Some("the store holds none of its files")
    );
    let r2 = pulled(&store, &host, "lz:v2");
    let p = partial(&r2);
    assert_eq!(p.whole, None);
    assert!(p.fetched_bytes < p.blob_size, "{p:?}");
    assert_same_image(&store, &r2.name, &src, "base-v2");
    assert_sound(&store);
}

/// base-v1 (gzip) and base-v2 (zstd:chunked, as skopeo wrote it), served by a handler of our
/// own as repository `app`: the store `s` holds base-v1 already.
struct Chunked {
    content: Content,
    /// base-v2's manifest and its zstd:chunked layer digest.
    manifest: Vec<u8>,
    layer: String,
    store: Store,
    full: Store,
    _tmp: tempfile::TempDir,
}

fn chunked_fixture() -> Option<Chunked> {
    let reg = DockerRegistry::start(None)?;
    let tmp = tempfile::tempdir().unwrap();
    let oci = series(tmp.path());
    let host = reg.host();
    skopeo(&[
        "--dest-tls-verify=false",
        "--dest-compress-format",
        "zstd:chunked",
        &format!("oci:{}:base-v2", oci.display()),
        &format!("docker://{host}/app:v2"),
    ]);
    // Read back unchanged (blob and annotations kept) into a layout the handler serves.
    let back = tmp.path().join("chunked");
    skopeo(&[
        "--src-tls-verify=false",
        &format!("docker://{host}/app:v2"),
        &format!("oci:{}:v2", back.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut blobs = HashMap::new();
    for e in std::fs::read_dir(back.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        blobs.insert(
            format!("sha256:{}", e.file_name().to_string_lossy()),
            std::fs::read(e.path()).unwrap(),
        );
    }
    let manifest = blobs[&digest].clone();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let mt = layerstore_tests::oci::MEDIA_TYPE_MANIFEST.to_string();
    let manifests = HashMap::from([("v2".to_string(), (manifest.clone(), mt))]);
    let store = new_store(&tmp.path().join("s"));
    import(&store, &format!("oci:{}:base-v1", oci.display())).unwrap();
    let full = new_store(&tmp.path().join("full"));
    import(&full, &format!("oci:{}:base-v2", oci.display())).unwrap();
    Some(Chunked {
        content: Content { manifests, blobs },
        manifest,
        layer,
        store,
        full,
        _tmp: tmp,
    })
}

/// The ranges of a `Range: bytes=a-b,c-d` header (inclusive ends).
fn ranges_of(req: &Req) -> Option<Vec<(usize, usize)>> {
    let spec = req.header("range")?.strip_prefix("bytes=")?;
    spec.split(',')
        .map(|r| {
            let (a, b) = r.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

/// A `206 multipart/byteranges` answer of `blob`'s `ranges`, each part's bytes passed through
/// `tamper`.
fn multipart(blob: &[u8], ranges: &[(usize, usize)], tamper: impl Fn(&mut [u8])) -> Resp {
    if let [(a, b)] = ranges {
        let mut data = blob[*a..=*b].to_vec();
        tamper(&mut data);
        return Resp::new(206, data)
            .header("Content-Range", &format!("bytes {a}-{b}/{}", blob.len()));
    }
    let mut body = Vec::new();
    for (a, b) in ranges {
        body.extend_from_slice(
            format!(
                "\r\n--SEP\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b}/{}\r\n\r\n",
                blob.len()
            )
            .as_bytes(),
        );
        let mut data = blob[*a..=*b].to_vec();
        tamper(&mut data);
        body.extend_from_slice(&data);
    }
    body.extend_from_slice(b"\r\n--SEP--\r\n");
    Resp::new(206, body).header("Content-Type", "multipart/byteranges; boundary=SEP")
}

/// Pull `app:v2` from a server answering with `handler`; the pull must succeed with base-v2's
/// exact layer, pulled whole for a reason containing `why` (or partially with `why` empty).
fn pull_through(f: &Chunked, handler: impl Fn(&Req) -> Resp + Send + Sync + 'static, why: &str) {
    let srv = FaultServer::start(handler);
    let r = pulled(&f.store, &srv.host(), "app:v2");
    let p = partial(&r);
    match &p.whole {
        None => assert!(
            why.is_empty(),
            "pulled partially, expected a whole pull: {why}"
        ),
        Some(w) => assert!(
            !why.is_empty() && w.contains(why),
            "pulled whole: {w:?}, expected {why:?}"
        ),
    }
    assert_same_image(&f.store, &r.name, &f.full, "base-v2");
    assert_sound(&f.store);
}

#[test]
fn multi_range_answers_are_pulled_partially() {
    let Some(f) = chunked_fixture() else { return };
    let c = Arc::new(f.content.clone_for_test());
    let layer = f.layer.clone();
    pull_through(
        &f,
        move |req| match (req.path.strip_prefix("/v2/app/blobs/"), ranges_of(req)) {
            (Some(d), Some(rs)) if d == layer => multipart(&c.blobs[d], &rs, |_| {}),
            _ => c.serve(req),
        },
        "",
    );
}

#[test]
fn a_registry_that_ignores_range_ends_in_a_whole_pull() {
    let Some(f) = chunked_fixture() else { return };
    let c = Arc::new(f.content.clone_for_test());
    let layer = f.layer.clone();
    pull_through(
        &f,
        move |req| match req.path.strip_prefix("/v2/app/blobs/") {
            Some(d) if d == layer => Resp::new(200, c.blobs[d].clone()),
            _ => c.serve(req),
        },
        "ignores Range",
    );
}

#[test]
fn ranges_answered_with_wrong_bytes_end_in_a_whole_pull() {
    let Some(f) = chunked_fixture() else { return };
    let c = Arc::new(f.content.clone_for_test());
    let layer = f.layer.clone();
    // The TOC (one range) is answered right; the payload requests get every byte flipped.
    pull_through(
        &f,
        move |req| match (req.path.strip_prefix("/v2/app/blobs/"), ranges_of(req)) {
            (Some(d), Some(rs)) if d == layer && rs.len() > 1 => {
                multipart(&c.blobs[d], &rs, |b| b.iter_mut().for_each(|x| *x ^= 0xff))
            }
            (Some(d), Some(rs)) if d == layer => multipart(&c.blobs[d], &rs, |_| {}),
            _ => c.serve(req),
        },
        "cannot rebuild",
    );
}

#[test]
fn a_toc_not_matching_its_checksum_ends_in_a_whole_pull() {
    let Some(f) = chunked_fixture() else { return };
    let mut c = f.content.clone_for_test();
    // The manifest names another checksum (a new manifest digest, pulled by tag).
    let mut m: serde_json::Value = serde_json::from_slice(&f.manifest).unwrap();
    let ann = m["layers"][0]["annotations"].as_object_mut().unwrap();
    let key = ann
        .keys()
        .find(|k| k.ends_with("manifest-checksum"))
        .unwrap()
        .clone();
    ann.insert(key, format!("sha256:{}", "0".repeat(64)).into());
    let bytes = serde_json::to_vec(&m).unwrap();
    let mt = layerstore_tests::oci::MEDIA_TYPE_MANIFEST.to_string();
    c.manifests.insert("v2".into(), (bytes, mt));
    let c = Arc::new(c);
    let layer = f.layer.clone();
    pull_through(
        &f,
        move |req| match (req.path.strip_prefix("/v2/app/blobs/"), ranges_of(req)) {
            (Some(d), Some(rs)) if d == layer => multipart(&c.blobs[d], &rs, |_| {}),
            _ => c.serve(req),
        },
        "manifest-checksum",
    );
}

#[test]
fn a_registry_refusing_many_ranges_is_asked_for_fewer_larger_ones() {
    let Some(f) = chunked_fixture() else { return };
    let c = Arc::new(f.content.clone_for_test());
    let layer = f.layer.clone();
    let refusals = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = refusals.clone();
    // More than 3 ranges: 416, as a registry with a header size limit answers.
    pull_through(
        &f,
        move |req| match (req.path.strip_prefix("/v2/app/blobs/"), ranges_of(req)) {
            (Some(d), Some(rs)) if d == layer && rs.len() > 3 => {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Resp::new(416, "").header("Content-Range", &format!("bytes */{}", c.blobs[d].len()))
            }
            (Some(d), Some(rs)) if d == layer => multipart(&c.blobs[d], &rs, |_| {}),
            _ => c.serve(req),
        },
        "",
    );
    // Pulled partially after all, with fewer ranges than first asked for.
    assert!(refusals.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

#[test]
fn an_export_as_zstd_chunked_is_read_as_zstd_and_pulled_partially_after_a_copy() {
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let oci = series(tmp.path());
    let src = new_store(&tmp.path().join("src"));
    import(&src, &format!("oci:{}:base-v2", oci.display())).unwrap();
    let out = tmp.path().join("exported");
    let opts = layerstore_import::export::ExportOptions {
        compression: Some(
            layerstore_import::layer_out::LayerCompression::new(
                LayerCompression::ZstdChunked,
                None,
            )
            .unwrap(),
        ),
    };
    let r = layerstore_import::export::export(
        &src,
        "base-v2",
        &format!("oci:{}:v2", out.display()),
        &opts,
    )
    .unwrap();
    assert_eq!(r.layers[0].compression, LayerCompression::ZstdChunked);
    assert_eq!(
        r.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // Any zstd reader sees the same layer: a plain import of the layout.
    let plain = new_store(&tmp.path().join("plain"));
    import(&plain, &format!("oci:{}:v2", out.display())).unwrap();
    assert_same_image(&plain, "v2", &src, "base-v2");
    // skopeo copies it to a registry as it is (annotations kept); a store holding base-v1
    // pulls it partially.
    let host = reg.host();
    skopeo(&[
        "--dest-tls-verify=false",
        &format!("oci:{}:v2", out.display()),
        &format!("docker://{host}/exp:v2"),
    ]);
    let store = new_store(&tmp.path().join("s"));
    import(&store, &format!("oci:{}:base-v1", oci.display())).unwrap();
    let pulled = pulled(&store, &host, "exp:v2");
    let p = partial(&pulled);
    assert_eq!(p.whole, None, "{p:?}");
    assert!(p.fetched_bytes < p.blob_size);
    assert_same_image(&store, &pulled.name, &src, "base-v2");
    assert_sound(&store);
}
