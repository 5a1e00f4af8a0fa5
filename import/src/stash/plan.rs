//! What the diff layer holds: the root as the walk saw it compared with the parent's merged
//! tree, straight from the index.
//!
//! - A path the parent lacks, or holds as another kind, is emitted whole (a non-directory over
//!   a directory replaces its subtree at merge time, so that needs no whiteouts).
//! - A regular file of another size is changed; one of the same size is hashed (blake3, the
//!   object id's hash) unless `--trust-mtime` and its mtime and mode match. A file whose
//!   content matches but whose mode, owner, mtime or xattrs differ is emitted too: a tar entry
//!   cannot change metadata without carrying the content, which the store then finds stored
//!   (no new object). Directories, symlinks and special files with changed metadata are
//!   header-only entries.
//! - A path of the parent that the root lacks is a `.wh.` whiteout in its parent directory;
//!   where a directory's contents were replaced wholesale, an opaque whiteout
//!   (`.wh..wh..opq`) and the directory's whole new contents are used instead when that makes
//!   a smaller layer (estimated in 512-byte tar blocks).
//! - Hard links: a group of names sharing an inode is unchanged only if the parent holds the
//!   same names as one group with the same content; otherwise the whole group is emitted (its
//!   first name as the file, the others as links to it, as a layer must order them).
//! - Unchanged parents of emitted entries are not emitted: the parent tree has them.
//! - mtimes are compared and written to the second, as Go's `archive/tar`, umoci and docker
//!   write layers (a sub-second mtime would cost a PAX record per entry).

use std::collections::{HashMap, HashSet};

use layerstore_store::flatten::component_order;
use layerstore_store::tree;
use layerstore_store::{EntryKind, MergedTree, ObjectId, TreeEntry};
use rayon::prelude::*;

use super::exclude::Excludes;
use super::scan::{Node, Root, hash_file};
use crate::error::Result;

/// One tar entry of the diff layer, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// A node of the walk; `link_to` names the node of its hard-link group emitted first.
    Entry { node: usize, link_to: Option<usize> },
    /// `.wh.NAME`: the parent's path removed.
    Whiteout(Vec<u8>),
    /// `.wh..wh..opq` in this directory.
    Opaque(Vec<u8>),
}

impl Item {
    fn tar_path(&self, nodes: &[Node]) -> Vec<u8> {
        match self {
            Item::Entry { node, .. } => nodes[*node].path.clone(),
            Item::Whiteout(p) => {
                let mut name = b".wh.".to_vec();
                name.extend_from_slice(tree::file_name(p));
                tree::join(tree::parent(p).unwrap_or_default(), &name)
            }
            Item::Opaque(d) => tree::join(d, b".wh..wh..opq"),
        }
    }
}

/// What the comparison found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DiffCounts {
    /// Paths the parent did not have (or had as another kind).
    pub added: u64,
    /// Files, symlinks and devices whose content or target changed.
    pub changed: u64,
    /// Entries whose content is the parent's but whose metadata changed.
    pub metadata_only: u64,
    /// `.wh.` whiteouts.
    pub removed: u64,
    /// Directories replaced wholesale with an opaque whiteout.
    pub opaque: u64,
    /// Files whose content was hashed to compare it.
    pub hashed: u64,
    /// Entries re-sent only to keep a hard-link group whole, or under an opaque directory.
    pub carried: u64,
}

/// The diff layer's plan.
pub(crate) struct Plan {
    pub items: Vec<Item>,
    /// Contents the comparison hashed, by node: the layer's objects must match them (a
    /// mismatch is a file that changed between the hash and the tar).
    pub hashed: HashMap<usize, ObjectId>,
    pub counts: DiffCounts,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Same,
    /// Emitted, and why.
    Added,
    Changed,
    Meta,
    /// Emitted for another's sake (hard-link group, opaque directory).
    Carried,
    /// Same size, needs its content compared.
    Hash,
}

/// The parent's entry at a path as a checkout would make it: a hard link whose first member
/// still stands is that member's inode (kind, metadata); one whose member was replaced is a
/// file of its own.
fn effective<'t>(parent: &'t MergedTree, path: &[u8]) -> Option<&'t TreeEntry> {
    let e = parent.entries.get(path)?;
    if e.kind != EntryKind::Hardlink {
        return Some(e);
    }
    match e.link.as_deref().and_then(|l| parent.entries.get(l)) {
        Some(t) if link_holds(t, e) => Some(t),
        _ => e.object.is_some().then_some(e),
    }
}

/// Whether a hard link's first member is still what it linked to (as checkout decides).
fn link_holds(leader: &TreeEntry, link: &TreeEntry) -> bool {
    match leader.kind {
        EntryKind::Regular => leader.object == link.object,
        EntryKind::Directory | EntryKind::Hardlink => false,
        _ => link.object.is_none(),
    }
}

fn kind_of(e: &TreeEntry) -> EntryKind {
    match e.kind {
        EntryKind::Hardlink => EntryKind::Regular,
        k => k,
    }
}

