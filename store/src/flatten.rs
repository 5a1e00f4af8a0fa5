//! Flattening an image's layers into one tree (OCI image-spec layer rules).
//!
//! Layers apply bottom-up. In each layer, opaque markers (wherever they stand in the stream) hide
//! all lower children of their directory and whiteouts remove lower entries; then the layer's
//! entries are applied in stream order, so entries of the same layer always survive. Parents a
//! layer omits become implicit directories, the parents of its whiteouts and opaque markers too
//! (docker and containerd create them before they apply a marker). Every path is resolved inside
//! the image root: a symlink on a path is followed as if chrooted (`..` stops at the root,
//! absolute targets restart there), so the merged tree's paths are canonical and contain no
//! symlink below the root.
//!
//! A marker whose directory resolves elsewhere once the layer's own entries are applied (its path
//! goes through a symlink the same layer creates, replaces or removes) is refused: runtimes
//! resolve a marker when they reach it in the stream, so where it acts depends on the order of
//! the entries and on the snapshotter (containerd's overlay applier resolves it in the layer's
//! own directory, its naive applier in the merged tree), and no one reading is the image.

use std::collections::BTreeMap;
use std::collections::VecDeque;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::tree::{EntryKind, TreeEntry, display_path, is_within, join};

/// Symlinks followed while resolving one path before it is refused (Linux's MAXSYMLINKS).
const MAX_SYMLINK_HOPS: usize = 40;

/// A merged tree: canonical path → entry. The root is the empty path.
#[derive(Debug, Default, Clone)]
pub struct MergedTree {
    pub entries: BTreeMap<Vec<u8>, TreeEntry>,
}

