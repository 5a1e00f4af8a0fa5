//! Layer blobs out of the store, shared by `push` and `export`: a layer's tar is rebuilt from
//! the index byte for byte ([`Store::export_layer_tar`]), its sha256 checked against the diff_id
//! while it is written, compressed, and the compressed bytes hashed and counted on their way into
//! a temporary file ([`Spool`]). Layers of one image are written in parallel
//! ([`write_layers`]).
//!
//! Reproducible: the same tar and the same [`LayerCompression`] always give the same blob.
//! gzip has a fixed header (no name, mtime 0) and deflates the tar in 1 MiB blocks cut at fixed
//! offsets, in parallel (as `pigz -i`); zstd is one frame from one thread (the zstd crate is
//! built without libzstd's worker threads; layers still compress in parallel).
//!
//! Each [`Compression`] has one writer function ([`WriterFn`]): it gets the level and the tar
//! (a function that writes the rebuilt stream into the writer it is handed) and writes the blob
//! into its output, returning the blob's descriptor annotations. The caller hashes and counts
//! the output, so a writer function never computes the digest or size itself. A format that
//! needs to see the tar's entries (zstd:chunked's table of contents) is one more variant and
//! one more writer function; nothing else changes.
//!
//! Progress reaches the caller through [`BlobProgress`] (the library never prints): the
//! compressed bytes of each blob as they are written, in batches, summing to the blob's size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::Path;

use layerstore_store::{Digest, DigestHasher, Store};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};

mod encode;

/// Descriptor annotations a writer function returns for its blob.
pub type Annotations = BTreeMap<String, String>;

/// The compression of a layer blob.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Compression {
    /// The tar itself (its digest is the diff_id).
    None,
    #[default]
    Gzip,
    Zstd,
    /// zstd with a table of contents (see [`crate::chunked::write`]): plain zstd to any reader,
    /// pullable partially by layerstore and containers-storage.
    #[serde(rename = "zstd:chunked")]
    ZstdChunked,
}

/// A compression's writer function: compress the tar `job.tar` writes into `out`. `out` is
/// hashed and counted by the caller. Returns the annotations the blob's descriptor carries.
pub type WriterFn = fn(job: EncodeJob<'_>, out: &mut dyn Write) -> Result<Annotations>;

/// What a [`WriterFn`] gets.
pub struct EncodeJob<'a> {
    /// The layer, for error messages.
    pub diff_id: Digest,
    /// The level, already checked against [`Compression::levels`] (0 for [`Compression::None`]).
    pub level: i32,
    /// Writes the layer's uncompressed tar into the writer given (once); returns its size.
    pub tar: &'a mut dyn FnMut(&mut dyn Write) -> Result<u64>,
}

impl Compression {
    /// Every compression, for parsers and messages.
    pub const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Gzip,
        Compression::Zstd,
        Compression::ZstdChunked,
    ];

    /// Its name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::ZstdChunked => "zstd:chunked",
        }
    }

    /// The compression a layer media type promises (OCI and Docker schema2 names).
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        use crate::layer::{BlobCompression, media_type_compression};
        Some(match media_type_compression(media_type)? {
            BlobCompression::None => Compression::None,
            BlobCompression::Gzip => Compression::Gzip,
            BlobCompression::Zstd => Compression::Zstd,
        })
    }

    /// The OCI layer media type of a blob in this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd | Compression::ZstdChunked => {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            }
        }
    }

    /// The Docker schema2 layer media type, where schema2 has one (it has none for zstd).
    pub fn docker_media_type(self) -> Option<&'static str> {
        match self {
            Compression::None => Some("application/vnd.docker.image.rootfs.diff.tar"),
            Compression::Gzip => Some("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Compression::Zstd | Compression::ZstdChunked => None,
        }
    }

    /// The levels `--level` accepts (`None`: the compression takes no level).
    pub fn levels(self) -> Option<std::ops::RangeInclusive<i32>> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some(0..=9),
            // Negative (fast) levels are left out: they trade too much size for this use.
            Compression::Zstd | Compression::ZstdChunked => Some(1..=22),
        }
    }

    /// The level used when none is given: gzip's and zstd's own defaults.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 6,
            Compression::Zstd | Compression::ZstdChunked => 3,
        }
    }

    fn writer(self) -> WriterFn {
        match self {
            Compression::None => encode::write_plain,
            Compression::Gzip => encode::write_gzip,
            Compression::Zstd => encode::write_zstd,
            Compression::ZstdChunked => encode::write_zstd_chunked,
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Compression::ALL.iter().map(|c| c.name()).collect();
                format!("unknown compression {s:?}; one of {}", names.join(", "))
            })
    }
}

