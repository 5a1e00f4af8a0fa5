//! OCI image layouts (image-spec v1.0/1.1) on disk, and `oci-archive` tars.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::compress::{Compression, compress};
use crate::sha256_digest;
use crate::tarbuild::{Entry, LayerBuilder, TarFormat};

/// `application/vnd.oci.image.manifest.v1+json`
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.config.v1+json`
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Annotation naming an image in `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The running machine's architecture in OCI/Go spelling
/// (`x86_64` -> `amd64`, `aarch64` -> `arm64`, ...).
pub fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        other => other,
    }
}

/// One layer of an image: the uncompressed tar and how to compress it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// Uncompressed tar bytes (its SHA-256 is the diff_id).
    pub tar: Vec<u8>,
    /// Compression applied to make the blob.
    pub compression: Compression,
}

impl Layer {
    /// A layer from its tar and compression.
    pub fn new(tar: Vec<u8>, compression: Compression) -> Self {
        Layer { tar, compression }
    }

    /// OCI media type of the blob.
    pub fn media_type(&self) -> &'static str {
        self.compression.oci_media_type()
    }

    /// `sha256:` digest of the uncompressed tar.
    pub fn diff_id(&self) -> String {
        sha256_digest(&self.tar)
    }
}

/// Everything needed to write one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// `config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 creation time (config `created` and history); omitted if
    /// `None`.
    pub created: Option<String>,
    /// `os`, default `linux`.
    pub os: String,
    /// `architecture`, default [`oci_architecture()`].
    pub architecture: String,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            layers: Vec::new(),
            labels: BTreeMap::new(),
            created: None,
            os: "linux".to_owned(),
            architecture: oci_architecture().to_owned(),
        }
    }
}

impl ImageSpec {
    /// An image with these layers and default metadata.
    pub fn new(layers: Vec<Layer>) -> Self {
        ImageSpec {
            layers,
            ..ImageSpec::default()
        }
    }

    /// Add a label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Set the creation time (RFC 3339).
    pub fn with_created(mut self, created: impl Into<String>) -> Self {
        self.created = Some(created.into());
        self
    }

    /// The diff_ids (`sha256:` of each uncompressed tar), bottom first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(Layer::diff_id).collect()
    }

    /// The image config JSON for this spec's own os/architecture.
    pub fn config_json(&self) -> Vec<u8> {
        self.config_json_for(&self.os, &self.architecture, None, &self.diff_ids())
    }

    pub(crate) fn config_json_for(
        &self,
        os: &str,
        arch: &str,
        variant: Option<&str>,
        diff_ids: &[String],
    ) -> Vec<u8> {
        let mut cfg = Map::new();
        cfg.insert(
            "Env".into(),
            json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
        );
        cfg.insert("Cmd".into(), json!(["/bin/sh"]));
        if !self.labels.is_empty() {
            cfg.insert("Labels".into(), json!(self.labels));
        }
        let history: Vec<Value> = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut h = Map::new();
                if let Some(c) = &self.created {
                    h.insert("created".into(), json!(c));
                }
                h.insert(
                    "created_by".into(),
                    json!(format!(
                        "layerstore-tests: layer {i} ({})",
                        l.compression.name()
                    )),
                );
                Value::Object(h)
            })
            .collect();
        let mut top = Map::new();
        if let Some(c) = &self.created {
            top.insert("created".into(), json!(c));
        }
        top.insert("architecture".into(), json!(arch));
        if let Some(v) = variant {
            top.insert("variant".into(), json!(v));
        }
        top.insert("os".into(), json!(os));
        top.insert("config".into(), Value::Object(cfg));
        top.insert(
            "rootfs".into(),
            json!({ "type": "layers", "diff_ids": diff_ids }),
        );
        top.insert("history".into(), Value::Array(history));
        serde_json::to_vec(&Value::Object(top)).expect("JSON serialisation cannot fail")
    }
}

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Descriptor {
    /// `mediaType`.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl Descriptor {
    /// Descriptor of `bytes` with `media_type`.
    pub fn of(bytes: &[u8], media_type: &str) -> Self {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
        }
    }

    /// As OCI JSON (`mediaType`, `digest`, `size`).
    pub fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// One layer as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WrittenLayer {
    /// Digest of the (possibly compressed) blob.
    pub blob_digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Layer media type.
    pub media_type: String,
    /// Blob size.
    pub blob_size: u64,
    /// Uncompressed tar size.
    pub tar_size: u64,
}

/// One image as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WrittenImage {
    /// Digest of the manifest blob.
    pub manifest_digest: String,
    /// Size of the manifest blob.
    pub manifest_size: u64,
    /// Digest of the config blob.
    pub config_digest: String,
    /// Layers, bottom first.
    pub layers: Vec<WrittenLayer>,
}

