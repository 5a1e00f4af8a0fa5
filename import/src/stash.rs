//! Stashing a root tree as a new layer (kiwi's stackbuild cache): compare the root with the
//! parent image's merged tree straight from the index, generate the diff layer's tar stream in
//! a producer thread and feed it through a pipe into the import pipeline ([`crate::layer`]),
//! which validates it, writes only contents the store lacks, builds the skeleton and computes
//! the diff_id — no checkout of the parent, no temporary tar. Then an image is published whose
//! config is the parent's plus the new diff_id, a history entry and the labels, in the store's
//! publish order (objects, `syncfs`, one transaction with the refs).
//!
//! The parent: `parent` if given; else the image `tag` names if it is a stash (the new layer
//! goes on top of it); else none, and the stash is one layer holding the whole tree. A stash
//! is an image whose origin is `stash:` followed by its parent (`NAME@DIGEST`, or nothing);
//! [`list`] finds them by it, so stashes need no table of their own.
//!
//! Modules: `scan` (the walk through directory handles, hashing with change checks),
//! `exclude` (`--exclude` patterns), `plan` (the comparison), `targen` (the tar stream),
//! `config` (the image documents).

mod config;
mod exclude;
mod plan;
mod scan;
mod targen;

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::os::fd::AsFd;
use std::path::Path;

use layerstore_store::{
    Digest, EntryKind, ImageInfo, ImageRecord, Lease, Limits, MergedTree, RefName, Store,
};
use serde::Serialize;

use crate::error::{Error, Result};

pub use plan::DiffCounts;

/// Something a stash left out, for the caller to show (the library never prints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StashWarning {
    /// A socket has no form in a layer.
    SocketSkipped { path: String },
}

impl std::fmt::Display for StashWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StashWarning::SocketSkipped { path } => write!(f, "socket {path} skipped"),
        }
    }
}

/// Progress callbacks; all default to doing nothing. An attempt that starts over (gc swept an
/// object it had found) reports again from [`StashProgress::hashing`].
pub trait StashProgress: Sync {
    /// The root was walked; `files` of it, `bytes` in all, are read next to compare their
    /// contents with the parent's.
    fn hashing(&self, _files: u64, _bytes: u64) {}
    /// A file of `bytes` bytes was read for the comparison.
    fn hashed(&self, _bytes: u64) {}
    /// The root was walked and compared; the layer is written next.
    fn compared(&self, _counts: &DiffCounts) {}
    /// `bytes` more of the new layer's tar were made (read from the root); they sum to its
    /// size.
    fn layer_bytes(&self, _bytes: u64) {}
}

/// Passes the layer's tar on, reporting its bytes to [`StashProgress::layer_bytes`] in
/// batches (the tar comes a 512-byte header at a time) and at each flush.
struct Counted<'a, W> {
    inner: W,
    progress: &'a dyn StashProgress,
    pending: u64,
}

impl<W: std::io::Write> std::io::Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pending += n as u64;
        if self.pending >= 256 << 10 {
            self.progress.layer_bytes(std::mem::take(&mut self.pending));
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()?;
        if self.pending > 0 {
            self.progress.layer_bytes(std::mem::take(&mut self.pending));
        }
        Ok(())
    }
}

/// A [`StashProgress`] that reports nothing.
pub struct NoStashProgress;
impl StashProgress for NoStashProgress {}

/// Options for [`stash`].
pub struct StashOptions<'a> {
    /// The image name to write (`NAME[:TAG]`, as `import --tag`).
    pub tag: String,
    /// The image to stash on top of (a name, digest or ID as everywhere).
    pub parent: Option<String>,
    /// Config labels, `(KEY, VALUE)`.
    pub labels: Vec<(String, String)>,
    /// Said in the history entry.
    pub message: Option<String>,
    /// Take a regular file whose size, mtime and mode match the parent's as unchanged without
    /// reading it.
    pub trust_mtime: bool,
    /// Paths left out (see the `exclude` module: rsync's rules); the parent's entries under
    /// them stay.
    pub exclude: Vec<String>,
    /// `created` of the config and history entry, seconds since the epoch
    /// (`SOURCE_DATE_EPOCH`); default now.
    pub created: Option<i64>,
    /// Limits for the layer (default: the store's).
    pub limits: Option<Limits>,
    pub progress: &'a dyn StashProgress,
}

impl Default for StashOptions<'_> {
    fn default() -> Self {
        StashOptions {
            tag: String::new(),
            parent: None,
            labels: Vec::new(),
            message: None,
            trust_mtime: false,
            exclude: Vec::new(),
            created: None,
            limits: None,
            progress: &NoStashProgress,
        }
    }
}

