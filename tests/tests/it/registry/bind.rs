//! Binding registry images to a root (against a gc in the middle), tag listing with `Link`
//! pagination, and gc pruning the blob info cache.

use std::sync::Arc;
use std::sync::Mutex;

use layerstore_gc::{GcOptions, GcPlan};
use layerstore_import::bind::{BindTarget, bind};
use layerstore_store::{Digest, RefName};

use super::servers::{Content, DockerRegistry, FaultServer, Resp};
use super::*;

/// A store with a root `host` pinning a small local image.
fn store_with_root(dir: &Path) -> Store {
    let store = new_store(&dir.join("s"));
    let tar = LayerBuilder::new(TarFormat::Pax)
        .with_entries([Entry::file("etc/os-release", "ID=test\n")])
        .tar_bytes();
    let os = one_layer_image(&dir.join("os"), "os", tar);
    let r = import(&store, &os).unwrap();
    store.set_root("host", &r.manifest_digest).unwrap();
    store
}

/// bind pulls v1, then v2; while the registry serves v2's manifest, a whole gc runs on the
/// store. v1 was pulled as layers only, with nothing naming it until the bindings are
/// recorded: only bind's pin keeps it, and the bindings record both images.
#[test]
fn a_gc_between_binds_pull_and_its_record_cannot_take_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let (oci, v1, v2) = two_versions(tmp.path());
    let store = store_with_root(tmp.path());
    let content = Arc::new(Content::of(&oci, &[("v1", &v1), ("v2", &v2)]));
    let store_path = store.path().to_path_buf();
    let gc_plan: Arc<Mutex<Option<GcPlan>>> = Arc::new(Mutex::new(None));
    let (c, plan, m2, v1_digest) = (
        content.clone(),
        gc_plan.clone(),
        format!("/v2/app/manifests/{}", v2.manifest_digest),
        v1.manifest_digest.clone(),
    );
    let srv = FaultServer::start(move |req| {
        if req.path == m2 && plan.lock().unwrap().is_none() {
            let s = Store::open(&store_path).unwrap();
            // why names bind's lease as what keeps v1, as gc sees it.
            let d1: Digest = v1_digest.parse().unwrap();
            let reasons =
                layerstore_gc::why::why(&s, &layerstore_gc::why::Subject::Image(d1)).unwrap();
            assert!(
                reasons.len() == 1
                    && reasons[0].root.starts_with("lease/")
                    && reasons[0].via == "bind host",
                "{reasons:?}"
            );
            let (p, _) = layerstore_gc::collect(&s, &GcOptions::default()).unwrap();
            *plan.lock().unwrap() = Some(p);
        }
        c.serve(req)
    });
    let targets: Vec<BindTarget> = [&v1, &v2]
        .iter()
        .map(|v| BindTarget {
            given: format!("{}/app@{}", srv.host(), v.manifest_digest),
            repository: format!("{}/app", srv.host()),
            digest: Some(v.manifest_digest.parse().unwrap()),
        })
        .collect();
    let report = bind(&store, "host", &targets, false, &options(insecure())).unwrap();
    let plan = gc_plan
        .lock()
        .unwrap()
        .clone()
        .expect("the gc ran mid-bind");
    assert!(
        !plan.images.contains(&v1.manifest_digest),
        "the gc took the pinned image: {plan:?}"
    );
    assert_eq!(report.pulled.len(), 2);
    let bound: Vec<String> = report
        .bindings
        .iter()
        .map(|b| b.image.to_string())
        .collect();
    assert!(bound.contains(&v1.manifest_digest) && bound.contains(&v2.manifest_digest));
    // The bindings keep both now; a later gc takes neither.
    let (plan, _) = layerstore_gc::collect(&store, &GcOptions::default()).unwrap();
    assert!(plan.images.is_empty(), "{plan:?}");
    assert_sound(&store);
}

