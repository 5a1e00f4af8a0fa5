//! `oci:DIR`: add the image to an OCI layout, or make one.
//!
//! Order: the blobs (each a temporary file renamed to its digest; a blob already there is the
//! same bytes and stays), one fsync of `blobs/sha256`, then `index.json` replaced by rename and
//! the directory synced. A crash leaves the old index (and at worst unreferenced blobs or a
//! `.layerstore-` temporary file). A failed export removes what it added ([`Layout`]'s drop).
//! Two exports into one layout at once: each holds an exclusive flock on DIR while it reads,
//! changes and replaces the index, so neither loses the other's entry (tools that take no lock,
//! skopeo among them, can still race with it).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use layerstore_store::Digest;
use serde_json::{Map, Value, json};

use super::{ExportError, Prepared};
use crate::error::{Error, Result};

pub(super) const OCI_LAYOUT: &str = "oci-layout";
/// What `oci-layout` holds.
pub(super) const OCI_LAYOUT_JSON: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX: &str = "index.json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// An index.json larger than this is not read (a layout of thousands of images is smaller).
const MAX_INDEX: u64 = 64 << 20;

/// A checked `oci:DIR`; what it created is removed when it is dropped before
/// [`Layout::write`] finished.
pub(super) struct Layout {
    path: PathBuf,
    /// DIR does not exist yet.
    create_root: bool,
    /// The index of the existing layout (`None`: a new layout).
    index: Option<Value>,
    /// Directories this export created, outermost first.
    made_dirs: Vec<PathBuf>,
    /// Files this export added to an existing layout.
    made_files: Vec<PathBuf>,
    done: bool,
}

impl Layout {
    /// Check that `path` is an OCI layout with a readable index, an empty directory, or a path
    /// whose parent directory exists; nothing is written.
    pub(super) fn check(path: &Path) -> Result<Layout> {
        let not_layout = || -> Error {
            ExportError::NotALayout {
                path: path.to_path_buf(),
            }
            .into()
        };
        let mut layout = Layout {
            path: path.to_path_buf(),
            create_root: false,
            index: None,
            made_dirs: Vec::new(),
            made_files: Vec::new(),
            done: false,
        };
        match fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                if !parent.is_dir() {
                    return Err(ExportError::InvalidDestination {
                        spec: path.display().to_string(),
                        reason: format!("directory {} does not exist", parent.display()),
                    }
                    .into());
                }
                layout.create_root = true;
            }
            Err(e) => return Err(Error::io(path, e)),
            Ok(m) if !m.is_dir() => return Err(not_layout()),
            Ok(_) => {
                let has_layout = fs::symlink_metadata(path.join(OCI_LAYOUT)).is_ok();
                if has_layout {
                    layout.index = Some(read_index(path)?);
                } else if fs::read_dir(path)
                    .map_err(|e| Error::io(path, e))?
                    .next()
                    .is_some()
                {
                    return Err(not_layout());
                }
            }
        }
        Ok(layout)
    }

    /// `DIR/blobs/sha256`.
    pub(super) fn blob_dir(&self) -> PathBuf {
        self.path.join("blobs").join("sha256")
    }

    /// Make the directories blobs are spooled and renamed in (the first write of an export).
    pub(super) fn make_dirs(&mut self) -> Result<()> {
        if self.create_root {
            fs::create_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
            self.made_dirs.push(self.path.clone());
        }
        for d in [self.path.join("blobs"), self.blob_dir()] {
            match fs::create_dir(&d) {
                Ok(()) => self.made_dirs.push(d),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(Error::io(&d, e)),
            }
        }
        Ok(())
    }

    /// Write the blobs, then the index; returns the bytes the layout gained.
    pub(super) fn write(mut self, p: Prepared, tag: Option<&str>) -> Result<u64> {
        let _lock = lock_dir(&self.path)?;
        // The index as it is now, not as it was when the export began.
        if self.index.is_some() {
            self.index = Some(read_index(&self.path)?);
        }
        let blob_dir = self.blob_dir();
        let mut bytes = 0;
        for blob in p.blobs {
            let dest = blob_dir.join(blob.digest.hex());
            if dest.is_file() {
                continue;
            }
            bytes += blob.size;
            blob.persist(&dest)?;
            self.made_files.push(dest);
        }
        let (manifest, manifest_digest) = p.manifest.expect("an OCI export has a manifest");
        for (data, digest) in [(&p.config, p.config_digest), (&manifest, manifest_digest)] {
            let dest = blob_dir.join(digest.hex());
            if dest.is_file() {
                continue;
            }
            bytes += data.len() as u64;
            write_atomic(&dest, data)?;
            self.made_files.push(dest);
        }
        sync_dir(&blob_dir)?;
        if self.index.is_none() {
            let dest = self.path.join(OCI_LAYOUT);
            write_atomic(&dest, OCI_LAYOUT_JSON)?;
            self.made_files.push(dest);
        }
        let desc = manifest_descriptor(manifest_digest, manifest.len(), tag);
        let mut index = self.index.take().unwrap_or_else(new_index);
        let manifests = index
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .expect("read_index checked the manifests array");
        // A tag names one image: the one exported last (as skopeo does). Without a tag, the
        // same image is listed once.
        manifests.retain(|m| {
            let name = m
                .get("annotations")
                .and_then(|a| a.get(REF_NAME))
                .and_then(Value::as_str);
            match tag {
                Some(t) => name != Some(t),
                None => !(name.is_none() && m.get("digest") == desc.get("digest")),
            }
        });
        manifests.push(desc);
        let data = serde_json::to_vec(&index).expect("a JSON value serializes");
        bytes += data.len() as u64;
        write_atomic(&self.path.join(INDEX), &data)?;
        sync_dir(&self.path)?;
        self.done = true;
        Ok(bytes)
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for f in &self.made_files {
            let _ = fs::remove_file(f);
        }
        // Outermost first: removing it takes the rest (everything in it was this export's).
        if let Some(d) = self.made_dirs.first() {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// An empty index.
pub(super) fn new_index() -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
    })
}