impl MergedTree {
    /// Merge layers (bottom first), each given with its diff_id for error messages.
    pub fn build<'a>(
        layers: impl IntoIterator<Item = (&'a Digest, &'a [TreeEntry])>,
    ) -> Result<Self> {
        let mut t = MergedTree::default();
        t.entries
            .insert(Vec::new(), TreeEntry::implicit_dir(Vec::new()));
        for (diff_id, entries) in layers {
            t.apply_layer(diff_id, entries)?;
        }
        Ok(t)
    }

    /// Apply one layer on top.
    pub fn apply_layer(&mut self, diff_id: &Digest, entries: &[TreeEntry]) -> Result<()> {
        let bad = |path: &[u8], reason| Error::BadTree {
            diff_id: diff_id.to_string(),
            path: display_path(path),
            reason,
        };
        // Opaque markers and whiteouts act on lower layers only, before this layer's entries.
        // Each one's directory, as it resolved then, is checked again afterwards.
        let mut acted_in = Vec::new();
        for e in entries {
            let (dir, name) = match e.kind {
                EntryKind::Opaque => (&e.path[..], None),
                EntryKind::Whiteout => match e.path.iter().rposition(|&b| b == b'/') {
                    Some(i) => (&e.path[..i], Some(&e.path[i + 1..])),
                    None => (&b""[..], Some(&e.path[..])),
                },
                _ => continue,
            };
            let marker = marker_name(e);
            let raw_dir = dir;
            let dir = self.resolve_dir(raw_dir).map_err(|r| bad(&marker, r))?;
            match self.entries.get(&dir) {
                // Below a non-directory there is nothing to hide, nor a parent to create.
                Some(d) if d.kind != EntryKind::Directory => {}
                _ => {
                    self.create_dirs(&dir).map_err(|r| bad(&marker, r))?;
                    match name {
                        None => self.remove_below(&dir),
                        Some(n) => self.remove_subtree(&join(&dir, n)),
                    }
                }
            }
            acted_in.push((marker, raw_dir, dir));
        }
        for e in entries {
            if matches!(e.kind, EntryKind::Opaque | EntryKind::Whiteout) {
                continue;
            }
            self.insert(e).map_err(|r| bad(&e.path, r))?;
        }
        for (marker, raw_dir, before) in acted_in {
            if self.resolve_dir(raw_dir).ok().as_ref() != Some(&before) {
                return Err(bad(
                    &marker,
                    "a whiteout or opaque marker whose directory resolves through a symlink \
                     the same layer creates, replaces or removes (runtimes read it differently)",
                ));
            }
        }
        Ok(())
    }

    /// Resolve a directory path inside the root, following every symlink on it; missing
    /// components are kept as they are. Its last component may be a non-directory.
    fn resolve_dir(&self, dir: &[u8]) -> std::result::Result<Vec<u8>, &'static str> {
        let mut comps = components(dir);
        let mut cur = Vec::new();
        let mut hops = 0;
        self.walk(&mut comps, &mut cur, &mut hops, true, true)?;
        Ok(cur)
    }

    /// Create the missing components of a canonical path as implicit directories.
    fn create_dirs(&mut self, canonical: &[u8]) -> std::result::Result<(), &'static str> {
        let mut p = Vec::new();
        for c in canonical.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            p = join(&p, c);
            match self.entries.get(&p) {
                Some(e) if e.kind == EntryKind::Directory => {}
                Some(_) => return Err("a parent on the path is not a directory"),
                None => {
                    self.entries
                        .insert(p.clone(), TreeEntry::implicit_dir(p.clone()));
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, e: &TreeEntry) -> std::result::Result<(), &'static str> {
        if e.path.is_empty() {
            if e.kind != EntryKind::Directory {
                return Err("the image root must be a directory");
            }
            let root = self
                .entries
                .get_mut(&e.path[..])
                .expect("root always exists");
            *root = e.clone();
            return Ok(());
        }
        let (parent, name) = self.resolve_parent_create(&e.path)?;
        let path = join(&parent, name);
        let mut entry = e.clone();
        entry.path = path.clone();
        if e.kind == EntryKind::Hardlink {
            let target = e.link.as_deref().ok_or("hard link without a target")?;
            let (tparent, tname) = self.resolve_parent(target, false)?;
            let tpath = join(&tparent, tname);
            let t = self
                .entries
                .get(&tpath)
                .ok_or("hard link names no earlier entry")?;
            match t.kind {
                EntryKind::Directory => return Err("hard link to a directory"),
                EntryKind::Hardlink | EntryKind::Regular => {
                    entry.object = t.object;
                    entry.size = t.size;
                    // Link to the group's first member so a whole group shares one inode.
                    let first = if t.kind == EntryKind::Hardlink {
                        t.link.clone()
                    } else {
                        Some(tpath.clone())
                    };
                    entry.link = first;
                    if tpath == path {
                        return Ok(()); // a link to itself changes nothing
                    }
                }
                _ => entry.link = Some(tpath.clone()),
            }
        }
        match self.entries.get_mut(&path) {
            Some(old) if old.kind == EntryKind::Directory && e.kind == EntryKind::Directory => {
                *old = entry; // metadata changes; children stay
            }
            Some(old) => {
                let was_dir = old.kind == EntryKind::Directory;
                *old = entry;
                if was_dir {
                    self.remove_below(&path);
                }
            }
            None => {
                self.entries.insert(path, entry);
            }
        }
        Ok(())
    }

    /// Resolve every component but the last; returns the canonical parent and the last name.
    /// Missing parents are an error unless `allow_missing`.
    fn resolve_parent<'p>(
        &self,
        path: &'p [u8],
        allow_missing: bool,
    ) -> std::result::Result<(Vec<u8>, &'p [u8]), &'static str> {
        let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], path),
        };
        let mut comps = components(dir);
        let mut cur = Vec::new();
        let mut hops = 0;
        self.walk(&mut comps, &mut cur, &mut hops, allow_missing, true)?;
        Ok((cur, name))
    }

    /// [`MergedTree::resolve_parent`], creating missing parents as implicit directories.
    fn resolve_parent_create<'p>(
        &mut self,
        path: &'p [u8],
    ) -> std::result::Result<(Vec<u8>, &'p [u8]), &'static str> {
        let (parent, name) = self.resolve_parent(path, true)?;
        self.create_dirs(&parent)?;
        Ok((parent, name))
    }

    /// Walk `comps` from `cur`, following symlinks inside the root. Missing components are
    /// accepted only if `allow_missing`; `follow_final` also resolves a final symlink.
    fn walk(
        &self,
        comps: &mut VecDeque<Vec<u8>>,
        cur: &mut Vec<u8>,
        hops: &mut usize,
        allow_missing: bool,
        follow_final: bool,
    ) -> std::result::Result<(), &'static str> {
        let mut missing = false;
        while let Some(c) = comps.pop_front() {
            match &c[..] {
                b"" | b"." => continue,
                b".." => {
                    // Never above the root.
                    match cur.iter().rposition(|&b| b == b'/') {
                        Some(i) => cur.truncate(i),
                        None => cur.clear(),
                    }
                    continue;
                }
                _ => {}
            }
            let next = join(cur, &c);
            if missing {
                *cur = next;
                continue;
            }
            let is_last = comps.is_empty();
            match self.entries.get(&next) {
                None => {
                    if !allow_missing && !is_last {
                        return Err("a parent directory is missing");
                    }
                    missing = true;
                    *cur = next;
                }
                Some(e) if e.kind == EntryKind::Directory => *cur = next,
                Some(e) if e.kind == EntryKind::Symlink && (!is_last || follow_final) => {
                    *hops += 1;
                    if *hops > MAX_SYMLINK_HOPS {
                        return Err("too many levels of symbolic links");
                    }
                    let target = e.link.as_deref().unwrap_or_default();
                    if target.starts_with(b"/") {
                        cur.clear();
                    }
                    for t in components(target).into_iter().rev() {
                        comps.push_front(t);
                    }
                }
                Some(_) if is_last => *cur = next,
                Some(_) => return Err("a parent on the path is not a directory"),
            }
        }
        Ok(())
    }

    fn remove_subtree(&mut self, path: &[u8]) {
        self.entries.remove(path);
        self.remove_below(path);
    }

    fn remove_below(&mut self, dir: &[u8]) {
        let doomed: Vec<Vec<u8>> = self.children_range(dir).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            self.entries.remove(&k);
        }
    }

    fn children_range(&self, dir: &[u8]) -> impl Iterator<Item = (&Vec<u8>, &TreeEntry)> {
        let (lo, hi) = if dir.is_empty() {
            (Vec::from(&b"\x00"[..]), None)
        } else {
            let mut lo = dir.to_vec();
            lo.push(b'/');
            let mut hi = dir.to_vec();
            hi.push(b'/' + 1);
            (lo, Some(hi))
        };
        let range: Box<dyn Iterator<Item = (&Vec<u8>, &TreeEntry)>> = match hi {
            Some(hi) => Box::new(self.entries.range(lo..hi)),
            None => Box::new(self.entries.range(lo..)),
        };
        range.filter(move |(k, _)| !k.is_empty() && is_within(k, dir) && k.as_slice() != dir)
    }

    /// Look up a path given by a user (`/usr/bin/x`), following symlinks on the way like `ls`
    /// would, within the image root.
    pub fn lookup(&self, user_path: &[u8]) -> Option<&TreeEntry> {
        let mut comps = components(user_path);
        let mut cur = Vec::new();
        let mut hops = 0;
        self.walk(&mut comps, &mut cur, &mut hops, false, true)
            .ok()?;
        self.entries.get(&cur)
    }

    /// Like [`MergedTree::lookup`] but without following a final symlink.
    pub fn lookup_nofollow(&self, user_path: &[u8]) -> Option<&TreeEntry> {
        let mut comps = components(user_path);
        let last = comps.pop_back();
        let mut cur = Vec::new();
        let mut hops = 0;
        self.walk(&mut comps, &mut cur, &mut hops, false, true)
            .ok()?;
        match last {
            Some(l) if l != b"." && l != b".." => self.entries.get(&join(&cur, &l)),
            _ => self.lookup(user_path),
        }
    }

    /// The direct children of a directory, sorted by name.
    pub fn children(&self, dir: &[u8]) -> Vec<&TreeEntry> {
        self.children_range(dir)
            .filter(|(k, _)| crate::tree::parent(k) == Some(dir))
            .map(|(_, e)| e)
            .collect()
    }

    /// Entries in depth-first order: every directory right before its own children.
    pub fn depth_first(&self) -> Vec<&TreeEntry> {
        let mut v: Vec<&TreeEntry> = self.entries.values().collect();
        v.sort_by(|a, b| component_order(&a.path, &b.path));
        v
    }
}

