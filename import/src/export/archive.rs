//! `oci-archive:FILE` and `docker-archive:FILE`: a tar written to a temporary file beside FILE
//! and renamed over it when whole, so FILE is either untouched or complete.
//!
//! Reproducible: members in sorted name order, ustar headers with mode 0644 (directories 0755),
//! owner 0:0 without names, mtime 0.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::layout::{OCI_LAYOUT, OCI_LAYOUT_JSON, manifest_descriptor, new_index, sync_dir};
use super::{ExportError, Prepared};
use crate::error::{Error, Result};
use crate::layer_out::LayerBlob;

/// A checked archive destination.
pub(super) struct ArchiveTarget {
    path: PathBuf,
    dir: PathBuf,
}

/// Check that `path` can be written: its directory exists, and it is absent or a regular file
/// (a device, fifo or directory is refused, never replaced). A symlink is followed: the archive
/// replaces the file it points to.
pub(super) fn check(path: &Path) -> Result<ArchiveTarget> {
    let bad = |reason: String| -> Error {
        ExportError::InvalidDestination {
            spec: path.display().to_string(),
            reason,
        }
        .into()
    };
    let path = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path)
            .map_err(|e| bad(format!("a symlink that does not resolve: {e}")))?,
        _ => path.to_path_buf(),
    };
    if path.file_name().is_none() {
        return Err(bad("names no file".into()));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(bad(format!("directory {} does not exist", dir.display())));
    }
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => return Err(bad("is a directory".into())),
        Ok(m) if !m.is_file() => return Err(bad("exists and is not a regular file".into())),
        _ => {}
    }
    Ok(ArchiveTarget { path, dir })
}

/// A member's content: `None` for a directory.
pub(super) type Members<'a> = BTreeMap<String, Option<Body<'a>>>;

pub(super) enum Body<'a> {
    Bytes(Vec<u8>),
    Blob(&'a LayerBlob),
}

impl ArchiveTarget {
    /// The directory FILE is in (where temporary files go).
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write the members and rename the archive into place; returns its size.
    pub(super) fn write(self, members: Members<'_>) -> Result<u64> {
        let mut tmp =
            crate::layer_out::output_temp(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let io_err = |e| Error::io(&self.path, e);
        let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp.as_file_mut()));
        for (name, body) in &members {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).map_err(io_err)?;
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match body {
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    h.set_cksum();
                    tar.append(&h, io::empty()).map_err(io_err)?;
                }
                Some(body) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    match body {
                        Body::Bytes(b) => {
                            h.set_size(b.len() as u64);
                            h.set_cksum();
                            tar.append(&h, &b[..]).map_err(io_err)?;
                        }
                        Body::Blob(blob) => {
                            h.set_size(blob.size);
                            h.set_cksum();
                            tar.append(&h, blob.reader()?).map_err(io_err)?;
                        }
                    }
                }
            }
        }
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(io_err)?;
        let f = tmp.as_file();
        let size = f.metadata().map_err(io_err)?.len();
        f.sync_all().map_err(io_err)?;
        tmp.persist(&self.path)
            .map_err(|e| Error::io(&self.path, e.error))?;
        sync_dir(&self.dir)?;
        Ok(size)
    }
}

/// An OCI layout holding the image, as an archive's members.
pub(super) fn oci_members<'a>(p: &'a Prepared, tag: Option<&str>) -> Result<Members<'a>> {
    let (manifest, manifest_digest) = p.manifest.as_ref().expect("an OCI export has a manifest");
    let mut index = new_index();
    index["manifests"]
        .as_array_mut()
        .expect("a new index has a manifests array")
        .push(manifest_descriptor(*manifest_digest, manifest.len(), tag));
    let mut m = Members::new();
    m.insert("blobs/".into(), None);
    m.insert("blobs/sha256/".into(), None);
    m.insert(
        OCI_LAYOUT.into(),
        Some(Body::Bytes(OCI_LAYOUT_JSON.to_vec())),
    );
    m.insert(
        "index.json".into(),
        Some(Body::Bytes(
            serde_json::to_vec(&index).expect("a JSON value serializes"),
        )),
    );
    let blob = |d: layerstore_store::Digest| format!("blobs/sha256/{}", d.hex());
    for b in &p.blobs {
        m.insert(blob(b.digest), Some(Body::Blob(b)));
    }
    m.insert(blob(p.config_digest), Some(Body::Bytes(p.config.clone())));
    m.insert(blob(*manifest_digest), Some(Body::Bytes(manifest.clone())));
    Ok(m)
}

/// One image of a docker-archive's `manifest.json`, keys as `docker save` writes them.
#[derive(Serialize)]
struct DockerEntry<'a> {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<&'a str>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// What `docker save` writes: `manifest.json`, the config as `HEX.json`, each layer blob as
/// `HEX.tar` (HEX of its digest; for an uncompressed layer, of the diff_id).
pub(super) fn docker_members<'a>(p: &'a Prepared, name: Option<&'a str>) -> Result<Members<'a>> {
    let layer_name = |b: &LayerBlob| format!("{}.tar", b.digest.hex());
    let entry = DockerEntry {
        config: format!("{}.json", p.config_digest.hex()),
        repo_tags: name.into_iter().collect(),
        layers: p
            .layer_blobs
            .iter()
            .map(|&i| layer_name(&p.blobs[i]))
            .collect(),
    };
    let mut m = Members::new();
    m.insert(
        "manifest.json".into(),
        Some(Body::Bytes(
            serde_json::to_vec(&[entry]).expect("the manifest serializes"),
        )),
    );
    m.insert(
        format!("{}.json", p.config_digest.hex()),
        Some(Body::Bytes(p.config.clone())),
    );
    for b in &p.blobs {
        m.insert(layer_name(b), Some(Body::Blob(b)));
    }
    Ok(m)
}