/// What a stash made.
#[derive(Clone, Debug, Serialize)]
pub struct StashReport {
    pub name: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// The new layer.
    pub diff_id: Digest,
    /// The parent image's manifest digest, if any.
    pub parent: Option<Digest>,
    /// Layers of the new image.
    pub layers: usize,
    /// Bytes of the new layer's tar.
    pub layer_size: u64,
    /// Entries of the new layer.
    pub entries: u64,
    pub counts: DiffCounts,
    /// Contents the store did not have, and their bytes.
    pub new_objects: u64,
    pub new_bytes: u64,
    pub warnings: Vec<StashWarning>,
}

/// A stash as [`list`] shows it.
#[derive(Clone, Debug, Serialize)]
pub struct StashInfo {
    pub name: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// The parent as it was stashed on (`NAME@DIGEST` or a digest), `None` for a first stash.
    pub parent: Option<String>,
    pub layers: usize,
    /// Bytes of the stash's own (last) layer.
    pub layer_size: u64,
    pub created: Option<String>,
    /// Config labels, and local ones over them.
    pub labels: BTreeMap<String, String>,
}

/// The origin prefix that marks a stash.
const ORIGIN: &str = "stash:";

/// Attempts at a stash that a concurrent gc keeps taking found objects from (as an import).
const ATTEMPTS: u32 = 3;

/// Stash the tree at `root` into `store` as the image `opts.tag`.
pub fn stash(store: &Store, root: &Path, opts: &StashOptions<'_>) -> Result<StashReport> {
    let image_ref = RefName::image(&opts.tag)?;
    for (k, v) in &opts.labels {
        layerstore_store::labels::check_label(k, v)?;
    }
    let parent = match &opts.parent {
        Some(p) => Some(store.find_image(p)?),
        None => match store.ref_target(&image_ref)? {
            Some(target) => store
                .image_by_digest(&target.parse()?)?
                .filter(|i| i.origin.as_deref().is_some_and(|o| o.starts_with(ORIGIN))),
            None => None,
        },
    };
    let root_fd = scan::open_root(root)?;
    let mut attempt = 1;
    loop {
        let lease = store.begin_lease(&format!("stash {}", root.display()))?;
        if attempt == ATTEMPTS {
            lease.staging().pin_found_at_once();
        }
        let job = Job {
            store,
            root: scan::Root {
                path: root,
                fd: root_fd.as_fd(),
            },
            opts,
            parent: parent.as_ref(),
            image_ref: &image_ref,
        };
        match job.run(lease) {
            Err(Error::Store(layerstore_store::Error::ObjectSwept { id }))
                if attempt < ATTEMPTS =>
            {
                log::info!("a concurrent gc removed object {id} this stash relied on; retrying");
                attempt += 1;
            }
            other => return other,
        }
    }
}

struct Job<'a> {
    store: &'a Store,
    root: scan::Root<'a>,
    opts: &'a StashOptions<'a>,
    parent: Option<&'a ImageInfo>,
    image_ref: &'a RefName,
}