/// The descriptor of an exported (OCI) manifest, with the tag as its ref name.
pub(super) fn manifest_descriptor(digest: Digest, size: usize, tag: Option<&str>) -> Value {
    let mut desc = Map::new();
    desc.insert(
        "mediaType".into(),
        "application/vnd.oci.image.manifest.v1+json".into(),
    );
    desc.insert("digest".into(), digest.to_string().into());
    desc.insert("size".into(), size.into());
    if let Some(t) = tag {
        desc.insert("annotations".into(), json!({ REF_NAME: t }));
    }
    Value::Object(desc)
}

/// The index of an existing layout: a JSON object with a `manifests` array.
fn read_index(dir: &Path) -> Result<Value> {
    let path = dir.join(INDEX);
    let bad = |reason: String| -> Error {
        ExportError::BadLayout {
            path: dir.to_path_buf(),
            reason,
        }
        .into()
    };
    let f = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(bad("it has an oci-layout file but no index.json".into()));
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut data = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(f, MAX_INDEX + 1), &mut data)
        .map_err(|e| Error::io(&path, e))?;
    if data.len() as u64 > MAX_INDEX {
        return Err(bad(format!("index.json is larger than {MAX_INDEX} bytes")));
    }
    let v: Value =
        serde_json::from_slice(&data).map_err(|e| bad(format!("index.json is not JSON: {e}")))?;
    if !v.get("manifests").is_some_and(Value::is_array) {
        return Err(bad("index.json has no manifests array".into()));
    }
    Ok(v)
}

/// An exclusive flock on the directory itself, released when the file is dropped.
fn lock_dir(dir: &Path) -> Result<fs::File> {
    let f = fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io(dir, e.into()))?;
    Ok(f)
}

/// Write `data` to `dest` through a synced temporary file renamed over it.
pub(super) fn write_atomic(dest: &Path, data: &[u8]) -> Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = crate::layer_out::output_temp(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(data).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok(())
}

/// fsync a directory, so the renames in it are durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
