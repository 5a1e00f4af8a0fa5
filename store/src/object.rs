//! Objects: file contents named by blake3. Small ones live in the index (`objects.inline`), larger
//! ones as loose files `objects/ab/cdef…`, mode 0444, written in staging and renamed into place
//! with `RENAME_NOREPLACE` (an existing name is a dedup hit; both have the same content).
//!
//! With [`Compression`] configured, a content may be stored (loose or inline) as one zstd frame
//! that declares the content size and carries a checksum; `objects.zstd` records which. The name
//! is always the blake3 of the content, so dedup does not depend on how a content is stored.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use rusqlite::OptionalExtension;

use crate::digest::ObjectId;
use crate::error::{Error, IoContext, Result};
use crate::store::{Compression, LockMode, Store};

/// An object produced by an import, to be recorded in the index when the layer is published.
#[derive(Clone, Debug)]
pub struct NewObject {
    pub id: ObjectId,
    pub size: u64,
    /// The stored bytes, for objects kept inline in the index.
    pub inline: Option<Vec<u8>>,
    /// Whether the stored bytes (inline or the loose file) are a zstd frame.
    pub zstd: bool,
    /// Length of the stored bytes.
    pub stored: u64,
}

impl NewObject {
    fn inline(id: ObjectId, size: u64, bytes: Vec<u8>, zstd: bool) -> Self {
        NewObject {
            id,
            size,
            stored: bytes.len() as u64,
            inline: Some(bytes),
            zstd,
        }
    }

    fn loose(id: ObjectId, size: u64, file: LooseFile) -> Self {
        NewObject {
            id,
            size,
            inline: None,
            zstd: file.zstd,
            stored: file.len,
        }
    }
}

/// What is on disk for a loose object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LooseFile {
    pub zstd: bool,
    pub len: u64,
}

/// What [`Staging`] did with an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Kept inline: recorded in the index at publish time.
    Inline,
    /// A new loose file was written.
    Written,
    /// A loose file with this content existed already.
    Deduplicated,
}

/// Filesystem block size the space rule for loose files counts in.
const BLOCK: u64 = 4096;

/// Whether storing `stored` bytes instead of `size` is worth a decompression on every read: a
/// loose file must save at least one block, an inline blob an eighth of its size.
fn worthwhile(size: u64, stored: u64, inline: bool) -> bool {
    if inline {
        stored <= size - size / 8
    } else {
        stored.div_ceil(BLOCK) < size.div_ceil(BLOCK)
    }
}

thread_local! {
    /// One compression context per thread and level: creating one costs more than compressing
    /// a small file.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
}

/// One zstd frame of `content`, with its size and a checksum.
pub(crate) fn zstd_frame(content: &[u8], level: i32) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut c = zstd::bulk::Compressor::new(level)?;
            c.include_checksum(true)?;
            c.include_contentsize(true)?;
            *cell = Some((level, c));
        }
        let (_, c) = cell.as_mut().expect("set above");
        c.compress(content)
    })
}

