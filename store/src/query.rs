//! Reading images and layers back from the index.

use std::io::Write;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::digest::{Digest, ObjectId};
use crate::error::{Error, Result};
use crate::publish::{ImageLayer, decode_xattrs};
use crate::refs::{RefKind, RefName};
use crate::skeleton::Skeleton;
use crate::store::Store;
use crate::tree::{EntryKind, TreeEntry};

/// An image as stored, with its layers.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    /// The image ref names pointing at it (without `image/`).
    pub names: Vec<String>,
    #[serde(skip)]
    pub id: i64,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config_digest: Digest,
    pub created: Option<String>,
    /// Where it was imported from (`docker://HOST/REPO:TAG`, or the source spec); `None` for
    /// images imported before origins were recorded.
    pub origin: Option<String>,
    pub layers: Vec<ImageLayer>,
    /// Sum of the regular file contents of all layers.
    pub logical_size: u64,
    /// Sum of the uncompressed layer tars.
    pub tar_size: u64,
}

/// A layer as stored.
#[derive(Clone, Debug, Serialize)]
pub struct LayerInfo {
    pub diff_id: Digest,
    pub tar_size: u64,
    pub entry_count: u64,
    pub content_size: u64,
}

fn parse_digest(s: String) -> rusqlite::Result<Digest> {
    s.parse().map_err(|e: Error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

impl Store {
    /// Find an image by ref name (`NAME` or `image/NAME`) or by manifest digest.
    pub fn resolve_image(&self, spec: &str) -> Result<ImageInfo> {
        let digest = if spec.starts_with("sha256:") {
            spec.parse::<Digest>()?
        } else {
            let name = spec.strip_prefix("image/").unwrap_or(spec);
            let r = RefName::image(name)?;
            let target = self
                .ref_target(&r)?
                .ok_or_else(|| Error::ImageNotFound { name: name.into() })?;
            target.parse()?
        };
        self.image_by_digest(&digest)?
            .ok_or_else(|| Error::ImageNotFound { name: spec.into() })
    }

    /// An image row by manifest digest.
    pub fn image_by_digest(&self, digest: &Digest) -> Result<Option<ImageInfo>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, manifest_media_type, config_digest, created, origin FROM images
                 WHERE manifest_digest = ?1",
                [digest.to_string()],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        parse_digest(r.get(2)?)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, media_type, config_digest, created, origin)) = row else {
            return Ok(None);
        };
        let mut stmt = conn.prepare_cached(
            "SELECT il.diff_id, il.blob_digest, il.media_type, il.blob_size,
                    COALESCE(l.content_size, 0), COALESCE(l.tar_size, 0)
             FROM image_layers il LEFT JOIN layers l ON l.diff_id = il.diff_id
             WHERE il.image = ?1 ORDER BY il.idx",
        )?;
        let mut layers = Vec::new();
        let (mut logical_size, mut tar_size) = (0u64, 0u64);
        for row in stmt.query_map([id], |r| {
            Ok((
                ImageLayer {
                    diff_id: parse_digest(r.get(0)?)?,
                    blob_digest: parse_digest(r.get(1)?)?,
                    media_type: r.get(2)?,
                    blob_size: r.get::<_, i64>(3)? as u64,
                },
                r.get::<_, i64>(4)? as u64,
                r.get::<_, i64>(5)? as u64,
            ))
        })? {
            let (l, content, tar) = row?;
            logical_size += content;
            tar_size += tar;
            layers.push(l);
        }
        let mut names = Vec::new();
        let mut stmt = conn.prepare_cached(
            "SELECT name FROM refs WHERE target = ?1 AND name LIKE ?2 ORDER BY name",
        )?;
        for n in stmt.query_map([digest.to_string(), RefKind::Image.like_pattern()], |r| {
            r.get::<_, String>(0)
        })? {
            names.push(n?.parse::<RefName>()?.name().to_string());
        }
        Ok(Some(ImageInfo {
            names,
            id,
            manifest_digest: *digest,
            manifest_media_type: media_type,
            config_digest,
            created,
            origin,
            layers,
            logical_size,
            tar_size,
        }))
    }

    /// Every image that an image ref names, sorted by name.
    pub fn images(&self) -> Result<Vec<(String, ImageInfo)>> {
        let mut out = Vec::new();
        for r in self.refs(Some(RefKind::Image))? {
            let digest: Digest = r.target.parse()?;
            if let Some(info) = self.image_by_digest(&digest)? {
                out.push((r.name.name().to_string(), info));
            }
        }
        Ok(out)
    }

    /// The manifest and config JSON of an image.
    pub fn image_documents(&self, image: &ImageInfo) -> Result<(Vec<u8>, Vec<u8>)> {
        Ok(self.conn().query_row(
            "SELECT manifest, config FROM images WHERE id = ?1",
            [image.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// A stored layer's summary.
    pub fn layer_info(&self, diff_id: &Digest) -> Result<LayerInfo> {
        self.conn()
            .query_row(
                "SELECT tar_size, entry_count, content_size FROM layers WHERE diff_id = ?1",
                [diff_id.to_string()],
                |r| {
                    Ok(LayerInfo {
                        diff_id: *diff_id,
                        tar_size: r.get::<_, i64>(0)? as u64,
                        entry_count: r.get::<_, i64>(1)? as u64,
                        content_size: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| Error::LayerNotFound {
                diff_id: diff_id.to_string(),
            })
    }

    /// The entries of a layer in stream order.
    pub fn layer_entries(&self, diff_id: &Digest) -> Result<Vec<TreeEntry>> {
        self.entries_by_key(&diff_id.to_string())
    }

    /// The entries of a layers row by its key (a diff_id, or `merged:DIGEST`).
    pub(crate) fn entries_by_key(&self, diff_id: &str) -> Result<Vec<TreeEntry>> {
        let conn = self.conn();
        let layer_id: i64 = conn
            .query_row("SELECT id FROM layers WHERE diff_id = ?1", [diff_id], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| Error::LayerNotFound {
                diff_id: diff_id.to_string(),
            })?;
        let mut stmt = conn.prepare_cached(
            "SELECT path, kind, mode, uid, gid, mtime, mtime_nsec, size, object, link,
                    dev_major, dev_minor, xattrs
             FROM entries WHERE layer = ?1 ORDER BY seq",
        )?;
        let bad = |reason| Error::BadSkeleton {
            diff_id: diff_id.to_string(),
            reason,
        };
        let mut out = Vec::new();
        let mut rows = stmt.query(params![layer_id])?;
        while let Some(r) = rows.next()? {
            let object: Option<Vec<u8>> = r.get(8)?;
            let xattrs: Option<Vec<u8>> = r.get(12)?;
            out.push(TreeEntry {
                path: r.get(0)?,
                kind: EntryKind::from_code(r.get(1)?).ok_or_else(|| bad("unknown entry kind"))?,
                mode: r.get(2)?,
                uid: r.get::<_, i64>(3)? as u64,
                gid: r.get::<_, i64>(4)? as u64,
                mtime: r.get(5)?,
                mtime_nsec: r.get(6)?,
                size: r.get::<_, i64>(7)? as u64,
                object: match object {
                    Some(o) => Some(ObjectId::from_slice(&o).ok_or_else(|| bad("bad object id"))?),
                    None => None,
                },
                link: r.get(9)?,
                dev_major: r.get(10)?,
                dev_minor: r.get(11)?,
                xattrs: match xattrs {
                    Some(x) => decode_xattrs(&x).ok_or_else(|| bad("bad xattrs"))?,
                    None => Vec::new(),
                },
            });
        }
        Ok(out)
    }

    /// Write a layer's uncompressed tar, rebuilt byte for byte from its skeleton and objects.
    pub fn export_layer_tar(&self, diff_id: &Digest, out: &mut impl Write) -> Result<u64> {
        let (skeleton, tar_size): (Vec<u8>, i64) = self
            .conn()
            .query_row(
                "SELECT skeleton, tar_size FROM layers WHERE diff_id = ?1",
                [diff_id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| Error::LayerNotFound {
                diff_id: diff_id.to_string(),
            })?;
        // The decoded skeleton is the tar minus contents plus a splice table of ~50 bytes per file.
        let bound = (tar_size as usize)
            .saturating_mul(2)
            .saturating_add(1 << 16);
        let sk = Skeleton::decode(&skeleton, bound).map_err(|reason| Error::BadSkeleton {
            diff_id: diff_id.to_string(),
            reason,
        })?;
        // Zero runs are counts, not bytes: a damaged one must not make the export write
        // gigabytes before the diff_id check of whoever reads it fails.
        if sk.stream_len() != Some(tar_size as u64) {
            return Err(Error::BadSkeleton {
                diff_id: diff_id.to_string(),
                reason: "skeleton does not rebuild the layer's size",
            });
        }
        let mut written = 0u64;
        let mut counting = CountingWriter {
            inner: out,
            count: &mut written,
        };
        let objects = self.object_reader()?;
        sk.rebuild(&mut counting, |s, w| -> Result<(), Rebuild> {
            let data = objects.read(&s.object)?;
            if data.size() != s.size {
                return Err(Error::BadSkeleton {
                    diff_id: diff_id.to_string(),
                    reason: "object size differs from the splice",
                }
                .into());
            }
            data.copy_to(w)
                .map_err(|e| Error::io(self.object_path(&s.object), e))?;
            Ok(())
        })
        .map_err(|e| match e {
            Rebuild::Store(e) => e,
            Rebuild::Output(e) => Error::Output(e),
        })?;
        Ok(written)
    }
}

/// Why rebuilding a layer tar stopped: the store (an object), or writing the tar's own bytes.
enum Rebuild {
    Store(Error),
    Output(std::io::Error),
}

impl From<Error> for Rebuild {
    fn from(e: Error) -> Self {
        Rebuild::Store(e)
    }
}

impl From<std::io::Error> for Rebuild {
    fn from(e: std::io::Error) -> Self {
        Rebuild::Output(e)
    }
}

struct CountingWriter<'a, W> {
    inner: &'a mut W,
    count: &'a mut u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        *self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
