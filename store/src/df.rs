//! Space accounting, computed from the index alone (never by walking trees).

use serde::Serialize;

use crate::digest::Digest;
use crate::error::Result;
use crate::store::Store;

/// Per-image usage.
#[derive(Clone, Debug, Serialize)]
pub struct ImageUsage {
    pub name: String,
    pub manifest_digest: Digest,
    /// Regular file content of all its layers, duplicates counted.
    pub logical_bytes: u64,
    /// Distinct content only this image needs (freed if it alone were removed).
    pub exclusive_bytes: u64,
    /// Distinct content it shares with other images.
    pub shared_bytes: u64,
}

/// What `df` reports.
#[derive(Clone, Debug, Serialize)]
pub struct DfReport {
    pub images: Vec<ImageUsage>,
    /// Sum of the images' logical bytes.
    pub logical_bytes: u64,
    /// Loose object files plus the index (which holds the inline objects).
    pub stored_bytes: u64,
    /// Distinct content bytes, loose and inline.
    pub object_bytes: u64,
    pub loose_bytes: u64,
    pub objects: u64,
    pub loose_objects: u64,
    pub inline_objects: u64,
    pub index_bytes: u64,
    pub layers: u64,
    /// logical_bytes / object_bytes.
    pub dedup_ratio: f64,
}

impl Store {
    /// Compute the space report.
    pub fn df(&self) -> Result<DfReport> {
        let images = self.images()?;
        let conn = self.conn();
        let (objects, object_bytes, loose_objects, loose_bytes): (i64, i64, i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COUNT(*) - COUNT(inline),
                    COALESCE(SUM(CASE WHEN inline IS NULL THEN size END), 0)
             FROM objects",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
        let layers: i64 =
            conn.query_row("SELECT COUNT(*) FROM layers WHERE merged = 0", [], |r| {
                r.get(0)
            })?;
        // Distinct objects per referenced image, then how many images use each object.
        let mut stmt = conn.prepare(
            "WITH live AS (
                 SELECT DISTINCT i.id AS image FROM images i
                 JOIN refs r ON r.target = i.manifest_digest AND r.name LIKE 'image/%'),
             img_obj AS (
                 SELECT DISTINCT il.image, e.object FROM image_layers il
                 JOIN live ON live.image = il.image
                 JOIN layers l ON l.diff_id = il.diff_id
                 JOIN entries e ON e.layer = l.id
                 WHERE e.object IS NOT NULL AND e.kind = 0),
             users AS (SELECT object, COUNT(*) AS n FROM img_obj GROUP BY object)
             SELECT io.image,
                    COALESCE(SUM(CASE WHEN u.n = 1 THEN o.size END), 0),
                    COALESCE(SUM(CASE WHEN u.n > 1 THEN o.size END), 0)
             FROM img_obj io JOIN users u ON u.object = io.object JOIN objects o ON o.id = io.object
             GROUP BY io.image",
        )?;
        let mut per_image = std::collections::HashMap::new();
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })? {
            let (id, excl, shared) = row?;
            per_image.insert(id, (excl, shared));
        }
        drop(stmt);
        drop(conn);
        let mut out = Vec::new();
        let mut logical_bytes = 0;
        let mut counted = std::collections::HashSet::new();
        for (name, info) in images {
            let (exclusive_bytes, shared_bytes) =
                per_image.get(&info.id).copied().unwrap_or((0, 0));
            if counted.insert(info.id) {
                logical_bytes += info.logical_size;
            }
            out.push(ImageUsage {
                name,
                manifest_digest: info.manifest_digest,
                logical_bytes: info.logical_size,
                exclusive_bytes,
                shared_bytes,
            });
        }
        let index_bytes = ["index.sqlite", "index.sqlite-wal"]
            .iter()
            .filter_map(|n| self.root.symlink_metadata(n).ok())
            .map(|m| m.len())
            .sum::<u64>();
        let object_bytes = object_bytes as u64;
        Ok(DfReport {
            images: out,
            logical_bytes,
            stored_bytes: loose_bytes as u64 + index_bytes,
            object_bytes,
            loose_bytes: loose_bytes as u64,
            objects: objects as u64,
            loose_objects: loose_objects as u64,
            inline_objects: (objects - loose_objects) as u64,
            index_bytes,
            layers: layers as u64,
            dedup_ratio: if object_bytes == 0 {
                1.0
            } else {
                logical_bytes as f64 / object_bytes as f64
            },
        })
    }
}
