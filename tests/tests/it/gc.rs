//! Garbage collection scenarios through the libraries. Every test ends with the store sound
//! (fsck clean, every ref resolvable).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::*;
use layerstore_gc::why::{Subject, why};
use layerstore_gc::{GcOptions, collect, plan};
use layerstore_store::disk::{DiskFormat, DiskOptions};
use layerstore_store::{LayerState, ObjectId, PutOutcome, RefKind, RefName, Store};
use layerstore_tests::{
    Compression, Entry, ImageSpec, Layer, LayerBuilder, OciLayout, TarFormat, sample_series,
};

fn gc(store: &Store) -> layerstore_gc::GcReport {
    collect(store, &GcOptions::default())
        .unwrap()
        .1
        .expect("not a dry run")
}

fn disk(store: &Store, name: &str, out: &Path) {
    let img = store.resolve_image(name).unwrap();
    let opts = DiskOptions {
        format: DiskFormat::Tar,
        size: None,
        keep_merged: false,
        merged_name: name.into(),
    };
    store.generate_disk(&img, out, &opts).unwrap();
}

/// Loose object bytes on disk.
fn loose_bytes(store: &Store) -> u64 {
    store.loose_files().unwrap().iter().map(|(_, s)| s).sum()
}

#[test]
fn upgrade_leaves_what_a_fresh_v2_store_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("sample");
    sample_series(&oci).unwrap();
    let src = |t: &str| format!("oci:{}:{t}", oci.display());

    let store = new_store(tmp.path());
    import(&store, &src("base-v1")).unwrap();
    import(&store, &src("app-v1")).unwrap();
    disk(&store, "app-v1", &tmp.path().join("app-v1.tar"));
    import(&store, &src("base-v2")).unwrap();
    import(&store, &src("app-v2")).unwrap();
    store
        .remove_refs(&[
            RefName::image("base-v1").unwrap(),
            RefName::image("app-v1").unwrap(),
        ])
        .unwrap();
    let planned = plan(&store).unwrap();
    let report = gc(&store);
    assert_eq!(
        report.removed.layers.len(),
        3,
        "two v1 layers and app-v1's merged tree"
    );
    assert_eq!(planned.object_bytes, report.removed.object_bytes);
    assert_sound(&store);

    let fresh_dir = tmp.path().join("fresh");
    std::fs::create_dir(&fresh_dir).unwrap();
    let fresh = new_store(&fresh_dir);
    import(&fresh, &src("base-v2")).unwrap();
    import(&fresh, &src("app-v2")).unwrap();
    let (a, b) = (store.df().unwrap(), fresh.df().unwrap());
    assert_eq!(a.object_bytes, b.object_bytes);
    assert_eq!(a.objects, b.objects);
    assert_eq!(loose_bytes(&store), loose_bytes(&fresh));
    // Layer refs left are exactly the v2 layers.
    let layers: BTreeSet<String> = store
        .refs(Some(RefKind::Layer))
        .unwrap()
        .into_iter()
        .map(|r| r.target)
        .collect();
    let fresh_layers: BTreeSet<String> = fresh
        .refs(Some(RefKind::Layer))
        .unwrap()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(layers, fresh_layers);
    disk(&store, "app-v2", &tmp.path().join("app-v2.tar"));
    assert!(
        store.refs(Some(RefKind::Merged)).unwrap().is_empty(),
        "merged ref dropped after disk"
    );
    assert!(
        collect(&store, &GcOptions::default())
            .unwrap()
            .1
            .unwrap()
            .removed
            .layers
            .len()
            == 1,
        "the app-v2 merged tree goes at the next gc"
    );
    assert_sound(&store);
}

