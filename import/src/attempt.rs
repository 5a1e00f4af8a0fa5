//! One attempt at importing a resolved image, in named steps: [`Attempt::plan`] which layers to
//! read, [`Attempt::read`] them, [`Attempt::check_flattens`] and [`Attempt::publish`].
//!
//! An attempt fails with [`layerstore_store::Error::ObjectSwept`] only if a gc removed an object
//! file it had found before the import could pin it; by then its earlier pins are gone with its
//! lease, and a new attempt writes what is missing. With `last`, every object file found is
//! pinned at once (slower, but it cannot fail that way): a store whose gc runs back to back
//! cannot starve an import.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use layerstore_store::{
    Digest, ImageLayer, ImageRecord, LayerRecord, LayerState, Lease, Limits, RefName, Store,
    TreeEntry,
};

use crate::error::{Error, Result};
use crate::layer::{self, LayerInput, LayerStats};
use crate::resolve::ResolvedImage;
use crate::source::Container;
use crate::{ImportOptions, ImportReport, LayerReport, Progress};

/// An import of one resolved image: what each attempt works on.
pub(crate) struct ImportJob<'a> {
    pub store: &'a Store,
    /// The source spec, for the lease's description.
    pub spec: &'a str,
    /// Recorded as the image's origin ([`crate::Source::origin`]).
    pub origin: String,
    pub container: &'a dyn Container,
    pub image: &'a ResolvedImage,
    pub name: String,
    /// The image ref to write; none for a layers-only import.
    pub image_ref: Option<RefName>,
    pub limits: Limits,
    pub opts: &'a ImportOptions<'a>,
}

impl ImportJob<'_> {
    /// One attempt, in its steps.
    pub fn run(&self, last: bool) -> Result<ImportReport> {
        let attempt = Attempt::begin(self, last)?;
        let plan = attempt.plan()?;
        let read = attempt.read(&plan)?;
        attempt.check_flattens(&read)?;
        attempt.publish(read)
    }
}

/// One attempt: the job and the attempt's own lease.
pub(crate) struct Attempt<'a> {
    job: &'a ImportJob<'a>,
    image: &'a ResolvedImage,
    lease: Lease<'a>,
}

/// Which layers an attempt reads.
struct Plan {
    /// Not stored and not claimed: this import reads them.
    mine: Vec<usize>,
    /// Being read by another import right now; by the time this one has read its own, they may
    /// be stored.
    theirs: Vec<usize>,
}

/// The layers an attempt read, by index in the image.
type LayersRead = Vec<Option<(LayerRecord, LayerStats)>>;

impl<'a> Attempt<'a> {
    /// Take a lease; with `last`, it pins each object file it finds at once.
    fn begin(job: &'a ImportJob<'a>, last: bool) -> Result<Self> {
        let lease = job.store.begin_lease(&format!("import {}", job.spec))?;
        if last {
            lease.staging().pin_found_at_once();
        }
        Ok(Attempt {
            job,
            image: job.image,
            lease,
        })
    }

