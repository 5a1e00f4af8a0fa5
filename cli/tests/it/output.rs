//! What users see (JSON and text from the same views, prefixes, pipes, exit codes), and the
//! regressions found trying the command as a new user would. Each regression test is named
//! after the behaviour it guards.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use layerstore_tests::{Compression, Entry, ImageSpec, OciLayout, TarFormat};

use crate::commands::{fixture, layer};
use crate::{assert_fsck_clean, bin, layerstore, ok};

/// A store holding the `simple` fixture image.
fn simple_store(dir: &Path) -> PathBuf {
    let oci = fixture(dir);
    let store = dir.join("store");
    ok(
        &store,
        &["import", &format!("oci:{}:simple", oci.display())],
    );
    store
}

/// A store holding `big`: one layer with a 1 MiB file, more than a pipe buffer holds.
fn big_store(dir: &Path) -> (PathBuf, String) {
    let oci = dir.join("oci-big");
    let content: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
    let spec = ImageSpec::new(vec![layer(
        TarFormat::Pax,
        vec![Entry::file("usr/bin/big", content)],
        Compression::Gzip,
    )]);
    OciLayout::create(&oci)
        .unwrap()
        .add_image("big", &spec)
        .unwrap();
    let store = dir.join("store");
    ok(&store, &["import", &format!("oci:{}:big", oci.display())]);
    (store, spec.diff_ids()[0].clone())
}

/// Run with stdout a pipe, read one byte and close it, as `| head -c 1` does.
fn into_closed_pipe(store: &Path, args: &[&str]) -> crate::Run {
    let mut child = bin()
        .arg("--store")
        .arg(store)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    stdout.read_exact(&mut one).unwrap();
    drop(stdout);
    child.wait_with_output().unwrap().into()
}

/// Run with stdout on /dev/full, where every write fails with ENOSPC.
fn into_full_device(store: &Path, args: &[&str]) -> crate::Run {
    bin()
        .arg("--store")
        .arg(store)
        .args(args)
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap()
        .into()
}

#[test]
fn a_closed_stdout_is_a_clean_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, diff_id) = big_store(tmp.path());
    for args in [
        &["cat", "big", "/usr/bin/big"][..],
        &["export-layer", &diff_id],
        &["disk", "big", "-"],
    ] {
        let r = into_closed_pipe(&store, args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr, "", "{args:?}");
    }
    // The tar to stdout dropped its merged ref like a tar to a file.
    let merged = ok(&store, &["refs", "--kind", "merged", "--json"]).json();
    assert_eq!(merged, serde_json::json!([]));
    assert_fsck_clean(&store);
}

#[test]
fn an_output_write_error_names_the_output_not_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, diff_id) = big_store(tmp.path());
    for args in [
        &["cat", "big", "/usr/bin/big"][..],
        &["export-layer", &diff_id],
    ] {
        let r = into_full_device(&store, args);
        assert_eq!(r.code, 2, "{args:?}");
        assert!(
            r.stderr.contains("cannot write to standard output"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("objects"), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains(store.to_str().unwrap()), "{}", r.stderr);
    }
    // The same for a file: the file is named, not the object being copied.
    let r = layerstore(&store, &["export-layer", &diff_id, "-o", "/dev/full"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cannot write /dev/full"), "{}", r.stderr);
}

#[test]
fn rm_merged_drops_a_kept_merged_ref_and_gc_frees_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = simple_store(tmp.path());
    let out = tmp.path().join("root.tar");
    let r = ok(
        &store,
        &["disk", "simple", out.to_str().unwrap(), "--keep-merged"],
    );
    assert!(r.text().contains("rm --merged"), "{}", r.text());
    ok(&store, &["rm", "simple"]);
    ok(&store, &["gc"]);
    let df = ok(&store, &["df", "--json"]).json();
    assert!(
        df["object_bytes"].as_u64().unwrap() > 0,
        "the merged ref pins"
    );
    let r = ok(&store, &["rm", "--merged", "simple", "--json"]).json();
    assert_eq!(r["removed"], serde_json::json!(["merged/simple"]));
    let gc = ok(&store, &["gc", "--json"]).json();
    assert!(gc["bytes_freed"].as_u64().unwrap() > 0);
    let df = ok(&store, &["df", "--json"]).json();
    assert_eq!(df["object_bytes"], 0, "{df}");
    assert_eq!(df["layers"], 0, "{df}");
    assert_eq!(layerstore(&store, &["rm", "--merged", "simple"]).code, 2);
    assert_fsck_clean(&store);
}

#[test]
fn df_of_an_empty_store_has_no_dedup_ratio() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(&store, &["init"]);
    let text = ok(&store, &["df"]).text();
    assert!(!text.contains("0.00x"), "{text}");
    assert!(text.contains("dedup ratio: -"), "{text}");
    let df = ok(&store, &["df", "--json"]).json();
    assert_eq!(df["dedup_ratio"], serde_json::Value::Null);
    assert_eq!(df["images"], serde_json::json!([]));
}

