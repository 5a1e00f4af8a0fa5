//! Dedup analysis of an image series: what layer-level dedup (distinct diff_ids, as
//! containers-storage stores), file-level dedup (distinct contents, as this store does) and
//! content-defined chunking (FastCDC at 16 and 64 KiB average) would store, raw and with
//! per-object (per-chunk) zstd, per image and for the whole series, plus what each image adds
//! over the ones before it and the largest shared files.
//!
//! Works on stored images (contents read from the store) or on sources that are not imported:
//! their layers are streamed, verified and parsed as an import would, but nothing is written.
//! Memory is bounded by the number of distinct contents and chunks (32-byte ids) and by the
//! largest single file.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use layerstore_store::{Digest, EntryKind, Limits, ObjectId, Store};
use serde::Serialize;

use crate::NoProgress;
use crate::error::{Error, Result};
use crate::layer::{self, LayerInput, tar_error, tar_limits};
use crate::resolve::Platform;
use crate::source::Source;
use crate::tarparse::{TarKind, TarParser};

const ZSTD_LEVEL: i32 = 3;

/// Bytes a strategy stores, raw and with zstd per object (or per chunk).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stored {
    pub raw: u64,
    pub zstd: u64,
}

/// The figures for one image, or for the series.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DedupFigures {
    /// The image's names, joined with ", " (or "total").
    pub name: String,
    /// Every name the image was given (one image however many names point at its manifest).
    pub names: Vec<String>,
    /// Regular-file content of all layers, duplicates counted.
    pub logical_bytes: u64,
    pub files: u64,
    /// Layer-level dedup: uncompressed tars of the distinct layers.
    pub layer_level: u64,
    /// The same layers as compressed blobs (what a registry stores).
    pub layer_blobs: u64,
    /// File-level dedup: distinct contents.
    pub file_level: Stored,
    pub distinct_files: u64,
    /// FastCDC with 16 KiB and 64 KiB average chunks over the distinct contents.
    pub cdc_16k: Stored,
    pub cdc_64k: Stored,
    /// File-level bytes this image shares with another image of the series.
    pub shared_bytes: u64,
    /// What it adds over the images before it: new distinct content, new layers.
    pub new_file_bytes: u64,
    pub new_layer_bytes: u64,
}

/// A large content that several images share.
#[derive(Clone, Debug, Serialize)]
pub struct SharedFile {
    /// Where the content was first seen; two rows may share a path (the file changed between
    /// images), their objects tell them apart.
    pub path: String,
    pub size: u64,
    pub images: usize,
    pub object: ObjectId,
}

impl SharedFile {
    /// The object id's first 12 hex digits, to tell apart rows with one path.
    pub fn short_object(&self) -> String {
        self.object.hex()[..12].to_string()
    }
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct DedupReport {
    pub images: Vec<DedupFigures>,
    pub total: DedupFigures,
    pub largest_shared: Vec<SharedFile>,
}

type ChunkId = [u8; 32];

struct ObjInfo {
    size: u64,
    zstd: u64,
    chunks16: Vec<ChunkId>,
    chunks64: Vec<ChunkId>,
    path: Vec<u8>,
}

#[derive(Default)]
struct LayerAcc {
    tar_size: u64,
    blob_size: u64,
    logical: u64,
    files: u64,
    objects: Vec<ObjectId>,
}

/// Accumulates images and computes the report.
#[derive(Default)]
pub struct DedupAnalyzer {
    objects: HashMap<ObjectId, ObjInfo>,
    chunks: HashMap<ChunkId, (u64, u64)>,
    layers: HashMap<Digest, LayerAcc>,
    images: Vec<ImageAcc>,
}

/// An image of the series: one per manifest, whatever the number of its names.
struct ImageAcc {
    manifest: Digest,
    names: Vec<String>,
    layers: Vec<Digest>,
}

impl DedupAnalyzer {
    /// Whether a content is known already (its reading can be skipped).
    pub fn knows(&self, id: &ObjectId) -> bool {
        self.objects.contains_key(id)
    }

    /// Whether a layer was analysed already.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layers.contains_key(diff_id)
    }

    /// Start a layer.
    pub fn begin_layer(&mut self, diff_id: Digest, tar_size: u64, blob_size: u64) {
        self.layers.insert(
            diff_id,
            LayerAcc {
                tar_size,
                blob_size,
                ..LayerAcc::default()
            },
        );
    }

    /// Set a layer's tar size once it is known.
    pub fn set_tar_size(&mut self, diff_id: &Digest, tar_size: u64) {
        if let Some(l) = self.layers.get_mut(diff_id) {
            l.tar_size = tar_size;
        }
    }

