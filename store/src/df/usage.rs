//! The per-image usage summary `df` reads: for each image some `image/` ref names, the bytes of
//! distinct content only it needs and the bytes it shares with other named images, kept in
//! `image_usage`; and for each object those images have, how many of them have it and the sum of
//! their `images.id`s, kept in its `objects` row (`users`, `user_sum`; with one user the sum is
//! that user, which is how removing the second-to-last user finds whom the content now belongs
//! to alone). The counts live in the row an import writes anyway: a table of their own, keyed by
//! the same random blake3, made each import into a large store rewrite most of its pages too.
//! Content without an `objects` row (fsck --repair removed it as corrupt) counts nowhere until
//! an import brings it back, which rebuilds the summary.
//!
//! Invariant: the tracked images (`image_usage` rows) are the named images, and the figures
//! equal what [`recompute`] counts from the entries. Every transaction that changes `image/`
//! refs ends with [`sync`], which compares the named set with the tracked set (both a few rows)
//! and adds or removes the difference, each image at the cost of its own distinct objects: a
//! publish pays for the image it names, never for the store. `df` uses the summary only when
//! the two sets agree and counts from the entries otherwise, so a writer that forgot `sync`
//! makes `df` slow, not wrong.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{Connection, params};

use crate::digest::{IdMap, ObjectId};
use crate::error::Result;

/// The refs that name images, as a range of the `refs` primary key (`/` + 1 is `0`).
const NAMED: &str = "SELECT DISTINCT i.id FROM refs r JOIN images i ON i.manifest_digest = r.target
                     WHERE r.name >= 'image/' AND r.name < 'image0'";

/// Distinct stored content of one image, by its `images.id`, with its users.
const IMAGE_OBJECTS: &str = "SELECT DISTINCT e.object, e.size, o.users, o.user_sum
     FROM image_layers il JOIN layers l ON l.diff_id = il.diff_id JOIN entries e ON e.layer = l.id
     JOIN objects o ON o.id = e.object
     WHERE il.image = ?1 AND e.kind = 0";

/// One image's figures: (exclusive bytes, shared bytes).
pub(crate) type Usage = (u64, u64);

/// The images `image/` refs name, by `images.id`.
fn named(conn: &Connection) -> Result<BTreeSet<i64>> {
    let mut stmt = conn.prepare_cached(NAMED)?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// The images the summary tracks.
fn tracked(conn: &Connection) -> Result<BTreeSet<i64>> {
    let mut stmt = conn.prepare_cached("SELECT image FROM image_usage")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// One stored content of an image: its size and its `(users, user_sum)` when read.
struct Held {
    id: ObjectId,
    size: i64,
    users: i64,
    user_sum: i64,
}

/// The distinct stored objects of an image, in key order: `objects` is keyed by blake3, so
/// updating its rows in order touches each leaf page once, where the entries' order would
/// spread the image's updates over the whole table again and again.
fn image_objects(conn: &Connection, image: i64) -> Result<Vec<Held>> {
    let mut stmt = conn.prepare_cached(IMAGE_OBJECTS)?;
    let mut rows = stmt.query([image])?;
    let mut seen: IdMap<()> = IdMap::default();
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(0)?
            && let Some(id) = ObjectId::from_slice(b)
            && seen.insert(id, ()).is_none()
        {
            out.push(Held {
                id,
                size: r.get(1)?,
                users: r.get(2)?,
                user_sum: r.get(3)?,
            });
        }
    }
    out.sort_unstable_by_key(|o| o.id);
    Ok(out)
}

/// Moves of bytes between exclusive and shared, per image: (exclusive delta, shared delta).
type Deltas = HashMap<i64, (i64, i64)>;

fn apply(conn: &Connection, deltas: &Deltas) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE image_usage SET exclusive_bytes = exclusive_bytes + ?2,
                                shared_bytes = shared_bytes + ?3 WHERE image = ?1",
    )?;
    for (image, (e, s)) in deltas {
        stmt.execute(params![image, e, s])?;
    }
    Ok(())
}

