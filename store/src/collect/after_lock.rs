//! The sweep's work after the lock: the rows of what the flip made unreachable, deleted in
//! small transactions.

use super::{Dead, TOMBSTONE_PREFIX, object_ids};
use crate::df::ObjectTotals;
use crate::digest::{IdMap, ObjectId};
use crate::error::Result;
use crate::store::Store;

/// Objects whose rows go per transaction after the lock: writers (pins, publishes) get the
/// index between two batches. A batch (in the inline contents' order) deletes object rows with
/// random keys, which touch most leaf pages of `objects` whatever the batch's size, so fewer,
/// larger batches rewrite that table fewer times: at 1,000,000 objects with 500,000 dead, 4,096
/// rows a batch took 9.4–10.6 s, 32,768 took 5.5 s (about 0.34 s a transaction, what a
/// writer may wait).
const ROW_BATCH: usize = 32768;

/// A dead object's row as the mark saw it.
struct DeadRow {
    id: ObjectId,
    size: i64,
    stored: i64,
    loose: bool,
    content: Option<i64>,
}

impl Store {
    /// The sweep's deletions after the lock, in small transactions: the entries and rows of
    /// the tombstoned layers first, then the rows (and inline contents) of the dead objects.
    /// In that order a row goes only once no entry names it, and a file (renamed by the
    /// caller, after this) only once its row is gone, so a sweep killed at any point leaves
    /// garbage the next one takes (tombstones are dead layers, rows no layer names are dead
    /// objects, files without rows are strays). Each batch spares what became needed since the
    /// commit: objects pinned by a lease, or named by a layer published after it (ids above
    /// `top`; a dead layer's content imported again is such a layer). Each batch's loose
    /// objects, whose rows are gone once it commits, go to `doom` (which renames their files
    /// while the next batches are deleted). Returns the object figures of what went.
    pub(super) fn drop_dead_rows(
        &self,
        top: i64,
        mut doom: impl FnMut(Vec<ObjectId>) -> Result<()>,
    ) -> Result<Dead> {
        let layers: Vec<i64> = self
            .conn()
            .prepare("SELECT id FROM gc_dead_layers ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for layer in layers {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM entries WHERE layer = ?1", [layer])?;
            tx.execute(
                "DELETE FROM layers WHERE id = ?1 AND diff_id LIKE ?2",
                rusqlite::params![layer, format!("{TOMBSTONE_PREFIX}%")],
            )?;
            tx.commit()?;
        }
        let rows: Vec<DeadRow> = {
            let conn = self.conn();
            let mut stmt =
                // Inline contents (the big table) in their order, so that each batch dirties
                // a run of its pages rather than pages all over it; then the loose ones.
                conn.prepare(
                    "SELECT id, size, stored, loose, content FROM gc_dead
                     ORDER BY content IS NULL, content, id",
                )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(0)?
                    && let Some(id) = ObjectId::from_slice(b)
                {
                    out.push(DeadRow {
                        id,
                        size: r.get(1)?,
                        stored: r.get(2)?,
                        loose: r.get::<_, i64>(3)? != 0,
                        content: r.get(4)?,
                    });
                }
            }
            out
        };
        let mut gone = Dead::default();
        for batch in rows.chunks(ROW_BATCH) {
            let mut loose = Vec::new();
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let spared: IdMap<()> = object_ids(
                &tx,
                &format!(
                    "SELECT object FROM entries WHERE layer > {top} AND object IS NOT NULL
                     UNION ALL SELECT id FROM gc_pinned"
                ),
            )?
            .into_iter()
            .map(|id| (id, ()))
            .collect();
            let mut totals = ObjectTotals::default();
            {
                let mut del = tx.prepare_cached("DELETE FROM objects WHERE id = ?1")?;
                let mut del_content =
                    tx.prepare_cached("DELETE FROM inline_contents WHERE id = ?1")?;
                // The content's sha256 goes with its row: a store that pulls partially and
                // collects would otherwise keep a row for every content it ever held.
                let mut del_sha256 =
                    tx.prepare_cached("DELETE FROM object_sha256 WHERE object = ?1")?;
                for r in batch.iter().filter(|r| !spared.contains_key(&r.id)) {
                    if del.execute([&r.id.as_bytes()[..]])? == 0 {
                        continue;
                    }
                    del_sha256.execute([&r.id.as_bytes()[..]])?;
                    if let Some(c) = r.content {
                        del_content.execute([c])?;
                    }
                    totals += ObjectTotals::row(r.size as u64, r.loose, r.stored as u64);
                    gone.objects += 1;
                    gone.object_bytes += r.size as u64;
                    gone.stored_bytes += r.stored as u64;
                    if r.loose {
                        gone.loose_files += 1;
                        loose.push(r.id);
                    }
                }
            }
            totals.negated().add_to(&tx)?;
            tx.commit()?;
            if !loose.is_empty() {
                doom(loose)?;
            }
        }
        Ok(gone)
    }
}