#[test]
fn ls_shows_a_symlink_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    let spec = ImageSpec::new(vec![layer(
        TarFormat::Pax,
        vec![
            Entry::file("usr/lib/os-release", "ID=test\n"),
            Entry::symlink("etc/os-release", "../usr/lib/os-release"),
            Entry::symlink("lib", "usr/lib"),
        ],
        Compression::None,
    )]);
    OciLayout::create(&oci)
        .unwrap()
        .add_image("links", &spec)
        .unwrap();
    let store = tmp.path().join("store");
    ok(&store, &["import", &format!("oci:{}:links", oci.display())]);
    let paths = |path: &str| -> Vec<(String, String)> {
        ok(&store, &["ls", "links", path, "--json"])
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["path"].as_str().unwrap().to_string(),
                    e["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let one = |p: &str, k: &str| vec![(p.to_string(), k.to_string())];
    assert_eq!(paths("/etc/os-release"), one("/etc/os-release", "symlink"));
    assert!(
        ok(&store, &["ls", "links", "/etc/os-release"])
            .text()
            .contains("/etc/os-release -> ../usr/lib/os-release")
    );
    // A symlink on the way still resolves, inside the image root.
    assert_eq!(
        paths("/lib/os-release"),
        one("/usr/lib/os-release", "regular")
    );
    assert_eq!(paths("/lib"), one("/lib", "symlink"));
    assert_eq!(paths("/lib/"), one("/usr/lib/os-release", "regular"));
    let r = layerstore(&store, &["ls", "links", "/etc/os-release/"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not a directory"), "{}", r.stderr);
    // cat still follows the link.
    assert_eq!(
        ok(&store, &["cat", "links", "/etc/os-release"]).stdout,
        b"ID=test\n"
    );
}

#[test]
fn disk_to_dash_writes_the_tar_to_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = simple_store(tmp.path());
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let r: crate::Run = bin()
        .current_dir(&cwd)
        .arg("--store")
        .arg(&store)
        .args(["disk", "simple", "-"])
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!cwd.join("-").exists(), "no file named -");
    let mut found = false;
    for e in tar::Archive::new(&r.stdout[..]).entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with("etc/os-release") {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            assert_eq!(v, b"ID=test\n");
            found = true;
        }
    }
    assert!(found);
    for bad in [
        &["disk", "simple", "-", "--format", "erofs"][..],
        &["disk", "simple", "-", "--json"],
    ] {
        let r = layerstore(&store, bad);
        assert_eq!(r.code, 2, "{bad:?}");
        assert!(r.stdout.is_empty(), "{bad:?}");
    }
}

