//! Importing one layer blob: verify its digest while streaming, decompress (sniffed and checked
//! against the media type), parse the tar, store contents as objects, verify the diff_id.
//!
//! Per layer, one thread reads, sha256es and inflates the blob into 256 KiB chunks; one
//! sha256es the chunks (the diff_id), parses entries and blake3-hashes contents where the chunk
//! holds them; [`WRITERS`] threads compress and write the contents that fit in memory, handed
//! over in batches, so parsing never waits on a write. They meet in bounded channels, so memory
//! stays bounded whatever the layer size. A content is copied out of its chunk only for a writer
//! (or when it spans chunks), and parsed chunks go back to the reading thread for reuse.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use layerstore_store::tree::{self, display_path};
use layerstore_store::{
    Digest, DigestHasher, EntryKind, LayerRecord, Limits, NewObject, ObjectId, PutOutcome, Staging,
    TreeEntry,
};

use crate::error::{Error, Result};
use crate::tarparse::{TarEntry, TarError, TarKind, TarLimits, TarParser};

/// Compression of a layer blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression a layer media type promises.
pub fn media_type_compression(media_type: &str) -> Option<Compression> {
    Some(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
        _ => return None,
    })
}

fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// What the reading thread measured.
struct BlobStats {
    digest: Digest,
    size: u64,
    tar_size: u64,
}

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
}

const CHUNK: usize = 256 * 1024;
/// Content up to this size is hashed in memory first, so a dedup hit never touches the disk.
const IN_MEMORY_MAX: u64 = 8 << 20;

/// Import a layer blob read from `blob`.
pub fn import_layer(
    input: &LayerInput,
    blob: Box<dyn Read + Send + '_>,
    staging: &Staging<'_>,
    limits: &Limits,
    progress: &dyn LayerProgress,
) -> Result<(LayerRecord, LayerStats)> {
    let ((mut record, lstats), tar_size) = stream_layer(input, blob, limits, progress, |r| {
        parse_layer(input, r, staging, limits)
    })?;
    record.tar_size = tar_size;
    Ok((record, lstats))
}

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
            });
        }
        let diff_id = hasher.finish();
        if stats.digest != input.blob_digest {
            return Err(Error::DigestMismatch {
                digest: digest_s.clone(),
                actual: stats.digest.to_string(),
            });
        }
        if stats.size != input.blob_size {
            return Err(Error::SizeMismatch {
                digest: digest_s.clone(),
                expected: input.blob_size,
                actual: stats.size,
            });
        }
        if diff_id != input.expected_diff_id {
            return Err(Error::DiffIdMismatch {
                index: input.index,
                digest: digest_s.clone(),
                expected: input.expected_diff_id.to_string(),
                actual: diff_id.to_string(),
            });
        }
        Ok((parsed, stats.tar_size))
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
            .min((self.limit + 1 - self.count).min(usize::MAX as u64) as usize);
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
    expected: Compression,
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
        .map_err(|e| Error::io(format!("blob {digest_s}"), e))?
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
        Compression::None => Box::new(&mut hr),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut hr)),
        Compression::Zstd => {
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
    io::copy(&mut hr, &mut io::sink()).map_err(|e| Error::io(format!("blob {digest_s}"), e))?;
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

/// Threads per layer that write (and compress) in-memory contents.
const WRITERS: usize = 2;
/// Batches queued for the writers at most.
const WRITE_QUEUE: usize = 2;
/// Contents go to the writers in batches of about this many bytes, or [`BATCH_LEN`] contents,
/// so that small files do not cost a thread wake-up each. A batch holds at most
/// `max(BATCH_BYTES, IN_MEMORY_MAX)` bytes.
const BATCH_BYTES: usize = 1 << 20;
const BATCH_LEN: usize = 64;

type Written = (NewObject, PutOutcome);
type Batch = Vec<(ObjectId, Vec<u8>)>;

/// Writer threads for contents already hashed in memory, for which
/// [`Staging::put_cheap`] found nothing cheap to do.
struct WritePool<'scope> {
    tx: Option<mpsc::SyncSender<Batch>>,
    batch: Batch,
    batch_bytes: usize,
    workers: Vec<std::thread::ScopedJoinHandle<'scope, Result<Vec<Written>>>>,
    failed: Arc<AtomicBool>,
}

