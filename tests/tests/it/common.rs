//! Helpers shared by the scenario tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use layerstore_import::{ImportOptions, ImportReport};
use layerstore_store::fsck::FsckOptions;
use layerstore_store::{RefKind, Store, StoreOptions};

/// A fresh store in a temp dir.
pub fn new_store(dir: &Path) -> Store {
    Store::init(&dir.join("store"), &StoreOptions::default()).expect("init")
}

/// A fresh store in `dir` and the sample series written beside it, as the `oci:` source spec
/// of the series (append `:TAG`).
pub fn sample_store(dir: &Path) -> (Store, String) {
    let oci = dir.join("sample");
    layerstore_tests::sample_series(&oci).expect("sample series");
    (new_store(dir), format!("oci:{}", oci.display()))
}

/// An OCI layout `dir/oci` holding one image `tag` of one gzip layer `tar`; returns its
/// `oci:` source spec.
pub fn one_layer_image(dir: &Path, tag: &str, tar: Vec<u8>) -> String {
    use layerstore_tests::{Compression, ImageSpec, Layer, OciLayout};
    let oci = dir.join("oci");
    OciLayout::create(&oci)
        .expect("layout")
        .add_image(
            tag,
            &ImageSpec::new(vec![Layer::new(tar, Compression::Gzip)]),
        )
        .expect("image");
    format!("oci:{}:{tag}", oci.display())
}

pub fn import(store: &Store, spec: &str) -> layerstore_import::Result<ImportReport> {
    layerstore_import::import(store, spec, &ImportOptions::default())
}

/// fsck finds nothing, no staging or lease is left, and every ref resolves.
#[track_caller]
pub fn assert_sound(store: &Store) {
    let rep = store.fsck(&FsckOptions::default()).expect("fsck runs");
    assert!(rep.is_clean(), "fsck: {:?}", rep.findings);
    let staging: Vec<_> = std::fs::read_dir(store.path().join("staging"))
        .unwrap()
        .collect();
    assert!(staging.is_empty(), "staging leftovers: {staging:?}");
    assert!(store.leases().unwrap().is_empty(), "leases left");
    for r in store.refs(Some(RefKind::Image)).unwrap() {
        let img = store
            .resolve_image(r.name.name())
            .expect("image ref resolves");
        store.merged_tree(&img).expect("tree builds");
    }
    // Every root, and every image bound to a root, resolves by digest and flattens.
    for root in store.roots().unwrap() {
        for d in std::iter::once(root.image).chain(root.bound.iter().map(|b| b.image)) {
            let img = store
                .image_by_digest(&d)
                .unwrap()
                .unwrap_or_else(|| panic!("root {} needs {d}", root.name));
            store.merged_tree(&img).expect("tree builds");
        }
    }
}

