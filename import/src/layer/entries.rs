//! Entry validation: each tar entry becomes a [`TreeEntry`] after its path, xattrs, owner,
//! whiteout and hard-link target are checked; regular contents become objects.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use layerstore_store::tree::{self, display_path};
use layerstore_store::{EntryKind, LayerRecord, Limits, NewObject, ObjectId, Staging, TreeEntry};

use super::blob::ChannelReader;
use super::writers::{WritePool, Written, count_written};
use super::{LayerInput, LayerStats, tar_error, tar_limits};
use crate::error::{Error, Result};
use crate::tarparse::{TarEntry, TarError, TarKind, TarParser};

/// Content up to this size is hashed in memory first, so a dedup hit never touches the disk.
pub(super) const IN_MEMORY_MAX: u64 = 8 << 20;

/// What the layer knows about an earlier entry, for hard links.
struct Seen {
    kind: EntryKind,
    object: Option<ObjectId>,
    size: u64,
}

/// Parse a layer's tar stream into its record, writing its contents into `staging`.
pub(super) fn parse_layer(
    input: &LayerInput,
    r: &mut ChannelReader,
    staging: &Staging<'_>,
    limits: &Limits,
) -> Result<(LayerRecord, LayerStats)> {
    std::thread::scope(|s| {
        let mut pool = WritePool::start(s, staging);
        let parsed = parse_entries(input, r, staging, limits, &mut pool);
        let written = pool.finish(parsed.is_ok());
        // A writer's error is the cause of a parse stopped by it.
        let written = written?;
        let (mut record, mut stats, mut objects) = parsed?;
        for w in written {
            count_written(&mut stats, &mut objects, w);
        }
        record.objects = objects.into_values().collect();
        Ok((record, stats))
    })
}

type Parsed = (LayerRecord, LayerStats, HashMap<ObjectId, NewObject>);

fn parse_entries(
    input: &LayerInput,
    r: &mut ChannelReader,
    staging: &Staging<'_>,
    limits: &Limits,
    pool: &mut WritePool<'_>,
) -> Result<Parsed> {
    let digest_s = input.blob_digest.to_string();
    let tar_err = |e: TarError| tar_error(&input.blob_digest, e);
    let mut p = TarParser::new(r, tar_limits(limits));
    let path_limits = limits.paths();
    let mut entries: Vec<TreeEntry> = Vec::new();
    let mut sink = Contents {
        staging,
        pool,
        queued: HashSet::new(),
        objects: HashMap::new(),
        stats: LayerStats::default(),
    };
    let mut seen: HashMap<Vec<u8>, Seen> = HashMap::new();
    // Directories that hold entries seen so far (their parents, whether listed or implicit).
    let mut holding: HashSet<Vec<u8>> = HashSet::new();
    while let Some(te) = p.next_entry().map_err(tar_err)? {
        sink.stats.entries += 1;
        if sink.stats.entries > limits.max_entries {
            return Err(Error::TooLarge {
                what: format!("entry count of layer {digest_s}"),
                limit: limits.max_entries,
            });
        }
        let bad = |reason: &str| Error::BadEntry {
            digest: digest_s.clone(),
            path: display_path(&te.path),
            reason: reason.to_string(),
        };
        let path = tree::normalize(&te.path, &path_limits).map_err(bad)?;
        let xattr_bytes: usize = te.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum();
        if xattr_bytes as u64 > limits.max_xattr_bytes {
            return Err(bad("extended attributes are too large"));
        }
        if te.xattrs.iter().any(|(k, _)| k.contains(&0)) {
            return Err(bad("xattr name contains a NUL byte"));
        }
        if te.uid > u64::from(u32::MAX - 1) || te.gid > u64::from(u32::MAX - 1) {
            return Err(bad("uid or gid does not fit in 32 bits"));
        }
        // AUFS bookkeeping (`.wh..wh.plnk/…`, `.wh..wh.aufs`) carries nothing for the tree; its data
        // stays in the skeleton.
        if path
            .split(|&b| b == b'/')
            .any(|c| c.starts_with(b".wh..wh.") && c != b".wh..wh..opq")
        {
            continue;
        }
        let name = tree::file_name(&path);
        // Whiteouts: `.wh..wh..opq` hides a directory's lower children, `.wh.NAME` removes NAME,
        // other `.wh..wh.*` names are AUFS bookkeeping and carry nothing.
        if let Some(target) = name.strip_prefix(b".wh.") {
            let parent = tree::parent(&path).unwrap_or_default().to_vec();
            let kind = if target == b".wh..opq" {
                EntryKind::Opaque
            } else if target.is_empty() || target == b"." || target == b".." {
                return Err(bad("whiteout names nothing"));
            } else {
                EntryKind::Whiteout
            };
            let removed = tree::join(&parent, target);
            // The OCI spec keeps an entry of the whiteout's own layer, but docker and
            // containerd remove what the stream wrote before the whiteout (or fail, with
            // overlay): no reading is the image. (An entry after its whiteout survives for
            // all of them.)
            if kind == EntryKind::Whiteout
                && (seen.contains_key(&removed) || holding.contains(&removed))
            {
                return Err(bad(
                    "a whiteout of an entry earlier in its own layer (the OCI spec keeps it, \
                     docker and containerd remove it)",
                ));
            }
            let mut e = TreeEntry::implicit_dir(if kind == EntryKind::Opaque {
                parent
            } else {
                removed
            });
            e.kind = kind;
            entries.push(e);
            continue;
        }
        if path.is_empty() && te.kind != TarKind::Directory {
            return Err(bad("the image root must be a directory"));
        }
        let mut e = to_entry(&te, path.clone());
        match te.kind {
            TarKind::Regular => {
                let id = if te.size <= IN_MEMORY_MAX {
                    // Hashed in memory; copied out of the reader's buffer only for a writer, or
                    // when the content spans chunks.
                    let whole = p.buffered_content(|data| {
                        let id = ObjectId::of(data);
                        sink.in_memory(id, Cow::Borrowed(data)).map(|()| id)
                    });
                    match whole.map_err(tar_err)? {
                        Some(id) => id?,
                        None => {
                            let mut data = Vec::with_capacity(te.size as usize);
                            p.each_content(|b| {
                                data.extend_from_slice(b);
                                Ok::<_, TarError>(())
                            })
                            .map_err(tar_err)?;
                            let id = ObjectId::of(&data);
                            sink.in_memory(id, Cow::Owned(data))?;
                            id
                        }
                    }
                } else {
                    let w = stream_content(&mut p, staging).map_err(|err| match err {
                        ContentError::Tar(t) => tar_err(t),
                        ContentError::Store(s) => Error::Store(s),
                    })?;
                    let id = w.0.id;
                    sink.written(w);
                    id
                };
                p.content_done(te.size, id);
                sink.stats.files += 1;
                sink.stats.content_bytes += te.size;
                e.object = Some(id);
            }
            TarKind::Hardlink => {
                let raw = te.link.as_deref().unwrap_or_default();
                let target = tree::normalize(raw, &path_limits).map_err(bad)?;
                if target == path {
                    return Err(bad("hard link to itself"));
                }
                let t = seen
                    .get(&target)
                    .ok_or_else(|| bad("hard link to an entry not earlier in this layer"))?;
                if t.kind == EntryKind::Directory {
                    return Err(bad("hard link to a directory"));
                }
                e.object = t.object;
                e.size = t.size;
                e.link = Some(target);
            }
            _ => {}
        }
        let mut dir = tree::parent(&path);
        while let Some(d) = dir.filter(|d| !d.is_empty()) {
            if !holding.insert(d.to_vec()) {
                break; // its parents are in already
            }
            dir = tree::parent(d);
        }
        seen.insert(
            path,
            Seen {
                kind: e.kind,
                object: e.object,
                size: e.size,
            },
        );
        entries.push(e);
    }
    let skeleton = std::mem::take(&mut p.skeleton)
        .finish()
        .map_err(|e| Error::Skeleton {
            digest: input.blob_digest.to_string(),
            source: e,
        })?;
    Ok((
        LayerRecord {
            diff_id: input.expected_diff_id,
            tar_size: p.position(),
            entries,
            skeleton,
            objects: Vec::new(),
        },
        sink.stats,
        sink.objects,
    ))
}

