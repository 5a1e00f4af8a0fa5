//! Prepared updates (ostree-ext's "cached update"): for an image name, the manifest and config
//! of a newer image its origin offers, checked but not fetched, so `status` can report it with
//! the network down and `import --prepared` fetches exactly that digest. The documents live in
//! the row itself, so a cached update pins nothing in the object store (it never pins layers);
//! the last check wins.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::Store;

/// A cached update of one image name.
#[derive(Clone, Debug, Serialize)]
pub struct PreparedUpdate {
    /// The image name it updates.
    pub name: String,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    #[serde(skip)]
    pub manifest: Vec<u8>,
    pub config_digest: Digest,
    #[serde(skip)]
    pub config: Vec<u8>,
    /// The source it was found at (`docker://HOST/REPO:TAG`).
    pub source: String,
    /// When it was checked (seconds since the epoch).
    pub checked: i64,
}

fn parse_digest(s: String) -> rusqlite::Result<Digest> {
    s.parse().map_err(|e: Error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

const COLUMNS: &str =
    "name, manifest_digest, manifest_media_type, manifest, config_digest, config, source, checked";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PreparedUpdate> {
    Ok(PreparedUpdate {
        name: r.get(0)?,
        manifest_digest: parse_digest(r.get(1)?)?,
        manifest_media_type: r.get(2)?,
        manifest: r.get(3)?,
        config_digest: parse_digest(r.get(4)?)?,
        config: r.get(5)?,
        source: r.get(6)?,
        checked: r.get(7)?,
    })
}

impl Store {
    /// Record (or replace) the cached update of `u.name`.
    pub fn set_prepared_update(&self, u: &PreparedUpdate) -> Result<()> {
        self.conn().execute(
            &format!(
                "INSERT OR REPLACE INTO prepared_updates ({COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                u.name,
                u.manifest_digest.to_string(),
                u.manifest_media_type,
                u.manifest,
                u.config_digest.to_string(),
                u.config,
                u.source,
                u.checked
            ],
        )?;
        Ok(())
    }

    /// The cached update of image `name`, if any.
    pub fn prepared_update(&self, name: &str) -> Result<Option<PreparedUpdate>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM prepared_updates WHERE name = ?1"),
                [name],
                row,
            )
            .optional()?)
    }

    /// Every cached update, by name.
    pub fn prepared_updates(&self) -> Result<Vec<PreparedUpdate>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM prepared_updates ORDER BY name"
        ))?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Drop the cached update of `name` (only if it is `digest`, when given); whether one went.
    pub fn clear_prepared_update(&self, name: &str, digest: Option<&Digest>) -> Result<bool> {
        let n = match digest {
            Some(d) => self.conn().execute(
                "DELETE FROM prepared_updates WHERE name = ?1 AND manifest_digest = ?2",
                params![name, d.to_string()],
            )?,
            None => self
                .conn()
                .execute("DELETE FROM prepared_updates WHERE name = ?1", [name])?,
        };
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    #[test]
    fn the_last_check_wins_and_clearing_may_name_the_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::init(&tmp.path().join("s"), &StoreOptions::default()).unwrap();
        let u = |m: &[u8], checked| PreparedUpdate {
            name: "app".into(),
            manifest_digest: Digest::of(m),
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            manifest: m.to_vec(),
            config_digest: Digest::of(b"c"),
            config: b"c".to_vec(),
            source: "docker://r/app:latest".into(),
            checked,
        };
        store.set_prepared_update(&u(b"one", 1)).unwrap();
        store.set_prepared_update(&u(b"two", 2)).unwrap();
        let got = store.prepared_update("app").unwrap().unwrap();
        assert_eq!(got.manifest_digest, Digest::of(b"two"));
        assert_eq!(got.checked, 2);
        assert_eq!(store.prepared_updates().unwrap().len(), 1);
        assert!(
            !store
                .clear_prepared_update("app", Some(&Digest::of(b"one")))
                .unwrap()
        );
        assert!(
            store
                .clear_prepared_update("app", Some(&Digest::of(b"two")))
                .unwrap()
        );
        assert!(store.prepared_update("app").unwrap().is_none());
    }
}