/// A snapshot of every file below `dir`: path → (kind, content or target).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if m.file_type().is_symlink() {
                out.insert(rel, format!("link {:?}", std::fs::read_link(&p).unwrap()));
            } else if m.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else {
                out.insert(rel, format!("file {:?}", std::fs::read(&p).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Whether a command exists.
pub fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

/// What a comparison of two unpacked trees looks at: type, mode, owner, size, content hash,
/// symlink target, device number, xattrs (mtimes of directories aside, as the issue allows).
#[derive(Debug, PartialEq, Eq)]
pub struct Facts {
    pub kind: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: Option<blake3::Hash>,
    pub target: Option<PathBuf>,
    pub rdev: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Facts of every entry below `root`, and its hard-link groups (sorted lists of paths).
pub fn tree_facts(root: &Path) -> (BTreeMap<PathBuf, Facts>, Vec<Vec<PathBuf>>) {
    use std::os::unix::fs::MetadataExt;
    let mut xattrs = all_xattrs(root);
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let ft = m.file_type();
            if ft.is_dir() {
                stack.push(p.clone());
            }
            if ft.is_file() && m.nlink() > 1 {
                inodes
                    .entry((m.dev(), m.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            out.insert(
                rel.clone(),
                Facts {
                    kind: m.mode() & 0o170000,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if ft.is_file() { m.len() } else { 0 },
                    content: ft
                        .is_file()
                        .then(|| blake3::hash(&std::fs::read(&p).unwrap())),
                    target: ft.is_symlink().then(|| std::fs::read_link(&p).unwrap()),
                    rdev: m.rdev(),
                    xattrs: xattrs.remove(&rel).unwrap_or_default(),
                },
            );
        }
    }
    let mut groups: Vec<Vec<PathBuf>> = inodes
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    groups.sort();
    (out, groups)
}

/// Every xattr below `root` in one `getfattr -R` run (optional: without getfattr, none).
fn all_xattrs(root: &Path) -> BTreeMap<PathBuf, Vec<(String, Vec<u8>)>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out: BTreeMap<PathBuf, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let Ok(o) = std::process::Command::new("getfattr")
        .args(["-R", "-P", "--absolute-names", "-d", "-m", "-", "-e", "hex"])
        .arg(root)
        .output()
    else {
        return out;
    };
    let mut current: Option<PathBuf> = None;
    for line in o.stdout.split(|&b| b == b'\n') {
        if let Some(name) = line.strip_prefix(b"# file: ") {
            let p = Path::new(std::ffi::OsStr::from_bytes(name));
            current = p.strip_prefix(root).ok().map(Path::to_path_buf);
        } else if let (Some(cur), Some(eq)) = (&current, line.iter().position(|&b| b == b'=')) {
            let (k, v) = line.split_at(eq);
            out.entry(cur.clone())
                .or_default()
                .push((String::from_utf8_lossy(k).into_owned(), v[1..].to_vec()));
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Assert two unpacked trees are equal, listing the first differences.
#[track_caller]
pub fn assert_same_tree(ours: &Path, theirs: &Path) {
    let (a, ga) = tree_facts(ours);
    let (b, gb) = tree_facts(theirs);
    let mut diffs = Vec::new();
    for k in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if a.get(k) != b.get(k) {
            diffs.push(format!(
                "{}: ours {:?} theirs {:?}",
                k.display(),
                a.get(k),
                b.get(k)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences, first: {:#?}",
        diffs.len(),
        &diffs[..diffs.len().min(10)]
    );
    assert_eq!(ga, gb, "hard-link groups differ");
}

/// The Go `archive/tar` reference, built once per test binary (the hostile and differential
/// tests share it); `None` (with a note) without a Go toolchain.
pub fn go() -> Option<&'static layerstore_tests::GoTar> {
    static GO: std::sync::OnceLock<Option<layerstore_tests::GoTar>> = std::sync::OnceLock::new();
    GO.get_or_init(
        || match layerstore_tests::GoTar::build(env!("CARGO_TARGET_TMPDIR").as_ref()) {
            Ok(g) => Some(g),
            Err(why) => {
                eprintln!("SKIP: Go archive/tar reference not run: {why}");
                None
            }
        },
    )
    .as_ref()
}

/// What a push or an export reported to its progress sink, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressEvent {
    BlobStart(usize, layerstore_store::Digest),
    BlobBytes(usize, u64),
    /// Index, blob digest, blob size.
    BlobDone(usize, layerstore_store::Digest, u64),
    Skipped(usize, layerstore_import::registry::push::LayerPush),
    UploadStart(usize, u64),
    Uploaded(usize, u64),
    Pushed(usize, layerstore_import::registry::push::LayerPush),
}

/// A progress sink for push and export that records every call.
#[derive(Default)]
pub struct ProgressRecorder(std::sync::Mutex<Vec<ProgressEvent>>);

impl ProgressRecorder {
    pub fn events(&self) -> Vec<ProgressEvent> {
        self.0.lock().unwrap().clone()
    }

    fn push(&self, e: ProgressEvent) {
        self.0.lock().unwrap().push(e);
    }

    /// The compressed bytes reported for layer `index`, all calls together.
    pub fn blob_bytes(&self, index: usize) -> u64 {
        self.events()
            .iter()
            .map(|e| match e {
                ProgressEvent::BlobBytes(i, n) if *i == index => *n,
                _ => 0,
            })
            .sum()
    }

    /// The uploaded bytes reported for layer `index`, and in how many calls.
    pub fn uploaded(&self, index: usize) -> (u64, usize) {
        self.events()
            .iter()
            .filter_map(|e| match e {
                ProgressEvent::Uploaded(i, n) if *i == index => Some(*n),
                _ => None,
            })
            .fold((0, 0), |(sum, calls), n| (sum + n, calls + 1))
    }
}

impl layerstore_import::layer_out::BlobProgress for ProgressRecorder {
    fn blob_start(
        &self,
        index: usize,
        diff_id: &layerstore_store::Digest,
        _: layerstore_import::layer_out::LayerCompression,
    ) {
        self.push(ProgressEvent::BlobStart(index, *diff_id));
    }
    fn blob_bytes(&self, index: usize, bytes: u64) {
        self.push(ProgressEvent::BlobBytes(index, bytes));
    }
    fn blob_done(&self, index: usize, blob: &layerstore_import::layer_out::LayerBlob) {
        self.push(ProgressEvent::BlobDone(index, blob.digest, blob.size));
    }
}

impl layerstore_import::registry::push::PushProgress for ProgressRecorder {
    fn layer_skipped(
        &self,
        index: usize,
        _: &layerstore_store::Digest,
        how: layerstore_import::registry::push::LayerPush,
    ) {
        self.push(ProgressEvent::Skipped(index, how));
    }
    fn upload_start(&self, index: usize, size: u64) {
        self.push(ProgressEvent::UploadStart(index, size));
    }
    fn uploaded(&self, index: usize, bytes: u64) {
        self.push(ProgressEvent::Uploaded(index, bytes));
    }
    fn layer_pushed(&self, index: usize, layer: &layerstore_import::registry::push::PushedLayer) {
        self.push(ProgressEvent::Pushed(index, layer.how));
    }
}

/// Run `cmd`, which must succeed; its standard output.
#[track_caller]
pub fn run(cmd: &mut std::process::Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `umoci unpack --image IMAGE BUNDLE`, which must succeed; the bundle's rootfs.
#[track_caller]
pub fn umoci_unpack(image: &str, bundle: &Path) -> PathBuf {
    run(std::process::Command::new("umoci")
        .args(["unpack", "--image", image])
        .arg(bundle));
    bundle.join("rootfs")
}
