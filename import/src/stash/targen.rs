//! Writing the diff layer's tar stream from the plan (GNU headers, GNU long names, PAX records
//! for xattrs only), reading each file through the root's handle and checking that it is the
//! file the walk saw, before and after. Deterministic: the same root and plan give the same
//! bytes.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use layerstore_store::EntryKind;

use super::plan::Item;
use super::scan::{Node, Root, check_after, open_file};
use crate::error::Error;

/// Why the producer stopped.
pub(crate) enum ProduceError {
    /// Reading the root failed or found a change.
    Root(Error),
    /// Writing the stream failed: the consumer stopped (it says why).
    Write(io::Error),
}

fn os(path: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(path))
}

/// Write the layer for `items` into `w`.
pub(crate) fn write_layer<W: Write>(
    root: Root<'_>,
    nodes: &[Node],
    items: &[Item],
    w: W,
) -> std::result::Result<(), ProduceError> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    for item in items {
        match item {
            Item::Entry { node, link_to } => entry(root, &mut b, nodes, *node, *link_to)?,
            Item::Whiteout(_) | Item::Opaque(_) => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                h.set_size(0);
                let path = match item {
                    Item::Whiteout(p) => {
                        let mut name = b".wh.".to_vec();
                        name.extend_from_slice(layerstore_store::tree::file_name(p));
                        layerstore_store::tree::join(
                            layerstore_store::tree::parent(p).unwrap_or_default(),
                            &name,
                        )
                    }
                    Item::Opaque(d) => layerstore_store::tree::join(d, b".wh..wh..opq"),
                    Item::Entry { .. } => unreachable!("matched above"),
                };
                b.append_data(&mut h, os(&path), io::empty())
                    .map_err(ProduceError::Write)?;
            }
        }
    }
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(ProduceError::Write)
}

fn entry<W: Write>(
    root: Root<'_>,
    b: &mut tar::Builder<W>,
    nodes: &[Node],
    i: usize,
    link_to: Option<usize>,
) -> std::result::Result<(), ProduceError> {
    let n = &nodes[i];
    if !n.xattrs.is_empty() && link_to.is_none() {
        let pax: Vec<(String, &[u8])> = n
            .xattrs
            .iter()
            .map(|(k, v)| {
                (
                    format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
                    v.as_slice(),
                )
            })
            .collect();
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
            .map_err(ProduceError::Write)?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(n.mode);
    h.set_uid(n.uid);
    h.set_gid(n.gid);
    h.set_mtime(n.mtime.max(0) as u64);
    h.set_size(0);
    let path = if n.path.is_empty() {
        PathBuf::from("./")
    } else {
        os(&n.path)
    };
    let bad_header = |e: io::Error| ProduceError::Root(root.read_error(&n.path, e));
    if let Some(l) = link_to {
        h.set_entry_type(tar::EntryType::Link);
        return b
            .append_link(&mut h, &path, os(&nodes[l].path))
            .map_err(ProduceError::Write);
    }
    match n.kind {
        EntryKind::Regular => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(n.size);
            let file = open_file(root, n).map_err(ProduceError::Root)?;
            let mut src = Exact {
                file,
                remaining: n.size,
                short: false,
                failed: None,
            };
            let res = b.append_data(&mut h, &path, &mut src);
            if src.short {
                return Err(ProduceError::Root(root.changed(&n.path)));
            }
            if let Some(e) = src.failed.take() {
                return Err(ProduceError::Root(root.read_error(&n.path, e)));
            }
            res.map_err(ProduceError::Write)?;
            // Nothing past the size the walk saw, and the same file still.
            let mut one = [0u8; 1];
            match src.file.read(&mut one) {
                Ok(0) => {}
                Ok(_) => return Err(ProduceError::Root(root.changed(&n.path))),
                Err(e) => return Err(ProduceError::Root(root.read_error(&n.path, e))),
            }
            check_after(root, n, &src.file).map_err(ProduceError::Root)?;
            Ok(())
        }
        EntryKind::Directory => {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, &path, io::empty())
                .map_err(ProduceError::Write)
        }
        EntryKind::Symlink => {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = n.link.clone().unwrap_or_default();
            b.append_link(&mut h, &path, os(&target))
                .map_err(ProduceError::Write)
        }
        EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
            h.set_entry_type(match n.kind {
                EntryKind::CharDevice => tar::EntryType::Char,
                EntryKind::BlockDevice => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            });
            if n.kind != EntryKind::Fifo {
                h.set_device_major(n.rdev.0).map_err(bad_header)?;
                h.set_device_minor(n.rdev.1).map_err(bad_header)?;
            }
            b.append_data(&mut h, &path, io::empty())
                .map_err(ProduceError::Write)
        }
        EntryKind::Hardlink | EntryKind::Whiteout | EntryKind::Opaque => {
            unreachable!("the walk records no such kinds")
        }
    }
}

/// Exactly `remaining` bytes of a file; running short (the file shrank) is an error, which
/// the caller reports as a change, not as a write error.
struct Exact {
    file: std::fs::File,
    remaining: u64,
    short: bool,
    /// A read error of the file (the builder's error would look like a write error).
    failed: Option<io::Error>,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = match self.file.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let msg = e.to_string();
                self.failed = Some(e);
                return Err(io::Error::other(msg));
            }
        };
        if n == 0 {
            self.short = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was read",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
