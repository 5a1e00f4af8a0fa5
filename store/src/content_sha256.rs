//! Contents findable by sha256: zstd:chunked tables of contents name files by the sha256 of
//! their content, objects are named by blake3, so a partial pull needs the pairs.
//!
//! Rows are facts about contents, `object → sha256`, true whatever happens to the object: a row
//! may outlive its object for a while (gc deletes it with the object's row; a partial pull may
//! record it before the object is published), and lookups join `objects`, so only stored
//! objects are found. Rows are written outside the publish transaction, like the blob info
//! cache: losing them costs a backfill, never correctness.
//!
//! Which contents get a row, decided by measurement (see the partial-pull benchmark): hashing
//! every content with sha256 at import costs every import a second full hash pass, for the
//! benefit of pulls most stores never make. So rows come from two places only: contents a
//! partial pull fetched (hashed and checked against the TOC on the way), and a backfill
//! ([`Store::backfill_sha256`]) that hashes the stored objects a partial pull could use (those
//! of a size the TOC names) the first time one needs them.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use rusqlite::params;
use sha2::Digest as _;

use crate::digest::{Digest, ObjectId};
use crate::error::{Error, Result};
use crate::store::Store;

/// What a backfill did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackfillStats {
    /// Objects hashed.
    pub objects: u64,
    /// Their content bytes.
    pub bytes: u64,
}

impl Store {
    /// The stored objects whose content has one of the sha256 digests `wanted`, with their size.
    pub fn objects_by_sha256(&self, wanted: &[Digest]) -> Result<HashMap<Digest, (ObjectId, u64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT s.object, o.size FROM object_sha256 s JOIN objects o ON o.id = s.object
             WHERE s.sha256 = ?1 LIMIT 1",
        )?;
        let mut out = HashMap::new();
        for d in wanted {
            if out.contains_key(d) {
                continue;
            }
            let mut rows = stmt.query([&d.as_bytes()[..]])?;
            if let Some(r) = rows.next()? {
                let raw: Vec<u8> = r.get(0)?;
                let size: i64 = r.get(1)?;
                let id = ObjectId::from_slice(&raw).ok_or_else(|| Error::InvalidObjectId {
                    id: hex::encode(&raw),
                })?;
                out.insert(*d, (id, size as u64));
            }
        }
        Ok(out)
    }

    /// Remember the sha256 of objects' contents. The caller has hashed them (or verified them
    /// against a digest that was).
    pub fn record_sha256(&self, pairs: &[(ObjectId, Digest)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO object_sha256 (object, sha256) VALUES (?1, ?2)",
            )?;
            for (id, d) in pairs {
                stmt.execute(params![&id.as_bytes()[..], &d.as_bytes()[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Hash the stored objects of one of the content sizes `sizes` that have no sha256 yet, and
    /// remember them. An object that cannot be read is skipped (fsck reports it).
    pub fn backfill_sha256(&self, sizes: &HashSet<u64>) -> Result<BackfillStats> {
        let todo: Vec<(ObjectId, u64)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT o.id, o.size FROM objects o LEFT JOIN object_sha256 s ON s.object = o.id
                 WHERE s.object IS NULL",
            )?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
            let mut todo = Vec::new();
            for row in rows {
                let (raw, size) = row?;
                if sizes.contains(&(size as u64))
                    && let Some(id) = ObjectId::from_slice(&raw)
                {
                    todo.push((id, size as u64));
                }
            }
            todo
        };
        let mut stats = BackfillStats::default();
        let reader = self.object_reader()?;
        let mut pairs = Vec::with_capacity(todo.len());
        for (id, size) in todo {
            let mut h = Sha256Writer(sha2::Sha256::new());
            let copied = reader.read(&id).and_then(|data| {
                data.copy_to(&mut h)
                    .map_err(|e| Error::io(self.object_path(&id), e))
            });
            match copied {
                Ok(n) if n == size => {
                    pairs.push((id, Digest::from_raw(h.0.finalize().into())));
                    stats.objects += 1;
                    stats.bytes += n;
                }
                Ok(_) | Err(_) => log::debug!("object {}: unreadable, not hashed", id.hex()),
            }
            // Write in batches, so a long backfill does not hold the index for long.
            if pairs.len() >= 4096 {
                self.record_sha256(&pairs)?;
                pairs.clear();
            }
        }
        drop(reader);
        self.record_sha256(&pairs)?;
        Ok(stats)
    }
}

struct Sha256Writer(sha2::Sha256);
impl Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use crate::{Digest, ObjectId, Store, StoreOptions};

    #[test]
    fn sha256_rows_are_found_only_for_stored_objects() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::init(&tmp.path().join("s"), &StoreOptions::default()).unwrap();
        let gone = ObjectId::of(b"not stored");
        let d = Digest::of(b"not stored");
        store.record_sha256(&[(gone, d)]).unwrap();
        // A row whose object is not stored is never offered to a partial pull.
        assert!(store.objects_by_sha256(&[d]).unwrap().is_empty());
        assert_eq!(
            store.backfill_sha256(&HashSet::from([10])).unwrap(),
            super::BackfillStats::default()
        );
    }
}
