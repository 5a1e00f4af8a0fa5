//! Helpers shared by the scenario tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use layerstore_import::{ImportOptions, ImportReport};
use layerstore_store::fsck::FsckOptions;
use layerstore_store::{RefKind, Store, StoreOptions};

/// A fresh store in a temp dir.
pub fn new_store(dir: &Path) -> Store {
    Store::init(&dir.join("store"), &StoreOptions::default()).expect("init")
}

pub fn import(store: &Store, spec: &str) -> layerstore_import::Result<ImportReport> {
    layerstore_import::import(store, spec, &ImportOptions::default())
}

/// fsck finds nothing, no staging or lease is left, and every ref resolves.
#[track_caller]
pub fn assert_sound(store: &Store) {
    let rep = store.fsck(&FsckOptions::default()).expect("fsck runs");
    assert!(rep.is_clean(), "fsck: {:?}", rep.findings);
    let staging: Vec<_> = std::fs::read_dir(store.path().join("staging")).unwrap().collect();
    assert!(staging.is_empty(), "staging leftovers: {staging:?}");
    assert!(store.leases().unwrap().is_empty(), "leases left");
    for r in store.refs(Some(RefKind::Image)).unwrap() {
        let img = store.resolve_image(r.name.name()).expect("image ref resolves");
        store.merged_tree(&img).expect("tree builds");
    }
}

/// A snapshot of every file below `dir`: path → (kind, content or target).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
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
