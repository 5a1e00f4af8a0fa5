//! Integrity checking: every object re-hashed (in parallel), every row's object present, every
//! ref resolvable down to its objects, no staging leftovers.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek};

use rayon::prelude::*;
use serde::Serialize;

use rusqlite::OptionalExtension;

use crate::df::ObjectTotals;
use crate::digest::{Digest, ObjectId};
use crate::error::{Error, IoContext, Result};
use crate::refs::Keeps;
use crate::store::{LockMode, Store};

/// One problem `fsck` found. Serialized with a `kind` tag, stable for `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    /// A loose object's content does not hash to its name.
    CorruptObject { id: String, actual: String },
    /// An inline object's content does not hash to its id.
    CorruptInlineObject { id: String },
    /// An object row says loose, but the file is missing.
    MissingObjectFile { id: String },
    /// A loose object's size differs from its row.
    ObjectSizeMismatch { id: String, file: u64, row: u64 },
    /// A loose object is writable, setuid/setgid, or not a regular file.
    BadObjectMode { id: String, mode: u32 },
    /// A layer entry names an object with no row.
    MissingObjectRow { id: String },
    /// A file in `objects/` whose name is not an object id.
    StrayFile { path: String },
    /// A ref whose target does not exist.
    DanglingRef { name: String, target: String },
    /// An image lists a layer that is not stored.
    MissingLayer { image: String, diff_id: String },
    /// A staging directory without a live import.
    StagingLeftover { name: String },
    /// Inline contents no object row names.
    UnreferencedInlineContents { count: u64 },
    /// The object totals kept for df differ from the rows.
    ObjectTotals {
        recorded: ObjectTotals,
        counted: ObjectTotals,
    },
    /// The per-image usage summary df reads differs from the entries in this many images and
    /// objects (`--repair` builds it again).
    UsageSummary { differences: u64 },
    /// A layer lost content to `--repair` (heal.rs): import one of `images` again.
    DamagedLayer {
        diff_id: String,
        objects: Vec<String>,
        images: Vec<String>,
    },
    /// A hardlink checkout's variant changed since it was made (a write through a checkout);
    /// `--repair` removes it and the next checkout makes it again.
    ChangedVariant { path: String, reason: String },
    /// A `bindings` row without its `bound/ROOT/DIGEST` ref (the two are written together):
    /// the image is not kept. `--repair` writes the ref back when the root and the image are
    /// there, and drops the row otherwise.
    BindingWithoutRef {
        root: String,
        image: String,
        reference: String,
    },
    /// A `bound/` ref without its `bindings` row: `unbind` and `root list` cannot see it.
    /// `--repair` records the row back (the image's origin as its reference) while the root
    /// exists, and drops the ref otherwise (it keeps nothing then).
    BoundRefWithoutBinding { name: String, target: String },
}

impl From<crate::variant::VariantProblem> for Finding {
    fn from(p: crate::variant::VariantProblem) -> Self {
        Finding::ChangedVariant {
            path: p.path,
            reason: p.reason,
        }
    }
}

/// Options for [`Store::fsck`].
#[derive(Clone, Debug, Default)]
pub struct FsckOptions {
    /// Remove staging leftovers, dead leases, damaged objects (marking the layers that need
    /// them, heal.rs), orphan inline contents, changed variants; fix the df totals. Takes the
    /// exclusive store lock for the removals.
    pub repair: bool,
}

/// What `fsck` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FsckReport {
    pub objects_checked: u64,
    pub bytes_checked: u64,
    pub refs_checked: u64,
    /// Loose files no row names: harmless leftovers of an interrupted import, gc removes them.
    pub unreferenced_files: u64,
    pub findings: Vec<Finding>,
    /// The findings that `--repair` fixed.
    pub repaired: Vec<Finding>,
}

