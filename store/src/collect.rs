//! Collection: the rows and files a gc marks and sweeps, behind typed calls. The collector's
//! policy (which refs are roots, and what each keeps: [`crate::refs::Keeps`]) comes in as a
//! [`RootPolicy`], which the store calls with the refs as its snapshot sees them, once at the
//! mark and once more when the sweep re-checks under the exclusive lock.
//!
//! Leases are always roots: the import and long-read protocols rest on them (see
//! [`crate::object::Staging`]), so no policy can leave them out. A lease keeps the objects and
//! layers it pins, and whole the images it pins by digest ([`crate::Lease::pin_images`]).
//!
//! Protocol: [`Store::mark`] (no store lock) leaves what is dead in temp tables of the store's
//! connection and returns a [`Mark`]. [`Store::begin_sweep`] takes the exclusive lock; the
//! [`Sweep`] it returns is the only way to doom files. [`Sweep::apply`] re-checks the mark and
//! flips the dead set in one durable transaction (refs and image rows go, dead layers become
//! `gc:ID` tombstones) and releases the lock; then, under the dooming lock only, it deletes the
//! tombstones' entries and the dead objects' rows in small transactions; a second thread dooms
//! (renames) the files of each committed batch, and a third unlinks them, which goes on after the
//! dooming lock is released. [`Doomed`] files an earlier sweep left (it was killed before its
//! unlinks) are the mark's [`Mark::leftovers`], unlinked without any lock.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use rusqlite::Connection;
use serde::Serialize;

use crate::digest::{Digest, IdMap, ObjectId};
use crate::error::{Error, Result};
use crate::merged::merged_key;
use crate::refs::{RefInfo, RefKind, RefName, read_refs};
use crate::store::{LockMode, Store, StoreLock};

mod after_lock;
mod reach;

pub use reach::LeasePin;

/// What the roots of a collection keep alive, as the collector's policy states them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roots {
    /// Images kept whole: manifest, config and every layer.
    pub images: BTreeSet<Digest>,
    /// Images of which only the manifest and config are kept, not the layers.
    pub metadata: BTreeSet<Digest>,
    /// Merged trees kept, by the image they flatten.
    pub merged: BTreeSet<Digest>,
    /// Refs that are not roots and go with this collection (e.g. a bound ref whose root is
    /// gone). Layer refs no remaining layer needs go anyway.
    pub drop_refs: BTreeSet<RefName>,
}

/// The collector's policy: the roots, given every ref as the store sees it at that moment.
pub type RootPolicy<'a> = &'a (dyn Fn(&[RefInfo]) -> Roots + Sync);

/// What a mark found dead, or what a sweep removed (gc's plan and report show it as is).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Dead {
    /// Layer refs whose layer no root needs (phase 1).
    pub layer_refs: Vec<String>,
    /// Other refs the policy drops (e.g. bound refs whose root ref is gone).
    pub refs: Vec<String>,
    /// Image rows (manifest digests) no root keeps.
    pub images: Vec<String>,
    /// Layers (and merged trees) no root needs.
    pub layers: Vec<String>,
    /// Object rows no remaining layer needs, and their content bytes.
    pub objects: u64,
    pub object_bytes: u64,
    /// What they occupy: loose file and inline blob lengths (less than `object_bytes` where
    /// objects are compressed).
    pub stored_bytes: u64,
    /// Loose files among them.
    pub loose_files: u64,
    /// Loose files no row names (left by an interrupted import), and their bytes.
    pub stray_files: u64,
    pub stray_bytes: u64,
    /// Rows of the blob info cache (where blobs were seen in registries) about blobs no
    /// remaining image or layer is known by: a push could never use them.
    pub blob_locations: u64,
}

impl Dead {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.layer_refs.is_empty()
            && self.refs.is_empty()
            && self.images.is_empty()
            && self.layers.is_empty()
            && self.objects == 0
            && self.stray_files == 0
            && self.blob_locations == 0
    }

    /// Bytes removing it frees.
    pub fn bytes(&self) -> u64 {
        self.stored_bytes + self.stray_bytes
    }
}