#[test]
fn a_bad_svg_path_fails_before_the_analysis() {
    let tmp = tempfile::tempdir().unwrap();
    let store = simple_store(tmp.path());
    let bad = tmp.path().join("no-such-dir/chart.svg");
    let r = layerstore(&store, &["dedup-report", "--svg", bad.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("layerstore: error: cannot create"),
        "{}",
        r.stderr
    );
    let good = tmp.path().join("chart.svg");
    let r = ok(&store, &["dedup-report", "--svg", good.to_str().unwrap()]);
    assert!(r.text().starts_with("IMAGE"), "{}", r.text());
    assert!(std::fs::read_to_string(&good).unwrap().contains("<svg"));
}

#[test]
fn a_missing_store_is_not_created_and_init_is_suggested() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("nope");
    let r = layerstore(&store, &["images"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("layerstore init"), "{}", r.stderr);
    for args in [
        &["images"][..],
        &["df"],
        &["fsck"],
        &["refs"],
        &["gc"],
        &["inspect", "x"],
        &["ls", "x"],
        &["cat", "x", "/y"],
        &["dedup-report"],
        &["why", "x"],
        &["import", "oci:/no/such/layout:x"],
    ] {
        assert_eq!(layerstore(&store, args).code, 2, "{args:?}");
        assert!(!store.exists(), "{args:?} created the store");
    }
}

#[test]
fn images_are_named_by_id_or_digest_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let store = tmp.path().join("store");
    // Seventeen images: two of them share the first hex digit of their manifest digests.
    for i in 0..17 {
        let spec = ImageSpec::new(vec![layer(
            TarFormat::Pax,
            vec![Entry::file("f", format!("image {i}"))],
            Compression::None,
        )]);
        layout.add_image(&format!("i{i}"), &spec).unwrap();
        ok(&store, &["import", &format!("oci:{}:i{i}", oci.display())]);
    }
    ok(&store, &["tag", "i0", "again"]);
    let images = ok(&store, &["images", "--json"]).json();
    let images = images.as_array().unwrap();
    assert_eq!(images.len(), 18);
    // -q: each ID once, 12 hex digits, as podman prints them.
    let ids = ok(&store, &["images", "-q"]).text();
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 17);
    assert!(
        ids.iter()
            .all(|l| l.len() == 12 && l.bytes().all(|b| b.is_ascii_hexdigit()))
    );

    let i3 = images.iter().find(|i| i["name"] == "i3").unwrap();
    let id = i3["id"].as_str().unwrap();
    let digest = i3["manifest_digest"].as_str().unwrap();
    for spec in [&id[..12], id, &digest[..19], digest, &digest[7..19]] {
        let r = ok(&store, &["inspect", spec, "--json"]).json();
        assert_eq!(r["names"], serde_json::json!(["i3"]), "{spec}");
    }
    // The text of `images` shows the forms accepted.
    let text = ok(&store, &["images"]).text();
    let row = text.lines().find(|l| l.starts_with("i3 ")).unwrap();
    assert!(
        row.contains(&id[..12]) && row.contains(&digest[..19]),
        "{row}"
    );

    // A prefix two images share is refused, naming both.
    let mut by_first: std::collections::BTreeMap<char, Vec<&str>> = Default::default();
    for i in images.iter().filter(|i| i["name"] != "again") {
        let d = i["manifest_digest"].as_str().unwrap();
        by_first
            .entry(d.chars().nth(7).unwrap())
            .or_default()
            .push(d);
    }
    let (c, shared) = by_first.iter().find(|(_, v)| v.len() > 1).unwrap();
    let r = layerstore(&store, &["inspect", &format!("sha256:{c}")]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("more than one image"), "{}", r.stderr);
    for d in shared {
        assert!(r.stderr.contains(d), "{d} not listed: {}", r.stderr);
    }
    // rm by ID removes the one name of an image, and refuses an image with two.
    ok(&store, &["rm", &id[..12]]);
    assert_eq!(layerstore(&store, &["inspect", "i3"]).code, 2);
    let i0 = images.iter().find(|i| i["name"] == "i0").unwrap();
    let r = layerstore(&store, &["rm", &i0["id"].as_str().unwrap()[..12]]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("again, i0"), "{}", r.stderr);
}