/// Whether the file `f` of `len` bytes is one complete zstd frame of `size` content bytes, judged
/// from its headers alone (RFC 8878): the frame header declares the size and a checksum, and the
/// chain of block headers ends, with the checksum, exactly at the end of the file.
fn whole_frame(f: &std::fs::File, len: u64, size: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let read_at = |buf: &mut [u8], at: u64| -> io::Result<bool> {
        match f.read_exact_at(buf, at) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    };
    let mut hdr = [0u8; 18];
    let n = hdr.len().min(len as usize);
    if !read_at(&mut hdr[..n], 0)? || n < 6 {
        return Ok(false);
    }
    if !matches!(zstd::zstd_safe::get_frame_content_size(&hdr[..n]), Ok(Some(d)) if d == size) {
        return Ok(false);
    }
    let fhd = hdr[4];
    let single_segment = fhd & 0x20 != 0;
    let has_checksum = fhd & 0x04 != 0;
    let fcs_len = match fhd >> 6 {
        0 => u64::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let did_len = [0, 1, 2, 4][usize::from(fhd & 3)];
    let mut pos = 5 + u64::from(!single_segment) + did_len + fcs_len;
    loop {
        let mut bh = [0u8; 3];
        if !read_at(&mut bh, pos)? {
            return Ok(false);
        }
        let v = u32::from_le_bytes([bh[0], bh[1], bh[2], 0]);
        let body = match (v >> 1) & 3 {
            0 | 2 => u64::from(v >> 3),
            1 => 1,
            _ => return Ok(false),
        };
        pos += 3 + body;
        if pos > len {
            return Ok(false);
        }
        if v & 1 == 1 {
            break;
        }
    }
    Ok(pos + if has_checksum { 4 } else { 0 } == len)
}

/// Decode an inline zstd blob of an object of `size` bytes.
fn unzstd_inline(id: &ObjectId, blob: &[u8], size: u64) -> Result<Vec<u8>> {
    let corrupt = |actual: String| Error::ObjectCorrupt {
        id: id.hex(),
        actual,
    };
    let data = zstd::bulk::decompress(blob, size as usize)
        .map_err(|e| corrupt(format!("inline zstd blob: {e}")))?;
    if data.len() as u64 != size {
        return Err(corrupt(format!("{} bytes, expected {size}", data.len())));
    }
    Ok(data)
}

/// A per-import staging directory `staging/NAME/`; everything in it is garbage after a crash.
///
/// The import does not hold the store lock while it runs, so a gc may sweep at any moment.
/// New loose objects therefore wait in staging, and object files found present are noted, in a
/// batch; [`Staging::flush`] (every [`FLUSH_AT`] objects, and before publishing) pins the batch
/// to the lease under the shared store lock, then renames the waiting files into `objects/`.
/// A file renamed after the pin is safe from every later sweep. A file found before the pin
/// may have been swept in between: if the sweep generation moved since the batch opened, each
/// one is looked at again, and one that is gone fails the import with [`Error::ObjectSwept`]
/// (the import starts over with a new lease, and writes what is gone). Under
/// [`Staging::pin_found_at_once`] (an import's last attempt), a file found present is pinned
/// at once under the shared lock instead, so no sweep can come between, at the cost of a
/// transaction per file found. A content written here counts as new even if, at the flush, a
/// concurrent import's file of the same content won the name.
pub struct Staging<'s> {
    store: &'s Store,
    name: String,
    dir: Dir,
    counter: AtomicU64,
    batch: Mutex<Batch>,
    /// Serializes flushes; holds the sweep generation the last flush read.
    flushed: Mutex<u64>,
    /// Loose objects whose file turned out to be stored differently than this import wrote or
    /// first found it (another writer's file won the name).
    corrections: Mutex<HashMap<ObjectId, LooseFile>>,
    /// Pin each file found present at once, instead of in the next batch.
    pin_at_once: AtomicBool,
}

/// Objects in a batch that flushes pin at once.
pub const FLUSH_AT: usize = 1024;

/// Loose objects since the last flush.
#[derive(Default)]
struct Batch {
    /// Temp files to rename into `objects/`: (temp name, id, content size, file).
    waiting: Vec<(String, ObjectId, u64, LooseFile)>,
    /// Object files found present: (id, content size, file).
    found: Vec<(ObjectId, u64, LooseFile)>,
    /// The sweep generation when the batch opened.
    since: u64,
}

impl Batch {
    fn len(&self) -> usize {
        self.waiting.len() + self.found.len()
    }
}

impl<'s> Staging<'s> {
    pub(crate) fn create(store: &'s Store, name: &str) -> Result<Self> {
        let path = store.path.join("staging").join(name);
        store.staging.create_dir(name).at(&path)?;
        let dir = store.staging.open_dir(name).at(&path)?;
        let generation = {
            let _shared = store.lock(LockMode::Shared)?;
            store.sweep_generation()?
        };
        Ok(Staging {
            store,
            name: name.into(),
            dir,
            counter: AtomicU64::new(0),
            batch: Mutex::new(Batch {
                since: generation,
                ..Batch::default()
            }),
            flushed: Mutex::new(generation),
            corrections: Mutex::new(HashMap::new()),
            pin_at_once: AtomicBool::new(false),
        })
    }

    /// From now on, pin every object file found present at once (see [`Staging`]): an import
    /// that does so cannot fail with [`Error::ObjectSwept`].
    pub fn pin_found_at_once(&self) {
        self.pin_at_once.store(true, Ordering::Relaxed);
    }

    /// The state of the object file of `id`, pinned to this lease if it is present, with no
    /// sweep in between.
    fn find_and_pin(&self, id: ObjectId, size: u64) -> Result<Option<LooseFile>> {
        let _shared = self.store.lock(LockMode::Shared)?;
        let found = self.store.loose_state(&id, size)?;
        if found.is_some() {
            self.store.pin_objects(&self.name, &[id])?;
        }
        Ok(found)
    }

    /// Note an object file found present; flushes a full batch.
    fn found(&self, id: ObjectId, size: u64, file: LooseFile) -> Result<()> {
        let full = {
            let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            b.found.push((id, size, file));
            b.len() >= FLUSH_AT
        };
        if full { self.flush() } else { Ok(()) }
    }

    /// Queue a temp file for its object name; flushes a full batch.
    fn wait(&self, tmp: String, id: ObjectId, size: u64, file: LooseFile) -> Result<()> {
        let full = {
            let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            b.waiting.push((tmp, id, size, file));
            b.len() >= FLUSH_AT
        };
        if full { self.flush() } else { Ok(()) }
    }

