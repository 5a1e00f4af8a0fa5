//! Roots and their bound images. A root (`root/NAME`, a deployment) pins one image by manifest
//! digest: its manifest, config and layers stay after the image's names are removed, until the
//! root moves to another image or is removed. An image bound to a root (`bound/ROOT/DIGEST`,
//! bootc's logically bound images) is kept, by digest, while the root binds it; the `bindings`
//! row beside the ref remembers the reference it was bound as. Both rows change together, in one
//! transaction, and removing a root removes its bindings with it.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsck::Finding;
use crate::labels::image_id;
use crate::refs::{RefKind, RefName, upsert_refs};
use crate::store::Store;

/// An image bound to a root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Binding {
    /// The root's name.
    pub root: String,
    /// The bound image's manifest digest.
    pub image: Digest,
    /// The reference it was bound as, `HOST/REPO@sha256:…`.
    pub reference: String,
    /// The ref that keeps it, `bound/ROOT/DIGEST`.
    pub r#ref: RefName,
}

/// A root as listed.
#[derive(Clone, Debug, Serialize)]
pub struct RootInfo {
    pub name: String,
    /// The image it pins, by manifest digest.
    pub image: Digest,
    /// The image's names (none once they are removed: the root still keeps it).
    pub names: Vec<String>,
    /// Its bound images, sorted by reference.
    pub bound: Vec<Binding>,
    /// When the root was set (seconds since the epoch).
    pub created: i64,
}

