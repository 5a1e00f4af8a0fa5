//! Scenario tests through the libraries on the bundled sample series: import → read → checkout →
//! export → fsck, with figures cross-checked against an independent computation on the fixtures.

use std::collections::HashMap;
use std::io::Read;

use crate::common::*;
use layerstore_store::{CheckoutMode, CheckoutOptions, Digest};
use layerstore_tests::{SAMPLE_TAGS, sample, sample_series};

/// Distinct contents of regular files in tars, by blake3 (independent of the importer's parser).
fn contents(tars: &[Vec<u8>]) -> HashMap<blake3::Hash, u64> {
    let mut out = HashMap::new();
    for t in tars {
        let mut a = tar::Archive::new(&t[..]);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.header().entry_type().is_file() {
                let mut buf = Vec::new();
                e.read_to_end(&mut buf).unwrap();
                out.insert(blake3::hash(&buf), buf.len() as u64);
            }
        }
    }
    out
}

#[test]
fn sample_series_round_trips_and_dedups() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("sample");
    let written = sample_series(&oci).unwrap();
    let store = new_store(tmp.path());
    let mut reports = HashMap::new();
    for tag in SAMPLE_TAGS {
        let r = import(&store, &format!("oci:{}:{tag}", oci.display())).unwrap();
        reports.insert(tag.to_string(), r);
    }
    // Every layer rebuilds to its diff_id, byte for byte.
    for (_, w) in &written {
        for l in &w.layers {
            let d: Digest = l.diff_id.parse().unwrap();
            let mut out = Vec::new();
            store.export_layer_tar(&d, &mut out).unwrap();
            assert_eq!(out.len() as u64, l.tar_size);
            assert_eq!(Digest::of(&out), d);
        }
    }
    // Stored content equals the distinct contents of all layers, exactly.
    let all = contents(&[
        sample::base_layer(1),
        sample::app_layer(1),
        sample::base_layer(2),
        sample::app_layer(2),
        sample::app_v3_layer(),
    ]);
    let df = store.df().unwrap();
    assert_eq!(df.object_bytes, all.values().sum::<u64>());
    assert_eq!(df.objects as usize, all.len());
    // The security update stored only what base-v1 lacked.
    let v1 = contents(&[sample::base_layer(1), sample::app_layer(1)]);
    let v2 = contents(&[sample::base_layer(2)]);
    let new: u64 = v2
        .iter()
        .filter(|(h, _)| !v1.contains_key(h))
        .map(|(_, s)| s)
        .sum();
    let r = &reports["base-v2"];
    assert_eq!(r.new_bytes + inline_new_bytes(&store, &v1, &v2), new);
    assert_sound(&store);
}

/// Bytes of new contents that went inline (not counted as new loose bytes).
fn inline_new_bytes(
    store: &layerstore_store::Store,
    old: &HashMap<blake3::Hash, u64>,
    new: &HashMap<blake3::Hash, u64>,
) -> u64 {
    new.iter()
        .filter(|(h, s)| !old.contains_key(*h) && **s <= store.config().inline_threshold)
        .map(|(_, s)| s)
        .sum()
}