    /// Pin the batch to the lease and put its files in place (see [`Staging`]). Every object
    /// written or found before this call is safe from gc once it returns.
    pub fn flush(&self) -> Result<()> {
        let mut generation = self.flushed.lock().unwrap_or_else(|p| p.into_inner());
        let batch = {
            let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(
                &mut *b,
                Batch {
                    since: *generation,
                    ..Batch::default()
                },
            )
        };
        if batch.len() == 0 {
            return Ok(());
        }
        let _shared = self.store.lock(LockMode::Shared)?;
        let ids: Vec<ObjectId> = (batch.waiting.iter().map(|w| w.1))
            .chain(batch.found.iter().map(|f| f.0))
            .collect();
        let now = self.store.pin_objects(&self.name, &ids)?;
        let mut corrections = Vec::new();
        for (tmp, id, size, file) in &batch.waiting {
            let on_disk = self.publish_temp(tmp, id, *size, *file)?;
            if on_disk != *file {
                corrections.push((*id, on_disk));
            }
        }
        if now != batch.since {
            for (id, size, file) in &batch.found {
                match self.store.loose_state(id, *size)? {
                    None => return Err(Error::ObjectSwept { id: id.hex() }),
                    Some(on_disk) if on_disk != *file => corrections.push((*id, on_disk)),
                    Some(_) => {}
                }
            }
        }
        if !corrections.is_empty() {
            let mut c = self.corrections.lock().unwrap_or_else(|p| p.into_inner());
            c.extend(corrections);
        }
        *generation = now;
        Ok(())
    }

