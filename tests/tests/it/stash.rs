//! Stashes through the libraries: a root modified in every way a build changes one is stashed
//! on its first stash and checked out equal to it, byte for byte and in metadata; the layers
//! are read by Go's `archive/tar` and unpacked by umoci to the same tree; stacks, lists,
//! reproducibility, symlinks out of the root, files that change while read.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore_import::stash::{self, DiffCounts, StashOptions, StashProgress, StashReport};
use layerstore_store::{CheckoutOptions, MergedTree, Store};

use crate::common::*;

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn touch(p: &Path, secs: i64) {
    run(Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{secs}"))
        .arg(p));
}

fn setfattr(p: &Path, name: &str, value: &str) {
    run(Command::new("setfattr")
        .args(["-n", name, "-v", value])
        .arg(p));
}

pub(crate) fn do_stash(store: &Store, root: &Path, tag: &str, parent: Option<&str>) -> StashReport {
    stash::stash(
        store,
        root,
        &StashOptions {
            tag: tag.into(),
            parent: parent.map(str::to_string),
            created: Some(1_700_000_000),
            ..StashOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("stash {}: {e:#?}", root.display()))
}

pub(crate) fn checkout(store: &Store, images: &[&str], dest: &Path) {
    let trees: Vec<MergedTree> = images
        .iter()
        .map(|i| store.merged_tree(&store.find_image(i).unwrap()).unwrap())
        .collect();
    store
        .checkout_stack(trees, dest, &CheckoutOptions::default())
        .unwrap();
}

/// A tree's facts, hard-link groups and mtimes (with the root's own mode and mtime).
type FullFacts = (
    BTreeMap<PathBuf, Facts>,
    Vec<Vec<PathBuf>>,
    BTreeMap<PathBuf, i64>,
);

/// Everything a checkout must restore: [`tree_facts`] plus every mtime (seconds; directories
/// too), and the root directory's own mode and mtime.
fn full_facts(root: &Path) -> FullFacts {
    let (facts, groups) = tree_facts(root);
    let mut mtimes = BTreeMap::new();
    let m = std::fs::symlink_metadata(root).unwrap();
    mtimes.insert(PathBuf::from("."), m.mtime());
    mtimes.insert(PathBuf::from("./mode"), i64::from(m.mode() & 0o7777));
    for p in facts.keys() {
        mtimes.insert(
            p.clone(),
            std::fs::symlink_metadata(root.join(p)).unwrap().mtime(),
        );
    }
    (facts, groups, mtimes)
}

#[track_caller]
pub(crate) fn assert_same_tree(want: &Path, got: &Path) {
    let (wf, wg, wm) = full_facts(want);
    let (gf, gg, gm) = full_facts(got);
    for (p, f) in &wf {
        assert_eq!(gf.get(p), Some(f), "{}", p.display());
    }
    assert_eq!(
        wf.keys().collect::<Vec<_>>(),
        gf.keys().collect::<Vec<_>>(),
        "the same paths"
    );
    assert_eq!(wg, gg, "hard-link groups");
    for (p, t) in &wm {
        assert_eq!(gm.get(p), Some(t), "mtime of {}", p.display());
    }
}

/// The base root: a little of every kind.
pub(crate) fn base_root(root: &Path) {
    write(&root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n");
    write(&root.join("etc/hostname"), b"base\n");
    write(&root.join("etc/motd"), b"welcome\n");
    write(&root.join("etc/conf"), b"conf\n");
    setfattr(&root.join("etc/conf"), "user.label", "one");
    let tool: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write(&root.join("usr/bin/tool"), &tool);
    std::fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).unwrap();
    write(&root.join("usr/lib/libx.so.1"), b"lib one");
    write(&root.join("usr/lib/libx.so.2"), b"lib two, longer");
    std::os::unix::fs::symlink("libx.so.1", root.join("usr/lib/libx.so")).unwrap();
    for i in 0..12 {
        write(
            &root.join(format!("var/cache/pkg{i:02}")),
            format!("cached {i}").as_bytes(),
        );
    }
    write(&root.join("srv/old/a"), b"a");
    write(&root.join("srv/old/sub/b"), b"b");
    write(&root.join("data/keep"), &vec![b'k'; 10_000]);
    std::fs::create_dir_all(root.join("run")).unwrap();
    run(Command::new("mkfifo").arg(root.join("run/fifo")));
    write(
        &root.join(OsStr::from_bytes(b"odd-\xff-name")),
        b"not utf-8",
    );
}

/// Modify `root` in every way the issue lists; returns the path of the socket it made.
pub(crate) fn modify(root: &Path) -> PathBuf {
    // Added, changed (same size: found by hash; other size), metadata only, removed.
    write(&root.join("etc/new"), b"new file\n");
    write(&root.join("etc/passwd"), b"root:x:0:0::/root:/bin/ZZ\n");
    write(&root.join("etc/hostname"), b"stashed-build\n");
    std::fs::remove_file(root.join("etc/motd")).unwrap();
    setfattr(&root.join("etc/conf"), "user.label", "two");
    let keep = root.join("data/keep");
    std::fs::set_permissions(&keep, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&keep, Some(1000), Some(1000)).unwrap();
    }
    touch(&keep, 1_000_000);
    // A directory removed; one replaced wholesale (an opaque whiteout is smaller).
    std::fs::remove_dir_all(root.join("srv/old")).unwrap();
    std::fs::remove_dir_all(root.join("var/cache")).unwrap();
    write(&root.join("var/cache/fresh"), b"fresh");
    // Hard links: a group grows; a new group.
    std::fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).unwrap();
    write(&root.join("opt/app/bin"), &vec![b'b'; 5000]);
    std::fs::hard_link(root.join("opt/app/bin"), root.join("opt/app/bin-link")).unwrap();
    // Symlinks: retargeted, and two pointing out of the root (never followed).
    std::fs::remove_file(root.join("usr/lib/libx.so")).unwrap();
    std::os::unix::fs::symlink("libx.so.2", root.join("usr/lib/libx.so")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("host-etc")).unwrap();
    std::os::unix::fs::symlink("../../../../etc/passwd", root.join("etc/escape")).unwrap();
    // A fifo, a device node (as root), a socket (skipped with a warning).
    run(Command::new("mkfifo").arg(root.join("run/fifo2")));
    if is_root() {
        run(Command::new("mknod")
            .arg(root.join("run/zero"))
            .args(["c", "1", "5"]));
    }
    let sock = root.join("run/control.sock");
    std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // Non-UTF-8 names, xattrs on something new.
    write(&root.join(OsStr::from_bytes(b"new-\xfe/inner")), b"inner");
    setfattr(
        &root.join(OsStr::from_bytes(b"new-\xfe/inner")),
        "user.origin",
        "stash",
    );
    sock
}

