//! Bound images (bootc): `bind`, `bind --from-image`, `unbind`, and gc keeping bound images by
//! digest while their root binds them.

use std::path::{Path, PathBuf};

use layerstore_tests::{Compression, Entry, ImageSpec, OciLayout, TarFormat};

use crate::commands::layer;
use crate::{assert_fsck_clean, import, layerstore, ok};

/// An OCI layout with `app-v1` and `app-v2` (to bind) and a root image whose
/// bound-images.d declares `unit` (written at usr/share/containers/systemd/app.image).
fn layout(dir: &Path, unit: &str, extra: Vec<Entry>) -> PathBuf {
    let oci = dir.join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    for v in ["1", "2"] {
        let spec = ImageSpec::new(vec![layer(
            TarFormat::Pax,
            vec![Entry::file(
                format!("app/bin-{v}"),
                format!("app {v}\n").repeat(3000),
            )],
            Compression::Gzip,
        )]);
        layout.add_image(&format!("app-v{v}"), &spec).unwrap();
    }
    let mut entries = vec![
        Entry::dir("usr"),
        Entry::dir("usr/share/containers/systemd"),
        Entry::file("usr/share/containers/systemd/app.image", unit.to_string()),
        Entry::dir("usr/lib/bootc/bound-images.d"),
        Entry::symlink(
            "usr/lib/bootc/bound-images.d/app.image",
            "../../../share/containers/systemd/app.image",
        ),
    ];
    entries.extend(extra);
    let spec = ImageSpec::new(vec![layer(TarFormat::Pax, entries, Compression::Gzip)]);
    layout.add_image("os", &spec).unwrap();
    oci
}

#[test]
fn bound_images_live_while_their_root_binds_them() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = layout(tmp.path(), "[Image]\nImage=x\n", vec![]);
    let store = tmp.path().join("store");
    let v1 = import(&store, &oci, "app-v1");
    let v2 = import(&store, &oci, "app-v2");
    import(&store, &oci, "os");
    ok(&store, &["root", "set", "host", "os"]);
    let pinned = format!("localhost:5000/app@{v1}");
    let b = ok(&store, &["--json", "bind", "host", &pinned]).json();
    assert_eq!(b["bindings"][0]["reference"], pinned.as_str());
    assert_eq!(
        b["pulled"],
        serde_json::json!([]),
        "already stored: no pull"
    );
    // A rerun changes nothing.
    let again = ok(&store, &["--json", "bind", "host", &pinned]).json();
    assert_eq!(again["bindings"], b["bindings"]);
    ok(&store, &["rm", "app-v1", "app-v2"]);
    let g = ok(&store, &["--json", "gc"]).json();
    assert_eq!(
        g["removed"]["images"],
        serde_json::json!([v2]),
        "the unbound image goes, the bound one stays"
    );
    ok(&store, &["ls", &v1, "/app"]);
    let why = ok(&store, &["--json", "why", &v1]).json();
    let bound_ref = format!("bound/host/{v1}");
    assert_eq!(why[0]["root"], bound_ref.as_str(), "{why}");
    let list = ok(&store, &["--json", "root", "list"]).json();
    assert_eq!(list[0]["bound"][0]["image"], v1.as_str());
    let cost = list[0]["bound"][0]["exclusive_bytes"].as_u64().unwrap();
    assert!(cost > 0, "{list}");
    assert_eq!(list[0]["bound_exclusive_bytes"].as_u64().unwrap(), cost);
    let df = ok(&store, &["--json", "df"]).json();
    assert_eq!(df["roots"][0]["name"], "host");
    assert_eq!(
        df["roots"][0]["bound_exclusive_bytes"].as_u64().unwrap(),
        cost
    );
    assert_fsck_clean(&store);

    // A tag is refused, saying how to pin it; the bindings stay as they were.
    let r = layerstore(&store, &["bind", "host", "localhost:5000/app:2"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("@sha256:"), "{}", r.stderr);
    assert!(r.stderr.contains("--resolve-tags"), "{}", r.stderr);
    // A pull that fails (nothing listens) leaves the bindings intact.
    let missing = format!("127.0.0.1:9/app@sha256:{}", "0".repeat(64));
    let r = layerstore(&store, &["bind", "host", &pinned, &missing]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let list = ok(&store, &["--json", "root", "list"]).json();
    assert_eq!(list[0]["bound"].as_array().unwrap().len(), 1, "{list}");

    // The root goes: gc collects what only its binding kept.
    ok(&store, &["root", "rm", "host"]);
    let g = ok(&store, &["--json", "gc"]).json();
    assert!(
        g["removed"]["images"].to_string().contains(&v1),
        "the bound image goes with its root: {g}"
    );
    assert_eq!(
        g["removed"]["stored_bytes"].as_u64().unwrap(),
        cost,
        "what root list said the binding alone keeps"
    );
    assert_fsck_clean(&store);
}

#[test]
fn unbind_frees_the_binding() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = layout(tmp.path(), "[Image]\nImage=x\n", vec![]);
    let store = tmp.path().join("store");
    let v1 = import(&store, &oci, "app-v1");
    import(&store, &oci, "os");
    ok(&store, &["root", "set", "host", "os"]);
    ok(&store, &["bind", "host", &format!("localhost/app@{v1}")]);
    ok(&store, &["rm", "app-v1"]);
    let u = ok(&store, &["--json", "unbind", "host", &v1]).json();
    assert_eq!(u["unbound"][0]["image"], v1.as_str());
    let g = ok(&store, &["--json", "gc"]).json();
    assert_eq!(g["removed"]["images"], serde_json::json!([v1]));
    let r = layerstore(&store, &["unbind", "host", &v1]);
    assert_eq!(r.code, 2);
    assert_fsck_clean(&store);
}