    /// How loose objects are stored where that differs from what the import recorded.
    pub(crate) fn corrections(&self) -> HashMap<ObjectId, LooseFile> {
        std::mem::take(&mut *self.corrections.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The staging directory handle (imports may put their own temp files here).
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    fn temp_name(&self) -> String {
        format!("t{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether content of this size stays inline in the index.
    pub fn is_inline_size(&self, size: u64) -> bool {
        size <= self.store.config.inline_threshold
    }

    /// The compression that applies to content of this size, if any.
    fn compression(&self, size: u64) -> Option<Compression> {
        self.store.config.compression.filter(|c| size >= c.min_size)
    }

    /// `content` as a zstd frame, when compression applies and is worthwhile.
    fn compress(&self, content: &[u8], inline: bool) -> Result<Option<Vec<u8>>> {
        let size = content.len() as u64;
        let Some(c) = self.compression(size) else {
            return Ok(None);
        };
        let z = zstd_frame(content, c.level).map_err(|e| Error::io("(zstd)", e))?;
        Ok(worthwhile(size, z.len() as u64, inline).then_some(z))
    }

    /// Store content that is fully in memory.
    pub fn put_bytes(&self, content: &[u8]) -> Result<(NewObject, PutOutcome)> {
        let id = ObjectId::of(content);
        self.put_hashed(id, content)
    }

    /// Store content whose id the caller computed, if that takes neither compression nor a
    /// write: inline content that is not to be compressed, or content whose object file exists
    /// already. `None` means [`Staging::put_hashed`] has work to do.
    pub fn put_cheap(
        &self,
        id: ObjectId,
        content: &[u8],
    ) -> Result<Option<(NewObject, PutOutcome)>> {
        let size = content.len() as u64;
        if self.is_inline_size(size) {
            return Ok(self.compression(size).is_none().then(|| {
                let obj = NewObject::inline(id, size, content.to_vec(), false);
                (obj, PutOutcome::Inline)
            }));
        }
        let at_once = self.pin_at_once.load(Ordering::Relaxed);
        let found = if at_once {
            self.find_and_pin(id, size)?
        } else {
            self.store.loose_state(&id, size)?
        };
        let Some(found) = found else {
            return Ok(None);
        };
        if !at_once {
            self.found(id, size, found)?;
        }
        Ok(Some((
            NewObject::loose(id, size, found),
            PutOutcome::Deduplicated,
        )))
    }

    /// Store content whose id the caller computed.
    pub fn put_hashed(&self, id: ObjectId, content: &[u8]) -> Result<(NewObject, PutOutcome)> {
        match self.put_cheap(id, content)? {
            Some(done) => Ok(done),
            None => self.put_costly(id, content),
        }
    }

    /// Store content for which [`Staging::put_cheap`] returned `None`: compress and write it
    /// (an object file that appeared since is a dedup hit when the batch is flushed).
    pub fn put_costly(&self, id: ObjectId, content: &[u8]) -> Result<(NewObject, PutOutcome)> {
        let size = content.len() as u64;
        if self.is_inline_size(size) {
            let obj = match self.compress(content, true)? {
                Some(z) => NewObject::inline(id, size, z, true),
                None => NewObject::inline(id, size, content.to_vec(), false),
            };
            return Ok((obj, PutOutcome::Inline));
        }
        let z = self.compress(content, false)?;
        // A frame small enough to be inline goes in the index: no file, no inode, no block
        // rounding, and hardlink checkouts copy compressed objects anyway.
        if let Some(z) = z.as_ref().filter(|z| self.is_inline_size(z.len() as u64)) {
            return Ok((
                NewObject::inline(id, size, z.clone(), true),
                PutOutcome::Inline,
            ));
        }
        let bytes = z.as_deref().unwrap_or(content);
        let file = LooseFile {
            zstd: z.is_some(),
            len: bytes.len() as u64,
        };
        let tmp = self.temp_name();
        let mut f = self.create_temp(&tmp)?;
        f.write_all(bytes).at(self.temp_path(&tmp))?;
        drop(f);
        self.wait(tmp, id, size, file)?;
        Ok((NewObject::loose(id, size, file), PutOutcome::Written))
    }

    /// Start streaming a large object into a temp file.
    pub fn writer(&self) -> Result<ObjectWriter<'_, 's>> {
        let tmp = self.temp_name();
        let file = self.create_temp(&tmp)?;
        Ok(ObjectWriter {
            staging: self,
            tmp,
            file: io::BufWriter::with_capacity(1 << 20, file),
            hasher: blake3::Hasher::new(),
            size: 0,
        })
    }

    fn temp_path(&self, tmp: &str) -> std::path::PathBuf {
        self.store.path.join("staging").join(&self.name).join(tmp)
    }

    /// A new temp file, created read-only: the returned handle may still write it, and the
    /// finished object needs no chmod.
    fn create_temp(&self, tmp: &str) -> Result<std::fs::File> {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true).mode(0o444);
        Ok(self
            .dir
            .open_with(tmp, &opts)
            .at(self.temp_path(tmp))?
            .into_std())
    }

    /// Write a zstd frame of the temp file `src` into the temp file `dst`; returns its length.
    fn compress_file(&self, src: &str, dst: &str, size: u64, c: Compression) -> Result<u64> {
        let path = self.temp_path(dst);
        let mut input = self.dir.open(src).at(self.temp_path(src))?.into_std();
        let out = io::BufWriter::with_capacity(1 << 20, self.create_temp(dst)?);
        let run = || -> io::Result<u64> {
            let mut enc = zstd::stream::Encoder::new(out, c.level)?;
            enc.include_checksum(true)?;
            enc.include_contentsize(true)?;
            enc.set_pledged_src_size(Some(size))?;
            io::copy(&mut input, &mut enc)?;
            let file = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
            Ok(file.metadata()?.len())
        };
        run().at(path)
    }

    /// Move the (read-only) temp file to its object name; returns what is there now. An object
    /// file that exists already and holds this content whole is a dedup hit and the temp file
    /// goes; anything else there is a damaged leftover (a crash before its data reached the
    /// disk) and is replaced.
    fn publish_temp(
        &self,
        tmp: &str,
        id: &ObjectId,
        size: u64,
        file: LooseFile,
    ) -> Result<LooseFile> {
        let rel = id.rel_path();
        match rustix::fs::renameat_with(
            &self.dir,
            tmp,
            &self.store.objects,
            rel.as_str(),
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => Ok(file),
            Err(rustix::io::Errno::EXIST) => {
                if let Some(found) = self.store.loose_state(id, size)? {
                    self.dir.remove_file(tmp).at(self.temp_path(tmp))?;
                    return Ok(found);
                }
                log::warn!(
                    "replacing damaged object file {}",
                    self.store.object_path(id).display()
                );
                rustix::fs::renameat(&self.dir, tmp, &self.store.objects, rel.as_str())
                    .map_err(|e| Error::io(self.store.object_path(id), e))?;
                Ok(file)
            }
            Err(e) => Err(Error::io(self.store.path.join("objects").join(rel), e)),
        }
    }

    /// Remove the staging directory and everything in it.
    pub fn remove(self) -> Result<()> {
        let path = self.store.path.join("staging").join(&self.name);
        drop(self.dir);
        self.store.staging.remove_dir_all(&self.name).at(path)
    }
}

/// Streams one object into staging while hashing it.
pub struct ObjectWriter<'a, 's> {
    staging: &'a Staging<'s>,
    tmp: String,
    file: io::BufWriter<std::fs::File>,
    hasher: blake3::Hasher,
    size: u64,
}

impl ObjectWriter<'_, '_> {
    /// Append content.
    pub fn write(&mut self, buf: &[u8]) -> Result<()> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        self.file
            .write_all(buf)
            .at(self.staging.temp_path(&self.tmp))
    }

    /// Finish: name the object, compress it if that applies, and move it into place.
    pub fn finish(self) -> Result<(NewObject, PutOutcome)> {
        let staging = self.staging;
        let path = staging.temp_path(&self.tmp);
        self.file
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        let id = ObjectId::from_hash(self.hasher.finalize());
        let size = self.size;
        if let Some(found) = staging.store.loose_state(&id, size)? {
            staging.dir.remove_file(&self.tmp).at(&path)?;
            staging.found(id, size, found)?;
            return Ok((NewObject::loose(id, size, found), PutOutcome::Deduplicated));
        }
        let mut tmp = self.tmp;
        let mut file = LooseFile {
            zstd: false,
            len: size,
        };
        if let Some(c) = staging.compression(size) {
            let ztmp = staging.temp_name();
            let zlen = staging.compress_file(&tmp, &ztmp, size, c)?;
            let (keep, drop) = if worthwhile(size, zlen, false) {
                file = LooseFile {
                    zstd: true,
                    len: zlen,
                };
                (ztmp, tmp)
            } else {
                (tmp, ztmp)
            };
            staging
                .dir
                .remove_file(&drop)
                .at(staging.temp_path(&drop))?;
            tmp = keep;
        }
        staging.wait(tmp, id, size, file)?;
        Ok((NewObject::loose(id, size, file), PutOutcome::Written))
    }
}

/// Object lookups for a long read (a checkout, a disk, an export): its own index connection in
/// one read transaction, so a lookup is one prepared statement, not a lock round trip per object.
pub struct ObjectReader<'s> {
    store: &'s Store,
    conn: rusqlite::Connection,
}

type ObjectRow = (i64, bool, Option<Vec<u8>>, bool);

/// Object rows `o` beside their inline contents `c` (`c.data` is NULL for a loose object), as a
/// literal for `concat!`.
macro_rules! objects_with_contents {
    () => {
        "objects o LEFT JOIN inline_contents c ON c.id = o.content"
    };
}
pub(crate) use objects_with_contents;

/// Look up an object's row.
fn object_row(conn: &rusqlite::Connection, id: &ObjectId) -> Result<ObjectRow> {
    conn.prepare_cached(concat!(
        "SELECT o.size, o.loose, c.data, o.zstd FROM ",
        objects_with_contents!(),
        " WHERE o.id = ?1"
    ))?
    .query_row([&id.as_bytes()[..]], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .optional()?
    .ok_or_else(|| Error::ObjectMissing { id: id.hex() })
}

impl ObjectReader<'_> {
    fn row(&self, id: &ObjectId) -> Result<ObjectRow> {
        object_row(&self.conn, id)
    }

    /// Open the content of an object.
    pub fn read(&self, id: &ObjectId) -> Result<ObjectData> {
        let (size, _, inline, zstd) = self.row(id)?;
        self.store.object_data(id, size as u64, inline, zstd)
    }

    /// Whether the object is a plain loose file, one a checkout may link.
    pub fn is_plain_loose(&self, id: &ObjectId) -> Result<bool> {
        let (_, loose, _, zstd) = self.row(id)?;
        Ok(loose && !zstd)
    }
}

impl Drop for ObjectReader<'_> {
    fn drop(&mut self) {
        // Ends the read transaction; a read-only one has nothing to lose.
        let _ = self.conn.execute_batch("ROLLBACK");
    }
}

