//! Chunked uploads against the real `docker-registry`: a blob larger than the chunk goes up as
//! `POST`, one `PATCH` per chunk (with its `Content-Range`), and a `PUT` with the digest.

use layerstore_import::registry::push::{LayerPush, PushOptions, push};

use super::servers::DockerRegistry;
use super::*;

#[test]
fn a_blob_larger_than_the_chunk_is_uploaded_in_patch_chunks_and_reads_back_equal() {
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (oci, v1, _) = two_versions(tmp.path());
    let store = new_store(tmp.path());
    let r = import(&store, &format!("oci:{}:v1", oci.display())).unwrap();
    let dest = format!("docker://{}/chunked:v1", reg.host());
    let opts = PushOptions {
        registry: insecure(),
        // The base layer (300 kB of random bytes) takes 5 chunks, the app layer 2.
        chunk_bytes: Some(64 << 10),
        ..PushOptions::default()
    };
    let pushed = push(&store, "v1", &dest, &opts).unwrap();
    assert!(
        pushed.layers.iter().all(|l| l.how == LayerPush::Uploaded),
        "{pushed:?}"
    );
    let patches = reg.requests_logged("PATCH /v2/chunked/blobs/uploads/");
    let want: u64 = pushed
        .layers
        .iter()
        .map(|l| l.size.div_ceil(64 << 10))
        .sum();
    assert_eq!(patches as u64, want, "one PATCH per chunk");
    // Pulled back: the same layers.
    let back = new_store(&tmp.path().join("back"));
    let b = pull(&back, &dest, &options(insecure())).unwrap();
    let diff_ids = |r: &ImportReport| r.layers.iter().map(|l| l.diff_id).collect::<Vec<_>>();
    assert_eq!(diff_ids(&b), diff_ids(&r));
    assert_eq!(
        r.layers[0].diff_id.to_string(),
        v1.layers[0].diff_id,
        "the fixture's base layer"
    );
    assert_sound(&back);
}
