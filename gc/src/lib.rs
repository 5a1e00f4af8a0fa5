//! Mark-and-sweep garbage collection for a layerstore store.
//!
//! Roots are the image, merged, bound and prepared refs (and, implicitly, every import in flight,
//! which holds the store's shared lock until its refs are published). Two phases:
//! 1. layer refs that no root lists are dropped (with image rows no ref names);
//! 2. every object reachable from the remaining layers and merged trees is marked; unmarked rows
//!    go in one transaction, then unmarked loose files (and files no row names, left by an
//!    interrupted import) are unlinked.
//!
//! [`plan`] is pure: it reads a snapshot and says what would go. [`collect`] computes the plan for
//! the report, then takes the exclusive lock — which waits for imports in flight and keeps new ones
//! out — recomputes the plan against the now-quiet index (so nothing an import published meanwhile
//! can be lost), deletes the rows in one durable transaction and renames the doomed files into
//! `trash/RUN/`, then releases the lock and only then unlinks them. Renames are cheap; unlinks
//! free blocks and can be slow (seconds for thousands of files on a `discard` mount), so imports
//! never wait on them. An import after the release that needs the same content writes a new file
//! under the object's name, which the trash does not touch. A crash at any point leaves only
//! unreferenced files (in `objects/` or `trash/`), which the next gc removes.

pub mod why;

use std::collections::HashSet;
use std::time::{Duration, Instant};

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
    #[serde(skip)]
    dead_loose: Vec<ObjectId>,
    #[serde(skip)]
    strays: Vec<ObjectId>,
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
    let conn = store.conn();
    let mut p = plan_rows(&conn)?;
    drop(conn);
    let (strays, stray_bytes) = stray_files(store)?;
    p.stray_files = strays.len() as u64;
    p.stray_bytes = stray_bytes;
    p.strays = strays;
    Ok(p)
}

/// Run a collection (or only plan it with `dry_run`). Returns the plan and, unless dry, the report.
pub fn collect(store: &Store, opts: &GcOptions) -> Result<(GcPlan, Option<GcReport>)> {
    if opts.dry_run {
        let _shared = store.lock(LockMode::Shared)?;
        return Ok((plan(store)?, None));
    }
    // Trash of an earlier gc that crashed before its unlinks.
    empty_trash(store, None)?;
    let wait_start = Instant::now();
    let lock = store.lock(LockMode::Exclusive)?;
    let held_start = Instant::now();
    let lock_wait = held_start - wait_start;
    let leases_reclaimed = store.reclaim_dead_leases()?;
    let p = plan(store)?;
    log::debug!("gc: planned under the lock in {:?}", held_start.elapsed());
    let run = format!(
        "{}-{}",
        std::process::id(),
        held_start.elapsed().as_nanos() ^ u128::from(rand_seed())
    );
    apply(store, &p, &run)?;
    log::debug!("gc: files moved to the trash at {:?}", held_start.elapsed());
    drop(lock);
    let lock_held = held_start.elapsed();
    let unlink_start = Instant::now();
    empty_trash(store, Some(&run))?;
    let report = GcReport {
        bytes_freed: p.bytes(),
        removed: p.clone(),
        leases_reclaimed,
        lock_wait,
        lock_held,
        unlink: unlink_start.elapsed(),
    };
    Ok((p, Some(report)))
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos().into())
        .unwrap_or(0)
}