/// The content of an object, ready to read.
pub enum ObjectData {
    Inline(Vec<u8>),
    /// A loose file: the content itself, or one zstd frame of it.
    Loose {
        file: std::fs::File,
        size: u64,
        zstd: bool,
    },
}

impl ObjectData {
    /// The content size.
    pub fn size(&self) -> u64 {
        match self {
            ObjectData::Inline(v) => v.len() as u64,
            ObjectData::Loose { size, .. } => *size,
        }
    }

    /// A reader over the content that fails, rather than ending early or late, when the stored
    /// bytes do not hold exactly the recorded size.
    pub fn into_reader(self) -> io::Result<Box<dyn Read + Send>> {
        let size = self.size();
        let inner: Box<dyn Read + Send> = match self {
            ObjectData::Inline(v) => Box::new(io::Cursor::new(v)),
            ObjectData::Loose {
                file, zstd: true, ..
            } => Box::new(zstd::stream::Decoder::new(file)?),
            ObjectData::Loose { file, .. } => Box::new(file),
        };
        Ok(Box::new(Exact { inner, left: size }))
    }

    /// Copy the whole content into `w`; returns the bytes copied.
    pub fn copy_to(self, w: &mut impl Write) -> io::Result<u64> {
        match self {
            ObjectData::Inline(v) => w.write_all(&v).map(|()| v.len() as u64),
            data => io::copy(&mut data.into_reader()?, w),
        }
    }
}

