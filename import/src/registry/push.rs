//! Pushing a stored image to a registry: `push IMAGE docker://HOST/REPO[:TAG]`.
//!
//! Each layer is first looked for in the destination by its recorded blob digest (`HEAD`); an
//! image pulled from another repository of the same registry is mounted from there. Only a
//! layer the registry cannot get otherwise is compressed anew from the store (the tar rebuilt
//! byte for byte, so its diff_id is unchanged) into a temporary file, hashed while written, and
//! uploaded (`POST`, then one `PUT`). Compression is reproducible (fixed gzip header, one zstd
//! thread), so pushing the same image again yields the same digests and uploads nothing. When
//! every layer kept its digest the manifest goes up as the exact stored bytes; otherwise its
//! layer descriptors are rewritten and the pushed image has a new manifest digest.
//!
//! Progress (layers found, bytes compressed, bytes uploaded) reaches the caller through
//! [`PushProgress`] ([`push_with`]); the library never prints.

use layerstore_store::{Digest, Store};
use serde::Serialize;

use super::client::{Client, Method, Payload, status_error};
use super::{Reference, RegistryError, RegistryOptions};
use crate::error::{Error, Result};
use crate::layer_out::{
    Annotations, BlobProgress, Compression, LayerCompression, NewLayer, Reindexed, Spool,
    rewrite_manifest, write_layers_with,
};

/// Options for [`push`].
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    pub registry: RegistryOptions,
    /// How a layer blob the registry lacks is compressed (gzip for a Docker schema2 image when
    /// schema2 has no media type for it).
    pub compression: Compression,
    /// Layer blobs larger than this go up in `PATCH` chunks of this size (default
    /// [`CHUNK_BYTES`]).
    pub chunk_bytes: Option<u64>,
}

/// The default chunk of a chunked upload: a blob larger than this is sent in `PATCH` requests
/// of this size, so no request body exceeds it (proxies and registries cap them) and a failed
/// request resends one chunk, not the blob.
pub const CHUNK_BYTES: u64 = 32 << 20;

/// How a layer reached the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerPush {
    /// The registry had the blob.
    Present,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Compressed and uploaded.
    Uploaded,
}

/// One layer of a push.
#[derive(Clone, Debug, Serialize)]
pub struct PushedLayer {
    pub diff_id: Digest,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub how: LayerPush,
    /// The descriptor annotations of a blob compressed for this push.
    #[serde(skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
}

/// What a push did.
#[derive(Clone, Debug, Serialize)]
pub struct PushReport {
    pub destination: String,
    pub manifest_digest: Digest,
    pub layers: Vec<PushedLayer>,
    pub uploaded_bytes: u64,
}

/// Progress of a push; the library never prints. `index` is the layer's position in the
/// image, in the [`BlobProgress`] calls (a layer compressed anew) too. All methods default to
/// doing nothing.
pub trait PushProgress: BlobProgress {
    /// The registry has layer `index`'s blob `digest` already ([`LayerPush::Present`]) or
    /// mounted it ([`LayerPush::Mounted`]): nothing is compressed or uploaded for it.
    fn layer_skipped(&self, _index: usize, _digest: &Digest, _how: LayerPush) {}
    /// Uploading layer `index`'s compressed blob of `size` bytes begins.
    fn upload_start(&self, _index: usize, _size: u64) {}
    /// `bytes` more of layer `index`'s compressed blob were uploaded; for one blob they sum to
    /// its size.
    fn uploaded(&self, _index: usize, _bytes: u64) {}
    /// Layer `index` is in the registry.
    fn layer_pushed(&self, _index: usize, _layer: &PushedLayer) {}
}

impl PushProgress for crate::NoProgress {}

/// Push the stored image `image` (a name or manifest digest) to `dest` (`docker://…`).
pub fn push(store: &Store, image: &str, dest: &str, opts: &PushOptions) -> Result<PushReport> {
    push_with(store, image, dest, opts, &crate::NoProgress)
}