/// Set an object's users to `users` and their sum to `user_sum`.
const SET_USERS: &str = "UPDATE objects SET users = ?2, user_sum = ?3 WHERE id = ?1";

/// Start tracking `image`: it has become named.
fn add(conn: &Connection, image: i64) -> Result<()> {
    let mut set = conn.prepare_cached(SET_USERS)?;
    let (mut exclusive, mut shared) = (0i64, 0i64);
    let mut deltas = Deltas::new();
    for o in image_objects(conn, image)? {
        if o.users == 0 {
            exclusive += o.size;
        } else {
            if o.users == 1 {
                let d = deltas.entry(o.user_sum).or_default();
                d.0 -= o.size;
                d.1 += o.size;
            }
            shared += o.size;
        }
        set.execute(params![
            &o.id.as_bytes()[..],
            o.users + 1,
            o.user_sum + image
        ])?;
    }
    apply(conn, &deltas)?;
    conn.prepare_cached(
        "INSERT INTO image_usage (image, exclusive_bytes, shared_bytes) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![image, exclusive, shared])?;
    Ok(())
}

/// Stop tracking `image`: no ref names it any more (its rows may be gone: gc deletes them
/// only after they are unnamed, so they are still there when this runs).
fn remove(conn: &Connection, image: i64) -> Result<()> {
    let mut set = conn.prepare_cached(SET_USERS)?;
    let mut deltas = Deltas::new();
    for o in image_objects(conn, image)? {
        if o.users == 0 {
            continue;
        }
        if o.users == 2 {
            let d = deltas.entry(o.user_sum - image).or_default();
            d.0 += o.size;
            d.1 -= o.size;
        }
        let (users, sum) = if o.users == 1 {
            (0, 0)
        } else {
            (o.users - 1, o.user_sum - image)
        };
        set.execute(params![&o.id.as_bytes()[..], users, sum])?;
    }
    conn.prepare_cached("DELETE FROM image_usage WHERE image = ?1")?
        .execute([image])?;
    apply(conn, &deltas)?;
    Ok(())
}

/// Bring the summary up to date with the refs, inside the caller's transaction. Cheap when
/// nothing changed (two small reads); each image that became named or unnamed costs its own
/// distinct objects.
pub(crate) fn sync(conn: &Connection) -> Result<()> {
    let (named, tracked) = (named(conn)?, tracked(conn)?);
    for gone in tracked.difference(&named) {
        remove(conn, *gone)?;
    }
    for new in named.difference(&tracked) {
        add(conn, *new)?;
    }
    Ok(())
}

/// The summary, by `images.id`, if it tracks exactly the named images (else `None`: count
/// with [`recompute`]).
pub(crate) fn recorded(conn: &Connection) -> Result<Option<BTreeMap<i64, Usage>>> {
    if named(conn)? != tracked(conn)? {
        return Ok(None);
    }
    let mut stmt =
        conn.prepare_cached("SELECT image, exclusive_bytes, shared_bytes FROM image_usage")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                (r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64),
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(rows))
}

/// The figures counted from the entries of every named image (what the summary must equal).
pub(crate) fn recompute(conn: &Connection) -> Result<BTreeMap<i64, Usage>> {
    let named = named(conn)?;
    let mut per_image = BTreeMap::new();
    let mut users: IdMap<u32> = IdMap::default();
    for image in &named {
        let objects = image_objects(conn, *image)?;
        for o in &objects {
            *users.entry(o.id).or_default() += 1;
        }
        per_image.insert(*image, objects);
    }
    Ok(per_image
        .into_iter()
        .map(|(image, objects)| {
            let (mut exclusive, mut shared) = (0u64, 0u64);
            for o in objects {
                if users[&o.id] > 1 {
                    shared += o.size as u64;
                } else {
                    exclusive += o.size as u64;
                }
            }
            (image, (exclusive, shared))
        })
        .collect())
}