    /// A regular file of the layer with known content id; `content` is called only if the
    /// content is new.
    pub fn file(
        &mut self,
        diff_id: &Digest,
        path: &[u8],
        id: ObjectId,
        size: u64,
        content: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<()> {
        if !self.objects.contains_key(&id) {
            let data = content()?;
            self.add_content(id, path, &data)?;
        }
        let l = self.layers.get_mut(diff_id).expect("begin_layer first");
        l.logical += size;
        l.files += 1;
        l.objects.push(id);
        Ok(())
    }

    fn add_content(&mut self, id: ObjectId, path: &[u8], data: &[u8]) -> Result<()> {
        let estimate = |source| Error::Estimate { object: id, source };
        let zstd = compressed_len(data).map_err(estimate)?;
        let mut chunk = |avg: usize| -> std::io::Result<Vec<ChunkId>> {
            let mut ids = Vec::new();
            for c in fastcdc::v2020::FastCDC::new(data, avg / 4, avg, avg * 4) {
                let bytes = &data[c.offset..c.offset + c.length];
                let cid = *blake3::hash(bytes).as_bytes();
                if let std::collections::hash_map::Entry::Vacant(v) = self.chunks.entry(cid) {
                    v.insert((bytes.len() as u64, compressed_len(bytes)?));
                }
                ids.push(cid);
            }
            Ok(ids)
        };
        let chunks16 = chunk(16 * 1024).map_err(estimate)?;
        let chunks64 = chunk(64 * 1024).map_err(estimate)?;
        self.objects.insert(
            id,
            ObjInfo {
                size: data.len() as u64,
                zstd,
                chunks16,
                chunks64,
                path: path.to_vec(),
            },
        );
        Ok(())
    }

    /// An image made of these layers (all analysed), in series order. Another name for a
    /// manifest already added joins that image's names.
    pub fn image(&mut self, manifest: Digest, name: &str, layers: Vec<Digest>) {
        match self.images.iter_mut().find(|i| i.manifest == manifest) {
            Some(i) => {
                if !i.names.iter().any(|n| n == name) {
                    i.names.push(name.to_string());
                }
            }
            None => self.images.push(ImageAcc {
                manifest,
                names: vec![name.to_string()],
                layers,
            }),
        }
    }

    /// Compute the report.
    pub fn report(&self) -> DedupReport {
        let sets: Vec<HashSet<ObjectId>> = self
            .images
            .iter()
            .map(|i| {
                i.layers
                    .iter()
                    .flat_map(|d| self.layers[d].objects.iter().copied())
                    .collect()
            })
            .collect();
        let mut users: HashMap<ObjectId, usize> = HashMap::new();
        for s in &sets {
            for id in s {
                *users.entry(*id).or_default() += 1;
            }
        }
        let mut seen_objects: HashSet<ObjectId> = HashSet::new();
        let mut seen_layers: HashSet<Digest> = HashSet::new();
        let mut images = Vec::new();
        for (image, set) in self.images.iter().zip(&sets) {
            let layers = &image.layers;
            let mut f = self.figures(&image.names.join(", "), layers.iter(), set);
            f.names = image.names.clone();
            f.shared_bytes = set
                .iter()
                .filter(|id| users[id] > 1)
                .map(|id| self.objects[id].size)
                .sum();
            f.new_file_bytes = set
                .iter()
                .filter(|id| !seen_objects.contains(id))
                .map(|id| self.objects[id].size)
                .sum();
            f.new_layer_bytes = layers
                .iter()
                .collect::<HashSet<_>>()
                .into_iter()
                .filter(|d| !seen_layers.contains(d))
                .map(|d| self.layers[d].tar_size)
                .sum();
            seen_objects.extend(set.iter().copied());
            seen_layers.extend(layers.iter().copied());
            images.push(f);
        }
        let all: HashSet<ObjectId> = sets.iter().flatten().copied().collect();
        let all_layers: Vec<Digest> = self
            .images
            .iter()
            .flat_map(|i| i.layers.iter().copied())
            .collect();
        let mut total = self.figures("total", all_layers.iter(), &all);
        // The series' logical bytes count every image, not every distinct layer.
        total.logical_bytes = images.iter().map(|i| i.logical_bytes).sum();
        total.files = images.iter().map(|i| i.files).sum();
        total.shared_bytes = all
            .iter()
            .filter(|id| users[id] > 1)
            .map(|id| self.objects[id].size)
            .sum();
        total.new_file_bytes = total.file_level.raw;
        total.new_layer_bytes = total.layer_level;
        let mut largest: Vec<SharedFile> = users
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| SharedFile {
                path: layerstore_store::tree::display_path(&self.objects[id].path),
                size: self.objects[id].size,
                images: *n,
                object: *id,
            })
            .collect();
        largest.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
        largest.truncate(10);
        DedupReport {
            images,
            total,
            largest_shared: largest,
        }
    }

