//! A stash's image config and manifest: the parent's config with one more diff_id, a history
//! entry and the labels; a manifest that keeps the parent's layer descriptors and lists the new
//! layer uncompressed (`application/vnd.oci.image.layer.v1.tar`, digest = diff_id). Both are
//! serialized with sorted keys, so the same parent, layer, labels, message and time give the
//! same digests.

use layerstore_store::{Digest, ImageLayer};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
pub(crate) use layerstore_store::rfc3339;

pub(crate) const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The documents of a new stash image.
pub(crate) struct Documents {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub created: String,
    /// The layers as the manifest lists them.
    pub layers: Vec<ImageLayer>,
}

/// What goes into the documents.
pub(crate) struct Inputs<'a> {
    /// The parent's config bytes and layers, if there is a parent.
    pub parent: Option<(&'a [u8], &'a [ImageLayer])>,
    pub diff_id: Digest,
    pub tar_size: u64,
    pub labels: &'a [(String, String)],
    pub message: Option<&'a str>,
    /// Seconds since the epoch.
    pub created: i64,
}

/// The OCI media type for a docker one (same bytes, same digest).
fn oci_media_type(mt: &str) -> &str {
    match mt {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.diff.tar" => LAYER_TAR,
        other => other,
    }
}

/// The GOARCH name of this machine, as image configs name architectures.
fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

pub(crate) fn build(inp: &Inputs<'_>) -> Result<Documents> {
    let bad = |reason: &str| Error::BadDocument {
        what: "the parent's image config".into(),
        reason: reason.into(),
    };
    let created = rfc3339(inp.created);
    let mut config: Value = match inp.parent {
        Some((bytes, _)) => serde_json::from_slice(bytes).map_err(|e| Error::BadJson {
            what: "the parent's image config".into(),
            source: e,
        })?,
        None => json!({
            "architecture": goarch(),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }),
    };
    let obj = config.as_object_mut().ok_or_else(|| bad("not an object"))?;
    obj.insert("created".into(), Value::String(created.clone()));
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    rootfs
        .get_mut("diff_ids")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("rootfs.diff_ids is not a list"))?
        .push(Value::String(inp.diff_id.to_string()));
    let created_by = match inp.message {
        Some(m) => format!("layerstore stash: {m}"),
        None => "layerstore stash".to_string(),
    };
    let mut entry = Map::new();
    entry.insert("created".into(), Value::String(created.clone()));
    entry.insert("created_by".into(), Value::String(created_by));
    if let Some(m) = inp.message {
        entry.insert("comment".into(), Value::String(m.into()));
    }
    match obj.entry("history").or_insert_with(|| json!([])) {
        Value::Array(h) => h.push(Value::Object(entry)),
        _ => return Err(bad("history is not a list")),
    }
    if !inp.labels.is_empty() {
        let cfg = obj.entry("config").or_insert_with(|| json!({}));
        let cfg = cfg
            .as_object_mut()
            .ok_or_else(|| bad("config is not an object"))?;
        let labels = cfg.entry("Labels").or_insert_with(|| json!({}));
        if labels.is_null() {
            *labels = json!({});
        }
        let labels = labels
            .as_object_mut()
            .ok_or_else(|| bad("config.Labels is not an object"))?;
        for (k, v) in inp.labels {
            labels.insert(k.clone(), Value::String(v.clone()));
        }
    }
    let config = serde_json::to_vec(&config).expect("a JSON value serializes");
    let config_digest = Digest::of(&config);

    let mut layers: Vec<ImageLayer> = inp
        .parent
        .map(|(_, l)| l.to_vec())
        .unwrap_or_default()
        .into_iter()
        .map(|mut l| {
            l.media_type = oci_media_type(&l.media_type).to_string();
            l
        })
        .collect();
    layers.push(ImageLayer {
        diff_id: inp.diff_id,
        blob_digest: inp.diff_id,
        media_type: LAYER_TAR.into(),
        blob_size: inp.tar_size,
    });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.blob_digest.to_string(),
            "size": l.blob_size,
        })).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).expect("a JSON value serializes");
    Ok(Documents {
        manifest_digest: Digest::of(&manifest),
        manifest,
        config,
        config_digest,
        created,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stash_config_adds_one_diff_id_history_entry_and_labels() {
        let parent = br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"a":"1"}},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},"history":[{"created_by":"base"}]}"#;
        let d = Digest::of(b"layer");
        let docs = build(&Inputs {
            parent: Some((parent, &[])),
            diff_id: d,
            tar_size: 1024,
            labels: &[("b".into(), "2".into())],
            message: Some("built"),
            created: 0,
        })
        .unwrap();
        let c: Value = serde_json::from_slice(&docs.config).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"][1], d.to_string());
        assert_eq!(c["history"][1]["created_by"], "layerstore stash: built");
        assert_eq!(c["config"]["Labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(c["created"], "1970-01-01T00:00:00Z");
        let m: Value = serde_json::from_slice(&docs.manifest).unwrap();
        assert_eq!(m["layers"][0]["digest"], d.to_string());
        assert_eq!(m["layers"][0]["mediaType"], LAYER_TAR);
        assert_eq!(m["config"]["digest"], docs.config_digest.to_string());
    }
}