#[test]
fn gc_keeps_objects_reachable_from_merged_refs() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("sample");
    sample_series(&oci).unwrap();
    let store = new_store(tmp.path());
    import(&store, &format!("oci:{}:base-v1", oci.display())).unwrap();
    let img = store.resolve_image("base-v1").unwrap();
    let (_, tree) = store.create_merged("pinned", &img).unwrap();
    store
        .remove_refs(&[RefName::image("base-v1").unwrap()])
        .unwrap();
    let r = gc(&store);
    assert!(
        r.removed.layers.is_empty() && r.removed.layer_refs.is_empty(),
        "a merged ref keeps its image's layers and their refs: {:?}",
        r.removed
    );
    let layer = &img.layers[0].diff_id;
    assert!(
        store
            .refs(Some(RefKind::Layer))
            .unwrap()
            .iter()
            .any(|r| r.target == layer.to_string())
    );
    let reasons =
        layerstore_gc::why::why(&store, &layerstore_gc::why::Subject::Layer(*layer)).unwrap();
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons[0].root, "merged/pinned");
    // Every object of the merged tree is still readable.
    for e in tree.entries.values() {
        if let Some(id) = e.object {
            store.read_object(&id).unwrap();
        }
    }
    assert_sound(&store);
    store
        .remove_refs(&[RefName::merged("pinned").unwrap()])
        .unwrap();
    gc(&store);
    assert_eq!(store.df().unwrap().objects, 0);
    assert!(store.loose_files().unwrap().is_empty());
    assert_sound(&store);
}

#[test]
fn gc_removes_stray_files_of_an_interrupted_import() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    // A loose object written before a crash, with no row.
    let id = layerstore_store::ObjectId::of(&[5u8; 9000]);
    let p = store.object_path(&id);
    std::fs::write(&p, [5u8; 9000]).unwrap();
    let planned = plan(&store).unwrap();
    assert_eq!(planned.stray_files, 1);
    assert_eq!(planned.stray_bytes, 9000);
    gc(&store);
    assert!(!p.exists());
    assert_sound(&store);
}

#[test]
fn dry_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("sample");
    sample_series(&oci).unwrap();
    let store = new_store(tmp.path());
    import(&store, &format!("oci:{}:app-v1", oci.display())).unwrap();
    store
        .remove_refs(&[RefName::image("app-v1").unwrap()])
        .unwrap();
    let before = store.df().unwrap();
    let (p, r) = collect(&store, &GcOptions { dry_run: true }).unwrap();
    assert!(r.is_none());
    assert_eq!(p.layers.len(), 2);
    assert_eq!(p.object_bytes, before.object_bytes);
    assert_eq!(store.df().unwrap().objects, before.objects);
    assert_sound(&store);
}

