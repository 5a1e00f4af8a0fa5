//! Opening a store the caller may read but not write: another user's store, or one on a
//! read-only mount (podman's read-only additional image stores are the model).
//!
//! Every command that only reads works on such a store; those that must write fail with
//! [`Error::ReadOnlyStore`]. The index is opened with `SQLITE_OPEN_READ_ONLY`. In WAL mode a
//! reader needs the `-shm` wal-index: while a writer has the index open it exists, and SQLite
//! (3.22 and later) reads it without writing it, so the reader sees every commit. When it does not
//! exist (no process has the index open; the last one checkpointed the WAL into the database
//! and removed both files) the reader cannot create it, and opens the database `immutable`:
//! the file then holds every commit, and only a writer starting during the read could change
//! it — a short command sees a consistent index unless a checkpoint of such a writer overlaps
//! it, and then fails ("database disk image is malformed"), never reads something wrong
//! silently. Nothing is pinned: gc does not know about such a reader.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::store::Store;

/// Whether this process can write the store at `path` (its directory and index).
pub(crate) fn writable(path: &Path) -> bool {
    use rustix::fs::Access;
    let ok = |p: &Path| match rustix::fs::access(p, Access::WRITE_OK) {
        Ok(()) => true,
        Err(rustix::io::Errno::NOENT) => true,
        Err(_) => false,
    };
    ok(path) && ok(&path.join("index.sqlite"))
}

/// `path` as an SQLite URI path: percent-encode what a URI would read as syntax.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Open the index of a store this process cannot write.
pub(crate) fn open_index_read_only(store: &Path) -> Result<Connection> {
    let db = store.join("index.sqlite");
    let shm = store.join("index.sqlite-shm");
    let param = if shm.exists() {
        "mode=ro"
    } else {
        "immutable=1"
    };
    let uri = format!("file:{}?{param}", uri_path(&db));
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_handler(Some(crate::store::busy))?;
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < crate::schema::SCHEMA_VERSION {
        return Err(Error::ReadOnlyStore {
            path: store.into(),
            what: "upgrading its index to this layerstore's schema",
        });
    }
    if version > crate::schema::SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found: version,
            known: crate::schema::SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

impl Error {
    /// Whether this is SQLite refusing to write an index opened read-only.
    pub fn is_read_only_index(&self) -> bool {
        matches!(self, Error::Sqlite(e)
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly))
    }
}

impl Store {
    /// Whether the store was opened read-only (this process cannot write it).
    pub fn is_read_only(&self) -> bool {
        self.conn().is_readonly(rusqlite::MAIN_DB).unwrap_or(false)
    }

    /// Fail with [`Error::ReadOnlyStore`] if the store is read-only; `what` names the operation.
    pub fn require_writable(&self, what: &'static str) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnlyStore {
                path: self.path.clone(),
                what,
            });
        }
        Ok(())
    }

    /// Pin an image for a long read ([`Store::pin_image`]), or pin nothing on a read-only store
    /// (which cannot record a lease; gc, run by someone who can write, does not see the read).
    pub fn pin_image_if_writable(
        &self,
        info: &crate::ImageInfo,
    ) -> Result<Option<crate::Lease<'_>>> {
        if self.is_read_only() {
            let diff_ids: Vec<_> = info.layers.iter().map(|l| l.diff_id).collect();
            self.check_not_damaged(&diff_ids)?;
            return Ok(None);
        }
        self.pin_image(info).map(Some)
    }

    /// [`Store::pin_for_read`], or nothing on a read-only store.
    pub fn pin_for_read_if_writable(
        &self,
        what: &str,
        diff_ids: &[crate::Digest],
    ) -> Result<Option<crate::Lease<'_>>> {
        if self.is_read_only() {
            self.check_not_damaged(diff_ids)?;
            return Ok(None);
        }
        self.pin_for_read(what, diff_ids).map(Some)
    }
}