#[test]
fn a_root_modified_every_way_checks_out_equal_to_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let root = tmp.path().join("root");
    base_root(&root);
    let first = do_stash(&store, &root, "build:stash", None);
    assert_eq!(first.layers, 1, "a stash without parent is one layer");
    assert_eq!(first.parent, None);

    let sock = modify(&root);
    let second = do_stash(&store, &root, "build:stash", None);
    assert_eq!(second.layers, 2, "a stash over a stash adds one layer");
    assert_eq!(second.parent, Some(first.manifest_digest));
    assert_eq!(
        second.warnings,
        [stash::StashWarning::SocketSkipped {
            path: "/run/control.sock".into()
        }]
    );
    let c: &DiffCounts = &second.counts;
    assert_eq!(c.opaque, 1, "var/cache goes opaque, nothing else: {c:?}");
    assert!(c.removed >= 2, "etc/motd and srv/old are whiteouts: {c:?}");
    assert!(
        c.changed >= 2 && c.added >= 5 && c.metadata_only >= 2,
        "{c:?}"
    );
    // Only the stash's own contents are new; unchanged ones are not stored again.
    assert!(second.new_bytes < 10_000, "{second:?}");

    // The layer holds nothing of the host.
    let layer = store.layer_entries(&second.diff_id).unwrap();
    assert!(
        layer.iter().all(|e| !e.path.starts_with(b"host-etc/")),
        "a symlink out of the root is never followed"
    );

    std::fs::remove_file(&sock).unwrap();
    let out = tmp.path().join("out");
    checkout(&store, &["build:stash"], &out);
    assert_same_tree(&root, &out);
    assert_sound(&store);

    // The same layers, unpacked by umoci from an OCI layout of the store's documents, and
    // imported into a fresh store from it, give the same tree.
    let layout = tmp.path().join("layout");
    write_layout(&store, "build:stash", &layout);
    let fresh = Store::init(&tmp.path().join("fresh"), &Default::default()).unwrap();
    layerstore_import::import(
        &fresh,
        &format!("oci:{}:build", layout.display()),
        &Default::default(),
    )
    .unwrap();
    let again = tmp.path().join("again");
    checkout(&fresh, &["build"], &again);
    assert_same_tree(&root, &again);

    // The round trip through `export`: stash → oci-archive (layers gzip-compressed) → a fresh
    // store → checkout.
    let archive = tmp.path().join("stash.tar");
    layerstore_import::export::export(
        &store,
        "build:stash",
        &format!("oci-archive:{}:build", archive.display()),
        &layerstore_import::export::ExportOptions {
            compression: Some(layerstore_import::layer_out::LayerCompression {
                compression: "gzip".parse().unwrap(),
                level: None,
            }),
        },
    )
    .unwrap();
    let third = Store::init(&tmp.path().join("third"), &Default::default()).unwrap();
    layerstore_import::import(
        &third,
        &format!("oci-archive:{}:build", archive.display()),
        &Default::default(),
    )
    .unwrap();
    let exported = tmp.path().join("exported");
    checkout(&third, &["build"], &exported);
    assert_same_tree(&root, &exported);
    assert_sound(&third);
    if have("umoci") && is_root() {
        let bundle = tmp.path().join("bundle");
        let rootfs = umoci_unpack(&format!("{}:build", layout.display()), &bundle);
        let (want, wg) = tree_facts(&root);
        let (got, gg) = tree_facts(&rootfs);
        assert_eq!(want, got, "umoci unpacks the stash to the modified root");
        assert_eq!(wg, gg);
    } else {
        layerstore_tests::skip("umoci unpack of a stash: needs umoci and root");
    }
}