#[test]
fn every_reporting_command_speaks_json() {
    let tmp = tempfile::tempdir().unwrap();
    let store = simple_store(tmp.path());
    let t = ok(&store, &["tag", "simple", "other", "--json"]).json();
    assert_eq!(t["name"], "other");
    assert!(
        t["manifest_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let refs = ok(&store, &["refs", "--json"]).json();
    for r in refs.as_array().unwrap() {
        let created = r["created"].as_str().unwrap();
        assert!(
            created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
            "{created}"
        );
    }
    let diff_id = ok(&store, &["inspect", "simple", "--json"]).json()["layers"][0]["diff_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = tmp.path().join("layer.tar");
    let e = ok(
        &store,
        &[
            "export-layer",
            &diff_id,
            "-o",
            out.to_str().unwrap(),
            "--json",
        ],
    )
    .json();
    assert_eq!(e["bytes"], std::fs::metadata(&out).unwrap().len());
    let r = ok(&store, &["rm", "other", "--json"]).json();
    assert_eq!(r["removed"], serde_json::json!(["image/other"]));
    ok(&store, &["rm", "simple"]);
    let gc = ok(&store, &["gc", "--json"]).json();
    assert!(gc["lock_held"].is_f64(), "{gc}");
    // A flag a command cannot honour is an error, not ignored.
    let r = layerstore(&store, &["cat", "simple", "/etc/os-release", "--json"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--json"), "{}", r.stderr);
    let r = layerstore(&store, &["export-layer", &diff_id, "--json"]);
    assert_eq!(r.code, 2);
    assert!(r.stdout.is_empty());
}

#[test]
fn fsck_findings_read_as_sentences_with_octal_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = big_store(tmp.path());
    let objects = store.join("objects");
    let mut file = None;
    for d in std::fs::read_dir(&objects).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            file = Some(f.unwrap().path());
        }
    }
    let file = file.expect("a loose object");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = layerstore(&store, &["fsck"]);
    assert_eq!(r.code, 1);
    assert!(r.text().contains("has mode 100644"), "{}", r.text());
    assert!(!r.text().contains('{'), "no raw JSON: {}", r.text());
}

#[test]
fn text_output_fits_long_names_and_counts_in_the_singular() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = big_store(tmp.path());
    let long = "registry.example.com/a/rather/long/repository/name:v1.2.3";
    ok(&store, &["tag", "big", long]);
    let df = ok(&store, &["df"]).text();
    let lines: Vec<&str> = df.lines().collect();
    let header_end = lines[0].find("LOGICAL").unwrap() + "LOGICAL".len();
    for row in &lines[1..3] {
        // Right-aligned under its header whatever the name's length.
        let cell_end = row.find("MiB").unwrap() + "MiB".len();
        assert_eq!(cell_end, header_end, "{df}");
    }
    assert!(
        df.contains("EXCLUSIVE: "),
        "the columns are explained: {df}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let oci = fixture(tmp.path());
    let store = tmp.path().join("store");
    let one = ImageSpec::new(vec![layer(
        TarFormat::Pax,
        vec![Entry::file("only", "x")],
        Compression::None,
    )]);
    OciLayout::create(&tmp.path().join("one"))
        .unwrap()
        .add_image("one", &one)
        .unwrap();
    let _ = oci;
    let text = ok(
        &store,
        &[
            "import",
            &format!("oci:{}:one", tmp.path().join("one").display()),
        ],
    )
    .text();
    assert!(text.contains(": 1 layer ("), "{text}");
    assert!(text.contains(", 1 file, "), "{text}");
}

#[test]
fn import_help_shows_every_source_form() {
    let r: crate::Run = bin().args(["import", "--help"]).output().unwrap().into();
    assert_eq!(r.code, 0);
    for form in [
        "oci:DIR[:REF]",
        "@sha256:DIGEST",
        "oci-archive:FILE[:REF]",
        "docker-archive:FILE[:N|NAME]",
    ] {
        assert!(r.text().contains(form), "{form}: {}", r.text());
    }
}