    fn figures<'a>(
        &self,
        name: &str,
        layers: impl Iterator<Item = &'a Digest>,
        set: &HashSet<ObjectId>,
    ) -> DedupFigures {
        let mut f = DedupFigures {
            name: name.to_string(),
            ..DedupFigures::default()
        };
        let mut distinct_layers = HashSet::new();
        for d in layers {
            let l = &self.layers[d];
            f.logical_bytes += l.logical;
            f.files += l.files;
            if distinct_layers.insert(*d) {
                f.layer_level += l.tar_size;
                f.layer_blobs += l.blob_size;
            }
        }
        let mut c16 = HashSet::new();
        let mut c64 = HashSet::new();
        for id in set {
            let o = &self.objects[id];
            f.file_level.raw += o.size;
            f.file_level.zstd += o.zstd.min(o.size);
            c16.extend(o.chunks16.iter());
            c64.extend(o.chunks64.iter());
        }
        f.distinct_files = set.len() as u64;
        for (set, out) in [(c16, &mut f.cdc_16k), (c64, &mut f.cdc_64k)] {
            for c in set {
                let (len, z) = self.chunks[c];
                out.raw += len;
                out.zstd += z.min(len);
            }
        }
        f
    }
}

fn compressed_len(data: &[u8]) -> std::io::Result<u64> {
    Ok(zstd::bulk::compress(data, ZSTD_LEVEL)?.len() as u64)
}

/// Analyse stored images, in the order given.
pub fn analyze_stored(store: &Store, names: &[String]) -> Result<DedupReport> {
    let mut a = DedupAnalyzer::default();
    for name in names {
        let img = store.resolve_image(name)?;
        for l in &img.layers {
            if a.has_layer(&l.diff_id) {
                continue;
            }
            let info = store.layer_info(&l.diff_id)?;
            a.begin_layer(l.diff_id, info.tar_size, l.blob_size);
            for e in store.layer_entries(&l.diff_id)? {
                if e.kind != EntryKind::Regular {
                    continue;
                }
                let id = e.object.expect("regular files have objects");
                a.file(&l.diff_id, &e.path, id, e.size, || {
                    let mut v = Vec::new();
                    store
                        .read_object(&id)?
                        .into_reader()
                        .and_then(|mut r| r.read_to_end(&mut v))
                        .map_err(|e| Error::io(store.object_path(&id), e))?;
                    Ok(v)
                })?;
            }
        }
        a.image(
            img.manifest_digest,
            name,
            img.layers.iter().map(|l| l.diff_id).collect(),
        );
    }
    Ok(a.report())
}

/// Every stored image's names in series order, for [`analyze_stored`]: by creation time, and
/// images created in the same second (a series built in one go) in the order they were
/// imported; the names of one image by name.
pub fn stored_series(store: &Store) -> Result<Vec<String>> {
    let mut all = store.images()?;
    // The image row id grows with each image stored: the import order.
    all.sort_by(|a, b| (&a.1.created, a.1.id, &a.0).cmp(&(&b.1.created, b.1.id, &b.0)));
    Ok(all.into_iter().map(|(name, _)| name).collect())
}

/// Analyse images straight from their sources, without importing them. Each layer is verified
/// (blob digest, diff_id) and parsed exactly as an import would.
pub fn analyze_sources(
    specs: &[String],
    platform: &Platform,
    limits: &Limits,
) -> Result<DedupReport> {
    let mut a = DedupAnalyzer::default();
    for spec in specs {
        let source = Source::open(spec)?;
        let container = source.container();
        let image = source.resolve_from_index(platform, limits)?;
        let name = image.default_name.clone().unwrap_or_else(|| spec.clone());
        for (i, l) in image.layers.iter().enumerate() {
            if a.has_layer(&l.diff_id) {
                continue;
            }
            let (blob, _) =
                container
                    .open_optional(&l.path)?
                    .ok_or_else(|| Error::BlobMissing {
                        digest: l.digest.to_string(),
                    })?;
            let input = LayerInput::of(i, l);
            a.begin_layer(l.diff_id, 0, l.size);
            let ((), tar_size) = layer::stream_layer(&input, blob, limits, &NoProgress, |r| {
                scan(&mut a, &input, r, limits)
            })?;
            a.set_tar_size(&l.diff_id, tar_size);
        }
        a.image(
            image.manifest_digest,
            &name,
            image.layers.iter().map(|l| l.diff_id).collect(),
        );
    }
    Ok(a.report())
}

/// Record the regular files of a layer's tar stream.
fn scan(
    a: &mut DedupAnalyzer,
    input: &LayerInput,
    r: &mut layer::ChannelReader,
    limits: &Limits,
) -> Result<()> {
    let diff_id = &input.expected_diff_id;
    let mut p = TarParser::new(r, tar_limits(limits));
    let tar_err = |e| tar_error(&input.blob_digest, e);
    let mut buf = vec![0u8; 256 * 1024];
    while let Some(e) = p.next_entry().map_err(tar_err)? {
        if e.kind != TarKind::Regular {
            continue;
        }
        let name = layerstore_store::tree::file_name(&e.path);
        if name.starts_with(b".wh.") {
            continue;
        }
        let mut data = Vec::with_capacity(e.size.min(1 << 30) as usize);
        loop {
            let n = p.read_content(&mut buf).map_err(tar_err)?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
        let id = ObjectId::of(&data);
        p.content_done(e.size, id);
        a.file(diff_id, &e.path, id, e.size, || {
            Ok(std::mem::take(&mut data))
        })?;
    }
    Ok(())
}
