//! Space accounting, computed from the index alone (never by walking trees): totals kept in
//! `counters` and a per-image summary kept in `image_usage` (`df/usage.rs`), both up to date at
//! every publish, so `df` reads a few rows whatever the store's size.

use serde::Serialize;

use crate::digest::Digest;
use crate::error::Result;
use crate::store::Store;

pub(crate) mod usage;

/// Per-image usage.
#[derive(Clone, Debug, Serialize)]
pub struct ImageUsage {
    pub name: String,
    pub manifest_digest: Digest,
    /// Regular file content of all its layers, duplicates counted.
    pub logical_bytes: u64,
    /// Distinct content only this image needs (freed if it alone were removed).
    pub exclusive_bytes: u64,
    /// Distinct content it shares with other images.
    pub shared_bytes: u64,
}

/// What `df` reports.
#[derive(Clone, Debug, Serialize)]
pub struct DfReport {
    pub images: Vec<ImageUsage>,
    /// Sum of the images' logical bytes.
    pub logical_bytes: u64,
    /// Loose object files plus the index (which holds the inline objects).
    pub stored_bytes: u64,
    /// Distinct content bytes, loose and inline.
    pub object_bytes: u64,
    pub loose_bytes: u64,
    pub objects: u64,
    pub loose_objects: u64,
    pub inline_objects: u64,
    pub index_bytes: u64,
    pub layers: u64,
    /// logical_bytes / object_bytes.
    pub dedup_ratio: f64,
}

/// Totals over the object rows, kept in `counters` by everything that inserts or deletes rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObjectTotals {
    pub objects: i64,
    pub object_bytes: i64,
    pub loose_objects: i64,
    /// Stored bytes of the loose files.
    pub loose_bytes: i64,
}

impl ObjectTotals {
    const NAMES: [&str; 4] = ["objects", "object_bytes", "loose_objects", "loose_bytes"];

    fn values(&self) -> [i64; 4] {
        [
            self.objects,
            self.object_bytes,
            self.loose_objects,
            self.loose_bytes,
        ]
    }

    /// The totals as recorded.
    pub(crate) fn recorded(conn: &rusqlite::Connection) -> Result<Self> {
        let mut t = [0i64; 4];
        let mut stmt = conn.prepare_cached("SELECT value FROM counters WHERE name = ?1")?;
        for (v, name) in t.iter_mut().zip(Self::NAMES) {
            *v = stmt.query_row([name], |r| r.get(0))?;
        }
        Ok(ObjectTotals {
            objects: t[0],
            object_bytes: t[1],
            loose_objects: t[2],
            loose_bytes: t[3],
        })
    }

    /// The totals counted from the rows (fsck).
    pub(crate) fn counted(conn: &rusqlite::Connection) -> Result<Self> {
        Self::sum_of(conn, "objects", "COALESCE(stored, size)")
    }

    /// The totals over `table`, any table with the columns `size` and `loose`, with `stored`
    /// the SQL for a row's stored bytes.
    fn sum_of(conn: &rusqlite::Connection, table: &str, stored: &str) -> Result<Self> {
        Ok(conn.query_row(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(loose), 0),
                        COALESCE(SUM(loose * {stored}), 0) FROM {table}"
            ),
            [],
            |r| {
                Ok(ObjectTotals {
                    objects: r.get(0)?,
                    object_bytes: r.get(1)?,
                    loose_objects: r.get(2)?,
                    loose_bytes: r.get(3)?,
                })
            },
        )?)
    }

    /// One object row, as a delta.
    pub fn row(size: u64, loose: bool, stored: u64) -> Self {
        ObjectTotals {
            objects: 1,
            object_bytes: size as i64,
            loose_objects: loose.into(),
            loose_bytes: if loose { stored as i64 } else { 0 },
        }
    }

    /// Add `self` to the recorded totals (subtract with [`ObjectTotals::negated`]), inside the
    /// caller's transaction.
    pub(crate) fn add_to(&self, conn: &rusqlite::Connection) -> Result<()> {
        let mut stmt =
            conn.prepare_cached("UPDATE counters SET value = value + ?2 WHERE name = ?1")?;
        for (name, v) in Self::NAMES.iter().zip(self.values()) {
            if v != 0 {
                stmt.execute(rusqlite::params![name, v])?;
            }
        }
        Ok(())
    }

    /// Replace the recorded totals (fsck --repair).
    pub(crate) fn record(&self, conn: &rusqlite::Connection) -> Result<()> {
        let mut stmt = conn.prepare_cached("UPDATE counters SET value = ?2 WHERE name = ?1")?;
        for (name, v) in Self::NAMES.iter().zip(self.values()) {
            stmt.execute(rusqlite::params![name, v])?;
        }
        Ok(())
    }

    /// The totals with every sign flipped (a deletion's delta).
    pub fn negated(&self) -> Self {
        ObjectTotals {
            objects: -self.objects,
            object_bytes: -self.object_bytes,
            loose_objects: -self.loose_objects,
            loose_bytes: -self.loose_bytes,
        }
    }
}

impl std::ops::AddAssign for ObjectTotals {
    fn add_assign(&mut self, o: Self) {
        self.objects += o.objects;
        self.object_bytes += o.object_bytes;
        self.loose_objects += o.loose_objects;
        self.loose_bytes += o.loose_bytes;
    }
}

impl Store {
    /// Compute the space report.
    pub fn df(&self) -> Result<DfReport> {
        let images = self.images()?;
        let conn = self.conn();
        let ObjectTotals {
            objects,
            object_bytes,
            loose_objects,
            loose_bytes,
        } = ObjectTotals::recorded(&conn)?;
        let layers: i64 =
            conn.query_row("SELECT COUNT(*) FROM layers WHERE merged = 0", [], |r| {
                r.get(0)
            })?;
        // Exclusive and shared bytes per image from the summary publishes keep (usage.rs); if
        // it does not track exactly the named images, counted from the entries.
        let usage = match usage::recorded(&conn)? {
            Some(u) => u,
            None => {
                log::debug!("df: the usage summary is behind the refs; counting from entries");
                usage::recompute(&conn)?
            }
        };
        drop(conn);
        let mut out = Vec::new();
        let mut logical_bytes = 0;
        let mut counted = std::collections::HashSet::new();
        for (name, info) in images {
            let (exclusive_bytes, shared_bytes) = usage.get(&info.id).copied().unwrap_or_default();
            if counted.insert(info.id) {
                logical_bytes += info.logical_size;
            }
            out.push(ImageUsage {
                name,
                manifest_digest: info.manifest_digest,
                logical_bytes: info.logical_size,
                exclusive_bytes,
                shared_bytes,
            });
        }
        let index_bytes = ["index.sqlite", "index.sqlite-wal"]
            .iter()
            .filter_map(|n| self.root.symlink_metadata(n).ok())
            .map(|m| m.len())
            .sum::<u64>();
        let object_bytes = object_bytes as u64;
        Ok(DfReport {
            images: out,
            logical_bytes,
            stored_bytes: loose_bytes as u64 + index_bytes,
            object_bytes,
            loose_bytes: loose_bytes as u64,
            objects: objects as u64,
            loose_objects: loose_objects as u64,
            inline_objects: (objects - loose_objects) as u64,
            index_bytes,
            layers: layers as u64,
            dedup_ratio: if object_bytes == 0 {
                1.0
            } else {
                logical_bytes as f64 / object_bytes as f64
            },
        })
    }
}
