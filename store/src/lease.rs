//! Leases: a record of an operation in flight (an import), with enough to tell whether its
//! process is still alive after a crash. Each lease owns `staging/ID/`.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::digest::{Digest, ObjectId};
use crate::error::{Error, Result};
use crate::object::Staging;
use crate::store::{LockMode, Store, now};

/// The sweep generation (`counters.sweeps`).
pub(crate) fn sweeps(conn: &rusqlite::Connection) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT value FROM counters WHERE name = 'sweeps'",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// An operation in flight. A publish ([`Store::publish`]) ends it in its own transaction; dropping
/// it unpublished removes its row and staging.
pub struct Lease<'s> {
    store: &'s Store,
    id: String,
    staging: Option<Staging<'s>>,
}

/// A lease row as listed by [`Store::leases`].
#[derive(Clone, Debug, Serialize)]
pub struct LeaseInfo {
    pub id: String,
    pub pid: u32,
    pub boot_id: String,
    pub start_time: u64,
    pub created: i64,
    pub what: String,
    /// Whether the process that took it still runs.
    pub alive: bool,
}

/// Identity of a process that survives pid reuse: boot id and start time in clock ticks.
fn process_identity(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let start: u64 = rest.split(' ').nth(19)?.parse().ok()?;
    Some((boot_id(), start))
}

/// Whether the process a lease row names still runs (same pid, boot and start time).
fn runs(pid: u32, boot: &str, start: i64) -> bool {
    process_identity(pid).is_some_and(|(b, s)| b == boot && s == start as u64)
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// What [`Lease::pin_layers`] found of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerState {
    /// Stored (and now pinned).
    Stored,
    /// Not stored; this lease claimed it and is to read it.
    Mine,
    /// Not stored; another live lease is reading it.
    Claimed { lease: String },
}

/// Remove a lease's row, its pins and its claims.
fn end_lease(conn: &rusqlite::Connection, id: &str) -> Result<()> {
    conn.execute("DELETE FROM layer_claims WHERE lease = ?1", [id])?;
    conn.execute("DELETE FROM lease_objects WHERE lease = ?1", [id])?;
    conn.execute("DELETE FROM lease_layers WHERE lease = ?1", [id])?;
    conn.execute("DELETE FROM lease_images WHERE lease = ?1", [id])?;
    conn.execute("DELETE FROM leases WHERE id = ?1", [id])?;
    Ok(())
}

