//! Labels: `images --filter label=…`, `import --label` (local, digest unchanged), `inspect`,
//! `latest --label`.

use crate::{assert_fsck_clean, layerstore, ok, sample};

#[test]
fn filters_local_labels_and_latest() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = sample(tmp.path());
    let store = tmp.path().join("store");
    let mut digests = Vec::new();
    for tag in layerstore_tests::SAMPLE_TAGS {
        let mut args = vec!["--json".to_string(), "import".into()];
        if tag.starts_with("app") {
            args.extend(["--label".into(), "channel=stable".into()]);
        }
        args.push(format!("oci:{}:{tag}", oci.display()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        digests.push(ok(&store, &args).json()["manifest_digest"].clone());
    }
    // The local label leaves the digest as the source has it.
    let plain = tmp.path().join("plain");
    let d = ok(
        &plain,
        &["--json", "import", &format!("oci:{}:app-v1", oci.display())],
    )
    .json()["manifest_digest"]
        .clone();
    assert!(digests.contains(&d));

    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["--json", "images"];
        a.extend(args);
        ok(&store, &a)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&[
            "--filter",
            "label=org.opencontainers.image.title=sample-base"
        ]),
        ["base-v1", "base-v2"]
    );
    assert_eq!(
        names(&["--filter", "label=channel"]),
        ["app-v1", "app-v2", "app-v3"]
    );
    assert_eq!(
        names(&[
            "--filter",
            "label=channel=stable",
            "--filter",
            "label=org.opencontainers.image.version=1.0.1"
        ]),
        ["app-v2"]
    );
    assert!(names(&["--filter", "label=channel=beta"]).is_empty());
    let r = layerstore(&store, &["images", "--filter", "name=x"]);
    assert_eq!(r.code, 2);

    let inspect = ok(&store, &["--json", "inspect", "app-v1"]).json();
    assert_eq!(
        inspect["local_labels"],
        serde_json::json!({"channel": "stable"})
    );
    assert!(inspect["labels"].get("channel").is_none());

    let l = ok(
        &store,
        &[
            "--json",
            "latest",
            "--label",
            "org.opencontainers.image.title=sample-app",
        ],
    )
    .json();
    assert_eq!(l["names"], serde_json::json!(["app-v3"]));
    assert_eq!(l["version"], "1.1.0");
    let l = ok(
        &store,
        &[
            "--json",
            "latest",
            "--label",
            "org.opencontainers.image.title=sample-base",
        ],
    )
    .json();
    assert_eq!(l["names"], serde_json::json!(["base-v2"]));
    let r = layerstore(&store, &["latest", "--label", "channel=beta"]);
    assert_eq!(r.code, 1, "no match is exit 1");
    // A local label overrides the config's label of the same key, for filters and latest.
    ok(
        &store,
        &[
            "import",
            "--label",
            "org.opencontainers.image.version=9.9",
            &format!("oci:{}:app-v2", oci.display()),
        ],
    );
    assert!(names(&["--filter", "label=org.opencontainers.image.version=1.0.1"]).is_empty());
    assert_eq!(
        names(&["--filter", "label=org.opencontainers.image.version=9.9"]),
        ["app-v2"]
    );
    let l = ok(&store, &["--json", "latest", "--label", "channel=stable"]).json();
    assert_eq!(l["names"], serde_json::json!(["app-v2"]));
    assert_eq!(l["version"], "9.9");
    // Labels go with their image rows.
    ok(&store, &["rm", "app-v1"]);
    ok(&store, &["gc"]);
    assert_fsck_clean(&store);
}