/// A multi-platform image index as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WrittenIndex {
    /// Digest of the nested index blob.
    pub index_digest: String,
    /// Size of the nested index blob.
    pub index_size: u64,
    /// The per-platform images, in the order given.
    pub images: Vec<WrittenImage>,
}

/// An OCI image layout directory being written.
#[derive(Debug)]
pub struct OciLayout {
    dir: PathBuf,
    manifests: Vec<Value>,
    layer_cache: HashMap<(String, Compression), WrittenLayer>,
}

impl OciLayout {
    /// Create (or reset) a layout at `dir`: `oci-layout`, `blobs/sha256/`
    /// and an empty `index.json`. Existing blobs are kept.
    pub fn create(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir.join("blobs").join("sha256"))?;
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let layout = OciLayout {
            dir: dir.to_owned(),
            manifests: Vec::new(),
            layer_cache: HashMap::new(),
        };
        layout.write_index()?;
        Ok(layout)
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the blob with `digest` (`sha256:<hex>` or bare hex).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs").join("sha256").join(hex)
    }

    /// Store `bytes` as a blob (skipped if already present) and return its
    /// descriptor.
    pub fn write_blob(&self, bytes: &[u8], media_type: &str) -> io::Result<Descriptor> {
        let desc = Descriptor::of(bytes, media_type);
        let path = self.blob_path(&desc.digest);
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            fs::write(&tmp, bytes)?;
            fs::rename(&tmp, &path)?;
        }
        Ok(desc)
    }

    /// Current `index.json` contents.
    pub fn index_json(&self) -> Vec<u8> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": self.manifests,
        });
        serde_json::to_vec(&index).expect("JSON serialisation cannot fail")
    }

    fn write_index(&self) -> io::Result<()> {
        let tmp = self.dir.join("index.json.tmp");
        fs::write(&tmp, self.index_json())?;
        fs::rename(&tmp, self.dir.join("index.json"))
    }

    /// Append `desc` to `index.json` (with a `ref.name` annotation if
    /// `name` is given) and rewrite it. Use it to reference hand-made
    /// (e.g. broken) manifests written with [`OciLayout::write_blob`].
    pub fn add_descriptor(&mut self, desc: &Descriptor, name: Option<&str>) -> io::Result<()> {
        let mut v = desc.to_json();
        if let Some(name) = name {
            v["annotations"] = json!({ ANNOTATION_REF_NAME: name });
        }
        self.manifests.push(v);
        self.write_index()
    }

    fn write_layer(&mut self, layer: &Layer) -> io::Result<WrittenLayer> {
        let diff_id = layer.diff_id();
        let key = (diff_id.clone(), layer.compression);
        if let Some(w) = self.layer_cache.get(&key) {
            return Ok(w.clone());
        }
        let blob = compress(&layer.tar, layer.compression);
        let desc = self.write_blob(&blob, layer.media_type())?;
        let w = WrittenLayer {
            blob_digest: desc.digest,
            diff_id,
            media_type: desc.media_type,
            blob_size: desc.size,
            tar_size: layer.tar.len() as u64,
        };
        self.layer_cache.insert(key, w.clone());
        Ok(w)
    }

    fn write_image(
        &mut self,
        spec: &ImageSpec,
        os: &str,
        arch: &str,
        variant: Option<&str>,
    ) -> io::Result<WrittenImage> {
        let layers = spec
            .layers
            .iter()
            .map(|l| self.write_layer(l))
            .collect::<io::Result<Vec<_>>>()?;
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config = spec.config_json_for(os, arch, variant, &diff_ids);
        let config_desc = self.write_blob(&config, MEDIA_TYPE_CONFIG)?;
        let layer_json: Vec<Value> = layers
            .iter()
            .map(|l| json!({ "mediaType": l.media_type, "digest": l.blob_digest, "size": l.blob_size }))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": config_desc.to_json(),
            "layers": layer_json,
        });
        let manifest = serde_json::to_vec(&manifest).expect("JSON serialisation cannot fail");
        let manifest_desc = self.write_blob(&manifest, MEDIA_TYPE_MANIFEST)?;
        Ok(WrittenImage {
            manifest_digest: manifest_desc.digest,
            manifest_size: manifest_desc.size,
            config_digest: config_desc.digest,
            layers,
        })
    }

    /// Write an image's blobs and reference its manifest from `index.json`
    /// under `name`.
    pub fn add_image(&mut self, name: &str, spec: &ImageSpec) -> io::Result<WrittenImage> {
        let img = self.write_image(spec, &spec.os, &spec.architecture, None)?;
        let desc = Descriptor {
            media_type: MEDIA_TYPE_MANIFEST.to_owned(),
            digest: img.manifest_digest.clone(),
            size: img.manifest_size,
        };
        self.add_descriptor(&desc, Some(name))?;
        Ok(img)
    }

    /// Write one image per `(os, architecture, variant, spec)`, a nested
    /// image index listing them with `platform` objects, and reference that
    /// index from `index.json` under `name`.
    pub fn add_index_image(
        &mut self,
        name: &str,
        platforms: &[(&str, &str, Option<&str>, ImageSpec)],
    ) -> io::Result<WrittenIndex> {
        let mut images = Vec::new();
        let mut entries = Vec::new();
        for (os, arch, variant, spec) in platforms {
            let img = self.write_image(spec, os, arch, *variant)?;
            let mut platform = json!({ "architecture": arch, "os": os });
            if let Some(v) = variant {
                platform["variant"] = json!(v);
            }
            entries.push(json!({
                "mediaType": MEDIA_TYPE_MANIFEST,
                "digest": img.manifest_digest,
                "size": img.manifest_size,
                "platform": platform,
            }));
            images.push(img);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": entries,
        });
        let index = serde_json::to_vec(&index).expect("JSON serialisation cannot fail");
        let desc = self.write_blob(&index, MEDIA_TYPE_INDEX)?;
        self.add_descriptor(&desc, Some(name))?;
        Ok(WrittenIndex {
            index_digest: desc.digest,
            index_size: desc.size,
            images,
        })
    }
}