/// How many images' figures and objects' user counts the summary has wrong (fsck): 0 when it
/// tracks exactly the named images and every row equals what the entries say.
pub(crate) fn differences(conn: &Connection) -> Result<u64> {
    let named = named(conn)?;
    let mut wrong = named.symmetric_difference(&tracked(conn)?).count() as u64;
    let mut stmt =
        conn.prepare_cached("SELECT image, exclusive_bytes, shared_bytes FROM image_usage")?;
    let recorded: BTreeMap<i64, Usage> = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                (r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64),
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (image, usage) in recompute(conn)? {
        if recorded.get(&image).is_some_and(|r| *r != usage) {
            wrong += 1;
        }
    }
    // Each object's users and their sum, counted.
    let mut counted: IdMap<(i64, i64)> = IdMap::default();
    for image in &named {
        for o in image_objects(conn, *image)? {
            let c = counted.entry(o.id).or_default();
            c.0 += 1;
            c.1 += image;
        }
    }
    let mut rows =
        conn.prepare_cached("SELECT id, users, user_sum FROM objects WHERE users != 0")?;
    let mut rows = rows.query([])?;
    let mut seen = 0usize;
    while let Some(r) = rows.next()? {
        let id = match r.get_ref(0)? {
            rusqlite::types::ValueRef::Blob(b) => ObjectId::from_slice(b),
            _ => None,
        };
        match id.and_then(|id| counted.get(&id)) {
            Some(c) if *c == (r.get(1)?, r.get(2)?) => seen += 1,
            _ => wrong += 1,
        }
    }
    wrong += (counted.len() - seen.min(counted.len())) as u64;
    Ok(wrong)
}

