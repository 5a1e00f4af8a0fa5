//! OCI JSON documents: index.json, a manifest and a config taken from the input (separated by
//! NUL bytes), resolved from memory. Any input gives an image or a typed error, never a panic.
#![no_main]

use layerstore_import::resolve::{Platform, resolve_docker, resolve_oci};
use layerstore_import::source::MemContainer;
use layerstore_store::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let index = parts.next().unwrap_or_default().to_vec();
    let manifest = parts.next().unwrap_or_default().to_vec();
    let config = parts.next().unwrap_or_default().to_vec();
    let mut c = MemContainer::default();
    c.files.insert("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    c.files.insert("index.json".into(), index.clone());
    c.files.insert("manifest.json".into(), index);
    c.add_blob(manifest);
    c.add_blob(config.clone());
    c.files.insert("config.json".into(), config);
    let limits = Limits { max_json_bytes: 1 << 20, ..Limits::default() };
    let _ = resolve_oci(&c, None, &Platform::host(), &limits);
    let _ = resolve_oci(&c, Some("latest"), &Platform::host(), &limits);
    let _ = resolve_docker(&c, None, &limits);
});