fn root_target(tx: &rusqlite::Connection, r: &RefName) -> Result<Option<Digest>> {
    let t: Option<String> = tx
        .query_row(
            "SELECT target FROM refs WHERE name = ?1",
            [r.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    t.map(|t| t.parse()).transpose()
}

fn bindings_of(tx: &rusqlite::Connection, root: &RefName) -> Result<Vec<Binding>> {
    let mut stmt = tx.prepare_cached(
        "SELECT image, reference FROM bindings WHERE root = ?1 ORDER BY reference, image",
    )?;
    let rows: Vec<(String, String)> = stmt
        .query_map([root.name()], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for (image, reference) in rows {
        let image: Digest = image.parse()?;
        out.push(Binding {
            root: root.name().to_string(),
            r#ref: RefName::bound(root, &image)?,
            image,
            reference,
        });
    }
    Ok(out)
}

/// Remove the bindings of `root` to `images` (all of them with `None`): rows and refs.
fn remove_bindings(
    tx: &Transaction<'_>,
    root: &RefName,
    images: Option<&[Digest]>,
) -> Result<Vec<Binding>> {
    let mut removed = Vec::new();
    for b in bindings_of(tx, root)? {
        if images.is_some_and(|only| !only.contains(&b.image)) {
            continue;
        }
        tx.execute("DELETE FROM refs WHERE name = ?1", [b.r#ref.as_str()])?;
        tx.execute(
            "DELETE FROM bindings WHERE root = ?1 AND image = ?2",
            params![root.name(), b.image.to_string()],
        )?;
        removed.push(b);
    }
    Ok(removed)
}

impl Store {
    /// Create the root `name` pinning `image`, or move it there. Returns the image it pinned
    /// before. The image must be stored.
    pub fn set_root(&self, name: &str, image: &Digest) -> Result<Option<Digest>> {
        let r = RefName::root(name)?;
        self.durable(true, |tx| -> Result<Option<Digest>> {
            image_id(tx, image)?;
            let previous = root_target(tx, &r)?;
            upsert_refs(tx, &[(r.clone(), image.to_string())])?;
            Ok(previous)
        })
    }

    /// Remove the root `name` and its bindings in one transaction. Returns the image it pinned
    /// and the bindings removed; the next gc frees what only they kept.
    pub fn remove_root(&self, name: &str) -> Result<(Digest, Vec<Binding>)> {
        let r = RefName::root(name)?;
        self.durable(true, |tx| -> Result<(Digest, Vec<Binding>)> {
            let image =
                root_target(tx, &r)?.ok_or_else(|| Error::RootNotFound { name: name.into() })?;
            let removed = remove_bindings(tx, &r, None)?;
            tx.execute("DELETE FROM refs WHERE name = ?1", [r.as_str()])?;
            Ok((image, removed))
        })
    }

    /// The image the root `name` pins.
    pub fn root_image(&self, name: &str) -> Result<Digest> {
        root_target(&self.conn(), &RefName::root(name)?)?
            .ok_or_else(|| Error::RootNotFound { name: name.into() })
    }

    /// Every root, sorted by name, with its image's names and its bindings.
    pub fn roots(&self) -> Result<Vec<RootInfo>> {
        let refs = self.refs(Some(RefKind::Root))?;
        let mut out = Vec::new();
        for r in refs {
            let image: Digest = r.target.parse()?;
            let names = self
                .image_by_digest(&image)?
                .map(|i| i.names)
                .unwrap_or_default();
            let bound = bindings_of(&self.conn(), &r.name)?;
            out.push(RootInfo {
                name: r.name.name().to_string(),
                image,
                names,
                bound,
                created: r.created,
            });
        }
        Ok(out)
    }

    /// Bind images to the root `root`, each `(manifest digest, reference)`, in one durable
    /// transaction: all or none. Every image must be stored and the root must exist; binding
    /// an image already bound replaces its reference (a rerun changes nothing).
    pub fn bind(&self, root: &str, images: &[(Digest, String)]) -> Result<Vec<Binding>> {
        self.bind_with(root, images, false)
    }

    /// [`Store::bind`], and unbind in the same transaction every image of the root that
    /// `images` does not list: the root's bindings become exactly `images` (`bind
    /// --from-image`: a root bound to what its image declares drops what its previous image
    /// declared when it moves).
    pub fn bind_exactly(&self, root: &str, images: &[(Digest, String)]) -> Result<Vec<Binding>> {
        self.bind_with(root, images, true)
    }

    fn bind_with(
        &self,
        root: &str,
        images: &[(Digest, String)],
        exactly: bool,
    ) -> Result<Vec<Binding>> {
        let r = RefName::root(root)?;
        self.durable(true, |tx| -> Result<Vec<Binding>> {
            if root_target(tx, &r)?.is_none() {
                return Err(Error::RootNotFound { name: root.into() });
            }
            if exactly {
                let listed: Vec<Digest> = images.iter().map(|(d, _)| *d).collect();
                let others: Vec<Digest> = bindings_of(tx, &r)?
                    .into_iter()
                    .map(|b| b.image)
                    .filter(|d| !listed.contains(d))
                    .collect();
                remove_bindings(tx, &r, Some(&others))?;
            }
            let mut refs = Vec::new();
            for (image, reference) in images {
                image_id(tx, image)?;
                refs.push((RefName::bound(&r, image)?, image.to_string()));
                tx.execute(
                    "INSERT INTO bindings (root, image, reference) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO UPDATE SET reference = excluded.reference",
                    params![r.name(), image.to_string(), reference],
                )?;
            }
            upsert_refs(tx, &refs)?;
            bindings_of(tx, &r)
        })
    }

    /// Unbind images from the root `root` (all of its bindings with `None`). Returns the
    /// bindings removed.
    pub fn unbind(&self, root: &str, images: Option<&[Digest]>) -> Result<Vec<Binding>> {
        let r = RefName::root(root)?;
        self.durable(true, |tx| -> Result<Vec<Binding>> {
            if root_target(tx, &r)?.is_none() {
                return Err(Error::RootNotFound { name: root.into() });
            }
            remove_bindings(tx, &r, images)
        })
    }

    /// The bindings of the root `root`.
    pub fn bindings(&self, root: &str) -> Result<Vec<Binding>> {
        bindings_of(&self.conn(), &RefName::root(root)?)
    }

    /// fsck's cross-check of `bindings` rows against `bound/` refs; with `repair`, each
    /// mismatch is fixed as its [`Finding`] says. Returns the findings that remain and those
    /// repaired.
    pub(crate) fn check_bindings(&self, repair: bool) -> Result<(Vec<Finding>, Vec<Finding>)> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut found = Vec::new();
        let rows: Vec<(String, String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT root, image, reference FROM bindings
                 WHERE 'bound/' || root || '/' || image NOT IN (SELECT name FROM refs)
                 ORDER BY root, image",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        for (root, image, reference) in rows {
            found.push(Finding::BindingWithoutRef {
                root,
                image,
                reference,
            });
        }
        let refs: Vec<(String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT name, target FROM refs WHERE name LIKE ?1
                 AND name NOT IN (SELECT 'bound/' || root || '/' || image FROM bindings)
                 ORDER BY name",
            )?;
            stmt.query_map([RefKind::Bound.like_pattern()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        for (name, target) in refs {
            found.push(Finding::BoundRefWithoutBinding { name, target });
        }
        if !repair || found.is_empty() {
            return Ok((found, Vec::new()));
        }
        let stored = |d: &str| -> Result<bool> {
            Ok(tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM images WHERE manifest_digest = ?1)",
                [d],
                |r| r.get(0),
            )?)
        };
        for f in &found {
            match f {
                Finding::BindingWithoutRef { root, image, .. } => {
                    let r = RefName::root(root)?;
                    let digest: Option<Digest> = image.parse().ok();
                    match digest {
                        Some(d) if root_target(&tx, &r)?.is_some() && stored(image)? => {
                            upsert_refs(&tx, &[(RefName::bound(&r, &d)?, image.clone())])?;
                        }
                        _ => {
                            tx.execute(
                                "DELETE FROM bindings WHERE root = ?1 AND image = ?2",
                                params![root, image],
                            )?;
                        }
                    }
                }
                Finding::BoundRefWithoutBinding { name, target } => {
                    let r: RefName = name.parse()?;
                    let root = r.lives_by();
                    let alive = match &root {
                        Some(root) => root_target(&tx, root)?.is_some(),
                        None => false,
                    };
                    match root {
                        Some(root) if alive && stored(target)? => {
                            // The reference it was bound as is lost; the origin says where
                            // the image came from, the digest pins it.
                            let origin: Option<String> = tx
                                .query_row(
                                    "SELECT origin FROM images WHERE manifest_digest = ?1",
                                    [target],
                                    |r| r.get(0),
                                )
                                .optional()?
                                .flatten();
                            let reference =
                                match origin.as_deref().and_then(|o| o.strip_prefix("docker://")) {
                                    Some(o) => {
                                        let repo = o.split('@').next().unwrap_or(o);
                                        let last = repo.rfind('/').map_or(0, |i| i + 1);
                                        let repo = match repo[last..].rfind(':') {
                                            Some(i) => &repo[..last + i],
                                            None => repo,
                                        };
                                        format!("{repo}@{target}")
                                    }
                                    None => target.clone(),
                                };
                            tx.execute(
                                "INSERT INTO bindings (root, image, reference) VALUES (?1, ?2, ?3)",
                                params![root.name(), target, reference],
                            )?;
                        }
                        _ => {
                            tx.execute("DELETE FROM refs WHERE name = ?1", [name])?;
                        }
                    }
                }
                _ => unreachable!("only binding findings are made here"),
            }
        }
        tx.commit()?;
        Ok((Vec::new(), found))
    }
}
