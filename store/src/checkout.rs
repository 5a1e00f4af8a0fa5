//! Writing a merged tree to a directory. Every call is relative to a directory handle opened
//! with `O_NOFOLLOW`, names are created with `O_EXCL`, so nothing is ever written through a
//! symlink or outside the target. A checkout that fails removes what it wrote (the target it
//! created, or the contents of the empty one it found).
//!
//! Hardlink checkouts link per-metadata variants of the objects (see [`crate::variant`]), never
//! the canonical objects: each file has the image's mode, owner and xattrs, and a write through
//! the checkout cannot change what other images read.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::flatten::MergedTree;
use crate::object::{ObjectData, ObjectReader};
use crate::store::Store;
use crate::tree::{EntryKind, TreeEntry, display_path, file_name, parent};
use crate::variant::{LinkTarget, VariantMeta, Variants};

mod stack;

/// How file contents reach the checkout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckoutMode {
    /// Copy contents (`copy_file_range`, so filesystems that can share extents do).
    #[default]
    Copy,
    /// Clone extents (`FICLONE`) where the filesystem can, copy where it cannot (like
    /// `cp --reflink=auto`; [`CheckoutStats::copied_not_cloned`] says how many).
    Reflink,
    /// Hard-link variants of the objects that carry the image's mode, owner and xattrs, made on
    /// first use in `STORE/variants/` (see [`crate::variant`]); mtimes are normalised to 0.
    /// Where the store cannot be written or is on another filesystem, files are copied
    /// ([`CheckoutStats::copied_not_linked`]).
    Hardlink,
}

/// Options for [`Store::checkout`].
#[derive(Clone, Debug)]
pub struct CheckoutOptions {
    pub mode: CheckoutMode,
    /// Restore owners, device nodes and privileged xattrs (default: when running as root).
    pub privileged: bool,
}

impl Default for CheckoutOptions {
    fn default() -> Self {
        CheckoutOptions {
            mode: CheckoutMode::Copy,
            privileged: rustix::process::geteuid().is_root(),
        }
    }
}

/// What a checkout wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckoutStats {
    pub directories: u64,
    pub files: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub specials: u64,
    /// Content bytes of the regular files (linked ones too).
    pub bytes: u64,
    /// Regular files linked to a variant (hardlink mode).
    pub linked: u64,
    /// Variants made by this checkout, and their content bytes.
    pub variants_made: u64,
    pub variant_bytes: u64,
    /// Variants found changed since they were made (a write through an earlier checkout), made
    /// again (counted in `variants_made` too).
    pub variants_remade: u64,
    /// Files copied in hardlink mode because the store could not be written or linked into
    /// the target's filesystem.
    pub copied_not_linked: u64,
    /// Files copied in reflink mode because the filesystem cannot clone.
    pub copied_not_cloned: u64,
    /// Device nodes skipped because the checkout is unprivileged.
    pub skipped_devices: u64,
    /// xattrs not restored (overlay markers, or privileged ones when unprivileged).
    pub skipped_xattrs: u64,
}

struct Ctx<'a> {
    objects: ObjectReader<'a>,
    dest: PathBuf,
    opts: &'a CheckoutOptions,
    stats: CheckoutStats,
    /// The store's variants, for a hardlink checkout that may write them.
    variants: Option<&'a Variants>,
    /// Set once linking or cloning failed because the filesystem cannot: later files are
    /// copied without trying (shared by the checkout's threads).
    no_link: &'a AtomicBool,
    no_clone: &'a AtomicBool,
    /// What a file this process creates gets without a chown or chmod: its owner (unless the
    /// target directory is setgid, when every new file and directory inherits its group) and
    /// the creation mode less the umask.
    owner: Option<(u32, u32)>,
    umask: u32,
}