impl Store {
    /// Pin loose objects for a lease and return the sweep generation, in one transaction. The
    /// caller holds the shared store lock.
    pub(crate) fn pin_objects(&self, lease: &str, ids: &[ObjectId]) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut pin = tx.prepare_cached(
                "INSERT INTO lease_objects (id, lease) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?;
            for id in ids {
                pin.execute(params![&id.as_bytes()[..], lease])?;
            }
        }
        let generation = sweeps(&tx)?;
        tx.commit()?;
        Ok(generation)
    }

    /// How many gc sweeps have removed files so far. Read under the shared store lock, it
    /// cannot change until the lock is released.
    pub fn sweep_generation(&self) -> Result<u64> {
        sweeps(&self.conn())
    }

    /// Take a lease for `what` and create its staging directory.
    pub fn begin_lease(&self, what: &str) -> Result<Lease<'_>> {
        self.require_writable("an import or a pinned read")?;
        let pid = std::process::id();
        let (boot, start) = process_identity(pid).unwrap_or_else(|| (boot_id(), 0));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let id = format!("{pid}-{start}-{nanos:08x}");
        self.conn().execute(
            "INSERT INTO leases (id, pid, boot_id, start_time, created, what) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, pid, boot, start as i64, now(), what],
        )?;
        let staging = match self.staging(&id) {
            Ok(s) => s,
            Err(e) => {
                let _ = end_lease(&self.conn(), &id);
                return Err(e);
            }
        };
        Ok(Lease {
            store: self,
            id,
            staging: Some(staging),
        })
    }

    /// Pin an image's layers for a long read — a checkout, a disk, an export, a dedup report —
    /// instead of holding the shared store lock for its whole run: gc spares what a live lease
    /// pins (and reclaims the lease of a reader that died), so it never waits for the read, and
    /// imports never queue behind a gc that would. Fails with [`Error::LayerNotFound`] if a gc
    /// removed a layer after `info` was read. The pins go with the lease when it is dropped.
    pub fn pin_image(&self, info: &crate::ImageInfo) -> Result<Lease<'_>> {
        let diff_ids: Vec<Digest> = info.layers.iter().map(|l| l.diff_id).collect();
        self.pin_for_read(&format!("read {}", info.manifest_digest), &diff_ids)
    }

    /// Pin layers for a long read (see [`Store::pin_image`]).
    pub fn pin_for_read(&self, what: &str, diff_ids: &[Digest]) -> Result<Lease<'_>> {
        let lease = self.begin_lease(what)?;
        lease.pin_stored(diff_ids)?;
        Ok(lease)
    }

    /// Whether a lease exists and waits for layers other leases read.
    pub fn lease_waits(&self, id: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT waiting FROM leases WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(false))
    }

    /// All leases, with whether their process is alive.
    pub fn leases(&self) -> Result<Vec<LeaseInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, pid, boot_id, start_time, created, what FROM leases ORDER BY created",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(LeaseInfo {
                id: r.get(0)?,
                pid: r.get(1)?,
                boot_id: r.get(2)?,
                start_time: r.get::<_, i64>(3)? as u64,
                created: r.get(4)?,
                what: r.get(5)?,
                alive: false,
            })
        })?;
        let mut out = Vec::new();
        for row in rows {
            let mut l = row?;
            l.alive = runs(l.pid, &l.boot_id, l.start_time as i64);
            out.push(l);
        }
        Ok(out)
    }

    /// Drop leases whose process is gone, with their staging directories. Returns how many.
    pub fn reclaim_dead_leases(&self) -> Result<usize> {
        let dead: Vec<_> = self.leases()?.into_iter().filter(|l| !l.alive).collect();
        // Pins of no lease (a staging area used without one) pin nothing.
        self.conn().execute_batch(
            "DELETE FROM lease_objects WHERE lease NOT IN (SELECT id FROM leases);
             DELETE FROM lease_layers WHERE lease NOT IN (SELECT id FROM leases);
             DELETE FROM lease_images WHERE lease NOT IN (SELECT id FROM leases);
             DELETE FROM layer_claims WHERE lease NOT IN (SELECT id FROM leases);",
        )?;
        for l in &dead {
            end_lease(&self.conn(), &l.id)?;
            match self.staging.remove_dir_all(&l.id) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::Error::io(self.path.join("staging").join(&l.id), e)),
            }
        }
        Ok(dead.len())
    }
}

