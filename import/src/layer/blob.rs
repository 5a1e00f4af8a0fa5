//! The blob thread: read the blob, verify its digest and size, sniff and inflate it into chunks
//! that the parsing thread reads (and sha256es into the diff_id) through a [`ChannelReader`].

use std::io::{self, BufRead, Read};
use std::sync::mpsc;

use layerstore_store::{Digest, DigestHasher, Limits};

use super::{LayerInput, LayerProgress};
use crate::error::{Error, Result};

/// Compression of a layer blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobCompression {
    None,
    Gzip,
    Zstd,
}

/// The compression a layer media type promises.
pub fn media_type_compression(media_type: &str) -> Option<BlobCompression> {
    Some(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => BlobCompression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => BlobCompression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => BlobCompression::Zstd,
        _ => return None,
    })
}

fn sniff(head: &[u8]) -> BlobCompression {
    if head.starts_with(&[0x1f, 0x8b]) {
        BlobCompression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        BlobCompression::Zstd
    } else {
        BlobCompression::None
    }
}

/// A [`LayerInput::blob_size`] for a blob whose length is not known before it is read: a tar a
/// partial pull rebuilds as it fetches. Its digest is its diff_id, so the diff_id check covers it.
pub const UNKNOWN_SIZE: u64 = u64::MAX;

/// What the reading thread measured.
struct BlobStats {
    digest: Digest,
    size: u64,
    tar_size: u64,
}

/// The size of the chunks the blob thread hands to the parser.
const CHUNK: usize = 256 * 1024;

/// Read, verify and inflate a layer blob on one thread while `parse` consumes the tar stream on
/// this one (which also computes the diff_id: the reading thread, busy inflating, is the slower
/// one). Returns what `parse` returned and the tar size, once the blob digest, its size and the
/// diff_id are verified.
pub(crate) fn stream_layer<T>(
    input: &LayerInput,
    blob: Box<dyn Read + Send + '_>,
    limits: &Limits,
    progress: &dyn LayerProgress,
    parse: impl FnOnce(&mut ChannelReader) -> Result<T>,
) -> Result<(T, u64)> {
    let (parsed, stats, diff_id) = stream_unverified(input, blob, limits, progress, parse)?;
    let digest_s = input.blob_digest.to_string();
    if stats.digest != input.blob_digest {
        return Err(Error::DigestMismatch {
            digest: digest_s,
            actual: stats.digest.to_string(),
        });
    }
    if input.blob_size != UNKNOWN_SIZE && stats.size != input.blob_size {
        return Err(Error::SizeMismatch {
            digest: digest_s,
            expected: input.blob_size,
            actual: stats.size,
        });
    }
    if diff_id != input.expected_diff_id {
        return Err(Error::DiffIdMismatch {
            index: input.index,
            digest: digest_s,
            expected: input.expected_diff_id.to_string(),
            actual: diff_id.to_string(),
        });
    }
    Ok((parsed, stats.tar_size))
}

/// [`stream_layer`] for an uncompressed tar this process generates (a stash), which no
/// descriptor describes: nothing to verify it against. Returns what `parse` returned, the tar
/// size and the diff_id computed on the way.
pub(crate) fn stream_generated_tar<T>(
    tar: Box<dyn Read + Send + '_>,
    limits: &Limits,
    parse: impl FnOnce(&mut ChannelReader) -> Result<T>,
) -> Result<(T, u64, Digest)> {
    // The placeholder digest never reaches a message the caller shows: a stash names its root.
    let input = LayerInput {
        index: 0,
        blob_digest: Digest::of(b""),
        // The reader reads one byte past the size to notice a longer blob; the layer-size
        // limit stops a generated tar long before.
        blob_size: limits.max_layer_bytes.min(u64::MAX / 2),
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        expected_diff_id: Digest::of(b""),
    };
    let (parsed, stats, diff_id) =
        stream_unverified(&input, tar, limits, &crate::NoProgress, parse)?;
    Ok((parsed, stats.tar_size, diff_id))
}

/// The reading and parsing of [`stream_layer`], without comparing the blob digest, size and
/// diff_id against the descriptor: returns them.
fn stream_unverified<T>(
    input: &LayerInput,
    blob: Box<dyn Read + Send + '_>,
    limits: &Limits,
    progress: &dyn LayerProgress,
    parse: impl FnOnce(&mut ChannelReader) -> Result<T>,
) -> Result<(T, BlobStats, Digest)> {
    let digest_s = input.blob_digest.to_string();
    let expected = media_type_compression(&input.media_type).ok_or_else(|| Error::Compression {
        digest: digest_s.clone(),
        reason: format!("unsupported layer media type {:?}", input.media_type),
    })?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
    let (spent_tx, spent_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let chunks = Chunks {
                full: tx,
                spent: spent_rx,
            };
            read_blob(input, blob, expected, limits, chunks, progress)
        });
        let mut chan = ChannelReader {
            rx,
            spent: spent_tx,
            buf: Vec::new(),
            pos: 0,
            hasher: DigestHasher::default(),
        };
        let parsed = parse(&mut chan);
        // After a successful parse, anything still coming is a stream the parser did not read to
        // its end; after a failed one, dropping the channel stops the reader.
        let unread = match parsed {
            Ok(_) => chan.drain(),
            Err(_) => 0,
        };
        let ChannelReader { rx, hasher, .. } = chan;
        drop(rx);
        let stats = reader.join().expect("the blob reader does not panic");
        // A reader error explains a parse error (truncation, bad digest): report it first.
        let stats = stats?;
        let parsed = parsed?;
        if unread > 0 {
            return Err(Error::Tar {
                digest: digest_s.clone(),
                offset: stats.tar_size.saturating_sub(unread),
                reason: format!("{unread} bytes after the end of the archive were not read"),
                rule: crate::tarparse::TarRule::DataAfterEnd,
                entry: None,
            });
        }
        Ok((parsed, stats, hasher.finish()))
    })
}

