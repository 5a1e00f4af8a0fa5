//! Importing one layer blob: verify its digest while streaming, decompress (sniffed and checked
//! against the media type), parse the tar, store contents as objects, verify the diff_id.
//!
//! Per layer, one thread reads, sha256es and inflates the blob into 256 KiB chunks; one
//! sha256es the chunks (the diff_id), parses entries and blake3-hashes contents where the chunk
//! holds them; a pool of writer threads compresses and write the contents that fit in memory, handed
//! over in batches, so parsing never waits on a write. They meet in bounded channels, so memory
//! stays bounded whatever the layer size. A content is copied out of its chunk only for a writer
//! (or when it spans chunks), and parsed chunks go back to the reading thread for reuse.
//!
//! The jobs live in submodules: [`blob`] (the reading thread and the chunk channel),
//! [`writers`] (the writer pool) and [`entries`] (entry validation and contents).

mod blob;
mod entries;
mod writers;

use std::io::Read;

use layerstore_store::{Digest, LayerRecord, Limits, Staging};

use crate::error::{Error, Result};
use crate::tarparse::{TarError, TarLimits};

pub use blob::{BlobCompression, UNKNOWN_SIZE, media_type_compression};
pub(crate) use blob::{ChannelReader, stream_generated_tar, stream_layer};

/// A blob to import as a layer.
pub struct LayerInput {
    pub index: usize,
    pub blob_digest: Digest,
    pub blob_size: u64,
    pub media_type: String,
    pub expected_diff_id: Digest,
}

/// Counters for progress reporting.
pub trait LayerProgress: Sync {
    /// `n` more compressed bytes of layer `index` were read.
    fn read(&self, index: usize, n: u64);
}

/// Import statistics of one layer.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LayerStats {
    pub entries: u64,
    pub files: u64,
    pub content_bytes: u64,
    pub new_objects: u64,
    pub new_bytes: u64,
    pub dedup_hits: u64,
    pub inline_objects: u64,
    /// How a zstd:chunked layer was pulled (partially, or whole and why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<crate::chunked::PartialPull>,
}

impl LayerInput {
    /// The layer at `index` of a resolved image.
    pub fn of(index: usize, l: &crate::resolve::LayerDescriptor) -> Self {
        LayerInput {
            index,
            blob_digest: l.digest,
            blob_size: l.size,
            media_type: l.media_type.clone(),
            expected_diff_id: l.diff_id,
        }
    }
}

/// Import a layer blob read from `blob`.
pub fn import_layer(
    input: &LayerInput,
    blob: Box<dyn Read + Send + '_>,
    staging: &Staging<'_>,
    limits: &Limits,
    progress: &dyn LayerProgress,
) -> Result<(LayerRecord, LayerStats)> {
    let ((mut record, lstats), tar_size) = stream_layer(input, blob, limits, progress, |r| {
        entries::parse_layer(input, r, staging, limits)
    })?;
    record.tar_size = tar_size;
    Ok((record, lstats))
}

/// Import an uncompressed tar this process generates (a stash's diff layer) through the same
/// validation, object writing and skeleton as a blob: its diff_id is computed on the way, not
/// checked against a descriptor.
pub fn import_generated_tar(
    tar: Box<dyn Read + Send + '_>,
    staging: &Staging<'_>,
    limits: &Limits,
) -> Result<(LayerRecord, LayerStats)> {
    let input = LayerInput {
        index: 0,
        blob_digest: Digest::of(b""),
        blob_size: 0,
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        expected_diff_id: Digest::of(b""),
    };
    let ((mut record, lstats), tar_size, diff_id) = stream_generated_tar(tar, limits, |r| {
        entries::parse_layer(&input, r, staging, limits)
    })?;
    record.tar_size = tar_size;
    record.diff_id = diff_id;
    Ok((record, lstats))
}

/// The tar parser's limits for a layer under the store's `limits`.
pub(crate) fn tar_limits(limits: &Limits) -> TarLimits {
    TarLimits {
        max_record: limits.max_pax_record,
        max_raw_data: 1 << 20,
        // GNU tar pads to its 10 KiB record, `-b 2048` to 1 MiB: kept as it is; longer padding
        // becomes a zero run (a skeleton that builds before zero runs cannot read).
        raw_trailer: 1 << 20,
    }
}

/// A tar parser's error as the import reports it, naming the layer's blob.
pub(crate) fn tar_error(blob_digest: &Digest, e: TarError) -> Error {
    Error::Tar {
        digest: blob_digest.to_string(),
        offset: e.offset,
        rule: e.rule,
        entry: e.entry,
        reason: match e.io {
            Some(io) => format!("{}: {io}", e.reason),
            None => e.reason,
        },
    }
}