/// An OCI layout of a stored image whose layers are all stashes (uncompressed, blob = diff_id),
/// written from the store's own documents and `export_layer_tar`.
fn write_layout(store: &Store, image: &str, dir: &Path) {
    let info = store.find_image(image).unwrap();
    let (manifest, config) = store.image_documents(&info).unwrap();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |digest: &str, data: &[u8]| {
        std::fs::write(blobs.join(digest.strip_prefix("sha256:").unwrap()), data).unwrap()
    };
    put(&info.manifest_digest.to_string(), &manifest);
    put(&info.config_digest.to_string(), &config);
    for l in &info.layers {
        assert_eq!(l.blob_digest, l.diff_id, "a stash layer's blob is its tar");
        let mut tar = Vec::new();
        store.export_layer_tar(&l.diff_id, &mut tar).unwrap();
        put(&l.diff_id.to_string(), &tar);
        if let Some(go) = go() {
            let listing = go.list(&tar);
            assert_eq!(
                listing.error, None,
                "Go's archive/tar reads layer {}",
                l.diff_id
            );
            assert_eq!(
                listing.entries.len(),
                store.layer_entries(&l.diff_id).unwrap().len(),
                "Go reads every entry"
            );
        }
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": info.manifest_digest.to_string(),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "build"},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn an_unchanged_root_adds_an_empty_layer_and_trust_mtime_reads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let root = tmp.path().join("root");
    base_root(&root);
    do_stash(&store, &root, "s", None);
    let r = stash::stash(
        &store,
        &root,
        &StashOptions {
            tag: "s".into(),
            trust_mtime: true,
            ..StashOptions::default()
        },
    )
    .unwrap();
    assert_eq!((r.layers, r.entries, r.counts.hashed), (2, 0, 0), "{r:?}");
    let r = do_stash(&store, &root, "s", None);
    assert_eq!(r.entries, 0, "hashing finds nothing changed either");
    assert!(r.counts.hashed > 0);
    assert_sound(&store);
}

#[test]
fn the_same_root_and_epoch_give_the_same_image() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    base_root(&root);
    let a = do_stash(&new_store(&tmp.path().join("a")), &root, "x", None);
    let b = do_stash(&new_store(&tmp.path().join("b")), &root, "x", None);
    assert_eq!(a.config_digest, b.config_digest);
    assert_eq!(a.manifest_digest, b.manifest_digest);
}

