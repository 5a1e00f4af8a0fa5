//! Prepared updates (ostree-ext's flow): `prepare` fetches only the manifest and config an
//! image's origin (or a given source) offers now, and caches them for the name when they differ
//! from what is stored; `status` reports images and their cached updates from the store alone
//! (no network); `import --prepared NAME` fetches exactly the cached manifest digest, never the
//! tag, which may have moved on. Importing an update by any route clears its cached update.

use std::collections::HashSet;

use layerstore_store::{Digest, PreparedUpdate, RefName, Store};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::source::{Source, SourceSpec};
use crate::{ImportOptions, ImportReport};

const VERSION_LABEL: &str = "org.opencontainers.image.version";

/// A layer of an update.
#[derive(Clone, Debug, Serialize)]
pub struct UpdateLayer {
    pub diff_id: Digest,
    pub blob_digest: Digest,
    pub blob_size: u64,
}

/// What `prepare` found.
#[derive(Clone, Debug, Serialize)]
pub struct PrepareReport {
    pub name: String,
    pub source: String,
    /// The stored image's manifest digest, if the name exists.
    pub current: Option<Digest>,
    /// The manifest digest the source offers.
    pub available: Digest,
    /// Whether it differs from the current one (and is now cached).
    pub update: bool,
    /// The update's `org.opencontainers.image.version` label.
    pub version: Option<String>,
    pub created: Option<String>,
    /// Layers an import of the update would fetch (not stored, by diff_id).
    pub to_fetch: Vec<UpdateLayer>,
    pub fetch_bytes: u64,
    /// Layers of the update already stored.
    pub stored: Vec<UpdateLayer>,
    /// Layers of the current image the update no longer has.
    pub removed: Vec<Digest>,
}

