//! Importing OCI images into a layerstore [`Store`].
//!
//! Pipeline: resolve the source to one image (manifest → config → layer descriptors, every
//! document verified against its digest) → take a lease and pin the stored layers the image
//! builds on → for each layer whose diff_id is not stored yet, in parallel: stream the blob,
//! verify its digest, decompress (sniffed and checked against the media type), parse the tar
//! strictly, store contents as objects (pinned to the lease in batches, see
//! [`layerstore_store::object::Staging`]), verify the diff_id → one `syncfs` → one durable
//! transaction for all rows and the refs (`image/NAME` and `layer/DIFFID`), which also ends the
//! lease. Any error before it leaves nothing visible; the lease's staging directory is removed.
//!
//! The import never holds the store lock for long: gc may sweep while it runs, and spares what
//! its lease pins. If a sweep removed an object file the import had found but not yet pinned,
//! the import starts over; its third and last attempt pins each object file it finds at once,
//! so it cannot be starved.
//!
//! Layers are keyed by diff_id: a layer already stored is not read again, whatever its
//! compression; only its blob digest mapping is recorded.

pub mod dedup;
pub mod error;
pub mod layer;
pub mod prepare;
pub mod registry;
pub mod resolve;
pub mod source;
pub mod tarparse;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use layerstore_store::{
    Digest, ImageLayer, ImageRecord, LayerRecord, LayerState, RefKind, RefName, Store,
};
use serde::Serialize;

pub use error::{Error, Result};
pub use layer::LayerStats;
pub use resolve::{Platform, ResolvedImage};
pub use source::SourceSpec;

/// Progress callbacks; the library never prints. All methods default to doing nothing.
pub trait Progress: Sync {
    /// The image is resolved; `layers` are (index, blob digest, blob size, will be read).
    fn start(&self, _image: &ResolvedImage, _layers: &[(usize, Digest, u64, bool)]) {}
    /// More compressed bytes of a layer were read.
    fn read(&self, _index: usize, _bytes: u64) {}
    /// A layer is done.
    fn layer_done(&self, _index: usize, _stats: &LayerStats) {}
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Options for [`import`].
pub struct ImportOptions<'a> {
    /// The image ref name; defaults to the source's reference or tag.
    pub tag: Option<String>,
    /// Platform to pick from an image index (default: the host's).
    pub platform: Option<Platform>,
    /// Layers imported at once (default: the number of CPUs).
    pub jobs: usize,
    /// Limits for this import (default: the store's, from `meta.json`).
    pub limits: Option<layerstore_store::Limits>,
    pub progress: &'a dyn Progress,
    /// How to reach registries (`docker://` sources).
    pub registry: registry::RegistryOptions,
}

impl Default for ImportOptions<'_> {
    fn default() -> Self {
        ImportOptions {
            tag: None,
            platform: None,
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            limits: None,
            progress: &NoProgress,
            registry: registry::RegistryOptions::default(),
        }
    }
}

/// One layer's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub diff_id: Digest,
    pub blob_digest: Digest,
    pub media_type: String,
    pub blob_size: u64,
    /// Already stored: not read.
    pub reused: bool,
    pub stats: Option<LayerStats>,
}

/// What an import did.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    pub name: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub layers: Vec<LayerReport>,
    pub new_objects: u64,
    pub new_bytes: u64,
    pub dedup_hits: u64,
    pub content_bytes: u64,
}

/// Open a source spec and resolve it to one image.
pub fn resolve_source(
    spec: &SourceSpec,
    platform: &Platform,
    limits: &layerstore_store::Limits,
) -> Result<(Box<dyn source::Container>, ResolvedImage)> {
    resolve_source_with(
        spec,
        platform,
        limits,
        &registry::RegistryOptions::default(),
    )
}

/// [`resolve_source`], reaching registries as `registry_opts` says.
pub fn resolve_source_with(
    spec: &SourceSpec,
    platform: &Platform,
    limits: &layerstore_store::Limits,
    registry_opts: &registry::RegistryOptions,
) -> Result<(Box<dyn source::Container>, ResolvedImage)> {
    let limits = *limits;
    let (container, resolved): (Box<dyn source::Container>, _) = match spec {
        SourceSpec::OciDir { path, reference } => {
            let c = source::DirContainer::open(path)?;
            let r = resolve::resolve_oci(&c, reference.as_deref(), platform, &limits)?;
            (Box::new(c), r)
        }
        SourceSpec::OciArchive { path, reference } => {
            let c = source::TarContainer::open(path)?;
            let r = resolve::resolve_oci(&c, reference.as_deref(), platform, &limits)?;
            (Box::new(c), r)
        }
        SourceSpec::DockerArchive { path, reference } => {
            let c = source::TarContainer::open(path)?;
            let r = resolve::resolve_docker(&c, reference.as_deref(), &limits)?;
            (Box::new(c), r)
        }
        SourceSpec::Registry { reference } => {
            let (c, r) = registry::resolve(reference, registry_opts, platform, &limits)?;
            (Box::new(c), r)
        }
    };
    Ok((container, resolved))
}