/// The result of [`Store::mark`]: what is dead, kept in the store's connection for the sweep.
#[derive(Debug)]
#[must_use]
pub struct Mark {
    dead: Dead,
    leftovers: Doomed,
}

impl Mark {
    /// What the mark found dead.
    pub fn dead(&self) -> &Dead {
        &self.dead
    }

    /// Files earlier sweeps doomed but did not unlink (they were killed): garbage, to unlink.
    pub fn leftovers(&self) -> &Doomed {
        &self.leftovers
    }
}

/// Object files renamed to doomed names (`ab/.gc-cdef…`), to unlink. Only the store makes one:
/// a sweep that committed, or a mark that found an earlier sweep's leftovers.
#[derive(Debug, Default)]
#[must_use]
pub struct Doomed {
    names: Vec<String>,
    /// `trash/`, where gc of an earlier version moved doomed files, is there.
    trash: bool,
}

impl Doomed {
    /// How many files.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && !self.trash
    }

    /// Unlink the files, in parallel; a missing one is fine. Unlinks free blocks and can take
    /// seconds on a `discard` mount, which is why they wait until the lock is released.
    pub fn unlink(&self, store: &Store) -> Result<()> {
        if self.trash {
            store.remove_trash()?;
        }
        self.names
            .par_iter()
            .try_for_each(|d| store.unlink_doomed(d))
    }
}

/// A sweep in progress: holds the exclusive store lock and the sweep marker. Dropped without
/// [`Sweep::apply`], it puts doomed files back and removes the marker.
#[must_use]
pub struct Sweep<'s> {
    store: &'s Store,
    lock: Option<StoreLock>,
    ended: bool,
}

/// What [`Sweep::apply`] did.
#[derive(Debug)]
pub struct Swept {
    /// What went (the mark re-checked under the lock).
    pub removed: Dead,
    /// How many files it unlinked (dead objects' and strays').
    pub unlinked: u64,
    /// How long it held the exclusive store lock (the re-check, the flip, the commit).
    pub lock_held: Duration,
    /// How long the rows and the renames of the doomed files took after the lock was released
    /// (imports that found one of those files wait that long).
    pub renames: Duration,
    /// How long everything after the lock took, the unlinks included (they overlap the rows
    /// and the renames, and end after them).
    pub unlink: Duration,
}

/// Which images and layers are live, in temp tables named with `suffix` (so the mark's and the
/// sweep's sets can be told apart), from the roots in `gc_root_*{suffix}` and the leases.
fn live_sets(suffix: &str) -> String {
    format!(
        "CREATE TEMP VIEW IF NOT EXISTS gc_pinned AS
             SELECT id FROM lease_objects WHERE lease IN (SELECT id FROM leases);
         DROP TABLE IF EXISTS temp.gc_live_images{suffix};
         DROP TABLE IF EXISTS temp.gc_live_layers{suffix};
         CREATE TEMP TABLE gc_live_images{suffix} AS
             SELECT i.id, max(w.whole) AS whole FROM images i JOIN
                 (SELECT digest, whole FROM gc_root_images{suffix}
                  UNION ALL SELECT digest, 1 FROM lease_images
                  WHERE lease IN (SELECT id FROM leases)) w
             ON w.digest = i.manifest_digest GROUP BY i.id;
         CREATE TEMP TABLE gc_live_layers{suffix} (id INTEGER PRIMARY KEY, diff_id TEXT);
         INSERT OR IGNORE INTO gc_live_layers{suffix}
             SELECT l.id, l.diff_id FROM layers l JOIN image_layers il ON il.diff_id = l.diff_id
             WHERE il.image IN (SELECT id FROM gc_live_images{suffix} WHERE whole);
         INSERT OR IGNORE INTO gc_live_layers{suffix}
             SELECT l.id, l.diff_id FROM layers l
             WHERE l.diff_id IN (SELECT key FROM gc_root_trees{suffix})
                OR l.diff_id IN
                    (SELECT diff_id FROM lease_layers WHERE lease IN (SELECT id FROM leases));"
    )
}

