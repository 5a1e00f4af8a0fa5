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
