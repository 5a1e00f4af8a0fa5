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
use crate::store::Store;

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

/// Options for [`Store::fsck`].
#[derive(Clone, Debug, Default)]
pub struct FsckOptions {
    /// Remove staging leftovers, dead leases, and object rows whose file is gone.
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

impl Store {
    /// Check the store.
    pub fn fsck(&self, opts: &FsckOptions) -> Result<FsckReport> {
        let mut rep = FsckReport::default();
        let mut found = Vec::new();

        let rows: HashMap<ObjectId, ObjRow> = {
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
            out
        };

        // Loose files, re-hashed in parallel. Files a killed gc doomed (`.gc-…`) are garbage
        // the next gc removes, like unreferenced files; anything else is a problem.
        let scan = self.scan_objects()?;
        let files = scan.ids;
        rep.unreferenced_files += scan.doomed.len() as u64;
        found.extend(scan.other.into_iter().map(|name| Finding::StrayFile {
            path: format!("objects/{name}"),
        }));
        if opts.repair {
            for d in &scan.doomed {
                self.unlink_doomed(d)?;
            }
        }
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
        let mut missing_files = Vec::new();
        for (id, row) in &rows {
            match &row.inline {
                Some(blob) => {
                    rep.objects_checked += 1;
                    rep.bytes_checked += row.size;
                    let data = if row.zstd {
                        zstd::bulk::decompress(blob, row.size as usize).ok()
                    } else {
                        Some(blob.clone())
                    };
                    if !data.is_some_and(|d| ObjectId::of(&d) == *id && d.len() as u64 == row.size)
                    {
                        found.push(Finding::CorruptInlineObject { id: id.hex() });
                    }
                }
                None if !on_disk.contains(id) => missing_files.push(*id),
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

        // Refs resolve completely.
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

        // Bindings and bound refs are written together (roots.rs): each has the other.
        {
            let (remaining, repaired) = self.check_bindings(opts.repair)?;
            found.extend(remaining);
            rep.repaired.extend(repaired);
        }

        // Inline contents that no object names (the sweep deletes both in one transaction).
        {
            let conn = self.conn();
            const ORPHANS: &str = "FROM inline_contents WHERE id NOT IN
                 (SELECT content FROM objects WHERE content IS NOT NULL)";
            let count: i64 =
                conn.query_row(&format!("SELECT count(*) {ORPHANS}"), [], |r| r.get(0))?;
            if count > 0 {
                let f = Finding::UnreferencedInlineContents {
                    count: count as u64,
                };
                if opts.repair {
                    conn.execute(&format!("DELETE {ORPHANS}"), [])?;
                    rep.repaired.push(f);
                } else {
                    found.push(f);
                }
            }
        }

        // The object totals df reports.
        {
            let conn = self.conn();
            let (recorded, counted) = (
                ObjectTotals::recorded(&conn)?,
                ObjectTotals::counted(&conn)?,
            );
            if recorded != counted {
                let f = Finding::ObjectTotals { recorded, counted };
                if opts.repair {
                    counted.record(&conn)?;
                    rep.repaired.push(f);
                } else {
                    found.push(f);
                }
            }
        }

        // The per-image usage summary df reads.
        {
            let conn = self.conn();
            let differences = crate::df::usage::differences(&conn)?;
            if differences != 0 {
                let f = Finding::UsageSummary { differences };
                if opts.repair {
                    crate::df::usage::rebuild(&conn)?;
                    rep.repaired.push(f);
                } else {
                    found.push(f);
                }
            }
        }

        // Staging leftovers: directories without a live lease.
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

        if opts.repair {
            self.reclaim_dead_leases()?;
            for name in leftovers.drain(..) {
                let p = self.path.join("staging").join(&name);
                // Dead leases' staging went with them just above.
                match self.staging.symlink_metadata(&name) {
                    Ok(m) if m.is_dir() => self.staging.remove_dir_all(&name).at(&p)?,
                    Ok(_) => self.staging.remove_file(&name).at(&p)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&p, e)),
                }
                rep.repaired.push(Finding::StagingLeftover { name });
            }
            let conn = self.conn();
            for id in std::mem::take(&mut missing_files) {
                let still_used: bool = conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM entries WHERE object = ?1)",
                    [&id.as_bytes()[..]],
                    |r| r.get(0),
                )?;
                if still_used {
                    missing_files.push(id);
                    continue;
                }
                let gone: Option<ObjectTotals> = conn
                    .query_row(
                        "DELETE FROM objects WHERE id = ?1 RETURNING size, loose, COALESCE(stored, size)",
                        [&id.as_bytes()[..]],
                        |r| {
                            Ok(ObjectTotals::row(
                                r.get::<_, i64>(0)? as u64,
                                r.get(1)?,
                                r.get::<_, i64>(2)? as u64,
                            ))
                        },
                    )
                    .optional()?;
                if let Some(t) = gone {
                    t.negated().add_to(&conn)?;
                }
                rep.repaired
                    .push(Finding::MissingObjectFile { id: id.hex() });
            }
        }
        found.extend(
            leftovers
                .into_iter()
                .map(|name| Finding::StagingLeftover { name }),
        );
        found.extend(
            missing_files
                .into_iter()
                .map(|id| Finding::MissingObjectFile { id: id.hex() }),
        );
        self.fsck_heal(opts.repair, &mut found, &mut rep)?;
        rep.findings = found;
        Ok(rep)
    }

    /// Damaged content and variants (heal.rs, variant.rs): with `repair`, remove corrupt
    /// objects and mark the layers that need them, and remove changed variants; report the
    /// damaged layers that remain.
    fn fsck_heal(
        &self,
        repair: bool,
        found: &mut Vec<Finding>,
        rep: &mut FsckReport,
    ) -> Result<()> {
        if repair {
            let mut kept = Vec::new();
            for f in std::mem::take(found) {
                let id = match &f {
                    Finding::CorruptObject { id, .. }
                    | Finding::CorruptInlineObject { id }
                    | Finding::ObjectSizeMismatch { id, .. }
                    | Finding::BadObjectMode { id, .. }
                    | Finding::MissingObjectFile { id } => id.parse::<ObjectId>().ok(),
                    _ => None,
                };
                match id {
                    Some(id) => {
                        self.remove_damaged_object(&id)?;
                        rep.repaired.push(f);
                    }
                    None => kept.push(f),
                }
            }
            *found = kept;
        }
        let variants = self.check_variants(repair)?;
        rep.objects_checked += variants.variants;
        rep.bytes_checked += variants.bytes;
        rep.unreferenced_files += variants.orphans + variants.leftovers;
        let changed = variants
            .changed
            .into_iter()
            .map(|p| Finding::ChangedVariant {
                path: p.path,
                reason: p.reason,
            });
        if repair {
            rep.repaired.extend(changed);
        } else {
            found.extend(changed);
        }
        found.extend(
            variants
                .stray
                .into_iter()
                .map(|path| Finding::StrayFile { path }),
        );
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
