//! `ls`: list a directory of an image's merged tree, from the index (no checkout).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use layerstore_store::tree::{display_path, is_within};
use layerstore_store::{EntryKind, Follow, ObjectId, TreeEntry};
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, Align, columns};

/// List a directory of an image's merged tree (from the index, no checkout)
///
/// A symlink is shown itself, as `ls -l` does; end the path with `/` to list what it points at.
/// Symlinks on the way resolve inside the image root.
#[derive(clap::Args)]
pub struct Args {
    /// The image: a name, or a manifest digest or ID (a unique prefix is enough).
    image: String,
    /// The directory or file to list, inside the image.
    #[arg(default_value = "/")]
    path: String,
    /// List the whole subtree.
    #[arg(short = 'R', long)]
    recursive: bool,
}

/// One entry as listed.
#[derive(Serialize)]
struct Entry {
    path: String,
    kind: EntryKind,
    /// Permission bits in octal, e.g. `0755`.
    mode: String,
    uid: u64,
    gid: u64,
    size: u64,
    /// Modification time, RFC 3339.
    mtime: String,
    object: Option<ObjectId>,
    /// A symlink's target, or the first path of a hard-link group.
    link: Option<String>,
    /// Extended attribute names.
    xattrs: Vec<String>,
    #[serde(skip)]
    letter: char,
    #[serde(skip)]
    raw_mode: u32,
    #[serde(skip)]
    device: Option<(u32, u32)>,
}

impl Entry {
    fn new(e: &TreeEntry) -> Self {
        Entry {
            path: display_path(&e.path),
            kind: e.kind,
            mode: format!("{:04o}", e.mode),
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            mtime: fmt::rfc3339(e.mtime),
            object: e.object,
            // A symlink's target as written; a hard link's is a path in the tree.
            link: e.link.as_ref().map(|l| match e.kind {
                EntryKind::Symlink => String::from_utf8_lossy(l).into_owned(),
                _ => display_path(l),
            }),
            xattrs: e
                .xattrs
                .iter()
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .collect(),
            letter: e.kind.letter(),
            raw_mode: e.mode,
            device: matches!(e.kind, EntryKind::CharDevice | EntryKind::BlockDevice)
                .then_some((e.dev_major, e.dev_minor)),
        }
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Listing(Vec<Entry>);

impl View for Listing {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|e| {
                let mut name = e.path.clone();
                if let Some(l) = &e.link {
                    name.push_str(if e.kind == EntryKind::Symlink {
                        " -> "
                    } else {
                        " link to "
                    });
                    name.push_str(l);
                }
                let mut row = vec![
                    fmt::mode(e.letter, e.raw_mode),
                    e.uid.to_string(),
                    e.gid.to_string(),
                    match e.device {
                        Some((major, minor)) => format!("{major},{minor}"),
                        None => e.size.to_string(),
                    },
                ];
                if ctx.verbose > 0 {
                    row.push(e.mtime.clone());
                }
                row.push(name);
                row
            })
            .collect();
        let mut aligns = vec![Align::Left, Align::Right, Align::Right, Align::Right];
        if ctx.verbose > 0 {
            aligns.push(Align::Left);
        }
        aligns.push(Align::Left);
        columns(w, &aligns, &rows)
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.shared()?;
    let info = store.find_image(&a.image)?;
    let tree = store.merged_tree(&info)?;
    let entry = tree.find(&a.image, a.path.as_bytes(), Follow::NotLast)?;
    let entries: Vec<&TreeEntry> = if entry.kind != EntryKind::Directory {
        vec![entry]
    } else if a.recursive {
        tree.depth_first()
            .into_iter()
            .filter(|e| is_within(&e.path, &entry.path) && e.path != entry.path)
            .collect()
    } else {
        tree.children(&entry.path)
    };
    ctx.emit(&Listing(entries.into_iter().map(Entry::new).collect()))?;
    Ok(ExitCode::SUCCESS)
}