struct ProgressAdapter<'a>(&'a dyn Progress);
impl layer::LayerProgress for ProgressAdapter<'_> {
    fn read(&self, index: usize, n: u64) {
        self.0.read(index, n);
    }
}

/// Import the image `spec` names into `store`.
pub fn import(store: &Store, spec: &str, opts: &ImportOptions<'_>) -> Result<ImportReport> {
    let spec_parsed = SourceSpec::parse(spec)?;
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let limits = opts.limits.unwrap_or_else(|| store.limits());
    let (container, image) = resolve_source_with(&spec_parsed, &platform, &limits, &opts.registry)?;
    // Recorded as the image's origin (and names the import's lease).
    let spec = &spec_parsed.origin(spec);
    let name = opts
        .tag
        .clone()
        .or_else(|| image.default_name.clone())
        .or_else(|| {
            spec_parsed
                .reference()
                .filter(|r| !r.starts_with('@'))
                .map(str::to_string)
        })
        .ok_or_else(|| Error::InvalidSource {
            spec: spec.into(),
            reason: "the image has no name in the source; give one with --tag".into(),
        })?;
    let image_ref = RefName::image(&name)?;
    let mut attempt = 1;
    loop {
        match import_resolved(
            store,
            &*container,
            &image,
            spec,
            &name,
            &image_ref,
            &limits,
            opts,
            attempt == ATTEMPTS,
        ) {
            Err(Error::Store(layerstore_store::Error::ObjectSwept { id }))
                if attempt < ATTEMPTS =>
            {
                log::info!("a concurrent gc removed object {id} this import relied on; retrying");
                attempt += 1;
            }
            res => {
                if let Ok(report) = &res {
                    prepare::after_import(store, &spec_parsed, report);
                }
                return res;
            }
        }
    }
}

/// Attempts at an import that a concurrent gc keeps taking found objects from; the last one
/// pins what it finds at once.
const ATTEMPTS: u32 = 3;

