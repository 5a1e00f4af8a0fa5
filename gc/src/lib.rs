//! Mark-and-sweep garbage collection for a layerstore store: the policy. The store owns the
//! tables and the files and does the marking and sweeping behind typed calls
//! ([`layerstore_store::collect`]); this crate says what a root is ([`roots()`]), what a
//! collection would remove ([`GcPlan`]), what it did ([`GcReport`]), and why something stays
//! ([`why`]).
//!
//! Roots are the image, root, merged, bound and prepared refs, and the leases of operations in
//! flight: an import pins the stored layers it builds on and every loose object it writes or
//! finds present (see [`layerstore_store::object::Staging`]). What a ref of each kind keeps is
//! the store's data ([`layerstore_store::RefKind::keeps`]), shared with fsck: an image or root
//! ref keeps its image whole, a prepared ref its manifest and config only, a merged ref its
//! tree and image, and a bound ref keeps its image whole while its root ref lives (the gc after
//! the root goes drops it). Two phases:
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
//! dead refs and image rows, turns dead layers into `gc:ID` tombstones and bumps the sweep
//! generation — nothing per object, entry or file, so the lock does not grow with the store or
//! with what is swept. After it, under the dooming lock only (an import that found a file
//! waits for it before it trusts the file, see [`layerstore_store::Store::dooming_lock`]), the
//! tombstones' entries and the dead objects' rows go in small transactions that spare what was
//! pinned or published since, and as each transaction commits, the files whose rows it deleted
//! are renamed to `.gc-` names in their own directory by a second thread and unlinked by a
//! third (unlinks free blocks and can take seconds on a `discard` mount; the dooming lock goes
//! when the renames are done, so nothing waits on the unlinks). An import that needs the same
//! content later writes a new file under the object's name, which the doomed name does not
//! touch.
//!
//! Crashes: entries go before the rows they name and rows before their files, so a gc killed at
//! any point leaves a sound store whose garbage (tombstones, rows no layer names, files no row
//! names) the next gc removes. Stores a gc of an earlier version was killed in (it renamed
//! files before its commit and left the marker `sweeping`) get their files put back when
//! opened. One gc runs at a time (`gc.lock`).

pub mod roots;
pub mod why;

use std::time::{Duration, Instant};

use layerstore_store::Store;
use layerstore_store::collect::Dead;
use serde::Serialize;

pub use roots::roots;

/// The gc error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] layerstore_store::Error),
    /// `why` was asked about something the store does not have.
    #[error("{subject} is not in the store")]
    NotInStore { subject: String },
}

/// The gc result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a collection would remove (or, in a [`GcReport`], did remove): the store's [`Dead`], pure
/// data, serializable for `--dry-run --json`.
pub type GcPlan = Dead;

/// What [`collect`] did.
#[derive(Clone, Debug, Serialize)]
pub struct GcReport {
    /// What was removed (the plan recomputed under the exclusive lock).
    pub removed: GcPlan,
    pub bytes_freed: u64,
    /// Dead leases reclaimed.
    pub leases_reclaimed: usize,
    /// How long gc waited for the exclusive lock, how long it held it, how long deleting the
    /// rows and renaming the doomed files took after it was released (imports that found one
    /// of them wait that long), and how long everything after the lock took: the unlinks run
    /// beside the rows and the renames and end after them.
    pub lock_wait: Duration,
    pub lock_held: Duration,
    pub renames: Duration,
    pub unlink: Duration,
    /// Hardlink-checkout variants of removed objects that went with them.
    pub variants_removed: u64,
}

/// Options for [`collect`].
#[derive(Clone, Debug, Default)]
pub struct GcOptions {
    /// Compute and return the plan only.
    pub dry_run: bool,
}

/// Compute what a collection would remove, without changing anything.
pub fn plan(store: &Store) -> Result<GcPlan> {
    Ok(store.mark(&roots)?.dead().clone())
}

/// Run a collection (or only plan it with `dry_run`). Returns the plan and, unless dry, the report.
pub fn collect(store: &Store, opts: &GcOptions) -> Result<(GcPlan, Option<GcReport>)> {
    if opts.dry_run {
        return Ok((plan(store)?, None));
    }
    let _collector = store.collector_lock()?;
    let leases_reclaimed = store.reclaim_dead_leases()?;
    let marked_at = Instant::now();
    let mark = store.mark(&roots)?;
    log::debug!("gc: marked in {:?}, no lock held", marked_at.elapsed());
    // Files doomed by an earlier gc that was killed before its unlinks.
    mark.leftovers().unlink(store)?;

    let wait_start = Instant::now();
    let sweep = store.begin_sweep()?;
    let held_start = Instant::now();
    let lock_wait = held_start - wait_start;
    let swept = sweep.apply(mark, &roots)?;
    let lock_held = swept.lock_held;
    log::debug!(
        "gc: lock held {lock_held:?}; rows deleted and files doomed in {:?} after it, {} files \
         unlinked by {:?}, {:?} in all",
        swept.renames,
        swept.unlinked,
        swept.unlink,
        held_start.elapsed()
    );
    store.checkpoint()?;
    // Variants of what went go too (checkouts that linked them keep their links). A checkout in
    // flight pins the layers it reads, so no object it makes variants of was swept.
    let variants_removed = store.prune_variants()?;
    log::debug!("gc: removed {variants_removed} variants of removed objects");
    let removed = swept.removed;
    let report = GcReport {
        bytes_freed: removed.bytes(),
        removed: removed.clone(),
        leases_reclaimed,
        lock_wait,
        lock_held,
        renames: swept.renames,
        unlink: swept.unlink,
        variants_removed,
    };
    Ok((removed, Some(report)))
}

/// For each set of refs, the bytes a collection would free if those refs were removed and
/// nothing else changed: what only they keep alive (stored bytes of objects no other root
/// needs). Computed with the collection's own mark (one for the store as it is, one per set),
/// so it agrees with what `gc` then frees.
pub fn costs(store: &Store, sets: &[Vec<layerstore_store::RefName>]) -> Result<Vec<u64>> {
    let base = store.mark(&roots)?.dead().stored_bytes;
    let mut out = Vec::with_capacity(sets.len());
    for gone in sets {
        let without = |refs: &[layerstore_store::RefInfo]| {
            let kept: Vec<_> = refs
                .iter()
                .filter(|r| !gone.contains(&r.name))
                .cloned()
                .collect();
            roots(&kept)
        };
        let after = store.mark(&without)?.dead().stored_bytes;
        out.push(after.saturating_sub(base));
    }
    Ok(out)
}
