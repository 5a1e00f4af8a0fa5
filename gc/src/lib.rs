//! Mark-and-sweep garbage collection for a layerstore store.
//!
//! Roots are the image, merged, bound and prepared refs, and the leases of operations in flight:
//! an import pins the stored layers it builds on and every loose object it writes or finds
//! present (see [`layerstore_store::object::Staging`]). Two phases:
//! 1. layer refs that no root lists are dropped (with image rows no ref names);
//! 2. every object reachable from the remaining layers and merged trees is marked; unmarked rows
//!    go in one transaction, then unmarked loose files (and files no row names, left by an
//!    interrupted import) are removed.
//!
//! [`plan`] is pure: it marks in one read snapshot and says what would go. [`collect`] marks the
//! same way without any store lock, so imports, checkouts and disks go on meanwhile. Only the
//! sweep takes the exclusive lock: in one durable transaction it re-checks the plan against the
//! index as it is now (a layer that became live since the mark — a new import, a new tag, a
//! pin — keeps its objects; only what was dead at the mark and is still dead goes), deletes the
//! rows and bumps the sweep generation. Meanwhile other threads rename the doomed files to
//! `.gc-` names in their own directory. After the lock is released the doomed files are
//! unlinked (unlinks free blocks and can take seconds on a `discard` mount; imports never wait
//! on them). An import that needs the same content later writes a new file under the object's
//! name, which the doomed name does not touch.
//!
//! Crashes: the renames start before the commit, so the sweep sets a marker file first
//! (`sweeping`, see [`Store::begin_sweep`]). Opening a store whose marker is present puts back
//! every doomed file whose row still stands (the sweep did not commit); a sweep that fails
//! without a crash does the same before it returns. Any other leftover is a file no row names,
//! which the next gc removes. One gc runs at a time (`gc.lock`).

pub mod why;

use std::time::{Duration, Instant};

use rayon::prelude::*;

use layerstore_store::df::ObjectTotals;
use layerstore_store::digest::IdMap;
use layerstore_store::object::ObjectScan;
use layerstore_store::{LockMode, ObjectId, Store};
use rusqlite::Connection;
use serde::Serialize;

/// The gc error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] layerstore_store::Error),
    #[error("index database error during gc")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot remove {path}")]
    Unlink {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The gc result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a collection would remove. Pure data, serializable for `--dry-run --json`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct GcPlan {
    /// Layer refs no root lists (phase 1).
    pub layer_refs: Vec<String>,
    /// Image rows (manifest digests) no ref names.
    pub images: Vec<String>,
    /// Layers (and merged trees) no root needs.
    pub layers: Vec<String>,
    /// Object rows no remaining layer needs.
    pub objects: u64,
    /// Their content bytes.
    pub object_bytes: u64,
    /// What they occupy: loose file and inline blob lengths (less than `object_bytes` where
    /// objects are compressed).
    pub stored_bytes: u64,
    /// Loose files among them.
    pub loose_files: u64,
    /// Loose files no row names (left by an interrupted import), and their bytes.
    pub stray_files: u64,
    pub stray_bytes: u64,
}

impl GcPlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.layer_refs.is_empty()
            && self.images.is_empty()
            && self.layers.is_empty()
            && self.objects == 0
            && self.stray_files == 0
    }

    /// Bytes the plan frees.
    pub fn bytes(&self) -> u64 {
        self.stored_bytes + self.stray_bytes
    }
}

/// What [`collect`] did.
#[derive(Clone, Debug, Serialize)]
pub struct GcReport {
    /// What was removed (the plan recomputed under the exclusive lock).
    pub removed: GcPlan,
    pub bytes_freed: u64,
    /// Dead leases reclaimed.
    pub leases_reclaimed: usize,
    /// How long gc waited for the exclusive lock, how long it held it, and how long the unlinks
    /// took after it was released.
    pub lock_wait: Duration,
    pub lock_held: Duration,
    pub unlink: Duration,
}

/// Options for [`collect`].
#[derive(Clone, Debug, Default)]
pub struct GcOptions {
    /// Compute and return the plan only.
    pub dry_run: bool,
}

/// Compute what a collection would remove, without changing anything.
pub fn plan(store: &Store) -> Result<GcPlan> {
    let (p, _) = mark(store)?;
    Ok(p)
}