/// Model-based test: random sequences of import / tag / rm / disk / gc against a model of which
/// names exist; after every gc the stored objects are exactly those the named images need.
mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Import(usize),
        Tag(usize, usize),
        Rm(usize),
        Disk(usize),
        Gc,
        /// Set root r (of 2) to the image a name names.
        RootSet(usize, usize),
        RootRm(usize),
        /// Bind the image a name names to root r.
        Bind(usize, usize),
        Unbind(usize),
        /// `import --layers-only`.
        LayersOnly(usize),
        /// Import with a local label.
        Label(usize),
        /// Pin image i by digest to a lease (bind's pin: perhaps before it is stored).
        Pin(usize),
        /// End that lease.
        Unpin,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..4usize).prop_map(Op::Import),
            1 => (0..4usize, 0..4usize).prop_map(|(a, b)| Op::Tag(a, b)),
            2 => (0..4usize).prop_map(Op::Rm),
            1 => (0..4usize).prop_map(Op::Disk),
            2 => Just(Op::Gc),
            1 => (0..2usize, 0..4usize).prop_map(|(r, i)| Op::RootSet(r, i)),
            1 => (0..2usize).prop_map(Op::RootRm),
            1 => (0..2usize, 0..4usize).prop_map(|(r, i)| Op::Bind(r, i)),
            1 => (0..2usize).prop_map(Op::Unbind),
            1 => (0..4usize).prop_map(Op::LayersOnly),
            1 => (0..4usize).prop_map(Op::Label),
            1 => (0..4usize).prop_map(Op::Pin),
            1 => Just(Op::Unpin),
        ]
    }

    /// Four small images sharing some files.
    fn images() -> Vec<ImageSpec> {
        let f = |name: &str, content: &[u8]| Entry::file(name, content.to_vec());
        let shared = vec![0xabu8; 6000];
        let layer = |entries: Vec<Entry>| {
            Layer::new(
                LayerBuilder::new(TarFormat::Pax)
                    .with_entries(entries)
                    .tar_bytes(),
                Compression::Gzip,
            )
        };
        let base = layer(vec![f("lib/shared", &shared), f("etc/conf", b"c")]);
        vec![
            ImageSpec::new(vec![base.clone()]),
            ImageSpec::new(vec![base.clone(), layer(vec![f("app/a", &[1u8; 7000])])]),
            ImageSpec::new(vec![layer(vec![
                f("lib/shared", &shared),
                f("app/b", &[2u8; 8000]),
            ])]),
            ImageSpec::new(vec![
                base,
                layer(vec![
                    Entry::whiteout("lib/shared"),
                    f("app/c", &[3u8; 9000]),
                ]),
            ]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn gc_matches_the_model(ops in proptest::collection::vec(op(), 1..14)) {
            let tmp = tempfile::tempdir().unwrap();
            let oci = tmp.path().join("oci");
            let mut layout = OciLayout::create(&oci).unwrap();
            let specs = images();
            let mut written = Vec::new();
            for (i, s) in specs.iter().enumerate() {
                let w = layout.add_image(&format!("img{i}"), s).unwrap();
                written.push(w.manifest_digest.parse::<layerstore_store::Digest>().unwrap());
            }
            let store = new_store(tmp.path());
            // Model: name → image index; root → image index; root → bound image indexes;
            // image index → local label keys (while its row lives); image index → digest.
            let mut names: BTreeMap<String, usize> = BTreeMap::new();
            let mut roots: BTreeMap<usize, usize> = BTreeMap::new();
            let mut bound: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
            let mut labels: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
            let mut digests: BTreeMap<usize, layerstore_store::Digest> = BTreeMap::new();
            // Images whose rows are stored; images a lease pins (whether stored or not).
            let mut stored: BTreeSet<usize> = BTreeSet::new();
            let mut pinned: BTreeSet<usize> = BTreeSet::new();
            let mut lease: Option<layerstore_store::Lease<'_>> = None;
            let named = |names: &BTreeMap<String, usize>, i: usize| names.get(&format!("img{i}")).copied();
            for op in ops {
                match op {
                    Op::Import(i) => {
                        let r = import(&store, &format!("oci:{}:img{i}", oci.display())).unwrap();
                        digests.insert(i, r.manifest_digest);
                        names.insert(format!("img{i}"), i);
                        stored.insert(i);
                    }
                    Op::LayersOnly(i) => {
                        let opts = layerstore_import::ImportOptions { layers_only: true, ..Default::default() };
                        let r = layerstore_import::import(&store, &format!("oci:{}:img{i}", oci.display()), &opts).unwrap();
                        digests.insert(i, r.manifest_digest);
                        stored.insert(i);
                    }
                    Op::Label(i) => {
                        let opts = layerstore_import::ImportOptions {
                            labels: vec![(format!("k{i}"), "v".into())],
                            ..Default::default()
                        };
                        let r = layerstore_import::import(&store, &format!("oci:{}:img{i}", oci.display()), &opts).unwrap();
                        digests.insert(i, r.manifest_digest);
                        names.insert(format!("img{i}"), i);
                        labels.entry(i).or_default().insert(format!("k{i}"));
                        stored.insert(i);
                    }
                    Op::Pin(i) => {
                        let l = match &lease {
                            Some(l) => l,
                            None => lease.insert(store.begin_lease("model pin").unwrap()),
                        };
                        let is_stored = l.pin_images(&[written[i]]).unwrap()[0];
                        prop_assert_eq!(is_stored, stored.contains(&i));
                        pinned.insert(i);
                    }
                    Op::Unpin => {
                        lease = None;
                        pinned.clear();
                    }
                    Op::RootSet(r, i) => {
                        if let Some(img) = named(&names, i) {
                            let prev = store.set_root(&format!("r{r}"), &digests[&img]).unwrap();
                            prop_assert_eq!(prev, roots.get(&r).map(|p| digests[p]));
                            roots.insert(r, img);
                        }
                    }
                    Op::RootRm(r) => {
                        let res = store.remove_root(&format!("r{r}"));
                        prop_assert_eq!(res.is_ok(), roots.remove(&r).is_some());
                        bound.remove(&r);
                    }
                    Op::Bind(r, i) => {
                        if let Some(img) = named(&names, i) {
                            let d = digests[&img];
                            let res = store.bind(&format!("r{r}"), &[(d, format!("localhost/img@{d}"))]);
                            prop_assert_eq!(res.is_ok(), roots.contains_key(&r));
                            if res.is_ok() {
                                bound.entry(r).or_default().insert(img);
                            }
                        }
                    }
                    Op::Unbind(r) => {
                        let res = store.unbind(&format!("r{r}"), None);
                        prop_assert_eq!(res.is_ok(), roots.contains_key(&r));
                        bound.remove(&r);
                    }
                    Op::Tag(i, j) => {
                        if let Some(&img) = names.get(&format!("img{i}")) {
                            let info = store.resolve_image(&format!("img{i}")).unwrap();
                            store.set_refs(&[(RefName::image(&format!("tag{j}")).unwrap(), info.manifest_digest.to_string())]).unwrap();
                            names.insert(format!("tag{j}"), img);
                        }
                    }
                    Op::Rm(i) => {
                        let n = format!("img{i}");
                        if names.remove(&n).is_some() {
                            store.remove_refs(&[RefName::image(&n).unwrap()]).unwrap();
                        }
                    }
                    Op::Disk(i) => {
                        if names.contains_key(&format!("img{i}")) {
                            disk(&store, &format!("img{i}"), &tmp.path().join("disk.tar"));
                        }
                    }
                    Op::Gc => {
                        gc(&store);
                        // Exactly the contents of the live images' layers remain: named, a
                        // root's, bound to a root, pinned by a lease (once stored).
                        let live: BTreeSet<usize> = names
                            .values()
                            .chain(roots.values())
                            .chain(bound.values().flatten())
                            .chain(pinned.intersection(&stored))
                            .copied()
                            .collect();
                        stored.retain(|i| live.contains(i));
                        labels.retain(|i, _| live.contains(i));
                        for (i, keys) in &labels {
                            let have: BTreeSet<String> = store.labels(&digests[i]).unwrap().local.into_keys().collect();
                            prop_assert_eq!(&have, keys);
                        }
                        let mut want = BTreeSet::new();
                        for &img in &live {
                            for l in &specs[img].layers {
                                let mut a = tar::Archive::new(&l.tar[..]);
                                for e in a.entries().unwrap() {
                                    let mut e = e.unwrap();
                                    if e.header().entry_type().is_file() && !e.path().unwrap().to_string_lossy().contains(".wh.") {
                                        let mut buf = Vec::new();
                                        std::io::Read::read_to_end(&mut e, &mut buf).unwrap();
                                        want.insert(layerstore_store::ObjectId::of(&buf));
                                    }
                                }
                            }
                        }
                        let have: BTreeSet<_> = store.object_ids().unwrap().into_iter().collect();
                        prop_assert_eq!(have, want);
                    }
                }
                let named: BTreeSet<String> = store.images().unwrap().into_iter().map(|(n, _)| n).collect();
                prop_assert_eq!(named, names.keys().cloned().collect::<BTreeSet<_>>());
            }
            drop(lease);
            assert_sound(&store);
        }
    }
}

#[test]
fn a_damaged_leftover_object_file_is_replaced_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let content = vec![9u8; 20_000];
    let tar = LayerBuilder::new(TarFormat::Pax)
        .with_entries([Entry::file("f", content.clone())])
        .tar_bytes();
    let spec = one_layer_image(tmp.path(), "img", tar);
    let store = new_store(tmp.path());
    // What a power loss can leave: the object's name with its data never written.
    let id = layerstore_store::ObjectId::of(&content);
    std::fs::write(store.object_path(&id), b"").unwrap();
    import(&store, &spec).unwrap();
    assert_eq!(std::fs::read(store.object_path(&id)).unwrap(), content);
    assert_sound(&store);
}