/// Ask the policy for the roots as `conn` sees the refs, and put them in temp tables.
fn write_roots(conn: &Connection, policy: RootPolicy<'_>, suffix: &str) -> Result<()> {
    let roots = policy(&read_refs(conn, None)?);
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS temp.gc_root_images{suffix};
         DROP TABLE IF EXISTS temp.gc_root_trees{suffix};
         DROP TABLE IF EXISTS temp.gc_drop_refs{suffix};
         CREATE TEMP TABLE gc_root_images{suffix}
             (digest TEXT PRIMARY KEY, whole INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TEMP TABLE gc_root_trees{suffix} (key TEXT PRIMARY KEY) WITHOUT ROWID;
         CREATE TEMP TABLE gc_drop_refs{suffix} (name TEXT PRIMARY KEY) WITHOUT ROWID;"
    ))?;
    // Whole first: an image some root keeps whole and another only in part is kept whole.
    let mut image = conn.prepare(&format!(
        "INSERT OR IGNORE INTO gc_root_images{suffix} (digest, whole) VALUES (?1, ?2)"
    ))?;
    for d in &roots.images {
        image.execute(rusqlite::params![d.to_string(), true])?;
    }
    for d in &roots.metadata {
        image.execute(rusqlite::params![d.to_string(), false])?;
    }
    let mut tree = conn.prepare(&format!(
        "INSERT OR IGNORE INTO gc_root_trees{suffix} (key) VALUES (?1)"
    ))?;
    for d in &roots.merged {
        tree.execute([merged_key(d)])?;
    }
    let mut drop = conn.prepare(&format!(
        "INSERT OR IGNORE INTO gc_drop_refs{suffix} (name) VALUES (?1)"
    ))?;
    for r in &roots.drop_refs {
        drop.execute([r.as_str()])?;
    }
    Ok(())
}

/// The object ids a query returns (its first column).
fn object_ids(conn: &Connection, sql: &str) -> Result<Vec<ObjectId>> {
    let mut stmt = conn.prepare(sql)?;
    let mut out = Vec::new();
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(0)? {
            out.extend(ObjectId::from_slice(b));
        }
    }
    Ok(out)
}

/// How many strays `gc_strays` holds, and their bytes.
fn stray_totals(conn: &Connection) -> Result<(u64, u64)> {
    Ok(conn.query_row(
        "SELECT count(*), COALESCE(sum(size), 0) FROM gc_strays",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )?)
}

