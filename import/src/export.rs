//! Exporting a stored image: `export IMAGE oci:DIR[:TAG] | oci-archive:FILE[:TAG] |
//! docker-archive:FILE[:NAME[:TAG]]`.
//!
//! Every layer is rebuilt from the index (sha256 = diff_id, checked while it is written) and
//! compressed in parallel by [`crate::layer_out`]. The config is the exact bytes the image was
//! imported with, so its digest (the image ID) and the diff_ids it lists never change.
//!
//! Which compression: `--compress` (with `--level`) for every layer; without it, each layer in
//! an OCI layout gets the compression it was imported with (read from its media type, gzip if
//! unknown), and a docker-archive holds uncompressed tars, as `docker save` writes. A layer
//! whose new blob has the digest the image recorded is *kept*; when every layer is kept and the
//! stored manifest is an OCI one, the stored manifest bytes are written, so the manifest digest
//! is preserved too (always for uncompressed layers and for blobs this code compressed before;
//! gzip written by another implementation cannot be reproduced). Otherwise the manifest is the
//! stored one with the new layer descriptors, as an OCI manifest (a Docker schema2 manifest is
//! converted: an OCI layout holds OCI manifests).
//!
//! Reproducible: the same image exported twice with the same options gives the same bytes.
//! Archives have fixed member headers (mode 0644/0755, owner 0, mtime 0, no user names) and
//! members in sorted order; JSON is written compactly with keys in a fixed order.
//!
//! Crash safety and failures: an archive is written to a temporary file beside FILE and renamed
//! over it at the end; an OCI layout gets its blobs first (each a temporary file renamed to its
//! digest), then `index.json`, replaced by rename. Destinations and options are checked before
//! anything is written; an export that fails removes what it wrote (a layout it created, blobs
//! it added to an existing layout, its temporary files).
//!
//! Progress (each blob's compressed bytes) reaches the caller through
//! [`layer_out::BlobProgress`] ([`export_with`]); the library never prints.

mod archive;
mod layout;

use std::path::{Path, PathBuf};

use layerstore_store::{Digest, Store};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::layer_out::{self, Compression, LayerBlob, LayerCompression, NewLayer};

/// What can be wrong with an export's destination.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("invalid export destination {spec:?}: {reason}")]
    InvalidDestination { spec: String, reason: String },
    /// `oci:DIR` names a directory that holds something other than an OCI layout.
    #[error("{path} is neither an OCI layout nor an empty directory")]
    NotALayout { path: PathBuf },
    /// An existing OCI layout that cannot be added to.
    #[error("OCI layout {path}: {reason}")]
    BadLayout { path: PathBuf, reason: String },
}

/// Where an export goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// `oci:DIR[:TAG]`: added to the layout in DIR, or a new layout.
    OciDir { path: PathBuf, tag: Option<String> },
    /// `oci-archive:FILE[:TAG]`: a tar of a new layout holding this image.
    OciArchive { path: PathBuf, tag: Option<String> },
    /// `docker-archive:FILE[:NAME[:TAG]]`: the tar `docker save` writes.
    DockerArchive {
        path: PathBuf,
        /// `NAME:TAG` as written in `RepoTags` (`:latest` added when no tag is given).
        name: Option<String>,
    },
}

