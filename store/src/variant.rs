//! Variants: the files hardlink checkouts link.
//!
//! ```text
//! STORE/variants/                   mode 0700: setuid variants are reachable only through checkouts
//!   ab/cdef….META                   object abcdef…'s content with one combination of mode, owner and
//!                                   xattrs (META: 32 hex digits of their blake3), mtime 0
//!   ab/.tmp-PID-N                   a variant being made; garbage once process PID is gone
//! ```
//!
//! A hard link shares its inode, so a checkout that linked the canonical object would give every
//! file the object's mode (0444), owner and xattrs, and a write through it (root ignores 0444)
//! would change the content every other image reads. Object identity stays content only — it is
//! what makes dedup across images work — and a hardlink checkout links a *variant* instead: a copy
//! (a clone where the filesystem shares extents) of the content, made on first use, with the
//! image's metadata. The canonical objects are never handed out.
//!
//! Variants are disposable. Every variant has mtime 0 (hardlink checkouts normalise mtimes, as
//! `ostree checkout -H` does), so a write through any checkout that links it changes its mtime
//! (and usually its size): the next checkout sees that in the `stat` it does anyway and makes the
//! variant again (the checkouts that linked the changed one keep it, their problem alone). fsck
//! re-hashes variants, reports changed ones and `--repair` removes them; gc removes the variants
//! of the objects it removes ([`Store::drop_variants_of`]), and [`Store::prune_variants`] removes
//! variants of objects the index no longer has.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::Dir;
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use serde::Serialize;

use crate::digest::ObjectId;
use crate::error::{Error, IoContext, Result};
use crate::object::ObjectData;
use crate::store::Store;
use crate::tree::TreeEntry;

/// The directory in the store root that holds variants.
pub const VARIANTS: &str = "variants";
/// The prefix of a variant being made.
const TMP_PREFIX: &str = ".tmp-";

/// The metadata a variant carries, as the checkout applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VariantMeta<'e> {
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    /// `None` when unprivileged: the group is whatever a new file gets.
    pub gid: Option<u32>,
    /// The xattrs to set, sorted by name.
    pub xattrs: Vec<(&'e [u8], &'e [u8])>,
}

impl<'e> VariantMeta<'e> {
    /// What a checkout gives `e`: privileged, its own owner and every xattr but overlay markers;
    /// unprivileged, the caller's uid and only `user.` xattrs (the others could not be set).
    /// Returns the metadata and how many xattrs it leaves out.
    pub(crate) fn of(e: &'e TreeEntry, privileged: bool) -> (Self, u64) {
        let (uid, gid) = if privileged {
            (
                u32::try_from(e.uid).unwrap_or(u32::MAX - 1),
                Some(u32::try_from(e.gid).unwrap_or(u32::MAX - 1)),
            )
        } else {
            (rustix::process::geteuid().as_raw(), None)
        };
        let mut skipped = 0;
        let xattrs = e
            .xattrs
            .iter()
            .filter(|(k, _)| {
                let keep =
                    !crate::tree::is_overlay_xattr(k) && (privileged || k.starts_with(b"user."));
                skipped += u64::from(!keep);
                keep
            })
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        (
            VariantMeta {
                mode: e.mode & 0o7777,
                uid,
                gid,
                xattrs,
            },
            skipped,
        )
    }

    /// 32 hex digits of the blake3 of the metadata, in a framing that cannot be ambiguous.
    pub(crate) fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"layerstore-variant-1\0");
        h.update(&self.mode.to_le_bytes());
        h.update(&self.uid.to_le_bytes());
        match self.gid {
            Some(g) => h.update(&[1]).update(&g.to_le_bytes()),
            None => h.update(&[0]),
        };
        h.update(&(self.xattrs.len() as u64).to_le_bytes());
        for (k, v) in &self.xattrs {
            h.update(&(k.len() as u64).to_le_bytes()).update(k);
            h.update(&(v.len() as u64).to_le_bytes()).update(v);
        }
        hex::encode(&h.finalize().as_bytes()[..16])
    }

    /// Whether a `stat` of a variant shows it as made: a regular file of `size` bytes with this
    /// mode and owner and mtime 0. `privileged` is false where setting the setgid bit may have
    /// been refused (not a member of the group).
    fn matches(&self, st: &rustix::fs::Stat, size: u64, privileged: bool) -> bool {
        let mode = st.st_mode & 0o7777;
        let mode_ok = if privileged {
            mode == self.mode
        } else {
            mode & !0o2000 == self.mode & !0o2000
        };
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
            && st.st_size as u64 == size
            && mode_ok
            && st.st_uid == self.uid
            && self.gid.is_none_or(|g| g == st.st_gid)
            && st.st_mtime == 0
            && st.st_mtime_nsec == 0
    }
}