#[test]
fn bind_from_image_reads_bound_images_d() {
    let tmp = tempfile::tempdir().unwrap();
    // The unit names app-v1 by digest, which is known only once the layout is written: write
    // it once to learn the digest (the app images do not depend on the unit).
    let probe = layout(&tmp.path().join("probe"), "", vec![]);
    let store = tmp.path().join("store");
    let v1 = import(&store, &probe, "app-v1");
    let unit = format!("# bound\r\n[Image]\r\nImage=localhost/app@{v1}\r\n");
    let oci = layout(tmp.path(), &unit, vec![]);
    import(&store, &oci, "os");
    ok(&store, &["root", "set", "host", "os"]);
    let b = ok(&store, &["--json", "bind", "host", "--from-image"]).json();
    assert_eq!(
        b["bindings"][0]["reference"],
        format!("localhost/app@{v1}").as_str()
    );
    assert_fsck_clean(&store);
}

#[test]
fn bind_from_image_refuses_what_bootc_would_not_read() {
    let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        ("[Image]\nImage=localhost/app:1\n", vec![], "is a tag"),
        (
            "[Image]\nImage=localhost/app@sha256:00\nAuthFile=/a\n",
            vec![],
            "AuthFile",
        ),
        ("[Image]\nImage=%h/app\n", vec![], "specifier"),
        (
            "[Image]\nImage=x\n",
            vec![Entry::file(
                "usr/lib/bootc/bound-images.d/plain.image",
                "[Image]\n",
            )],
            "not a symbolic link",
        ),
        (
            "[Image]\nImage=x\n",
            vec![Entry::symlink(
                "usr/lib/bootc/bound-images.d/app.volume",
                "../../../share/containers/systemd/app.image",
            )],
            "does not end in .image or .container",
        ),
        (
            // An escape through the symlink stays inside the image root: /etc/passwd of the
            // image, which it does not have.
            "[Image]\nImage=x\n",
            vec![Entry::symlink(
                "usr/lib/bootc/bound-images.d/esc.image",
                "../../../../../../../../etc/passwd",
            )],
            "dangling",
        ),
    ];
    for (i, (unit, extra, why)) in cases.into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let oci = layout(tmp.path(), unit, extra);
        let store = tmp.path().join("store");
        import(&store, &oci, "os");
        ok(&store, &["root", "set", "host", "os"]);
        let r = layerstore(&store, &["bind", "host", "--from-image"]);
        assert_eq!(r.code, 2, "case {i}");
        assert!(r.stderr.contains(why), "case {i}: {}", r.stderr);
        let list = ok(&store, &["--json", "root", "list"]).json();
        assert_eq!(list[0]["bound"], serde_json::json!([]), "case {i}");
    }
}