impl<'scope> WritePool<'scope> {
    fn start<'env>(
        s: &'scope std::thread::Scope<'scope, 'env>,
        staging: &'scope Staging<'_>,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Batch>(WRITE_QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let failed = Arc::new(AtomicBool::new(false));
        let workers = (0..WRITERS)
            .map(|_| {
                let rx = Arc::clone(&rx);
                let failed = Arc::clone(&failed);
                s.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let job = rx.lock().map_err(|_| writer_stopped())?.recv();
                        let Ok(batch) = job else {
                            return Ok(done);
                        };
                        for (id, data) in batch {
                            match staging.put_costly(id, &data) {
                                Ok(w) => done.push(w),
                                Err(e) => {
                                    failed.store(true, Ordering::Relaxed);
                                    return Err(Error::Store(e));
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        WritePool {
            tx: Some(tx),
            batch: Vec::new(),
            batch_bytes: 0,
            workers,
            failed,
        }
    }

    /// Queue a content for writing; fails once a writer has failed.
    fn submit(&mut self, id: ObjectId, data: Vec<u8>) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(writer_stopped());
        }
        if self.batch_bytes + data.len() > BATCH_BYTES {
            self.send_batch()?;
        }
        self.batch_bytes += data.len();
        self.batch.push((id, data));
        if self.batch.len() >= BATCH_LEN {
            self.send_batch()?;
        }
        Ok(())
    }

    fn send_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        let tx = self.tx.as_ref().expect("open until finish");
        tx.send(std::mem::take(&mut self.batch))
            .map_err(|_| writer_stopped())
    }

    /// Wait for every queued write (after sending the last batch if `complete`); the first
    /// writer error, if any.
    fn finish(mut self, complete: bool) -> Result<Vec<Written>> {
        let last = if complete { self.send_batch() } else { Ok(()) };
        drop(self.tx.take());
        let mut all = Vec::new();
        let mut first_err = None;
        for w in self.workers.drain(..) {
            match w.join() {
                Ok(Ok(done)) => all.extend(done),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        first_err.map_or(last.map(|()| all), Err)
    }
}

fn writer_stopped() -> Error {
    Error::Io {
        path: "(object writer)".into(),
        source: io::Error::other("an object writer stopped"),
    }
}

/// Add what was written to the layer's objects and counters.
fn count_written(stats: &mut LayerStats, objects: &mut HashMap<ObjectId, NewObject>, w: Written) {
    let (obj, outcome) = w;
    match outcome {
        PutOutcome::Inline => stats.inline_objects += 1,
        PutOutcome::Written => {
            stats.new_objects += 1;
            stats.new_bytes += obj.size;
        }
        PutOutcome::Deduplicated => stats.dedup_hits += 1,
    }
    objects.entry(obj.id).or_insert(obj);
}

/// What the layer knows about an earlier entry, for hard links.
struct Seen {
    kind: EntryKind,
    object: Option<ObjectId>,
    size: u64,
}

fn parse_layer(
    input: &LayerInput,
    r: &mut ChannelReader,
    staging: &Staging<'_>,
    limits: &Limits,
) -> Result<(LayerRecord, LayerStats)> {
    std::thread::scope(|s| {
        let mut pool = WritePool::start(s, staging);
        let parsed = parse_entries(input, r, staging, limits, &mut pool);
        let written = pool.finish(parsed.is_ok());
        // A writer's error is the cause of a parse stopped by it.
        let written = written?;
        let (mut record, mut stats, mut objects) = parsed?;
        for w in written {
            count_written(&mut stats, &mut objects, w);
        }
        record.objects = objects.into_values().collect();
        Ok((record, stats))
    })
}

type Parsed = (LayerRecord, LayerStats, HashMap<ObjectId, NewObject>);

fn parse_entries(
    input: &LayerInput,
    r: &mut ChannelReader,
    staging: &Staging<'_>,
    limits: &Limits,
    pool: &mut WritePool<'_>,
) -> Result<Parsed> {
    let digest_s = input.blob_digest.to_string();
    let tar_err = |e: TarError| Error::Tar {
        digest: digest_s.clone(),
        offset: e.offset,
        reason: match e.io {
            Some(io) => format!("{}: {io}", e.reason),
            None => e.reason,
        },
    };
    let mut p = TarParser::new(
        r,
        TarLimits {
            max_record: limits.max_pax_record,
            max_raw_data: 1 << 20,
            max_trailer: 16 << 20,
        },
    );
    let path_limits = limits.paths();
    let mut entries: Vec<TreeEntry> = Vec::new();
    let mut sink = Contents {
        staging,
        pool,
        queued: HashSet::new(),
        objects: HashMap::new(),
        stats: LayerStats::default(),
    };
    let mut seen: HashMap<Vec<u8>, Seen> = HashMap::new();
    while let Some(te) = p.next_entry().map_err(tar_err)? {
        sink.stats.entries += 1;
        if sink.stats.entries > limits.max_entries {
            return Err(Error::TooLarge {
                what: format!("entry count of layer {digest_s}"),
                limit: limits.max_entries,
            });
        }
        let bad = |reason: &str| Error::BadEntry {
            digest: digest_s.clone(),
            path: display_path(&te.path),
            reason: reason.to_string(),
        };
        let path = tree::normalize(&te.path, &path_limits).map_err(bad)?;
        let xattr_bytes: usize = te.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum();
        if xattr_bytes as u64 > limits.max_xattr_bytes {
            return Err(bad("extended attributes are too large"));
        }
        if te.xattrs.iter().any(|(k, _)| k.contains(&0)) {
            return Err(bad("xattr name contains a NUL byte"));
        }
        if te.uid > u64::from(u32::MAX - 1) || te.gid > u64::from(u32::MAX - 1) {
            return Err(bad("uid or gid does not fit in 32 bits"));
        }
        // AUFS bookkeeping (`.wh..wh.plnk/…`, `.wh..wh.aufs`) carries nothing for the tree; its data
        // stays in the skeleton.
        if path
            .split(|&b| b == b'/')
            .any(|c| c.starts_with(b".wh..wh.") && c != b".wh..wh..opq")
        {
            continue;
        }
        let name = tree::file_name(&path);
        // Whiteouts: `.wh..wh..opq` hides a directory's lower children, `.wh.NAME` removes NAME,
        // other `.wh..wh.*` names are AUFS bookkeeping and carry nothing.
        if let Some(target) = name.strip_prefix(b".wh.") {
            let parent = tree::parent(&path).unwrap_or_default().to_vec();
            let kind = if target == b".wh..opq" {
                EntryKind::Opaque
            } else if target.is_empty() || target == b"." || target == b".." {
                return Err(bad("whiteout names nothing"));
            } else {
                EntryKind::Whiteout
            };
            let mut e = TreeEntry::implicit_dir(if kind == EntryKind::Opaque {
                parent
            } else {
                tree::join(&parent, target)
            });
            e.kind = kind;
            entries.push(e);
            continue;
        }
        if path.is_empty() && te.kind != TarKind::Directory {
            return Err(bad("the image root must be a directory"));
        }
        let mut e = to_entry(&te, path.clone());
        match te.kind {
            TarKind::Regular => {
                let id = if te.size <= IN_MEMORY_MAX {
                    // Hashed in memory; copied out of the reader's buffer only for a writer, or
                    // when the content spans chunks.
                    let whole = p.buffered_content(|data| {
                        let id = ObjectId::of(data);
                        sink.in_memory(id, Cow::Borrowed(data)).map(|()| id)
                    });
                    match whole.map_err(tar_err)? {
                        Some(id) => id?,
                        None => {
                            let mut data = Vec::with_capacity(te.size as usize);
                            p.each_content(|b| {
                                data.extend_from_slice(b);
                                Ok::<_, TarError>(())
                            })
                            .map_err(tar_err)?;
                            let id = ObjectId::of(&data);
                            sink.in_memory(id, Cow::Owned(data))?;
                            id
                        }
                    }
                } else {
                    let w = stream_content(&mut p, staging).map_err(|err| match err {
                        ContentError::Tar(t) => tar_err(t),
                        ContentError::Store(s) => Error::Store(s),
                    })?;
                    let id = w.0.id;
                    sink.written(w);
                    id
                };
                p.content_done(te.size, id);
                sink.stats.files += 1;
                sink.stats.content_bytes += te.size;
                e.object = Some(id);
            }
            TarKind::Hardlink => {
                let raw = te.link.as_deref().unwrap_or_default();
                let target = tree::normalize(raw, &path_limits).map_err(bad)?;
                if target == path {
                    return Err(bad("hard link to itself"));
                }
                let t = seen
                    .get(&target)
                    .ok_or_else(|| bad("hard link to an entry not earlier in this layer"))?;
                if t.kind == EntryKind::Directory {
                    return Err(bad("hard link to a directory"));
                }
                e.object = t.object;
                e.size = t.size;
                e.link = Some(target);
            }
            _ => {}
        }
        seen.insert(
            path,
            Seen {
                kind: e.kind,
                object: e.object,
                size: e.size,
            },
        );
        entries.push(e);
    }
    let skeleton = std::mem::take(&mut p.skeleton)
        .finish()
        .map_err(|e| Error::io("(skeleton)", e))?;
    Ok((
        LayerRecord {
            diff_id: input.expected_diff_id,
            tar_size: p.position(),
            entries,
            skeleton,
            objects: Vec::new(),
        },
        sink.stats,
        sink.objects,
    ))
}

fn to_entry(te: &TarEntry, path: Vec<u8>) -> TreeEntry {
    let kind = match te.kind {
        TarKind::Regular => EntryKind::Regular,
        TarKind::Hardlink => EntryKind::Hardlink,
        TarKind::Symlink => EntryKind::Symlink,
        TarKind::CharDevice => EntryKind::CharDevice,
        TarKind::BlockDevice => EntryKind::BlockDevice,
        TarKind::Directory => EntryKind::Directory,
        TarKind::Fifo => EntryKind::Fifo,
    };
    TreeEntry {
        path,
        kind,
        mode: te.mode,
        uid: te.uid,
        gid: te.gid,
        mtime: te.mtime,
        mtime_nsec: te.mtime_nsec,
        size: if kind == EntryKind::Regular {
            te.size
        } else {
            0
        },
        object: None,
        link: if kind == EntryKind::Symlink {
            te.link.clone()
        } else {
            None
        },
        dev_major: te.dev_major,
        dev_minor: te.dev_minor,
        xattrs: te.xattrs.clone(),
    }
}

enum ContentError {
    Tar(TarError),
    Store(layerstore_store::Error),
}

impl From<TarError> for ContentError {
    fn from(e: TarError) -> Self {
        ContentError::Tar(e)
    }
}

/// Where a layer's contents go, and what they added up to.
struct Contents<'a, 'scope> {
    staging: &'a Staging<'a>,
    pool: &'a mut WritePool<'scope>,
    /// Contents handed to the writers (written once even if the layer holds them twice).
    queued: HashSet<ObjectId>,
    objects: HashMap<ObjectId, NewObject>,
    stats: LayerStats,
}

impl Contents<'_, '_> {
    fn written(&mut self, w: Written) {
        count_written(&mut self.stats, &mut self.objects, w);
    }

    /// A content hashed in memory: stored here if that is cheap (already stored, or inline as it
    /// is), else handed to a writer (which needs its own copy).
    fn in_memory(&mut self, id: ObjectId, data: Cow<'_, [u8]>) -> Result<()> {
        if self.queued.contains(&id) {
            if self.staging.is_inline_size(data.len() as u64) {
                self.stats.inline_objects += 1;
            } else {
                self.stats.dedup_hits += 1;
            }
        } else if let Some(w) = self.staging.put_cheap(id, &data)? {
            self.written(w);
        } else {
            self.queued.insert(id);
            self.pool.submit(id, data.into_owned())?;
        }
        Ok(())
    }
}

/// Stream the current entry's content into an object file.
fn stream_content<R: BufRead>(
    p: &mut TarParser<R>,
    staging: &Staging<'_>,
) -> Result<Written, ContentError> {
    let mut w = staging.writer().map_err(ContentError::Store)?;
    p.each_content(|b| w.write(b).map_err(ContentError::Store))?;
    w.finish().map_err(ContentError::Store)
}