#[test]
fn stashes_list_with_parent_layers_and_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let root = tmp.path().join("root");
    base_root(&root);
    do_stash(&store, &root, "base", None);
    write(&root.join("etc/more"), b"more");
    let r = stash::stash(
        &store,
        &root,
        &StashOptions {
            tag: "app".into(),
            parent: Some("base".into()),
            labels: vec![("stage".into(), "app".into())],
            message: Some("app built".into()),
            ..StashOptions::default()
        },
    )
    .unwrap();
    let list = stash::list(&store).unwrap();
    let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app", "base"]);
    let app = &list[0];
    assert_eq!(app.layers, 2);
    assert_eq!(app.layer_size, r.layer_size);
    assert!(app.parent.as_deref().unwrap().starts_with("base@sha256:"));
    assert_eq!(app.labels.get("stage").map(String::as_str), Some("app"));
    assert_eq!(list[1].parent, None);
    let (_, config) = store
        .image_documents(&store.find_image("app").unwrap())
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(
        config["history"][1]["created_by"],
        "layerstore stash: app built"
    );
}

#[test]
fn several_images_check_out_stacked_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let a = tmp.path().join("a");
    write(&a.join("d/x"), b"x");
    write(&a.join("f"), b"from a");
    write(&a.join("only-a"), b"a");
    let b = tmp.path().join("b");
    write(&b.join("d"), b"a file over a directory");
    write(&b.join("f"), b"from b");
    write(&b.join("only-b"), b"b");
    do_stash(&store, &a, "a", None);
    do_stash(&store, &b, "b", None);
    let out = tmp.path().join("out");
    checkout(&store, &["a", "b"], &out);
    let snap = snapshot(&out);
    let files: Vec<String> = snap.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(files, ["d", "f", "only-a", "only-b"]);
    assert_eq!(std::fs::read(out.join("f")).unwrap(), b"from b");
    // DEST must not exist for the stacked form.
    let err = store
        .checkout_stack(
            vec![MergedTree::default(), MergedTree::default()],
            &out,
            &CheckoutOptions::default(),
        )
        .unwrap_err();
    assert!(
        matches!(err, layerstore_store::Error::TargetExists { .. }),
        "{err}"
    );
}

#[test]
fn excluded_paths_are_left_out_and_the_parents_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let root = tmp.path().join("root");
    base_root(&root);
    do_stash(&store, &root, "s", None);
    std::fs::remove_dir_all(root.join("var/cache")).unwrap();
    write(&root.join("tmp/scratch.tmp"), b"scratch");
    stash::stash(
        &store,
        &root,
        &StashOptions {
            tag: "s".into(),
            exclude: vec!["/var/cache".into(), "*.tmp".into()],
            ..StashOptions::default()
        },
    )
    .unwrap();
    let tree = store.merged_tree(&store.find_image("s").unwrap()).unwrap();
    assert!(tree.entries.contains_key(&b"var/cache/pkg00"[..]));
    assert!(!tree.entries.contains_key(&b"tmp/scratch.tmp"[..]));
    assert!(tree.entries.contains_key(&b"tmp"[..]));
}

