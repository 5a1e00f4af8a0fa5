//! Partial pulls of zstd:chunked layers: fetch only the files the store lacks.
//!
//! A `tar+zstd` layer whose descriptor carries the zstd:chunked annotations (either family, see
//! [`toc`]) has a table of contents naming each file's sha256 and compressed byte range. When
//! the store already holds some of those contents, the pull:
//!
//! 1. fetches the TOC (one range), checks it against the annotated sha256 and the `json-bytes`
//!    limit before reading anything in it, and checks the payload table ([`plan::payloads`]);
//! 2. looks the files' sha256 up in the store ([`layerstore_store::content_sha256`]), hashing
//!    the stored objects of matching sizes first if they have no sha256 yet (the backfill);
//! 3. plans the ranges to fetch: the complement of the held payloads ([`plan`]);
//! 4. fetches them with multi-range requests and rebuilds the exact uncompressed stream,
//!    checking each fetched file against its TOC digest and the whole stream against the
//!    config's diff_id ([`rebuild`]);
//! 5. streams it, as it is rebuilt, through the normal layer pipeline, which verifies the
//!    diff_id itself before anything is published: the stored layer is the same as after a
//!    full pull (same rows, same skeleton, same byte-exact export).
//!
//! Any failure of the rebuild (a TOC not matching its checksum, a registry that ignores `Range`,
//! bytes that do not decompress or hash as promised) makes the layer pulled whole instead, and
//! the reason is returned in [`PartialPull::whole`]; nothing is printed. The sha256 of contents
//! fetched and verified here are remembered afterwards, so the next partial pull finds them
//! without a backfill.

pub mod plan;
pub mod rebuild;
pub mod toc;
pub mod write;

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use layerstore_store::{Digest, LayerRecord, Limits, Staging, Store};

use crate::error::{Error, Result};
use crate::layer::{self, LayerInput, LayerProgress, LayerStats};
use crate::registry::RegistryContainer;
use crate::registry::ranges::RangeError;
use crate::resolve::ResolvedImage;

/// Why a partial pull could not be made; the layer is then pulled whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkedError {
    #[error("annotation {key}={value:?}: {reason}")]
    BadAnnotation {
        key: String,
        value: String,
        reason: String,
    },
    #[error("the TOC ({size} bytes) exceeds the json-bytes limit of {limit}")]
    TocTooLarge { size: u64, limit: u64 },
    #[error("the TOC has sha256 {actual}, its manifest-checksum annotation says {expected}")]
    TocChecksum { expected: Digest, actual: Digest },
    #[error("bad TOC: {reason}")]
    BadToc { reason: String },
    #[error(transparent)]
    Range(#[from] RangeError),
    #[error("file {digest}: {reason}")]
    Payload { digest: Digest, reason: String },
    #[error("the rebuilt layer has diff_id {actual}, the config says {expected}")]
    DiffId { expected: Digest, actual: Digest },
    #[error("cannot rebuild the layer: {reason}")]
    Rebuild { reason: String },
    #[error("the store: {0}")]
    Store(#[from] layerstore_store::Error),
}

impl ChunkedError {
    fn output(e: std::io::Error) -> Self {
        ChunkedError::Rebuild {
            reason: format!("cannot write the rebuilt stream: {e}"),
        }
    }
}

/// How a zstd:chunked layer was pulled: reported per layer in the import report and `--json`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PartialPull {
    /// The blob's size.
    pub blob_size: u64,
    /// Response bytes fetched for this layer: the TOC and the ranges, plus the whole blob when
    /// it was pulled whole after all.
    pub fetched_bytes: u64,
    /// Range requests made (the TOC's included).
    pub requests: u64,
    /// Regular files with content in the layer, and those taken from the store.
    pub files: u64,
    pub held_files: u64,
    /// Uncompressed bytes taken from the store.
    pub held_bytes: u64,
    /// Stored objects hashed with sha256 for this pull (the backfill).
    pub backfilled_objects: u64,
    pub backfilled_bytes: u64,
    /// Set when the layer was pulled whole: why.
    pub whole: Option<String>,
}

/// A stored content smaller than this (compressed bytes in the blob) is fetched even when held:
/// skipping it costs a range, and docker-registry's multipart answer spends ~170 bytes on each
/// part's header. Measured on the corpus's base-v1 → base-v2 (benches/partial-pull.sh, its
/// `min_hold` table): 128 and 256 fetch the least (12.7 % of the blob with part headers, 512:
/// 13.0 %, 4096: 18.3 %); 256 needs 7 % fewer ranges than 128.
pub const MIN_HOLD: u64 = 256;

/// Chunks of the rebuilt stream in flight between the rebuild and the import, and their size.
const PIPE_DEPTH: usize = 8;
const PIPE_CHUNK: usize = 256 << 10;