fn meta_equal(n: &Node, p: &TreeEntry) -> bool {
    let xattrs_matter = matches!(n.kind, EntryKind::Regular | EntryKind::Directory);
    // A symlink's mode is not its own (always 0777 on Linux), and checkout does not set it.
    let mode_matters = n.kind != EntryKind::Symlink;
    (!mode_matters || n.mode == p.mode & 0o7777)
        && n.uid == p.uid
        && n.gid == p.gid
        && n.mtime == p.mtime
        && (!xattrs_matter || n.xattrs == p.xattrs)
}

/// A tar entry's size in 512-byte blocks' bytes: the header, and the content for a file.
fn entry_cost(n: &Node, carries_content: bool) -> u64 {
    512 + if carries_content {
        n.size.div_ceil(512) * 512
    } else {
        0
    }
}

/// Compare the walk's nodes with the parent tree.
pub(crate) fn plan(
    root: Root<'_>,
    nodes: &[Node],
    parent: &MergedTree,
    excludes: &Excludes,
    trust_mtime: bool,
    progress: &dyn super::StashProgress,
) -> Result<Plan> {
    let index: HashMap<&[u8], usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.path.as_slice(), i))
        .collect();
    let mut counts = DiffCounts::default();

    // Hard-link groups of the root (names sharing an inode), first name first.
    let mut by_inode: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.kind != EntryKind::Directory && n.nlink > 1 {
            by_inode.entry(n.ino).or_default().push(i);
        }
    }
    let groups: Vec<Vec<usize>> = by_inode.into_values().filter(|g| g.len() > 1).collect();
    let mut leader_of: HashMap<usize, usize> = HashMap::new();
    for g in &groups {
        for &m in g {
            leader_of.insert(m, g[0]);
        }
    }
    // The parent's groups, by their first member: only links that still hold.
    let mut p_groups: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    for (path, e) in &parent.entries {
        if e.kind == EntryKind::Hardlink
            && let Some(l) = e.link.as_deref()
            && parent.entries.get(l).is_some_and(|t| link_holds(t, e))
        {
            p_groups
                .entry(l.to_vec())
                .or_insert_with(|| vec![l.to_vec()])
                .push(path.clone());
        }
    }
    let p_leader = |path: &[u8]| -> Option<Vec<u8>> {
        if p_groups.contains_key(path) {
            return Some(path.to_vec());
        }
        let e = parent.entries.get(path)?;
        match (e.kind, e.link.as_deref()) {
            (EntryKind::Hardlink, Some(l)) if p_groups.contains_key(l) => Some(l.to_vec()),
            _ => None,
        }
    };

    // First pass: what differs without reading contents.
    let mut status: Vec<Status> = nodes
        .iter()
        .map(|n| {
            let Some(p) = effective(parent, &n.path) else {
                return Status::Added;
            };
            if kind_of(p) != n.kind {
                return Status::Added;
            }
            let meta = meta_equal(n, p);
            match n.kind {
                EntryKind::Regular => {
                    if p.size != n.size {
                        Status::Changed
                    } else if trust_mtime && meta {
                        Status::Same
                    } else {
                        Status::Hash
                    }
                }
                EntryKind::Symlink if p.link != n.link => Status::Changed,
                EntryKind::CharDevice | EntryKind::BlockDevice
                    if (p.dev_major, p.dev_minor) != n.rdev =>
                {
                    Status::Changed
                }
                _ if meta => Status::Same,
                _ => Status::Meta,
            }
        })
        .collect();

    // Second pass: hash what needs it, in parallel.
    let to_hash: Vec<usize> = (0..nodes.len())
        .filter(|&i| status[i] == Status::Hash)
        .collect();
    counts.hashed = to_hash.len() as u64;
    progress.hashing(counts.hashed, to_hash.iter().map(|&i| nodes[i].size).sum());
    let hashed: Vec<(usize, ObjectId)> = to_hash
        .par_iter()
        .map(|&i| {
            let id = hash_file(root, &nodes[i])?;
            progress.hashed(nodes[i].size);
            Ok((i, id))
        })
        .collect::<Result<_>>()?;
    for &(i, id) in &hashed {
        let n = &nodes[i];
        let p = effective(parent, &n.path).expect("compared above");
        status[i] = if p.object != Some(id) {
            Status::Changed
        } else if meta_equal(n, p) {
            Status::Same
        } else {
            Status::Meta
        };
    }

    // Hard-link groups go whole or not at all.
    let whole_groups = |status: &mut Vec<Status>| {
        for g in &groups {
            let leaders: HashSet<Option<Vec<u8>>> =
                g.iter().map(|&m| p_leader(&nodes[m].path)).collect();
            let same_group = match leaders.iter().next() {
                Some(Some(l)) if leaders.len() == 1 => {
                    let members: HashSet<&[u8]> = p_groups[l].iter().map(Vec::as_slice).collect();
                    let ours: HashSet<&[u8]> =
                        g.iter().map(|&m| nodes[m].path.as_slice()).collect();
                    members == ours
                }
                _ => false,
            };
            if !same_group || g.iter().any(|&m| status[m] != Status::Same) {
                for &m in g {
                    if status[m] == Status::Same {
                        status[m] = Status::Carried;
                    }
                }
            }
        }
        // A name the parent had in a group that the root has on its own.
        for (i, n) in nodes.iter().enumerate() {
            if status[i] == Status::Same
                && n.kind != EntryKind::Directory
                && !leader_of.contains_key(&i)
                && p_leader(&n.path).is_some()
            {
                status[i] = Status::Carried;
            }
        }
    };
    whole_groups(&mut status);

    // Removals: parent paths the root lacks whose parent directory the root keeps as a
    // directory. Paths under an excluded name are the parent's to keep.
    let both_dir = |i: usize| {
        nodes[i].kind == EntryKind::Directory
            && effective(parent, &nodes[i].path).is_some_and(|p| p.kind == EntryKind::Directory)
    };
    let mut whiteouts: HashMap<usize, Vec<Vec<u8>>> = HashMap::new();
    let mut no_opaque: HashSet<usize> = HashSet::new();
    for path in parent.entries.keys() {
        if path.is_empty() || index.contains_key(path.as_slice()) {
            continue;
        }
        if excludes.covers(path) {
            // An opaque whiteout above would hide it.
            let mut p = tree::parent(path);
            while let Some(pp) = p {
                if let Some(&i) = index.get(pp) {
                    no_opaque.insert(i);
                }
                p = tree::parent(pp);
            }
            continue;
        }
        let dir = tree::parent(path).expect("not the root");
        if let Some(&d) = index.get(dir)
            && both_dir(d)
        {
            whiteouts.entry(d).or_default().push(path.clone());
        }
    }

    // Opaque directories: bottom-up, the cheaper of whiteouts plus changes and an opaque
    // marker plus the whole new contents.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if let Some(p) = n.parent {
            children[p].push(i);
        }
    }
    let carries =
        |i: usize| nodes[i].kind == EntryKind::Regular && leader_of.get(&i).is_none_or(|&l| l == i);
    let emitted = |s: Status| !matches!(s, Status::Same);
    let mut full = vec![0u64; nodes.len()];
    let mut best = vec![0u64; nodes.len()];
    let mut opaque = vec![false; nodes.len()];
    for i in (0..nodes.len()).rev() {
        full[i] =
            entry_cost(&nodes[i], carries(i)) + children[i].iter().map(|&c| full[c]).sum::<u64>();
        if !both_dir(i) {
            continue;
        }
        let removed = whiteouts.get(&i).map_or(0, |w| w.len() as u64);
        let diff = 512 * removed
            + children[i]
                .iter()
                .map(|&c| {
                    if both_dir(c) {
                        (if emitted(status[c]) { 512 } else { 0 }) + best[c]
                    } else if emitted(status[c]) {
                        full[c]
                    } else {
                        0
                    }
                })
                .sum::<u64>();
        let opq = 512 + children[i].iter().map(|&c| full[c]).sum::<u64>();
        opaque[i] = removed > 0 && !no_opaque.contains(&i) && opq < diff;
        best[i] = if opaque[i] { opq } else { diff };
    }
    // Top-down: the first opaque directory on a path decides; below it everything is sent.
    let mut forced = vec![false; nodes.len()];
    let mut opaque_dirs = Vec::new();
    for i in 0..nodes.len() {
        let above = nodes[i].parent.is_some_and(|p| forced[p] || opaque[p]);
        if above && status[i] == Status::Same {
            status[i] = Status::Carried;
        }
        forced[i] = above;
        if opaque[i] && !above {
            opaque_dirs.push(i);
        }
    }
    whole_groups(&mut status);

    let mut items = Vec::new();
    for (i, s) in status.iter().enumerate() {
        match s {
            Status::Same => continue,
            Status::Added => counts.added += 1,
            Status::Changed => counts.changed += 1,
            Status::Meta => counts.metadata_only += 1,
            Status::Carried => counts.carried += 1,
            Status::Hash => unreachable!("every hashed file was decided"),
        }
        let link_to = leader_of.get(&i).copied().filter(|&l| l != i);
        items.push(Item::Entry { node: i, link_to });
    }
    for &d in &opaque_dirs {
        counts.opaque += 1;
        items.push(Item::Opaque(nodes[d].path.clone()));
    }
    for (d, paths) in whiteouts {
        if opaque[d] || forced[d] {
            continue;
        }
        for p in paths {
            counts.removed += 1;
            items.push(Item::Whiteout(p));
        }
    }
    let mut keyed: Vec<(Vec<u8>, Item)> = items
        .into_iter()
        .map(|it| (it.tar_path(nodes), it))
        .collect();
    keyed.sort_by(|a, b| component_order(&a.0, &b.0));
    log::debug!(
        "stash of {}: {counts:?}, {} tar entries",
        root.path.display(),
        keyed.len()
    );
    Ok(Plan {
        items: keyed.into_iter().map(|(_, it)| it).collect(),
        hashed: hashed.into_iter().collect(),
        counts,
    })
}
