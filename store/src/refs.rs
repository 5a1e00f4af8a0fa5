//! Refs: named roots. `image/NAME` → manifest digest, `layer/DIFFID` → diff_id, `merged/NAME` →
//! the merged tree a disk is generated from, `root/NAME` → a deployment's image by digest,
//! `bound/ROOT/DIGEST` → an image bound to a root, `prepared/NAME` → a cached update.
//!
//! What each kind keeps alive is written once, here, as data ([`RefKind::keeps`],
//! [`RefName::lives_by`]): gc marks by it and fsck checks against it.

use std::fmt;
use std::str::FromStr;

use rusqlite::params;
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{Store, now};

/// The kinds of ref.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RefKind {
    Image,
    Layer,
    Merged,
    Root,
    Bound,
    Prepared,
}

/// What a ref keeps alive, by its kind: the one definition gc's mark and fsck share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Keeps {
    /// Nothing by itself: a `layer/` ref names a stored layer, which lives only while a root
    /// lists it (the next gc drops the ref otherwise).
    Nothing,
    /// An image by manifest digest, whole: its manifest, config and every layer.
    Image,
    /// An image's manifest and config only, never its layers (a cached update).
    Metadata,
    /// A merged tree (its target is a key `merged:DIGEST`, see [`crate::merged::merged_key`]),
    /// and the image it flattens, whole.
    MergedTree,
}

impl RefKind {
    /// All kinds.
    pub const ALL: [RefKind; 6] = [
        RefKind::Image,
        RefKind::Layer,
        RefKind::Merged,
        RefKind::Root,
        RefKind::Bound,
        RefKind::Prepared,
    ];

    /// What a ref of this kind keeps alive. A `bound/` ref keeps it only while its root lives
    /// ([`RefName::lives_by`]).
    pub fn keeps(self) -> Keeps {
        match self {
            RefKind::Layer => Keeps::Nothing,
            RefKind::Image | RefKind::Root | RefKind::Bound => Keeps::Image,
            RefKind::Prepared => Keeps::Metadata,
            RefKind::Merged => Keeps::MergedTree,
        }
    }

    /// A `LIKE` pattern matching the names of refs of this kind.
    pub(crate) fn like_pattern(self) -> String {
        format!("{}/%", self.as_str())
    }

    /// The prefix in the ref name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Image => "image",
            RefKind::Layer => "layer",
            RefKind::Merged => "merged",
            RefKind::Root => "root",
            RefKind::Bound => "bound",
            RefKind::Prepared => "prepared",
        }
    }
}

impl FromStr for RefKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RefKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::InvalidRefName {
                name: s.into(),
                reason: "unknown ref kind",
            })
    }
}

/// A validated ref name `KIND/NAME`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName {
    full: String,
    kind_len: usize,
}