/// A loose object of `name`'s image with its content; then the image's ref is removed, so only a
/// lease can keep its layer and objects.
fn orphaned_object(store: &Store, name: &str) -> (layerstore_store::Digest, ObjectId, Vec<u8>) {
    let img = store.resolve_image(name).unwrap();
    let id = store.loose_ids().unwrap()[0];
    let mut content = Vec::new();
    store
        .read_object(&id)
        .unwrap()
        .copy_to(&mut content)
        .unwrap();
    store.remove_refs(&[RefName::image(name).unwrap()]).unwrap();
    (img.layers[0].diff_id, id, content)
}

/// An import in flight holds no store lock; gc runs meanwhile and spares what its lease pins:
/// object files it found present, files it wrote that no row names yet, and stored layers it
/// builds on. Once the lease is gone, the next gc takes them.
#[test]
fn gc_spares_what_an_import_in_flight_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, oci) = sample_store(tmp.path());
    import(&store, &format!("{oci}:base-v1")).unwrap();
    let (diff_id, found, content) = orphaned_object(&store, "base-v1");
    let loose_before = store.loose_ids().unwrap().len();
    assert!(loose_before > 1);

    let lease = store.begin_lease("import in flight").unwrap();
    let (_, hit) = lease.staging().put_bytes(&content).unwrap();
    assert_eq!(hit, PutOutcome::Deduplicated);
    let fresh: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (new, wrote) = lease.staging().put_bytes(&fresh).unwrap();
    assert_eq!(wrote, PutOutcome::Written);
    lease.staging().flush().unwrap();
    // `why` names the lease as what keeps the found object.
    let reasons =
        layerstore_gc::why::why(&store, &layerstore_gc::why::Subject::Object(found)).unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0].root, format!("lease/{}", lease.id()));
    assert_eq!(reasons[0].via, "import in flight");

    // Objects pinned, layer not: the layer goes, the two pinned files stay.
    let r = gc(&store);
    assert_eq!(r.removed.layers, vec![diff_id.to_string()]);
    assert_eq!(r.removed.stray_files, 0, "the written object is pinned");
    assert_eq!(r.removed.loose_files, loose_before as u64 - 1);
    assert!(
        store
            .loose_state(&found, content.len() as u64)
            .unwrap()
            .is_some()
    );
    assert!(store.loose_state(&new.id, new.size).unwrap().is_some());
    drop(lease);
    let r = gc(&store);
    assert_eq!(r.removed.objects, 1, "the found object's row");
    assert_eq!(r.removed.stray_files, 1, "the unpublished object");
    assert!(store.loose_ids().unwrap().is_empty());
    assert_sound(&store);

    // A pinned layer keeps all its objects.
    import(&store, &format!("{oci}:base-v1")).unwrap();
    let (diff_id, _, _) = orphaned_object(&store, "base-v1");
    let lease = store.begin_lease("import in flight").unwrap();
    assert_eq!(
        lease.pin_layers(&[diff_id]).unwrap(),
        vec![LayerState::Stored]
    );
    let r = gc(&store);
    assert!(
        r.removed.layers.is_empty() && r.removed.objects == 0,
        "{r:?}"
    );
    drop(lease);
    assert_eq!(gc(&store).removed.layers, vec![diff_id.to_string()]);
    assert_sound(&store);
}

