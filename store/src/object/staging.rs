//! Staging: how an import writes objects and pins them to its lease before a gc can take them.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use super::frame::{worthwhile, zstd_frame};
use super::{LooseFile, NewObject, PutOutcome};
use crate::digest::ObjectId;
use crate::error::{Error, IoContext, Result};
use crate::store::{LockMode, ObjectCompression, Store};

/// A per-import staging directory `staging/NAME/`; everything in it is garbage after a crash.
///
/// The import does not hold the store lock while it runs, so a gc may sweep at any moment.
/// New loose objects therefore wait in staging, and object files found present are noted, in a
/// batch; [`Staging::flush`] (every [`FLUSH_AT`] objects, and before publishing) pins the batch
/// to the lease under the shared store lock, waits for any sweep that committed before the pin
/// to finish renaming its doomed files (the dooming lock, see [`Store::dooming_lock`]), then
/// renames the waiting files into `objects/`. A file renamed after the pin is safe from every
/// later sweep. A file found before the pin may have been swept in between: if the sweep
/// generation moved since the batch opened, each one is looked at again, and one that is gone
/// fails the import with [`Error::ObjectSwept`]
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
        // A sweep that committed may still be renaming its files away: wait for it.
        let _renamed = self.store.dooming_lock(LockMode::Shared)?;
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
    fn queue_rename(&self, tmp: String, id: ObjectId, size: u64, file: LooseFile) -> Result<()> {
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
        let mut now = self.store.pin_objects(&self.name, &ids)?;
        // A sweep that committed before the pin may still be renaming its doomed files. Only
        // a file this batch found, or one that beat a waiting file to its name, can be one of
        // them: then wait until the sweep's renames are done, and read the generation again
        // (the sweep bumps it once more when they are, so a batch that opened meanwhile looks
        // again). A batch of new content does not wait.
        let mut renamed = None;
        let mut wait_for_renames = || -> Result<u64> {
            if renamed.is_none() {
                renamed = Some(self.store.dooming_lock(LockMode::Shared)?);
            }
            self.store.sweep_generation()
        };
        if !batch.found.is_empty() {
            now = wait_for_renames()?;
        }
        let mut corrections = Vec::new();
        for (tmp, id, size, file) in &batch.waiting {
            let on_disk = match self.publish_temp(tmp, id, *size, *file)? {
                Some(f) => f,
                None => {
                    now = wait_for_renames()?;
                    self.publish_temp_over(tmp, id, *size, *file)?
                }
            };
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
    fn compression(&self, size: u64) -> Option<ObjectCompression> {
        self.store.config.compression.filter(|c| size >= c.min_size)
    }

    /// `content` as a zstd frame, when compression applies and is worthwhile.
    fn compress(&self, id: &ObjectId, content: &[u8], inline: bool) -> Result<Option<Vec<u8>>> {
        let size = content.len() as u64;
        let Some(c) = self.compression(size) else {
            return Ok(None);
        };
        let z = zstd_frame(content, c.level).map_err(|source| Error::Compress {
            id: id.hex(),
            source,
        })?;
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
    pub fn put_found_or_inline(
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
        match self.put_found_or_inline(id, content)? {
            Some(done) => Ok(done),
            None => self.put_by_writing(id, content),
        }
    }

    /// Store content for which [`Staging::put_found_or_inline`] returned `None`: compress and write it
    /// (an object file that appeared since is a dedup hit when the batch is flushed).
    pub fn put_by_writing(&self, id: ObjectId, content: &[u8]) -> Result<(NewObject, PutOutcome)> {
        let size = content.len() as u64;
        if self.is_inline_size(size) {
            let obj = match self.compress(&id, content, true)? {
                Some(z) => NewObject::inline(id, size, z, true),
                None => NewObject::inline(id, size, content.to_vec(), false),
            };
            return Ok((obj, PutOutcome::Inline));
        }
        let z = self.compress(&id, content, false)?;
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
        start_writeback(&f, bytes.len() as u64);
        drop(f);
        self.queue_rename(tmp, id, size, file)?;
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
    fn compress_file(&self, src: &str, dst: &str, size: u64, c: ObjectCompression) -> Result<u64> {
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

    /// Move the (read-only) temp file to its object name if nothing has it; `None` if a file
    /// is there already (see [`Staging::publish_temp_over`]).
    fn publish_temp(
        &self,
        tmp: &str,
        id: &ObjectId,
        _size: u64,
        file: LooseFile,
    ) -> Result<Option<LooseFile>> {
        let rel = id.rel_path();
        match rustix::fs::renameat_with(
            &self.dir,
            tmp,
            &self.store.objects,
            rel.as_str(),
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => Ok(Some(file)),
            Err(rustix::io::Errno::EXIST) => Ok(None),
            Err(e) => Err(Error::io(self.store.path.join("objects").join(rel), e)),
        }
    }

    /// Move the (read-only) temp file to its object name; returns what is there now. An object
    /// file that exists already and holds this content whole is a dedup hit and the temp file
    /// goes; anything else there is a damaged leftover (a crash before its data reached the
    /// disk) and is replaced. Called with no committed sweep's doomed file left at any name.
    fn publish_temp_over(
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

/// Object files from this size on start their writeback as soon as they are written.
const WRITEBACK_FROM: u64 = 64 * 1024;

/// Start writing a new object file's data to the disk now, in the background, so that the
/// `syncfs` before the publish transaction finds little left to write and the disk works while
/// the import parses and hashes (a fresh base-v1 import on the ext4 disk: 1-9 % less wall
/// time, `benches/results/runs/2026-12-07-kvm-epyc-2core/import-ab.md`).
/// `POSIX_FADV_DONTNEED` starts the writeback of dirty pages without waiting for it (as
/// `sync_file_range(WRITE)`, which rustix does not offer) and drops only pages that are clean
/// already; on tmpfs it does nothing. Durability still comes from the `syncfs`: this only moves
/// work earlier.
fn start_writeback(f: &std::fs::File, len: u64) {
    // Small files: the call costs more than the overlap gains (a 10,000-file image of 4-10 KiB
    // objects imported 14 % slower with it on every file).
    if len < WRITEBACK_FROM {
        return;
    }
    if let Err(e) = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed) {
        log::debug!("fadvise(DONTNEED) on a new object file: {e}");
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
        let file = self
            .file
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        start_writeback(&file, self.size);
        drop(file);
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
        staging.queue_rename(tmp, id, size, file)?;
        Ok((NewObject::loose(id, size, file), PutOutcome::Written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ObjectData;
    use crate::object::frame::unzstd_inline;
    use crate::store::StoreOptions;

    fn store(dir: &std::path::Path, compression: Option<ObjectCompression>) -> Store {
        let opts = StoreOptions {
            compression,
            ..StoreOptions::default()
        };
        Store::init(&dir.join("s"), &opts).unwrap()
    }

    #[test]
    fn compressible_content_is_a_frame_and_incompressible_stays_plain() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), Some(ObjectCompression::default()));
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
        let s = store(tmp.path(), Some(ObjectCompression::default()));
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
}
