//! Image labels: those of the image's config, indexed when the image row is written, and local
//! ones the store keeps beside the image (`import --label`), which change nothing in its
//! manifest or config, so its digest stays. Both go with the image row.

use std::collections::BTreeMap;

use rusqlite::{Transaction, params};
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::Store;

/// An image's labels, config and local apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Labels {
    /// From the image config (`config.Labels`).
    pub config: BTreeMap<String, String>,
    /// Kept by the store (`import --label`).
    pub local: BTreeMap<String, String>,
}

impl Labels {
    /// The value of `key`: a local label overrides the config's.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.local
            .get(key)
            .or_else(|| self.config.get(key))
            .map(String::as_str)
    }
}

/// A label filter, podman's `label=KEY[=VALUE]`: the key must be present, with that value if
/// one is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    pub value: Option<String>,
}

impl LabelFilter {
    /// Whether `labels` pass.
    pub fn matches(&self, labels: &Labels) -> bool {
        match (labels.get(&self.key), &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(v), Some(want)) => v == want,
        }
    }
}

/// Check a local label's key: not empty, no `=`, no control characters.
pub fn check_label(key: &str, value: &str) -> Result<()> {
    let bad = |reason| Error::InvalidLabel {
        label: format!("{key}={value}"),
        reason,
    };
    if key.is_empty() {
        return Err(bad("the key is empty"));
    }
    if key.contains('=') {
        return Err(bad("the key contains '='"));
    }
    if key.chars().chain(value.chars()).any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    Ok(())
}

/// Index the config labels of the image row `image` (in the transaction that writes it).
pub(crate) fn index_config_labels(tx: &Transaction<'_>, image: i64) -> Result<()> {
    // A label value that is not a string (configs written by hand) is kept as its JSON text.
    tx.execute(
        "INSERT OR IGNORE INTO image_labels (image, local, key, value)
         SELECT i.id, 0, j.key, CAST(j.value AS TEXT)
         FROM images i, json_each(CAST(i.config AS TEXT), '$.config.Labels') j
         WHERE i.id = ?1",
        [image],
    )?;
    Ok(())
}

impl Store {
    /// The labels of an image.
    pub fn labels(&self, image: &Digest) -> Result<Labels> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT l.local, l.key, l.value FROM image_labels l
             JOIN images i ON i.id = l.image WHERE i.manifest_digest = ?1",
        )?;
        let mut out = Labels::default();
        let mut rows = stmt.query([image.to_string()])?;
        while let Some(r) = rows.next()? {
            let (local, key, value): (bool, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if local {
                out.local.insert(key, value);
            } else {
                out.config.insert(key, value);
            }
        }
        Ok(out)
    }

    /// Set local labels on a stored image (replacing a local label of the same key) in one
    /// durable transaction. The image's digest does not change.
    pub fn set_local_labels(&self, image: &Digest, labels: &[(String, String)]) -> Result<()> {
        for (k, v) in labels {
            check_label(k, v)?;
        }
        self.durable(false, |tx| -> Result<()> {
            let id = image_id(tx, image)?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO image_labels (image, local, key, value) VALUES (?1, 1, ?2, ?3)
                 ON CONFLICT DO UPDATE SET value = excluded.value",
            )?;
            for (k, v) in labels {
                stmt.execute(params![id, k, v])?;
            }
            Ok(())
        })
    }

    /// The manifest digests of the images whose labels pass every filter (a local label
    /// overrides a config label of the same key), sorted. Each filter is one lookup in the
    /// labels' (key, value) index.
    pub fn images_with_labels(&self, filters: &[LabelFilter]) -> Result<Vec<Digest>> {
        let conn = self.conn();
        let mut sql = String::from("SELECT manifest_digest FROM images i WHERE 1");
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::new();
        for f in filters {
            // The label's effective value: the local one if there is one, else the config's.
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM image_labels l WHERE l.image = i.id AND l.key = ?{k}
                   AND (l.local = 1 OR NOT EXISTS (SELECT 1 FROM image_labels o
                        WHERE o.image = i.id AND o.key = l.key AND o.local = 1)){v})",
                k = params.len() + 1,
                v = if f.value.is_some() {
                    format!(" AND l.value = ?{}", params.len() + 2)
                } else {
                    String::new()
                }
            ));
            params.push(&f.key);
            if let Some(v) = &f.value {
                params.push(v);
            }
        }
        let mut stmt = conn.prepare(&sql)?;
        let mut out = stmt
            .query_map(params.as_slice(), |r| r.get::<_, String>(0))?
            .map(|d| d?.parse::<Digest>())
            .collect::<Result<Vec<Digest>>>()?;
        out.sort();
        Ok(out)
    }
}

/// The row id of a stored image.
pub(crate) fn image_id(tx: &rusqlite::Connection, image: &Digest) -> Result<i64> {
    use rusqlite::OptionalExtension;
    tx.query_row(
        "SELECT id FROM images WHERE manifest_digest = ?1",
        [image.to_string()],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| Error::ImageNotStored {
        digest: image.to_string(),
    })
}
