//! Reading a stash's root: one walk through directory handles (`openat`, `fstatat` with
//! `AT_SYMLINK_NOFOLLOW`), so a symlink is recorded as a symlink and never followed, in or out
//! of the root; files are opened again later only beneath the root's handle with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`. Every later read compares the file's
//! inode, size, mtime and ctime with what the walk saw, before and after: a file that changed
//! is an error naming it, never a torn layer.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use layerstore_store::tree::{self, display_path};
use layerstore_store::{EntryKind, ObjectId};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};

use super::StashWarning;
use super::exclude::Excludes;
use crate::error::{Error, Result};

/// One file of the root as the walk saw it.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// Normalized path relative to the root (the root itself is empty).
    pub path: Vec<u8>,
    /// The index of the parent directory's node (`None` for the root).
    pub parent: Option<usize>,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ctime: (i64, u64),
    pub size: u64,
    /// (device, inode): hard links share it.
    pub ino: (u64, u64),
    pub nlink: u64,
    pub rdev: (u32, u32),
    /// A symlink's target.
    pub link: Option<Vec<u8>>,
    /// Sorted by name; only regular files and directories carry them (a checkout restores no
    /// others).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The walk's result, in depth-first order with names sorted bytewise (every directory right
/// before its children, as [`layerstore_store::flatten::component_order`] sorts paths).
pub(crate) struct Scan {
    pub nodes: Vec<Node>,
    pub warnings: Vec<StashWarning>,
}

/// Errors of one root, naming it.
#[derive(Clone, Copy)]
pub(crate) struct Root<'a> {
    pub path: &'a Path,
    pub fd: BorrowedFd<'a>,
}

impl Root<'_> {
    pub fn read_error(&self, path: &[u8], source: impl Into<std::io::Error>) -> Error {
        Error::StashRead {
            root: self.path.into(),
            path: display_path(path),
            source: source.into(),
        }
    }

    pub fn changed(&self, path: &[u8]) -> Error {
        Error::StashChanged {
            root: self.path.into(),
            path: display_path(path),
        }
    }
}

/// Open the root directory (a symlink naming the root itself is followed: it is what the
/// caller named; nothing below it is).
pub(crate) fn open_root(root: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::StashRead {
        root: root.into(),
        path: "/".into(),
        source: e.into(),
    })
}

/// Walk the root.
pub(crate) fn scan(root: Root<'_>, excludes: &Excludes) -> Result<Scan> {
    let st = rustix::fs::fstat(root.fd).map_err(|e| root.read_error(b"", e))?;
    let xattrs = read_xattrs(root.fd).map_err(|e| root.read_error(b"", e))?;
    let mut scan = Scan {
        nodes: vec![node(
            Vec::new(),
            None,
            EntryKind::Directory,
            &st,
            None,
            xattrs,
        )],
        warnings: Vec::new(),
    };
    walk(root, root.fd, 0, &mut scan, excludes)?;
    Ok(scan)
}

// `Stat`'s field types differ by target, hence casts that are no-ops on some.
#[allow(clippy::unnecessary_cast)]
fn node(
    path: Vec<u8>,
    parent: Option<usize>,
    kind: EntryKind,
    st: &Stat,
    link: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
) -> Node {
    let dev = rustix::fs::Dev::from(st.st_rdev);
    Node {
        path,
        parent,
        kind,
        mode: st.st_mode & 0o7777,
        uid: u64::from(st.st_uid),
        gid: u64::from(st.st_gid),
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec as u32,
        ctime: (st.st_ctime, st.st_ctime_nsec as u64),
        size: if kind == EntryKind::Regular {
            st.st_size as u64
        } else {
            0
        },
        ino: (st.st_dev, st.st_ino),
        nlink: st.st_nlink,
        rdev: (rustix::fs::major(dev), rustix::fs::minor(dev)),
        link,
        xattrs,
    }
}