/// A pull that fails while binding leaves the root's bindings as they were, and no pin.
#[test]
fn a_failed_bind_leaves_the_bindings_and_no_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let (oci, v1, v2) = two_versions(tmp.path());
    let store = store_with_root(tmp.path());
    let content = Arc::new(Content::of(&oci, &[("v1", &v1)]));
    let c = content.clone();
    let srv = FaultServer::start(move |req| c.serve(req));
    let target = |v: &WrittenImage| BindTarget {
        given: format!("{}/app@{}", srv.host(), v.manifest_digest),
        repository: format!("{}/app", srv.host()),
        digest: Some(v.manifest_digest.parse().unwrap()),
    };
    bind(&store, "host", &[target(&v1)], false, &options(insecure())).unwrap();
    let before = store.bindings("host").unwrap();
    // v2 is not in the registry: the whole bind fails, v1's binding stands.
    let err = bind(
        &store,
        "host",
        &[target(&v1), target(&v2)],
        false,
        &options(insecure()),
    )
    .unwrap_err();
    assert!(
        matches!(
            registry_cause(&err),
            Some(RegistryError::ManifestUnknown { .. })
        ),
        "{err:#}"
    );
    assert_eq!(store.bindings("host").unwrap(), before);
    layerstore_gc::collect(&store, &GcOptions::default()).unwrap();
    assert_sound(&store);
}

