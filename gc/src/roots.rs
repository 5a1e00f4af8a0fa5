//! The policy: which refs are roots, and what each keeps. What a ref of each kind keeps is data
//! in the store ([`layerstore_store::RefKind::keeps`], shared with fsck); here it becomes the roots of a
//! collection.

use std::collections::HashSet;

use layerstore_store::collect::Roots;
use layerstore_store::merged::merged_key_image;
use layerstore_store::refs::Keeps;
use layerstore_store::{Digest, RefInfo, RefName};

/// What one root ref keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kept {
    /// The image, whole: manifest, config and every layer.
    Image(Digest),
    /// The image's manifest and config only.
    Metadata(Digest),
    /// The merged tree of the image, and the image whole.
    Merged(Digest),
}

impl Kept {
    /// The image kept, wholly or in part.
    pub(crate) fn image(self) -> Digest {
        match self {
            Kept::Image(d) | Kept::Metadata(d) | Kept::Merged(d) => d,
        }
    }

    /// Whether the image's layers are kept.
    pub(crate) fn layers(self) -> bool {
        !matches!(self, Kept::Metadata(_))
    }
}

/// The names of `refs`, to tell whether the ref a bound ref lives by is there.
pub(crate) fn names(refs: &[RefInfo]) -> HashSet<&RefName> {
    refs.iter().map(|r| &r.name).collect()
}

/// What `r` keeps, if it is a root now: a ref that lives by another (a bound ref by its root)
/// is one only while that one exists; a target that does not parse keeps nothing (fsck reports
/// it as dangling).
pub(crate) fn kept(r: &RefInfo, names: &HashSet<&RefName>) -> Option<Kept> {
    if orphaned(r, names) {
        return None;
    }
    match r.kind.keeps() {
        Keeps::Nothing => None,
        Keeps::Image => r.target.parse().ok().map(Kept::Image),
        Keeps::Metadata => r.target.parse().ok().map(Kept::Metadata),
        Keeps::MergedTree => merged_key_image(&r.target).map(Kept::Merged),
    }
}

/// Whether `r` lives by a ref that is gone (a bound ref whose root was removed).
fn orphaned(r: &RefInfo, names: &HashSet<&RefName>) -> bool {
    r.name.lives_by().is_some_and(|by| !names.contains(&by))
}

/// The roots of a collection, given every ref (a [`layerstore_store::collect::RootPolicy`]).
/// Bound refs whose root is gone keep nothing and go.
pub fn roots(refs: &[RefInfo]) -> Roots {
    let names = names(refs);
    let mut roots = Roots::default();
    for r in refs {
        match kept(r, &names) {
            Some(Kept::Image(d)) => {
                roots.images.insert(d);
            }
            Some(Kept::Metadata(d)) => {
                roots.metadata.insert(d);
            }
            Some(Kept::Merged(d)) => {
                roots.merged.insert(d);
                roots.images.insert(d);
            }
            None if orphaned(r, &names) => {
                roots.drop_refs.insert(r.name.clone());
            }
            None => {}
        }
    }
    roots
}
