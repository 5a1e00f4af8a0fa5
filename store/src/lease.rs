//! Leases: a record of an operation in flight (an import), with enough to tell whether its
//! process is still alive after a crash. Each lease owns `staging/ID/`.

use rusqlite::params;
use serde::Serialize;

use crate::error::Result;
use crate::object::Staging;
use crate::store::{Store, now};

/// An operation in flight. Dropping it without [`Lease::release`] removes its row and staging.
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

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Store {
    /// Take a lease for `what` and create its staging directory.
    pub fn begin_lease(&self, what: &str) -> Result<Lease<'_>> {
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
                let _ = self
                    .conn()
                    .execute("DELETE FROM leases WHERE id = ?1", [&id]);
                return Err(e);
            }
        };
        Ok(Lease {
            store: self,
            id,
            staging: Some(staging),
        })
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
            l.alive = process_identity(l.pid)
                .is_some_and(|(boot, start)| boot == l.boot_id && start == l.start_time);
            out.push(l);
        }
        Ok(out)
    }

    /// Drop leases whose process is gone, with their staging directories. Returns how many.
    pub fn reclaim_dead_leases(&self) -> Result<usize> {
        let dead: Vec<_> = self.leases()?.into_iter().filter(|l| !l.alive).collect();
        for l in &dead {
            self.conn()
                .execute("DELETE FROM leases WHERE id = ?1", [&l.id])?;
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

    /// Remove the lease row inside the caller's publish transaction.
    pub(crate) fn delete_in(&self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        tx.execute("DELETE FROM leases WHERE id = ?1", [&self.id])?;
        Ok(())
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
            if let Err(e) = self
                .store
                .conn()
                .execute("DELETE FROM leases WHERE id = ?1", [&self.id])
            {
                log::warn!("could not drop lease {}: {e}", self.id);
            }
        }
    }
}
