//! Compressed objects: a store with per-object zstd gives the same trees, layer tars, disks and
//! figures as a plain one, stores fewer bytes, and damage in a compressed file is caught, never
//! read back as content.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::*;
use layerstore_store::fsck::{Finding, FsckOptions};
use layerstore_store::{
    CheckoutMode, CheckoutOptions, Digest, EntryKind, ObjectCompression, ObjectId, Store,
    StoreOptions,
};
use layerstore_tests::{SAMPLE_TAGS, sample_series};

fn compressed_store(dir: &Path) -> Store {
    let opts = StoreOptions {
        compression: Some(ObjectCompression {
            level: 3,
            min_size: 64,
        }),
        ..StoreOptions::default()
    };
    Store::init(&dir.join("zstore"), &opts).expect("init")
}

/// (zstd loose, raw loose, zstd inline) object counts, from the index.
fn storage_counts(store: &Store) -> (u64, u64, u64) {
    let c = store.storage_counts().unwrap();
    (c.zstd_loose, c.plain_loose, c.zstd_inline)
}

fn checkout(store: &Store, tag: &str, dest: &Path, mode: CheckoutMode) {
    let img = store.resolve_image(tag).unwrap();
    let tree = store.merged_tree(&img).unwrap();
    let opts = CheckoutOptions {
        mode,
        ..CheckoutOptions::default()
    };
    store.checkout(&tree, dest, &opts).unwrap();
}

#[test]
fn compressed_objects_are_transparent() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("sample");
    let written = sample_series(&oci).unwrap();
    let plain = new_store(tmp.path());
    let z = compressed_store(tmp.path());
    for tag in SAMPLE_TAGS {
        let spec = format!("oci:{}:{tag}", oci.display());
        import(&plain, &spec).unwrap();
        import(&z, &spec).unwrap();
    }

    // The same contents, in fewer bytes; the index's figure is what the files hold.
    let (dp, dz) = (plain.df().unwrap(), z.df().unwrap());
    assert_eq!(dz.objects, dp.objects);
    assert_eq!(dz.object_bytes, dp.object_bytes);
    assert_eq!(dz.logical_bytes, dp.logical_bytes);
    assert!(
        dz.loose_bytes < dp.loose_bytes * 3 / 4,
        "{} vs {}",
        dz.loose_bytes,
        dp.loose_bytes
    );
    let files: u64 = z.loose_files().unwrap().iter().map(|(_, n)| n).sum();
    assert_eq!(files, dz.loose_bytes);
    // Text compresses; the gzip-compressed files of the series do not and stay plain files.
    let (zl, rl, zi) = storage_counts(&z);
    assert!(zl > 0 && rl > 0 && zi > 0, "{zl} {rl} {zi}");

    // Every layer still rebuilds to its diff_id.
    for (_, w) in &written {
        for l in &w.layers {
            let d: Digest = l.diff_id.parse().unwrap();
            let mut out = Vec::new();
            z.export_layer_tar(&d, &mut out).unwrap();
            assert_eq!(Digest::of(&out), d);
        }
    }

    // Checkouts in every mode and the rootfs tar equal the plain store's.
    for tag in SAMPLE_TAGS {
        let reference = tmp.path().join(format!("plain-{tag}"));
        checkout(&plain, tag, &reference, CheckoutMode::Copy);
        let (want, want_links) = tree_facts(&reference);
        for mode in [CheckoutMode::Copy, CheckoutMode::Hardlink] {
            let dest = tmp.path().join(format!("z-{tag}-{mode:?}"));
            checkout(&z, tag, &dest, mode);
            let (got, links) = tree_facts(&dest);
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>()
            );
            for (k, f) in &want {
                assert_eq!(got[k].content, f.content, "{tag} {}", k.display());
            }
            if mode == CheckoutMode::Copy {
                assert_eq!(got, want, "{tag}");
                assert_eq!(links, want_links, "{tag}");
            }
        }
        let tar_of = |s: &Store| {
            let tree = s.merged_tree(&s.resolve_image(tag).unwrap()).unwrap();
            let mut out = Vec::new();
            s.write_tar(&tree, &mut out).unwrap();
            out
        };
        assert!(tar_of(&z) == tar_of(&plain), "{tag}: rootfs tars differ");
    }
    // A hardlink checkout links variants of every content, compressed or not, with the
    // image's modes (the copy's).
    let hl = tmp.path().join(format!("z-{}-Hardlink", SAMPLE_TAGS[0]));
    let reference = tmp.path().join(format!("plain-{}", SAMPLE_TAGS[0]));
    let mut linked = 0;
    for e in walkdir(&hl) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        if m.is_file() {
            let want =
                std::fs::symlink_metadata(reference.join(e.strip_prefix(&hl).unwrap())).unwrap();
            assert!(m.nlink() > 1, "{} is linked", e.display());
            assert_eq!(
                m.permissions().mode(),
                want.permissions().mode(),
                "{}",
                e.display()
            );
            linked += 1;
        }
    }
    assert!(linked > 0);
    assert_sound(&z);
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A loose object stored compressed, with its size.
fn a_compressed_object(store: &Store, tag: &str) -> (ObjectId, u64) {
    let img = store.resolve_image(tag).unwrap();
    let mut seen = BTreeSet::new();
    for l in &img.layers {
        for e in store.layer_entries(&l.diff_id).unwrap() {
            if e.kind != EntryKind::Regular || !seen.insert(e.object.unwrap()) {
                continue;
            }
            let id = e.object.unwrap();
            if let Some(f) = store.loose_state(&id, e.size).unwrap()
                && f.zstd
                && e.size > 64 * 1024
            {
                return (id, e.size);
            }
        }
    }
    panic!("no compressed object of over 64 KiB in {tag}");
}