/// Phase 1 and the mark of phase 2, in SQL over one read transaction. Leaves the dead images,
/// layers and objects in temp tables for the sweep.
fn mark_rows(conn: &Connection, policy: RootPolicy<'_>) -> Result<Dead> {
    conn.execute_batch("BEGIN")?;
    let res = (|| -> Result<Dead> {
        write_roots(conn, policy, "")?;
        conn.execute_batch(&live_sets(""))?;
        conn.execute_batch(
            "DROP TABLE IF EXISTS temp.gc_dead_images;
             DROP TABLE IF EXISTS temp.gc_dead_layers;
             DROP TABLE IF EXISTS temp.gc_dead;
             CREATE TEMP TABLE gc_dead_images AS
                 SELECT id FROM images WHERE id NOT IN (SELECT id FROM gc_live_images);
             CREATE TEMP TABLE gc_dead_layers AS
                 SELECT id FROM layers WHERE id NOT IN (SELECT id FROM gc_live_layers);
             CREATE TEMP TABLE gc_dead (id BLOB, size INTEGER, stored INTEGER,
                                        loose INTEGER, content INTEGER);",
        )?;
        // The mark itself in a hash set: a probe per object into an SQL temp b-tree cost 2.4 µs.
        // gc_dead has no key, so its rows are appended, not inserted in order.
        let live: IdMap<()> = object_ids(
            conn,
            "SELECT object FROM entries
             WHERE object IS NOT NULL AND layer IN (SELECT id FROM gc_live_layers)
             UNION ALL SELECT id FROM gc_pinned",
        )?
        .into_iter()
        .map(|id| (id, ()))
        .collect();
        let mut all =
            conn.prepare("SELECT id, size, COALESCE(stored, size), loose, content FROM objects")?;
        let mut dead = conn.prepare(
            "INSERT INTO gc_dead (id, size, stored, loose, content) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut rows = all.query([])?;
        while let Some(r) = rows.next()? {
            let rusqlite::types::ValueRef::Blob(id) = r.get_ref(0)? else {
                continue;
            };
            if ObjectId::from_slice(id).is_some_and(|id| live.contains_key(&id)) {
                continue;
            }
            dead.execute(rusqlite::params![
                id,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?
            ])?;
        }
        describe(conn)
    })();
    conn.execute_batch("COMMIT")?;
    res
}

/// The blob digests the images and layers the mark leaves stand for: config digests and layer
/// blob digests of live images, and every blob a live layer was seen as.
const LIVE_BLOBS: &str = "SELECT config_digest FROM images
        WHERE id NOT IN (SELECT id FROM gc_dead_images)
    UNION SELECT blob_digest FROM image_layers
        WHERE image NOT IN (SELECT id FROM gc_dead_images)
    UNION SELECT digest FROM layer_blobs WHERE diff_id NOT IN
        (SELECT diff_id FROM layers WHERE id IN (SELECT id FROM gc_dead_layers))";

/// What the temp tables describe (without the strays).
fn describe(conn: &Connection) -> Result<Dead> {
    let mut p = describe_lists(conn)?;
    let (objects, object_bytes, stored_bytes, loose_files) = conn.query_row(
        "SELECT count(*), COALESCE(sum(size), 0), COALESCE(sum(stored), 0), COALESCE(sum(loose), 0)
         FROM gc_dead",
        [],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )?;
    p.objects = objects as u64;
    p.object_bytes = object_bytes as u64;
    p.stored_bytes = stored_bytes as u64;
    p.loose_files = loose_files as u64;
    Ok(p)
}

/// The refs, images and layers the temp tables describe.
fn describe_lists(conn: &Connection) -> Result<Dead> {
    let strings = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<Vec<String>> {
        let mut stmt = conn.prepare(sql)?;
        let v = stmt
            .query_map(params, |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    };
    let mut p = Dead {
        layer_refs: strings(
            "SELECT name FROM refs WHERE name LIKE ?1
             AND target NOT IN (SELECT diff_id FROM gc_live_layers) ORDER BY name",
            &[&RefKind::Layer.like_pattern()],
        )?,
        refs: strings(
            "SELECT name FROM refs WHERE name IN (SELECT name FROM gc_drop_refs) ORDER BY name",
            &[],
        )?,
        images: strings(
            "SELECT manifest_digest FROM images WHERE id IN (SELECT id FROM gc_dead_images)
             ORDER BY manifest_digest",
            &[],
        )?,
        layers: strings(
            "SELECT diff_id FROM layers WHERE id IN (SELECT id FROM gc_dead_layers) ORDER BY diff_id",
            &[],
        )?,
        ..Dead::default()
    };
    p.blob_locations = conn.query_row(
        &format!("SELECT count(*) FROM blob_locations WHERE digest NOT IN ({LIVE_BLOBS})"),
        [],
        |r| r.get::<_, i64>(0),
    )? as u64;
    Ok(p)
}

/// Re-check the dead sets against the index as it is now (inside the caller's transaction):
/// what became live since the mark keeps what it names, and pinned objects stay.
fn recheck(tx: &Connection, policy: RootPolicy<'_>) -> Result<()> {
    write_roots(tx, policy, "_now")?;
    tx.execute_batch(&live_sets("_now"))?;
    tx.execute_batch(
        "DELETE FROM gc_dead_images WHERE id IN (SELECT id FROM gc_live_images_now);
         DELETE FROM gc_dead_layers WHERE id IN (SELECT id FROM gc_live_layers_now);
         DELETE FROM gc_dead WHERE id IN
             (SELECT object FROM entries WHERE object IS NOT NULL AND layer IN
                 (SELECT id FROM gc_live_layers_now
                  WHERE id NOT IN (SELECT id FROM gc_live_layers)));
         DELETE FROM gc_dead WHERE id IN (SELECT id FROM gc_pinned);
         DELETE FROM gc_strays WHERE EXISTS (SELECT 1 FROM objects o WHERE o.id = gc_strays.id)
             OR id IN (SELECT id FROM gc_pinned);
         DROP TABLE gc_live_layers;
         ALTER TABLE gc_live_layers_now RENAME TO gc_live_layers;
         DROP TABLE gc_drop_refs;
         ALTER TABLE gc_drop_refs_now RENAME TO gc_drop_refs;",
    )?;
    Ok(())
}

/// The prefix of a dead layer's key from the sweep's commit until its rows are deleted (after
/// the lock): `gc:ID`. No digest or merged key starts so, so nothing finds the layer by key any
/// more, and its row keeps its id (so no new layer takes the id of entries still there).
pub(crate) const TOMBSTONE_PREFIX: &str = "gc:";

/// The sweep's transaction, under the exclusive lock: what the re-checked mark found dead
/// becomes unreachable. Refs, image rows and blob mappings go; dead layers become tombstones
/// (`gc:ID`, merged); nothing per object or per entry happens here, so the lock does not grow
/// with what is swept. Returns what went (without the objects: see [`Store::drop_dead_rows`])
/// and the highest layer id now: layers above it are published after the commit.
fn flip(tx: &Connection) -> Result<(Dead, i64)> {
    let mut removed = describe_lists(tx)?;
    (removed.stray_files, removed.stray_bytes) = stray_totals(tx)?;
    tx.execute(
        "DELETE FROM refs WHERE name LIKE ?1
             AND target NOT IN (SELECT diff_id FROM gc_live_layers)",
        [RefKind::Layer.like_pattern()],
    )?;
    // The blob info cache first, while the dead sets still name what goes.
    tx.execute(
        &format!("DELETE FROM blob_locations WHERE digest NOT IN ({LIVE_BLOBS})"),
        [],
    )?;
    tx.execute_batch(
        "DELETE FROM bindings WHERE 'bound/' || root || '/' || image IN
             (SELECT name FROM gc_drop_refs);
         DELETE FROM refs WHERE name IN (SELECT name FROM gc_drop_refs);",
    )?;
    // The refs a policy drops may name images (gc's own policy drops none): the usage summary
    // follows while their rows are still there.
    crate::df::usage::sync(tx)?;
    tx.execute_batch(&format!(
        "DELETE FROM image_layers WHERE image IN (SELECT id FROM gc_dead_images);
         DELETE FROM image_labels WHERE image IN (SELECT id FROM gc_dead_images);
         DELETE FROM images WHERE id IN (SELECT id FROM gc_dead_images);
         DELETE FROM layer_blobs WHERE diff_id IN
             (SELECT diff_id FROM layers WHERE id IN (SELECT id FROM gc_dead_layers));
         UPDATE layers SET diff_id = '{TOMBSTONE_PREFIX}' || id, merged = 1
             WHERE id IN (SELECT id FROM gc_dead_layers);
         UPDATE counters SET value = value + 1 WHERE name = 'sweeps';"
    ))?;
    let top: i64 = tx.query_row("SELECT COALESCE(max(id), 0) FROM layers", [], |r| r.get(0))?;
    Ok((removed, top))
}

impl Store {
    /// Mark what a collection would remove, in one read snapshot, without any store lock:
    /// imports, checkouts and disks go on meanwhile. `policy` is asked for the roots as the
    /// snapshot sees the refs. Files no row names are found by a scan of `objects/` that runs
    /// meanwhile; the strays among them are the ones that have no row at the snapshot either.
    ///
    /// A sweep that was killed while this handle was open is finished first (see
    /// [`Store::recover_sweep`]), so its doomed files are not taken for leftovers.
    pub fn mark(&self, policy: RootPolicy<'_>) -> Result<Mark> {
        self.recover_sweep()?;
        let (dead, scan) = std::thread::scope(|s| {
            let scan = s.spawn(|| self.scan_objects());
            let dead = mark_rows(&self.conn(), policy);
            (
                dead,
                scan.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            )
        });
        let (mut dead, scan) = (dead?, scan?);
        // Strays: files without a row, not pinned. Rows come after their files, so a file
        // published between the scan and the snapshot has a row and is not taken for one.
        let conn = self.conn();
        let known: IdMap<()> = object_ids(
            &conn,
            "SELECT id FROM objects WHERE loose = 1 UNION ALL SELECT id FROM gc_pinned",
        )?
        .into_iter()
        .map(|id| (id, ()))
        .collect();
        conn.execute_batch(
            "DROP TABLE IF EXISTS temp.gc_strays;
             CREATE TEMP TABLE gc_strays (id BLOB PRIMARY KEY, size INTEGER) WITHOUT ROWID;",
        )?;
        {
            let mut ins =
                conn.prepare("INSERT OR IGNORE INTO gc_strays (id, size) VALUES (?1, ?2)")?;
            for id in scan.ids.iter().filter(|id| !known.contains_key(*id)) {
                ins.execute(rusqlite::params![
                    &id.as_bytes()[..],
                    self.loose_size(id) as i64
                ])?;
            }
        }
        (dead.stray_files, dead.stray_bytes) = stray_totals(&conn)?;
        Ok(Mark {
            dead,
            leftovers: Doomed {
                names: scan.doomed,
                trash: self.root.exists("trash"),
            },
        })
    }

    /// Remove `trash/`, where gc of an earlier version moved doomed files.
    fn remove_trash(&self) -> Result<()> {
        match self.root.remove_dir_all("trash") {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(self.path.join("trash"), e))
            }
            _ => Ok(()),
        }
    }

    /// Start a sweep: wait for the exclusive lock. The sweep's commit would checkpoint the WAL
    /// (copy every page it changed into the database file) under the lock; that waits until
    /// after it ([`Store::checkpoint`]). No file is touched before the sweep commits, so it
    /// sets no sweep marker (that was for sweeps that renamed files before their commit).
    pub fn begin_sweep(&self) -> Result<Sweep<'_>> {
        let lock = self.lock(LockMode::Exclusive)?;
        self.conn().pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(Sweep {
            store: self,
            lock: Some(lock),
            ended: false,
        })
    }

    /// Copy what the WAL holds into the database file, as far as readers allow (a passive
    /// checkpoint; gc runs it after its sweep, beside the unlinks).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn()
            .execute_batch("PRAGMA wal_checkpoint(PASSIVE)")?;
        Ok(())
    }
}