/// Wait until the layers `theirs` names (claimed by other imports) are stored; returns those
/// this import must read itself after all: the claimer ended without publishing, or it waits
/// too (perhaps for this import: reading the layer twice beats a deadlock).
fn wait_for_layers(
    store: &Store,
    lease: &layerstore_store::Lease<'_>,
    image: &ResolvedImage,
    theirs: &[usize],
) -> Result<Vec<usize>> {
    lease.set_waiting(true)?;
    let mut mine = Vec::new();
    for &i in theirs {
        let diff_id = image.layers[i].diff_id;
        loop {
            match lease.pin_layers(&[diff_id])?.remove(0) {
                LayerState::Stored => break,
                LayerState::Mine => {
                    mine.push(i);
                    break;
                }
                LayerState::Claimed { lease: owner } => {
                    if store.lease_waits(&owner)? {
                        log::info!("layer {diff_id}: its reader {owner} waits too; reading it");
                        mine.push(i);
                        break;
                    }
                    log::debug!("layer {diff_id}: waiting for import {owner}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    }
    lease.set_waiting(false)?;
    Ok(mine)
}

/// One attempt at importing a resolved image. It fails with [`layerstore_store::Error::ObjectSwept`]
/// only if a gc removed an object file it had found before the import could pin it; by then
/// its earlier pins are gone with its lease, and a new attempt writes what is missing. With
/// `last`, every object file found is pinned at once (slower, but it cannot fail that way): a
/// store whose gc runs back to back cannot starve an import.
#[allow(clippy::too_many_arguments)]
fn import_resolved(
    store: &Store,
    container: &dyn source::Container,
    image: &ResolvedImage,
    spec: &str,
    name: &str,
    image_ref: &RefName,
    limits: &layerstore_store::Limits,
    opts: &ImportOptions<'_>,
    last: bool,
) -> Result<ImportReport> {
    let limits = *limits;
    let lease = store.begin_lease(&format!("import {spec}"))?;
    if last {
        lease.staging().pin_found_at_once();
    }
    // Stored layers this image builds on are pinned before they are relied on.
    let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id).collect();
    let states = lease.pin_layers(&diff_ids)?;

    // Which layers to read: not stored, first occurrence in this image. Layers another import
    // is reading right now come last: by then they may be stored.
    let mut todo = Vec::new();
    let mut theirs = Vec::new();
    let mut plan = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, l) in image.layers.iter().enumerate() {
        let first = seen.insert(l.diff_id);
        let read = first && states[i] != LayerState::Stored;
        plan.push((i, l.digest, l.size, read));
        match &states[i] {
            LayerState::Mine if first => todo.push(i),
            LayerState::Claimed { .. } if first => theirs.push(i),
            _ => {}
        }
    }
    opts.progress.start(image, &plan);

    let results: Mutex<Vec<Option<(LayerRecord, LayerStats)>>> =
        Mutex::new((0..image.layers.len()).map(|_| None).collect());
    let adapter = ProgressAdapter(opts.progress);
    // Read the layers `todo` names, `opts.jobs` at a time.
    let read = |todo: &[usize]| -> Result<()> {
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..opts.jobs.max(1).min(todo.len()) {
                s.spawn(|| {
                    loop {
                        if first_error.lock().expect("not poisoned").is_some() {
                            return;
                        }
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = todo.get(k) else { return };
                        let l = &image.layers[i];
                        let input = layer::LayerInput {
                            index: i,
                            blob_digest: l.digest,
                            blob_size: l.size,
                            media_type: l.media_type.clone(),
                            expected_diff_id: l.diff_id,
                        };
                        let res = container
                            .open_optional(&l.path)
                            .and_then(|o| {
                                o.ok_or_else(|| Error::BlobMissing {
                                    digest: l.digest.to_string(),
                                })
                            })
                            .and_then(|(blob, _)| {
                                layer::import_layer(
                                    &input,
                                    blob,
                                    lease.staging(),
                                    &limits,
                                    &adapter,
                                )
                            });
                        match res {
                            Ok((rec, stats)) => {
                                opts.progress.layer_done(i, &stats);
                                results.lock().expect("not poisoned")[i] = Some((rec, stats));
                            }
                            Err(e) => {
                                first_error.lock().expect("not poisoned").get_or_insert(e);
                                return;
                            }
                        }
                    }
                });
            }
        });
        // On error, dropping the lease removes its staging.
        first_error
            .into_inner()
            .expect("not poisoned")
            .map_or(Ok(()), Err)
    };
    read(&todo)?;
    if !theirs.is_empty() {
        read(&wait_for_layers(store, &lease, image, &theirs)?)?;
    }
    let results = results.into_inner().expect("not poisoned");
    let mut records = Vec::new();
    let mut reports = Vec::new();
    let (mut new_objects, mut new_bytes, mut dedup_hits, mut content_bytes) = (0, 0, 0, 0);
    for (l, r) in image.layers.iter().zip(results) {
        let stats = r.map(|(rec, stats)| {
            records.push(rec);
            new_objects += stats.new_objects;
            new_bytes += stats.new_bytes;
            dedup_hits += stats.dedup_hits;
            content_bytes += stats.content_bytes;
            stats
        });
        reports.push(LayerReport {
            diff_id: l.diff_id,
            blob_digest: l.digest,
            media_type: l.media_type.clone(),
            blob_size: l.size,
            reused: stats.is_none(),
            stats,
        });
    }
    // The image must flatten: a symlink loop or a path through a file would make it unusable.
    {
        let fresh: std::collections::HashMap<Digest, &[layerstore_store::TreeEntry]> = records
            .iter()
            .map(|r| (r.diff_id, r.entries.as_slice()))
            .collect();
        let mut stored = std::collections::HashMap::new();
        for l in &image.layers {
            if !fresh.contains_key(&l.diff_id) && !stored.contains_key(&l.diff_id) {
                stored.insert(l.diff_id, store.layer_entries(&l.diff_id)?);
            }
        }
        layerstore_store::MergedTree::build(image.layers.iter().map(|l| {
            let entries = fresh
                .get(&l.diff_id)
                .copied()
                .unwrap_or_else(|| stored[&l.diff_id].as_slice());
            (&l.diff_id, entries)
        }))?;
    }
    let record = ImageRecord {
        manifest_digest: image.manifest_digest,
        manifest_media_type: image.manifest_media_type.clone(),
        manifest: image.manifest.clone(),
        config_digest: image.config_digest,
        config: image.config.clone(),
        created: image.created.clone(),
        origin: Some(spec.to_string()),
        layers: image
            .layers
            .iter()
            .map(|l| ImageLayer {
                diff_id: l.diff_id,
                blob_digest: l.digest,
                media_type: l.media_type.clone(),
                blob_size: l.size,
            })
            .collect(),
    };
    let mut refs = vec![(image_ref.clone(), image.manifest_digest.to_string())];
    for l in &image.layers {
        refs.push((
            RefName::new(RefKind::Layer, &l.diff_id.to_string())?,
            l.diff_id.to_string(),
        ));
    }
    store.publish(lease, &records, &record, &refs)?;
    Ok(ImportReport {
        name: name.to_string(),
        manifest_digest: image.manifest_digest,
        config_digest: image.config_digest,
        layers: reports,
        new_objects,
        new_bytes,
        dedup_hits,
        content_bytes,
    })
}