impl Destination {
    /// Parse `TRANSPORT:PATH[:REF]` as skopeo does (the path ends at the first `:`), checking
    /// the reference: an OCI `TAG` is a valid `org.opencontainers.image.ref.name`, a docker
    /// `NAME[:TAG]` a valid Docker reference without a digest.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &str| -> Error {
            ExportError::InvalidDestination {
                spec: spec.chars().take(300).collect(),
                reason: reason.into(),
            }
            .into()
        };
        let (transport, rest) = spec.split_once(':').ok_or_else(|| {
            bad("expected oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME[:TAG]]")
        })?;
        let (path, reference) = match rest.split_once(':') {
            Some((p, r)) => (p, Some(r)),
            None => (rest, None),
        };
        if !["oci", "oci-archive", "docker-archive"].contains(&transport) {
            return Err(bad(
                "unknown transport; export writes oci:DIR, oci-archive:FILE, docker-archive:FILE",
            ));
        }
        if path.is_empty() {
            return Err(bad("empty path"));
        }
        if path.contains('\0') {
            return Err(bad("the path holds a NUL byte"));
        }
        let reference = reference.filter(|r| !r.is_empty());
        let path = PathBuf::from(path);
        Ok(match transport {
            "docker-archive" => {
                let name = match reference {
                    None => None,
                    Some(r) => Some(docker_name(r).map_err(|reason| bad(&reason))?),
                };
                Destination::DockerArchive { path, name }
            }
            _ => {
                if let Some(t) = reference
                    && !valid_ref_name(t)
                {
                    return Err(bad(
                        "a tag is components of A-Z a-z 0-9 joined by - . _ : @ + or --, \
                         separated by /",
                    ));
                }
                let tag = reference.map(str::to_string);
                if transport == "oci" {
                    Destination::OciDir { path, tag }
                } else {
                    Destination::OciArchive { path, tag }
                }
            }
        })
    }

    /// The file or directory written.
    pub fn path(&self) -> &Path {
        match self {
            Destination::OciDir { path, .. }
            | Destination::OciArchive { path, .. }
            | Destination::DockerArchive { path, .. } => path,
        }
    }
}

/// A valid `org.opencontainers.image.ref.name` (the image-spec's grammar): components of
/// `[A-Za-z0-9]+` joined by `-._:@+` or `--`, separated by `/`.
fn valid_ref_name(s: &str) -> bool {
    s.len() <= 1024
        && s.split('/').all(|component| {
            let b = component.as_bytes();
            let mut i = 0;
            let mut need_alnum = true;
            while i < b.len() {
                if b[i].is_ascii_alphanumeric() {
                    need_alnum = false;
                    i += 1;
                } else if need_alnum {
                    return false;
                } else if b[i..].starts_with(b"--") {
                    need_alnum = true;
                    i += 2;
                } else if b"-._:@+".contains(&b[i]) {
                    need_alnum = true;
                    i += 1;
                } else {
                    return false;
                }
            }
            !need_alnum
        })
}

/// `NAME[:TAG]` checked as a Docker reference and written with its tag (`latest` if none), as
/// `docker save` writes `RepoTags`.
fn docker_name(r: &str) -> std::result::Result<String, String> {
    let parsed = crate::registry::Reference::parse(r).map_err(|e| e.to_string())?;
    if parsed.digest.is_some() {
        return Err("a docker-archive names its image NAME[:TAG], not by digest".into());
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    Ok(if last.contains(':') {
        r.to_string()
    } else {
        format!("{r}:latest")
    })
}

/// Options for [`export`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportOptions {
    /// `--compress` and `--level`: every layer so; `None`: each as imported in an OCI layout,
    /// uncompressed in a docker-archive.
    pub compression: Option<LayerCompression>,
}

/// One exported layer.
#[derive(Clone, Debug, Serialize)]
pub struct ExportedLayer {
    pub diff_id: Digest,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub compression: Compression,
    /// The blob has the digest the image recorded for this layer.
    pub kept: bool,
}

/// What an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    /// The destination as given.
    pub destination: String,
    /// The stored image's manifest digest.
    pub image: Digest,
    /// The config digest (the image ID), always the stored one.
    pub config_digest: Digest,
    /// The exported manifest's digest (OCI forms; a docker-archive has no manifest).
    pub manifest_digest: Option<Digest>,
    /// The exported manifest is the stored one, byte for byte.
    pub manifest_kept: bool,
    pub layers: Vec<ExportedLayer>,
    /// Bytes written: the archive's size, or the blobs and index a layout gained.
    pub bytes: u64,
}

/// What the destination writers get: the image's documents and its layer blobs.
struct Prepared {
    config: Vec<u8>,
    config_digest: Digest,
    /// The OCI manifest and its digest (OCI destinations).
    manifest: Option<(Vec<u8>, Digest)>,
    /// One per distinct blob, in the image's order of first use.
    blobs: Vec<LayerBlob>,
    /// Per image layer, the index of its blob in `blobs`.
    layer_blobs: Vec<usize>,
}