fn rewrite_object(store: &Store, id: &ObjectId, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = store.object_path(id);
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
}

#[test]
fn damage_in_compressed_objects_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("sample");
    sample_series(&oci).unwrap();
    let z = compressed_store(tmp.path());
    import(&z, &format!("oci:{}:base-v1", oci.display())).unwrap();
    let (id, size) = a_compressed_object(&z, "base-v1");
    let mut content = Vec::new();
    z.read_object(&id).unwrap().copy_to(&mut content).unwrap();
    assert_eq!(ObjectId::of(&content), id);

    // A flipped byte inside the frame: fsck names the object, readers fail instead of
    // returning other bytes, a checkout fails.
    rewrite_object(&z, &id, |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
    });
    let rep = z.fsck(&FsckOptions::default()).unwrap();
    assert!(
        rep.findings
            .iter()
            .any(|f| matches!(f, Finding::CorruptObject { id: i, .. } if *i == id.hex())),
        "{:?}",
        rep.findings
    );
    let mut sink = Vec::new();
    let read = z.read_object(&id).unwrap().copy_to(&mut sink);
    assert!(read.is_err() || sink != content);
    assert!(read.is_err(), "corrupt frame read without error");
    let img = z.resolve_image("base-v1").unwrap();
    let tree = z.merged_tree(&img).unwrap();
    assert!(
        z.checkout(&tree, &tmp.path().join("co"), &CheckoutOptions::default())
            .is_err()
    );

    // A truncated file (a crash leftover) does not count as the object: the next writer of the
    // content replaces it, and the store is whole again.
    rewrite_object(&z, &id, |b| b.truncate(b.len() / 2));
    assert_eq!(z.loose_state(&id, size).unwrap(), None);
    let staging = z.staging("rewrite").unwrap();
    let (obj, outcome) = staging.put_bytes(&content).unwrap();
    assert_eq!(outcome, layerstore_store::PutOutcome::Written);
    assert!(obj.zstd);
    staging.flush().unwrap();
    staging.remove().unwrap();
    assert_eq!(
        z.loose_state(&id, size).unwrap().map(|f| f.zstd),
        Some(true)
    );
    assert_sound(&z);
}