/// Run a collection (or only plan it with `dry_run`). Returns the plan and, unless dry, the report.
pub fn collect(store: &Store, opts: &GcOptions) -> Result<(GcPlan, Option<GcReport>)> {
    if opts.dry_run {
        return Ok((plan(store)?, None));
    }
    let _collector = store.lock(LockMode::Collector)?;
    // Files doomed by an earlier gc that was killed before its unlinks.
    empty_trash(store)?;
    let leases_reclaimed = store.reclaim_dead_leases()?;
    let marked_at = Instant::now();
    let (_, scan) = mark(store)?;
    log::debug!("gc: marked in {:?}, no lock held", marked_at.elapsed());
    unlink_all(store, &scan.doomed)?;

    let wait_start = Instant::now();
    let lock = store.lock(LockMode::Exclusive)?;
    let held_start = Instant::now();
    let lock_wait = held_start - wait_start;
    // The sweep's commit would checkpoint the WAL (copy every page it changed into the
    // database file) under the lock; that waits until after it.
    store.conn().pragma_update(None, "wal_autocheckpoint", 0)?;
    store.begin_sweep()?;
    let swept = sweep(store);
    if swept.is_err() {
        // The transaction rolled back: its rows stand, so their files go back.
        store.restore_doomed()?;
    }
    store.end_sweep()?;
    store
        .conn()
        .pragma_update(None, "wal_autocheckpoint", 1000)?;
    let (removed, doomed) = swept?;
    log::debug!(
        "gc: rows deleted and {} files doomed at {:?}",
        doomed.len(),
        held_start.elapsed()
    );
    drop(lock);
    let lock_held = held_start.elapsed();
    let unlink_start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let checkpoint = s.spawn(|| store.conn().execute_batch("PRAGMA wal_checkpoint(PASSIVE)"));
        unlink_all(store, &doomed)?;
        checkpoint
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        Ok(())
    })?;
    // Hardlink checkouts' variants of the objects that went (and nothing else).
    let variants_removed = store.prune_variants()?;
    log::debug!("gc: removed {variants_removed} variants of removed objects");
    let report = GcReport {
        bytes_freed: removed.bytes(),
        removed: removed.clone(),
        leases_reclaimed,
        lock_wait,
        lock_held,
        unlink: unlink_start.elapsed(),
    };
    Ok((removed, Some(report)))
}

/// Unlink doomed files (`ab/.gc-…`).
fn unlink_all(store: &Store, doomed: &[String]) -> Result<()> {
    doomed.par_iter().try_for_each(|d| store.unlink_doomed(d))?;
    Ok(())
}

/// Remove `trash/`, where gc of an earlier version moved doomed files.
fn empty_trash(store: &Store) -> Result<()> {
    let trash = store.path().join("trash");
    match std::fs::remove_dir_all(&trash) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Unlink {
            path: trash.display().to_string(),
            source: e,
        }),
    }
}

/// Which images and layers are live: named by a ref other than a layer ref, or (layers) by a
/// merged ref or a lease's pin. `suffix` names the temp tables, so the mark's and the
/// sweep's sets can be told apart.
fn live_sets(suffix: &str) -> String {
    format!(
        "CREATE TEMP VIEW IF NOT EXISTS gc_pinned AS
             SELECT id FROM lease_objects WHERE lease IN (SELECT id FROM leases);
         DROP TABLE IF EXISTS temp.gc_live_images{suffix};
         DROP TABLE IF EXISTS temp.gc_live_layers{suffix};
         CREATE TEMP TABLE gc_live_images{suffix} AS
             SELECT id FROM images WHERE manifest_digest IN
                 (SELECT target FROM refs WHERE name NOT LIKE 'layer/%' AND name NOT LIKE 'merged/%')
             OR 'merged:' || manifest_digest IN
                 (SELECT target FROM refs WHERE name LIKE 'merged/%');
         CREATE TEMP TABLE gc_live_layers{suffix} (id INTEGER PRIMARY KEY, diff_id TEXT);
         INSERT OR IGNORE INTO gc_live_layers{suffix}
             SELECT l.id, l.diff_id FROM layers l JOIN image_layers il ON il.diff_id = l.diff_id
             WHERE il.image IN (SELECT id FROM gc_live_images{suffix});
         INSERT OR IGNORE INTO gc_live_layers{suffix}
             SELECT l.id, l.diff_id FROM layers l
             WHERE l.diff_id IN (SELECT target FROM refs WHERE name LIKE 'merged/%')
                OR l.diff_id IN
                    (SELECT diff_id FROM lease_layers WHERE lease IN (SELECT id FROM leases));"
    )
}