impl Store {
    /// Write the merged tree into `dest`, which must not exist or be an empty directory. If the
    /// checkout fails, what it wrote is removed: `dest` is removed if it made it, emptied (and
    /// given its mode back) if it found it empty.
    pub fn checkout(
        &self,
        tree: &MergedTree,
        dest: &Path,
        opts: &CheckoutOptions,
    ) -> Result<CheckoutStats> {
        let (root, found) = prepare_target(dest)?;
        let res = self.checkout_into(tree, dest, &root, opts);
        if res.is_err() {
            if let Err(e) = clear_dir(&root, dest) {
                log::warn!(
                    "could not remove the failed checkout in {}: {e}",
                    dest.display()
                );
            }
            drop(root);
            let undo = match found {
                Target::Created => rustix::fs::rmdir(dest),
                Target::FoundEmpty { mode } => rustix::fs::chmod(dest, Mode::from_raw_mode(mode)),
            };
            if let Err(e) = undo {
                log::warn!("could not restore {}: {e}", dest.display());
            }
        }
        res
    }

    fn checkout_into(
        &self,
        tree: &MergedTree,
        dest: &Path,
        root: &OwnedFd,
        opts: &CheckoutOptions,
    ) -> Result<CheckoutStats> {
        let root = root.as_fd();
        let variants = match opts.mode {
            CheckoutMode::Hardlink => Variants::open(self, opts.privileged)?,
            _ => None,
        };
        let no_link = AtomicBool::new(variants.is_none());
        let no_clone = AtomicBool::new(false);
        let setgid = rustix::fs::fstat(root).at(dest)?.st_mode & 0o2000 != 0;
        let owner = (!setgid).then(|| {
            (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            )
        });
        let umask = process_umask();
        let new_ctx = || -> Result<Ctx<'_>> {
            Ok(Ctx {
                objects: self.object_reader()?,
                dest: dest.into(),
                opts,
                stats: CheckoutStats::default(),
                variants: variants.as_ref(),
                no_link: &no_link,
                no_clone: &no_clone,
                owner,
                umask,
            })
        };
        let mut ctx = new_ctx()?;
        let order = tree.depth_first();
        // Phase 1: directories, parents before children.
        let mut stack: Vec<(&[u8], OwnedFd)> = Vec::new();
        let mut dirs = Vec::new();
        for e in order.iter().filter(|e| e.kind == EntryKind::Directory) {
            if e.path.is_empty() {
                dirs.push(*e);
                continue;
            }
            let p = parent(&e.path).expect("non-root");
            while stack.last().is_some_and(|(sp, _)| *sp != p) {
                stack.pop();
            }
            let pfd = match stack.last() {
                Some((_, fd)) => fd.as_fd(),
                None => root,
            };
            let fd = ctx.mkdir(pfd, e)?;
            dirs.push(*e);
            stack.push((&e.path, fd));
        }
        drop(stack);
        // Phase 2: files, symlinks and special files. Writing small files is all syscalls, so
        // two threads each take half of the depth-first order (a thread opens each parent once
        // per run of siblings), with an object reader of its own.
        let files: Vec<&TreeEntry> = order
            .iter()
            .filter(|e| !matches!(e.kind, EntryKind::Directory | EntryKind::Hardlink))
            .copied()
            .collect();
        let split = if files.len() >= PARALLEL_FROM {
            files.len() / 2
        } else {
            files.len()
        };
        let (mine, theirs) = files.split_at(split);
        let theirs_stats = std::thread::scope(|s| -> Result<CheckoutStats> {
            let other = (!theirs.is_empty()).then(|| {
                s.spawn(|| -> Result<CheckoutStats> {
                    let mut c = new_ctx()?;
                    c.create_all(root, theirs)?;
                    Ok(c.stats)
                })
            });
            let res = ctx.create_all(root, mine);
            let theirs = match other {
                Some(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?,
                None => CheckoutStats::default(),
            };
            res.map(|()| theirs)
        })?;
        ctx.stats.add(&theirs_stats);
        // Phase 3: hard links, now that every target exists.
        for e in order.iter().filter(|e| e.kind == EntryKind::Hardlink) {
            ctx.hardlink(root, tree, e)?;
        }
        // Phase 4: directory metadata deepest first, so mtimes stay and 0555 dirs were writable.
        for d in dirs.iter().rev() {
            let fd = open_dir_path(root, &d.path).at(ctx.path(d))?;
            ctx.set_meta_fd(&fd, d)?;
        }
        Ok(ctx.stats)
    }
}