/// Check `source` (default: the origin of the image `name`) for an update of `name`, and cache
/// it if there is one; with none, a cached update of `name` is dropped (the last check wins).
pub fn prepare(
    store: &Store,
    name: &str,
    source: Option<&str>,
    opts: &ImportOptions<'_>,
) -> Result<PrepareReport> {
    RefName::image(name)?;
    let current = match store.resolve_image(name) {
        Ok(i) => Some(i),
        Err(layerstore_store::Error::ImageNotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let source = match (source, current.as_ref().and_then(|c| c.origin.clone())) {
        (Some(s), _) => s.to_string(),
        (None, Some(o)) => o,
        (None, None) => {
            return Err(Error::InvalidSource {
                spec: name.into(),
                reason: "the image records no origin; give a source".into(),
            });
        }
    };
    let opened = Source::open_with(&source, &opts.registry)?;
    let limits = opts.limits.unwrap_or_else(|| store.limits());
    // Resolving fetches the manifest and the config, never a layer.
    let image = opened.resolve(opts.platform.as_ref(), &limits)?;
    let source = opened.origin();
    let mut report = PrepareReport {
        name: name.into(),
        source: source.clone(),
        current: current.as_ref().map(|c| c.manifest_digest),
        available: image.manifest_digest,
        update: current
            .as_ref()
            .is_none_or(|c| c.manifest_digest != image.manifest_digest),
        version: image.labels.get(VERSION_LABEL).cloned(),
        created: image.created.clone(),
        to_fetch: Vec::new(),
        fetch_bytes: 0,
        stored: Vec::new(),
        removed: Vec::new(),
    };
    if !report.update {
        store.clear_prepared_update(name, None)?;
        return Ok(report);
    }
    let mut seen = HashSet::new();
    for l in &image.layers {
        if !seen.insert(l.diff_id) {
            continue;
        }
        let u = UpdateLayer {
            diff_id: l.diff_id,
            blob_digest: l.digest,
            blob_size: l.size,
        };
        match store.layer_info(&l.diff_id) {
            Ok(_) => report.stored.push(u),
            Err(layerstore_store::Error::LayerNotFound { .. }) => {
                report.fetch_bytes += l.size;
                report.to_fetch.push(u);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(c) = &current {
        report.removed = c
            .layers
            .iter()
            .map(|l| l.diff_id)
            .filter(|d| !seen.contains(d))
            .collect();
    }
    store.set_prepared_update(&PreparedUpdate {
        name: name.into(),
        manifest_digest: image.manifest_digest,
        manifest_media_type: image.manifest_media_type.clone(),
        manifest: image.manifest.clone(),
        config_digest: image.config_digest,
        config: image.config.clone(),
        source,
        checked: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    })?;
    Ok(report)
}

/// The source spec that fetches exactly the cached update of `name` (its source, pinned to the
/// cached manifest digest).
pub fn prepared_source(store: &Store, name: &str) -> Result<(String, PreparedUpdate)> {
    let u = store
        .prepared_update(name)?
        .ok_or_else(|| Error::InvalidSource {
            spec: name.into(),
            reason: "no prepared update; run `layerstore prepare` first".into(),
        })?;
    let spec = match SourceSpec::parse(&u.source)? {
        SourceSpec::Registry { mut reference } => {
            reference.digest = Some(u.manifest_digest);
            format!("docker://{reference}")
        }
        SourceSpec::OciDir { path, .. } => format!("oci:{}@{}", path.display(), u.manifest_digest),
        SourceSpec::OciArchive { path, .. } => {
            format!("oci-archive:{}@{}", path.display(), u.manifest_digest)
        }
        SourceSpec::DockerArchive { .. } => {
            return Err(Error::InvalidSource {
                spec: u.source.clone(),
                reason: "a docker-archive cannot be asked for a digest".into(),
            });
        }
    };
    Ok((spec, u))
}

/// One image as `status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ImageStatus {
    pub name: String,
    pub origin: Option<String>,
    pub manifest_digest: Digest,
    pub version: Option<String>,
    pub created: Option<String>,
    /// The cached update, when its digest differs from the image's.
    pub update: Option<UpdateStatus>,
}

/// A cached update as `status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct UpdateStatus {
    pub manifest_digest: Digest,
    pub version: Option<String>,
    pub created: Option<String>,
    pub source: String,
    pub checked: i64,
}

fn config_facts(config: &[u8]) -> (Option<String>, Option<String>) {
    let v: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
    (
        v.pointer("/config/Labels")
            .and_then(|l| l.get(VERSION_LABEL))
            .and_then(|s| s.as_str())
            .map(str::to_string),
        v.get("created")
            .and_then(|s| s.as_str())
            .map(str::to_string),
    )
}

/// Images (all, or those `names` lists) with their origin, digest, version and cached update;
/// reads the store only.
pub fn status(store: &Store, names: &[String]) -> Result<Vec<ImageStatus>> {
    let mut out = Vec::new();
    for (name, info) in store.images()? {
        if !names.is_empty() && !names.contains(&name) {
            continue;
        }
        let (_, config) = store.image_documents(&info)?;
        let (version, _) = config_facts(&config);
        let update = store
            .prepared_update(&name)?
            .filter(|u| u.manifest_digest != info.manifest_digest)
            .map(|u| {
                let (version, created) = config_facts(&u.config);
                UpdateStatus {
                    manifest_digest: u.manifest_digest,
                    version,
                    created,
                    source: u.source,
                    checked: u.checked,
                }
            });
        out.push(ImageStatus {
            name,
            origin: info.origin.clone(),
            manifest_digest: info.manifest_digest,
            version,
            created: info.created.clone(),
            update,
        });
    }
    for n in names {
        if !out.iter().any(|s| &s.name == n) {
            return Err(layerstore_store::Error::ImageNotFound { name: n.clone() }.into());
        }
    }
    Ok(out)
}

/// After an import: remember where registry blobs live, and drop the cached update the import
/// installed (by whichever route). Both are bookkeeping: failures are logged.
pub(crate) fn after_import(store: &Store, spec: &SourceSpec, report: &ImportReport) {
    if let SourceSpec::Registry { reference } = spec {
        crate::registry::remember_blobs(store, reference, report);
    }
    if let Err(e) = store.clear_prepared_update(&report.name, Some(&report.manifest_digest)) {
        log::warn!("cannot clear the prepared update of {}: {e}", report.name);
    }
}
