//! Importing OCI images into a layerstore [`Store`].
//!
//! Pipeline: open the source ([`Source::open`], before any store is created for it) → resolve
//! it to one image (manifest → config → layer descriptors, every
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
//!
//! A layer is refused where the readers runtimes rely on would see another tree: where tar
//! readers disagree ([`tarparse`] lists each corner and whether it agrees with Go's
//! `archive/tar` or refuses), where a whiteout names an entry earlier in its own layer (the OCI
//! spec keeps the entry, docker and containerd remove it), and where a whiteout or opaque
//! marker resolves through a symlink of its own layer (the image's flattening refuses it). Each
//! refusal is a typed error naming the entry; nothing is published.
//!
//! Modules: [`source`] (specs and the files of a source), [`resolve`] (to one image),
//! `attempt` (one attempt's steps: plan, read, check that it flattens, publish), [`layer`] (one
//! layer blob: the blob thread, the writer pool, entry validation), [`tarparse`],
//! [`dedup`] (the dedup analysis, which reads layers as an import does and writes nothing),
//! [`registry`] (`docker://` sources: the registry client, tags, and push), [`chunked`] (partial
//! pulls of zstd:chunked layers from registries, and the zstd:chunked writer), [`layer_out`] (layer
//! blobs rebuilt from the store and compressed, for push and export), [`export`] (`oci:`,
//! `oci-archive:` and `docker-archive:` destinations), [`prepare`] (prepared updates and
//! `status`), [`stash`] (a root tree stashed as a new layer on a parent image, compared through
//! the index and streamed into the layer pipeline), [`bound`] (bootc's bound-images.d) and
//! [`bind`] (binding images to a root: each pinned to a lease, pulled, then all recorded in one
//! transaction).

mod attempt;
pub mod bind;
pub mod bound;
pub mod chunked;
pub mod dedup;
pub mod error;
pub mod export;
pub mod layer;
pub mod layer_out;
pub mod prepare;
pub mod registry;
pub mod resolve;
pub mod source;
pub mod stash;
pub mod tarparse;

use layerstore_store::{Digest, RefName, Store};
use serde::Serialize;

pub use error::{Error, Result};
pub use layer::LayerStats;
pub use resolve::{Platform, ResolvedImage};
pub use source::{Source, SourceSpec};

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
impl layer::LayerProgress for NoProgress {
    fn read(&self, _index: usize, _bytes: u64) {}
}

/// Options for [`import`].
pub struct ImportOptions<'a> {
    /// The image ref name; defaults to the source's reference or tag.
    pub tag: Option<String>,
    /// Platform to pick from an image index (default: the host's). When given, an image built
    /// for another platform is refused.
    pub platform: Option<Platform>,
    /// Layers imported at once (default: the number of CPUs).
    pub jobs: usize,
    /// Limits for this import (default: the store's, from `meta.json`).
    pub limits: Option<layerstore_store::Limits>,
    pub progress: &'a dyn Progress,
    /// Write the layer refs only, no image ref (rpm-ostree's layers-only import): the layers
    /// stay until the next gc unless an image, root or binding lists them.
    pub layers_only: bool,
    /// Local labels to keep with the image, `(KEY, VALUE)`; its digest does not change.
    pub labels: Vec<(String, String)>,
    /// How [`import`] and [`prepare::prepare`] reach registries (`docker://` sources); a
    /// [`Source`] given to [`import_source`] was opened with its own ([`Source::open_with`]).
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
            layers_only: false,
            labels: Vec::new(),
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
    /// Bytes of the blob read from the source (for a registry: fetched over the network); 0
    /// for a layer already stored, which is never fetched.
    pub fetched_bytes: u64,
    pub stats: Option<LayerStats>,
}

/// What an import did.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    pub name: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub layers: Vec<LayerReport>,
    /// Blob bytes read from the source, all layers together (see [`LayerReport::fetched_bytes`]).
    pub fetched_bytes: u64,
    pub new_objects: u64,
    pub new_bytes: u64,
    pub dedup_hits: u64,
    pub content_bytes: u64,
}

/// Import the image `spec` names into `store`: [`Source::open_with`] (registries reached as
/// `opts.registry` says), then [`import_source`].
pub fn import(store: &Store, spec: &str, opts: &ImportOptions<'_>) -> Result<ImportReport> {
    import_source(store, &Source::open_with(spec, &opts.registry)?, opts)
}

/// Import the image an opened source holds into `store`. Open the source before opening or
/// creating the store, so that a source that cannot be read leaves nothing behind.
pub fn import_source(
    store: &Store,
    source: &Source,
    opts: &ImportOptions<'_>,
) -> Result<ImportReport> {
    let limits = opts.limits.unwrap_or_else(|| store.limits());
    let image = source.resolve(opts.platform.as_ref(), &limits)?;
    for (k, v) in &opts.labels {
        layerstore_store::labels::check_label(k, v)?;
    }
    let name = opts
        .tag
        .clone()
        .or_else(|| image.default_name.clone())
        .or_else(|| {
            source
                .reference()
                .filter(|r| !r.starts_with('@'))
                .map(str::to_string)
        });
    // A layers-only import needs no name: the report names the image by digest then.
    let (name, image_ref) = match (name, opts.layers_only) {
        (_, true) => (image.manifest_digest.to_string(), None),
        (Some(n), false) => {
            let r = RefName::image(&n)?;
            (n, Some(r))
        }
        (None, false) => {
            return Err(Error::InvalidSource {
                spec: source.spec().into(),
                reason: "the image has no name in the source; give one with --tag".into(),
            });
        }
    };
    let job = attempt::ImportJob {
        store,
        spec: source.spec(),
        origin: source.origin(),
        container: source.container(),
        image: &image,
        image_ref,
        name,
        limits,
        opts,
    };
    let mut attempt = 1;
    loop {
        match job.run(attempt == ATTEMPTS) {
            Err(Error::Store(layerstore_store::Error::ObjectSwept { id }))
                if attempt < ATTEMPTS =>
            {
                log::info!("a concurrent gc removed object {id} this import relied on; retrying");
                attempt += 1;
            }
            Ok(report) => {
                if !opts.labels.is_empty() {
                    store.set_local_labels(&report.manifest_digest, &opts.labels)?;
                }
                prepare::after_import(store, source.parsed(), &report);
                return Ok(report);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Attempts at an import that a concurrent gc keeps taking found objects from; the last one
/// pins what it finds at once.
const ATTEMPTS: u32 = 3;