/// Yields exactly `left` more bytes of `inner`, or an error.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            return match self.inner.read(&mut [0u8])? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "object longer than its recorded size",
                )),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..max])? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "object shorter than its recorded size",
            )),
            n => {
                self.left -= n as u64;
                Ok(n)
            }
        }
    }
}

impl Store {
    /// What the loose file for `id` holds, if it holds the whole content of `size` bytes: a file
    /// of exactly that length, or a shorter zstd frame that declares that content size and whose
    /// blocks and checksum end exactly at the end of the file. Anything else (no file, a
    /// truncated or empty leftover of a crash) is `None`.
    pub fn loose_state(&self, id: &ObjectId, size: u64) -> Result<Option<LooseFile>> {
        let rel = id.rel_path();
        let path = || self.path.join("objects").join(id.rel_path());
        let len = match rustix::fs::statat(
            &self.objects,
            rel.as_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st.st_size as u64,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(Error::io(path(), e)),
        };
        if len == size {
            return Ok(Some(LooseFile { zstd: false, len }));
        }
        if len > size {
            return Ok(None);
        }
        let f = match self.objects.open(&rel) {
            Ok(f) => f.into_std(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path(), e)),
        };
        Ok(whole_frame(&f, len, size)
            .at(path())?
            .then_some(LooseFile { zstd: true, len }))
    }

    /// The path of a loose object (for messages and external tools).
    pub fn object_path(&self, id: &ObjectId) -> std::path::PathBuf {
        self.path.join("objects").join(id.rel_path())
    }

    /// Open the content of an object recorded in the index.
    pub fn read_object(&self, id: &ObjectId) -> Result<ObjectData> {
        let (size, _, inline, zstd) = object_row(&self.conn(), id)?;
        self.object_data(id, size as u64, inline, zstd)
    }

    /// An object's content from its row.
    fn object_data(
        &self,
        id: &ObjectId,
        size: u64,
        inline: Option<Vec<u8>>,
        zstd: bool,
    ) -> Result<ObjectData> {
        match inline {
            Some(blob) if zstd => Ok(ObjectData::Inline(unzstd_inline(id, &blob, size)?)),
            Some(data) => Ok(ObjectData::Inline(data)),
            None => self.open_loose(id, size, zstd),
        }
    }

    /// Lookups for a long read, in one read transaction of their own.
    pub fn object_reader(&self) -> Result<ObjectReader<'_>> {
        let conn = crate::store::open_reader(&self.path)?;
        conn.execute_batch("BEGIN")?;
        Ok(ObjectReader { store: self, conn })
    }

    /// Open a loose object file.
    pub fn open_loose(&self, id: &ObjectId, size: u64, zstd: bool) -> Result<ObjectData> {
        match self.objects.open(id.rel_path()) {
            Ok(f) => Ok(ObjectData::Loose {
                file: f.into_std(),
                size,
                zstd,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::ObjectMissing { id: id.hex() })
            }
            Err(e) => Err(Error::io(self.object_path(id), e)),
        }
    }

    /// Start a staging area named `name` (normally a lease id).
    pub fn staging(&self, name: &str) -> Result<Staging<'_>> {
        Staging::create(self, name)
    }
}

/// The prefix a gc sweep gives the object files it removes (renamed in their own directory
/// under the exclusive lock, unlinked after it).
pub const DOOMED_PREFIX: &str = ".gc-";

/// The file that marks a gc sweep in progress, in the store's root.
pub const SWEEP_MARKER: &str = "sweeping";

/// What a scan of `objects/` found.
#[derive(Debug, Default)]
pub struct ObjectScan {
    /// Loose object files.
    pub ids: Vec<ObjectId>,
    /// Files a gc sweep doomed but did not unlink (it was killed): `ab/.gc-cdef…`.
    pub doomed: Vec<String>,
    /// Anything else: `ab/NAME`.
    pub other: Vec<String>,
}

impl Store {
    /// Scan `objects/` (one directory read per subdirectory, no stat), subdirectories in
    /// parallel.
    pub fn scan_objects(&self) -> Result<ObjectScan> {
        use rayon::prelude::*;
        let scan_dir = |i: u8| -> Result<ObjectScan> {
            let mut out = ObjectScan::default();
            let sub = format!("{i:02x}");
            let path = self.path.join("objects").join(&sub);
            let dir = self.objects.open_dir(&sub).at(&path)?;
            for ent in dir.entries().at(&path)? {
                let name = ent.at(&path)?.file_name();
                let name = name.to_string_lossy();
                if let Ok(id) = format!("{sub}{name}").parse::<ObjectId>() {
                    out.ids.push(id);
                } else if name.starts_with(DOOMED_PREFIX) {
                    out.doomed.push(format!("{sub}/{name}"));
                } else {
                    out.other.push(format!("{sub}/{name}"));
                }
            }
            Ok(out)
        };
        let parts: Vec<ObjectScan> = (0..=255u8)
            .into_par_iter()
            .map(scan_dir)
            .collect::<Result<_>>()?;
        let mut all = ObjectScan::default();
        for p in parts {
            all.ids.extend(p.ids);
            all.doomed.extend(p.doomed);
            all.other.extend(p.other);
        }
        Ok(all)
    }

