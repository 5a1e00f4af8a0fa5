//! Every command through the binary, on fixture images written by `layerstore-tests`.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use layerstore_tests::{Compression, Entry, ImageSpec, Layer, LayerBuilder, OciLayout, TarFormat};
use serde_json::Value;

use crate::{assert_fsck_clean, bin, import, layerstore, ok};

pub fn layer(format: TarFormat, entries: Vec<Entry>, c: Compression) -> Layer {
    Layer::new(
        LayerBuilder::new(format).with_entries(entries).tar_bytes(),
        c,
    )
}

pub fn simple_image() -> ImageSpec {
    ImageSpec::new(vec![
        layer(
            TarFormat::Gnu,
            vec![
                Entry::dir("etc"),
                Entry::file("etc/os-release", "ID=test\n"),
                Entry::file("etc/big", vec![7u8; 100_000]),
                Entry::symlink("etc/alias", "os-release"),
                Entry::dir("usr").mode(0o755),
                Entry::file("usr/bin-su", vec![1u8; 5000])
                    .mode(0o4755)
                    .uid(0),
                Entry::hardlink("usr/bin-su2", "usr/bin-su"),
                Entry::fifo("run-fifo"),
                Entry::file(b"caf\xe9".as_slice(), "latin-1 name"),
            ],
            Compression::Gzip,
        ),
        layer(
            TarFormat::Pax,
            vec![
                Entry::whiteout("etc/big"),
                Entry::file("etc/new", "added\n").xattr("user.test", "v"),
                Entry::file("opt/implicit/parent/file", "deep"),
            ],
            Compression::Zstd,
        ),
    ])
    .with_label("org.opencontainers.image.version", "1.0")
}

pub fn fixture(dir: &Path) -> PathBuf {
    let oci = dir.join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    layout.add_image("simple", &simple_image()).unwrap();
    oci
}

/// A store `dir/store` the fixture (written under `dir`) was imported into, as `simple`.
fn imported_fixture(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    import(&store, &fixture(dir), "simple");
    store
}

#[test]
fn import_then_read_the_merged_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = fixture(tmp.path());
    let store = tmp.path().join("store");
    let r = ok(
        &store,
        &["import", &format!("oci:{}:simple", oci.display()), "--json"],
    );
    let rep = r.json();
    assert_eq!(rep["name"], "simple");
    assert_eq!(rep["layers"].as_array().unwrap().len(), 2);

    let images = ok(&store, &["images", "--json"]).json();
    assert_eq!(images[0]["name"], "simple");
    assert_eq!(images[0]["layers"], 2);

    let listing = ok(&store, &["ls", "simple", "/etc", "--json"]).json();
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["/etc/alias", "/etc/new", "/etc/os-release"],
        "whiteout removed etc/big"
    );
    assert_eq!(
        ok(&store, &["cat", "simple", "/etc/alias"]).stdout,
        b"ID=test\n"
    );
    assert_eq!(
        ok(&store, &["cat", "simple", "opt/implicit/parent/file"]).stdout,
        b"deep"
    );
    let su = ok(&store, &["ls", "simple", "/usr/bin-su", "--json"]).json();
    assert_eq!(su[0]["mode"], "4755");

    let r = layerstore(&store, &["cat", "simple", "/etc/big"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no such path"), "{}", r.stderr);

    let inspect = ok(&store, &["inspect", "simple", "--json"]).json();
    assert_eq!(inspect["labels"]["org.opencontainers.image.version"], "1.0");
    assert_fsck_clean(&store);
}

#[test]
fn exported_layers_reproduce_their_diff_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let mut specs = Vec::new();
    for (i, format) in [TarFormat::Ustar, TarFormat::Gnu, TarFormat::Pax]
        .into_iter()
        .enumerate()
    {
        let long = format!("d/{}/file", "x".repeat(150));
        let mut entries = vec![
            Entry::file("a", vec![b'a'; 10_000]).mtime(1_600_000_000 + i as u64),
            Entry::file("empty", ""),
            Entry::symlink("l", "a"),
        ];
        if format != TarFormat::Ustar {
            entries.push(Entry::file(long.as_bytes(), "long name"));
            entries.push(Entry::file("nsec", "x").mtime_nsec(123_456_789));
        }
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            specs.push((
                format!("img-{i}-{}", c.name()),
                ImageSpec::new(vec![layer(format, entries.clone(), c)]),
            ));
        }
    }
    for (name, spec) in &specs {
        layout.add_image(name, spec).unwrap();
        ok(
            &store,
            &["import", &format!("oci:{}:{name}", oci.display())],
        );
    }
    for (name, spec) in &specs {
        let inspect = ok(&store, &["inspect", name, "--json"]).json();
        let diff_id = inspect["layers"][0]["diff_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(diff_id, spec.diff_ids()[0]);
        let tar = ok(&store, &["export-layer", &diff_id]).stdout;
        assert_eq!(layerstore_tests::sha256_digest(&tar), diff_id, "{name}");
    }
    assert_fsck_clean(&store);
}