/// What [`Variants::link`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Linked {
    /// A variant was made (content bytes written or cloned).
    pub made: Option<u64>,
    /// The variant existed but had changed since it was made, and was made again.
    pub remade: bool,
    /// The content was cloned rather than copied.
    pub cloned: bool,
    /// xattrs that could not be set on a new variant.
    pub skipped_xattrs: u64,
}

/// Where [`Variants::link`] links: `name` in the directory `dir`, `path` for messages.
pub(crate) struct LinkTarget<'a> {
    pub dir: BorrowedFd<'a>,
    pub name: &'a [u8],
    pub path: &'a std::path::Path,
}

/// The open `variants/` directory of a store.
pub(crate) struct Variants {
    dir: Dir,
    path: PathBuf,
    counter: AtomicU64,
    privileged: bool,
}

impl Variants {
    /// Open `variants/`, making it on first use. `None` if the caller cannot write the store.
    pub(crate) fn open(store: &Store, privileged: bool) -> Result<Option<Variants>> {
        let path = store.path.join(VARIANTS);
        match rustix::fs::mkdirat(&store.root, VARIANTS, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM | rustix::io::Errno::ROFS) => {
                return Ok(None);
            }
            Err(e) => return Err(Error::io(path, e)),
        }
        let dir = store.root.open_dir(VARIANTS).at(&path)?;
        // Writable by us? (A store directory owned by another user may hold a variants/ we can
        // read but not write.)
        match rustix::fs::accessat(
            &dir,
            ".",
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            AtFlags::EACCESS,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM | rustix::io::Errno::ROFS) => {
                return Ok(None);
            }
            Err(e) => return Err(Error::io(path, e)),
        }
        Ok(Some(Variants {
            dir,
            path,
            counter: AtomicU64::new(0),
            privileged,
        }))
    }

    /// Link the variant of object `id` (`size` bytes) with `meta` as `target`, making (or
    /// remaking) the variant first if needed; `read` opens the object's content.
    ///
    /// A gc removes the variants of the objects it removes, after its lock, and an object it
    /// removed may be imported again meanwhile: so a variant found (or just made) may be gone
    /// by the time it is linked. Then it is made again, a bounded number of times.
    pub(crate) fn link(
        &self,
        (id, size): (&ObjectId, u64),
        meta: &VariantMeta<'_>,
        read: impl Fn() -> Result<ObjectData>,
        target: LinkTarget<'_>,
    ) -> Result<Linked> {
        const ATTEMPTS: u32 = 3;
        let LinkTarget {
            dir: pfd,
            name,
            path: dest,
        } = target;
        let rel = format!("{}.{}", id.rel_path(), meta.key());
        let mut out = Linked::default();
        for attempt in 1..=ATTEMPTS {
            match rustix::fs::statat(&self.dir, rel.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if meta.matches(&st, size, self.privileged) => {}
                Ok(_) => {
                    out = self.make(id, size, meta, &read, &rel)?;
                    out.remade = true;
                }
                Err(rustix::io::Errno::NOENT) => out = self.make(id, size, meta, &read, &rel)?,
                Err(e) => return Err(Error::io(self.path.join(&rel), e)),
            }
            match rustix::fs::linkat(&self.dir, rel.as_str(), pfd, name, AtFlags::empty()) {
                Ok(()) => return Ok(out),
                // The variant went between the look and the link (the target's directory is
                // held open, so it is not the one missing): look again.
                Err(rustix::io::Errno::NOENT) if attempt < ATTEMPTS => {}
                Err(e) => return Err(Error::io(dest.to_owned(), e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Write a variant in a temp file beside its name and rename it into place (over a changed
    /// one).
    fn make(
        &self,
        id: &ObjectId,
        size: u64,
        meta: &VariantMeta<'_>,
        read: &impl Fn() -> Result<ObjectData>,
        rel: &str,
    ) -> Result<Linked> {
        let sub = &rel[..2];
        let tmp = format!(
            "{sub}/{TMP_PREFIX}{}-{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let tmp_path = self.path.join(&tmp);
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC;
        let fd =
            match rustix::fs::openat(&self.dir, tmp.as_str(), flags, Mode::from_raw_mode(0o600)) {
                Err(rustix::io::Errno::NOENT) => {
                    match rustix::fs::mkdirat(&self.dir, sub, Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(Error::io(self.path.join(sub), e)),
                    }
                    rustix::fs::openat(&self.dir, tmp.as_str(), flags, Mode::from_raw_mode(0o600))
                }
                r => r,
            }
            .at(&tmp_path)?;
        let res = (|| -> Result<Linked> {
            let mut file = std::fs::File::from(fd);
            let mut out = Linked::default();
            let n = match read()? {
                ObjectData::Loose {
                    file: src,
                    size: n,
                    zstd: false,
                } if rustix::fs::ioctl_ficlone(&file, &src).is_ok() => {
                    out.cloned = true;
                    n
                }
                data => data.copy_to(&mut file).at(&tmp_path)?,
            };
            if n != size {
                return Err(Error::ObjectCorrupt {
                    id: id.hex(),
                    actual: format!("{n} bytes, expected {size}"),
                });
            }
            file.flush().at(&tmp_path)?;
            out.made = Some(n);
            out.skipped_xattrs = apply_meta(file.as_fd(), meta, self.privileged, &tmp_path)?;
            Ok(out)
        })();
        let res = res.and_then(|out| {
            rustix::fs::renameat(&self.dir, tmp.as_str(), &self.dir, rel)
                .at(self.path.join(rel))?;
            Ok(out)
        });
        if res.is_err() {
            let _ = rustix::fs::unlinkat(&self.dir, tmp.as_str(), AtFlags::empty());
        }
        res
    }
}

/// Give a new variant its metadata: owner, xattrs, then mode (a chown clears setuid), mtime 0.
/// Returns the xattrs that could not be set.
fn apply_meta(
    fd: BorrowedFd<'_>,
    meta: &VariantMeta<'_>,
    privileged: bool,
    path: &std::path::Path,
) -> Result<u64> {
    if let (true, Some(gid)) = (privileged, meta.gid) {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .at(path)?;
    }
    let mut skipped = 0;
    for (k, v) in &meta.xattrs {
        match rustix::fs::fsetxattr(fd, *k, v, XattrFlags::empty()) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::PERM) => skipped += 1,
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode)).at(path)?;
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: zero,
            last_modification: zero,
        },
    )
    .at(path)?;
    Ok(skipped)
}

/// A variant file fsck found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VariantProblem {
    /// `variants/ab/cdef….META`
    pub path: String,
    pub reason: String,
}

/// What [`Store::check_variants`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VariantCheck {
    pub variants: u64,
    pub bytes: u64,
    /// Variants whose content no longer hashes to their object, or that are not regular files.
    pub changed: Vec<VariantProblem>,
    /// Variants of objects the index does not have (gc removed them).
    pub orphans: u64,
    /// Temp files of checkouts that died while making a variant.
    pub leftovers: u64,
    /// Files in `variants/` that are neither.
    pub stray: Vec<String>,
}