/// Export the stored image `image` (a name, or a manifest digest or ID, or a unique prefix of
/// one) to `dest` (see [`Destination::parse`]).
pub fn export(
    store: &Store,
    image: &str,
    dest: &str,
    opts: &ExportOptions,
) -> Result<ExportReport> {
    export_with(store, image, dest, opts, &crate::NoProgress)
}

/// [`export`], reporting each blob written to `progress`, under the index of the first image
/// layer it is written for (a layer listed twice is written once).
pub fn export_with(
    store: &Store,
    image: &str,
    dest: &str,
    opts: &ExportOptions,
    progress: &dyn layer_out::BlobProgress,
) -> Result<ExportReport> {
    let destination = Destination::parse(dest)?;
    if let Some(c) = &opts.compression {
        c.check()?;
    }
    // The destination is checked before any layer is compressed.
    let mut target = match &destination {
        Destination::OciDir { path, .. } => Target::Layout(layout::Layout::check(path)?),
        Destination::OciArchive { path, .. } | Destination::DockerArchive { path, .. } => {
            Target::Archive(archive::check(path)?)
        }
    };
    let info = store.find_image(image)?;
    // A reader that may not write the store pins nothing (a gc cannot run without write access).
    let _pin = store.pin_image_if_writable(&info)?;
    let (stored_manifest, config) = store.image_documents(&info)?;
    if Digest::of(&config) != info.config_digest {
        return Err(Error::BadDocument {
            what: format!("stored config of {}", info.manifest_digest),
            reason: "its bytes do not have the config digest".into(),
        });
    }
    let docker = matches!(destination, Destination::DockerArchive { .. });
    let wanted: Vec<LayerCompression> = info
        .layers
        .iter()
        .map(|l| match opts.compression {
            Some(c) => c,
            None if docker => LayerCompression::default_for(Compression::None),
            None => LayerCompression::default_for(
                Compression::from_media_type(&l.media_type).unwrap_or(Compression::Gzip),
            ),
        })
        .collect();
    // A layer listed twice (an empty layer, say) is written once.
    let mut jobs: Vec<(Digest, LayerCompression)> = Vec::new();
    // Per job, the first image layer it is for (what progress names it by).
    let mut first_layer = Vec::new();
    let mut layer_blobs = Vec::new();
    for (n, (l, c)) in info.layers.iter().zip(&wanted).enumerate() {
        let job = (l.diff_id, *c);
        let i = jobs.iter().position(|j| *j == job).unwrap_or_else(|| {
            jobs.push(job);
            first_layer.push(n);
            jobs.len() - 1
        });
        layer_blobs.push(i);
    }
    if let Target::Layout(l) = &mut target {
        l.make_dirs()?;
    }
    let spool = target.spool_dir();
    let blobs = layer_out::write_layers_with(
        store,
        &jobs,
        if target.named_blobs() {
            layer_out::Spool::Named(&spool)
        } else {
            layer_out::Spool::Anonymous(&spool)
        },
        &layer_out::Reindexed {
            progress,
            index: &first_layer,
        },
    )?;
    let mut layers = Vec::new();
    for (l, &i) in info.layers.iter().zip(&layer_blobs) {
        let b = &blobs[i];
        let c = b.compression.compression;
        layers.push(ExportedLayer {
            diff_id: l.diff_id,
            digest: b.digest,
            media_type: match docker {
                true => c.docker_media_type().unwrap_or(c.oci_media_type()),
                false => c.oci_media_type(),
            }
            .to_string(),
            size: b.size,
            compression: c,
            kept: b.digest == l.blob_digest,
        });
    }
    let oci_manifest = "application/vnd.oci.image.manifest.v1+json";
    let (manifest, manifest_kept) = if docker {
        (None, false)
    } else if info.manifest_media_type == oci_manifest && layers.iter().all(|l| l.kept) {
        (Some(stored_manifest), true)
    } else {
        let empty = layer_out::Annotations::new();
        let new: Vec<Option<NewLayer<'_>>> = layers
            .iter()
            .zip(&layer_blobs)
            .map(|(l, &i)| {
                (!l.kept).then_some(NewLayer {
                    media_type: &l.media_type,
                    digest: l.digest,
                    size: l.size,
                    annotations: if blobs[i].annotations.is_empty() {
                        &empty
                    } else {
                        &blobs[i].annotations
                    },
                })
            })
            .collect();
        (
            Some(layer_out::rewrite_manifest(&stored_manifest, &new, true)?),
            false,
        )
    };
    let manifest = manifest.map(|m| {
        let d = Digest::of(&m);
        (m, d)
    });
    let manifest_digest = manifest.as_ref().map(|(_, d)| *d);
    let prepared = Prepared {
        config,
        config_digest: info.config_digest,
        manifest,
        blobs,
        layer_blobs,
    };
    let bytes = match (target, &destination) {
        (Target::Layout(l), Destination::OciDir { tag, .. }) => {
            l.write(prepared, tag.as_deref())?
        }
        (Target::Archive(a), Destination::OciArchive { tag, .. }) => {
            a.write(archive::oci_members(&prepared, tag.as_deref())?)?
        }
        (Target::Archive(a), Destination::DockerArchive { name, .. }) => {
            a.write(archive::docker_members(&prepared, name.as_deref())?)?
        }
        _ => unreachable!("the target was made from the destination"),
    };
    Ok(ExportReport {
        destination: dest.to_string(),
        image: info.manifest_digest,
        config_digest: info.config_digest,
        manifest_digest,
        manifest_kept,
        layers,
        bytes,
    })
}

