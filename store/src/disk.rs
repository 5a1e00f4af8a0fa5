//! Disk images from a merged tree: a rootfs tar streamed straight from the store, or EROFS / ext4
//! made by `mkfs.erofs` / `mkfs.ext4 -d` from a checkout in staging.
//!
//! Generation pins the flattened tree with a `merged/NAME` ref for its whole duration and drops
//! the ref and the staging afterwards, also when generation fails (unless asked to keep the ref).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::checkout::{CheckoutMode, CheckoutOptions};
use crate::error::{Error, IoContext, Result};
use crate::flatten::MergedTree;
use crate::object::ObjectReader;
use crate::query::ImageInfo;
use crate::store::Store;
use crate::tree::{EntryKind, TreeEntry, display_path};

/// The kinds of disk image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Tar,
    Erofs,
    Ext4,
}

/// Options for [`Store::generate_disk`].
#[derive(Clone, Debug)]
pub struct DiskOptions {
    pub format: DiskFormat,
    /// ext4 size in bytes (default: from the content).
    pub size: Option<u64>,
    /// Keep the `merged/NAME` ref afterwards.
    pub keep_merged: bool,
    /// The merged ref's name (default: the image's first name or digest).
    pub merged_name: String,
}

/// What was produced.
#[derive(Clone, Debug, Serialize)]
pub struct DiskReport {
    pub format: DiskFormat,
    pub output: PathBuf,
    pub bytes: u64,
    pub entries: u64,
    pub merged_ref: String,
    pub merged_kept: bool,
}

impl Store {
    /// Write a disk image of `image` to `out`.
    pub fn generate_disk(
        &self,
        image: &ImageInfo,
        out: &Path,
        opts: &DiskOptions,
    ) -> Result<DiskReport> {
        self.with_merged(image, opts, out, |tree| {
            let res = self.generate_from(tree, out, opts);
            if res.is_err() {
                let _ = std::fs::remove_file(out);
            }
            res
        })
    }

    /// Stream a rootfs tar of `image` into `w` (standard output, a pipe), through a merged ref
    /// as [`Store::generate_disk`] does. Always a tar: `opts.format` is not consulted.
    pub fn generate_tar_to<W: Write>(
        &self,
        image: &ImageInfo,
        w: W,
        opts: &DiskOptions,
    ) -> Result<DiskReport> {
        let opts = &DiskOptions {
            format: DiskFormat::Tar,
            ..opts.clone()
        };
        let mut counting = CountingWriter { inner: w, count: 0 };
        self.with_merged(image, opts, Path::new("-"), |tree| {
            self.write_tar(tree, &mut counting)?;
            Ok(counting.count)
        })
    }

    /// Run `generate` on the flattened tree while a `merged/NAME` ref pins it. A merged ref
    /// kept by an earlier generation stays; one made here goes afterwards unless kept.
    fn with_merged(
        &self,
        image: &ImageInfo,
        opts: &DiskOptions,
        out: &Path,
        generate: impl FnOnce(&MergedTree) -> Result<u64>,
    ) -> Result<DiskReport> {
        let existed = self
            .ref_target(&crate::refs::RefName::new(
                crate::refs::RefKind::Merged,
                &opts.merged_name,
            )?)?
            .is_some();
        let (r, tree) = self.create_merged(&opts.merged_name, image)?;
        let res = generate(&tree);
        let keep = opts.keep_merged || existed;
        if !keep {
            let dropped = self.remove_refs(std::slice::from_ref(&r));
            if res.is_ok() {
                dropped?;
            }
        }
        let bytes = res?;
        Ok(DiskReport {
            format: opts.format,
            output: out.into(),
            bytes,
            entries: tree.entries.len() as u64,
            merged_ref: r.to_string(),
            merged_kept: keep,
        })
    }