/// A file found present but not yet pinned may be swept before the pin; the flush notices
/// (the sweep generation moved and the file is gone) instead of publishing a missing object.
#[test]
fn an_object_swept_before_its_pin_fails_the_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, oci) = sample_store(tmp.path());
    import(&store, &format!("{oci}:base-v1")).unwrap();
    let (_, found, content) = orphaned_object(&store, "base-v1");
    let lease = store.begin_lease("import in flight").unwrap();
    let (_, hit) = lease.staging().put_bytes(&content).unwrap();
    assert_eq!(hit, PutOutcome::Deduplicated);
    gc(&store);
    assert_eq!(
        store.loose_state(&found, content.len() as u64).unwrap(),
        None
    );
    match lease.staging().flush() {
        Err(layerstore_store::Error::ObjectSwept { id }) => assert_eq!(id, found.hex()),
        other => panic!("flush after the sweep: {other:?}"),
    }
    drop(lease);
    // The import itself retries and writes the content again.
    import(&store, &format!("{oci}:base-v1")).unwrap();
    assert_sound(&store);
}

/// An import's last attempt pins each file it finds at once: the same sweep spares the file,
/// and the flush has nothing to fail on (a gc running back to back cannot starve an import).
#[test]
fn a_last_attempt_pins_what_it_finds_before_a_sweep_can_take_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, oci) = sample_store(tmp.path());
    import(&store, &format!("{oci}:base-v1")).unwrap();
    let (_, found, content) = orphaned_object(&store, "base-v1");
    let loose_before = store.loose_ids().unwrap().len() as u64;
    let lease = store.begin_lease("import in flight").unwrap();
    lease.staging().pin_found_at_once();
    let (obj, hit) = lease.staging().put_bytes(&content).unwrap();
    assert_eq!((obj.id, hit), (found, PutOutcome::Deduplicated));
    let r = gc(&store);
    assert_eq!(
        r.removed.loose_files,
        loose_before - 1,
        "all but the found one"
    );
    assert!(
        store
            .loose_state(&found, content.len() as u64)
            .unwrap()
            .is_some()
    );
    lease.staging().flush().unwrap();
    drop(lease);
    assert_eq!(gc(&store).removed.loose_files, 1, "unpinned, it goes");
    assert_sound(&store);
}

