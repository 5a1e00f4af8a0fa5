//! A sequence of store operations (import, tag, rm, merged ref, gc) decoded from the input; after
//! every gc and at the end, fsck is clean and every image ref reads completely.
#![no_main]

use std::io::Write;
use std::path::Path;

use layerstore_import::{ImportOptions, import};
use layerstore_store::fsck::FsckOptions;
use layerstore_store::{ObjectCompression, RefKind, RefName, Store, StoreOptions};
use libfuzzer_sys::fuzz_target;
use sha2::Digest as _;

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// A one-file ustar layer.
fn layer(name: &str, content: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", content.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut t = h.to_vec();
    t.extend_from_slice(content);
    t.resize(t.len().div_ceil(512) * 512 + 1024, 0);
    t
}

fn write_layout(dir: &Path) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |b: &[u8]| {
        let d = sha(b);
        std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
        d
    };
    let mut index = Vec::new();
    for i in 0..4u8 {
        // Images 0..3 share the "shared" layer and add one of their own.
        let shared = layer("shared", &[7u8; 5000]);
        let own = layer(&format!("own{i}"), &vec![i; 4000 + usize::from(i) * 1000]);
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for t in [shared, own] {
            diff_ids.push(format!("\"{}\"", sha(&t)));
            let d = put(&t);
            layers.push(format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{}}}"#, t.len()));
        }
        let config = format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#, diff_ids.join(","));
        let cd = put(config.as_bytes());
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{}]}}"#,
            config.len(),
            layers.join(",")
        );
        let md = put(m.as_bytes());
        index.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"i{i}"}}}}"#,
            m.len()
        ));
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut f = std::fs::File::create(dir.join("index.json")).unwrap();
    write!(f, r#"{{"schemaVersion":2,"manifests":[{}]}}"#, index.join(",")).unwrap();
}

fn check(store: &Store) {
    let rep = store.fsck(&FsckOptions::default()).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.findings);
    for (_, img) in store.images().unwrap() {
        let tree = store.merged_tree(&img).unwrap();
        for e in tree.entries.values() {
            if let Some(id) = e.object {
                let n = store.read_object(&id).unwrap().copy_to(&mut std::io::sink()).unwrap();
                assert_eq!(n, e.size);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    write_layout(&oci);
    // Odd-length inputs run on a store with compressed objects.
    let sopts = StoreOptions {
        compression: (data.len() % 2 == 1).then(ObjectCompression::default),
        ..StoreOptions::default()
    };
    let store = Store::init(&tmp.path().join("store"), &sopts).unwrap();
    let opts = ImportOptions { jobs: 1, ..ImportOptions::default() };
    for op in data.chunks(2).take(24) {
        let arg = op.get(1).copied().unwrap_or(0) % 4;
        match op[0] % 6 {
            0 => {
                import(&store, &format!("oci:{}:i{arg}", oci.display()), &opts).unwrap();
            }
            1 => {
                if let Ok(img) = store.resolve_image(&format!("i{arg}")) {
                    store.set_refs(&[(RefName::image(&format!("t{arg}")).unwrap(), img.manifest_digest.to_string())]).unwrap();
                }
            }
            2 => {
                let _ = store.remove_refs(&[RefName::image(&format!("i{arg}")).unwrap()]);
            }
            3 => {
                if let Ok(img) = store.resolve_image(&format!("i{arg}")) {
                    store.create_merged(&format!("m{arg}"), &img).unwrap();
                }
            }
            4 => {
                let _ = store.remove_refs(&[RefName::new(RefKind::Merged, &format!("m{arg}")).unwrap()]);
            }
            _ => {
                layerstore_gc::collect(&store, &layerstore_gc::GcOptions::default()).unwrap();
                check(&store);
            }
        }
    }
    layerstore_gc::collect(&store, &layerstore_gc::GcOptions::default()).unwrap();
    check(&store);
});
