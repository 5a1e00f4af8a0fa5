//! Objects: file contents named by blake3. Small ones live in the index (`objects.inline`), larger
//! ones as loose files `objects/ab/cdef…`, mode 0444, written in staging and renamed into place
//! with `RENAME_NOREPLACE` (an existing name is a dedup hit; both have the same content).

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::{Dir, OpenOptions, Permissions, PermissionsExt};
use rusqlite::OptionalExtension;

use crate::digest::ObjectId;
use crate::error::{Error, IoContext, Result};
use crate::store::Store;

/// An object produced by an import, to be recorded in the index when the layer is published.
#[derive(Clone, Debug)]
pub struct NewObject {
    pub id: ObjectId,
    pub size: u64,
    /// The content, for objects kept inline in the index.
    pub inline: Option<Vec<u8>>,
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

/// A per-import staging directory `staging/NAME/`; everything in it is garbage after a crash.
pub struct Staging<'s> {
    store: &'s Store,
    name: String,
    dir: Dir,
    counter: AtomicU64,
}

impl<'s> Staging<'s> {
    pub(crate) fn create(store: &'s Store, name: &str) -> Result<Self> {
        let path = store.path.join("staging").join(name);
        store.staging.create_dir(name).at(&path)?;
        let dir = store.staging.open_dir(name).at(&path)?;
        Ok(Staging {
            store,
            name: name.into(),
            dir,
            counter: AtomicU64::new(0),
        })
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

    /// Store content that is fully in memory.
    pub fn put_bytes(&self, content: &[u8]) -> Result<(NewObject, PutOutcome)> {
        let id = ObjectId::of(content);
        self.put_hashed(id, content)
    }

    /// Store content whose id the caller computed.
    pub fn put_hashed(&self, id: ObjectId, content: &[u8]) -> Result<(NewObject, PutOutcome)> {
        let size = content.len() as u64;
        if self.is_inline_size(size) {
            let obj = NewObject {
                id,
                size,
                inline: Some(content.to_vec()),
            };
            return Ok((obj, PutOutcome::Inline));
        }
        let obj = NewObject {
            id,
            size,
            inline: None,
        };
        if self.store.loose_len(&id)? == Some(size) {
            return Ok((obj, PutOutcome::Deduplicated));
        }
        let tmp = self.temp_name();
        let mut f = self.create_temp(&tmp)?;
        f.write_all(content).at(self.temp_path(&tmp))?;
        drop(f);
        let outcome = self.publish_temp(&tmp, &id, size)?;
        Ok((obj, outcome))
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

    fn create_temp(&self, tmp: &str) -> Result<std::fs::File> {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        Ok(self
            .dir
            .open_with(tmp, &opts)
            .at(self.temp_path(tmp))?
            .into_std())
    }

    /// Make the temp file read-only and move it to its object name. An object file that exists
    /// already with the same size is a dedup hit and the temp file goes; one of another size is a
    /// damaged leftover (a crash before its data reached the disk) and is replaced.
    fn publish_temp(&self, tmp: &str, id: &ObjectId, size: u64) -> Result<PutOutcome> {
        self.dir
            .set_permissions(tmp, Permissions::from_mode(0o444))
            .at(self.temp_path(tmp))?;
        let rel = id.rel_path();
        match rustix::fs::renameat_with(
            &self.dir,
            tmp,
            &self.store.objects,
            rel.as_str(),
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => Ok(PutOutcome::Written),
            Err(rustix::io::Errno::EXIST) if self.store.loose_len(id)? == Some(size) => {
                self.dir.remove_file(tmp).at(self.temp_path(tmp))?;
                Ok(PutOutcome::Deduplicated)
            }
            Err(rustix::io::Errno::EXIST) => {
                log::warn!(
                    "replacing damaged object file {}",
                    self.store.object_path(id).display()
                );
                rustix::fs::renameat(&self.dir, tmp, &self.store.objects, rel.as_str())
                    .map_err(|e| Error::io(self.store.object_path(id), e))?;
                Ok(PutOutcome::Written)
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

    /// Finish: name the object and move it into place.
    pub fn finish(self) -> Result<(NewObject, PutOutcome)> {
        let path = self.staging.temp_path(&self.tmp);
        self.file
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        let id = ObjectId::from_hash(self.hasher.finalize());
        let outcome = self.staging.publish_temp(&self.tmp, &id, self.size)?;
        Ok((
            NewObject {
                id,
                size: self.size,
                inline: None,
            },
            outcome,
        ))
    }
}

/// The content of an object, ready to read.
pub enum ObjectData {
    Inline(Vec<u8>),
    Loose { file: std::fs::File, size: u64 },
}

impl ObjectData {
    /// The content size.
    pub fn size(&self) -> u64 {
        match self {
            ObjectData::Inline(v) => v.len() as u64,
            ObjectData::Loose { size, .. } => *size,
        }
    }

    /// A reader over the content.
    pub fn into_reader(self) -> Box<dyn Read + Send> {
        match self {
            ObjectData::Inline(v) => Box::new(io::Cursor::new(v)),
            ObjectData::Loose { file, .. } => Box::new(file),
        }
    }

    /// Copy the whole content into `w`.
    pub fn copy_to(self, w: &mut impl Write) -> io::Result<u64> {
        match self {
            ObjectData::Inline(v) => w.write_all(&v).map(|()| v.len() as u64),
            ObjectData::Loose { mut file, .. } => io::copy(&mut file, w),
        }
    }
}

impl Store {
    /// The size of the loose file for `id`, if there is one.
    pub fn loose_len(&self, id: &ObjectId) -> Result<Option<u64>> {
        let rel = id.rel_path();
        match rustix::fs::statat(
            &self.objects,
            rel.as_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(st.st_size as u64)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io(self.path.join("objects").join(rel), e)),
        }
    }

    /// The path of a loose object (for messages and external tools).
    pub fn object_path(&self, id: &ObjectId) -> std::path::PathBuf {
        self.path.join("objects").join(id.rel_path())
    }

    /// Open the content of an object recorded in the index.
    pub fn read_object(&self, id: &ObjectId) -> Result<ObjectData> {
        let row: Option<(i64, Option<Vec<u8>>)> = self
            .conn()
            .query_row(
                "SELECT size, inline FROM objects WHERE id = ?1",
                [&id.as_bytes()[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            None => Err(Error::ObjectMissing { id: id.hex() }),
            Some((_, Some(data))) => Ok(ObjectData::Inline(data)),
            Some((size, None)) => self.open_loose(id, size as u64),
        }
    }

    /// Open a loose object file.
    pub fn open_loose(&self, id: &ObjectId, size: u64) -> Result<ObjectData> {
        match self.objects.open(id.rel_path()) {
            Ok(f) => Ok(ObjectData::Loose {
                file: f.into_std(),
                size,
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

impl Store {
    /// Every loose object file's id (one directory scan, no stat).
    pub fn loose_ids(&self) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        for i in 0..=255u8 {
            let sub = format!("{i:02x}");
            let path = self.path.join("objects").join(&sub);
            let dir = self.objects.open_dir(&sub).at(&path)?;
            for ent in dir.entries().at(&path)? {
                let name = ent.at(&path)?.file_name();
                if let Ok(id) = format!("{sub}{}", name.to_string_lossy()).parse::<ObjectId>() {
                    out.push(id);
                }
            }
        }
        Ok(out)
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

    /// Move a loose object file into `dir` (an open trash directory on the same filesystem); a
    /// missing one is fine.
    pub fn move_loose(&self, id: &ObjectId, dir: impl std::os::fd::AsFd) -> Result<()> {
        match rustix::fs::renameat(
            &self.objects,
            id.rel_path().as_str(),
            dir,
            id.hex().as_str(),
        ) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io(self.object_path(id), e)),
        }
    }
}
