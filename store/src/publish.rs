//! Publishing an import: layer rows, object rows, blob mappings and the image row in one
//! transaction, after the objects were made durable by one `syncfs`.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use crate::df::ObjectTotals;
use crate::digest::{Digest, ObjectId};
use crate::error::Result;
use crate::lease::Lease;
use crate::object::{LooseFile, NewObject};
use crate::refs::RefName;
use crate::store::{Store, now};
use crate::tree::TreeEntry;

/// A fully imported layer, ready to publish.
#[derive(Debug)]
pub struct LayerRecord {
    pub diff_id: Digest,
    pub tar_size: u64,
    pub entries: Vec<TreeEntry>,
    pub skeleton: Vec<u8>,
    pub objects: Vec<NewObject>,
}

/// How an image refers to one of its layers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageLayer {
    pub diff_id: Digest,
    pub blob_digest: Digest,
    pub media_type: String,
    pub blob_size: u64,
}

/// An image's manifest and config, ready to publish.
#[derive(Clone, Debug)]
pub struct ImageRecord {
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub manifest: Vec<u8>,
    pub config_digest: Digest,
    pub config: Vec<u8>,
    pub created: Option<String>,
    /// Where the image was imported from (`docker://HOST/REPO:TAG`, or the source spec).
    pub origin: Option<String>,
    pub layers: Vec<ImageLayer>,
}