/// [`push`], reporting to `progress`.
pub fn push_with(
    store: &Store,
    image: &str,
    dest: &str,
    opts: &PushOptions,
    progress: &dyn PushProgress,
) -> Result<PushReport> {
    let reference = dest
        .strip_prefix("docker://")
        .ok_or_else(|| Error::InvalidSource {
            spec: dest.into(),
            reason: "a push destination is docker://HOST[:PORT]/REPO[:TAG]".into(),
        })
        .and_then(|r| Ok(Reference::parse(r)?))?;
    let tag = match (&reference.tag, &reference.digest) {
        (Some(t), None) => t.clone(),
        _ => {
            return Err(Error::InvalidSource {
                spec: dest.into(),
                reason: "a push destination names a tag, not a digest".into(),
            });
        }
    };
    let info = store.resolve_image(image)?;
    let diff_ids: Vec<Digest> = info.layers.iter().map(|l| l.diff_id).collect();
    // The layers stay readable while they are compressed, whatever gc does meanwhile.
    let _pin = store.pin_for_read(&format!("push {image} to {dest}"), &diff_ids)?;
    let (manifest, config) = store.image_documents(&info)?;
    let client = super::connect(&reference, &opts.registry)?;
    let repo = reference.repository.as_str();
    // Other repositories of this registry a blob can be mounted from: where the store saw it
    // (the blob info cache), else where the image came from.
    let origin_repo = info
        .origin
        .as_deref()
        .and_then(|o| o.strip_prefix("docker://"))
        .and_then(|o| Reference::parse(o).ok())
        .filter(|o| o.registry == reference.registry && o.repository != reference.repository)
        .map(|o| o.repository);
    let mount_sources = |digest: &Digest| -> Result<Vec<String>> {
        let prefix = format!("{}/", reference.registry);
        let mut repos: Vec<String> = store
            .blob_locations(digest)?
            .into_iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .filter(|r| *r != reference.repository)
            .collect();
        if let Some(o) = &origin_repo
            && !repos.contains(o)
        {
            repos.push(o.clone());
        }
        Ok(repos)
    };
    let try_mount = |digest: &Digest| -> Result<bool> {
        for from in mount_sources(digest)? {
            if mount(&client, repo, digest, &from)? {
                return Ok(true);
            }
        }
        Ok(false)
    };

    let docker = info.manifest_media_type == "application/vnd.docker.distribution.manifest.v2+json";
    // Docker schema2 has no zstd layer type.
    let compression = match opts.compression {
        c if docker && c.docker_media_type().is_none() => Compression::Gzip,
        c => c,
    };
    let compression = LayerCompression::new(compression, None)?;
    let media_type = |c: Compression| match docker {
        true => c
            .docker_media_type()
            .expect("schema2 pushes use a compression schema2 has"),
        false => c.oci_media_type(),
    };
    // First what the registry has or can mount; the rest is compressed in parallel.
    let mut found = Vec::new();
    for (i, l) in info.layers.iter().enumerate() {
        let how = if blob_exists(&client, repo, &l.blob_digest)? {
            Some(LayerPush::Present)
        } else if try_mount(&l.blob_digest)? {
            Some(LayerPush::Mounted)
        } else {
            None
        };
        if let Some(how) = how {
            progress.layer_skipped(i, &l.blob_digest, how);
        }
        found.push(how);
    }
    let (missing_index, missing): (Vec<usize>, Vec<(Digest, LayerCompression)>) = info
        .layers
        .iter()
        .zip(&found)
        .enumerate()
        .filter(|(_, (_, f))| f.is_none())
        .map(|(i, (l, _))| (i, (l.diff_id, compression)))
        .unzip();
    let tmp = std::env::temp_dir();
    let mut blobs = write_layers_with(
        store,
        &missing,
        Spool::Anonymous(&tmp),
        &Reindexed {
            progress,
            index: &missing_index,
        },
    )?
    .into_iter();
    let mut layers = Vec::new();
    let mut uploaded_bytes = 0;
    for (i, (l, f)) in info.layers.iter().zip(found).enumerate() {
        if let Some(how) = f {
            let p = pushed(l, l.blob_digest, &l.media_type, l.blob_size, how);
            progress.layer_pushed(i, &p);
            layers.push(p);
            continue;
        }
        let blob = blobs.next().expect("one blob per missing layer");
        let how = if blob_exists(&client, repo, &blob.digest)? {
            LayerPush::Present
        } else {
            let chunk = opts.chunk_bytes.unwrap_or(CHUNK_BYTES).max(1);
            progress.upload_start(i, blob.size);
            if blob.size > chunk {
                let sent = |n| progress.uploaded(i, n);
                upload_chunked(
                    &client,
                    repo,
                    &blob.digest,
                    blob.file(),
                    blob.size,
                    chunk,
                    &sent,
                )?;
            } else {
                upload(&client, repo, &blob.digest, Payload::File(blob.file()))?;
                progress.uploaded(i, blob.size);
            }
            uploaded_bytes += blob.size;
            LayerPush::Uploaded
        };
        let mt = media_type(blob.compression.compression);
        let mut p = pushed(l, blob.digest, mt, blob.size, how);
        p.annotations = blob.annotations;
        progress.layer_pushed(i, &p);
        layers.push(p);
    }
    let config_there =
        blob_exists(&client, repo, &info.config_digest)? || try_mount(&info.config_digest)?;
    if !config_there {
        upload(&client, repo, &info.config_digest, Payload::Bytes(&config))?;
        uploaded_bytes += config.len() as u64;
    }
    let unchanged = layers
        .iter()
        .zip(&info.layers)
        .all(|(p, l)| p.digest == l.blob_digest);
    let manifest = if unchanged {
        manifest
    } else {
        let new: Vec<Option<NewLayer<'_>>> = layers
            .iter()
            .zip(&info.layers)
            .map(|(p, l)| {
                (p.digest != l.blob_digest).then_some(NewLayer {
                    media_type: &p.media_type,
                    digest: p.digest,
                    size: p.size,
                    annotations: &p.annotations,
                })
            })
            .collect();
        rewrite_manifest(&manifest, &new, false)?
    };
    let manifest_digest = Digest::of(&manifest);
    let url = client.url(&format!("v2/{repo}/manifests/{tag}"));
    let resp = client.request(
        Method::Put,
        &url,
        repo,
        true,
        &[("Content-Type", info.manifest_media_type.as_str())],
        Payload::Bytes(&manifest),
    )?;
    let status = resp.status().as_u16();
    if status != 201 && status != 200 {
        return Err(upload_error(&url, status, resp).into());
    }
    let mut digests: Vec<Digest> = layers.iter().map(|l| l.digest).collect();
    digests.push(info.config_digest);
    let location = format!("{}/{}", reference.registry, reference.repository);
    if let Err(e) = store.record_blob_locations(&digests, &location) {
        log::warn!("cannot remember the blobs of {location}: {e}");
    }
    Ok(PushReport {
        destination: format!("docker://{reference}"),
        manifest_digest,
        layers,
        uploaded_bytes,
    })
}