/// The tag list is read page by page: `n` asked, `last` from each `Link`, relative or
/// absolute; a `Link` back to a page already read is an error, not a loop.
#[test]
fn tags_follow_link_pagination_with_n_and_last() {
    let all = ["1.0", "1.1", "1.10", "1.9", "latest"];
    let loop_back = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lb = loop_back.clone();
    let srv = FaultServer::start(move |req| {
        if req.path == "/v2/" {
            return Resp::new(200, "{}");
        }
        let Some(q) = req.path.strip_prefix("/v2/app/tags/list?") else {
            return Resp::new(404, "");
        };
        let last = q
            .split('&')
            .find_map(|kv| kv.strip_prefix("last="))
            .unwrap_or("");
        let start = all.iter().position(|t| *t > last).unwrap_or(all.len());
        let page: Vec<&str> = all[start..].iter().take(2).copied().collect();
        let body = serde_json::json!({"name": "app", "tags": page}).to_string();
        let mut resp = Resp::new(200, body).header("Content-Type", "application/json");
        if let Some(l) = page.last().filter(|_| start + 2 < all.len()) {
            let target = if lb.load(std::sync::atomic::Ordering::SeqCst) {
                "</v2/app/tags/list?n=2>".to_string()
            } else {
                format!("</v2/app/tags/list?n=2&last={l}>")
            };
            resp = resp.header("Link", &format!(r#"{target}; rel="next""#));
        }
        resp
    });
    let reference =
        layerstore_import::registry::Reference::parse(&format!("{}/app", srv.host())).unwrap();
    let repo = layerstore_import::registry::open(&reference, &insecure()).unwrap();
    assert_eq!(repo.tags_paged(2).unwrap(), all);
    let pages: Vec<String> = srv
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.starts_with("/v2/app/tags/list"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        pages,
        [
            "/v2/app/tags/list?n=2",
            "/v2/app/tags/list?n=2&last=1.1",
            "/v2/app/tags/list?n=2&last=1.9"
        ]
    );
    loop_back.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = repo.tags_paged(2).unwrap_err();
    assert!(
        matches!(
            registry_cause(&err),
            Some(RegistryError::RedirectLoop { .. })
        ),
        "{err:#}"
    );
}

/// gc drops the blob info cache's rows of blobs no image or layer stands for any more, and
/// keeps those of the images that stay.
#[test]
fn gc_prunes_the_blob_locations_of_blobs_no_image_needs() {
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (oci, _, v2) = two_versions(tmp.path());
    reg.push(&oci, "v1", "app:v1", None);
    reg.push(&oci, "v2", "app:v2", None);
    let store = new_store(tmp.path());
    let r1 = pull(
        &store,
        &format!("docker://{}/app:v1", reg.host()),
        &options(insecure()),
    )
    .unwrap();
    pull(
        &store,
        &format!("docker://{}/app:v2", reg.host()),
        &options(insecure()),
    )
    .unwrap();
    let only_v1 = r1.layers[1].blob_digest;
    let shared = r1.layers[0].blob_digest;
    let location = format!("{}/app", reg.host());
    assert_eq!(store.blob_locations(&only_v1).unwrap(), [location.as_str()]);
    assert_eq!(
        store.blob_locations(&r1.config_digest).unwrap(),
        [location.as_str()]
    );

    store
        .remove_refs(&[RefName::image(&r1.name).unwrap()])
        .unwrap();
    let (plan, _) = layerstore_gc::collect(&store, &GcOptions::default()).unwrap();
    // v1's own layer and its config.
    assert_eq!(plan.blob_locations, 2, "{plan:?}");
    assert!(store.blob_locations(&only_v1).unwrap().is_empty());
    assert!(store.blob_locations(&r1.config_digest).unwrap().is_empty());
    assert_eq!(store.blob_locations(&shared).unwrap(), [location.as_str()]);
    let v2_config: layerstore_store::Digest = v2.config_digest.parse().unwrap();
    assert_eq!(store.blob_locations(&v2_config).unwrap(), [location]);
    assert_sound(&store);
}

/// fsck holds `bindings` rows and `bound/` refs to each other, and --repair puts them back
/// together: a missing ref is written again (the image is kept again), a ref without a row
/// gets one while its root lives, and is dropped once the root is gone.
#[test]
fn fsck_cross_checks_bindings_against_bound_refs_and_repairs_them() {
    use layerstore_store::fsck::{Finding, FsckOptions};
    let tmp = tempfile::tempdir().unwrap();
    let (oci, _, _) = two_versions(tmp.path());
    let store = store_with_root(tmp.path());
    let v1 = import(&store, &format!("oci:{}:v1", oci.display()))
        .unwrap()
        .manifest_digest;
    let v2 = import(&store, &format!("oci:{}:v2", oci.display()))
        .unwrap()
        .manifest_digest;
    let reference = format!("reg.example/app@{v1}");
    store.bind("host", &[(v1, reference.clone())]).unwrap();
    assert_sound(&store);
    let root = RefName::root("host").unwrap();
    let fsck = |repair| store.fsck(&FsckOptions { repair }).unwrap();

    // The ref is gone, the row stays.
    store
        .remove_refs(&[RefName::bound(&root, &v1).unwrap()])
        .unwrap();
    let want = Finding::BindingWithoutRef {
        root: "host".into(),
        image: v1.to_string(),
        reference: reference.clone(),
    };
    assert_eq!(fsck(false).findings, std::slice::from_ref(&want));
    assert_eq!(fsck(true).repaired, [want]);
    assert!(
        store
            .ref_target(&RefName::bound(&root, &v1).unwrap())
            .unwrap()
            .is_some()
    );

    // A ref without a row, for a live root and for a root that is gone.
    let orphan = RefName::bound(&RefName::root("gone").unwrap(), &v2).unwrap();
    let unrecorded = RefName::bound(&root, &v2).unwrap();
    store
        .set_refs(&[
            (orphan.clone(), v2.to_string()),
            (unrecorded.clone(), v2.to_string()),
        ])
        .unwrap();
    let findings = fsck(false).findings;
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert!(findings.contains(&Finding::BoundRefWithoutBinding {
        name: unrecorded.to_string(),
        target: v2.to_string(),
    }));
    assert_eq!(fsck(true).repaired.len(), 2);
    assert!(store.ref_target(&orphan).unwrap().is_none());
    let bound: Vec<Digest> = store
        .bindings("host")
        .unwrap()
        .iter()
        .map(|b| b.image)
        .collect();
    assert_eq!(bound.len(), 2);
    assert!(bound.contains(&v1) && bound.contains(&v2));
    layerstore_gc::collect(&store, &GcOptions::default()).unwrap();
    assert_sound(&store);
}