impl FsckReport {
    /// Whether problems remain.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

struct ObjRow {
    size: u64,
    inline: Option<Vec<u8>>,
    zstd: bool,
}

/// What the check found that `--repair` may fix, beside the findings.
#[derive(Default)]
struct Fixes {
    /// Files a killed gc doomed (`ab/.gc-…`).
    doomed: Vec<String>,
    /// Whether variants need pruning (changed ones, orphans, dead temp files).
    variants: bool,
}

impl Store {
    /// Check the store.
    ///
    /// The check runs under the shared store lock. With `repair`, the removals run afterwards
    /// under the exclusive lock, so no import is between a lookup and its pin, and each finding
    /// is checked again first: an object an import in flight has pinned since (its lease names
    /// it) is left alone and stays a finding, one that is whole again is dropped. So a repair
    /// never takes back an object an import was promised. Hence, with `repair`, this handle must
    /// not hold the shared lock ([`Error::SharedLockHeld`]); the lock waits for other holders.
    pub fn fsck(&self, opts: &FsckOptions) -> Result<FsckReport> {
        if opts.repair && self.holds_shared_lock() {
            return Err(Error::SharedLockHeld {
                what: "fsck --repair",
            });
        }
        let mut rep = FsckReport::default();
        let (mut found, fixes) = {
            let _shared = self.lock(LockMode::Shared)?;
            self.fsck_check(&mut rep)?
        };
        if opts.repair {
            let _exclusive = self.lock(LockMode::Exclusive)?;
            self.fsck_repair(fixes, &mut found, &mut rep)?;
        }
        let _shared = self.lock(LockMode::Shared)?;
        self.fsck_damaged_layers(&mut found)?;
        rep.findings = found;
        Ok(rep)
    }

    /// Everything fsck checks, changing nothing: the findings, and what else a repair removes.
    fn fsck_check(&self, rep: &mut FsckReport) -> Result<(Vec<Finding>, Fixes)> {
        let mut found = Vec::new();
        let mut fixes = Fixes::default();
        // A gc deletes rows and renames their files after its lock, under the dooming lock: a
        // check meanwhile would see rows whose files are being renamed away.
        let _no_sweep_after_its_lock = self.dooming_lock(crate::store::LockMode::Shared)?;

        let rows = self.object_rows()?;

        // Loose files, re-hashed in parallel. Files a killed gc doomed (`.gc-…`) are garbage
        // the next gc removes, like unreferenced files; anything else is a problem.
        let scan = self.scan_objects()?;
        let files = scan.ids;
        rep.unreferenced_files += scan.doomed.len() as u64;
        fixes.doomed = scan.doomed;
        found.extend(scan.other.into_iter().map(|name| Finding::StrayFile {
            path: format!("objects/{name}"),
        }));
        let checked: Vec<Result<(ObjectId, u64, Option<Finding>)>> = files
            .par_iter()
            .map(|id| self.check_loose(id, rows.get(id).map(|r| r.zstd)))
            .collect();
        let on_disk: HashSet<ObjectId> = files.iter().copied().collect();
        for c in checked {
            let (id, size, finding) = c?;
            rep.objects_checked += 1;
            rep.bytes_checked += size;
            match rows.get(&id) {
                None => rep.unreferenced_files += 1,
                Some(row) if row.inline.is_none() && row.size != size => {
                    found.push(Finding::ObjectSizeMismatch {
                        id: id.hex(),
                        file: size,
                        row: row.size,
                    })
                }
                Some(_) => {}
            }
            found.extend(finding);
        }
        for (id, row) in &rows {
            match &row.inline {
                Some(_) => {
                    rep.objects_checked += 1;
                    rep.bytes_checked += row.size;
                    if !inline_is_whole(id, row) {
                        found.push(Finding::CorruptInlineObject { id: id.hex() });
                    }
                }
                None if !on_disk.contains(id) => {
                    found.push(Finding::MissingObjectFile { id: id.hex() })
                }
                None => {}
            }
        }

        // Entries naming objects that have no row.
        {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT DISTINCT e.object FROM entries e LEFT JOIN objects o ON o.id = e.object
                 WHERE e.object IS NOT NULL AND o.id IS NULL",
            )?;
            for id in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
                found.push(Finding::MissingObjectRow {
                    id: hex::encode(id?),
                });
            }
        }

        self.check_refs(rep, &mut found)?;

        // Bindings and bound refs are written together (roots.rs): each has the other.
        found.extend(self.check_bindings(false)?.0);

        // Inline contents that no object names (the sweep deletes both in one transaction).
        let count = self.count_orphan_inline()?;
        if count > 0 {
            found.push(Finding::UnreferencedInlineContents { count });
        }

        // The object totals df reports.
        {
            let conn = self.conn();
            let (recorded, counted) = (
                ObjectTotals::recorded(&conn)?,
                ObjectTotals::counted(&conn)?,
            );
            if recorded != counted {
                found.push(Finding::ObjectTotals { recorded, counted });
            }
        }