/// Remove `trash/RUN` (or every trash directory).
fn empty_trash(store: &Store, run: Option<&str>) -> Result<()> {
    let trash = store.path().join("trash");
    let dirs: Vec<std::path::PathBuf> = match run {
        Some(r) => vec![trash.join(r)],
        None => match std::fs::read_dir(&trash) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(Error::Unlink {
                    path: trash.display().to_string(),
                    source: e,
                });
            }
        },
    };
    for d in dirs {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Unlink {
                    path: d.display().to_string(),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

/// Phase 1 and the mark of phase 2, in SQL over one read transaction.
fn plan_rows(conn: &Connection) -> Result<GcPlan> {
    conn.execute_batch(
        "BEGIN;
         DROP TABLE IF EXISTS temp.gc_live_images;
         DROP TABLE IF EXISTS temp.gc_live_layers;
         DROP TABLE IF EXISTS temp.gc_live_objects;
         CREATE TEMP TABLE gc_live_images AS
             SELECT id FROM images WHERE manifest_digest IN
                 (SELECT target FROM refs WHERE name NOT LIKE 'layer/%' AND name NOT LIKE 'merged/%')
             OR 'merged:' || manifest_digest IN
                 (SELECT target FROM refs WHERE name LIKE 'merged/%');
         CREATE TEMP TABLE gc_live_layers (id INTEGER PRIMARY KEY, diff_id TEXT);
         INSERT OR IGNORE INTO gc_live_layers
             SELECT l.id, l.diff_id FROM layers l JOIN image_layers il ON il.diff_id = l.diff_id
             WHERE il.image IN (SELECT id FROM gc_live_images);
         INSERT OR IGNORE INTO gc_live_layers
             SELECT l.id, l.diff_id FROM layers l
             WHERE l.diff_id IN (SELECT target FROM refs WHERE name LIKE 'merged/%');
         CREATE TEMP TABLE gc_live_objects (id BLOB PRIMARY KEY) WITHOUT ROWID;
         INSERT OR IGNORE INTO gc_live_objects
             SELECT object FROM entries
             WHERE object IS NOT NULL AND layer IN (SELECT id FROM gc_live_layers);",
    )?;
    let res = (|| -> Result<GcPlan> {
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
                "SELECT manifest_digest FROM images WHERE id NOT IN (SELECT id FROM gc_live_images)
                 ORDER BY manifest_digest",
            )?,
            layers: strings(
                "SELECT diff_id FROM layers WHERE id NOT IN (SELECT id FROM gc_live_layers) ORDER BY diff_id",
            )?,
            ..GcPlan::default()
        };
        let mut stmt = conn.prepare(
            "SELECT id, size, loose, COALESCE(stored, size) FROM objects INDEXED BY objects_loose_size
             WHERE id NOT IN (SELECT id FROM gc_live_objects)",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: Vec<u8> = r.get(0)?;
            p.objects += 1;
            p.object_bytes += r.get::<_, i64>(1)? as u64;
            p.stored_bytes += r.get::<_, i64>(3)? as u64;
            if r.get::<_, bool>(2)? {
                p.loose_files += 1;
                if let Some(id) = ObjectId::from_slice(&id) {
                    p.dead_loose.push(id);
                }
            }
        }
        Ok(p)
    })();
    conn.execute_batch("COMMIT")?;
    res
}

/// Loose files whose id has no row.
fn stray_files(store: &Store) -> Result<(Vec<ObjectId>, u64)> {
    let known: HashSet<ObjectId> = {
        let conn = store.conn();
        let mut stmt =
            conn.prepare("SELECT id FROM objects INDEXED BY objects_loose_size WHERE loose = 1")?;
        stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .filter_map(|r| r.ok().and_then(|v| ObjectId::from_slice(&v)))
            .collect()
    };
    let strays: Vec<ObjectId> = store
        .loose_ids()?
        .into_iter()
        .filter(|id| !known.contains(id))
        .collect();
    let bytes = strays.iter().map(|id| store.loose_size(id)).sum();
    Ok((strays, bytes))
}

/// Delete the plan's rows in one durable transaction, then move its files into `trash/RUN/`.
fn apply(store: &Store, p: &GcPlan, run: &str) -> Result<()> {
    let started = Instant::now();
    {
        let mut conn = store.conn();
        conn.pragma_update(None, "synchronous", "FULL")?;
        let res = (|| -> Result<()> {
            let tx = conn.transaction()?;
            tx.execute_batch(
                "DELETE FROM refs WHERE name LIKE 'layer/%'
                     AND target NOT IN (SELECT diff_id FROM gc_live_layers);
                 DELETE FROM image_layers WHERE image NOT IN (SELECT id FROM gc_live_images);
                 DELETE FROM images WHERE id NOT IN (SELECT id FROM gc_live_images);
                 DELETE FROM entries WHERE layer NOT IN (SELECT id FROM gc_live_layers);
                 DELETE FROM layer_blobs WHERE diff_id NOT IN (SELECT diff_id FROM gc_live_layers);
                 DELETE FROM layers WHERE id NOT IN (SELECT id FROM gc_live_layers);
                 -- Found through the covering index, so the inline contents are not read.
                 DELETE FROM objects WHERE rowid IN
                     (SELECT rowid FROM objects INDEXED BY objects_loose_size
                      WHERE id NOT IN (SELECT id FROM gc_live_objects));",
            )?;
            tx.commit()?;
            Ok(())
        })();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        res?;
    }
    log::debug!("gc: rows deleted at {:?}", started.elapsed());
    if p.dead_loose.is_empty() && p.strays.is_empty() {
        return Ok(());
    }
    let trash = store.path().join("trash").join(run);
    std::fs::create_dir_all(&trash).map_err(|e| Error::Unlink {
        path: trash.display().to_string(),
        source: e,
    })?;
    let dir = rustix::fs::open(
        &trash,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::Unlink {
        path: trash.display().to_string(),
        source: e.into(),
    })?;
    for id in p.dead_loose.iter().chain(&p.strays) {
        store.move_loose(id, &dir).map_err(|e| Error::Unlink {
            path: store.object_path(id).display().to_string(),
            source: std::io::Error::other(e),
        })?;
    }
    Ok(())
}