impl<'s> Lease<'s> {
    /// The lease id (also its staging directory's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its staging area.
    pub fn staging(&self) -> &Staging<'s> {
        self.staging.as_ref().expect("staging lives until release")
    }

    /// Pin the layers the operation builds on, so gc keeps them (and their objects) until the
    /// lease ends, and claim the ones not stored yet. Per diff_id: stored, claimed by this lease
    /// now (read it), or being read by another live lease. The pins and claims are recorded and
    /// the layers looked up in one transaction under the shared store lock, so a gc sweep
    /// either comes after and sees the pins, or came before and the lookup sees what it left.
    pub fn pin_layers(&self, diff_ids: &[Digest]) -> Result<Vec<LayerState>> {
        Ok(self
            .pin(diff_ids, true)?
            .into_iter()
            .map(|s| s.expect("claimed when not stored"))
            .collect())
    }

    /// Pin stored layers for a long read (see [`Store::pin_image`]); one that is not stored (any
    /// more) fails with [`Error::LayerNotFound`], and nothing is claimed.
    pub fn pin_stored(&self, diff_ids: &[Digest]) -> Result<()> {
        for (d, state) in diff_ids.iter().zip(self.pin(diff_ids, false)?) {
            if state != Some(LayerState::Stored) {
                self.store.check_not_damaged(&[*d])?;
                return Err(Error::LayerNotFound {
                    diff_id: d.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Pin images by manifest digest, whole (manifest, config, layers, objects), whether or not
    /// they are stored yet: gc keeps each from the moment it is stored until the lease ends. An
    /// operation that imports an image and then records what keeps it (bind) pins it first, so
    /// a gc between the import and the record cannot take it. Returns, per digest, whether the
    /// image is stored now. Under the shared store lock, as [`Lease::pin_layers`].
    pub fn pin_images(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let _shared = self.store.lock(LockMode::Shared)?;
        let mut conn = self.store.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(digests.len());
        {
            let mut pin = tx.prepare_cached(
                "INSERT INTO lease_images (digest, lease) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?;
            let mut has = tx.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM images WHERE manifest_digest = ?1)",
            )?;
            for d in digests {
                let d = d.to_string();
                pin.execute(params![d, self.id])?;
                out.push(has.query_row([&d], |r| r.get(0))?);
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// [`Lease::pin_layers`], claiming layers that are not stored only if `claim` (`None` for
    /// those otherwise).
    fn pin(&self, diff_ids: &[Digest], claim: bool) -> Result<Vec<Option<LayerState>>> {
        let _shared = self.store.lock(LockMode::Shared)?;
        let mut conn = self.store.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(diff_ids.len());
        {
            let mut pin = tx.prepare_cached(
                "INSERT INTO lease_layers (diff_id, lease) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?;
            // A layer fsck marked damaged counts as not stored (heal.rs).
            let mut has = tx.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM layers WHERE diff_id = ?1)
                    AND NOT EXISTS (SELECT 1 FROM damaged_layers WHERE diff_id = ?1)",
            )?;
            let mut owner = tx.prepare_cached(
                "SELECT c.lease, l.pid, l.boot_id, l.start_time FROM layer_claims c
                 LEFT JOIN leases l ON l.id = c.lease WHERE c.diff_id = ?1",
            )?;
            let mut claim_it = tx.prepare_cached(
                "INSERT INTO layer_claims (diff_id, lease) VALUES (?1, ?2)
                 ON CONFLICT (diff_id) DO UPDATE SET lease = excluded.lease",
            )?;
            for d in diff_ids {
                let d = d.to_string();
                pin.execute(params![d, self.id])?;
                if has.query_row([&d], |r| r.get(0))? {
                    out.push(Some(LayerState::Stored));
                    continue;
                }
                if !claim {
                    out.push(None);
                    continue;
                }
                // The claimer, if it is another lease whose process still runs.
                let held: Option<(String, bool)> = owner
                    .query_row([&d], |r| {
                        let alive = match (r.get(1)?, r.get::<_, Option<String>>(2)?, r.get(3)?) {
                            (Some(pid), Some(boot), Some(start)) => runs(pid, &boot, start),
                            _ => false,
                        };
                        Ok((r.get(0)?, alive))
                    })
                    .optional()?;
                match held {
                    Some((lease, true)) if lease != self.id => {
                        out.push(Some(LayerState::Claimed { lease }));
                    }
                    _ => {
                        claim_it.execute(params![d, self.id])?;
                        out.push(Some(LayerState::Mine));
                    }
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Say whether this lease waits for layers other leases read (see [`Lease::pin_layers`]).
    pub fn set_waiting(&self, waiting: bool) -> Result<()> {
        self.store.conn().execute(
            "UPDATE leases SET waiting = ?2 WHERE id = ?1",
            params![self.id, waiting],
        )?;
        Ok(())
    }

    /// End the lease inside the caller's publish transaction: its row and its pins.
    pub(crate) fn delete_in(&self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        end_lease(tx, &self.id)
    }

    /// After the publish transaction committed: remove the staging directory.
    pub(crate) fn finish(mut self) -> Result<()> {
        let staging = self.staging.take().expect("staging lives until release");
        self.id.clear();
        staging.remove()
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(staging) = self.staging.take() {
            if let Err(e) = staging.remove() {
                log::warn!("could not remove staging of lease {}: {e}", self.id);
            }
            if let Err(e) = end_lease(&self.store.conn(), &self.id) {
                log::warn!("could not drop lease {}: {e}", self.id);
            }
        }
    }
}