/// A name in `variants/ab/`: a variant (its object id) or a temp file (its process id).
enum VariantName {
    Variant(ObjectId),
    Temp(Option<u32>),
    Stray,
}

fn parse_name(sub: &str, name: &str) -> VariantName {
    if let Some(rest) = name.strip_prefix(TMP_PREFIX) {
        return VariantName::Temp(rest.split('-').next().and_then(|p| p.parse().ok()));
    }
    match name.split_once('.') {
        Some((obj, key)) if key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()) => {
            match format!("{sub}{obj}").parse::<ObjectId>() {
                Ok(id) => VariantName::Variant(id),
                Err(_) => VariantName::Stray,
            }
        }
        _ => VariantName::Stray,
    }
}

impl Store {
    /// Every file in `variants/`: (`ab/NAME`, what it is). Empty if there is no `variants/`.
    fn variant_files(&self) -> Result<Vec<(String, VariantName)>> {
        let path = self.path.join(VARIANTS);
        // Another user's variants (0700) are not this reader's to check.
        if rustix::fs::accessat(
            &self.root,
            VARIANTS,
            rustix::fs::Access::READ_OK | rustix::fs::Access::EXEC_OK,
            AtFlags::EACCESS,
        ) == Err(rustix::io::Errno::ACCESS)
        {
            return Ok(Vec::new());
        }
        let dir = match self.root.open_dir(VARIANTS) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(path, e)),
        };
        let mut out = Vec::new();
        for sub in dir.entries().at(&path)? {
            let sub = sub.at(&path)?.file_name().to_string_lossy().into_owned();
            let subpath = path.join(&sub);
            let Ok(sd) = dir.open_dir(&sub) else {
                out.push((sub, VariantName::Stray));
                continue;
            };
            for ent in sd.entries().at(&subpath)? {
                let name = ent.at(&subpath)?.file_name().to_string_lossy().into_owned();
                let kind = if sub.len() == 2 {
                    parse_name(&sub, &name)
                } else {
                    VariantName::Stray
                };
                out.push((format!("{sub}/{name}"), kind));
            }
        }
        Ok(out)
    }

    fn remove_variant_file(&self, rel: &str) -> Result<bool> {
        let dir = self.root.open_dir(VARIANTS).at(self.path.join(VARIANTS))?;
        match rustix::fs::unlinkat(&dir, rel, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io(self.path.join(VARIANTS).join(rel), e)),
        }
    }

    /// Remove every variant of these objects (gc calls this for the objects its sweep removed).
    /// Returns how many files went.
    pub fn drop_variants_of(&self, ids: &[ObjectId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let dir = match self.root.open_dir(VARIANTS) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(self.path.join(VARIANTS), e)),
        };
        let mut by_sub: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for id in ids {
            let h = id.hex();
            by_sub
                .entry(h[..2].to_string())
                .or_default()
                .push(format!("{}.", &h[2..]));
        }
        let mut removed = 0;
        for (sub, prefixes) in by_sub {
            let subpath = self.path.join(VARIANTS).join(&sub);
            let sd = match dir.open_dir(&sub) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(subpath, e)),
            };
            for ent in sd.entries().at(&subpath)? {
                let name = ent.at(&subpath)?.file_name().to_string_lossy().into_owned();
                if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                    match rustix::fs::unlinkat(&sd, name.as_str(), AtFlags::empty()) {
                        Ok(()) => removed += 1,
                        Err(rustix::io::Errno::NOENT) => {}
                        Err(e) => return Err(Error::io(subpath.join(&name), e)),
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Remove variants of objects the index no longer has, and temp files of checkouts that
    /// died. Returns how many files went.
    pub fn prune_variants(&self) -> Result<u64> {
        let files = self.variant_files()?;
        if files.is_empty() {
            return Ok(0);
        }
        let mut removed = 0;
        // Point lookups per variant: gc runs this after every sweep, and a store holds far fewer
        // variants than objects.
        let conn = self.conn();
        let mut has_row = conn.prepare_cached("SELECT 1 FROM objects WHERE id = ?1")?;
        for (rel, kind) in files {
            let gone = match kind {
                VariantName::Variant(id) => !has_row.exists([id.as_bytes().as_slice()])?,
                VariantName::Temp(pid) => pid.is_none_or(|p| !process_exists(p)),
                VariantName::Stray => false,
            };
            if gone && self.remove_variant_file(&rel)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The ids of all object rows.
    fn object_ids_present(&self) -> Result<std::collections::HashSet<ObjectId>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM objects")?;
        let mut out = std::collections::HashSet::new();
        for id in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
            if let Some(id) = ObjectId::from_slice(&id?) {
                out.insert(id);
            }
        }
        Ok(out)
    }

    /// Check every variant: re-hash its content against its object (`hash`), or only count it.
    /// With `repair`, remove changed variants, orphans and dead temp files.
    pub fn check_variants(&self, repair: bool) -> Result<VariantCheck> {
        let mut rep = self.check_variants_with(true)?;
        if repair {
            for p in &rep.changed {
                let rel = p.path.strip_prefix("variants/").unwrap_or(&p.path);
                self.remove_variant_file(rel)?;
            }
            rep.orphans = 0;
            rep.leftovers = 0;
            self.prune_variants()?;
        }
        Ok(rep)
    }

    fn check_variants_with(&self, hash: bool) -> Result<VariantCheck> {
        use rayon::prelude::*;
        let files = self.variant_files()?;
        let mut rep = VariantCheck::default();
        if files.is_empty() {
            return Ok(rep);
        }
        let known = self.object_ids_present()?;
        let dir = match self.root.open_dir(VARIANTS) {
            Ok(d) => d,
            Err(e) => return Err(Error::io(self.path.join(VARIANTS), e)),
        };
        let mut variants = Vec::new();
        for (rel, kind) in files {
            match kind {
                VariantName::Variant(id) if known.contains(&id) => variants.push((rel, id)),
                VariantName::Variant(_) => rep.orphans += 1,
                VariantName::Temp(pid) => {
                    rep.leftovers += u64::from(pid.is_none_or(|p| !process_exists(p)))
                }
                VariantName::Stray => rep.stray.push(format!("{VARIANTS}/{rel}")),
            }
        }
        let checked: Vec<Result<(u64, Option<VariantProblem>)>> = variants
            .par_iter()
            .map(|(rel, id)| {
                let path = self.path.join(VARIANTS).join(rel);
                let problem = |reason: String| VariantProblem {
                    path: format!("{VARIANTS}/{rel}"),
                    reason,
                };
                let st = match rustix::fs::statat(&dir, rel.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(rustix::io::Errno::NOENT) => return Ok((0, None)),
                    Err(e) => return Err(Error::io(path, e)),
                };
                let len = st.st_size as u64;
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    != rustix::fs::FileType::RegularFile
                {
                    return Ok((0, Some(problem("not a regular file".into()))));
                }
                if st.st_mtime != 0 || st.st_mtime_nsec != 0 {
                    return Ok((len, Some(problem("modified since it was made".into()))));
                }
                if !hash {
                    return Ok((len, None));
                }
                let f = dir.open(rel).at(&path)?;
                let (actual, n) = hash_file(f.into_std()).at(&path)?;
                Ok((
                    n,
                    (actual != *id).then(|| problem(format!("content hashes to {}", actual.hex()))),
                ))
            })
            .collect();
        for c in checked {
            let (n, p) = c?;
            rep.variants += 1;
            rep.bytes += n;
            rep.changed.extend(p);
        }
        Ok(rep)
    }

    /// Files and bytes in `variants/` (for df).
    pub fn variant_usage(&self) -> Result<(u64, u64)> {
        let c = self.check_variants_with(false)?;
        Ok((c.variants, c.bytes))
    }
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// blake3 and length of a file's content.
fn hash_file(mut f: std::fs::File) -> io::Result<(ObjectId, u64)> {
    let mut h = blake3::Hasher::new();
    let n = io::copy(&mut f, &mut h)?;
    Ok((ObjectId::from_hash(h.finalize()), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(mode: u32, uid: u64, xattrs: &[(&[u8], &[u8])]) -> TreeEntry {
        let mut e = TreeEntry::implicit_dir(b"f".to_vec());
        e.kind = crate::tree::EntryKind::Regular;
        e.mode = mode;
        e.uid = uid;
        e.gid = uid;
        e.xattrs = xattrs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        e
    }

    #[test]
    fn variant_keys_differ_by_every_piece_of_metadata() {
        let base = entry(0o755, 0, &[]);
        let k = |e: &TreeEntry| VariantMeta::of(e, true).0.key();
        let keys = [
            k(&base),
            k(&entry(0o4755, 0, &[])),
            k(&entry(0o755, 1, &[])),
            k(&entry(0o755, 0, &[(b"security.capability", b"x")])),
            k(&entry(0o755, 0, &[(b"security.capability", b"y")])),
            k(&entry(0o755, 0, &[(b"user.a", b"")])),
        ];
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        // Overlay markers are never set, so they do not make a variant of their own.
        assert_eq!(
            k(&base),
            k(&entry(0o755, 0, &[(b"trusted.overlay.opaque", b"y")]))
        );
    }

    #[test]
    fn unprivileged_variants_keep_only_user_xattrs() {
        let e = entry(0o644, 0, &[(b"security.selinux", b"x"), (b"user.k", b"v")]);
        let (meta, skipped) = VariantMeta::of(&e, false);
        assert_eq!(meta.xattrs, vec![(&b"user.k"[..], &b"v"[..])]);
        assert_eq!(skipped, 1);
        assert_eq!(meta.gid, None);
    }

    #[test]
    fn variant_names_parse() {
        let id = ObjectId::of(b"x");
        let h = id.hex();
        assert!(matches!(
            parse_name(&h[..2], &format!("{}.{}", &h[2..], "0".repeat(32))),
            VariantName::Variant(i) if i == id
        ));
        assert!(matches!(
            parse_name("ab", ".tmp-123-4"),
            VariantName::Temp(Some(123))
        ));
        assert!(matches!(parse_name("ab", "junk"), VariantName::Stray));
    }
}