/// Hashes what passes through.
struct HashingReader<'a, R> {
    inner: R,
    hasher: DigestHasher,
    count: u64,
    limit: u64,
    index: usize,
    progress: &'a dyn LayerProgress,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min((self.limit.saturating_add(1) - self.count).min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        self.progress.read(self.index, n as u64);
        Ok(n)
    }
}

/// The reading thread's ends of the chunk channels: full chunks go to the parser, which sends
/// them back once read, so a layer reuses a handful of chunks instead of allocating (and
/// zero-filling) one per 256 KiB.
struct Chunks {
    full: mpsc::SyncSender<Vec<u8>>,
    spent: mpsc::Receiver<Vec<u8>>,
}

fn read_blob(
    input: &LayerInput,
    blob: Box<dyn Read + Send + '_>,
    expected: BlobCompression,
    limits: &Limits,
    chunks: Chunks,
    progress: &dyn LayerProgress,
) -> Result<BlobStats> {
    let digest_s = input.blob_digest.to_string();
    let mut hr = io::BufReader::with_capacity(
        CHUNK,
        HashingReader {
            inner: blob,
            hasher: DigestHasher::default(),
            count: 0,
            // One byte more than promised, to notice a longer blob.
            limit: input.blob_size,
            index: input.index,
            progress,
        },
    );
    let head = io::BufRead::fill_buf(&mut hr)
        .map_err(|e| Error::ReadBlob {
            digest: digest_s.clone(),
            source: e,
        })?
        .to_vec();
    let actual = sniff(&head);
    if actual != expected {
        return Err(Error::Compression {
            digest: digest_s,
            reason: format!(
                "media type {} promises {expected:?} but the data is {actual:?}",
                input.media_type
            ),
        });
    }
    let mut decoder: Box<dyn Read + '_> = match actual {
        BlobCompression::None => Box::new(&mut hr),
        BlobCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut hr)),
        BlobCompression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(&mut hr).map_err(|e| {
                Error::Decompress {
                    digest: digest_s.clone(),
                    source: e,
                }
            })?;
            // Refuse frames that need a window over 128 MiB.
            d.window_log_max(27).map_err(|e| Error::Decompress {
                digest: digest_s.clone(),
                source: e,
            })?;
            Box::new(d)
        }
    };
    let mut tar_size = 0u64;
    loop {
        let mut chunk = chunks.spent.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        while filled < CHUNK {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Decompress {
                        digest: digest_s,
                        source: e,
                    });
                }
            }
        }
        if filled == 0 {
            break;
        }
        chunk.truncate(filled);
        tar_size += filled as u64;
        if tar_size > limits.max_layer_bytes {
            return Err(Error::TooLarge {
                what: format!("uncompressed layer {digest_s}"),
                limit: limits.max_layer_bytes,
            });
        }
        if chunks.full.send(chunk).is_err() {
            // The parser stopped early (it reports why); drain nothing more.
            break;
        }
    }
    drop(decoder);
    // Read whatever follows the compressed stream so the blob digest covers all of it.
    io::copy(&mut hr, &mut io::sink()).map_err(|e| Error::ReadBlob {
        digest: digest_s,
        source: e,
    })?;
    let inner = hr.into_inner();
    Ok(BlobStats {
        digest: inner.hasher.finish(),
        size: inner.count,
        tar_size,
    })
}

/// The tar stream as it arrives from the reading thread, sha256ed on arrival (the diff_id).
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    /// Chunks read to their end go back to the reading thread.
    spent: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    hasher: DigestHasher,
}

impl ChannelReader {
    /// Take the next chunk, if the stream has one; the current one goes back for reuse.
    fn next_chunk(&mut self) -> bool {
        let Ok(b) = self.rx.recv() else {
            return false;
        };
        self.hasher.update(&b);
        let old = std::mem::replace(&mut self.buf, b);
        self.pos = 0;
        // The reading thread may have stopped; then the chunk is simply freed.
        let _ = self.spent.send(old);
        true
    }

    /// Receive (and hash) the rest of the stream; returns how many bytes were never read.
    fn drain(&mut self) -> u64 {
        let mut unread = (self.buf.len() - self.pos) as u64;
        while self.next_chunk() {
            unread += self.buf.len() as u64;
        }
        self.pos = self.buf.len();
        unread
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.buf.len() {
            if !self.next_chunk() {
                break;
            }
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = out.len().min(buf.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}
