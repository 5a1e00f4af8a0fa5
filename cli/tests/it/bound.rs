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

/// `umoci` builds root image `tag` in `oci` from scratch: a base file, and a bound-images.d
/// symlink to a `.image` unit with `unit` as its text, version label `version`.
fn umoci_root(oci: &Path, tag: &str, unit: &str, version: &str) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("umoci")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let image = format!("{}:{tag}", oci.display());
    let bundle = oci.with_file_name(format!("bundle-{tag}"));
    run(&["new", "--image", &image]);
    run(&[
        "unpack",
        "--rootless",
        "--image",
        &image,
        bundle.to_str().unwrap(),
    ]);
    let root = bundle.join("rootfs");
    std::fs::create_dir_all(root.join("usr/share/containers/systemd")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib/bootc/bound-images.d")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), format!("VERSION={version}\n")).unwrap();
    std::fs::write(root.join("usr/share/containers/systemd/app.image"), unit).unwrap();
    std::os::unix::fs::symlink(
        "../../../share/containers/systemd/app.image",
        root.join("usr/lib/bootc/bound-images.d/app.image"),
    )
    .unwrap();
    run(&["repack", "--image", &image, bundle.to_str().unwrap()]);
    run(&[
        "config",
        "--image",
        &image,
        &format!("--config.label=org.opencontainers.image.version={version}"),
    ]);
}

/// bootc's flow against a real loopback docker-registry: root images built with umoci declare
/// bound images by digest; `bind --from-image` pulls them; gc keeps them while the root binds
/// them; the root moves to the next version, which binds the next app image, the old root
/// image is removed, and gc collects the old bound image and keeps the new. A tag in a
/// `.image` file is refused, and `--offline` reaches no registry.
#[test]
fn bound_images_from_a_real_registry_follow_the_root() {
    use layerstore_tests::registry::DockerRegistry;
    if !layerstore_tests::tar_refs::have("umoci") {
        layerstore_tests::skip("umoci is not installed");
        return;
    }
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The app images, pushed with skopeo as tags 1.9 and 1.10 (and latest).
    let oci = layout(tmp.path(), "", vec![]);
    reg.push(&oci, "app-v1", "app:1.9", None);
    reg.push(&oci, "app-v2", "app:1.10", None);
    reg.push(&oci, "app-v2", "app:latest", None);
    let store = tmp.path().join("store");
    let repo = format!("docker://{}/app", reg.host());
    // latest docker:// picks 1.10 over 1.9 (and over `latest`), with its digest.
    let l = ok(&store, &["--json", "latest", &repo, "--tls-verify=false"]).json();
    assert_eq!(l["tag"], "1.10", "{l}");
    let d2 = l["manifest_digest"].as_str().unwrap().to_string();
    assert_eq!(l["pinned"], format!("{repo}@{d2}").as_str());
    let d1 = {
        let probe = tmp.path().join("probe");
        import(&probe, &oci, "app-v1")
    };

    let roots = tmp.path().join("roots");
    let run = std::process::Command::new("umoci")
        .args(["init", "--layout", roots.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(run.success());
    let unit = |d: &str| format!("[Image]\nImage={}/app@{d}\n", reg.host());
    umoci_root(&roots, "os-1", &unit(&d1), "1");
    umoci_root(&roots, "os-2", &unit(&d2), "2");
    umoci_root(
        &roots,
        "os-tagged",
        &format!("[Image]\nImage={}/app:1.10\n", reg.host()),
        "3",
    );

    import(&store, &roots, "os-1");
    ok(&store, &["root", "set", "host", "os-1"]);
    // --offline: refused before any connection, nothing bound.
    let r = layerstore(
        &store,
        &[
            "--offline",
            "bind",
            "host",
            "--from-image",
            "--tls-verify=false",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--offline"), "{}", r.stderr);
    let b = ok(
        &store,
        &[
            "--json",
            "bind",
            "host",
            "--from-image",
            "--tls-verify=false",
        ],
    )
    .json();
    assert_eq!(b["pulled"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b["bindings"][0]["image"], d1.as_str());
    let g = ok(&store, &["--json", "gc"]).json();
    assert!(
        !g["removed"]["images"].to_string().contains(&d1),
        "gc keeps the bound image: {g}"
    );
    ok(&store, &["ls", &d1, "/app"]);
    let why = ok(&store, &["--json", "why", &d1]).json();
    assert_eq!(why[0]["root"], format!("bound/host/{d1}").as_str(), "{why}");
    // A rerun pulls nothing and changes nothing.
    let again = ok(
        &store,
        &[
            "--json",
            "bind",
            "host",
            "--from-image",
            "--tls-verify=false",
        ],
    )
    .json();
    assert_eq!(again["pulled"], serde_json::json!([]));
    assert_eq!(again["bindings"], b["bindings"]);

    // The update: the root moves to os-2, which binds app 1.10 instead.
    import(&store, &roots, "os-2");
    ok(&store, &["root", "set", "host", "os-2"]);
    let b = ok(
        &store,
        &[
            "--json",
            "bind",
            "host",
            "--from-image",
            "--tls-verify=false",
        ],
    )
    .json();
    let bound: Vec<&str> = b["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["image"].as_str().unwrap())
        .collect();
    assert_eq!(bound, [d2.as_str()], "{b}");
    ok(&store, &["rm", "os-1"]);
    let g = ok(&store, &["--json", "gc"]).json();
    let removed = g["removed"]["images"].to_string();
    assert!(removed.contains(&d1), "the old bound image goes: {g}");
    assert!(!removed.contains(&d2), "the new one stays: {g}");
    ok(&store, &["ls", &d2, "/app"]);
    assert_fsck_clean(&store);

    // --resolve-tags resolves a tag once and binds the digest it names now (1.9 is app-v1,
    // collected above: pulled again).
    ok(&store, &["root", "set", "other", "os-2"]);
    let tag = format!("{}/app:1.9", reg.host());
    let b = ok(
        &store,
        &[
            "--json",
            "bind",
            "other",
            &tag,
            "--resolve-tags",
            "--tls-verify=false",
        ],
    )
    .json();
    assert_eq!(b["bindings"][0]["image"], d1.as_str(), "{b}");
    // The reference keeps the tag it resolved, before the digest that binds.
    assert_eq!(
        b["bindings"][0]["reference"],
        format!("{tag}@{d1}").as_str()
    );
    assert_eq!(b["pulled"], serde_json::json!([tag]));
    ok(&store, &["root", "rm", "other"]);

    // A tag in a .image file is refused, saying how to pin it.
    import(&store, &roots, "os-tagged");
    ok(&store, &["root", "set", "tagged", "os-tagged"]);
    let r = layerstore(
        &store,
        &["bind", "tagged", "--from-image", "--tls-verify=false"],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("@sha256:"), "{}", r.stderr);
    let list = ok(&store, &["--json", "root", "list"]).json();
    let tagged = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "tagged")
        .unwrap();
    assert_eq!(tagged["bound"], serde_json::json!([]));
    assert_fsck_clean(&store);
}