#[test]
fn same_layer_under_another_compression_is_not_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let tar = LayerBuilder::new(TarFormat::Pax)
        .with_entries([Entry::file("f", vec![3u8; 50_000])])
        .tar_bytes();
    layout
        .add_image(
            "gz",
            &ImageSpec::new(vec![Layer::new(tar.clone(), Compression::Gzip)]),
        )
        .unwrap();
    layout
        .add_image(
            "zst",
            &ImageSpec::new(vec![Layer::new(tar, Compression::Zstd)]),
        )
        .unwrap();
    ok(&store, &["import", &format!("oci:{}:gz", oci.display())]);
    let rep = ok(
        &store,
        &["import", &format!("oci:{}:zst", oci.display()), "--json"],
    )
    .json();
    assert_eq!(rep["layers"][0]["reused"], true);
    assert_eq!(rep["new_objects"], 0);
}

#[test]
fn archives_import_the_same_tree_as_the_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = fixture(tmp.path());
    let archive = tmp.path().join("simple.oci.tar");
    layerstore_tests::write_oci_archive(&oci, &archive).unwrap();
    let docker = tmp.path().join("simple.docker.tar");
    layerstore_tests::write_docker_archive(&docker, &[("simple:v1", &simple_image())]).unwrap();
    let store = tmp.path().join("store");
    ok(
        &store,
        &[
            "import",
            &format!("oci:{}:simple", oci.display()),
            "--tag",
            "from-dir",
        ],
    );
    ok(
        &store,
        &[
            "import",
            &format!("oci-archive:{}:simple", archive.display()),
            "--tag",
            "from-oci-archive",
        ],
    );
    let r = ok(
        &store,
        &[
            "import",
            &format!("docker-archive:{}", docker.display()),
            "--json",
        ],
    )
    .json();
    assert_eq!(r["name"], "simple:v1");
    let tree = |name: &str| ok(&store, &["ls", "-R", name, "/", "--json"]).json();
    assert_eq!(tree("from-dir"), tree("from-oci-archive"));
    assert_eq!(tree("from-dir"), tree("simple:v1"));
    let df = ok(&store, &["df", "--json"]).json();
    // Three names, two manifests (the docker archive's is synthesized), one set of layers.
    assert_eq!(df["layers"], 2);
    assert_fsck_clean(&store);
}