#[test]
fn checkouts_match_umoci_unpack() {
    if !have("umoci") || !is_root() {
        layerstore_tests::skip("needs umoci and root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("sample");
    sample_series(&oci).unwrap();
    let store = new_store(tmp.path());
    // This umoci reads gzip layers only; the base images are gzip.
    for tag in ["base-v1", "base-v2"] {
        import(&store, &format!("oci:{}:{tag}", oci.display())).unwrap();
        let img = store.resolve_image(tag).unwrap();
        let tree = store.merged_tree(&img).unwrap();
        let ours = tmp.path().join(format!("co-{tag}"));
        store
            .checkout(&tree, &ours, &CheckoutOptions::default())
            .unwrap();
        let bundle = tmp.path().join(format!("umoci-{tag}"));
        let rootfs = umoci_unpack(&format!("{}:{tag}", oci.display()), &bundle);
        assert_same_tree(&ours, &rootfs);
        // A hard-link checkout has the same paths and contents.
        hardlink_checkout_matches(&store, &tree, &ours, &tmp.path().join(format!("hl-{tag}")));
    }
    assert_sound(&store);
}

#[test]
fn archives_and_layouts_give_the_same_images() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = sample::sample_specs();
    let oci = tmp.path().join("sample");
    sample_series(&oci).unwrap();
    let archive = tmp.path().join("sample.oci.tar");
    layerstore_tests::write_oci_archive(&oci, &archive).unwrap();
    let docker = tmp.path().join("sample.docker.tar");
    let refs: Vec<(String, &layerstore_tests::ImageSpec)> = specs
        .iter()
        .map(|(n, s)| (format!("{n}:latest"), s))
        .collect();
    let refs: Vec<(&str, &layerstore_tests::ImageSpec)> =
        refs.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    layerstore_tests::write_docker_archive(&docker, &refs).unwrap();
    let store = new_store(tmp.path());
    for tag in SAMPLE_TAGS {
        let a = import(&store, &format!("oci:{}:{tag}", oci.display())).unwrap();
        let b = import(&store, &format!("oci-archive:{}:{tag}", archive.display())).unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let c = import(
            &store,
            &format!("docker-archive:{}:{tag}:latest", docker.display()),
        )
        .unwrap();
        assert!(
            c.layers.iter().all(|l| l.reused),
            "docker-archive layers are the same diff_ids"
        );
        let ta = store
            .merged_tree(&store.resolve_image(tag).unwrap())
            .unwrap();
        let tc = store
            .merged_tree(&store.resolve_image(&format!("{tag}:latest")).unwrap())
            .unwrap();
        assert_eq!(ta.entries, tc.entries);
    }
    assert_sound(&store);
}

#[test]
fn checkout_restores_modes_the_umask_would_strip() {
    use layerstore_tests::{Entry, LayerBuilder, TarFormat};
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let modes = [0o666, 0o777, 0o4755, 0o2711, 0o1777, 0o000, 0o444, 0o600];
    let mut entries = vec![Entry::dir("ro").mode(0o555)];
    for m in modes {
        entries.push(Entry::file(format!("f{m:o}"), vec![b'x'; 5000]).mode(m));
        entries.push(Entry::file(format!("ro/s{m:o}"), format!("{m:o}")).mode(m));
    }
    let tar = LayerBuilder::new(TarFormat::Pax)
        .with_entries(entries)
        .tar_bytes();
    let (store, tree) = one_layer_tree(tmp.path(), "modes", tar);
    let dest = tmp.path().join("co");
    store
        .checkout(&tree, &dest, &CheckoutOptions::default())
        .unwrap();
    let mode = |p: &str| {
        std::fs::symlink_metadata(dest.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    for m in modes {
        assert_eq!(mode(&format!("f{m:o}")), m, "f{m:o}");
        assert_eq!(mode(&format!("ro/s{m:o}")), m, "ro/s{m:o}");
    }
    assert_eq!(mode("ro"), 0o555);
}

/// Checkouts of more than a few hundred entries write from two threads; the result must be the
/// tree GNU tar extracts from the same layer, in copy and hardlink mode.
#[test]
fn a_large_tree_checks_out_from_two_threads_as_tar_extracts_it() {
    use layerstore_tests::{Entry, LayerBuilder, TarFormat};
    let tmp = tempfile::tempdir().unwrap();
    let mut entries = Vec::new();
    for d in 0..40 {
        entries.push(Entry::dir(format!("d{d:02}")).mode(if d % 7 == 0 { 0o555 } else { 0o755 }));
        for f in 0..30u32 {
            let size = [0usize, 17, 900, 4096, 4097, 20_000][(f % 6) as usize];
            let data: Vec<u8> = (0..size)
                .map(|i| ((i as u32 * 31 + f + d) % 251) as u8)
                .collect();
            let mode = [0o644, 0o755, 0o600, 0o444][(f % 4) as usize];
            entries.push(Entry::file(format!("d{d:02}/f{f:02}"), data).mode(mode));
        }
        entries.push(Entry::symlink(format!("d{d:02}/link"), "f00"));
    }
    entries.push(Entry::hardlink("d39/hard", "d00/f05"));
    let tar = LayerBuilder::new(TarFormat::Pax)
        .with_entries(entries)
        .tar_bytes();
    let reference = tmp.path().join("tar-x");
    std::fs::create_dir(&reference).unwrap();
    let mut child = std::process::Command::new("tar")
        .args(["-x", "-p", "-f", "-", "-C"])
        .arg(&reference)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());

    let (store, tree) = one_layer_tree(tmp.path(), "big", tar);
    let ours = tmp.path().join("co");
    let stats = store
        .checkout(&tree, &ours, &CheckoutOptions::default())
        .unwrap();
    assert_eq!(
        (stats.files, stats.symlinks, stats.hardlinks),
        (1200, 40, 1)
    );
    assert_same_tree(&ours, &reference);
    hardlink_checkout_matches(&store, &tree, &ours, &tmp.path().join("hl"));
    assert_sound(&store);
}

/// The importer hashes contents where the reader's 256 KiB chunk holds them, gathers those that
/// span chunks, streams those over 8 MiB, and hands new ones to its writers in batches: contents
/// of sizes on both sides of each limit, some of them twice, and enough small files for several
/// batches check out as written, and the layer exports byte for byte.
#[test]
fn contents_on_both_sides_of_the_chunk_and_memory_limits_round_trip() {
    use layerstore_tests::rng::Rng;
    use layerstore_tests::{Entry, LayerBuilder, TarFormat, sha256_digest};
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    let sizes = [
        0,
        1,
        511,
        512,
        4096,
        4097,
        200_000,
        256 << 10,
        (256 << 10) + 1,
        300_000,
        3 << 20,
        8 << 20,
        (8 << 20) + 1,
        9 << 20,
    ];
    let mut files: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .map(|&n| (format!("big/{n}"), rng.bytes(n)))
        .collect();
    // Second copies: one kept in memory (queued for a writer once), one streamed again (its
    // temp file loses the name to the first at the flush).
    files.push(("big/again-300000".into(), files[9].1.clone()));
    files.push(("big/again-9437184".into(), files[13].1.clone()));
    for i in 0..300 {
        let n = rng.index(10_000);
        files.push((format!("small/{i:03}"), rng.bytes(n)));
    }
    let entries = [Entry::dir("big"), Entry::dir("small")].into_iter().chain(
        files
            .iter()
            .map(|(p, d)| Entry::file(p.as_str(), d.clone())),
    );
    let tar = LayerBuilder::new(TarFormat::Pax)
        .with_entries(entries)
        .tar_bytes();
    let diff_id: Digest = sha256_digest(&tar).parse().unwrap();

    let (store, tree) = one_layer_tree(tmp.path(), "sizes", tar.clone());
    let co = tmp.path().join("co");
    store
        .checkout(&tree, &co, &CheckoutOptions::default())
        .unwrap();
    for (path, data) in &files {
        let got = std::fs::read(co.join(path)).unwrap();
        assert!(
            got == *data,
            "{path}: {} bytes, wrote {}",
            got.len(),
            data.len()
        );
    }
    let mut exported = Vec::new();
    store.export_layer_tar(&diff_id, &mut exported).unwrap();
    assert!(exported == tar, "the layer exports byte for byte");
    assert_sound(&store);
}

/// A fresh store in `dir` with one image `tag` of one gzip layer `tar` imported; the store and
/// the image's merged tree.
fn one_layer_tree(
    dir: &std::path::Path,
    tag: &str,
    tar: Vec<u8>,
) -> (layerstore_store::Store, layerstore_store::MergedTree) {
    let spec = one_layer_image(dir, tag, tar);
    let store = new_store(dir);
    import(&store, &spec).unwrap();
    let tree = store
        .merged_tree(&store.resolve_image(tag).unwrap())
        .unwrap();
    (store, tree)
}

/// A hard-link checkout of `tree` into `hl` has the paths and contents of the copy `ours`.
fn hardlink_checkout_matches(
    store: &layerstore_store::Store,
    tree: &layerstore_store::MergedTree,
    ours: &std::path::Path,
    hl: &std::path::Path,
) {
    let opts = CheckoutOptions {
        mode: CheckoutMode::Hardlink,
        ..CheckoutOptions::default()
    };
    store.checkout(tree, hl, &opts).unwrap();
    let (a, _) = tree_facts(ours);
    let (b, _) = tree_facts(hl);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, fa) in &a {
        assert_eq!(fa.content, b[k].content, "{}", k.display());
    }
}
