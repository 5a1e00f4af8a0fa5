//! The file side of a gc sweep: scanning `objects/`, dooming files, putting back files a sweep
//! of an earlier version doomed before it was interrupted, and unlinking them.

use std::io;

use crate::digest::ObjectId;
use crate::error::{Error, IoContext, Result};
use crate::store::{LockMode, Store};

/// The prefix a gc sweep gives the object files it removes (renamed in their own directory
/// under the exclusive lock, unlinked after it).
pub const DOOMED_PREFIX: &str = ".gc-";

/// The file that marks a gc sweep in progress, in the store's root.
pub const SWEEP_MARKER: &str = "sweeping";

/// What a scan of `objects/` found.
#[derive(Debug, Default)]
pub struct ObjectScan {
    /// Loose object files.
    pub ids: Vec<ObjectId>,
    /// Files a gc sweep doomed but did not unlink (it was killed): `ab/.gc-cdef…`.
    pub doomed: Vec<String>,
    /// Anything else: `ab/NAME`.
    pub other: Vec<String>,
}

impl Store {
    /// Scan `objects/` (one directory read per subdirectory, no stat), subdirectories in
    /// parallel.
    pub fn scan_objects(&self) -> Result<ObjectScan> {
        use rayon::prelude::*;
        let scan_dir = |i: u8| -> Result<ObjectScan> {
            let mut out = ObjectScan::default();
            let sub = format!("{i:02x}");
            let path = self.path.join("objects").join(&sub);
            let dir = self.objects.open_dir(&sub).at(&path)?;
            for ent in dir.entries().at(&path)? {
                let name = ent.at(&path)?.file_name();
                let name = name.to_string_lossy();
                if let Ok(id) = format!("{sub}{name}").parse::<ObjectId>() {
                    out.ids.push(id);
                } else if name.starts_with(DOOMED_PREFIX) {
                    out.doomed.push(format!("{sub}/{name}"));
                } else {
                    out.other.push(format!("{sub}/{name}"));
                }
            }
            Ok(out)
        };
        let parts: Vec<ObjectScan> = (0..=255u8)
            .into_par_iter()
            .map(scan_dir)
            .collect::<Result<_>>()?;
        let mut all = ObjectScan::default();
        for p in parts {
            all.ids.extend(p.ids);
            all.doomed.extend(p.doomed);
            all.other.extend(p.other);
        }
        Ok(all)
    }

    /// Every loose object file's id (one directory scan, no stat).
    pub fn loose_ids(&self) -> Result<Vec<ObjectId>> {
        Ok(self.scan_objects()?.ids)
    }

    /// The size of a loose object file (0 if it is gone).
    pub fn loose_size(&self, id: &ObjectId) -> u64 {
        self.objects
            .symlink_metadata(id.rel_path())
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Every loose object file with its size.
    pub fn loose_files(&self) -> Result<Vec<(ObjectId, u64)>> {
        Ok(self
            .loose_ids()?
            .into_iter()
            .map(|id| (id, self.loose_size(&id)))
            .collect())
    }

    /// Rename a loose object file to its doomed name in the same directory (gc, under the
    /// dooming lock, after the sweep deleted its row); a missing one is fine. Returns the doomed
    /// name, `ab/.gc-cdef…`.
    pub(crate) fn doom_loose(&self, id: &ObjectId) -> Result<String> {
        let rel = id.rel_path();
        let (sub, rest) = rel.split_at(3);
        let doomed = format!("{sub}{DOOMED_PREFIX}{rest}");
        match rustix::fs::renameat(&self.objects, rel.as_str(), &self.objects, doomed.as_str()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(doomed),
            Err(e) => Err(Error::io(self.object_path(id), e)),
        }
    }

    /// Bump the sweep generation once a sweep's doomed files are renamed away: an import batch
    /// that opened while they were being renamed sees the generation move and looks at the
    /// files it found again (see [`crate::object::Staging`]). Not durable: after a crash the
    /// files not yet renamed stay where they are, and an import may rely on them.
    pub(crate) fn bump_sweep_generation(&self) -> Result<()> {
        self.conn().execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'sweeps'",
            [],
        )?;
        Ok(())
    }

    /// Leave the marker a sweep of an earlier version set before it renamed files ahead of its
    /// commit (tests: what such a sweep, killed, leaves). Opening a store whose marker is
    /// present puts back the doomed files whose rows stand, see [`Store::recover_sweep`].
    #[cfg(test)]
    pub(crate) fn set_sweep_marker(&self) -> Result<()> {
        self.root
            .write(SWEEP_MARKER, b"")
            .at(self.path.join(SWEEP_MARKER))
    }

    /// Remove the sweep marker: the sweep committed, or its doomed files were put back.
    pub(crate) fn end_sweep(&self) -> Result<()> {
        match self.root.remove_file(SWEEP_MARKER) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(self.path.join(SWEEP_MARKER), e))
            }
            _ => Ok(()),
        }
    }

    /// Put back every doomed file whose object still has a row and no file (a sweep that did
    /// not commit). Returns how many.
    pub(crate) fn restore_doomed(&self) -> Result<usize> {
        let doomed = self.scan_objects()?.doomed;
        let conn = self.conn();
        let mut has_row = conn.prepare("SELECT EXISTS (SELECT 1 FROM objects WHERE id = ?1)")?;
        let mut restored = 0;
        for d in &doomed {
            let Some((sub, rest)) = d.split_once(DOOMED_PREFIX) else {
                continue;
            };
            let Ok(id) = format!("{}{rest}", sub.trim_end_matches('/')).parse::<ObjectId>() else {
                continue;
            };
            if !has_row.query_row([&id.as_bytes()[..]], |r| r.get::<_, bool>(0))? {
                continue;
            }
            match rustix::fs::renameat_with(
                &self.objects,
                d.as_str(),
                &self.objects,
                id.rel_path().as_str(),
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) => restored += 1,
                Err(rustix::io::Errno::EXIST | rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(Error::io(self.path.join("objects").join(d), e)),
            }
        }
        Ok(restored)
    }

    /// Finish a sweep that was killed before it committed: put back every doomed file whose row
    /// still stands. Opening a store does this, and so does [`Store::mark`] (the killed sweep
    /// may have been another process's, killed while this handle was open). Waits for the
    /// exclusive lock, so a sweep in progress ends first.
    pub fn recover_sweep(&self) -> Result<()> {
        if !self.root.exists(SWEEP_MARKER) {
            return Ok(());
        }
        let _exclusive = self.lock(LockMode::Exclusive)?;
        if !self.root.exists(SWEEP_MARKER) {
            return Ok(());
        }
        let n = self.restore_doomed()?;
        log::warn!("a gc sweep was interrupted; {n} object files put back");
        self.end_sweep()
    }

    /// Unlink a doomed file (`ab/.gc-cdef…`); a missing one is fine.
    pub(crate) fn unlink_doomed(&self, doomed: &str) -> Result<()> {
        match rustix::fs::unlinkat(&self.objects, doomed, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io(self.path.join("objects").join(doomed), e)),
        }
    }
}