/// How the checkout found its target: what to restore if it fails.
enum Target {
    Created,
    FoundEmpty { mode: u32 },
}

/// Create or accept the target directory and open it without following symlinks.
fn prepare_target(dest: &Path) -> Result<(OwnedFd, Target)> {
    use std::os::unix::fs::PermissionsExt;
    let found = match std::fs::symlink_metadata(dest) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::TargetIsSymlink { path: dest.into() });
        }
        Ok(m) if m.is_dir() => {
            if std::fs::read_dir(dest).at(dest)?.next().is_some() {
                return Err(Error::TargetNotEmpty { path: dest.into() });
            }
            Target::FoundEmpty {
                mode: m.permissions().mode() & 0o7777,
            }
        }
        Ok(_) => return Err(Error::TargetNotEmpty { path: dest.into() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            rustix::fs::mkdir(dest, Mode::from_raw_mode(0o700)).at(dest)?;
            Target::Created
        }
        Err(e) => return Err(Error::io(dest, e)),
    };
    let fd = rustix::fs::open(
        dest,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    );
    match fd {
        Ok(fd) => Ok((fd, found)),
        Err(e) => {
            if matches!(found, Target::Created) {
                let _ = rustix::fs::rmdir(dest);
            }
            Err(Error::io(dest, e))
        }
    }
}

/// Remove everything below the directory `dir` (a failed checkout's), through handles: each
/// subdirectory is made writable first (the checkout may have given it 0555).
fn clear_dir(dir: &OwnedFd, path: &Path) -> Result<()> {
    rustix::fs::fchmod(dir, Mode::from_raw_mode(0o700)).at(path)?;
    let mut names = Vec::new();
    {
        let mut rd = rustix::fs::Dir::read_from(dir).at(path)?;
        while let Some(ent) = rd.read() {
            let ent = ent.at(path)?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push((name.to_vec(), ent.file_type()));
            }
        }
    }
    for (name, ft) in names {
        let p = path.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&name));
        let is_dir = match ft {
            rustix::fs::FileType::Directory => true,
            rustix::fs::FileType::Unknown => {
                rustix::fs::FileType::from_raw_mode(
                    rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                        .at(&p)?
                        .st_mode,
                ) == rustix::fs::FileType::Directory
            }
            _ => false,
        };
        if is_dir {
            let sub = rustix::fs::openat(
                dir,
                name.as_slice(),
                OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .at(&p)?;
            clear_dir(&sub, &p)?;
            rustix::fs::unlinkat(dir, name.as_slice(), AtFlags::REMOVEDIR).at(&p)?;
        } else {
            rustix::fs::unlinkat(dir, name.as_slice(), AtFlags::empty()).at(&p)?;
        }
    }
    Ok(())
}

/// This process's umask, read without changing it (0o777, "always chmod", if unknown).
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o777)
}

/// Open a directory below `root` without following a symlink: in one `openat2` confined
/// beneath `root` where the kernel has it, else one component at a time.
fn open_dir_path(root: std::os::fd::BorrowedFd<'_>, path: &[u8]) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    let resolve = rustix::fs::ResolveFlags::BENEATH
        | rustix::fs::ResolveFlags::NO_SYMLINKS
        | rustix::fs::ResolveFlags::NO_MAGICLINKS;
    let rel: &[u8] = if path.is_empty() { b"." } else { path };
    match rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve) {
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {}
        other => return other,
    }
    let mut fd = rustix::fs::openat(root, c".", flags, Mode::empty())?;
    for c in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        fd = rustix::fs::openat(&fd, c, flags, Mode::empty())?;
    }
    Ok(fd)
}

/// Checkouts of at least this many non-directory entries write them from two threads.
const PARALLEL_FROM: usize = 512;