/// A compression and its level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct LayerCompression {
    pub compression: Compression,
    /// `None`: [`Compression::default_level`].
    pub level: Option<i32>,
}

impl LayerCompression {
    pub fn new(compression: Compression, level: Option<i32>) -> Result<Self> {
        let c = LayerCompression { compression, level };
        c.check()?;
        Ok(c)
    }

    /// `compression` at its default level.
    pub fn default_for(compression: Compression) -> Self {
        LayerCompression {
            compression,
            level: None,
        }
    }

    /// The level is one the compression accepts ([`Error::BadLevel`] otherwise).
    pub fn check(&self) -> Result<()> {
        let Some(level) = self.level else {
            return Ok(());
        };
        match self.compression.levels() {
            Some(r) if r.contains(&level) => Ok(()),
            levels => Err(Error::BadLevel {
                compression: self.compression.name(),
                level,
                accepted: levels
                    .map(|r| format!("takes levels {} to {}", r.start(), r.end()))
                    .unwrap_or_else(|| "takes no level".into()),
            }),
        }
    }

    fn level(&self) -> i32 {
        self.level
            .unwrap_or_else(|| self.compression.default_level())
    }
}

/// Where a blob is written while it is made.
#[derive(Clone, Copy, Debug)]
pub enum Spool<'a> {
    /// An anonymous temporary file in this directory: it disappears when dropped, and with the
    /// process. For blobs that are copied on (uploaded, or written into an archive).
    Anonymous(&'a Path),
    /// A named temporary file (a dot file) in this directory, to be renamed into place with
    /// [`LayerBlob::persist`]; removed when dropped.
    Named(&'a Path),
}

/// A compressed layer blob in a temporary file.
#[derive(Debug)]
pub struct LayerBlob {
    pub diff_id: Digest,
    /// The sha256 of the blob.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The uncompressed tar's size.
    pub tar_size: u64,
    pub compression: LayerCompression,
    /// What the writer function said the descriptor carries.
    pub annotations: Annotations,
    file: File,
    path: Option<tempfile::TempPath>,
}

impl LayerBlob {
    /// The blob, read from its start.
    pub fn reader(&self) -> Result<File> {
        let mut f = self.file.try_clone().map_err(|e| self.io(e))?;
        f.rewind().map_err(|e| self.io(e))?;
        Ok(f)
    }

    /// The open temporary file (its position is unspecified; seek before reading).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Make a [`Spool::Named`] blob's file durable and rename it to `dest` (replacing what is
    /// there: a blob named by its digest holds the same bytes). An anonymous blob is copied.
    pub fn persist(self, dest: &Path) -> Result<()> {
        match self.path {
            Some(path) => {
                self.file
                    .sync_all()
                    .map_err(|e| Error::io(path.to_path_buf(), e))?;
                path.persist(dest).map_err(|e| Error::io(dest, e.error))?;
                Ok(())
            }
            None => {
                let dir = dest.parent().unwrap_or(Path::new("."));
                let mut tmp = output_temp(dir).map_err(|e| Error::io(dir, e))?;
                io::copy(&mut self.reader()?, tmp.as_file_mut())
                    .map_err(|e| Error::io(tmp.path(), e))?;
                tmp.as_file()
                    .sync_all()
                    .map_err(|e| Error::io(tmp.path(), e))?;
                tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
                Ok(())
            }
        }
    }

    fn io(&self, e: io::Error) -> Error {
        Error::io(format!("the temporary blob of layer {}", self.diff_id), e)
    }
}

/// A named temporary file in `dir` for output that is renamed into place: a dot file, mode
/// 0644 (less what the umask takes) as blobs and archives are readable by others once placed.
pub(crate) fn output_temp(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(".layerstore-")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
}

/// Progress of layer blobs being written by [`write_layers_with`]; the library never prints.
/// `index` is the layer's position in the list given. All methods default to doing nothing.
pub trait BlobProgress: Sync {
    /// Writing the blob of layer `index` begins.
    fn blob_start(&self, _index: usize, _diff_id: &Digest, _compression: LayerCompression) {}
    /// `bytes` more compressed bytes of blob `index` were written. For one blob they sum to
    /// its size.
    fn blob_bytes(&self, _index: usize, _bytes: u64) {}
    /// The blob of layer `index` is written.
    fn blob_done(&self, _index: usize, _blob: &LayerBlob) {}
}

impl BlobProgress for crate::NoProgress {}

/// The [`BlobProgress`] of a list of layers seen by a caller that numbers them otherwise:
/// index `i` of the list is reported as `index[i]`.
pub(crate) struct Reindexed<'a, P: ?Sized> {
    pub progress: &'a P,
    pub index: &'a [usize],
}