/// Compare paths component by component (`/` sorts before every other byte).
pub fn component_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let key = |x: u8| if x == b'/' { 0u16 } else { u16::from(x) + 1 };
    a.iter().map(|&x| key(x)).cmp(b.iter().map(|&x| key(x)))
}

/// The name a whiteout or opaque marker had in its layer's tar, for errors.
fn marker_name(e: &TreeEntry) -> Vec<u8> {
    match e.kind {
        EntryKind::Opaque => join(&e.path, b".wh..wh..opq"),
        _ => {
            let (dir, name) = match e.path.iter().rposition(|&b| b == b'/') {
                Some(i) => (&e.path[..i], &e.path[i + 1..]),
                None => (&b""[..], &e.path[..]),
            };
            join(dir, &[&b".wh."[..], name].concat())
        }
    }
}

fn components(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Digest {
        Digest::of(b"layer")
    }
    fn file(p: &str, content: &[u8]) -> TreeEntry {
        let mut e = TreeEntry::implicit_dir(p.as_bytes().to_vec());
        e.kind = EntryKind::Regular;
        e.mode = 0o644;
        e.size = content.len() as u64;
        e.object = Some(crate::digest::ObjectId::of(content));
        e
    }
    fn dir(p: &str) -> TreeEntry {
        TreeEntry::implicit_dir(p.as_bytes().to_vec())
    }
    fn symlink(p: &str, t: &str) -> TreeEntry {
        let mut e = TreeEntry::implicit_dir(p.as_bytes().to_vec());
        e.kind = EntryKind::Symlink;
        e.link = Some(t.as_bytes().to_vec());
        e
    }
    fn marker(p: &str, kind: EntryKind) -> TreeEntry {
        let mut e = TreeEntry::implicit_dir(p.as_bytes().to_vec());
        e.kind = kind;
        e
    }
    fn paths(t: &MergedTree) -> Vec<String> {
        t.entries
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }
    fn merge(layers: &[Vec<TreeEntry>]) -> Result<MergedTree> {
        let dg = d();
        MergedTree::build(layers.iter().map(|l| (&dg, l.as_slice())))
    }

    #[test]
    fn whiteouts_and_opaques_hide_lower_entries_only() {
        let l1 = vec![
            dir("a"),
            file("a/x", b"1"),
            file("a/y", b"2"),
            dir("b"),
            file("b/z", b"3"),
        ];
        let l2 = vec![
            file("a/new", b"4"),
            marker("a", EntryKind::Opaque), // after its sibling in the stream: sibling survives
            marker("b/z", EntryKind::Whiteout),
            file("b/z2", b"5"),
        ];
        let t = merge(&[l1, l2]).unwrap();
        assert_eq!(paths(&t), ["", "a", "a/new", "b", "b/z2"]);
    }

    /// docker (`MkdirAll`) and containerd (`mkparent`) create a marker's missing parents before
    /// they apply it; the old merge left them out.
    #[test]
    fn missing_parents_of_whiteouts_and_opaque_markers_become_directories() {
        let l1 = vec![
            dir("real"),
            file("real/x", b"1"),
            symlink("lnk", "/real/sub"),
        ];
        let l2 = vec![
            marker("a/b/c", EntryKind::Whiteout),
            marker("o/p", EntryKind::Opaque),
            marker("lnk/gone", EntryKind::Whiteout),
        ];
        let t = merge(&[l1, l2]).unwrap();
        assert_eq!(
            paths(&t),
            [
                "", "a", "a/b", "lnk", "o", "o/p", "real", "real/sub", "real/x"
            ]
        );
        assert_eq!(t.entries[&b"a/b"[..]].kind, EntryKind::Directory);
        assert_eq!(t.entries[&b"a/b"[..]].mode, 0o755);
    }

    /// Runtimes resolve a marker when they reach it in the stream (and containerd's overlay
    /// applier in the layer's own directory), so a marker under a symlink its own layer makes
    /// or replaces acts in different places for them: refused, naming the marker.
    #[test]
    fn a_marker_through_a_symlink_of_its_own_layer_is_refused() {
        let lower = || vec![dir("real"), file("real/x", b"1"), symlink("old", "real")];
        let cases: [(&str, Vec<TreeEntry>, &str); 4] = [
            (
                "new symlink",
                vec![symlink("lnk", "real"), marker("lnk/x", EntryKind::Whiteout)],
                "/lnk/.wh.x",
            ),
            (
                "new symlink, opaque",
                vec![marker("lnk", EntryKind::Opaque), symlink("lnk", "/real")],
                "/lnk/.wh..wh..opq",
            ),
            (
                "a lower symlink replaced by a directory",
                vec![dir("old"), marker("old/x", EntryKind::Whiteout)],
                "/old/.wh.x",
            ),
            (
                "a lower directory replaced by a symlink",
                vec![
                    symlink("real", "elsewhere"),
                    marker("real/x", EntryKind::Whiteout),
                ],
                "/real/.wh.x",
            ),
        ];
        for (what, l2, marker_path) in cases {
            match merge(&[lower(), l2]) {
                Err(Error::BadTree { path, reason, .. }) => {
                    assert_eq!(path, marker_path, "{what}");
                    assert!(reason.contains("same layer"), "{what}: {reason}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        // Through a lower symlink the layer leaves alone: resolved inside the root, accepted.
        let t = merge(&[lower(), vec![marker("old/x", EntryKind::Whiteout)]]).unwrap();
        assert_eq!(paths(&t), ["", "old", "real"]);
    }

    /// A directory that replaces a lower file, marked opaque (what overlayfs records for it):
    /// the marker's place does not move, so it stays accepted.
    #[test]
    fn an_opaque_directory_replacing_a_file_is_accepted() {
        let l1 = vec![file("d", b"was a file")];
        let l2 = vec![
            dir("d"),
            marker("d", EntryKind::Opaque),
            file("d/new", b"2"),
        ];
        let t = merge(&[l1, l2]).unwrap();
        assert_eq!(paths(&t), ["", "d", "d/new"]);
        assert_eq!(t.entries[&b"d"[..]].kind, EntryKind::Directory);
    }

    #[test]
    fn implicit_parents_are_directories() {
        let t = merge(&[vec![file("usr/lib/x/y", b"1")]]).unwrap();
        assert_eq!(
            paths(&t),
            ["", "usr", "usr/lib", "usr/lib/x", "usr/lib/x/y"]
        );
        assert_eq!(t.entries[&b"usr/lib"[..]].mode, 0o755);
    }

    #[test]
    fn symlinked_parents_resolve_inside_the_root() {
        let l1 = vec![dir("etc"), symlink("x", "/etc"), symlink("up", "../../..")];
        let l2 = vec![file("x/passwd", b"p"), file("up/etc/shadow", b"s")];
        let t = merge(&[l1, l2]).unwrap();
        assert!(t.entries.contains_key(&b"etc/passwd"[..]));
        assert!(t.entries.contains_key(&b"etc/shadow"[..]));
        assert!(!t.entries.contains_key(&b"x/passwd"[..]));
    }

    #[test]
    fn a_file_replacing_a_directory_drops_its_children() {
        let l1 = vec![dir("a"), file("a/x", b"1")];
        let l2 = vec![file("a", b"now a file")];
        let t = merge(&[l1, l2]).unwrap();
        assert_eq!(paths(&t), ["", "a"]);
    }

    #[test]
    fn symlink_loops_are_refused() {
        let l1 = vec![symlink("a", "b"), symlink("b", "a")];
        let l2 = vec![file("a/x", b"1")];
        assert!(merge(&[l1, l2]).is_err());
    }

    #[test]
    fn root_must_stay_a_directory() {
        assert!(merge(&[vec![symlink("", "/etc")]]).is_err());
    }

    #[test]
    fn hardlinks_share_the_first_members_object() {
        let mut h = marker("b", EntryKind::Hardlink);
        h.link = Some(b"a".to_vec());
        let mut h2 = marker("c", EntryKind::Hardlink);
        h2.link = Some(b"b".to_vec());
        let t = merge(&[vec![file("a", b"data"), h, h2]]).unwrap();
        let c = &t.entries[&b"c"[..]];
        assert_eq!(c.link.as_deref(), Some(&b"a"[..]));
        assert_eq!(c.object, Some(crate::digest::ObjectId::of(b"data")));
        let mut bad = marker("d", EntryKind::Hardlink);
        bad.link = Some(b"nowhere".to_vec());
        assert!(merge(&[vec![bad]]).is_err());
    }

    #[test]
    fn lookup_follows_symlinks_within_the_root() {
        let t = merge(&[vec![
            dir("etc"),
            file("etc/os-release", b"x"),
            symlink("e", "../etc"),
            symlink("etc/alias", "os-release"),
        ]])
        .unwrap();
        assert_eq!(t.lookup(b"/etc/alias").unwrap().path, b"etc/os-release");
        assert_eq!(t.lookup(b"/e/os-release").unwrap().path, b"etc/os-release");
        assert_eq!(t.lookup_nofollow(b"/e").unwrap().kind, EntryKind::Symlink);
        assert_eq!(t.children(b"").len(), 2);
    }

    #[test]
    fn depth_first_puts_parents_before_children() {
        let t = merge(&[vec![file("a-x", b"1"), file("a/b", b"2"), dir("a")]]).unwrap();
        let order: Vec<_> = t.depth_first().iter().map(|e| e.path.clone()).collect();
        assert_eq!(order, [&b""[..], b"a", b"a/b", b"a-x"]);
    }
}
