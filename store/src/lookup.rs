//! Finding things by the names users type: an image by ref name, by its manifest digest or by
//! its ID (the config digest, as podman names images), whole or by a unique prefix, as `images`
//! shows them; and a path in an image's merged tree, with `ls` or `cat` semantics.

use crate::digest::{Digest, ObjectId};
use crate::error::{Error, Result};
use crate::flatten::MergedTree;
use crate::query::ImageInfo;
use crate::refs::RefName;
use crate::store::Store;
use crate::tree::{EntryKind, TreeEntry};

/// How the final component of a path is resolved when it is a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Follow it (`cat`, `stat -L`).
    Always,
    /// Show the symlink itself (`ls -l`), unless the path ends in `/`, which asks for what the
    /// link points at as with `ls -l link/`.
    NotLast,
}

impl MergedTree {
    /// The entry at `path`. Intermediate symlinks resolve inside the image root; `follow` says
    /// what happens to a final one. `image` names the image in the error: [`Error::PathNotFound`],
    /// or [`Error::NotADirectory`] for a path ending in `/` that names something else.
    pub fn find(&self, image: &str, path: &[u8], follow: Follow) -> Result<&TreeEntry> {
        let found = if follow == Follow::NotLast && !path.ends_with(b"/") {
            self.lookup_nofollow(path)
        } else {
            self.lookup(path)
        };
        let e = found.ok_or_else(|| Error::PathNotFound {
            image: image.into(),
            path: String::from_utf8_lossy(path).into_owned(),
        })?;
        // `dir/` names a directory (or a symlink to one), as in every POSIX path lookup.
        if path.ends_with(b"/") && e.kind != EntryKind::Directory {
            return Err(Error::NotADirectory {
                image: image.into(),
                path: String::from_utf8_lossy(path).into_owned(),
            });
        }
        Ok(e)
    }

    /// The regular file (or hard link) at `path`, symlinks followed, with its content's object.
    pub fn find_file(&self, image: &str, path: &[u8]) -> Result<(&TreeEntry, ObjectId)> {
        let e = self.find(image, path, Follow::Always)?;
        match (e.kind, e.object) {
            (EntryKind::Regular | EntryKind::Hardlink, Some(id)) => Ok((e, id)),
            _ => Err(Error::NotAFile {
                image: image.into(),
                path: String::from_utf8_lossy(path).into_owned(),
            }),
        }
    }
}

impl Store {
    /// The regular file at `path` in the image `image` names (see [`Store::find_image`]),
    /// symlinks followed: its entry and its content's object. Errors are
    /// [`Error::ImageNotFound`], [`Error::PathNotFound`] and [`Error::NotAFile`].
    pub fn lookup(&self, image: &str, path: &[u8]) -> Result<(TreeEntry, ObjectId)> {
        let info = self.find_image(image)?;
        let tree = self.merged_tree(&info)?;
        let (e, id) = tree.find_file(image, path)?;
        Ok((e.clone(), id))
    }

    /// Find an image as a user names it: an image ref name (`NAME` or `image/NAME`) first, then
    /// a manifest digest or an image ID (config digest), each whole or as a unique prefix of
    /// its hex, with or without `sha256:`. A prefix that fits several images is
    /// [`Error::AmbiguousImage`], listing them.
    pub fn find_image(&self, spec: &str) -> Result<ImageInfo> {
        let name = spec.strip_prefix("image/").unwrap_or(spec);
        if let Ok(r) = RefName::image(name)
            && let Some(target) = self.ref_target(&r)?
        {
            let digest: Digest = target.parse()?;
            return self
                .image_by_digest(&digest)?
                .ok_or_else(|| Error::ImageNotFound { name: name.into() });
        }
        let hex = spec.strip_prefix("sha256:").unwrap_or(spec);
        let is_hex = !hex.is_empty()
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_hex {
            if spec.starts_with("sha256:") {
                // A malformed digest says why (length, characters), not just "no image".
                spec.parse::<Digest>()?;
            }
            return Err(Error::ImageNotFound { name: spec.into() });
        }
        let mut matches: Vec<Digest> = Vec::new();
        {
            let conn = self.conn();
            let mut stmt =
                conn.prepare_cached("SELECT manifest_digest, config_digest FROM images")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (manifest, config) = row?;
                let fits = |d: &str| {
                    d.strip_prefix("sha256:")
                        .is_some_and(|h| h.starts_with(hex))
                };
                if fits(&manifest) || fits(&config) {
                    matches.push(manifest.parse()?);
                }
            }
        }
        match matches.len() {
            0 => Err(Error::ImageNotFound { name: spec.into() }),
            1 => self
                .image_by_digest(&matches[0])?
                .ok_or_else(|| Error::ImageNotFound { name: spec.into() }),
            _ => {
                let mut candidates = Vec::new();
                for d in &matches {
                    let names = self
                        .image_by_digest(d)?
                        .map(|i| i.names)
                        .unwrap_or_default();
                    candidates.push(if names.is_empty() {
                        d.to_string()
                    } else {
                        format!("{d} ({})", names.join(", "))
                    });
                }
                candidates.sort();
                Err(Error::AmbiguousImage {
                    prefix: spec.into(),
                    candidates,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> MergedTree {
        let mut file = TreeEntry::implicit_dir(b"usr/lib/os-release".to_vec());
        file.kind = EntryKind::Regular;
        file.object = Some(ObjectId::of(b"ID=test\n"));
        let link = |p: &str, t: &str| {
            let mut e = TreeEntry::implicit_dir(p.as_bytes().to_vec());
            e.kind = EntryKind::Symlink;
            e.link = Some(t.as_bytes().to_vec());
            e
        };
        let entries = vec![
            file,
            link("etc/os-release", "../usr/lib/os-release"),
            link("lib", "usr/lib"),
        ];
        MergedTree::build([(&Digest::of(b"layer"), entries.as_slice())]).unwrap()
    }

    #[test]
    fn a_final_symlink_is_followed_only_when_asked() {
        let t = tree();
        let e = t.find("img", b"/etc/os-release", Follow::NotLast).unwrap();
        assert_eq!(
            (e.path.as_slice(), e.kind),
            (&b"etc/os-release"[..], EntryKind::Symlink)
        );
        let e = t.find("img", b"/etc/os-release", Follow::Always).unwrap();
        assert_eq!(e.path, b"usr/lib/os-release");
        // Symlinks on the way resolve; a trailing slash asks for the target.
        let e = t.find("img", b"/lib/os-release", Follow::NotLast).unwrap();
        assert_eq!(e.path, b"usr/lib/os-release");
        assert_eq!(
            t.find("img", b"/lib", Follow::NotLast).unwrap().kind,
            EntryKind::Symlink
        );
        assert_eq!(
            t.find("img", b"/lib/", Follow::NotLast).unwrap().path,
            b"usr/lib"
        );
    }

    #[test]
    fn missing_paths_and_non_files_are_typed_errors() {
        let t = tree();
        assert!(matches!(
            t.find("img", b"/nope", Follow::Always),
            Err(Error::PathNotFound { .. })
        ));
        assert!(matches!(
            t.find_file("img", b"/usr/lib"),
            Err(Error::NotAFile { .. })
        ));
        assert!(matches!(
            t.find("img", b"/etc/os-release/", Follow::NotLast),
            Err(Error::NotADirectory { .. })
        ));
        let (e, id) = t.find_file("img", b"/etc/os-release").unwrap();
        assert_eq!(
            (e.path.as_slice(), id),
            (&b"usr/lib/os-release"[..], ObjectId::of(b"ID=test\n"))
        );
    }
}