        // The per-image usage summary df reads.
        {
            let differences = crate::df::usage::differences(&self.conn())?;
            if differences != 0 {
                found.push(Finding::UsageSummary { differences });
            }
        }

        // Staging leftovers: directories without a live lease.
        found.extend(
            self.staging_leftovers()?
                .into_iter()
                .map(|name| Finding::StagingLeftover { name }),
        );

        // Variants (variant.rs).
        let variants = self.check_variants(false)?;
        rep.objects_checked += variants.variants;
        rep.bytes_checked += variants.bytes;
        rep.unreferenced_files += variants.orphans + variants.leftovers;
        fixes.variants =
            !variants.changed.is_empty() || variants.orphans > 0 || variants.leftovers > 0;
        found.extend(variants.changed.into_iter().map(Finding::from));
        found.extend(
            variants
                .stray
                .into_iter()
                .map(|path| Finding::StrayFile { path }),
        );
        Ok((found, fixes))
    }

    /// Every ref resolves completely.
    fn check_refs(&self, rep: &mut FsckReport, found: &mut Vec<Finding>) -> Result<()> {
        let layers: HashSet<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare("SELECT diff_id FROM layers")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for r in self.refs(None)? {
            rep.refs_checked += 1;
            let dangling = || Finding::DanglingRef {
                name: r.name.to_string(),
                target: r.target.clone(),
            };
            // What the ref must resolve to follows from what it keeps (the one definition gc
            // marks by): a layers row, or an image row with, when it keeps the image whole,
            // every layer.
            let whole = match r.kind.keeps() {
                Keeps::Nothing | Keeps::MergedTree => {
                    if !layers.contains(&r.target) {
                        found.push(dangling());
                    }
                    continue;
                }
                Keeps::Image => true,
                Keeps::Metadata => false,
            };
            match r
                .target
                .parse::<Digest>()
                .ok()
                .map(|d| self.image_by_digest(&d))
            {
                Some(Ok(Some(img))) if whole => {
                    for l in &img.layers {
                        if !layers.contains(&l.diff_id.to_string()) {
                            found.push(Finding::MissingLayer {
                                image: r.name.to_string(),
                                diff_id: l.diff_id.to_string(),
                            });
                        }
                    }
                }
                Some(Ok(Some(_))) => {}
                Some(Err(e)) => return Err(e),
                _ => found.push(dangling()),
            }
        }
        Ok(())
    }

    /// Every object row, with its inline content if it has one.
    fn object_rows(&self) -> Result<HashMap<ObjectId, ObjRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(concat!(
            "SELECT o.id, o.size, c.data, o.zstd FROM ",
            crate::object::objects_with_contents!()
        ))?;
        let mut out = HashMap::new();
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            let id: Vec<u8> = r.get(0)?;
            let Some(id) = ObjectId::from_slice(&id) else {
                continue;
            };
            out.insert(
                id,
                ObjRow {
                    size: r.get::<_, i64>(1)? as u64,
                    inline: r.get(2)?,
                    zstd: r.get(3)?,
                },
            );
        }
        Ok(out)
    }

    /// The row of one object, with its inline content.
    fn object_row(&self, id: &ObjectId) -> Result<Option<ObjRow>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                concat!(
                    "SELECT o.size, c.data, o.zstd FROM ",
                    crate::object::objects_with_contents!(),
                    " WHERE o.id = ?1"
                ),
                [&id.as_bytes()[..]],
                |r| {
                    Ok(ObjRow {
                        size: r.get::<_, i64>(0)? as u64,
                        inline: r.get(1)?,
                        zstd: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// How many inline contents no object row names.
    fn count_orphan_inline(&self) -> Result<u64> {
        let count: i64 =
            self.conn()
                .query_row(&format!("SELECT count(*) {ORPHAN_INLINE}"), [], |r| {
                    r.get(0)
                })?;
        Ok(count as u64)
    }

    /// Staging entries without a live lease.
    fn staging_leftovers(&self) -> Result<Vec<String>> {
        let live: HashSet<String> = self
            .leases()?
            .into_iter()
            .filter(|l| l.alive)
            .map(|l| l.id)
            .collect();
        let mut leftovers = Vec::new();
        for ent in self.staging.entries().at(self.path.join("staging"))? {
            let name = ent
                .at(self.path.join("staging"))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if !live.contains(&name) {
                leftovers.push(name);
            }
        }
        Ok(leftovers)
    }

    /// `--repair`, under the exclusive lock: each repairable finding is checked again as the
    /// store is now, fixed if it still holds (and moved to `rep.repaired`), kept if it must
    /// wait (an object a live lease pins), dropped if it no longer holds.
    fn fsck_repair(
        &self,
        fixes: Fixes,
        found: &mut Vec<Finding>,
        rep: &mut FsckReport,
    ) -> Result<()> {
        // A sweep killed since the check left doomed files that opening the store puts back
        // (their rows stand): only without its marker are they garbage.
        if !self.root.exists(crate::object::SWEEP_MARKER) {
            for d in &fixes.doomed {
                self.unlink_doomed(d)?;
            }
        }
        self.reclaim_dead_leases()?;
        let mut kept = Vec::new();
        let mut variants_changed = false;
        let mut bindings = false;
        for f in std::mem::take(found) {
            match &f {
                Finding::CorruptObject { id, .. }
                | Finding::CorruptInlineObject { id }
                | Finding::ObjectSizeMismatch { id, .. }
                | Finding::BadObjectMode { id, .. }
                | Finding::MissingObjectFile { id } => {
                    let Ok(oid) = id.parse::<ObjectId>() else {
                        kept.push(f);
                        continue;
                    };
                    if self.pinned_by_a_lease(&oid)? {
                        // An import in flight found it and relies on it: its layer is not
                        // published yet, so it could not be marked damaged. The next
                        // `fsck --repair` after the import ends removes it and marks the layer.
                        log::debug!("fsck: object {id} is pinned by a live lease; left for now");
                        kept.push(f);
                        continue;
                    }
                    match self.object_damage(&oid)? {
                        Some(now) => {
                            self.remove_damaged_object(&oid)?;
                            rep.repaired.push(now);
                        }
                        None => log::debug!("fsck: object {id} is whole again"),
                    }
                }
                Finding::UnreferencedInlineContents { .. } => {
                    let count = self
                        .conn()
                        .execute(&format!("DELETE {ORPHAN_INLINE}"), [])?;
                    if count > 0 {
                        rep.repaired.push(Finding::UnreferencedInlineContents {
                            count: count as u64,
                        });
                    }
                }
                Finding::UsageSummary { .. } => {
                    let conn = self.conn();
                    let differences = crate::df::usage::differences(&conn)?;
                    if differences != 0 {
                        crate::df::usage::rebuild(&conn)?;
                        rep.repaired.push(Finding::UsageSummary { differences });
                    }
                }
                Finding::ObjectTotals { .. } => {
                    let conn = self.conn();
                    let (recorded, counted) = (
                        ObjectTotals::recorded(&conn)?,
                        ObjectTotals::counted(&conn)?,
                    );
                    if recorded != counted {
                        counted.record(&conn)?;
                        rep.repaired
                            .push(Finding::ObjectTotals { recorded, counted });
                    }
                }
                Finding::StagingLeftover { name } => {
                    // Dead leases' staging went with them just above; a name a live lease
                    // took since the check is not a leftover.
                    if self.staging_leftovers()?.contains(name) {
                        let p = self.path.join("staging").join(name);
                        match self.staging.symlink_metadata(name) {
                            Ok(m) if m.is_dir() => self.staging.remove_dir_all(name).at(&p)?,
                            Ok(_) => self.staging.remove_file(name).at(&p)?,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(Error::io(&p, e)),
                        }
                        rep.repaired.push(f);
                    }
                }
                Finding::ChangedVariant { .. } => variants_changed = true,
                Finding::BindingWithoutRef { .. } | Finding::BoundRefWithoutBinding { .. } => {
                    bindings = true
                }
                _ => kept.push(f),
            }
        }
        if bindings {
            // Checked again and repaired in one transaction (roots.rs).
            let (remaining, repaired) = self.check_bindings(true)?;
            kept.extend(remaining);
            rep.repaired.extend(repaired);
        }
        if fixes.variants || variants_changed {
            let variants = self.check_variants(true)?;
            rep.repaired
                .extend(variants.changed.into_iter().map(Finding::from));
        }
        *found = kept;
        Ok(())
    }

    /// Whether a lease pins the object (an import that found or wrote it and has not published).
    fn pinned_by_a_lease(&self, id: &ObjectId) -> Result<bool> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM lease_objects
                            WHERE id = ?1 AND lease IN (SELECT id FROM leases))",
            [&id.as_bytes()[..]],
            |r| r.get(0),
        )?)
    }

    /// What is wrong with one object as the store is now, if anything (its file against its
    /// row, or its inline content).
    fn object_damage(&self, id: &ObjectId) -> Result<Option<Finding>> {
        let row = self.object_row(id)?;
        if let Some(row) = &row
            && row.inline.is_some()
        {
            return Ok(
                (!inline_is_whole(id, row)).then(|| Finding::CorruptInlineObject { id: id.hex() })
            );
        }
        if !self.objects.exists(id.rel_path()) {
            return Ok(row.map(|_| Finding::MissingObjectFile { id: id.hex() }));
        }
        let (_, size, finding) = self.check_loose(id, row.as_ref().map(|r| r.zstd))?;
        Ok(finding.or_else(|| {
            row.filter(|r| r.size != size)
                .map(|r| Finding::ObjectSizeMismatch {
                    id: id.hex(),
                    file: size,
                    row: r.size,
                })
        }))
    }

    /// The layers that lost content to a repair (heal.rs), as findings until they are imported
    /// again.
    fn fsck_damaged_layers(&self, found: &mut Vec<Finding>) -> Result<()> {
        let damaged = self.damaged_layers()?;
        // Entries of damaged layers name objects without rows until the layer is imported
        // again; the damaged layer is the finding.
        let lost: HashSet<String> = damaged.iter().flat_map(|d| d.objects.clone()).collect();
        found.retain(|f| !matches!(f, Finding::MissingObjectRow { id } if lost.contains(id)));
        found.extend(damaged.into_iter().map(|d| Finding::DamagedLayer {
            diff_id: d.diff_id,
            objects: d.objects,
            images: d.images,
        }));
        Ok(())
    }

    /// Re-hash a loose file. `zstd` is what its row says; a file without a row counts as whole
    /// if either reading of it hashes to its name.
    fn check_loose(
        &self,
        id: &ObjectId,
        zstd: Option<bool>,
    ) -> Result<(ObjectId, u64, Option<Finding>)> {
        let path = self.object_path(id);
        let f = self.objects.open(id.rel_path()).at(&path)?;
        let meta = f.metadata().at(&path)?;
        let mode = {
            use cap_std::fs::PermissionsExt;
            meta.permissions().mode()
        };
        if !meta.is_file() || mode & 0o7222 != 0 {
            return Ok((
                *id,
                meta.len(),
                Some(Finding::BadObjectMode { id: id.hex(), mode }),
            ));
        }
        let mut f = f.into_std();
        let (actual, size) = match zstd {
            Some(false) => hash_raw(&mut f).at(&path)?,
            Some(true) => match hash_zstd(&mut f) {
                Ok(v) => v,
                Err(e) => {
                    return Ok((
                        *id,
                        meta.len(),
                        Some(Finding::CorruptObject {
                            id: id.hex(),
                            actual: format!("not a whole zstd frame: {e}"),
                        }),
                    ));
                }
            },
            None => match hash_raw(&mut f).at(&path)? {
                (a, n) if a == *id => (a, n),
                other => hash_zstd(&mut f)
                    .ok()
                    .filter(|(a, _)| a == id)
                    .unwrap_or(other),
            },
        };
        let finding = (actual != *id).then(|| Finding::CorruptObject {
            id: id.hex(),
            actual: actual.hex(),
        });
        Ok((*id, size, finding))
    }
}

