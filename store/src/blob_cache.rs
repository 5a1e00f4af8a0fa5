//! Where compressed layer blobs were seen: registry repositories (`HOST[:PORT]/REPO`) by blob
//! digest, as containers/image's blob info cache keeps them, so a push can skip or mount a blob
//! the destination registry already holds in some repository. A cache: rows are hints (a push
//! checks with the registry before relying on one), written outside the publish transaction,
//! and losing them costs an upload, never correctness.

use rusqlite::params;

use crate::digest::Digest;
use crate::error::Result;
use crate::store::{Store, now};

impl Store {
    /// Remember that each blob was seen in `location` (`HOST[:PORT]/REPO`).
    pub fn record_blob_locations(&self, digests: &[Digest], location: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO blob_locations (digest, location, seen) VALUES (?1, ?2, ?3)
                 ON CONFLICT (digest, location) DO UPDATE SET seen = excluded.seen",
            )?;
            let t = now();
            for d in digests {
                stmt.execute(params![d.to_string(), location, t])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Where blob `digest` was seen, most recently first.
    pub fn blob_locations(&self, digest: &Digest) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT location FROM blob_locations WHERE digest = ?1 ORDER BY seen DESC, location",
        )?;
        let rows = stmt.query_map([digest.to_string()], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Digest, Store, StoreOptions};

    #[test]
    fn blob_locations_are_remembered_once_each() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::init(&tmp.path().join("s"), &StoreOptions::default()).unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        store.record_blob_locations(&[a, b], "reg:5000/x").unwrap();
        store.record_blob_locations(&[a], "reg:5000/x").unwrap();
        store.record_blob_locations(&[a], "reg:5000/y").unwrap();
        let mut got = store.blob_locations(&a).unwrap();
        got.sort();
        assert_eq!(got, ["reg:5000/x", "reg:5000/y"]);
        assert_eq!(store.blob_locations(&b).unwrap(), ["reg:5000/x"]);
        assert!(store.blob_locations(&Digest::of(b"c")).unwrap().is_empty());
    }
}
