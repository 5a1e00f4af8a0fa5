//! Real-binary tests of the registry flags (the protocol itself is tested through the library
//! in `tests/tests/it/registry.rs`).

use crate::layerstore;

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
