//! Objects: file contents named by blake3. Small ones live in the index (`objects.inline`), larger
//! ones as loose files `objects/ab/cdef…`, mode 0444, written in staging and renamed into place
//! with `RENAME_NOREPLACE` (an existing name is a dedup hit; both have the same content).
//!
//! With [`ObjectCompression`](crate::ObjectCompression) configured, a content may be stored (loose or inline) as one zstd frame
//! that declares the content size and carries a checksum; `objects.zstd` records which. The name
//! is always the blake3 of the content, so dedup does not depend on how a content is stored.

mod frame;
mod reader;
mod staging;
mod sweep;

use std::io;

use crate::digest::ObjectId;
use crate::error::{Error, IoContext, Result};
use crate::store::Store;

use frame::whole_frame;
pub(crate) use reader::objects_with_contents;
pub use reader::{ObjectData, ObjectReader};
pub use staging::{FLUSH_AT, ObjectWriter, Staging};
pub use sweep::{DOOMED_PREFIX, ObjectScan, SWEEP_MARKER};

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

/// How many objects are stored in each form (from the index).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StorageCounts {
    /// Loose files that are zstd frames, and that are the content itself.
    pub zstd_loose: u64,
    pub plain_loose: u64,
    /// Inline blobs that are zstd frames, and that are the content itself.
    pub zstd_inline: u64,
    pub plain_inline: u64,
}

impl Store {
    /// How many objects are stored in each form.
    pub fn storage_counts(&self) -> Result<StorageCounts> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(SUM(loose AND zstd), 0), COALESCE(SUM(loose AND NOT zstd), 0),
                    COALESCE(SUM(NOT loose AND zstd), 0), COALESCE(SUM(NOT loose AND NOT zstd), 0)
             FROM objects",
            [],
            |r| {
                Ok(StorageCounts {
                    zstd_loose: r.get::<_, i64>(0)? as u64,
                    plain_loose: r.get::<_, i64>(1)? as u64,
                    zstd_inline: r.get::<_, i64>(2)? as u64,
                    plain_inline: r.get::<_, i64>(3)? as u64,
                })
            },
        )?)
    }

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