impl<P: BlobProgress + ?Sized> BlobProgress for Reindexed<'_, P> {
    fn blob_start(&self, i: usize, diff_id: &Digest, compression: LayerCompression) {
        self.progress
            .blob_start(self.index[i], diff_id, compression);
    }
    fn blob_bytes(&self, i: usize, bytes: u64) {
        self.progress.blob_bytes(self.index[i], bytes);
    }
    fn blob_done(&self, i: usize, blob: &LayerBlob) {
        self.progress.blob_done(self.index[i], blob);
    }
}

/// Compressed bytes are reported in batches of at least this many (the tar of an uncompressed
/// blob arrives a 512-byte header at a time).
const REPORT_BYTES: u64 = 256 << 10;

/// Where a [`HashingWriter`] reports what it counted.
struct Report<'a> {
    progress: &'a dyn BlobProgress,
    index: usize,
    /// Counted but not reported yet.
    pending: u64,
}

impl Report<'_> {
    fn add(&mut self, n: u64, flush: bool) {
        self.pending += n;
        if self.pending > 0 && (flush || self.pending >= REPORT_BYTES) {
            self.progress.blob_bytes(self.index, self.pending);
            self.pending = 0;
        }
    }
}

/// Counts and hashes what passes on to `inner` (and reports the count, when it has a
/// [`Report`]).
struct HashingWriter<'a, W> {
    inner: W,
    hasher: DigestHasher,
    count: u64,
    report: Option<Report<'a>>,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if let Some(r) = &mut self.report {
            r.add(n as u64, false);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Write the layer `diff_id` of `store` as a blob in `compression`, into a temporary file as
/// `spool` says. The rebuilt tar's sha256 must be the diff_id ([`Error::RebuiltDiffId`]). The
/// caller pins the layer (a lease) so that gc leaves it readable meanwhile.
pub fn write_layer(
    store: &Store,
    diff_id: &Digest,
    compression: LayerCompression,
    spool: Spool<'_>,
) -> Result<LayerBlob> {
    write_one(store, diff_id, compression, spool, &crate::NoProgress, 0)
}

fn write_one(
    store: &Store,
    diff_id: &Digest,
    compression: LayerCompression,
    spool: Spool<'_>,
    progress: &dyn BlobProgress,
    index: usize,
) -> Result<LayerBlob> {
    compression.check()?;
    progress.blob_start(index, diff_id, compression);
    let (file, path) = match spool {
        Spool::Anonymous(dir) => (
            tempfile::tempfile_in(dir).map_err(|e| Error::io(dir, e))?,
            None,
        ),
        Spool::Named(dir) => {
            let (f, p) = output_temp(dir)
                .map_err(|e| Error::io(dir, e))?
                .into_parts();
            (f, Some(p))
        }
    };
    let blob_err = |source| Error::LayerOut {
        diff_id: *diff_id,
        compression: compression.compression.name(),
        source,
    };
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file.try_clone().map_err(blob_err)?),
        hasher: DigestHasher::default(),
        count: 0,
        report: Some(Report {
            progress,
            index,
            pending: 0,
        }),
    };
    let mut tar_hash = None;
    let mut tar = |w: &mut dyn Write| -> Result<u64> {
        let mut tee = HashingWriter {
            inner: w,
            hasher: DigestHasher::default(),
            count: 0,
            report: None,
        };
        let n = store.export_layer_tar(diff_id, &mut tee)?;
        tar_hash = Some((tee.hasher.finish(), n));
        Ok(n)
    };
    let annotations = (compression.compression.writer())(
        EncodeJob {
            diff_id: *diff_id,
            level: compression.level(),
            tar: &mut tar,
        },
        &mut out,
    )?;
    let (actual, tar_size) = tar_hash.ok_or_else(|| {
        // A writer function that never asked for the tar would give an empty blob.
        blob_err(io::Error::other(
            "the writer function did not write the tar",
        ))
    })?;
    if actual != *diff_id {
        return Err(Error::RebuiltDiffId {
            diff_id: *diff_id,
            actual,
        });
    }
    let HashingWriter {
        inner,
        hasher,
        count,
        report,
    } = out;
    inner.into_inner().map_err(|e| blob_err(e.into_error()))?;
    if let Some(mut r) = report {
        r.add(0, true);
    }
    let blob = LayerBlob {
        diff_id: *diff_id,
        digest: hasher.finish(),
        size: count,
        tar_size,
        compression,
        annotations,
        file,
        path,
    };
    progress.blob_done(index, &blob);
    Ok(blob)
}

