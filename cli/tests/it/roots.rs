//! Roots: `root set/list/rm`, `disk --root` (coreos-assembler's flow), `import --layers-only`.

use std::path::Path;

use crate::{assert_fsck_clean, import, layerstore, ok, sample};

/// How many layers the store holds.
fn layers(store: &Path) -> u64 {
    ok(store, &["--json", "df"]).json()["layers"]
        .as_u64()
        .unwrap()
}

fn gc(store: &Path) -> serde_json::Value {
    ok(store, &["--json", "gc"]).json()
}

/// The disk-generation flow: a disk of the image sets the root, the image's name goes, gc keeps
/// every layer; the update moves the root, gc drops what only the old image needed; the rebase
/// onto the new image reused the shared layer.
#[test]
fn disk_root_keeps_layers_until_the_root_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = sample(tmp.path());
    let store = tmp.path().join("store");
    let v1 = import(&store, &oci, "app-v1");
    let out = tmp.path().join("disk.tar");
    ok(
        &store,
        &["disk", "app-v1", out.to_str().unwrap(), "--root", "host"],
    );
    let refs = ok(&store, &["--json", "refs"]).json().to_string();
    assert!(
        !refs.contains("merged/"),
        "the merged ref is dropped: {refs}"
    );
    ok(&store, &["rm", "app-v1"]);
    let before = layers(&store);
    let plan = gc(&store);
    assert_eq!(layers(&store), before, "gc kept every layer: {plan}");
    // The image is gone by name, kept by digest: its files are still there.
    ok(&store, &["ls", &v1, "/"]);
    assert_fsck_clean(&store);

    // The update: app-v3 (on base-v2) shares no layer with app-v1.
    let v3 = import(&store, &oci, "app-v3");
    let set = ok(&store, &["--json", "root", "set", "host", "app-v3"]).json();
    assert_eq!(set["previous"], v1.as_str());
    assert_eq!(set["image"], v3.as_str());
    let plan = gc(&store);
    assert!(
        !plan["removed"]["layers"].as_array().unwrap().is_empty(),
        "gc drops what only the old image needed: {plan}"
    );
    let r = layerstore(&store, &["ls", &v1, "/"]);
    assert_eq!(r.code, 2, "the old image went with its root");
    ok(&store, &["ls", &v3, "/"]);
    assert_fsck_clean(&store);
}

/// A rebase onto an image that shares layers with the root's image reads only the new layers.
#[test]
fn rebase_reuses_the_layers_a_root_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = sample(tmp.path());
    let store = tmp.path().join("store");
    import(&store, &oci, "app-v2");
    ok(&store, &["root", "set", "host", "app-v2"]);
    ok(&store, &["rm", "app-v2"]);
    gc(&store);
    let r = ok(
        &store,
        &["--json", "import", &format!("oci:{}:app-v3", oci.display())],
    )
    .json();
    let reused: Vec<bool> = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["reused"].as_bool().unwrap())
        .collect();
    assert_eq!(
        reused,
        [true, true, false],
        "base-v2 and app-v2 layers reused"
    );
    assert_fsck_clean(&store);
}

#[test]
fn root_list_shows_image_names_and_exclusive_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = sample(tmp.path());
    let store = tmp.path().join("store");
    let v1 = import(&store, &oci, "base-v1");
    let a1 = import(&store, &oci, "app-v1");
    let set = ok(&store, &["--json", "root", "set", "booted", "app-v1"]).json();
    assert_eq!(set["previous"], serde_json::Value::Null);
    ok(&store, &["root", "set", "rollback", &v1]);
    let list = ok(&store, &["--json", "root", "list"]).json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "booted");
    assert_eq!(list[0]["image"], a1.as_str());
    assert_eq!(list[0]["names"], serde_json::json!(["app-v1"]));
    // While the images are named, the roots keep nothing alone.
    assert_eq!(list[0]["exclusive_bytes"], 0);
    ok(&store, &["rm", "app-v1", "base-v1"]);
    let list = ok(&store, &["--json", "root", "list"]).json();
    let booted = list[0]["exclusive_bytes"].as_u64().unwrap();
    let rollback = list[1]["exclusive_bytes"].as_u64().unwrap();
    assert!(booted > 0, "app-v1's own layer is only booted's");
    assert_eq!(rollback, 0, "base-v1's layer is booted's too");
    // What `root rm` then gc frees is what list said.
    let rm = ok(&store, &["--json", "root", "rm", "booted"]).json();
    assert_eq!(rm["image"], a1.as_str());
    let g = gc(&store);
    assert_eq!(
        g["removed"]["stored_bytes"].as_u64().unwrap(),
        booted,
        "{g}"
    );
    let r = layerstore(&store, &["root", "rm", "booted"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no root named"), "{}", r.stderr);
    assert_fsck_clean(&store);
}

/// `import --layers-only` writes layer refs and no image ref: the next gc drops them unless
/// something lists them by then.
#[test]
fn layers_only_import_lasts_until_the_next_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = sample(tmp.path());
    let store = tmp.path().join("store");
    let r = ok(
        &store,
        &[
            "--json",
            "import",
            "--layers-only",
            &format!("oci:{}:app-v1", oci.display()),
        ],
    )
    .json();
    let refs = ok(&store, &["--json", "refs"]).json().to_string();
    assert!(!refs.contains("image/"), "{refs}");
    assert_eq!(refs.matches("layer/").count(), 2, "{refs}");
    assert_eq!(r["layers"].as_array().unwrap().len(), 2);
    // Something lists one of them: base-v1 is imported with a name.
    import(&store, &oci, "base-v1");
    let g = gc(&store);
    assert_eq!(
        g["removed"]["layer_refs"].as_array().unwrap().len(),
        1,
        "{g}"
    );
    let refs = ok(&store, &["--json", "refs"]).json().to_string();
    assert_eq!(refs.matches("layer/").count(), 1, "{refs}");
    assert_fsck_clean(&store);
}