/// Encode xattrs for the index: per pair, u32 LE name length, name, u32 LE value length, value.
pub(crate) fn encode_xattrs(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Option<Vec<u8>> {
    if xattrs.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for (k, v) in xattrs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    Some(out)
}

/// The inverse of [`encode_xattrs`]; `None` if the bytes are damaged.
pub(crate) fn decode_xattrs(mut b: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let take = |b: &mut &[u8]| -> Option<Vec<u8>> {
        let (len, rest) = b.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (v, rest) = rest.split_at(len);
        *b = rest;
        Some(v.to_vec())
    };
    while !b.is_empty() {
        let k = take(&mut b)?;
        let v = take(&mut b)?;
        out.push((k, v));
    }
    Some(out)
}

impl Store {
    /// Publish an import: pin and place the lease's last objects, make them durable with one
    /// `syncfs`, then record the layers, the image and its refs in one durable
    /// (`synchronous=FULL`) transaction that also ends the lease. Until that commit the lease's
    /// pins keep what the import builds on; from it, the refs do. There is no moment at which
    /// the image is recorded but nothing refers to it, so a gc can never take it half-way.
    pub fn publish(
        &self,
        lease: Lease<'_>,
        layers: &[LayerRecord],
        image: &ImageRecord,
        refs: &[(RefName, String)],
    ) -> Result<()> {
        lease.staging().flush()?;
        let corrections = lease.staging().corrections();
        // Before the rows: a store holding a zero-run skeleton must name the feature.
        if layers
            .iter()
            .any(|l| crate::skeleton::has_zero_runs(&l.skeleton))
        {
            self.require_feature(crate::store::SKELETON_ZERO_RUNS)?;
        }
        self.sync()?;
        self.durable(false, |tx| -> Result<()> {
            for layer in layers {
                insert_layer(tx, layer, &corrections)?;
            }
            insert_image(tx, image)?;
            // Layers fsck marked damaged are whole again once their objects have rows.
            crate::heal::clear_healed(tx)?;
            crate::refs::upsert_refs(tx, refs)?;
            lease.delete_in(tx)
        })?;
        lease.finish()
    }
}

fn insert_layer(
    tx: &Transaction<'_>,
    layer: &LayerRecord,
    corrections: &HashMap<ObjectId, LooseFile>,
) -> Result<()> {
    let mut obj = tx.prepare_cached(
        "INSERT INTO objects (id, size, loose, zstd, stored) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT DO NOTHING",
    )?;
    let mut content = tx.prepare_cached("INSERT INTO inline_contents (data) VALUES (?1)")?;
    let mut link = tx.prepare_cached("UPDATE objects SET content = ?2 WHERE id = ?1")?;
    let mut totals = ObjectTotals::default();
    // In key order: `objects` is keyed by blake3, so the layer's rows then land leaf page after
    // leaf page instead of all over a large index (and its inline contents, in the same order,
    // still fill pages of their own).
    let mut order: Vec<&NewObject> = layer.objects.iter().collect();
    order.sort_unstable_by_key(|o| o.id);
    for o in order {
        let (zstd, stored) = match corrections.get(&o.id) {
            Some(f) if o.inline.is_none() => (f.zstd, f.len),
            _ => (o.zstd, o.stored),
        };
        let id = &o.id.as_bytes()[..];
        let inserted = obj.execute(params![
            id,
            o.size as i64,
            o.inline.is_none(),
            zstd,
            (stored != o.size).then_some(stored as i64),
        ])?;
        if inserted == 1 {
            if let Some(data) = &o.inline {
                content.execute([data])?;
                link.execute(params![id, tx.last_insert_rowid()])?;
            }
            totals += ObjectTotals::row(o.size, o.inline.is_none(), stored);
        }
    }
    totals.add_to(tx)?;
    insert_tree(
        tx,
        &layer.diff_id.to_string(),
        false,
        layer.tar_size,
        &layer.skeleton,
        layer.entries.iter(),
    )
}

/// Insert a layers row and its entries, unless a row with this key exists (imported concurrently
/// by another process, or a merged tree made before; its rows are equivalent).
pub(crate) fn insert_tree<'e>(
    tx: &Transaction<'_>,
    key: &str,
    merged: bool,
    tar_size: u64,
    skeleton: &[u8],
    entries: impl Iterator<Item = &'e TreeEntry> + Clone,
) -> Result<()> {
    let exists: Option<i64> = tx
        .query_row("SELECT id FROM layers WHERE diff_id = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?;
    if exists.is_some() {
        return Ok(());
    }
    let (count, content_size) = entries.clone().fold((0u64, 0u64), |(n, c), e| {
        let c = if e.kind == crate::tree::EntryKind::Regular {
            c + e.size
        } else {
            c
        };
        (n + 1, c)
    });
    tx.execute(
        "INSERT INTO layers (diff_id, merged, tar_size, entry_count, content_size, skeleton, imported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![key, merged, tar_size as i64, count as i64, content_size as i64, skeleton, now()],
    )?;
    let layer_id = tx.last_insert_rowid();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO entries (layer, seq, path, kind, mode, uid, gid, mtime, mtime_nsec, size,
                              object, link, dev_major, dev_minor, xattrs)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?;
    for (seq, e) in entries.enumerate() {
        stmt.execute(params![
            layer_id,
            seq as i64,
            e.path,
            e.kind.code(),
            e.mode,
            e.uid as i64,
            e.gid as i64,
            e.mtime,
            e.mtime_nsec,
            e.size as i64,
            e.object.as_ref().map(|o| &o.as_bytes()[..]),
            e.link,
            e.dev_major,
            e.dev_minor,
            encode_xattrs(&e.xattrs),
        ])?;
    }
    Ok(())
}

fn insert_image(tx: &Transaction<'_>, image: &ImageRecord) -> Result<()> {
    let mut blob = tx.prepare_cached(
        "INSERT INTO layer_blobs (digest, diff_id, media_type, size) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
    )?;
    for l in &image.layers {
        blob.execute(params![
            l.blob_digest.to_string(),
            l.diff_id.to_string(),
            l.media_type,
            l.blob_size as i64
        ])?;
    }
    let digest = image.manifest_digest.to_string();
    let exists: Option<i64> = tx
        .query_row(
            "SELECT id FROM images WHERE manifest_digest = ?1",
            [&digest],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        // The same image imported again, perhaps from elsewhere: the last origin wins.
        if image.origin.is_some() {
            tx.execute(
                "UPDATE images SET origin = ?2 WHERE manifest_digest = ?1",
                params![digest, image.origin],
            )?;
        }
        return Ok(());
    }
    tx.execute(
        "INSERT INTO images (manifest_digest, manifest_media_type, manifest, config_digest, config,
                             created, imported_at, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            digest,
            image.manifest_media_type,
            image.manifest,
            image.config_digest.to_string(),
            image.config,
            image.created,
            now(),
            image.origin
        ],
    )?;
    let id = tx.last_insert_rowid();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO image_layers (image, idx, diff_id, blob_digest, media_type, blob_size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (i, l) in image.layers.iter().enumerate() {
        stmt.execute(params![
            id,
            i as i64,
            l.diff_id.to_string(),
            l.blob_digest.to_string(),
            l.media_type,
            l.blob_size as i64
        ])?;
    }
    crate::labels::index_config_labels(tx, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_round_trip() {
        let x = vec![
            (b"security.capability".to_vec(), vec![1, 0, 0, 2]),
            (b"user.a".to_vec(), Vec::new()),
        ];
        assert_eq!(decode_xattrs(&encode_xattrs(&x).unwrap()).unwrap(), x);
        assert!(encode_xattrs(&[]).is_none());
        assert!(decode_xattrs(&[5, 0, 0, 0, 1]).is_none());
    }
}