#[test]
fn checkout_writes_the_merged_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let store = imported_fixture(tmp.path());
    for mode in ["copy", "hardlink"] {
        let dest = tmp.path().join(format!("co-{mode}"));
        ok(
            &store,
            &["checkout", "simple", dest.to_str().unwrap(), "--mode", mode],
        );
        assert_eq!(
            std::fs::read(dest.join("etc/os-release")).unwrap(),
            b"ID=test\n"
        );
        assert!(!dest.join("etc/big").exists());
        assert_eq!(
            std::fs::read_link(dest.join("etc/alias")).unwrap(),
            Path::new("os-release")
        );
        assert_eq!(
            std::fs::read(dest.join(std::ffi::OsStr::from_bytes(b"caf\xe9"))).unwrap(),
            b"latin-1 name"
        );
        use std::os::unix::fs::MetadataExt;
        let a = std::fs::metadata(dest.join("usr/bin-su")).unwrap();
        let b = std::fs::metadata(dest.join("usr/bin-su2")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard-link group kept");
        if mode == "copy" {
            assert_eq!(a.mode() & 0o7777, 0o4755);
        }
    }
    // The target must be new or empty, and never a symlink.
    let full = tmp.path().join("co-copy");
    assert_eq!(
        layerstore(&store, &["checkout", "simple", full.to_str().unwrap()]).code,
        2
    );
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(tmp.path().join("elsewhere"), &link).unwrap();
    let r = layerstore(&store, &["checkout", "simple", link.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert!(!tmp.path().join("elsewhere").exists());
}

#[test]
fn update_stores_only_new_content() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let files = |changed: usize| -> Vec<Entry> {
        (0..20)
            .map(|i| {
                let mut content = vec![i as u8; 20_000 + i];
                if i < changed {
                    content[0] = 0xff;
                }
                // New mtimes everywhere: the layer digests differ, the contents mostly do not.
                Entry::file(format!("lib/f{i}"), content).mtime(1_000 + changed as u64)
            })
            .collect()
    };
    layout
        .add_image(
            "v1",
            &ImageSpec::new(vec![layer(TarFormat::Pax, files(0), Compression::Gzip)]),
        )
        .unwrap();
    layout
        .add_image(
            "v2",
            &ImageSpec::new(vec![layer(TarFormat::Pax, files(2), Compression::Gzip)]),
        )
        .unwrap();
    ok(&store, &["import", &format!("oci:{}:v1", oci.display())]);
    let rep = ok(
        &store,
        &["import", &format!("oci:{}:v2", oci.display()), "--json"],
    )
    .json();
    assert_eq!(rep["new_objects"], 2);
    assert_eq!(rep["new_bytes"], 20_000 + 20_001);
    assert_eq!(rep["dedup_hits"], 18);
    let df = ok(&store, &["df", "--json"]).json();
    let distinct: u64 = (0..20).map(|i| 20_000 + i as u64).sum::<u64>() + 20_000 + 20_001;
    assert_eq!(df["object_bytes"], distinct);
    assert_eq!(
        df["images"][0]["shared_bytes"],
        distinct - 2 * 40_001,
        "v1 shares its 18 unchanged files"
    );
    assert_fsck_clean(&store);
}

#[test]
fn rm_and_tag_manage_image_refs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = imported_fixture(tmp.path());
    ok(&store, &["tag", "simple", "other:v1"]);
    let refs = ok(&store, &["refs", "--kind", "image", "--json"]).json();
    assert_eq!(refs.as_array().unwrap().len(), 2);
    ok(&store, &["rm", "simple"]);
    assert_eq!(layerstore(&store, &["inspect", "simple"]).code, 2);
    ok(&store, &["inspect", "other:v1"]);
    assert_eq!(layerstore(&store, &["rm", "simple"]).code, 2);
    assert_eq!(layerstore(&store, &["tag", "other:v1", "bad name"]).code, 2);
    // Global flags go before or after the command.
    let r = bin()
        .args(["--json", "images", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(r.status.success());
    assert_eq!(
        serde_json::from_slice::<Value>(&r.stdout).unwrap()[0]["name"],
        "other:v1"
    );
}

#[test]
fn fsck_reports_a_corrupt_object_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let store = imported_fixture(tmp.path());
    let id = blake3::hash(&[7u8; 100_000]).to_hex().to_string();
    let obj = store.join("objects").join(&id[..2]).join(&id[2..]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&obj, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&obj, b"tampered").unwrap();
    std::fs::set_permissions(&obj, std::fs::Permissions::from_mode(0o444)).unwrap();
    let r = layerstore(&store, &["fsck", "--json"]);
    assert_eq!(r.code, 1);
    let kinds: Vec<_> = r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].clone())
        .collect();
    assert!(kinds.contains(&"corrupt-object".into()), "{kinds:?}");
}

#[test]
fn fsck_repair_removes_staging_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = imported_fixture(tmp.path());
    std::fs::create_dir(store.join("staging/12345-1-deadbeef")).unwrap();
    std::fs::write(store.join("staging/12345-1-deadbeef/t0"), b"partial").unwrap();
    assert_eq!(layerstore(&store, &["fsck"]).code, 1);
    ok(&store, &["fsck", "--repair"]);
    assert_fsck_clean(&store);
}