/// [`write_layer`] for several layers at once, in parallel (rayon's pool); the blobs come back
/// in the order of `layers`. The first error wins; the other blobs are dropped (and their
/// temporary files with them).
pub fn write_layers(
    store: &Store,
    layers: &[(Digest, LayerCompression)],
    spool: Spool<'_>,
) -> Result<Vec<LayerBlob>> {
    write_layers_with(store, layers, spool, &crate::NoProgress)
}

/// [`write_layers`], reporting to `progress` (indices are positions in `layers`).
pub fn write_layers_with(
    store: &Store,
    layers: &[(Digest, LayerCompression)],
    spool: Spool<'_>,
    progress: &dyn BlobProgress,
) -> Result<Vec<LayerBlob>> {
    layers
        .par_iter()
        .enumerate()
        .map(|(i, (d, c))| write_one(store, d, *c, spool, progress, i))
        .collect()
}

/// A layer descriptor's new values (see [`rewrite_manifest`]).
pub(crate) struct NewLayer<'a> {
    pub media_type: &'a str,
    pub digest: Digest,
    pub size: u64,
    pub annotations: &'a Annotations,
}

/// The stored manifest with new layer descriptors: for each layer whose blob changed
/// (`Some`), its media type, digest and size (URLs dropped: they named the old blob; the
/// writer's annotations added, and annotations of containers' own formats, which describe the
/// old blob's bytes, dropped); unchanged layers (`None`) keep their descriptor. With `oci`, a
/// Docker schema2 manifest becomes an OCI one (media types mapped, the config bytes kept).
/// All else is kept; keys come out sorted.
pub(crate) fn rewrite_manifest(
    manifest: &[u8],
    layers: &[Option<NewLayer<'_>>],
    oci: bool,
) -> Result<Vec<u8>> {
    let bad = |reason: &str| Error::BadDocument {
        what: "stored manifest".into(),
        reason: reason.into(),
    };
    let mut v: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| Error::BadJson {
            what: "stored manifest".into(),
            source: e,
        })?;
    let obj = v.as_object_mut().ok_or_else(|| bad("not an object"))?;
    if oci {
        obj.insert(
            "mediaType".into(),
            "application/vnd.oci.image.manifest.v1+json".into(),
        );
        let config = obj
            .get_mut("config")
            .and_then(|c| c.as_object_mut())
            .ok_or_else(|| bad("no config"))?;
        if config.get("mediaType").and_then(|m| m.as_str())
            == Some("application/vnd.docker.container.image.v1+json")
        {
            config.insert(
                "mediaType".into(),
                "application/vnd.oci.image.config.v1+json".into(),
            );
        }
    }
    let descs = obj
        .get_mut("layers")
        .and_then(|l| l.as_array_mut())
        .ok_or_else(|| bad("no layers"))?;
    if descs.len() != layers.len() {
        return Err(bad("its layers do not match the image's"));
    }
    for (d, l) in descs.iter_mut().zip(layers) {
        let d = d
            .as_object_mut()
            .ok_or_else(|| bad("a layer is not an object"))?;
        match l {
            Some(blob) => {
                d.insert("mediaType".into(), blob.media_type.into());
                d.insert("digest".into(), blob.digest.to_string().into());
                d.insert("size".into(), blob.size.into());
                d.remove("urls");
                let mut ann: serde_json::Map<String, serde_json::Value> = d
                    .remove("annotations")
                    .and_then(|a| match a {
                        serde_json::Value::Object(m) => Some(m),
                        _ => None,
                    })
                    .unwrap_or_default();
                ann.retain(|k, _| {
                    !k.starts_with("io.github.containers.")
                        && !crate::chunked::write::is_chunked_annotation(k)
                });
                for (k, v) in blob.annotations {
                    ann.insert(k.clone(), v.clone().into());
                }
                if !ann.is_empty() {
                    d.insert("annotations".into(), ann.into());
                }
            }
            None if oci => {
                // A kept blob under its OCI name (a Docker media type maps one to one).
                let mt = d.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
                if let Some(c) = Compression::from_media_type(mt)
                    && mt.starts_with("application/vnd.docker.")
                {
                    d.insert("mediaType".into(), c.oci_media_type().into());
                }
            }
            None => {}
        }
    }
    Ok(serde_json::to_vec(&v).expect("a JSON value serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_outside_a_compressions_range_are_refused() {
        assert!(LayerCompression::new(Compression::Gzip, Some(9)).is_ok());
        assert!(LayerCompression::new(Compression::Zstd, Some(19)).is_ok());
        for (c, l) in [
            (Compression::Gzip, 10),
            (Compression::Gzip, -1),
            (Compression::Zstd, 0),
            (Compression::Zstd, 23),
            (Compression::None, 1),
        ] {
            assert!(
                matches!(
                    LayerCompression::new(c, Some(l)),
                    Err(Error::BadLevel { .. })
                ),
                "{c} level {l}"
            );
        }
    }

    #[test]
    fn compressions_parse_by_name_and_map_media_types_both_ways() {
        for c in Compression::ALL {
            assert_eq!(c.name().parse::<Compression>().unwrap(), c);
            // zstd:chunked is zstd with annotations: its media type is zstd's.
            let base = match c {
                Compression::ZstdChunked => Compression::Zstd,
                c => c,
            };
            assert_eq!(Compression::from_media_type(c.oci_media_type()), Some(base));
            if let Some(d) = c.docker_media_type() {
                assert_eq!(Compression::from_media_type(d), Some(c));
            }
        }
        assert!("lz4".parse::<Compression>().is_err());
    }

    #[test]
    fn a_rewritten_manifest_keeps_all_but_the_recompressed_layer_descriptors() {
        let old = Digest::of(b"old");
        let new = Digest::of(b"new");
        let kept = Digest::of(b"kept");
        let config = Digest::of(b"config");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": config.to_string(), "size": 6},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": old.to_string(), "size": 3,
                        "urls": ["https://elsewhere.example/blob"],
                        "annotations": {"a": "b",
                                        "io.github.containers.zstd-chunked.manifest-position": "1"}},
                       {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": kept.to_string(), "size": 4}],
            "annotations": {"x": "y"}
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let ann = Annotations::from([("c".to_string(), "d".to_string())]);
        let layers = [
            Some(NewLayer {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
                digest: new,
                size: 42,
                annotations: &ann,
            }),
            None,
        ];
        for oci in [false, true] {
            let out = rewrite_manifest(&bytes, &layers, oci).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["annotations"], manifest["annotations"]);
            assert_eq!(v["config"]["digest"], manifest["config"]["digest"]);
            let l = &v["layers"][0];
            assert_eq!(l["digest"], new.to_string());
            assert_eq!(l["size"], 42);
            assert_eq!(
                l["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
            assert_eq!(l["annotations"], serde_json::json!({"a": "b", "c": "d"}));
            assert!(l.get("urls").is_none(), "the old blob's URLs are dropped");
            assert_eq!(v["layers"][1]["digest"], kept.to_string());
            let (media, config_media, kept_media) = if oci {
                (
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.oci.image.config.v1+json",
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            } else {
                (
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.container.image.v1+json",
                    "application/vnd.docker.image.rootfs.diff.tar.gzip",
                )
            };
            assert_eq!(v["mediaType"], media);
            assert_eq!(v["config"]["mediaType"], config_media);
            assert_eq!(v["layers"][1]["mediaType"], kept_media);
        }
        assert!(
            rewrite_manifest(&bytes, &[], false).is_err(),
            "layer counts must agree"
        );
    }
}
