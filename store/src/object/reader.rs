//! Reading objects back: lookups by id, and a reader that yields exactly the recorded size.

use std::io::{self, Read, Write};

use rusqlite::OptionalExtension;

use super::frame::unzstd_inline;
use crate::digest::ObjectId;
use crate::error::{Error, Result};
use crate::store::Store;

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