/// A layer another live import is reading is claimed: a second import waits for it instead of
/// reading it too, and takes it over when the first ends without publishing.
#[test]
fn an_import_waits_for_a_layer_another_import_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, oci) = sample_store(tmp.path());
    let src = format!("{oci}:app-v2");
    // Claims, through the library.
    let layer = layerstore_store::Digest::of(b"not stored");
    let a = store.begin_lease("a").unwrap();
    let b = store.begin_lease("b").unwrap();
    assert_eq!(a.pin_layers(&[layer]).unwrap(), vec![LayerState::Mine]);
    assert_eq!(
        b.pin_layers(&[layer]).unwrap(),
        vec![LayerState::Claimed {
            lease: a.id().to_string()
        }]
    );
    drop(a);
    assert_eq!(b.pin_layers(&[layer]).unwrap(), vec![LayerState::Mine]);
    drop(b);

    // Two imports of one image at once: each layer is read by one of them.
    let reports: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| import(&store, &src).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let layers = reports[0].layers.len();
    for i in 0..layers {
        let read = reports.iter().filter(|r| !r.layers[i].reused).count();
        assert_eq!(read, 1, "layer {i} read by {read} imports");
    }
    assert_sound(&store);
}

/// A long read pins the image's layers with a lease instead of holding the store lock: gc
/// neither waits for it nor takes what it reads, even once the image's ref is gone. A read
/// that starts after gc took the layers fails cleanly.
#[test]
fn a_reader_pins_what_it_reads_and_gc_does_not_wait_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, oci) = sample_store(tmp.path());
    import(&store, &format!("{oci}:app-v1")).unwrap();
    let info = store.resolve_image("app-v1").unwrap();
    let pin = store.pin_image(&info).unwrap();
    store
        .remove_refs(&[RefName::image("app-v1").unwrap()])
        .unwrap();
    // gc takes the exclusive lock; it would deadlock here if the reader held the shared one.
    let r = gc(&store);
    assert!(
        r.removed.layers.is_empty() && r.removed.objects == 0,
        "{r:?}"
    );
    let dest = tmp.path().join("out");
    let tree = store.merged_tree(&info).unwrap();
    store
        .checkout(
            &tree,
            &dest,
            &layerstore_store::checkout::CheckoutOptions::default(),
        )
        .unwrap();
    drop(pin);
    let r = gc(&store);
    assert_eq!(r.removed.layers.len(), info.layers.len());
    assert!(store.loose_ids().unwrap().is_empty());
    match store.pin_image(&info).map(|lease| lease.id().to_owned()) {
        Err(layerstore_store::Error::LayerNotFound { .. }) => {}
        other => panic!("pinning a removed image: {other:?}"),
    }
    assert_sound(&store);
}