    /// Pin the stored layers this image builds on (before they are relied on) and decide which
    /// to read: not stored, first occurrence in this image.
    fn plan(&self) -> Result<Plan> {
        let image = self.image;
        let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id).collect();
        let states = self.lease.pin_layers(&diff_ids)?;
        let mut plan = Plan {
            mine: Vec::new(),
            theirs: Vec::new(),
        };
        let mut rows = Vec::new();
        let mut seen = HashSet::new();
        for (i, l) in image.layers.iter().enumerate() {
            let first = seen.insert(l.diff_id);
            rows.push((
                i,
                l.digest,
                l.size,
                first && states[i] != LayerState::Stored,
            ));
            match &states[i] {
                LayerState::Mine if first => plan.mine.push(i),
                LayerState::Claimed { .. } if first => plan.theirs.push(i),
                _ => {}
            }
        }
        self.job.opts.progress.start(image, &rows);
        Ok(plan)
    }

    /// Read the layers the plan gives this import, then those other imports were reading and
    /// did not publish.
    fn read(&self, plan: &Plan) -> Result<LayersRead> {
        let results = Mutex::new((0..self.image.layers.len()).map(|_| None).collect());
        self.read_layers(&plan.mine, &results)?;
        if !plan.theirs.is_empty() {
            self.read_layers(&self.wait_for_layers(&plan.theirs)?, &results)?;
        }
        Ok(results.into_inner().expect("not poisoned"))
    }

    /// Read the layers `todo` names, `opts.jobs` at a time; stop at the first error.
    fn read_layers(&self, todo: &[usize], results: &Mutex<LayersRead>) -> Result<()> {
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let next = AtomicUsize::new(0);
        let progress = ProgressAdapter(self.job.opts.progress);
        std::thread::scope(|s| {
            for _ in 0..self.job.opts.jobs.max(1).min(todo.len()) {
                s.spawn(|| {
                    loop {
                        if first_error.lock().expect("not poisoned").is_some() {
                            return;
                        }
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = todo.get(k) else { return };
                        match self.read_layer(i, &progress) {
                            Ok((rec, stats)) => {
                                self.job.opts.progress.layer_done(i, &stats);
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
    }

    fn read_layer(
        &self,
        i: usize,
        progress: &ProgressAdapter<'_>,
    ) -> Result<(LayerRecord, LayerStats)> {
        let l = &self.image.layers[i];
        // A zstd:chunked layer from a registry: fetch only what the store lacks, if it can.
        let mut partial = None;
        if let Some(reg) = self.job.container.registry() {
            match crate::chunked::pull(
                self.job.store,
                reg,
                self.image,
                i,
                &self.job.limits,
                self.lease.staging(),
                progress,
            )? {
                crate::chunked::Outcome::Pulled(done) => return Ok(*done),
                crate::chunked::Outcome::Whole(p) => partial = Some(p),
                crate::chunked::Outcome::NotChunked => {}
            }
        }
        let (blob, _) =
            self.job
                .container
                .open_optional(&l.path)?
                .ok_or_else(|| Error::BlobMissing {
                    digest: l.digest.to_string(),
                })?;
        let (record, mut stats) = layer::import_layer(
            &LayerInput::of(i, l),
            blob,
            self.lease.staging(),
            &self.job.limits,
            progress,
        )?;
        if let Some(mut p) = partial {
            p.fetched_bytes += l.size;
            stats.partial = Some(p);
        }
        Ok((record, stats))
    }

    /// Wait until the layers `theirs` names (claimed by other imports) are stored; returns those
    /// this import must read itself after all: the claimer ended without publishing, or it waits
    /// too (perhaps for this import: reading the layer twice beats a deadlock).
    fn wait_for_layers(&self, theirs: &[usize]) -> Result<Vec<usize>> {
        self.lease.set_waiting(true)?;
        let mut mine = Vec::new();
        for &i in theirs {
            let diff_id = self.image.layers[i].diff_id;
            loop {
                match self.lease.pin_layers(&[diff_id])?.remove(0) {
                    LayerState::Stored => break,
                    LayerState::Mine => {
                        mine.push(i);
                        break;
                    }
                    LayerState::Claimed { lease: owner } => {
                        if self.job.store.lease_waits(&owner)? {
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
        self.lease.set_waiting(false)?;
        Ok(mine)
    }

    /// The image must flatten: a symlink loop or a path through a file would make it unusable.
    /// Layers read now are checked from memory, the others from the store.
    fn check_flattens(&self, read: &LayersRead) -> Result<()> {
        let fresh: HashMap<Digest, &[TreeEntry]> = read
            .iter()
            .flatten()
            .map(|(r, _)| (r.diff_id, r.entries.as_slice()))
            .collect();
        let mut stored = HashMap::new();
        for l in &self.image.layers {
            if !fresh.contains_key(&l.diff_id) && !stored.contains_key(&l.diff_id) {
                stored.insert(l.diff_id, self.job.store.layer_entries(&l.diff_id)?);
            }
        }
        layerstore_store::MergedTree::build(self.image.layers.iter().map(|l| {
            let entries = fresh
                .get(&l.diff_id)
                .copied()
                .unwrap_or_else(|| stored[&l.diff_id].as_slice());
            (&l.diff_id, entries)
        }))?;
        Ok(())
    }

    /// Write the rows of the layers read and of the image, and its refs (`image/NAME`,
    /// `layer/DIFFID`), in one durable transaction that also ends the lease.
    fn publish(self, read: LayersRead) -> Result<ImportReport> {
        let image = self.image;
        let mut records = Vec::new();
        let mut report = ImportReport {
            name: self.job.name.clone(),
            manifest_digest: image.manifest_digest,
            config_digest: image.config_digest,
            layers: Vec::new(),
            fetched_bytes: 0,
            new_objects: 0,
            new_bytes: 0,
            dedup_hits: 0,
            content_bytes: 0,
        };
        for (l, r) in image.layers.iter().zip(read) {
            let stats = r.map(|(rec, stats)| {
                records.push(rec);
                report.new_objects += stats.new_objects;
                report.new_bytes += stats.new_bytes;
                report.dedup_hits += stats.dedup_hits;
                report.content_bytes += stats.content_bytes;
                stats
            });
            // A layer read whole: its digest check saw exactly `size` bytes. A zstd:chunked layer
            // counts what its partial pull fetched (the TOC and ranges, plus the blob if it
            // was pulled whole after all).
            let fetched_bytes = match &stats {
                Some(s) => s.partial.as_ref().map_or(l.size, |p| p.fetched_bytes),
                None => 0,
            };
            report.fetched_bytes += fetched_bytes;
            report.layers.push(LayerReport {
                diff_id: l.diff_id,
                blob_digest: l.digest,
                media_type: l.media_type.clone(),
                blob_size: l.size,
                reused: stats.is_none(),
                fetched_bytes,
                stats,
            });
        }
        let record = ImageRecord {
            manifest_digest: image.manifest_digest,
            manifest_media_type: image.manifest_media_type.clone(),
            manifest: image.manifest.clone(),
            config_digest: image.config_digest,
            config: image.config.clone(),
            created: image.created.clone(),
            origin: Some(self.job.origin.clone()),
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
        let mut refs: Vec<(RefName, String)> = self
            .job
            .image_ref
            .iter()
            .map(|r| (r.clone(), image.manifest_digest.to_string()))
            .collect();
        for l in &image.layers {
            refs.push((RefName::layer(&l.diff_id), l.diff_id.to_string()));
        }
        self.job
            .store
            .publish(self.lease, &records, &record, &refs)?;
        Ok(report)
    }
}

/// The import's [`Progress`] as the layer reader's.
struct ProgressAdapter<'a>(&'a dyn Progress);
impl layer::LayerProgress for ProgressAdapter<'_> {
    fn read(&self, index: usize, n: u64) {
        self.0.read(index, n);
    }
}
