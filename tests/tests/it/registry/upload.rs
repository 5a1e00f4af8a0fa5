//! Chunked uploads against the real `docker-registry`: a blob larger than the chunk goes up as
//! `POST`, one `PATCH` per chunk (with its `Content-Range`), and a `PUT` with the digest.

use layerstore_import::registry::push::{LayerPush, PushOptions, push, push_with};

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

/// A push reports each layer it compresses (bytes summing to the blob's size) and uploads
/// (one report per chunk accepted, summing to the size too); a layer the registry can mount or
/// already has is reported as such, and nothing is compressed or uploaded for it.
#[test]
fn push_progress_reports_compressed_and_uploaded_bytes_and_layers_skipped() {
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (oci, _, _) = two_versions(tmp.path());
    let store = new_store(tmp.path());
    import(&store, &format!("oci:{}:v1", oci.display())).unwrap();
    let chunk = 64 << 10;
    let opts = PushOptions {
        registry: insecure(),
        chunk_bytes: Some(chunk),
        ..PushOptions::default()
    };
    let rec = ProgressRecorder::default();
    let dest = format!("docker://{}/fresh:v1", reg.host());
    let pushed = push_with(&store, "v1", &dest, &opts, &rec).unwrap();
    let events = rec.events();
    assert_eq!(pushed.layers.len(), 2);
    for (i, l) in pushed.layers.iter().enumerate() {
        assert_eq!(l.how, LayerPush::Uploaded, "{pushed:?}");
        assert_eq!(rec.blob_bytes(i), l.size, "layer {i}");
        assert!(events.contains(&ProgressEvent::BlobStart(i, l.diff_id)));
        assert!(events.contains(&ProgressEvent::BlobDone(i, l.digest, l.size)));
        assert!(events.contains(&ProgressEvent::UploadStart(i, l.size)));
        assert_eq!(
            rec.uploaded(i),
            (l.size, l.size.div_ceil(chunk) as usize),
            "layer {i}: one report per chunk"
        );
        assert!(events.contains(&ProgressEvent::Pushed(i, LayerPush::Uploaded)));
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ProgressEvent::Skipped(..))),
        "{events:?}"
    );

    // Pulled from the registry and pushed to another of its repositories: mounted, then
    // present; nothing compressed, nothing uploaded.
    let s2 = new_store(&tmp.path().join("s2"));
    let name = pull(&s2, &dest, &options(insecure())).unwrap().name;
    let copy = format!("docker://{}/copy:v1", reg.host());
    for how in [LayerPush::Mounted, LayerPush::Present] {
        let rec = ProgressRecorder::default();
        let r = push_with(&s2, &name, &copy, &opts, &rec).unwrap();
        let want: Vec<_> = (0..r.layers.len())
            .map(|i| ProgressEvent::Skipped(i, how))
            .chain((0..r.layers.len()).map(|i| ProgressEvent::Pushed(i, how)))
            .collect();
        assert_eq!(rec.events(), want, "{r:?}");
    }
    assert_sound(&store);
    assert_sound(&s2);
}
