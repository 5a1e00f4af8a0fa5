//! Several images' merged trees stacked into one checkout, as kiwi's stackbuild does.

use std::path::Path;

use super::{CheckoutOptions, CheckoutStats};
use crate::error::{Error, Result};
use crate::flatten::MergedTree;
use crate::store::Store;
use crate::tree::{EntryKind, TreeEntry};

impl MergedTree {
    /// Several merged trees as one, applied in the given order as kiwi's stackbuild rsyncs each
    /// stash over the last (`rsync -aH`, no `--delete`): a later tree's entry replaces an
    /// earlier one's at the same path (a directory over a directory changes its metadata and
    /// keeps the earlier children; any other replacement drops what was below), and earlier
    /// entries the later trees lack stay. An earlier hard link whose first member a later tree
    /// replaced or removed becomes a file of its own with that member's content and metadata,
    /// as rsync links names only within one transfer.
    pub fn stack(trees: impl IntoIterator<Item = MergedTree>) -> MergedTree {
        let mut trees = trees.into_iter();
        let Some(mut out) = trees.next() else {
            return MergedTree::build(std::iter::empty()).expect("an empty tree builds");
        };
        for upper in trees {
            // The first members earlier links lean on, as they are before this tree lands.
            let leaders: std::collections::HashMap<Vec<u8>, TreeEntry> = out
                .entries
                .values()
                .filter(|e| e.kind == EntryKind::Hardlink)
                .filter_map(|e| e.link.as_ref())
                .filter_map(|l| out.entries.get(l).map(|t| (l.clone(), t.clone())))
                .collect();
            for (path, e) in &upper.entries {
                match out.entries.get_mut(path) {
                    Some(old)
                        if old.kind == EntryKind::Directory && e.kind == EntryKind::Directory =>
                    {
                        *old = e.clone();
                    }
                    Some(old) => {
                        let was_dir = old.kind == EntryKind::Directory;
                        *old = e.clone();
                        if was_dir {
                            // Below `path/`: from `path/` up to `path0` ('0' follows '/').
                            let mut lo = path.clone();
                            lo.push(b'/');
                            let mut hi = path.clone();
                            hi.push(b'/' + 1);
                            let below: Vec<Vec<u8>> =
                                out.entries.range(lo..hi).map(|(k, _)| k.clone()).collect();
                            for k in below {
                                out.entries.remove(&k);
                            }
                        }
                    }
                    None => {
                        out.entries.insert(path.clone(), e.clone());
                    }
                }
            }
            // rsync's quick check leaves a first member that the later tree has unchanged.
            let moved: Vec<(Vec<u8>, TreeEntry)> = out
                .entries
                .iter()
                .filter(|(path, e)| {
                    e.kind == EntryKind::Hardlink && !upper.entries.contains_key(*path)
                })
                .filter_map(|(path, e)| {
                    let link = e.link.as_ref()?;
                    let leader = leaders.get(link)?;
                    (out.entries.get(link) != Some(leader)).then(|| {
                        let mut own = leader.clone();
                        own.path = path.clone();
                        (path.clone(), own)
                    })
                })
                .collect();
            for (path, own) in moved {
                out.entries.insert(path, own);
            }
        }
        out
    }
}

impl Store {
    /// Check out several images' merged trees, stacked in order ([`MergedTree::stack`]), into
    /// `dest`, which must not exist.
    pub fn checkout_stack(
        &self,
        trees: Vec<MergedTree>,
        dest: &Path,
        opts: &CheckoutOptions,
    ) -> Result<CheckoutStats> {
        if std::fs::symlink_metadata(dest).is_ok() {
            return Err(Error::TargetExists { path: dest.into() });
        }
        self.checkout(&MergedTree::stack(trees), dest, opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Digest, ObjectId};

    fn file(p: &str, content: &[u8]) -> TreeEntry {
        let mut e = TreeEntry::implicit_dir(p.as_bytes().to_vec());
        e.kind = EntryKind::Regular;
        e.size = content.len() as u64;
        e.object = Some(ObjectId::of(content));
        e
    }
    fn tree(entries: Vec<TreeEntry>) -> MergedTree {
        MergedTree::build([(&Digest::of(b"l"), entries.as_slice())]).unwrap()
    }

    #[test]
    fn later_trees_replace_earlier_entries_and_keep_the_rest() {
        let mut link = TreeEntry::implicit_dir(b"l".to_vec());
        link.kind = EntryKind::Hardlink;
        link.link = Some(b"f".to_vec());
        let lower = tree(vec![
            TreeEntry::implicit_dir(b"a".to_vec()),
            file("a/x", b"1"),
            file("a-b", b"2"),
            file("f", b"old"),
            link,
            TreeEntry::implicit_dir(b"d".to_vec()),
            file("d/kept", b"3"),
        ]);
        let mut d = TreeEntry::implicit_dir(b"d".to_vec());
        d.mode = 0o700;
        let upper = tree(vec![
            file("a", b"now a file"),
            file("f", b"new"),
            d,
            file("d/new", b"4"),
        ]);
        let t = MergedTree::stack([lower, upper]);
        let paths: Vec<&[u8]> = t.entries.keys().map(Vec::as_slice).collect();
        assert_eq!(
            paths,
            [
                &b""[..],
                b"a",
                b"a-b",
                b"d",
                b"d/kept",
                b"d/new",
                b"f",
                b"l"
            ]
        );
        assert_eq!(t.entries[&b"d"[..]].mode, 0o700);
        assert_eq!(t.entries[&b"f"[..]].object, Some(ObjectId::of(b"new")));
        // The link's first member was replaced: it keeps the content it had, on its own.
        let l = &t.entries[&b"l"[..]];
        assert_eq!(
            (l.kind, l.object),
            (EntryKind::Regular, Some(ObjectId::of(b"old")))
        );
    }
}