/// A layer the tar readers disagree about, and a layer whose whiteout runtimes apply in
/// different places: each refused with exit 2, an error naming the entry and the rule, no image,
/// and a store fsck finds clean.
#[test]
fn refused_layers_exit_2_naming_the_entry_and_leave_nothing() {
    use layerstore_tests::{RawHeader, RawTar};
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let data_on_symlink = RawTar::new()
        .header(&RawHeader::ustar(b'2').name(b"lnk").linkname(b"t").size(512))
        .header(&RawHeader::ustar(b'0').name(b"hidden").size(0))
        .end()
        .finish_record();
    layout
        .add_image(
            "tar",
            &ImageSpec::new(vec![Layer::new(data_on_symlink, Compression::Gzip)]),
        )
        .unwrap();
    let lower = layer(
        TarFormat::Pax,
        vec![Entry::dir("real"), Entry::file("real/x", "1")],
        Compression::Gzip,
    );
    let upper = layer(
        TarFormat::Pax,
        vec![Entry::symlink("lnk", "real"), Entry::whiteout("lnk/x")],
        Compression::Gzip,
    );
    layout
        .add_image("whiteout", &ImageSpec::new(vec![lower, upper]))
        .unwrap();
    let store = tmp.path().join("store");
    ok(&store, &["init"]);
    for (name, entry, rule) in [
        ("tar", "lnk", "an entry without data must declare size 0"),
        (
            "whiteout",
            "lnk/.wh.x",
            "the same layer creates, replaces or removes",
        ),
    ] {
        let r = layerstore(
            &store,
            &["import", &format!("oci:{}:{name}", oci.display())],
        );
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(entry), "{name}: {}", r.stderr);
        assert!(r.stderr.contains(rule), "{name}: {}", r.stderr);
    }
    let images = ok(&store, &["images", "--json"]);
    assert_eq!(images.json(), serde_json::json!([]));
    assert_fsck_clean(&store);
}

#[test]
fn missing_store_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let r = layerstore(&tmp.path().join("nope"), &["images"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("layerstore: error: cannot open store"),
        "{}",
        r.stderr
    );
}

#[test]
fn limits_are_overridable_per_import_and_at_init() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = fixture(tmp.path());
    let store = tmp.path().join("store");
    let src = format!("oci:{}:simple", oci.display());
    let r = layerstore(&store, &["import", &src, "--limit", "layer-bytes=1K"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("exceeds the limit of 1024 bytes"),
        "{}",
        r.stderr
    );
    assert_eq!(
        layerstore(&store, &["import", &src, "--limit", "bogus=1"]).code,
        2
    );
    ok(&store, &["import", &src]);
    let small = tmp.path().join("small");
    ok(&small, &["init", "--limit", "entries=3"]);
    let r = layerstore(&small, &["import", &src]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("entry count"), "{}", r.stderr);
    assert_fsck_clean(&small);
}

#[test]
fn compressed_store_reads_back_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = fixture(tmp.path());
    let store = tmp.path().join("store");
    let other = tmp.path().join("other");
    assert_eq!(
        layerstore(&other, &["init", "--compress-min", "1K"]).code,
        2
    );
    ok(&store, &["init", "--compress", "--compress-min", "1K"]);
    let meta = std::fs::read_to_string(store.join("meta.json")).unwrap();
    assert!(meta.contains("zstd-objects"), "{meta}");
    ok(
        &store,
        &["import", &format!("oci:{}:simple", oci.display())],
    );
    assert_eq!(
        ok(&store, &["cat", "simple", "/usr/bin-su"]).stdout,
        vec![1u8; 5000]
    );
    let df = ok(&store, &["df", "--json"]).json();
    // 100,000 + 5,000 bytes of repeated bytes compress to one block or less.
    assert_eq!(
        df["object_bytes"].as_u64().unwrap(),
        105_000 + 8 + 12 + 6 + 4
    );
    assert!(df["loose_bytes"].as_u64().unwrap() < 4096, "{df}");
    let dest = tmp.path().join("co");
    ok(
        &store,
        &[
            "checkout",
            "simple",
            dest.to_str().unwrap(),
            "--mode",
            "hardlink",
        ],
    );
    assert_eq!(
        std::fs::read(dest.join("usr/bin-su2")).unwrap(),
        vec![1u8; 5000]
    );
    let tar = tmp.path().join("root.tar");
    ok(
        &store,
        &["disk", "simple", tar.to_str().unwrap(), "--format", "tar"],
    );
    let mut a = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    let mut found = false;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with("usr/bin-su") {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            assert_eq!(v, vec![1u8; 5000]);
            found = true;
        }
    }
    assert!(found);
    assert_fsck_clean(&store);
}