impl CheckoutStats {
    fn add(&mut self, o: &CheckoutStats) {
        self.directories += o.directories;
        self.files += o.files;
        self.symlinks += o.symlinks;
        self.hardlinks += o.hardlinks;
        self.specials += o.specials;
        self.bytes += o.bytes;
        self.linked += o.linked;
        self.variants_made += o.variants_made;
        self.variant_bytes += o.variant_bytes;
        self.variants_remade += o.variants_remade;
        self.copied_not_linked += o.copied_not_linked;
        self.copied_not_cloned += o.copied_not_cloned;
        self.skipped_devices += o.skipped_devices;
        self.skipped_xattrs += o.skipped_xattrs;
    }
}

impl Ctx<'_> {
    /// Create `entries` (no directories or hard links; in depth-first order, so siblings come
    /// together), opening each parent beneath `root`.
    fn create_all(
        &mut self,
        root: std::os::fd::BorrowedFd<'_>,
        entries: &[&TreeEntry],
    ) -> Result<()> {
        let mut cur: Option<(&[u8], OwnedFd)> = None;
        for e in entries {
            let p = parent(&e.path).expect("non-root");
            if cur.as_ref().is_none_or(|(cp, _)| *cp != p) {
                let fd = open_dir_path(root, p)
                    .at(self.dest.join(display_path(p).trim_start_matches('/')))?;
                cur = Some((p, fd));
            }
            let (_, pfd) = cur.as_ref().expect("just set");
            self.create(pfd.as_fd(), e)?;
        }
        Ok(())
    }

    fn path(&self, e: &TreeEntry) -> PathBuf {
        self.dest
            .join(display_path(&e.path).trim_start_matches('/'))
    }

    fn mkdir(&mut self, pfd: std::os::fd::BorrowedFd<'_>, e: &TreeEntry) -> Result<OwnedFd> {
        let name = file_name(&e.path);
        rustix::fs::mkdirat(pfd, name, Mode::from_raw_mode(0o700)).at(self.path(e))?;
        self.stats.directories += 1;
        rustix::fs::openat(
            pfd,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .at(self.path(e))
    }

    fn create(&mut self, pfd: std::os::fd::BorrowedFd<'_>, e: &TreeEntry) -> Result<()> {
        let name = file_name(&e.path);
        match e.kind {
            EntryKind::Regular => {
                let id = e.object.ok_or_else(|| Error::BadTree {
                    diff_id: String::new(),
                    path: display_path(&e.path),
                    reason: "regular file without an object",
                })?;
                if self.opts.mode == CheckoutMode::Hardlink {
                    if self.link_variant(pfd, e, id)? {
                        return Ok(());
                    }
                    self.stats.copied_not_linked += 1;
                }
                let fd = rustix::fs::openat(
                    pfd,
                    name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(self.creation_mode(e)),
                )
                .at(self.path(e))?;
                let mut file = std::fs::File::from(fd);
                let data = self.objects.read(&id)?;
                let n = match (data, self.opts.mode) {
                    (
                        ObjectData::Loose {
                            file: src,
                            size,
                            zstd: false,
                        },
                        CheckoutMode::Reflink,
                    ) if !self.no_clone.load(Ordering::Relaxed) => {
                        match rustix::fs::ioctl_ficlone(&file, &src) {
                            Ok(()) => size,
                            Err(err) if cannot_clone(err) => {
                                self.no_clone.store(true, Ordering::Relaxed);
                                self.stats.copied_not_cloned += 1;
                                let data = ObjectData::Loose {
                                    file: src,
                                    size,
                                    zstd: false,
                                };
                                data.copy_to(&mut file).at(self.path(e))?
                            }
                            Err(err) => return Err(Error::io(self.path(e), err)),
                        }
                    }
                    (data @ ObjectData::Loose { zstd: false, .. }, CheckoutMode::Reflink) => {
                        self.stats.copied_not_cloned += 1;
                        data.copy_to(&mut file).at(self.path(e))?
                    }
                    (data, _) => data.copy_to(&mut file).at(self.path(e))?,
                };
                if n != e.size {
                    return Err(Error::ObjectCorrupt {
                        id: id.hex(),
                        actual: format!("{n} bytes, expected {}", e.size),
                    });
                }
                file.flush().at(self.path(e))?;
                self.stats.files += 1;
                self.stats.bytes += n;
                self.set_meta_new(file.as_fd(), e)?;
            }
            EntryKind::Symlink => {
                let target = e.link.as_deref().unwrap_or_default();
                rustix::fs::symlinkat(target, pfd, name).at(self.path(e))?;
                self.stats.symlinks += 1;
                self.set_meta_at(pfd, e)?;
            }
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
                let ft = match e.kind {
                    EntryKind::CharDevice => rustix::fs::FileType::CharacterDevice,
                    EntryKind::BlockDevice => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                if ft != rustix::fs::FileType::Fifo && !self.opts.privileged {
                    self.stats.skipped_devices += 1;
                    return Ok(());
                }
                let dev = rustix::fs::makedev(e.dev_major, e.dev_minor);
                rustix::fs::mknodat(pfd, name, ft, Mode::from_raw_mode(0o600), dev)
                    .at(self.path(e))?;
                self.stats.specials += 1;
                self.set_meta_at(pfd, e)?;
            }
            EntryKind::Directory
            | EntryKind::Hardlink
            | EntryKind::Whiteout
            | EntryKind::Opaque => {
                unreachable!("handled by the caller or removed by the merge")
            }
        }
        Ok(())
    }

    /// Link the variant of `id` with `e`'s metadata as `e` in `pfd`. `false` if that cannot be
    /// done here (no writable store, or the target is on another filesystem): copy instead.
    fn link_variant(
        &mut self,
        pfd: std::os::fd::BorrowedFd<'_>,
        e: &TreeEntry,
        id: crate::ObjectId,
    ) -> Result<bool> {
        let Some(variants) = self.variants else {
            return Ok(false);
        };
        if self.no_link.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let (meta, skipped) = VariantMeta::of(e, self.opts.privileged);
        let objects = &self.objects;
        let path = self.path(e);
        let target = LinkTarget {
            dir: pfd,
            name: file_name(&e.path),
            path: &path,
        };
        match variants.link((&id, e.size), &meta, || objects.read(&id), target) {
            Ok(l) => {
                self.stats.files += 1;
                self.stats.linked += 1;
                self.stats.bytes += e.size;
                self.stats.skipped_xattrs += skipped + l.skipped_xattrs;
                if let Some(n) = l.made {
                    self.stats.variants_made += 1;
                    self.stats.variant_bytes += n;
                }
                self.stats.variants_remade += u64::from(l.remade);
                Ok(true)
            }
            Err(Error::Io { source, .. })
                if matches!(
                    rustix::io::Errno::from_io_error(&source),
                    Some(rustix::io::Errno::XDEV | rustix::io::Errno::PERM)
                ) =>
            {
                // Another filesystem, or protected_hardlinks: copy this file and the rest.
                self.no_link.store(true, Ordering::Relaxed);
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    fn hardlink(
        &mut self,
        root: std::os::fd::BorrowedFd<'_>,
        tree: &MergedTree,
        e: &TreeEntry,
    ) -> Result<()> {
        let target = e.link.as_deref().unwrap_or_default();
        let pfd = open_dir_path(root, parent(&e.path).expect("non-root")).at(self.path(e))?;
        // The group's first member may have been replaced or removed by an upper layer; then
        // this member gets its own copy of the content it linked to.
        let same = tree.entries.get(target).is_some_and(|t| match t.kind {
            EntryKind::Regular => t.object == e.object,
            EntryKind::Directory => false,
            _ => e.object.is_none(),
        });
        if same {
            let tfd = open_dir_path(root, parent(target).unwrap_or_default()).at(self.path(e))?;
            rustix::fs::linkat(
                &tfd,
                file_name(target),
                &pfd,
                file_name(&e.path),
                AtFlags::empty(),
            )
            .at(self.path(e))?;
            self.stats.hardlinks += 1;
        } else if e.object.is_some() {
            let mut copy = e.clone();
            copy.kind = EntryKind::Regular;
            self.create(pfd.as_fd(), &copy)?;
        }
        Ok(())
    }

    /// The mode a regular file is created with: its final permission bits (the handle writes
    /// whatever they are), which spares most files a chmod; 0600 when an unprivileged checkout
    /// must still set xattrs, which needs write permission.
    fn creation_mode(&self, e: &TreeEntry) -> u32 {
        if self.opts.privileged || e.xattrs.is_empty() {
            e.mode & 0o777
        } else {
            0o600
        }
    }

    /// Metadata of a file this checkout just created with [`Ctx::creation_mode`]: only the
    /// calls that change something.
    fn set_meta_new(&mut self, fd: std::os::fd::BorrowedFd<'_>, e: &TreeEntry) -> Result<()> {
        let (uid, gid) = ids(e);
        let chown = self.opts.privileged && self.owner != Some((uid.as_raw(), gid.as_raw()));
        let created = self.creation_mode(e) & !self.umask;
        let chmod = e.mode & 0o7000 != 0 || created != e.mode & 0o777;
        self.set_meta(fd, e, chown, chmod)
    }

    fn set_meta_fd(&mut self, fd: impl AsFd, e: &TreeEntry) -> Result<()> {
        let privileged = self.opts.privileged;
        self.set_meta(fd.as_fd(), e, privileged, true)
    }

    fn set_meta(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        e: &TreeEntry,
        chown: bool,
        chmod: bool,
    ) -> Result<()> {
        if chown {
            let (uid, gid) = ids(e);
            rustix::fs::fchown(fd, Some(uid), Some(gid)).at(self.path(e))?;
        }
        for (k, v) in &e.xattrs {
            if crate::tree::is_overlay_xattr(k) {
                self.stats.skipped_xattrs += 1;
                continue;
            }
            match rustix::fs::fsetxattr(fd, k.as_slice(), v, XattrFlags::empty()) {
                Ok(()) => {}
                Err(err) if !self.opts.privileged || err == rustix::io::Errno::NOTSUP => {
                    self.stats.skipped_xattrs += 1
                }
                Err(err) => return Err(Error::io(self.path(e), err)),
            }
        }
        // After chown, which clears setuid/setgid.
        if chmod {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(e.mode & 0o7777)).at(self.path(e))?;
        }
        rustix::fs::futimens(fd, &times(e)).at(self.path(e))?;
        Ok(())
    }

    fn set_meta_at(&mut self, pfd: std::os::fd::BorrowedFd<'_>, e: &TreeEntry) -> Result<()> {
        let name = file_name(&e.path);
        if self.opts.privileged {
            let (uid, gid) = ids(e);
            rustix::fs::chownat(pfd, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .at(self.path(e))?;
        }
        if e.kind != EntryKind::Symlink {
            rustix::fs::chmodat(
                pfd,
                name,
                Mode::from_raw_mode(e.mode & 0o7777),
                AtFlags::empty(),
            )
            .at(self.path(e))?;
        }
        if !e.xattrs.is_empty() {
            self.stats.skipped_xattrs += e.xattrs.len() as u64;
        }
        rustix::fs::utimensat(pfd, name, &times(e), AtFlags::SYMLINK_NOFOLLOW).at(self.path(e))?;
        Ok(())
    }
}

fn ids(e: &TreeEntry) -> (rustix::fs::Uid, rustix::fs::Gid) {
    // Ids beyond 32 bits were refused at import; clamp defensively.
    let uid = u32::try_from(e.uid).unwrap_or(u32::MAX - 1);
    let gid = u32::try_from(e.gid).unwrap_or(u32::MAX - 1);
    (
        rustix::fs::Uid::from_raw(uid),
        rustix::fs::Gid::from_raw(gid),
    )
}

fn times(e: &TreeEntry) -> Timestamps {
    let t = Timespec {
        tv_sec: e.mtime,
        tv_nsec: i64::from(e.mtime_nsec),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Whether a `FICLONE` error means the filesystem (or this pair of files) cannot clone, so a
/// copy is the answer, as `cp --reflink=auto` does.
fn cannot_clone(err: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    matches!(
        err,
        Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY | Errno::NOSYS | Errno::PERM
    )
}