/// Inline contents no object row names.
const ORPHAN_INLINE: &str = "FROM inline_contents WHERE id NOT IN
     (SELECT content FROM objects WHERE content IS NOT NULL)";

/// Whether an inline object's content hashes to its id and has its row's size.
fn inline_is_whole(id: &ObjectId, row: &ObjRow) -> bool {
    let Some(blob) = &row.inline else {
        return false;
    };
    let data = if row.zstd {
        zstd::bulk::decompress(blob, row.size as usize).ok()
    } else {
        Some(blob.clone())
    };
    data.is_some_and(|d| ObjectId::of(&d) == *id && d.len() as u64 == row.size)
}

/// blake3 and length of a file's bytes.
fn hash_raw(f: &mut std::fs::File) -> std::io::Result<(ObjectId, u64)> {
    f.rewind()?;
    hash_reader(f)
}

/// blake3 and length of the content of a file that is one zstd frame.
fn hash_zstd(f: &mut std::fs::File) -> std::io::Result<(ObjectId, u64)> {
    f.rewind()?;
    hash_reader(&mut zstd::stream::Decoder::new(f)?)
}

/// blake3 and length of everything `r` yields.
fn hash_reader(r: &mut impl Read) -> std::io::Result<(ObjectId, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((ObjectId::from_hash(hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    /// A store with one loose object that has a row (no layer names it), its file then
    /// overwritten: corrupt.
    fn store_with_a_corrupt_object(dir: &std::path::Path) -> (Store, ObjectId) {
        let s = Store::init(&dir.join("s"), &StoreOptions::default()).unwrap();
        let st = s.staging("t").unwrap();
        let id = st.put_bytes(&[7u8; 10_000]).unwrap().0.id;
        st.flush().unwrap();
        st.remove().unwrap();
        {
            let conn = s.conn();
            conn.execute_batch("DELETE FROM lease_objects").unwrap();
            conn.execute(
                "INSERT INTO objects (id, size, loose) VALUES (?1, 10000, 1)",
                [&id.as_bytes()[..]],
            )
            .unwrap();
            ObjectTotals::row(10_000, true, 10_000)
                .add_to(&conn)
                .unwrap();
        }
        let path = s.object_path(&id);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, [8u8; 10_000]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        (s, id)
    }

    fn has_row(s: &Store, id: &ObjectId) -> bool {
        s.object_row(id).unwrap().is_some()
    }

    /// The race: an import finds an object present and pins it to its lease, then publishes
    /// entries naming it. A repair that removed it meanwhile (the old code did, under the shared
    /// lock only) left the import's layer without its content and unmarked. Now the removals
    /// run under the exclusive lock and leave what a live lease pins: the object stays a
    /// finding until the import is over, and the next repair removes it.
    #[test]
    fn repair_leaves_an_object_a_live_import_has_pinned() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, id) = store_with_a_corrupt_object(tmp.path());
        let lease = s.begin_lease("import").unwrap();
        s.pin_objects(lease.id(), &[id]).unwrap();

        let rep = s.fsck(&FsckOptions { repair: true }).unwrap();
        let corrupt =
            |f: &Finding| matches!(f, Finding::CorruptObject { id: i, .. } if *i == id.hex());
        assert!(rep.findings.iter().any(corrupt), "{:?}", rep.findings);
        assert!(!rep.repaired.iter().any(corrupt), "{:?}", rep.repaired);
        assert!(s.objects.exists(id.rel_path()), "the pinned file stays");
        assert!(has_row(&s, &id), "the pinned row stays");

        drop(lease);
        let rep = s.fsck(&FsckOptions { repair: true }).unwrap();
        assert!(rep.repaired.iter().any(corrupt), "{:?}", rep.repaired);
        assert!(rep.is_clean(), "{:?}", rep.findings);
        assert!(!s.objects.exists(id.rel_path()));
        assert!(!has_row(&s, &id));
        assert!(s.fsck(&FsckOptions::default()).unwrap().is_clean());
    }

    /// Removals take the exclusive lock: through a handle that holds the shared one, that would
    /// wait forever, so it is an error; a check alone still runs.
    #[test]
    fn repair_through_a_handle_holding_the_shared_lock_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, id) = store_with_a_corrupt_object(tmp.path());
        let held = s.lock(LockMode::Shared).unwrap();
        assert!(matches!(
            s.fsck(&FsckOptions { repair: true }),
            Err(Error::SharedLockHeld { .. })
        ));
        assert!(!s.fsck(&FsckOptions::default()).unwrap().is_clean());
        assert!(has_row(&s, &id), "nothing was removed");
        drop(held);
        assert!(s.fsck(&FsckOptions { repair: true }).unwrap().is_clean());
    }

    /// What a repair re-checks under the exclusive lock before it removes an object: the
    /// file as it is then (whole again, or gone), not as the check saw it.
    #[test]
    fn object_damage_is_checked_as_the_store_is_now() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, id) = store_with_a_corrupt_object(tmp.path());
        let path = s.object_path(&id);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, [7u8; 10_000]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        assert_eq!(s.object_damage(&id).unwrap(), None);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            s.object_damage(&id).unwrap(),
            Some(Finding::MissingObjectFile { id: id.hex() })
        );
    }
}