/// Collect `root` recursively as archive entries with paths relative to
/// it (directories first, names sorted bytewise).
pub(crate) fn dir_entries(root: &Path) -> io::Result<Vec<Entry>> {
    fn walk(dir: &Path, rel: &[u8], out: &mut Vec<Entry>) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            let path = dir.join(&name);
            let meta = fs::symlink_metadata(&path)?;
            let mut child = rel.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_encoded_bytes());
            if meta.is_dir() {
                out.push(Entry::dir(&child));
                walk(&path, &child, out)?;
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&path)?;
                out.push(Entry::symlink(
                    &child,
                    target.as_os_str().as_encoded_bytes(),
                ));
            } else {
                out.push(Entry::file(&child, fs::read(&path)?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, b"", &mut out)?;
    Ok(out)
}

/// Tar up an OCI layout directory as an `oci-archive` (entries relative to
/// the layout root: `blobs/`, `blobs/sha256/...`, `index.json`,
/// `oci-layout`), as skopeo writes and reads them.
pub fn write_oci_archive(layout_dir: &Path, out_file: &Path) -> io::Result<()> {
    let entries = dir_entries(layout_dir)?;
    let tar = LayerBuilder::new(TarFormat::Pax)
        .with_entries(entries)
        .try_tar_bytes()?;
    fs::write(out_file, tar)
}

/// Hex part of a `sha256:` digest.
pub(crate) fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{decompress, sha256_hex};

    fn small_layers() -> Vec<Layer> {
        let l1 = LayerBuilder::new(TarFormat::Pax)
            .with_entries([Entry::dir("etc"), Entry::file("etc/hostname", "fixture\n")])
            .tar_bytes();
        let l2 = LayerBuilder::new(TarFormat::Gnu)
            .with_entries([Entry::file("hello", vec![b'h'; 5000])])
            .tar_bytes();
        let l3 = LayerBuilder::new(TarFormat::Ustar)
            .with_entries([Entry::whiteout("hello")])
            .tar_bytes();
        vec![
            Layer::new(l1, Compression::Gzip),
            Layer::new(l2, Compression::Zstd),
            Layer::new(l3, Compression::None),
        ]
    }

    fn read_json(path: &Path) -> Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    /// Every blob's name is its digest; every referenced blob exists with
    /// the declared size; diff_ids are the uncompressed tars' digests.
    pub(crate) fn check_layout(dir: &Path) -> usize {
        let blobs = dir.join("blobs/sha256");
        let mut n = 0;
        for e in fs::read_dir(&blobs).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            assert_eq!(sha256_hex(&fs::read(e.path()).unwrap()), name);
            n += 1;
        }
        let layout = read_json(&dir.join("oci-layout"));
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");
        let index = read_json(&dir.join("index.json"));
        assert_eq!(index["schemaVersion"], 2);
        let blob = |d: &Value, size: &Value| {
            let p = blobs.join(d.as_str().unwrap().strip_prefix("sha256:").unwrap());
            let bytes = fs::read(&p).unwrap();
            assert_eq!(bytes.len() as u64, size.as_u64().unwrap());
            bytes
        };
        let mut stack: Vec<Value> = index["manifests"].as_array().unwrap().clone();
        while let Some(desc) = stack.pop() {
            let bytes = blob(&desc["digest"], &desc["size"]);
            let doc: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(doc["mediaType"], desc["mediaType"]);
            if desc["mediaType"] == MEDIA_TYPE_INDEX {
                stack.extend(doc["manifests"].as_array().unwrap().iter().cloned());
                continue;
            }
            let config: Value =
                serde_json::from_slice(&blob(&doc["config"]["digest"], &doc["config"]["size"]))
                    .unwrap();
            let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
            let layers = doc["layers"].as_array().unwrap();
            assert_eq!(diff_ids.len(), layers.len());
            assert_eq!(config["history"].as_array().unwrap().len(), layers.len());
            for (l, d) in layers.iter().zip(diff_ids) {
                let c = match l["mediaType"].as_str().unwrap() {
                    "application/vnd.oci.image.layer.v1.tar" => Compression::None,
                    "application/vnd.oci.image.layer.v1.tar+gzip" => Compression::Gzip,
                    "application/vnd.oci.image.layer.v1.tar+zstd" => Compression::Zstd,
                    other => panic!("unexpected layer media type {other}"),
                };
                let tar = decompress(&blob(&l["digest"], &l["size"]), c).unwrap();
                assert_eq!(sha256_digest(&tar), d.as_str().unwrap());
            }
        }
        n
    }

    #[test]
    fn layout_digests_are_consistent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        let mut layout = OciLayout::create(&dir).unwrap();
        let layers = small_layers();
        let spec = ImageSpec::new(layers.clone())
            .with_label("org.opencontainers.image.version", "1.0")
            .with_created("2024-01-02T03:04:05Z");
        let img = layout.add_image("one", &spec).unwrap();
        assert_eq!(img.layers.len(), 3);
        assert_eq!(
            img.layers[1].media_type,
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        for (w, l) in img.layers.iter().zip(&layers) {
            assert_eq!(w.diff_id, sha256_digest(&l.tar));
            assert_eq!(w.tar_size, l.tar.len() as u64);
        }
        assert_eq!(img.layers[2].blob_digest, img.layers[2].diff_id);
        // Same spec again: identical digests, no new blobs.
        let again = layout.add_image("two", &spec).unwrap();
        assert_eq!(again, img);
        let idx = layout
            .add_index_image(
                "multi",
                &[
                    ("linux", "amd64", None, ImageSpec::new(layers[..1].to_vec())),
                    ("linux", "arm64", Some("v8"), ImageSpec::new(layers.clone())),
                ],
            )
            .unwrap();
        assert_eq!(idx.images.len(), 2);
        // 3 layers + config + manifest; index: 2 configs, 2 manifests, index.
        assert_eq!(check_layout(&dir), 3 + 1 + 1 + 2 + 2 + 1);

        let index = read_json(&dir.join("index.json"));
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["annotations"][ANNOTATION_REF_NAME].as_str().unwrap())
            .collect();
        assert_eq!(names, ["one", "two", "multi"]);
        assert_eq!(index["manifests"][2]["mediaType"], MEDIA_TYPE_INDEX);
        let nested = read_json(&layout.blob_path(&idx.index_digest));
        assert_eq!(nested["manifests"][1]["platform"]["variant"], "v8");
        let cfg = read_json(&layout.blob_path(&idx.images[1].config_digest));
        assert_eq!(cfg["architecture"], "arm64");
        assert_eq!(cfg["variant"], "v8");
        let cfg = read_json(&layout.blob_path(&img.config_digest));
        assert_eq!(
            cfg["config"]["Labels"]["org.opencontainers.image.version"],
            "1.0"
        );
        assert_eq!(cfg["created"], "2024-01-02T03:04:05Z");
        assert_eq!(cfg["os"], "linux");
        assert_eq!(cfg["architecture"], oci_architecture());
    }

    #[test]
    fn oci_archive_is_relative_tar_of_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        let mut layout = OciLayout::create(&dir).unwrap();
        layout
            .add_image("x", &ImageSpec::new(small_layers()))
            .unwrap();
        let out = tmp.path().join("x.tar");
        write_oci_archive(&dir, &out).unwrap();
        let bytes = fs::read(&out).unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                assert_eq!(sha256_hex(&data), hex);
            }
            names.push(name);
        }
        assert_eq!(&names[..2], ["blobs/", "blobs/sha256/"]);
        assert!(names.contains(&"index.json".to_owned()));
        assert!(names.contains(&"oci-layout".to_owned()));
        assert!(
            names
                .iter()
                .all(|n| !n.starts_with('/') && !n.starts_with("./"))
        );
    }
}
