//! Healing: what `fsck --repair` does with content that is damaged, and how the store gets it
//! back.
//!
//! A corrupt object (its content no longer hashes to its name, its file is the wrong size, has
//! lost its 0444 mode or is gone while entries still name it) cannot be trusted, and the store
//! keeps no second copy. So `fsck --repair` removes it — file, row and inline content — and
//! records each layer whose entries name it in `damaged_layers`. From then on:
//! - an import of any image with such a layer reads the layer again from its source instead of
//!   finding it "already stored" (its layer rows stay; the objects it writes come back with
//!   rows of their own, and publishing them clears the marks);
//! - a read of a damaged layer (checkout, cat, ls, export, disk) fails with
//!   [`Error::LayerDamaged`], which names the images to import again;
//! - fsck reports each damaged layer until then.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::df::ObjectTotals;
use crate::digest::{Digest, ObjectId};
use crate::error::{Error, Result};
use crate::store::{Store, now};

/// A layer fsck found content of damaged, and the images that have it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DamagedLayer {
    pub diff_id: String,
    /// The removed objects it needs, hex.
    pub objects: Vec<String>,
    /// Image names (or manifest digests of unnamed images) that list the layer: importing any
    /// of them again heals it.
    pub images: Vec<String>,
}

impl DamagedLayer {
    /// What to tell a user: which images to import again.
    pub fn advice(&self) -> String {
        if self.images.is_empty() {
            "no stored image lists it; remove what uses it".into()
        } else {
            format!("import one of these again: {}", self.images.join(", "))
        }
    }
}

impl Store {
    /// Remove a damaged object — its file, row and inline content — and mark every layer whose
    /// entries name it as damaged. Returns the layers marked (fsck --repair).
    pub fn remove_damaged_object(&self, id: &ObjectId) -> Result<Vec<String>> {
        let layers = self.durable(true, |tx| -> Result<Vec<String>> {
            let key = &id.as_bytes()[..];
            let layers: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT DISTINCT l.diff_id FROM entries e JOIN layers l ON l.id = e.layer
                     WHERE e.object = ?1",
                )?;
                stmt.query_map([key], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut mark = tx.prepare_cached(
                "INSERT INTO damaged_layers (diff_id, object, found) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?;
            for l in &layers {
                mark.execute(params![l, key, now()])?;
            }
            let gone: Option<(ObjectTotals, Option<i64>, i64)> = tx
                .query_row(
                    "DELETE FROM objects WHERE id = ?1
                     RETURNING size, loose, COALESCE(stored, size), content, users",
                    [key],
                    |r| {
                        Ok((
                            ObjectTotals::row(
                                r.get::<_, i64>(0)? as u64,
                                r.get(1)?,
                                r.get::<_, i64>(2)? as u64,
                            ),
                            r.get(3)?,
                            r.get(4)?,
                        ))
                    },
                )
                .optional()?;
            if let Some((t, content, users)) = gone {
                t.negated().add_to(tx)?;
                if let Some(c) = content {
                    tx.execute("DELETE FROM inline_contents WHERE id = ?1", [c])?;
                }
                // Named images had it: their usage no longer counts it.
                if users != 0 {
                    crate::df::usage::rebuild(tx)?;
                }
            }
            Ok(layers)
        })?;
        match rustix::fs::unlinkat(
            &self.objects,
            id.rel_path().as_str(),
            rustix::fs::AtFlags::empty(),
        ) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(Error::io(self.object_path(id), e)),
        }
        self.drop_variants_of(&[*id])?;
        Ok(layers)
    }

    /// The layers marked damaged, with the images that list them.
    pub fn damaged_layers(&self) -> Result<Vec<DamagedLayer>> {
        let rows: Vec<(String, Vec<u8>)> = {
            let conn = self.conn();
            let mut stmt =
                conn.prepare("SELECT diff_id, object FROM damaged_layers ORDER BY diff_id")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut out: Vec<DamagedLayer> = Vec::new();
        for (diff_id, object) in rows {
            match out.last_mut() {
                Some(d) if d.diff_id == diff_id => d.objects.push(hex::encode(object)),
                _ => out.push(DamagedLayer {
                    images: self.images_with_layer(&diff_id)?,
                    diff_id,
                    objects: vec![hex::encode(object)],
                }),
            }
        }
        Ok(out)
    }

    /// Names of the images that list a layer (the manifest digest of an image without a name).
    fn images_with_layer(&self, diff_id: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT i.manifest_digest,
                    (SELECT group_concat(substr(r.name, 7), ', ') FROM refs r
                     WHERE r.name LIKE 'image/%' AND r.target = i.manifest_digest)
             FROM images i WHERE i.id IN (SELECT image FROM image_layers WHERE diff_id = ?1)
             ORDER BY i.id",
        )?;
        let rows = stmt.query_map([diff_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (digest, names) = row?;
            out.push(names.filter(|n| !n.is_empty()).unwrap_or(digest));
        }
        Ok(out)
    }

    /// Fail with [`Error::LayerDamaged`] if any of these layers is marked damaged.
    pub fn check_not_damaged(&self, diff_ids: &[Digest]) -> Result<()> {
        for d in diff_ids {
            let key = d.to_string();
            let damaged: bool = self.conn().query_row(
                "SELECT EXISTS (SELECT 1 FROM damaged_layers WHERE diff_id = ?1)",
                [&key],
                |r| r.get(0),
            )?;
            if damaged {
                let images = self.images_with_layer(&key)?;
                return Err(Error::LayerDamaged {
                    diff_id: key,
                    advice: DamagedLayer {
                        diff_id: String::new(),
                        objects: Vec::new(),
                        images,
                    }
                    .advice(),
                });
            }
        }
        Ok(())
    }

    /// Whether a layer is marked damaged (an import reads it again).
    pub fn is_damaged(&self, diff_id: &Digest) -> Result<bool> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM damaged_layers WHERE diff_id = ?1)",
            [diff_id.to_string()],
            |r| r.get(0),
        )?)
    }
}

/// Clear the marks of objects that have rows again, inside a publish transaction. The usage
/// summary counts them again (named images that have them counted without them).
pub(crate) fn clear_healed(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let healed = tx.execute(
        "DELETE FROM damaged_layers WHERE object IN (SELECT id FROM objects)",
        [],
    )?;
    if healed != 0 {
        crate::df::usage::rebuild(tx)?;
    }
    Ok(())
}