/// A checked destination, ready to be written.
enum Target {
    Layout(layout::Layout),
    Archive(archive::ArchiveTarget),
}

impl Target {
    /// Where layer blobs are spooled: beside where they end up (one file system, no `/tmp`).
    fn spool_dir(&self) -> PathBuf {
        match self {
            Target::Layout(l) => l.blob_dir(),
            Target::Archive(a) => a.dir().to_path_buf(),
        }
    }

    /// Blobs of a layout are renamed into place; an archive copies them.
    fn named_blobs(&self) -> bool {
        matches!(self, Target::Layout(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_as_skopeo_names_them() {
        let p = |s: &str| Destination::parse(s).unwrap();
        assert_eq!(
            p("oci:/tmp/x:app-v2"),
            Destination::OciDir {
                path: "/tmp/x".into(),
                tag: Some("app-v2".into())
            }
        );
        assert_eq!(
            p("oci-archive:a.tar"),
            Destination::OciArchive {
                path: "a.tar".into(),
                tag: None
            }
        );
        assert_eq!(
            p("docker-archive:a.tar:app"),
            Destination::DockerArchive {
                path: "a.tar".into(),
                name: Some("app:latest".into())
            }
        );
        assert_eq!(
            p("docker-archive:a.tar:localhost:5000/team/app:v1"),
            Destination::DockerArchive {
                path: "a.tar".into(),
                name: Some("localhost:5000/team/app:v1".into())
            }
        );
    }

    #[test]
    fn invalid_destinations_are_refused_with_the_reason() {
        for spec in [
            "a.tar",
            "docker://host/app:v1",
            "dir:/tmp/x",
            "oci:",
            "oci::tag",
            "oci:/tmp/x:bad tag",
            "oci:/tmp/x:-lead",
            "oci:/tmp/x:a//b",
            "oci-archive:a.tar:trail-",
            "docker-archive:a.tar:UPPER:v1",
            "docker-archive:a.tar:app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "docker-archive:a.tar:app:bad tag",
            "oci:a\0b",
        ] {
            match Destination::parse(spec) {
                Err(Error::Export(ExportError::InvalidDestination { .. })) => {}
                other => panic!("{spec:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ref_names_follow_the_image_spec_grammar() {
        for ok in ["v1", "app-v2", "a--b", "1.0+build", "team/app:v1", "x@y"] {
            assert!(valid_ref_name(ok), "{ok}");
        }
        for bad in ["", "a-", ".a", "a/", "a b", "a---b", "ä"] {
            assert!(!valid_ref_name(bad), "{bad}");
        }
    }
}
