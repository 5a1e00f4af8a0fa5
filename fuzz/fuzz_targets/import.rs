//! A whole import into a temporary store: the input is a layer (gzip-compressed when its first
//! byte is odd). Either it is rejected and nothing is published, or it is accepted and every
//! layer round-trips; fsck is clean either way.
#![no_main]

use std::io::Write;

use layerstore_import::{ImportOptions, import};
use layerstore_store::fsck::FsckOptions;
use layerstore_store::{Store, StoreOptions};
use libfuzzer_sys::fuzz_target;
use sha2::Digest as _;

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    std::fs::create_dir_all(oci.join("blobs/sha256")).unwrap();
    let put = |b: &[u8]| {
        let d = sha(b);
        std::fs::write(oci.join("blobs/sha256").join(&d[7..]), b).unwrap();
        d
    };
    let gz = data.first().is_some_and(|b| b & 1 == 1);
    let blob = if gz {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    } else {
        data.to_vec()
    };
    let media = if gz { "application/vnd.oci.image.layer.v1.tar+gzip" } else { "application/vnd.oci.image.layer.v1.tar" };
    let layer = put(&blob);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        sha(data)
    );
    let config_d = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_d}","size":{}}},"layers":[{{"mediaType":"{media}","digest":"{layer}","size":{}}}]}}"#,
        config.len(),
        blob.len()
    );
    let md = put(manifest.as_bytes());
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        oci.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"f"}}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    // Inputs with bit 1 of the first byte set import into a store with compressed objects.
    let sopts = StoreOptions {
        compression: data
            .first()
            .is_some_and(|b| b & 2 == 2)
            .then_some(layerstore_store::ObjectCompression { level: 1, min_size: 64 }),
        ..StoreOptions::default()
    };
    let store = Store::init(&tmp.path().join("store"), &sopts).unwrap();
    let opts = ImportOptions { jobs: 1, ..ImportOptions::default() };
    match import(&store, &format!("oci:{}:f", oci.display()), &opts) {
        Ok(_) => {
            let img = store.resolve_image("f").unwrap();
            let tree = store.merged_tree(&img).unwrap();
            let mut out = Vec::new();
            store.export_layer_tar(&img.layers[0].diff_id, &mut out).unwrap();
            assert_eq!(out, data);
            let dest = tmp.path().join("co");
            let _ = store.checkout(&tree, &dest, &layerstore_store::CheckoutOptions { privileged: false, ..Default::default() });
        }
        Err(_) => assert!(store.refs(None).unwrap().is_empty()),
    }
    let rep = store.fsck(&FsckOptions::default()).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.findings);
});