    fn generate_from(&self, tree: &MergedTree, out: &Path, opts: &DiskOptions) -> Result<u64> {
        match opts.format {
            DiskFormat::Tar => {
                let f = std::fs::File::create(out).at(out)?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                self.write_tar(tree, &mut w)?;
                let f = w.into_inner().map_err(|e| Error::io(out, e.into_error()))?;
                f.sync_all().at(out)?;
            }
            DiskFormat::Erofs | DiskFormat::Ext4 => {
                let lease = self.begin_lease("disk")?;
                let root = self.path.join("staging").join(lease.id()).join("root");
                let copts = CheckoutOptions {
                    mode: CheckoutMode::Copy,
                    ..CheckoutOptions::default()
                };
                self.checkout(tree, &root, &copts)?;
                let mut cmd = if opts.format == DiskFormat::Erofs {
                    let mut c = Command::new("mkfs.erofs");
                    c.arg(out).arg(&root);
                    c
                } else {
                    let content: u64 = tree.entries.values().map(|e| e.size).sum();
                    let size = opts.size.unwrap_or(
                        content + content / 4 + tree.entries.len() as u64 * 4096 + (32 << 20),
                    );
                    let _ = std::fs::remove_file(out);
                    let mut c = Command::new("mkfs.ext4");
                    c.args(["-q", "-F", "-L", "rootfs", "-d"])
                        .arg(&root)
                        .arg(out)
                        .arg(format!("{}k", size.div_ceil(1024)));
                    c
                };
                run(&mut cmd)?;
                drop(lease);
            }
        }
        Ok(std::fs::metadata(out).at(out)?.len())
    }

    /// Stream a merged tree as a tar (GNU long names, PAX for xattrs and sub-second mtimes).
    pub fn write_tar<W: Write>(&self, tree: &MergedTree, w: W) -> Result<()> {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        let objects = self.object_reader()?;
        for e in tree.depth_first() {
            append_entry(&objects, &mut b, e)?;
        }
        b.into_inner()
            .map_err(Error::Output)?
            .flush()
            .map_err(Error::Output)?;
        Ok(())
    }
}

/// Append one entry of a merged tree to a rootfs tar.
fn append_entry<W: Write>(
    objects: &ObjectReader<'_>,
    b: &mut tar::Builder<W>,
    e: &TreeEntry,
) -> Result<()> {
    let io = |err: std::io::Error| Error::io(display_path(&e.path), err);
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    for (k, v) in &e.xattrs {
        pax.push((
            format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
            v.clone(),
        ));
    }
    if e.mtime_nsec != 0 {
        pax.push((
            "mtime".into(),
            format!("{}.{:09}", e.mtime, e.mtime_nsec).into_bytes(),
        ));
    }
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(io)?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(e.mtime.max(0) as u64);
    h.set_size(0);
    let path = if e.path.is_empty() {
        b"./".to_vec()
    } else {
        e.path.clone()
    };
    let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&path));
    match e.kind {
        EntryKind::Regular => {
            let id = e.object.expect("regular files have objects");
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(e.size);
            let data = objects.read(&id)?;
            b.append_data(&mut h, &path, data.into_reader().map_err(io)?)
                .map_err(io)?;
        }
        EntryKind::Directory => {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, &path, std::io::empty()).map_err(io)?;
        }
        EntryKind::Symlink | EntryKind::Hardlink => {
            h.set_entry_type(if e.kind == EntryKind::Symlink {
                tar::EntryType::Symlink
            } else {
                tar::EntryType::Link
            });
            let target = e.link.clone().unwrap_or_default();
            let target = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&target));
            b.append_link(&mut h, &path, &target).map_err(io)?;
        }
        EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
            h.set_entry_type(match e.kind {
                EntryKind::CharDevice => tar::EntryType::Char,
                EntryKind::BlockDevice => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            });
            h.set_device_major(e.dev_major).map_err(io)?;
            h.set_device_minor(e.dev_minor).map_err(io)?;
            b.append_data(&mut h, &path, std::io::empty()).map_err(io)?;
        }
        EntryKind::Whiteout | EntryKind::Opaque => {}
    }
    Ok(())
}

/// Counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| Error::io(&name, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::io(
            &name,
            std::io::Error::other(format!(
                "{name} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        ))
    }
}
