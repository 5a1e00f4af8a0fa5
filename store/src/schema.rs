//! The index schema; `store/schema.sql` states the current one (a test holds it to the
//! migrations). Migrations are append-only and tracked by `PRAGMA user_version`; all pending
//! ones run in one transaction.

use rusqlite::Connection;

use crate::error::{Error, Result};

const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    -- (Migration 4 moves the inline contents to their own table.) A rowid table: inline
    -- contents pack densely in its pages (a WITHOUT ROWID table keyed by
    -- a random hash would split pages and spill every kilobyte-sized row to overflow pages).
    CREATE TABLE objects (
        id BLOB NOT NULL UNIQUE,    -- blake3 of the content
        size INTEGER NOT NULL,
        loose INTEGER NOT NULL,     -- 1: a loose file; 0: the content is `inline`
        inline BLOB                 -- the content for small objects
    );
    -- Covers df's totals and gc's loose-file queries without reading the inline contents.
    CREATE INDEX objects_loose_size ON objects(loose, size, id);

    -- Imported layers are keyed by diff_id. Merged trees (the flattened tree of an image, pinned
    -- by a merged/ ref while a disk is generated) are stored the same way, keyed
    -- `merged:MANIFEST-DIGEST`, with merged = 1 and an empty skeleton.
    CREATE TABLE layers (
        id INTEGER PRIMARY KEY,
        diff_id TEXT NOT NULL UNIQUE,
        merged INTEGER NOT NULL DEFAULT 0,
        tar_size INTEGER NOT NULL,
        entry_count INTEGER NOT NULL,
        content_size INTEGER NOT NULL,
        skeleton BLOB NOT NULL,     -- zstd tar skeleton, see skeleton.rs
        imported_at INTEGER NOT NULL
    );

    CREATE TABLE entries (
        layer INTEGER NOT NULL REFERENCES layers(id),
        seq INTEGER NOT NULL,
        path BLOB NOT NULL,
        kind INTEGER NOT NULL,
        mode INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        gid INTEGER NOT NULL,
        mtime INTEGER NOT NULL,
        mtime_nsec INTEGER NOT NULL,
        size INTEGER NOT NULL,
        object BLOB,
        link BLOB,
        dev_major INTEGER NOT NULL,
        dev_minor INTEGER NOT NULL,
        xattrs BLOB,
        PRIMARY KEY (layer, seq)
    ) WITHOUT ROWID;

    CREATE TABLE layer_blobs (
        digest TEXT PRIMARY KEY,    -- compressed blob digest
        diff_id TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        manifest_digest TEXT NOT NULL UNIQUE,
        manifest_media_type TEXT NOT NULL,
        manifest BLOB NOT NULL,
        config_digest TEXT NOT NULL,
        config BLOB NOT NULL,
        created TEXT,
        imported_at INTEGER NOT NULL
    );

    CREATE TABLE image_layers (
        image INTEGER NOT NULL REFERENCES images(id),
        idx INTEGER NOT NULL,
        diff_id TEXT NOT NULL,
        blob_digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        blob_size INTEGER NOT NULL,
        PRIMARY KEY (image, idx)
    ) WITHOUT ROWID;
    CREATE INDEX image_layers_diff_id ON image_layers(diff_id);
    CREATE INDEX image_layers_blob ON image_layers(blob_digest);

    CREATE TABLE refs (
        name TEXT PRIMARY KEY,      -- kind/rest, e.g. image/app:v1 or layer/sha256:…
        target TEXT NOT NULL,       -- a manifest digest or a diff_id
        created INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE leases (
        id TEXT PRIMARY KEY,        -- also the name of the staging directory
        pid INTEGER NOT NULL,
        boot_id TEXT NOT NULL,
        start_time INTEGER NOT NULL, -- process start time in clock ticks since boot
        created INTEGER NOT NULL,
        what TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 2: compressed objects.
    r#"
    -- 1: the loose file or the inline blob is one zstd frame of the content.
    ALTER TABLE objects ADD COLUMN zstd INTEGER NOT NULL DEFAULT 0;
    -- Bytes stored: the loose file's or inline blob's length (NULL: `size`).
    ALTER TABLE objects ADD COLUMN stored INTEGER;
    DROP INDEX objects_loose_size;
    CREATE INDEX objects_loose_size ON objects(loose, size, stored, zstd, id);
    "#,
    // 3: pins. An import in flight no longer holds the store lock from start to end; it pins
    // every loose object it writes or finds present, and every stored layer it builds on, and gc
    // spares what a live lease pins. `counters.sweeps` counts the gc sweeps that removed files,
    // so an import can tell whether a file it found may have gone before its pin was recorded.
    r#"
    CREATE TABLE lease_objects (
        id BLOB NOT NULL,
        lease TEXT NOT NULL,
        PRIMARY KEY (id, lease)
    ) WITHOUT ROWID;
    CREATE INDEX lease_objects_lease ON lease_objects(lease);
    CREATE TABLE lease_layers (
        diff_id TEXT NOT NULL,
        lease TEXT NOT NULL,
        PRIMARY KEY (diff_id, lease)
    ) WITHOUT ROWID;
    CREATE INDEX lease_layers_lease ON lease_layers(lease);
    -- A layer an import is reading: a second import of the same layer waits for it instead of
    -- reading it too (unless the claimer itself waits, which could be a cycle).
    CREATE TABLE layer_claims (
        diff_id TEXT PRIMARY KEY,
        lease TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX layer_claims_lease ON layer_claims(lease);
    ALTER TABLE leases ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO counters (name, value) VALUES ('sweeps', 0);
    -- Object totals for df, kept by publish, gc and fsck --repair (df read 100,000 index
    -- entries for them); fsck checks them against the rows.
    INSERT INTO counters (name, value) SELECT 'objects', count(*) FROM objects;
    INSERT INTO counters (name, value) SELECT 'object_bytes', COALESCE(sum(size), 0) FROM objects;
    INSERT INTO counters (name, value) SELECT 'loose_objects', COALESCE(sum(loose), 0) FROM objects;
    INSERT INTO counters (name, value)
        SELECT 'loose_bytes', COALESCE(sum(loose * COALESCE(stored, size)), 0) FROM objects;
    "#,
    // 4: inline contents move to a table of their own. `objects` becomes a small table keyed by
    // id (one b-tree, no covering index), so gc's mark scans 6 MB instead of 150 MB per 100,000
    // objects and its sweep deletes small rows; the contents of dead inline objects are
    // deleted by rowid, mostly whole pages, as they were written in import order.
    r#"
    CREATE TABLE inline_contents (
        id INTEGER PRIMARY KEY,
        data BLOB NOT NULL          -- the content, or its zstd frame (objects.zstd)
    );
    INSERT INTO inline_contents (id, data)
        SELECT rowid, inline FROM objects WHERE loose = 0 AND inline IS NOT NULL;
    CREATE TABLE objects_v4 (
        id BLOB PRIMARY KEY,        -- blake3 of the content
        size INTEGER NOT NULL,
        loose INTEGER NOT NULL,     -- 1: a loose file; 0: inline_contents row `content`
        zstd INTEGER NOT NULL DEFAULT 0,
        stored INTEGER,             -- bytes stored, where not `size`
        content INTEGER             -- inline_contents.id of an inline object
    ) WITHOUT ROWID;
    INSERT INTO objects_v4 (id, size, loose, zstd, stored, content)
        SELECT id, size, loose, zstd, stored,
               CASE WHEN loose = 0 AND inline IS NOT NULL THEN rowid END
        FROM objects;
    DROP TABLE objects;
    ALTER TABLE objects_v4 RENAME TO objects;
    "#,
    // 5: damaged layers (heal.rs). fsck --repair removes a corrupt object (its file and row) and
    // records here each layer whose entries name it: the next import of an image with such a
    // layer reads it again, and reads of it fail naming what to re-import. A layer is damaged
    // while any of its rows remains; publishing the object again clears them.
    r#"
    CREATE TABLE damaged_layers (
        diff_id TEXT NOT NULL,
        object BLOB NOT NULL,       -- the removed object the layer needs
        found INTEGER NOT NULL,     -- when fsck removed it
        PRIMARY KEY (diff_id, object)
    ) WITHOUT ROWID;
    "#,
    // 6: labels and bindings (roots.rs). An image's labels: those of its config (local = 0,
    // filled when the image row is written, so `images --filter label=…` and `latest` need not
    // parse every config) and local ones `import --label` gave (local = 1), which change
    // nothing in the image's digest. They go with the image row. A root's bound images: the
    // `bound/ROOT/DIGEST` ref keeps the image; this row remembers the reference it was bound
    // as (`HOST/REPO@sha256:…`), and goes with the ref.
    r#"
    CREATE TABLE image_labels (
        image INTEGER NOT NULL REFERENCES images(id),
        local INTEGER NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (image, local, key)
    ) WITHOUT ROWID;
    CREATE INDEX image_labels_key ON image_labels(key, value);
    INSERT OR IGNORE INTO image_labels (image, local, key, value)
        SELECT i.id, 0, j.key, CAST(j.value AS TEXT)
        FROM images i, json_each(CAST(i.config AS TEXT), '$.config.Labels') j;
    CREATE TABLE bindings (
        root TEXT NOT NULL,         -- the root's name (without root/)
        image TEXT NOT NULL,        -- manifest digest
        reference TEXT NOT NULL,    -- as bound: HOST/REPO@sha256:… (or the tag it resolved)
        PRIMARY KEY (root, image)
    ) WITHOUT ROWID;
    "#,
    // 7 (registry): where an image came from, `docker://HOST/REPO:TAG` or the source spec as
    // given; the last import of the image sets it. NULL for images imported before.
    r#"
    ALTER TABLE images ADD COLUMN origin TEXT;
    "#,
    // 8 (registry): the blob info cache, see blob_cache.rs.
    r#"
    CREATE TABLE blob_locations (
        digest TEXT NOT NULL,       -- compressed blob digest
        location TEXT NOT NULL,     -- HOST[:PORT]/REPO it was seen in
        seen INTEGER NOT NULL,
        PRIMARY KEY (digest, location)
    ) WITHOUT ROWID;
    "#,
    // 9 (registry): prepared updates, see prepared.rs.
    r#"
    CREATE TABLE prepared_updates (
        name TEXT PRIMARY KEY,      -- the image name it updates
        manifest_digest TEXT NOT NULL,
        manifest_media_type TEXT NOT NULL,
        manifest BLOB NOT NULL,
        config_digest TEXT NOT NULL,
        config BLOB NOT NULL,
        source TEXT NOT NULL,
        checked INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 10 (bind): images a lease pins by manifest digest, whole, from before they are stored
    // (bind pins each image it is about to pull until its binding is recorded).
    r#"
    CREATE TABLE lease_images (
        digest TEXT NOT NULL,       -- manifest digest
        lease TEXT NOT NULL,
        PRIMARY KEY (digest, lease)
    ) WITHOUT ROWID;
    CREATE INDEX lease_images_lease ON lease_images(lease);
    "#,
    // 11 (partial pulls): the sha256 of stored contents, see content_sha256.rs. Rows are facts
    // about contents and may outlive their objects; lookups join objects.
    r#"
    CREATE TABLE object_sha256 (
        object BLOB PRIMARY KEY,    -- objects.id (blake3 of the content)
        sha256 BLOB NOT NULL        -- sha256 of the same content, 32 raw bytes
    ) WITHOUT ROWID;
    CREATE INDEX object_sha256_sha256 ON object_sha256(sha256);
    "#,
    // 12 (scale): the per-image usage summary df reads (df/usage.rs), kept up to date by every
    // transaction that changes image refs, so df costs a few rows at any store size. Filled
    // here for the images stores already name, as df/usage.rs's sync would.
    r#"
    CREATE TABLE image_usage (
        image INTEGER PRIMARY KEY,  -- images.id of an image an image/ ref names
        exclusive_bytes INTEGER NOT NULL,
        shared_bytes INTEGER NOT NULL
    );
    CREATE TABLE object_users (
        id BLOB PRIMARY KEY,        -- an object the named images have
        size INTEGER NOT NULL,
        users INTEGER NOT NULL,     -- how many named images have it
        user_sum INTEGER NOT NULL   -- the sum of their images.id (with one user, that user)
    ) WITHOUT ROWID;
    CREATE TEMP TABLE usage_pairs AS
        SELECT DISTINCT il.image AS image, e.object AS object, e.size AS size
        FROM image_layers il JOIN layers l ON l.diff_id = il.diff_id
        JOIN entries e ON e.layer = l.id
        WHERE e.kind = 0 AND e.object IS NOT NULL
          AND il.image IN (SELECT i.id FROM refs r JOIN images i ON i.manifest_digest = r.target
                           WHERE r.name >= 'image/' AND r.name < 'image0');
    INSERT INTO object_users (id, size, users, user_sum)
        SELECT object, max(size), count(*), sum(image) FROM usage_pairs GROUP BY object;
    INSERT INTO image_usage (image, exclusive_bytes, shared_bytes)
        SELECT i.id,
               COALESCE((SELECT sum(p.size) FROM usage_pairs p JOIN object_users o
                         ON o.id = p.object WHERE p.image = i.id AND o.users = 1), 0),
               COALESCE((SELECT sum(p.size) FROM usage_pairs p JOIN object_users o
                         ON o.id = p.object WHERE p.image = i.id AND o.users > 1), 0)
        FROM images i
        WHERE i.id IN (SELECT i.id FROM refs r JOIN images i ON i.manifest_digest = r.target
                       WHERE r.name >= 'image/' AND r.name < 'image0');
    DROP TABLE temp.usage_pairs;
    "#,
    // 13 (scale): each object's users move into its `objects` row. An import writes the row of
    // every new object anyway; a second table keyed by the same random blake3 made every import
    // into a large store rewrite most of its leaf pages as well (about a third of the bytes an
    // import wrote at 1,000,000 objects). Should a counted object have no row (fsck --repair
    // removed it), the summary is dropped instead, and the next change of image refs counts it
    // again from the entries.
    r#"
    ALTER TABLE objects ADD COLUMN users INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE objects ADD COLUMN user_sum INTEGER NOT NULL DEFAULT 0;
    CREATE TEMP TABLE m13 AS SELECT EXISTS (
        SELECT 1 FROM object_users u WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.id = u.id)
    ) AS reset;
    UPDATE objects SET users = u.users, user_sum = u.user_sum FROM object_users u
        WHERE u.id = objects.id AND NOT (SELECT reset FROM temp.m13);
    DELETE FROM image_usage WHERE (SELECT reset FROM temp.m13);
    DROP TABLE object_users;
    DROP TABLE temp.m13;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Bring the schema up to date.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version = |c: &Connection| -> Result<u32> {
        let v: u32 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if v > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                found: v,
                known: SCHEMA_VERSION,
            });
        }
        Ok(v)
    };
    if version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    // The version is read again under the write lock: two processes opening an old store at
    // once migrate it once.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let from = version(&tx)?;
    for m in &MIGRATIONS[from as usize..] {
        tx.execute_batch(m)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    // Migration 4 copies every inline content into a new table and frees the old one's pages:
    // give them back to the file system once (a 100,000-object index holds ~150 MB of them).
    if (1..4).contains(&from) {
        conn.execute_batch("VACUUM")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables (with each column's name, type, NOT NULL, default and primary-key position, and
    /// whether it is WITHOUT ROWID) and indexes (with their columns and uniqueness) of `conn`,
    /// one line each, sorted: the structure, without the comments and spacing of the text.
    fn structure(conn: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        let mut objects = conn
            .prepare(
                "SELECT type, name, tbl_name, sql FROM sqlite_master
                 WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap();
        let objects: Vec<(String, String, String, Option<String>)> = objects
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        for (kind, name, table, sql) in objects {
            if kind == "table" {
                let rowid = !sql.unwrap_or_default().contains("WITHOUT ROWID");
                out.push(format!("table {name} rowid={rowid}"));
                let mut cols = conn
                    .prepare(
                        "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)",
                    )
                    .unwrap();
                for c in cols
                    .query_map([&name], |r| {
                        Ok(format!(
                            "  {name}.{} {} notnull={} default={:?} pk={}",
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, bool>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, i64>(4)?
                        ))
                    })
                    .unwrap()
                {
                    out.push(c.unwrap());
                }
            } else if kind == "index" {
                let unique: bool = conn
                    .query_row(
                        "SELECT \"unique\" FROM pragma_index_list(?1) WHERE name = ?2",
                        [&table, &name],
                        |r| r.get(0),
                    )
                    .unwrap();
                let mut cols = conn
                    .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                    .unwrap();
                let cols: Vec<String> = cols
                    .query_map([&name], |r| r.get(0))
                    .unwrap()
                    .map(|r| r.unwrap())
                    .collect();
                out.push(format!(
                    "index {name} on {table}({}) unique={unique}",
                    cols.join(", ")
                ));
            }
        }
        out.sort();
        out
    }

    /// `store/schema.sql` is the one readable statement of the schema; it must say what the
    /// migrations make.
    #[test]
    fn schema_sql_states_the_current_schema() {
        let mut migrated = Connection::open_in_memory().unwrap();
        migrate(&mut migrated).unwrap();
        let stated = Connection::open_in_memory().unwrap();
        stated.execute_batch(include_str!("../schema.sql")).unwrap();
        let (m, s) = (structure(&migrated), structure(&stated));
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter().filter(|l| !b.contains(l)).cloned().collect()
        };
        assert!(
            m == s,
            "store/schema.sql differs from the migrated schema;\nonly migrated:\n{}\nonly in schema.sql:\n{}",
            only(&m, &s).join("\n"),
            only(&s, &m).join("\n")
        );
    }

    #[test]
    fn config_labels_of_images_stored_before_are_indexed() {
        let mut conn = Connection::open_in_memory().unwrap();
        for m in &MIGRATIONS[..5] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        let config = br#"{"config":{"Labels":{"a":"1","org.opencontainers.image.version":"2.0"}}}"#;
        for (id, cfg) in [(1, &config[..]), (2, &b"{}"[..])] {
            conn.execute(
                "INSERT INTO images (id, manifest_digest, manifest_media_type, manifest,
                                     config_digest, config, imported_at)
                 VALUES (?1, ?2, 'm', x'', 'c', ?3, 0)",
                rusqlite::params![id, format!("d{id}"), cfg],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let rows: Vec<(i64, bool, String, String)> = conn
            .prepare("SELECT image, local, key, value FROM image_labels ORDER BY image, key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (1, false, "a".into(), "1".into()),
                (
                    1,
                    false,
                    "org.opencontainers.image.version".into(),
                    "2.0".into()
                ),
            ]
        );
    }

    /// A store from before the usage summary gets it filled from its entries: the named images
    /// (and only they), content shared between two of them, and an unnamed image's content;
    /// and the objects' users then move into their rows (migration 13).
    #[test]
    fn the_usage_summary_of_a_store_from_before_is_filled_from_its_entries() {
        let mut conn = store_from_before_the_usage_summary(&[1, 2, 3, 4]);
        migrate(&mut conn).unwrap();
        // Object 2 is shared by images 1 and 2; 1 is image 1's alone, 3 image 2's (image 3,
        // which has 3 too, is not named).
        assert_eq!(usage_rows(&conn), vec![(1, 10, 20), (2, 30, 20)]);
        let users: Vec<(u8, i64, i64)> = conn
            .prepare("SELECT substr(id, 1, 1), users, user_sum FROM objects ORDER BY id")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?[0], r.get(1)?, r.get(2)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(users, vec![(1, 1, 1), (2, 2, 3), (3, 1, 2), (4, 0, 0)]);
        assert_eq!(crate::df::usage::differences(&conn).unwrap(), 0);
    }

    /// Migration 13 meets content the summary counts but no `objects` row holds (fsck --repair
    /// removed it): it drops the summary, which the next change of image refs counts again.
    #[test]
    fn usage_counted_for_a_removed_object_is_counted_again() {
        let mut conn = store_from_before_the_usage_summary(&[2, 3, 4]);
        migrate(&mut conn).unwrap();
        assert_eq!(usage_rows(&conn), vec![]);
        crate::df::usage::sync(&conn).unwrap();
        // Without object 1, image 1 has only the shared object 2.
        assert_eq!(usage_rows(&conn), vec![(1, 0, 20), (2, 30, 20)]);
        assert_eq!(crate::df::usage::differences(&conn).unwrap(), 0);
    }

    fn usage_rows(conn: &Connection) -> Vec<(i64, i64, i64)> {
        conn.prepare("SELECT image, exclusive_bytes, shared_bytes FROM image_usage ORDER BY image")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// An index at the version before migration 12: images 1 and 2 named, 3 not; layer n holds
    /// objects [n, n + 1] of n * 10 bytes, of which those in `rows` have `objects` rows.
    fn store_from_before_the_usage_summary(rows: &[i64]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        let mine = MIGRATIONS
            .iter()
            .position(|m| m.contains("CREATE TABLE image_usage"))
            .unwrap();
        for m in &MIGRATIONS[..mine] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", mine as u32)
            .unwrap();
        for o in rows {
            conn.execute(
                "INSERT INTO objects (id, size, loose) VALUES (?1, ?2, 1)",
                rusqlite::params![vec![*o as u8; 32], o * 10],
            )
            .unwrap();
        }
        for n in 1..=3i64 {
            conn.execute(
                "INSERT INTO images (id, manifest_digest, manifest_media_type, manifest,
                                     config_digest, config, imported_at)
                 VALUES (?1, ?2, 'm', x'', 'c', x'', 0)",
                rusqlite::params![n, format!("d{n}")],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO layers (id, diff_id, tar_size, entry_count, content_size, skeleton,
                                     imported_at) VALUES (?1, ?2, 0, 0, 0, x'', 0)",
                rusqlite::params![n, format!("l{n}")],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO image_layers (image, idx, diff_id, blob_digest, media_type, blob_size)
                 VALUES (?1, 0, ?2, 'b', 'm', 0)",
                rusqlite::params![n, format!("l{n}")],
            )
            .unwrap();
            for (seq, o) in [n, n + 1].into_iter().enumerate() {
                conn.execute(
                    "INSERT INTO entries (layer, seq, path, kind, mode, uid, gid, mtime,
                         mtime_nsec, size, object, dev_major, dev_minor)
                     VALUES (?1, ?2, x'', 0, 420, 0, 0, 0, 0, ?3, ?4, 0, 0)",
                    rusqlite::params![n, seq as i64, o * 10, vec![o as u8; 32]],
                )
                .unwrap();
            }
        }
        conn.execute_batch(
            "INSERT INTO refs (name, target, created) VALUES ('image/a', 'd1', 0);
             INSERT INTO refs (name, target, created) VALUES ('image/b', 'd2', 0);
             INSERT INTO refs (name, target, created) VALUES ('image/b2', 'd2', 0);
             INSERT INTO refs (name, target, created) VALUES ('layer/l3', 'l3', 0);",
        )
        .unwrap();
        conn
    }

    #[test]
    fn inline_contents_move_out_of_the_objects_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        conn.execute_batch(MIGRATIONS[2]).unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO objects (id, size, loose, inline, zstd, stored) VALUES
                 (x'01', 3, 0, x'616263', 0, NULL),
                 (x'02', 9000, 1, NULL, 1, 4000),
                 (x'03', 40, 0, x'28b52ffd', 1, 4);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        // id, size, loose, zstd, stored, inline content
        type Row = (Vec<u8>, i64, bool, bool, Option<i64>, Option<Vec<u8>>);
        let rows: Vec<Row> = conn
            .prepare(
                "SELECT o.id, o.size, o.loose, o.zstd, o.stored, c.data
                 FROM objects o LEFT JOIN inline_contents c ON c.id = o.content ORDER BY o.id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (vec![1], 3, false, false, None, Some(b"abc".to_vec())),
                (vec![2], 9000, true, true, Some(4000), None),
                (
                    vec![3],
                    40,
                    false,
                    true,
                    Some(4),
                    Some(vec![0x28, 0xb5, 0x2f, 0xfd])
                ),
            ]
        );
        let n: i64 = conn
            .query_row("SELECT count(*) FROM inline_contents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        let free: i64 = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        assert_eq!(free, 0, "the old objects table's pages are given back");
        // A second opener finds nothing to do.
        migrate(&mut conn).unwrap();
    }
}