    /// Every loose object file's id (one directory scan, no stat).
    pub fn loose_ids(&self) -> Result<Vec<ObjectId>> {
        Ok(self.scan_objects()?.ids)
    }

    /// The size of a loose object file (0 if it is gone).
    pub fn loose_size(&self, id: &ObjectId) -> u64 {
        self.objects
            .symlink_metadata(id.rel_path())
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Every loose object file with its size.
    pub fn loose_files(&self) -> Result<Vec<(ObjectId, u64)>> {
        Ok(self
            .loose_ids()?
            .into_iter()
            .map(|id| (id, self.loose_size(&id)))
            .collect())
    }

    /// Rename a loose object file to its doomed name in the same directory (gc, under the
    /// exclusive lock, with the sweep marker present); a missing one is fine. Returns the doomed
    /// name, `ab/.gc-cdef…`.
    pub fn doom_loose(&self, id: &ObjectId) -> Result<String> {
        let rel = id.rel_path();
        let (sub, rest) = rel.split_at(3);
        let doomed = format!("{sub}{DOOMED_PREFIX}{rest}");
        match rustix::fs::renameat(&self.objects, rel.as_str(), &self.objects, doomed.as_str()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(doomed),
            Err(e) => Err(Error::io(self.object_path(id), e)),
        }
    }

    /// Mark the start of a sweep (gc, under the exclusive lock): gc renames doomed files while
    /// its transaction deletes their rows, so until it commits, a file may be doomed whose row
    /// still stands. Opening a store whose marker is present (the sweep was killed) puts such
    /// files back, see [`Store::recover_sweep`].
    pub fn begin_sweep(&self) -> Result<()> {
        self.root
            .write(SWEEP_MARKER, b"")
            .at(self.path.join(SWEEP_MARKER))
    }

    /// Remove the sweep marker: the sweep committed, or its doomed files were put back.
    pub fn end_sweep(&self) -> Result<()> {
        match self.root.remove_file(SWEEP_MARKER) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(self.path.join(SWEEP_MARKER), e))
            }
            _ => Ok(()),
        }
    }

    /// Put back every doomed file whose object still has a row and no file (a sweep that did
    /// not commit). Returns how many.
    pub fn restore_doomed(&self) -> Result<usize> {
        let doomed = self.scan_objects()?.doomed;
        let conn = self.conn();
        let mut has_row = conn.prepare("SELECT EXISTS (SELECT 1 FROM objects WHERE id = ?1)")?;
        let mut restored = 0;
        for d in &doomed {
            let Some((sub, rest)) = d.split_once(DOOMED_PREFIX) else {
                continue;
            };
            let Ok(id) = format!("{}{rest}", sub.trim_end_matches('/')).parse::<ObjectId>() else {
                continue;
            };
            if !has_row.query_row([&id.as_bytes()[..]], |r| r.get::<_, bool>(0))? {
                continue;
            }
            match rustix::fs::renameat_with(
                &self.objects,
                d.as_str(),
                &self.objects,
                id.rel_path().as_str(),
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) => restored += 1,
                Err(rustix::io::Errno::EXIST | rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(Error::io(self.path.join("objects").join(d), e)),
            }
        }
        Ok(restored)
    }

    /// Finish a sweep that was killed before it committed (see [`Store::begin_sweep`]); called
    /// when the store is opened. Waits for the exclusive lock, so a sweep in progress ends first.
    pub(crate) fn recover_sweep(&self) -> Result<()> {
        if !self.root.exists(SWEEP_MARKER) {
            return Ok(());
        }
        let _exclusive = self.lock(LockMode::Exclusive)?;
        if !self.root.exists(SWEEP_MARKER) {
            return Ok(());
        }
        let n = self.restore_doomed()?;
        log::warn!("a gc sweep was interrupted; {n} object files put back");
        self.end_sweep()
    }

    /// Unlink a doomed file (`ab/.gc-cdef…`); a missing one is fine.
    pub fn unlink_doomed(&self, doomed: &str) -> Result<()> {
        match rustix::fs::unlinkat(&self.objects, doomed, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io(self.path.join("objects").join(doomed), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn store(dir: &std::path::Path, compression: Option<Compression>) -> Store {
        let opts = StoreOptions {
            compression,
            ..StoreOptions::default()
        };
        Store::init(&dir.join("s"), &opts).unwrap()
    }

    #[test]
    fn worthwhile_counts_blocks_for_files_and_an_eighth_inline() {
        assert!(worthwhile(8192, 4096, false));
        assert!(!worthwhile(8000, 4097, false));
        assert!(worthwhile(5000, 4000, false));
        assert!(!worthwhile(4096, 100, false));
        assert!(worthwhile(1000, 875, true));
        assert!(!worthwhile(1000, 876, true));
    }

    #[test]
    fn compressible_content_is_a_frame_and_incompressible_stays_plain() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), Some(Compression::default()));
        let st = s.staging("t").unwrap();
        let mut noise = vec![0u8; 100_000];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in &mut noise {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        // Words picked at random: compresses well, but not into an inline-sized frame.
        let words: [&[u8]; 8] = [
            b"all ", b"work ", b"and ", b"no ", b"play ", b"makes ", b"jack ", b"dull ",
        ];
        let text: Vec<u8> = noise
            .iter()
            .flat_map(|b| words[(b & 7) as usize])
            .copied()
            .take(100_000)
            .collect();
        // Repetitive text compresses into an inline-sized frame: stored in the index.
        let rep: Vec<u8> = b"all work and no play "
            .iter()
            .cycle()
            .take(100_000)
            .copied()
            .collect();
        let (r, outcome) = st.put_bytes(&rep).unwrap();
        assert_eq!(outcome, PutOutcome::Inline);
        assert!(r.zstd && r.stored < 4096 && r.inline.is_some());
        let (t, _) = st.put_bytes(&text).unwrap();
        let (n, _) = st.put_bytes(&noise).unwrap();
        st.flush().unwrap();
        assert!(t.zstd && t.stored > 4096 && t.stored < 50_000 && t.inline.is_none());
        assert!(!n.zstd && n.stored == noise.len() as u64);
        // Small text compresses inline too; tiny contents are left alone.
        let (i, outcome) = st.put_bytes(&rep[..2000]).unwrap();
        assert_eq!(outcome, PutOutcome::Inline);
        assert!(i.zstd && i.stored < 200);
        let (tiny, _) = st.put_bytes(b"short").unwrap();
        assert!(!tiny.zstd);
        // The same content again is a dedup hit, whatever its encoding.
        assert_eq!(st.put_bytes(&text).unwrap().1, PutOutcome::Deduplicated);
        assert_eq!(st.put_bytes(&noise).unwrap().1, PutOutcome::Deduplicated);
        // Reading through the file gives the content back.
        let f = s.objects.open(t.id.rel_path()).unwrap().into_std();
        let mut back = Vec::new();
        let data = ObjectData::Loose {
            file: f,
            size: t.size,
            zstd: true,
        };
        data.copy_to(&mut back).unwrap();
        assert_eq!(back, text);
        assert_eq!(
            unzstd_inline(&i.id, i.inline.as_ref().unwrap(), i.size).unwrap(),
            &rep[..2000]
        );
        assert_eq!(
            unzstd_inline(&r.id, r.inline.as_ref().unwrap(), r.size).unwrap(),
            rep
        );
        st.remove().unwrap();
    }

    #[test]
    fn streamed_objects_compress_when_it_pays() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), Some(Compression::default()));
        let st = s.staging("t").unwrap();
        let mut w = st.writer().unwrap();
        let line = b"0123456789abcdef\n";
        for _ in 0..100_000 {
            w.write(line).unwrap();
        }
        let (obj, outcome) = w.finish().unwrap();
        st.flush().unwrap();
        assert_eq!(outcome, PutOutcome::Written);
        assert!(obj.zstd && obj.stored < obj.size / 10);
        assert_eq!(
            s.loose_state(&obj.id, obj.size).unwrap(),
            Some(LooseFile {
                zstd: true,
                len: obj.stored
            })
        );
        // Only the object is left: both temp files are gone.
        assert_eq!(st.dir().entries().unwrap().count(), 0);
        let mut w = st.writer().unwrap();
        for _ in 0..100_000 {
            w.write(line).unwrap();
        }
        assert_eq!(w.finish().unwrap().1, PutOutcome::Deduplicated);
        st.remove().unwrap();
    }

    #[test]
    fn readers_refuse_contents_of_the_wrong_length() {
        let short = Exact {
            inner: &b"abc"[..],
            left: 4,
        };
        let long = Exact {
            inner: &b"abcde"[..],
            left: 4,
        };
        let exact = Exact {
            inner: &b"abcd"[..],
            left: 4,
        };
        for (mut r, ok) in [(short, false), (long, false), (exact, true)] {
            let mut out = Vec::new();
            assert_eq!(r.read_to_end(&mut out).is_ok(), ok);
        }
    }
}
