//! Real-binary tests of the registry flags (the protocol itself is tested through the library
//! in `tests/tests/it/registry.rs`).

use crate::{layerstore, ok};

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn tls_verify_without_a_value_does_not_take_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let source = format!("docker://127.0.0.1:{}/app:v1", closed_port());
    for flag in ["--tls-verify", "--tls-verify=false"] {
        let r = layerstore(&tmp.path().join("store"), &["import", flag, &source]);
        let stderr = &r.stderr;
        // The source was taken as the source: the import ran and failed to connect (exit 2,
        // one error line naming it), rather than clap refusing `docker://…` as a boolean.
        assert_eq!(r.code, 2, "{flag}: {stderr}");
        assert!(
            stderr.starts_with(&format!("layerstore: error: cannot import {source}")),
            "{flag}: {stderr}"
        );
    }
}

/// The origin an import records shows in `images`, `inspect` and `status`, in text and JSON
/// alike (one view each); `prepare` of an unchanged origin finds no update, and `import
/// --prepared` without a prepared update says to run `prepare`.
#[test]
fn origin_shows_in_images_inspect_and_status_and_prepare_needs_a_check() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = crate::commands::fixture(tmp.path());
    let store = tmp.path().join("store");
    let spec = format!("oci:{}:simple", oci.display());
    ok(&store, &["import", &spec]);

    let images = ok(&store, &["images", "--json"]).json();
    assert_eq!(images[0]["origin"], spec.as_str());
    let text = ok(&store, &["images"]).text();
    let mut lines = text.lines();
    assert!(
        lines.next().unwrap().trim_end().ends_with("ORIGIN"),
        "{text}"
    );
    assert!(lines.next().unwrap().trim_end().ends_with(&spec), "{text}");

    assert_eq!(
        ok(&store, &["inspect", "simple", "--json"]).json()["origin"],
        spec.as_str()
    );
    let text = ok(&store, &["inspect", "simple"]).text();
    assert!(text.contains(&format!("Origin:   {spec}\n")), "{text}");

    let status = ok(&store, &["status", "--json"]).json();
    assert_eq!(status[0]["name"], "simple");
    assert_eq!(status[0]["origin"], spec.as_str());
    assert_eq!(status[0]["update"], serde_json::Value::Null);

    let r = ok(&store, &["prepare", "simple", "--json"]).json();
    assert_eq!(r["update"], false);
    let r = layerstore(&store, &["import", "--prepared", "simple"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("run `layerstore prepare` first"),
        "{}",
        r.stderr
    );
}

/// `--offline`: every command that would reach a registry fails at once, naming the flag, and
/// opens no connection (a listener stands in for the registry and is never called); commands
/// that read the store, `status` among them, run as usual. Against a real registry, an import
/// reports the bytes it fetched per layer with `--json`, and a prepared update is shown offline
/// and refused offline.
#[test]
fn offline_reaches_no_registry_and_json_reports_the_bytes_fetched() {
    use layerstore_tests::registry::DockerRegistry;
    use layerstore_tests::{Compression, Entry, ImageSpec, OciLayout, TarFormat};
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let oci = crate::commands::fixture(tmp.path());
    ok(
        &store,
        &["import", &format!("oci:{}:simple", oci.display())],
    );
    ok(&store, &["root", "set", "host", "simple"]);
    let source = format!("docker://{host}/app:v1");
    let latest = format!("docker://{host}/app");
    let pinned = format!("{host}/app@sha256:{}", "a".repeat(64));
    for args in [
        vec!["import", source.as_str()],
        vec!["push", "simple", source.as_str()],
        vec!["prepare", source.as_str(), "--tag", "simple"],
        vec!["latest", latest.as_str()],
        vec!["bind", "host", &pinned],
    ] {
        let mut all = vec!["--offline"];
        all.extend(args.iter().copied());
        all.push("--tls-verify=false");
        let r = layerstore(&store, &all);
        assert_eq!(r.code, 2, "{all:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("--offline") && r.stderr.lines().count() == 1,
            "{all:?}: {}",
            r.stderr
        );
    }
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "a connection was opened"
    );
    ok(&store, &["--offline", "status"]);
    ok(&store, &["--offline", "images"]);

    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let layout_dir = tmp.path().join("app");
    let mut layout = OciLayout::create(&layout_dir).unwrap();
    let layer = |name: &str| {
        crate::commands::layer(
            TarFormat::Pax,
            vec![Entry::file(name, name.repeat(5000))],
            Compression::Gzip,
        )
    };
    layout
        .add_image("v1", &ImageSpec::new(vec![layer("base"), layer("one")]))
        .unwrap();
    layout
        .add_image("v2", &ImageSpec::new(vec![layer("base"), layer("two")]))
        .unwrap();
    reg.push(&layout_dir, "v1", "app:stable", None);
    let spec = format!("docker://{}/app:stable", reg.host());
    let r = ok(
        &store,
        &[
            "--json",
            "import",
            &spec,
            "--tag",
            "app",
            "--tls-verify=false",
        ],
    )
    .json();
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for l in layers {
        assert_eq!(l["fetched_bytes"], l["blob_size"], "{r}");
    }
    assert_eq!(
        r["fetched_bytes"].as_u64().unwrap(),
        layers
            .iter()
            .map(|l| l["blob_size"].as_u64().unwrap())
            .sum::<u64>()
    );

    // The tag moves to v2: prepare caches it; offline, status shows it and import refuses.
    reg.push(&layout_dir, "v2", "app:stable", None);
    let p = ok(&store, &["--json", "prepare", "app", "--tls-verify=false"]).json();
    assert_eq!(p["update"], true, "{p}");
    let s = ok(&store, &["--offline", "--json", "status", "app"]).json();
    assert_eq!(s[0]["update"]["manifest_digest"], p["available"], "{s}");
    let r = layerstore(
        &store,
        &[
            "--offline",
            "import",
            "--prepared",
            "app",
            "--tls-verify=false",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--offline"), "{}", r.stderr);
    // Online, only the new layer is fetched.
    let r = ok(
        &store,
        &[
            "--json",
            "import",
            "--prepared",
            "app",
            "--tls-verify=false",
        ],
    )
    .json();
    let fetched: Vec<u64> = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["fetched_bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(fetched[0], 0, "the shared base is not fetched again: {r}");
    assert!(fetched[1] > 0, "{r}");
    crate::assert_fsck_clean(&store);
}

/// With stderr not a terminal a push prints its result line and nothing else, the first time
/// (layers compressed and uploaded) as the second (all present); --json is the report alone.
#[test]
fn push_off_a_terminal_prints_only_its_result() {
    let Some(reg) = layerstore_tests::registry::DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let oci = crate::commands::fixture(tmp.path());
    let store = tmp.path().join("store");
    crate::import(&store, &oci, "simple");
    let dest = format!("docker://{}/app:v1", reg.host());
    for uploaded in [true, false] {
        let r = ok(&store, &["push", "simple", &dest, "--tls-verify=false"]);
        assert_eq!(r.stderr, "");
        let text = r.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.starts_with(&format!("pushed simple to {dest} sha256:")),
            "{text}"
        );
        assert_eq!(!text.contains("(0 uploaded"), uploaded, "{text}");
    }
    let r = ok(
        &store,
        &["--json", "push", "simple", &dest, "--tls-verify=false"],
    );
    assert_eq!(r.stderr, "");
    let report = r.json();
    assert_eq!(report["uploaded_bytes"], 0, "{report}");
    assert!(!report["layers"].as_array().unwrap().is_empty());
}