/// The rebuild's end of the pipe to the import. `closed`: the import stopped reading.
struct PipeWriter {
    tx: mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
    closed: bool,
}

impl PipeWriter {
    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(PIPE_CHUNK));
        self.tx.send(full).map_err(|_| {
            self.closed = true;
            io::Error::new(io::ErrorKind::BrokenPipe, "the import stopped reading")
        })
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PIPE_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIPE_CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

/// The import's end of the pipe: the rebuilt tar stream.
struct PipeReader {
    rx: mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(next) => {
                    self.cur = next;
                    self.pos = 0;
                }
                // The rebuild ended; if it failed, its error explains the short stream.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A partial pull that would fetch more than this many tenths of the blob pulls it whole.
pub const MAX_FETCH_TENTHS: u64 = 8;

/// What [`pull`] did.
pub(crate) enum Outcome {
    /// Not a zstd:chunked layer: pull it as usual.
    NotChunked,
    /// Pulled partially and imported.
    Pulled(Box<(LayerRecord, LayerStats)>),
    /// Pull it whole; this says why and what was fetched so far.
    Whole(PartialPull),
}

/// The annotations of layer `index` of the image's manifest.
fn layer_annotations(image: &ResolvedImage, index: usize) -> BTreeMap<String, String> {
    serde_json::from_slice::<serde_json::Value>(&image.manifest)
        .ok()
        .and_then(|m| {
            let a = m
                .get("layers")?
                .get(index)?
                .get("annotations")?
                .as_object()?
                .clone();
            Some(
                a.into_iter()
                    .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
                    .collect(),
            )
        })
        .unwrap_or_default()
}

/// Pull layer `index` of `image` from `reg` partially if it is zstd:chunked and the store holds
/// some of its files. Errors of the import itself (after the stream is verified) are returned
/// as they would be from a full pull.
pub(crate) fn pull(
    store: &Store,
    reg: &RegistryContainer,
    image: &ResolvedImage,
    index: usize,
    limits: &Limits,
    staging: &Staging<'_>,
    progress: &dyn LayerProgress,
) -> Result<Outcome> {
    let l = &image.layers[index];
    if layer::media_type_compression(&l.media_type) != Some(layer::BlobCompression::Zstd) {
        return Ok(Outcome::NotChunked);
    }
    let mut report = PartialPull {
        blob_size: l.size,
        ..PartialPull::default()
    };
    let loc = match toc::locate(&layer_annotations(image, index), l.size) {
        Ok(Some(loc)) => loc,
        Ok(None) => return Ok(Outcome::NotChunked),
        Err(e) => return Ok(whole(report, &e)),
    };
    match try_pull(
        store,
        reg,
        image,
        index,
        &loc,
        limits,
        staging,
        progress,
        &mut report,
    ) {
        Ok(Some(done)) => Ok(Outcome::Pulled(Box::new(done))),
        Ok(None) => Ok(Outcome::Whole(report)),
        Err(Fail::Chunked(e)) => Ok(whole(report, &e)),
        Err(Fail::Import(e)) => Err(e),
    }
}

fn whole(mut report: PartialPull, why: &dyn std::fmt::Display) -> Outcome {
    log::info!("pulling the layer whole: {why}");
    report.whole = Some(why.to_string());
    Outcome::Whole(report)
}

enum Fail {
    /// The partial pull cannot be made: pull whole.
    Chunked(ChunkedError),
    /// The import of a verified stream failed: as a full pull would.
    Import(Error),
}

impl From<ChunkedError> for Fail {
    fn from(e: ChunkedError) -> Self {
        Fail::Chunked(e)
    }
}

#[allow(clippy::too_many_arguments)]
fn try_pull(
    store: &Store,
    reg: &RegistryContainer,
    image: &ResolvedImage,
    index: usize,
    loc: &toc::TocLocation,
    limits: &Limits,
    staging: &Staging<'_>,
    progress: &dyn LayerProgress,
    report: &mut PartialPull,
) -> Result<Option<(LayerRecord, LayerStats)>, Fail> {
    let l = &image.layers[index];
    if loc.compressed > limits.max_json_bytes || loc.uncompressed > limits.max_json_bytes {
        return Err(ChunkedError::TocTooLarge {
            size: loc.compressed.max(loc.uncompressed),
            limit: limits.max_json_bytes,
        }
        .into());
    }
    let fetched = reg
        .fetch_ranges(
            &l.digest,
            l.size,
            std::slice::from_ref(&(loc.offset..loc.offset + loc.compressed)),
        )
        .map_err(ChunkedError::from)?;
    report.fetched_bytes += fetched.body_bytes;
    report.requests += u64::from(fetched.requests);
    progress.read(index, fetched.body_bytes);
    let compressed = fetched.ranges.into_iter().next().unwrap_or_default();
    let toc = toc::parse(&compressed, loc, limits.max_json_bytes)?;
    let payloads = plan::payloads(&toc.entries, loc)?;
    let digests: Vec<Digest> = payloads.iter().map(|(_, d, _)| *d).collect();
    let mut held = store
        .objects_by_sha256(&digests)
        .map_err(ChunkedError::from)?;
    let sizes: HashSet<u64> = payloads
        .iter()
        .filter(|(r, d, _)| r.end - r.start >= MIN_HOLD && !held.contains_key(d))
        .map(|(_, _, size)| *size)
        .collect();
    if !sizes.is_empty() {
        let b = store.backfill_sha256(&sizes).map_err(ChunkedError::from)?;
        report.backfilled_objects = b.objects;
        report.backfilled_bytes = b.bytes;
        if b.objects > 0 {
            held = store
                .objects_by_sha256(&digests)
                .map_err(ChunkedError::from)?;
        }
    }
    let p = plan::plan(&toc.entries, loc, &held, MIN_HOLD)?;
    report.files = p.files;
    report.held_files = p.held_files;
    report.held_bytes = p.held_bytes;
    if p.held_files == 0 {
        report.whole = Some("the store holds none of its files".into());
        return Ok(None);
    }
    // A partial pull pays a range's cost at the registry per skipped file, and the store's
    // reads of the held contents: worth it only when it saves a good part of the blob.
    if p.fetch_bytes.saturating_mul(10) > l.size.saturating_mul(MAX_FETCH_TENTHS) {
        report.whole = Some(format!(
            "the store holds too little of it ({} of {} bytes would be fetched)",
            p.fetch_bytes, l.size
        ));
        return Ok(None);
    }
    // The rebuilt stream goes straight into the layer pipeline, which verifies its diff_id
    // before anything is published (and so does the rebuild, which also checks each fetched
    // file): fetching, rebuilding and importing overlap.
    let fetched_bytes = AtomicU64::new(0);
    let fetch = |ranges: &[std::ops::Range<u64>]| {
        let f = reg.fetch_ranges(&l.digest, l.size, ranges)?;
        progress.read(index, f.body_bytes);
        fetched_bytes.fetch_add(f.body_bytes, Ordering::Relaxed);
        Ok((f.ranges, f.body_bytes))
    };
    let input = LayerInput {
        index,
        blob_digest: l.diff_id,
        blob_size: layer::UNKNOWN_SIZE,
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        expected_diff_id: l.diff_id,
    };
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
    let (rebuilt, imported) = std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let mut out = PipeWriter {
                tx,
                buf: Vec::with_capacity(PIPE_CHUNK),
                closed: false,
            };
            let objects = store
                .object_reader()
                .map_err(|e| (ChunkedError::from(e), false))?;
            let mut held_fn = |id: &layerstore_store::ObjectId, w: &mut dyn Write| {
                let data = objects.read(id)?;
                let mut w = w;
                data.copy_to(&mut w).map_err(|e| ChunkedError::Rebuild {
                    reason: format!("object {}: {e}", id.hex()),
                })
            };
            let mut fetch = fetch;
            let r = rebuild::rebuild(
                &p,
                &mut fetch,
                &mut held_fn,
                &mut out,
                &l.diff_id,
                limits.max_layer_bytes,
            );
            let closed = out.closed;
            // Whatever happened, the reader sees the end of the stream now.
            drop(out);
            r.map_err(|e| (e, closed))
        });
        let imported = layer::import_layer(
            &input,
            Box::new(PipeReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            }),
            staging,
            limits,
            &crate::NoProgress,
        );
        let rebuilt = producer.join().expect("the rebuild does not panic");
        (rebuilt, imported)
    });
    // Count what was fetched even when the rebuild failed.
    report.fetched_bytes += fetched_bytes.load(Ordering::Relaxed);
    let (record, mut stats, rebuilt) = match (rebuilt, imported) {
        (Ok(r), Ok((record, stats))) => (record, stats, r),
        // The import stopped reading (a tar the pipeline refuses): its error is the cause.
        (Err((_, true)), Err(e)) | (Ok(_), Err(e)) => return Err(Fail::Import(e)),
        // The stream could not be rebuilt as promised: pull the layer whole.
        (Err((e, _)), _) => return Err(Fail::Chunked(e)),
    };
    report.requests += rebuilt.requests;
    // The pairs are facts whether or not this import publishes: remember them now.
    if let Err(e) = store.record_sha256(&rebuilt.verified) {
        log::warn!("cannot remember the sha256 of fetched contents: {e}");
    }
    stats.partial = Some(report.clone());
    Ok(Some((record, stats)))
}
