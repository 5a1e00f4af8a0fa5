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

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn r(name: &str, target: String) -> RefInfo {
        let name: RefName = name.parse().unwrap();
        RefInfo {
            kind: name.kind(),
            name,
            target,
            created: 0,
        }
    }

    /// Each kind keeps what DESIGN.md says, table-driven: refs, then the images kept whole,
    /// the images kept in part (manifest and config) and the merged trees kept.
    #[test]
    fn each_ref_kind_keeps_what_its_definition_says() {
        let (a, b) = (digest(1), digest(2));
        let bound_b = format!("bound/deploy/{b}");
        let merged_a = layerstore_store::merged::merged_key(&a);
        let none: &[Digest] = &[];
        type Case<'a> = (Vec<RefInfo>, &'a [Digest], &'a [Digest], &'a [Digest]);
        let cases: [Case; 8] = [
            (vec![r("image/x", a.to_string())], &[a], none, none),
            (vec![r("root/x", a.to_string())], &[a], none, none),
            (vec![r("prepared/x", a.to_string())], none, &[a], none),
            (
                vec![r(&format!("layer/{a}"), a.to_string())],
                none,
                none,
                none,
            ),
            (vec![r("merged/x", merged_a)], &[a], none, &[a]),
            (
                vec![r("root/deploy", a.to_string()), r(&bound_b, b.to_string())],
                &[a, b],
                none,
                none,
            ),
            (vec![r(&bound_b, b.to_string())], none, none, none),
            // A target that names no image keeps nothing (fsck calls it dangling).
            (
                vec![r("image/x", "sha256:nonsense".into())],
                none,
                none,
                none,
            ),
        ];
        for (i, (refs, images, metadata, merged)) in cases.iter().enumerate() {
            let got = roots(refs);
            assert_eq!(got.images, images.iter().copied().collect(), "case {i}");
            assert_eq!(got.metadata, metadata.iter().copied().collect(), "case {i}");
            assert_eq!(got.merged, merged.iter().copied().collect(), "case {i}");
        }
        // The bound ref whose root is gone goes; with its root, it stays.
        let dropped: Vec<String> = roots(&cases[6].0)
            .drop_refs
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(dropped, [bound_b]);
        assert!(roots(&cases[5].0).drop_refs.is_empty());
    }
}
