//! Lookups `why` follows from a layer or an object up to what keeps it.

use serde::Serialize;

use super::object_ids;
use crate::digest::{Digest, ObjectId};
use crate::error::Result;
use crate::store::Store;

/// A lease's pin on a layer or an object: an operation in flight that keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeasePin {
    /// The lease id.
    pub lease: String,
    /// What the operation does.
    pub what: String,
}

impl Store {
    /// The keys of the layers rows (diff_ids, and merged trees' keys) whose entries name the
    /// object `id`, sorted.
    pub fn layers_holding(&self, id: &ObjectId) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT DISTINCT l.diff_id FROM entries e JOIN layers l ON l.id = e.layer
             WHERE e.object = ?1 ORDER BY l.diff_id",
        )?;
        let keys = stmt
            .query_map([&id.as_bytes()[..]], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(keys)
    }

    /// The live leases' pins on the stored layer `diff_id`.
    pub fn lease_pins_of_layer(&self, diff_id: &Digest) -> Result<Vec<LeasePin>> {
        self.lease_pins(
            "SELECT ll.lease, le.what FROM lease_layers ll JOIN leases le ON le.id = ll.lease
             WHERE ll.diff_id = ?1 ORDER BY ll.lease",
            rusqlite::types::Value::Text(diff_id.to_string()),
        )
    }

    /// The live leases' pins on the object `id`.
    pub fn lease_pins_of_object(&self, id: &ObjectId) -> Result<Vec<LeasePin>> {
        self.lease_pins(
            "SELECT lo.lease, le.what FROM lease_objects lo JOIN leases le ON le.id = lo.lease
             WHERE lo.id = ?1 ORDER BY lo.lease",
            rusqlite::types::Value::Blob(id.as_bytes().to_vec()),
        )
    }

    /// The live leases' pins on whole images by manifest digest ([`crate::Lease::pin_images`]),
    /// sorted by lease.
    pub fn lease_image_pins(&self) -> Result<Vec<(LeasePin, Digest)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT li.lease, le.what, li.digest FROM lease_images li
             JOIN leases le ON le.id = li.lease ORDER BY li.lease, li.digest",
        )?;
        let rows: Vec<(String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(lease, what, d)| Ok((LeasePin { lease, what }, d.parse()?)))
            .collect()
    }

    fn lease_pins(&self, sql: &str, key: rusqlite::types::Value) -> Result<Vec<LeasePin>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        let pins = stmt
            .query_map([key], |r| {
                Ok(LeasePin {
                    lease: r.get(0)?,
                    what: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(pins)
    }

    /// Whether the layer `diff_id` is stored.
    pub fn has_layer(&self, diff_id: &Digest) -> Result<bool> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM layers WHERE diff_id = ?1)",
            [diff_id.to_string()],
            |r| r.get(0),
        )?)
    }

    /// Whether the store has the object `id` in any form: a row, a loose file (perhaps one no
    /// row names yet), or a lease's pin.
    pub fn has_object(&self, id: &ObjectId) -> Result<bool> {
        let known: bool = self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM objects WHERE id = ?1)
                 OR EXISTS (SELECT 1 FROM lease_objects WHERE id = ?1)",
            [&id.as_bytes()[..]],
            |r| r.get(0),
        )?;
        Ok(known || self.objects.symlink_metadata(id.rel_path()).is_ok())
    }

    /// Every object id the index has a row for, sorted.
    pub fn object_ids(&self) -> Result<Vec<ObjectId>> {
        let mut ids = object_ids(&self.conn(), "SELECT id FROM objects")?;
        ids.sort();
        Ok(ids)
    }
}