fn walk(
    root: Root<'_>,
    dir: BorrowedFd<'_>,
    index: usize,
    scan: &mut Scan,
    excludes: &Excludes,
) -> Result<()> {
    let dir_path = scan.nodes[index].path.clone();
    let mut names = Vec::new();
    {
        let mut rd = rustix::fs::Dir::read_from(dir).map_err(|e| root.read_error(&dir_path, e))?;
        while let Some(ent) = rd.read() {
            let ent = ent.map_err(|e| root.read_error(&dir_path, e))?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
    }
    names.sort();
    for name in names {
        let path = tree::join(&dir_path, &name);
        if excludes.matches(&path) {
            continue;
        }
        let st = match rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Listed a moment ago: it went while the walk read the directory.
            Err(rustix::io::Errno::NOENT) => return Err(root.changed(&path)),
            Err(e) => return Err(root.read_error(&path, e)),
        };
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => EntryKind::Regular,
            FileType::Directory => EntryKind::Directory,
            FileType::Symlink => EntryKind::Symlink,
            FileType::CharacterDevice => EntryKind::CharDevice,
            FileType::BlockDevice => EntryKind::BlockDevice,
            FileType::Fifo => EntryKind::Fifo,
            _ => {
                // A socket has no tar form; it belongs to a running process anyway.
                scan.warnings.push(StashWarning::SocketSkipped {
                    path: display_path(&path),
                });
                continue;
            }
        };
        match kind {
            EntryKind::Directory => {
                let fd = rustix::fs::openat(
                    dir,
                    name.as_slice(),
                    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| match e {
                    rustix::io::Errno::NOENT
                    | rustix::io::Errno::LOOP
                    | rustix::io::Errno::NOTDIR => root.changed(&path),
                    e => root.read_error(&path, e),
                })?;
                let now = rustix::fs::fstat(&fd).map_err(|e| root.read_error(&path, e))?;
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
                    return Err(root.changed(&path));
                }
                let xattrs = read_xattrs(fd.as_fd()).map_err(|e| root.read_error(&path, e))?;
                scan.nodes
                    .push(node(path, Some(index), kind, &st, None, xattrs));
                let child = scan.nodes.len() - 1;
                walk(root, fd.as_fd(), child, scan, excludes)?;
            }
            EntryKind::Regular => {
                let fd = rustix::fs::openat(
                    dir,
                    name.as_slice(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                    Mode::empty(),
                )
                .map_err(|e| match e {
                    rustix::io::Errno::NOENT | rustix::io::Errno::LOOP => root.changed(&path),
                    e => root.read_error(&path, e),
                })?;
                let xattrs = read_xattrs(fd.as_fd()).map_err(|e| root.read_error(&path, e))?;
                scan.nodes
                    .push(node(path, Some(index), kind, &st, None, xattrs));
            }
            EntryKind::Symlink => {
                let target = rustix::fs::readlinkat(dir, name.as_slice(), Vec::new())
                    .map_err(|e| root.read_error(&path, e))?
                    .into_bytes();
                scan.nodes
                    .push(node(path, Some(index), kind, &st, Some(target), Vec::new()));
            }
            _ => {
                scan.nodes
                    .push(node(path, Some(index), kind, &st, None, Vec::new()));
            }
        }
    }
    Ok(())
}

/// A file's xattrs sorted by name, overlayfs's own markers left out (a checkout never restores
/// them). A filesystem without xattrs has none.
fn read_xattrs(fd: BorrowedFd<'_>) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let size = match rustix::fs::flistxattr_query(fd) {
        Ok(0) | Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Ok(n) => n,
        Err(e) => return Err(e.into()),
    };
    let mut list = vec![0u8; size];
    let n = rustix::fs::flistxattr(fd, &mut list[..])?;
    list.truncate(n);
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let len = rustix::fs::fgetxattr_query(fd, name)?;
        let mut value = vec![0u8; len];
        let n = rustix::fs::fgetxattr(fd, name, &mut value[..])?;
        value.truncate(n);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Whether a file still is what the walk saw: same inode, size, mtime and ctime (any write,
/// chmod, chown or xattr change moves the ctime).
#[allow(clippy::unnecessary_cast)]
pub(crate) fn unchanged(st: &Stat, n: &Node) -> bool {
    (st.st_dev, st.st_ino) == n.ino
        && st.st_size as u64 == n.size
        && (st.st_mtime, st.st_mtime_nsec as u32) == (n.mtime, n.mtime_nsec)
        && (st.st_ctime, st.st_ctime_nsec as u64) == n.ctime
}

/// Open a regular file below the root without following any symlink.
pub(crate) fn open_file(root: Root<'_>, n: &Node) -> Result<std::fs::File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let fd = match rustix::fs::openat2(root.fd, n.path.as_slice(), flags, Mode::empty(), resolve) {
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
            // No openat2 here: one component at a time, none followed.
            let mut dir = rustix::fs::openat(
                root.fd,
                c".",
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| root.read_error(&n.path, e))?;
            let comps: Vec<&[u8]> = n.path.split(|&b| b == b'/').collect();
            let (last, parents) = comps.split_last().expect("a file is not the root");
            for c in parents {
                dir = rustix::fs::openat(
                    &dir,
                    *c,
                    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|_| root.changed(&n.path))?;
            }
            rustix::fs::openat(&dir, *last, flags, Mode::empty())
        }
        other => other,
    };
    let fd = fd.map_err(|e| match e {
        rustix::io::Errno::NOENT | rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => {
            root.changed(&n.path)
        }
        e => root.read_error(&n.path, e),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| root.read_error(&n.path, e))?;
    if !unchanged(&st, n) {
        return Err(root.changed(&n.path));
    }
    Ok(std::fs::File::from(fd))
}

/// Check after a read that the file is still what the walk saw.
pub(crate) fn check_after(root: Root<'_>, n: &Node, f: &std::fs::File) -> Result<()> {
    let st = rustix::fs::fstat(f).map_err(|e| root.read_error(&n.path, e))?;
    if unchanged(&st, n) {
        Ok(())
    } else {
        Err(root.changed(&n.path))
    }
}

/// The blake3 of a regular file's content, checked to be unchanged before and after the read.
pub(crate) fn hash_file(root: Root<'_>, n: &Node) -> Result<ObjectId> {
    let mut f = open_file(root, n)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let k = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(root.read_error(&n.path, e)),
        };
        total += k as u64;
        h.update(&buf[..k]);
    }
    check_after(root, n, &f)?;
    if total != n.size {
        return Err(root.changed(&n.path));
    }
    Ok(ObjectId::from_hash(h.finalize()))
}