/// A prepared ref (a cached update) keeps its image's manifest and config, never its layers:
/// gc and fsck agree on it (gc used to keep the layers as for an image ref).
#[test]
fn a_prepared_ref_keeps_manifest_and_config_but_not_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, oci) = sample_store(tmp.path());
    import(&store, &format!("{oci}:base-v1")).unwrap();
    let img = store.resolve_image("base-v1").unwrap();
    let digest = img.manifest_digest;
    store
        .set_refs(&[(RefName::prepared("update").unwrap(), digest.to_string())])
        .unwrap();
    store
        .remove_refs(&[RefName::image("base-v1").unwrap()])
        .unwrap();
    let r = gc(&store);
    assert!(r.removed.images.is_empty(), "the image row stays");
    assert_eq!(r.removed.layers.len(), img.layers.len(), "its layers go");
    let kept = store.image_by_digest(&digest).unwrap().expect("kept");
    let (manifest, config) = store.image_documents(&kept).unwrap();
    assert_eq!(layerstore_store::Digest::of(&manifest), digest);
    assert_eq!(layerstore_store::Digest::of(&config), kept.config_digest);
    assert!(store.loose_files().unwrap().is_empty());
    let reasons = why(&store, &Subject::Image(digest)).unwrap();
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons[0].root, "prepared/update");
    assert_sound(&store);
}

/// A bound image lives while the root it is bound to does; the gc after the root ref goes
/// drops the bound ref and the image.
#[test]
fn a_bound_image_lives_while_its_root_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, oci) = sample_store(tmp.path());
    import(&store, &format!("{oci}:base-v1")).unwrap();
    import(&store, &format!("{oci}:app-v1")).unwrap();
    let base = store.resolve_image("base-v1").unwrap().manifest_digest;
    let app = store.resolve_image("app-v1").unwrap().manifest_digest;
    let root = RefName::root("deploy").unwrap();
    let bound = RefName::bound(&root, &app).unwrap();
    assert_eq!(bound.lives_by().as_ref(), Some(&root));
    // The root ref, then the binding (its row and its bound ref, as `bind` writes them).
    store.set_refs(&[(root.clone(), base.to_string())]).unwrap();
    store
        .bind("deploy", &[(app, format!("localhost/app@{app}"))])
        .unwrap();
    store
        .remove_refs(&[
            RefName::image("base-v1").unwrap(),
            RefName::image("app-v1").unwrap(),
        ])
        .unwrap();
    let r = gc(&store);
    assert!(r.removed.images.is_empty() && r.removed.layers.is_empty());
    let reasons = why(&store, &Subject::Image(app)).unwrap();
    assert_eq!(reasons[0].root, bound.to_string());
    assert_sound(&store);

    // The root ref alone goes (not `root rm`, which unbinds too): gc drops the bound ref and
    // its binding row.
    store.remove_refs(&[root]).unwrap();
    assert!(
        why(&store, &Subject::Image(app)).unwrap().is_empty(),
        "without its root the bound image is kept by nothing"
    );
    let r = gc(&store);
    assert_eq!(r.removed.refs, [bound.to_string()]);
    assert_eq!(r.removed.images.len(), 2);
    assert!(store.refs(None).unwrap().is_empty());
    assert_eq!(store.df().unwrap().objects, 0);
    assert_sound(&store);
}

/// `why` about a digest or object the store does not have is an error, not "nothing keeps it
/// alive".
#[test]
fn why_unknown_digest_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, oci) = sample_store(tmp.path());
    import(&store, &format!("{oci}:base-v1")).unwrap();
    let unknown = layerstore_store::Digest::of(b"not in the store");
    for subject in [
        Subject::Image(unknown),
        Subject::Layer(unknown),
        Subject::Object(ObjectId::of(b"not in the store either")),
    ] {
        match why(&store, &subject) {
            Err(layerstore_gc::Error::NotInStore { .. }) => {}
            other => panic!("{subject:?}: {other:?}"),
        }
    }
    // What the store has but nothing keeps is not an error.
    let layer = store.resolve_image("base-v1").unwrap().layers[0].diff_id;
    store
        .remove_refs(&[RefName::image("base-v1").unwrap()])
        .unwrap();
    assert!(why(&store, &Subject::Layer(layer)).unwrap().is_empty());
}