impl Job<'_> {
    fn run(&self, lease: Lease<'_>) -> Result<StashReport> {
        let store = self.store;
        let root = self.root;
        let limits = self.opts.limits.unwrap_or_else(|| store.limits());
        let parent_diff_ids: Vec<Digest> = self
            .parent
            .map(|p| p.layers.iter().map(|l| l.diff_id).collect())
            .unwrap_or_default();
        lease.pin_stored(&parent_diff_ids)?;
        let tree = match self.parent {
            Some(p) => store.merged_tree(p)?,
            None => MergedTree::build(std::iter::empty())?,
        };
        let excludes = exclude::Excludes::new(&self.opts.exclude);
        let scanned = scan::scan(root, &excludes)?;
        let plan = plan::plan(
            root,
            &scanned.nodes,
            &tree,
            &excludes,
            self.opts.trust_mtime,
            self.opts.progress,
        )?;
        self.opts.progress.compared(&plan.counts);

        let (record, stats) = self.generate(&scanned.nodes, &plan, lease.staging(), &limits)?;
        // A content hashed for the comparison must be what the layer holds: otherwise the file
        // changed between the two reads.
        let by_path: std::collections::HashMap<&[u8], _> = record
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Regular)
            .map(|e| (e.path.as_slice(), e.object))
            .collect();
        for (&i, id) in &plan.hashed {
            let n = &scanned.nodes[i];
            if let Some(obj) = by_path.get(n.path.as_slice())
                && *obj != Some(*id)
            {
                return Err(root.changed(&n.path));
            }
        }
        // The new image must flatten (it does unless the root is odd in a way the parser
        // refuses at merge time; better refused now than unusable later).
        let mut check = tree.clone();
        check.apply_layer(&record.diff_id, &record.entries)?;
        lease.pin_layers(&[record.diff_id])?;

        let parent_docs = match self.parent {
            Some(p) => Some(store.image_documents(p)?.1),
            None => None,
        };
        let created = self.opts.created.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
        let docs = config::build(&config::Inputs {
            parent: match (&parent_docs, self.parent) {
                (Some(c), Some(p)) => Some((c.as_slice(), p.layers.as_slice())),
                _ => None,
            },
            diff_id: record.diff_id,
            tar_size: record.tar_size,
            labels: &self.opts.labels,
            message: self.opts.message.as_deref(),
            created,
        })?;
        let origin = match self.parent {
            Some(p) => match p.names.first() {
                Some(n) => format!("{ORIGIN}{n}@{}", p.manifest_digest),
                None => format!("{ORIGIN}{}", p.manifest_digest),
            },
            None => ORIGIN.to_string(),
        };
        let image = ImageRecord {
            manifest_digest: docs.manifest_digest,
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            manifest: docs.manifest,
            config_digest: docs.config_digest,
            config: docs.config,
            created: Some(docs.created),
            origin: Some(origin),
            layers: docs.layers,
        };
        let mut refs = vec![(self.image_ref.clone(), image.manifest_digest.to_string())];
        for l in &image.layers {
            refs.push((RefName::layer(&l.diff_id), l.diff_id.to_string()));
        }
        let report = StashReport {
            name: self.opts.tag.clone(),
            manifest_digest: image.manifest_digest,
            config_digest: image.config_digest,
            diff_id: record.diff_id,
            parent: self.parent.map(|p| p.manifest_digest),
            layers: image.layers.len(),
            layer_size: record.tar_size,
            entries: record.entries.len() as u64,
            counts: plan.counts.clone(),
            new_objects: stats.new_objects,
            new_bytes: stats.new_bytes,
            warnings: scanned.warnings,
        };
        store.publish(lease, std::slice::from_ref(&record), &image, &refs)?;
        Ok(report)
    }

    /// Produce the layer's tar in a thread and import it through a pipe.
    fn generate(
        &self,
        nodes: &[scan::Node],
        plan: &plan::Plan,
        staging: &layerstore_store::Staging<'_>,
        limits: &Limits,
    ) -> Result<(layerstore_store::LayerRecord, crate::LayerStats)> {
        let root = self.root;
        let (reader, writer) = std::io::pipe().map_err(|e| Error::Stash {
            root: root.path.into(),
            reason: format!("cannot make a pipe: {e}"),
        })?;
        let progress = self.opts.progress;
        std::thread::scope(|s| {
            let producer = s.spawn(move || {
                let w = Counted {
                    inner: BufWriter::with_capacity(1 << 20, writer),
                    progress,
                    pending: 0,
                };
                targen::write_layer(root, nodes, &plan.items, w)
            });
            let imported = crate::layer::import_generated_tar(Box::new(reader), staging, limits);
            let produced = producer.join().expect("the tar producer does not panic");
            match (produced, imported) {
                // A root that changed or could not be read explains a pipeline that stopped.
                (Err(targen::ProduceError::Root(e)), _) => Err(e),
                // The store's own errors (a swept object: retry) pass as they are.
                (_, Err(e @ Error::Store(_))) => Err(e),
                (_, Err(e)) => Err(Error::Stash {
                    root: root.path.into(),
                    reason: format!("the layer was refused: {e}"),
                }),
                (Err(targen::ProduceError::Write(e)), Ok(_)) => Err(Error::Stash {
                    root: root.path.into(),
                    reason: format!("cannot write the layer stream: {e}"),
                }),
                (Ok(()), Ok(r)) => Ok(r),
            }
        })
    }
}

/// Every stash: images whose origin marks them as stashes, by name.
pub fn list(store: &Store) -> Result<Vec<StashInfo>> {
    let mut out = Vec::new();
    for (name, info) in store.images()? {
        let Some(parent) = info.origin.as_deref().and_then(|o| o.strip_prefix(ORIGIN)) else {
            continue;
        };
        let labels = store.labels(&info.manifest_digest)?;
        let mut all = labels.config;
        all.extend(labels.local);
        out.push(StashInfo {
            name,
            manifest_digest: info.manifest_digest,
            config_digest: info.config_digest,
            parent: (!parent.is_empty()).then(|| parent.to_string()),
            layers: info.layers.len(),
            layer_size: info.layers.last().map_or(0, |l| l.blob_size),
            created: info.created.clone(),
            labels: all,
        });
    }
    Ok(out)
}