impl Sweep<'_> {
    /// The sweep: one durable transaction re-checks `mark` against the index as it is now (a
    /// layer that became live since the mark — a new import, a new tag, a pin — keeps its
    /// objects; only what was dead at the mark and is still dead goes) and flips the dead set:
    /// refs, image rows and blob mappings go, dead layers become tombstones, the sweep
    /// generation moves. That is all the exclusive lock covers, and it is released as soon as
    /// the transaction commits (or fails): nothing in it is per object, entry or file.
    ///
    /// The rest happens under the dooming lock ([`Store::dooming_lock`]), which the sweep takes
    /// before it lets the store lock go: the tombstones' entries and rows and the dead objects'
    /// rows go in small transactions (`drop_dead_rows`), then the loose files whose
    /// rows went, and the strays, are renamed to `.gc-` names. An import that pins after the
    /// commit waits for that lock before it trusts a file it found, so it never relies on a
    /// file about to be renamed; when the renames are done the generation moves again, so a
    /// batch that opened meanwhile looks at its files again. Nothing is ever put back if gc
    /// dies: see `drop_dead_rows` for the order that keeps the store sound.
    pub fn apply(mut self, mark: Mark, policy: RootPolicy<'_>) -> Result<Swept> {
        drop(mark);
        let store = self.store;
        let held_since = Instant::now();
        let committed = store.durable(true, |tx| -> Result<(Dead, i64, Vec<ObjectId>)> {
            recheck(tx, policy)?;
            log::debug!(
                "gc: sweep re-checked the mark in {:?}",
                held_since.elapsed()
            );
            let strays = object_ids(tx, "SELECT id FROM gc_strays")?;
            let (removed, top) = flip(tx)?;
            log::debug!(
                "gc: sweep flipped the dead set at {:?}",
                held_since.elapsed()
            );
            Ok((removed, top, strays))
        });
        // Take the dooming lock before the store lock goes, so no import comes between.
        let dooming = match committed {
            Ok(_) => Some(store.dooming_lock(LockMode::Exclusive)),
            Err(_) => None,
        }
        .transpose();
        self.ended = true;
        let end = self.end(committed.is_err());
        drop(self.lock.take());
        let lock_held = held_since.elapsed();
        let (mut removed, top, strays) = committed?;
        end?;
        let dooming = dooming?;
        let after = Instant::now();
        // Three stages run at once: this thread deletes the rows in small transactions (the
        // WAL checkpoints again during them: they dirty most of the index at 1,000,000
        // objects, and a WAL that held all of it filled the disk, scale.md); a renamer dooms
        // each committed batch's files; an unlinker unlinks what the renamer doomed. At
        // 1,000,000 objects the rows took 9.4 s, the renames 1.9 s and the unlinks 17.9 s one
        // after the other. The dooming lock goes when the renames are done, before the
        // unlinks end: imports wait for the renames only. Until then the unlinker works on
        // one thread, so that the renames (on the thread pool) keep pace with the rows; the
        // rest it unlinks on the pool.
        let mut dooming = Some(dooming);
        let renamed_all = std::sync::atomic::AtomicBool::new(false);
        let (gone, renames, unlinked) = std::thread::scope(|s| -> Result<_> {
            let (to_rename, batches) = std::sync::mpsc::channel::<Vec<ObjectId>>();
            let (to_unlink, doomed) = std::sync::mpsc::channel::<Vec<String>>();
            let renamed_all = &renamed_all;
            let unlinker = s.spawn(move || -> Result<u64> {
                let mut n = 0;
                for names in doomed {
                    if renamed_all.load(std::sync::atomic::Ordering::Acquire) {
                        names.par_iter().try_for_each(|d| store.unlink_doomed(d))?;
                    } else {
                        names.iter().try_for_each(|d| store.unlink_doomed(d))?;
                    }
                    n += names.len() as u64;
                }
                Ok(n)
            });
            let renamer = s.spawn(move || -> Result<()> {
                for ids in batches {
                    let names = ids
                        .par_iter()
                        .map(|id| store.doom_loose(id))
                        .collect::<Result<Vec<String>>>()?;
                    // An unlinker that stopped has its error to report at its join.
                    let _ = to_unlink.send(names);
                }
                Ok(())
            });
            let gone = store.drop_dead_rows(top, |ids| {
                // A renamer that stopped has its error to report at its join.
                let _ = to_rename.send(ids);
                Ok(())
            });
            log::debug!(
                "gc: object rows deleted after the lock in {:?}",
                after.elapsed()
            );
            if gone.is_ok() {
                let _ = to_rename.send(strays);
            }
            drop(to_rename);
            let renamed = renamer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            // Files went whether or not everything did: a batch that opened meanwhile looks
            // at its files again.
            let bumped = store.bump_sweep_generation();
            drop(dooming.take());
            renamed_all.store(true, std::sync::atomic::Ordering::Release);
            let renames = after.elapsed();
            let unlinked = unlinker
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            let gone = gone?;
            renamed?;
            bumped?;
            Ok((gone, renames, unlinked?))
        })?;
        (removed.objects, removed.object_bytes) = (gone.objects, gone.object_bytes);
        (removed.stored_bytes, removed.loose_files) = (gone.stored_bytes, gone.loose_files);
        Ok(Swept {
            removed,
            unlinked,
            lock_held,
            renames,
            unlink: after.elapsed(),
        })
    }

    /// End the sweep's locked part: put doomed files back if its transaction did not commit
    /// (files an earlier version's sweep doomed before its commit), remove the marker such a
    /// sweep left, let the WAL checkpoint again.
    fn end(&self, failed: bool) -> Result<()> {
        if failed {
            // The transaction rolled back: its rows stand, so their files go back.
            self.store.restore_doomed()?;
        }
        self.store.end_sweep()?;
        self.store
            .conn()
            .pragma_update(None, "wal_autocheckpoint", 1000)?;
        Ok(())
    }
}

impl Drop for Sweep<'_> {
    fn drop(&mut self) {
        if !self.ended
            && let Err(e) = self.end(true)
        {
            log::warn!("ending an abandoned gc sweep: {e}; the next open puts its files back");
        }
    }
}

#[cfg(test)]
mod tests;