fn pushed(
    l: &layerstore_store::ImageLayer,
    digest: Digest,
    media_type: &str,
    size: u64,
    how: LayerPush,
) -> PushedLayer {
    PushedLayer {
        diff_id: l.diff_id,
        digest,
        media_type: media_type.into(),
        size,
        how,
        annotations: Annotations::new(),
    }
}

fn upload_error(
    url: &url::Url,
    status: u16,
    resp: ureq::http::Response<ureq::Body>,
) -> RegistryError {
    match status_error(url, status, resp) {
        RegistryError::Status {
            url,
            status,
            message,
        } => RegistryError::Upload {
            url,
            status,
            message,
        },
        other => other,
    }
}

fn blob_exists(client: &Client, repo: &str, digest: &Digest) -> Result<bool> {
    let url = client.url(&format!("v2/{repo}/blobs/{digest}"));
    let resp = client.request(Method::Head, &url, repo, true, &[], Payload::None)?;
    match resp.status().as_u16() {
        200 => Ok(true),
        404 => Ok(false),
        s => Err(status_error(&url, s, resp).into()),
    }
}

/// Ask the registry to mount `digest` from repository `from`; false if it would not.
fn mount(client: &Client, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
    let mut url = client.url(&format!("v2/{repo}/blobs/uploads/"));
    url.query_pairs_mut()
        .append_pair("mount", &digest.to_string())
        .append_pair("from", from);
    let resp = match client.request(Method::Post, &url, repo, true, &[], Payload::Bytes(&[])) {
        Ok(r) => r,
        // No pull access to `from` (a token server grants what the user may): upload instead.
        Err(RegistryError::Unauthorized { reason, .. }) => {
            log::debug!("{repo}: cannot mount {digest} from {from}: {reason}");
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    // 202 means the registry started a plain upload instead; it expires unused.
    Ok(resp.status().as_u16() == 201)
}

/// Upload one blob: `POST` for a session, then a single `PUT` with the digest.
fn upload(client: &Client, repo: &str, digest: &Digest, body: Payload<'_>) -> Result<()> {
    let url = client.url(&format!("v2/{repo}/blobs/uploads/"));
    let resp = client.request(Method::Post, &url, repo, true, &[], Payload::Bytes(&[]))?;
    let status = resp.status().as_u16();
    if status != 202 {
        return Err(upload_error(&url, status, resp).into());
    }
    let mut put = upload_location(&url, status, &resp)?;
    put.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    let resp = client.request(
        Method::Put,
        &put,
        repo,
        true,
        &[("Content-Type", "application/octet-stream")],
        body,
    )?;
    let status = resp.status().as_u16();
    if status != 201 {
        return Err(upload_error(&put, status, resp).into());
    }
    Ok(())
}

/// Where an upload session goes on: the `Location` of `resp`, relative to `url`.
fn upload_location(
    url: &url::Url,
    status: u16,
    resp: &ureq::http::Response<ureq::Body>,
) -> Result<url::Url, RegistryError> {
    let location = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| RegistryError::Upload {
            url: url.to_string(),
            status,
            message: "no Location for the upload".into(),
        })?;
    url.join(location).map_err(|e| RegistryError::Upload {
        url: url.to_string(),
        status,
        message: format!("a bad upload Location {location:?}: {e}"),
    })
}

/// Upload a blob of `size` bytes from `file` in chunks of `chunk` bytes: `POST` for a
/// session, a `PATCH` per chunk with its `Content-Range` (each answer names where the next
/// goes), then a `PUT` with the digest and no body. `sent` hears of each chunk accepted.
fn upload_chunked(
    client: &Client,
    repo: &str,
    digest: &Digest,
    file: &std::fs::File,
    size: u64,
    chunk: u64,
    sent: &dyn Fn(u64),
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let url = client.url(&format!("v2/{repo}/blobs/uploads/"));
    let resp = client.request(Method::Post, &url, repo, true, &[], Payload::Bytes(&[]))?;
    let status = resp.status().as_u16();
    if status != 202 {
        return Err(upload_error(&url, status, resp).into());
    }
    let mut at = upload_location(&url, status, &resp)?;
    let mut buf = vec![0u8; chunk.min(size) as usize];
    let mut offset = 0u64;
    while offset < size {
        let n = chunk.min(size - offset) as usize;
        file.read_exact_at(&mut buf[..n], offset)
            .map_err(|e| Error::io(format!("the compressed layer {digest}"), e))?;
        let range = format!("{offset}-{}", offset + n as u64 - 1);
        let resp = client.request(
            Method::Patch,
            &at,
            repo,
            true,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
            ],
            Payload::Bytes(&buf[..n]),
        )?;
        let status = resp.status().as_u16();
        if status != 202 {
            return Err(upload_error(&at, status, resp).into());
        }
        at = upload_location(&at, status, &resp)?;
        offset += n as u64;
        sent(n as u64);
    }
    at.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    let resp = client.request(Method::Put, &at, repo, true, &[], Payload::Bytes(&[]))?;
    let status = resp.status().as_u16();
    if status != 201 {
        return Err(upload_error(&at, status, resp).into());
    }
    Ok(())
}