/// Build the summary again from the entries (fsck --repair, and when an object a named image
/// has loses or regains its row).
pub(crate) fn rebuild(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "DELETE FROM image_usage; UPDATE objects SET users = 0, user_sum = 0 WHERE users != 0;",
    )?;
    sync(conn)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::refs::RefName;
    use crate::store::{Store, StoreOptions};

    /// A layer row with one regular-file entry per content (inline objects named by their
    /// content, sized by it), and an image row listing the given layers.
    fn add_image(s: &Store, n: usize, layers: &[Vec<u8>]) -> String {
        let conn = s.conn();
        let digest = format!("sha256:{:064x}", n);
        conn.execute(
            "INSERT INTO images (manifest_digest, manifest_media_type, manifest, config_digest,
                                 config, imported_at) VALUES (?1, 'm', x'', ?1, x'', 0)",
            [&digest],
        )
        .unwrap();
        let image = conn.last_insert_rowid();
        for (idx, contents) in layers.iter().enumerate() {
            let diff_id = format!("sha256:{:032x}{:032x}", n, idx);
            conn.execute(
                "INSERT INTO layers (diff_id, tar_size, entry_count, content_size, skeleton,
                                     imported_at) VALUES (?1, 0, 0, 0, x'', 0)",
                [&diff_id],
            )
            .unwrap();
            let layer = conn.last_insert_rowid();
            let mut seq = 0i64;
            for c in contents {
                // Content `c` (a small number) as an inline object of c * 100 + 1 bytes; every
                // third one twice in its layer (a hard link's twin), which counts once.
                let content = vec![*c; *c as usize * 100 + 1];
                let id = ObjectId::of(&content);
                if conn
                    .query_row(
                        "SELECT 1 FROM objects WHERE id = ?1",
                        [&id.as_bytes()[..]],
                        |_| Ok(()),
                    )
                    .is_err()
                {
                    conn.execute("INSERT INTO inline_contents (data) VALUES (?1)", [&content])
                        .unwrap();
                    conn.execute(
                        "INSERT INTO objects (id, size, loose, content) VALUES (?1, ?2, 0, ?3)",
                        params![
                            &id.as_bytes()[..],
                            content.len() as i64,
                            conn.last_insert_rowid()
                        ],
                    )
                    .unwrap();
                }
                for _ in 0..=usize::from(*c % 3 == 0) {
                    conn.execute(
                        "INSERT INTO entries (layer, seq, path, kind, mode, uid, gid, mtime,
                             mtime_nsec, size, object, dev_major, dev_minor)
                         VALUES (?1, ?2, x'', 0, 420, 0, 0, 0, 0, ?3, ?4, 0, 0)",
                        params![layer, seq, *c as i64 * 100 + 1, &id.as_bytes()[..]],
                    )
                    .unwrap();
                    seq += 1;
                }
            }
            conn.execute(
                "INSERT INTO image_layers (image, idx, diff_id, blob_digest, media_type,
                                           blob_size) VALUES (?1, ?2, ?3, ?3, 'l', 0)",
                params![image, idx as i64, diff_id],
            )
            .unwrap();
        }
        digest
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Publish image n (if new) with these layers and name it `name`.
        Import(usize, Vec<Vec<u8>>, u8),
        /// Name image n (if stored) `name` too.
        Tag(usize, u8),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        let contents = proptest::collection::vec(0u8..12, 0..6);
        prop_oneof![
            3 => (0usize..6, proptest::collection::vec(contents, 1..3), 0u8..5)
                .prop_map(|(n, l, t)| Op::Import(n, l, t)),
            1 => (0usize..6, 0u8..5).prop_map(|(n, t)| Op::Tag(n, t)),
            2 => (0u8..5).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever sequence of publishes, tags and removals, the summary equals what the
        /// entries say after each step, and df reads it rather than counting.
        #[test]
        fn the_usage_summary_equals_the_recount(ops in proptest::collection::vec(op(), 1..16)) {
            let tmp = tempfile::tempdir().unwrap();
            let s = Store::init(&tmp.path().join("s"), &StoreOptions::default()).unwrap();
            let mut stored = std::collections::HashMap::new();
            for op in ops {
                match op {
                    Op::Import(n, layers, t) => {
                        let d = match stored.get(&n) {
                            Some(d) => String::clone(d),
                            None => add_image(&s, n, &layers),
                        };
                        stored.insert(n, d.clone());
                        s.set_refs(&[(RefName::image(&format!("t{t}")).unwrap(), d)]).unwrap();
                    }
                    Op::Tag(n, t) => {
                        if let Some(d) = stored.get(&n) {
                            s.set_refs(&[(RefName::image(&format!("t{t}")).unwrap(), d.clone())])
                                .unwrap();
                        }
                    }
                    Op::Remove(t) => {
                        let _ = s.remove_refs(&[RefName::image(&format!("t{t}")).unwrap()]);
                    }
                }
                let conn = s.conn();
                prop_assert_eq!(recorded(&conn).unwrap(), Some(recompute(&conn).unwrap()));
                prop_assert_eq!(differences(&conn).unwrap(), 0);
            }
        }
    }

    /// A summary that drifted from the entries is a finding of fsck, and --repair rebuilds it.
    #[test]
    fn fsck_finds_and_repairs_a_wrong_usage_summary() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::init(&tmp.path().join("s"), &StoreOptions::default()).unwrap();
        let d = add_image(&s, 1, &[vec![1, 2, 3]]);
        s.set_refs(&[(RefName::image("a").unwrap(), d)]).unwrap();
        s.conn()
            .execute("UPDATE image_usage SET exclusive_bytes = 7", [])
            .unwrap();
        let rep = s.fsck(&Default::default()).unwrap();
        assert!(
            rep.findings
                .iter()
                .any(|f| matches!(f, crate::fsck::Finding::UsageSummary { .. })),
            "{:?}",
            rep.findings
        );
        let repair = crate::fsck::FsckOptions { repair: true };
        s.fsck(&repair).unwrap();
        assert_eq!(differences(&s.conn()).unwrap(), 0);
        assert_eq!(
            recorded(&s.conn()).unwrap().unwrap()[&1],
            (101 + 201 + 301, 0)
        );
    }
}