impl RefName {
    /// Build from a kind and a name, validating the name: 1–255 bytes of `[A-Za-z0-9._:@/+-]`,
    /// no empty, `.` or `..` segments.
    pub fn new(kind: RefKind, name: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidRefName {
            name: name.chars().take(300).collect(),
            reason,
        };
        if name.is_empty() || name.len() > 255 {
            return Err(bad("must be 1 to 255 bytes"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@/+-".contains(&b))
        {
            return Err(bad("may only contain letters, digits and . _ : @ / + -"));
        }
        if name
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(bad("has an empty, '.' or '..' segment"));
        }
        if kind == RefKind::Bound
            && name
                .rsplit_once('/')
                .is_none_or(|(_, d)| d.parse::<Digest>().is_err())
        {
            return Err(bad("a bound ref is named ROOT/DIGEST"));
        }
        let prefix = kind.as_str();
        Ok(RefName {
            full: format!("{prefix}/{name}"),
            kind_len: prefix.len(),
        })
    }

    /// An image ref.
    pub fn image(name: &str) -> Result<Self> {
        RefName::new(RefKind::Image, name)
    }

    /// The ref of a merged tree kept for disk generation, `merged/NAME`.
    pub fn merged(name: &str) -> Result<Self> {
        RefName::new(RefKind::Merged, name)
    }

    /// The ref of a cached update, `prepared/NAME`.
    pub fn prepared(name: &str) -> Result<Self> {
        RefName::new(RefKind::Prepared, name)
    }

    /// The ref of a root (a deployment), `root/NAME`.
    pub fn root(name: &str) -> Result<Self> {
        RefName::new(RefKind::Root, name)
    }

    /// The layer ref of a stored layer, `layer/DIFFID`.
    pub fn layer(diff_id: &Digest) -> Self {
        RefName::new(RefKind::Layer, &diff_id.to_string()).expect("a digest is a valid ref name")
    }

    /// The ref `bound/ROOT/DIGEST` that binds `image` to the root ref `root`.
    pub fn bound(root: &RefName, image: &Digest) -> Result<Self> {
        if root.kind() != RefKind::Root {
            return Err(Error::InvalidRefName {
                name: root.to_string(),
                reason: "an image can only be bound to a root/ ref",
            });
        }
        RefName::new(RefKind::Bound, &format!("{}/{image}", root.name()))
    }

    /// The ref this one is a root only while it exists: for `bound/ROOT/DIGEST`, `root/ROOT`.
    pub fn lives_by(&self) -> Option<RefName> {
        if self.kind() != RefKind::Bound {
            return None;
        }
        let (root, _) = self.name().rsplit_once('/')?;
        RefName::new(RefKind::Root, root).ok()
    }

    /// The kind.
    pub fn kind(&self) -> RefKind {
        self.full[..self.kind_len]
            .parse()
            .expect("validated at construction")
    }

    /// The name without the kind.
    pub fn name(&self) -> &str {
        &self.full[self.kind_len + 1..]
    }

    /// `KIND/NAME`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl FromStr for RefName {
    type Err = Error;
    /// Parse `KIND/NAME`.
    fn from_str(s: &str) -> Result<Self> {
        let (kind, name) = s.split_once('/').ok_or_else(|| Error::InvalidRefName {
            name: s.into(),
            reason: "must be KIND/NAME",
        })?;
        RefName::new(kind.parse()?, name)
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefName({})", self.full)
    }
}

impl Serialize for RefName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

/// Set refs inside the caller's transaction, replacing existing ones.
pub(crate) fn upsert_refs(
    tx: &rusqlite::Transaction<'_>,
    refs: &[(RefName, String)],
) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO refs (name, target, created) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET target = excluded.target, created = excluded.created",
    )?;
    for (name, target) in refs {
        stmt.execute(params![name.as_str(), target, now()])?;
    }
    if refs.iter().any(|(n, _)| n.kind() == RefKind::Image) {
        crate::df::usage::sync(tx)?;
    }
    Ok(())
}

/// A ref as listed.
#[derive(Clone, Debug, Serialize)]
pub struct RefInfo {
    pub name: RefName,
    pub kind: RefKind,
    pub target: String,
    pub created: i64,
}

impl Store {
    /// Set refs in one durable transaction (`synchronous=FULL`), replacing existing ones.
    pub fn set_refs(&self, refs: &[(RefName, String)]) -> Result<()> {
        self.durable(false, |tx| upsert_refs(tx, refs))
    }

    /// Remove refs in one durable transaction. A missing ref is an error and nothing is removed.
    pub fn remove_refs(&self, names: &[RefName]) -> Result<()> {
        self.durable(false, |tx| {
            for name in names {
                if tx.execute("DELETE FROM refs WHERE name = ?1", [name.as_str()])? == 0 {
                    return Err(Error::RefNotFound {
                        name: name.to_string(),
                    });
                }
            }
            if names.iter().any(|n| n.kind() == RefKind::Image) {
                crate::df::usage::sync(tx)?;
            }
            Ok(())
        })
    }

    /// The target of a ref, if it exists.
    pub fn ref_target(&self, name: &RefName) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn()
            .query_row(
                "SELECT target FROM refs WHERE name = ?1",
                [name.as_str()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// All refs, or those of one kind, sorted by name.
    pub fn refs(&self, kind: Option<RefKind>) -> Result<Vec<RefInfo>> {
        read_refs(&self.conn(), kind)
    }
}

/// All refs, or those of one kind, sorted by name, as `conn` sees them.
pub(crate) fn read_refs(
    conn: &rusqlite::Connection,
    kind: Option<RefKind>,
) -> Result<Vec<RefInfo>> {
    let mut stmt = conn.prepare_cached("SELECT name, target, created FROM refs ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, target, created) = row?;
        let name: RefName = name.parse()?;
        if kind.is_none_or(|k| k == name.kind()) {
            out.push(RefInfo {
                kind: name.kind(),
                name,
                target,
                created,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_are_validated() {
        let r = RefName::image("docker.io/library/debian:bookworm").unwrap();
        assert_eq!(r.kind(), RefKind::Image);
        assert_eq!(r.name(), "docker.io/library/debian:bookworm");
        assert_eq!(r.as_str().parse::<RefName>().unwrap(), r);
        for bad in ["", "../x", "a//b", "a/./b", "sp ace", "nul\0", "é"] {
            assert!(RefName::image(bad).is_err(), "{bad:?}");
        }
        assert!("nokind".parse::<RefName>().is_err());
        assert!("weird/x".parse::<RefName>().is_err());
    }
}