fn to_entry(te: &TarEntry, path: Vec<u8>) -> TreeEntry {
    let kind = match te.kind {
        TarKind::Regular => EntryKind::Regular,
        TarKind::Hardlink => EntryKind::Hardlink,
        TarKind::Symlink => EntryKind::Symlink,
        TarKind::CharDevice => EntryKind::CharDevice,
        TarKind::BlockDevice => EntryKind::BlockDevice,
        TarKind::Directory => EntryKind::Directory,
        TarKind::Fifo => EntryKind::Fifo,
    };
    TreeEntry {
        path,
        kind,
        mode: te.mode,
        uid: te.uid,
        gid: te.gid,
        mtime: te.mtime,
        mtime_nsec: te.mtime_nsec,
        size: if kind == EntryKind::Regular {
            te.size
        } else {
            0
        },
        object: None,
        link: if kind == EntryKind::Symlink {
            te.link.clone()
        } else {
            None
        },
        dev_major: te.dev_major,
        dev_minor: te.dev_minor,
        xattrs: te.xattrs.clone(),
    }
}

enum ContentError {
    Tar(TarError),
    Store(layerstore_store::Error),
}

impl From<TarError> for ContentError {
    fn from(e: TarError) -> Self {
        ContentError::Tar(e)
    }
}

/// Where a layer's contents go, and what they added up to.
struct Contents<'a, 'scope> {
    staging: &'a Staging<'a>,
    pool: &'a mut WritePool<'scope>,
    /// Contents handed to the writers (written once even if the layer holds them twice).
    queued: HashSet<ObjectId>,
    objects: HashMap<ObjectId, NewObject>,
    stats: LayerStats,
}

impl Contents<'_, '_> {
    fn written(&mut self, w: Written) {
        count_written(&mut self.stats, &mut self.objects, w);
    }

    /// A content hashed in memory: stored here if that is cheap (already stored, or inline as it
    /// is), else handed to a writer (which needs its own copy).
    fn in_memory(&mut self, id: ObjectId, data: Cow<'_, [u8]>) -> Result<()> {
        if self.queued.contains(&id) {
            if self.staging.is_inline_size(data.len() as u64) {
                self.stats.inline_objects += 1;
            } else {
                self.stats.dedup_hits += 1;
            }
        } else if let Some(w) = self.staging.put_found_or_inline(id, &data)? {
            self.written(w);
        } else {
            self.queued.insert(id);
            self.pool.submit(id, data.into_owned())?;
        }
        Ok(())
    }
}

/// Stream the current entry's content into an object file.
fn stream_content<R: BufRead>(
    p: &mut TarParser<R>,
    staging: &Staging<'_>,
) -> Result<Written, ContentError> {
    let mut w = staging.writer().map_err(ContentError::Store)?;
    p.each_content(|b| w.write(b).map_err(ContentError::Store))?;
    w.finish().map_err(ContentError::Store)
}