/// The mark, in one read snapshot: what is dead (into temp tables the sweep re-checks) and the
/// plan that describes it. Files no row names are found by a scan of `objects/` that runs
/// meanwhile; the strays among them are the ones that have no row at the snapshot either.
fn mark(store: &Store) -> Result<(GcPlan, ObjectScan)> {
    let (p, scan) = std::thread::scope(|s| {
        let scan = s.spawn(|| store.scan_objects());
        let p = mark_rows(&store.conn());
        (
            p,
            scan.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let (mut p, scan) = (p?, scan?);
    // Strays: files without a row, not pinned. Rows come after their files, so a file published
    // between the scan and the snapshot has a row and is not taken for one.
    let conn = store.conn();
    let known: IdMap<()> = object_ids(
        &conn,
        "SELECT id FROM objects WHERE loose = 1 UNION ALL SELECT id FROM gc_pinned",
    )?
    .into_iter()
    .map(|id| (id, ()))
    .collect();
    let strays: Vec<ObjectId> = scan
        .ids
        .iter()
        .filter(|id| !known.contains_key(*id))
        .copied()
        .collect();
    conn.execute_batch(
        "DROP TABLE IF EXISTS temp.gc_strays;
         CREATE TEMP TABLE gc_strays (id BLOB PRIMARY KEY, size INTEGER) WITHOUT ROWID;",
    )?;
    {
        let mut ins = conn.prepare("INSERT OR IGNORE INTO gc_strays (id, size) VALUES (?1, ?2)")?;
        for id in &strays {
            ins.execute(rusqlite::params![
                &id.as_bytes()[..],
                store.loose_size(id) as i64
            ])?;
        }
    }
    (p.stray_files, p.stray_bytes) = stray_totals(&conn)?;
    Ok((p, scan))
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
/// layers and objects in temp tables for [`sweep_rows`].
fn mark_rows(conn: &Connection) -> Result<GcPlan> {
    conn.execute_batch("BEGIN")?;
    let res = (|| -> Result<GcPlan> {
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

/// The plan the temp tables describe.
fn describe(conn: &Connection) -> Result<GcPlan> {
    let strings = |sql: &str| -> Result<Vec<String>> {
        let mut stmt = conn.prepare(sql)?;
        let v = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    };
    let mut p = GcPlan {
        layer_refs: strings(
            "SELECT name FROM refs WHERE name LIKE 'layer/%'
             AND target NOT IN (SELECT diff_id FROM gc_live_layers) ORDER BY name",
        )?,
        images: strings(
            "SELECT manifest_digest FROM images WHERE id IN (SELECT id FROM gc_dead_images)
             ORDER BY manifest_digest",
        )?,
        layers: strings(
            "SELECT diff_id FROM layers WHERE id IN (SELECT id FROM gc_dead_layers) ORDER BY diff_id",
        )?,
        ..GcPlan::default()
    };
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

/// Re-check the dead sets against the index as it is now (inside the caller's transaction):
/// what became live since the mark (or the last re-check) keeps what it names, and pinned
/// objects stay.
fn recheck(tx: &Connection) -> Result<()> {
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
         ALTER TABLE gc_live_layers_now RENAME TO gc_live_layers;",
    )?;
    Ok(())
}

/// Delete the dead object rows and inline contents, and take them off the totals.
fn delete_objects(tx: &Connection) -> Result<()> {
    tx.execute_batch(
        "DELETE FROM objects WHERE id IN (SELECT id FROM gc_dead);
         DELETE FROM inline_contents WHERE id IN
             (SELECT content FROM gc_dead WHERE content IS NOT NULL);",
    )?;
    let gone = ObjectTotals::sum_of(tx, "gc_dead", "stored")?;
    gone.negated().add_to(tx)?;
    Ok(())
}

/// The sweep (the caller holds the exclusive lock and has set the sweep marker): one durable
/// transaction re-checks the mark, deletes the dead refs, images, layers and objects' rows and
/// bumps the sweep generation, while other threads rename the doomed loose files (dead
/// objects' and strays') to `.gc-` names. Returns what went and the doomed names.
fn sweep(store: &Store) -> Result<(GcPlan, Vec<String>)> {
    store.durable(true, |tx| -> Result<(GcPlan, Vec<String>)> {
        let t = Instant::now();
        recheck(tx)?;
        log::debug!("gc: sweep re-checked the mark in {:?}", t.elapsed());
        let doomed_ids = object_ids(
            tx,
            "SELECT id FROM gc_dead WHERE loose = 1 UNION ALL SELECT id FROM gc_strays",
        )?;
        std::thread::scope(|s| {
            let renames = s.spawn(|| {
                doomed_ids
                    .par_iter()
                    .map(|id| store.doom_loose(id))
                    .collect::<layerstore_store::Result<Vec<String>>>()
            });
            let removed = delete_rows(tx);
            log::debug!("gc: sweep deleted the rows at {:?}", t.elapsed());
            let doomed = renames
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            Ok((removed?, doomed?))
        })
    })
}

/// The sweep's deletions, in its transaction: what the re-checked mark found dead.
fn delete_rows(tx: &Connection) -> Result<GcPlan> {
    let mut removed = describe(tx)?;
    (removed.stray_files, removed.stray_bytes) = stray_totals(tx)?;
    tx.execute_batch(
        "DELETE FROM refs WHERE name LIKE 'layer/%'
             AND target NOT IN (SELECT diff_id FROM gc_live_layers);
         DELETE FROM image_layers WHERE image IN (SELECT id FROM gc_dead_images);
         DELETE FROM images WHERE id IN (SELECT id FROM gc_dead_images);
         DELETE FROM layer_blobs WHERE diff_id IN
             (SELECT diff_id FROM layers WHERE id IN (SELECT id FROM gc_dead_layers));
         DELETE FROM entries WHERE layer IN (SELECT id FROM gc_dead_layers);
         DELETE FROM layers WHERE id IN (SELECT id FROM gc_dead_layers);
         UPDATE counters SET value = value + 1 WHERE name = 'sweeps';",
    )?;
    delete_objects(tx)?;
    Ok(removed)
}