/// Appends to a file once the comparison is done, before the layer is written.
struct Saboteur(PathBuf);
impl StashProgress for Saboteur {
    fn compared(&self, _: &DiffCounts) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.0)
            .unwrap();
        f.write_all(b" and more").unwrap();
    }
}

#[test]
fn a_file_that_changes_while_stashed_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let root = tmp.path().join("root");
    base_root(&root);
    do_stash(&store, &root, "s", None);
    write(&root.join("etc/new"), b"new");
    let saboteur = Saboteur(root.join("etc/new"));
    let err = stash::stash(
        &store,
        &root,
        &StashOptions {
            tag: "s".into(),
            progress: &saboteur,
            ..StashOptions::default()
        },
    )
    .unwrap_err();
    match &err {
        layerstore_import::Error::StashChanged { path, .. } => assert_eq!(path, "/etc/new"),
        other => panic!("{other:#?}"),
    }
    assert_eq!(
        store.find_image("s").unwrap().layers.len(),
        1,
        "nothing published"
    );
    assert_sound(&store);
}

/// Records what a stash reports: files and bytes to hash, bytes hashed, layer bytes.
#[derive(Default)]
struct Recorder {
    hashing: std::sync::Mutex<Vec<(u64, u64)>>,
    hashed: std::sync::atomic::AtomicU64,
    compared: std::sync::atomic::AtomicUsize,
    layer: std::sync::atomic::AtomicU64,
}

impl StashProgress for Recorder {
    fn hashing(&self, files: u64, bytes: u64) {
        self.hashing.lock().unwrap().push((files, bytes));
    }
    fn hashed(&self, bytes: u64) {
        self.hashed
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }
    fn compared(&self, _: &DiffCounts) {
        self.compared
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn layer_bytes(&self, bytes: u64) {
        self.layer
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A stash reports the files it reads to compare (their bytes all hashed) and the layer's tar
/// bytes as they are made, summing to the layer's size: a first stash (nothing to compare) and
/// one on it where files of the same size must be read.
#[test]
fn stash_progress_reports_bytes_hashed_and_layer_bytes_summing_to_the_layer_size() {
    use std::sync::atomic::Ordering::Relaxed;
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let root = tmp.path().join("root");
    base_root(&root);
    let run = |rec: &Recorder| {
        stash::stash(
            &store,
            &root,
            &StashOptions {
                tag: "s".into(),
                created: Some(1_700_000_000),
                progress: rec,
                ..StashOptions::default()
            },
        )
        .unwrap()
    };
    let first = Recorder::default();
    let r = run(&first);
    assert_eq!(
        *first.hashing.lock().unwrap(),
        [(0, 0)],
        "no parent: nothing to compare"
    );
    assert_eq!(first.compared.load(Relaxed), 1);
    assert_eq!(first.layer.load(Relaxed), r.layer_size, "{r:?}");

    // Same size, new content and mtime: read to compare, then stored.
    let tool: Vec<u8> = (0..200_000u32).map(|i| (i * 11 % 251) as u8).collect();
    write(&root.join("usr/bin/tool"), &tool);
    let second = Recorder::default();
    let r = run(&second);
    let hashing = second.hashing.lock().unwrap().clone();
    assert_eq!(hashing.len(), 1, "{hashing:?}");
    let (files, bytes) = hashing[0];
    assert_eq!(files, r.counts.hashed, "{r:?}");
    assert!(bytes >= tool.len() as u64, "{hashing:?}");
    assert_eq!(second.hashed.load(Relaxed), bytes);
    assert_eq!(second.layer.load(Relaxed), r.layer_size, "{r:?}");
    assert!(
        r.layer_size > tool.len() as u64,
        "the changed file is in the layer"
    );
    assert_sound(&store);
}
