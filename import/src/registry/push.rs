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

use std::io::{self, Write};

use layerstore_store::{Digest, DigestHasher, Store};
use serde::Serialize;

use super::client::{Client, Method, Payload, status_error};
use super::{Reference, RegistryError, RegistryOptions};
use crate::error::{Error, Result};

/// How a layer blob the registry lacks is compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PushCompression {
    #[default]
    Gzip,
    Zstd,
}

/// Options for [`push`].
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    pub registry: RegistryOptions,
    pub compression: PushCompression,
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
}

/// What a push did.
#[derive(Clone, Debug, Serialize)]
pub struct PushReport {
    pub destination: String,
    pub manifest_digest: Digest,
    pub layers: Vec<PushedLayer>,
    pub uploaded_bytes: u64,
}

/// Push the stored image `image` (a name or manifest digest) to `dest` (`docker://…`).
pub fn push(store: &Store, image: &str, dest: &str, opts: &PushOptions) -> Result<PushReport> {
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
    let mut layers = Vec::new();
    let mut uploaded_bytes = 0;
    for l in &info.layers {
        if blob_exists(&client, repo, &l.blob_digest)? {
            layers.push(pushed(
                l,
                l.blob_digest,
                &l.media_type,
                l.blob_size,
                LayerPush::Present,
            ));
            continue;
        }
        if try_mount(&l.blob_digest)? {
            layers.push(pushed(
                l,
                l.blob_digest,
                &l.media_type,
                l.blob_size,
                LayerPush::Mounted,
            ));
            continue;
        }
        let compression = if docker {
            // Docker schema2 has no zstd layer type.
            PushCompression::Gzip
        } else {
            opts.compression
        };
        let (file, digest, size) = compress_layer(store, &l.diff_id, compression)?;
        let media_type = match (docker, compression) {
            (true, _) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            (false, PushCompression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (false, PushCompression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
        };
        let how = if blob_exists(&client, repo, &digest)? {
            LayerPush::Present
        } else {
            let chunk = opts.chunk_bytes.unwrap_or(CHUNK_BYTES).max(1);
            if size > chunk {
                upload_chunked(&client, repo, &digest, &file, size, chunk)?;
            } else {
                upload(&client, repo, &digest, Payload::File(&file))?;
            }
            uploaded_bytes += size;
            LayerPush::Uploaded
        };
        layers.push(pushed(l, digest, media_type, size, how));
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
        rewrite_manifest(&manifest, &layers)?
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
/// goes), then a `PUT` with the digest and no body.
fn upload_chunked(
    client: &Client,
    repo: &str,
    digest: &Digest,
    file: &std::fs::File,
    size: u64,
    chunk: u64,
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

/// Counts and hashes what passes on to the file.
struct HashingWriter<W> {
    inner: W,
    hasher: DigestHasher,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The layer's tar, rebuilt from the store and compressed into an anonymous temporary file;
/// returns the file, the blob digest and its size.
fn compress_layer(
    store: &Store,
    diff_id: &Digest,
    compression: PushCompression,
) -> Result<(std::fs::File, Digest, u64)> {
    let what = format!("layer {diff_id}");
    let file = tempfile::tempfile().map_err(|e| Error::io(&what, e))?;
    let out = HashingWriter {
        inner: io::BufWriter::with_capacity(
            1 << 20,
            file.try_clone().map_err(|e| Error::io(&what, e))?,
        ),
        hasher: DigestHasher::default(),
        count: 0,
    };
    let out = match compression {
        PushCompression::Gzip => {
            // No name, mtime 0: the same tar always compresses to the same blob.
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(out, flate2::Compression::default());
            store.export_layer_tar(diff_id, &mut gz)?;
            gz.finish().map_err(|e| Error::io(&what, e))?
        }
        PushCompression::Zstd => {
            let mut z =
                zstd::stream::write::Encoder::new(out, 3).map_err(|e| Error::io(&what, e))?;
            store.export_layer_tar(diff_id, &mut z)?;
            z.finish().map_err(|e| Error::io(&what, e))?
        }
    };
    let HashingWriter {
        inner,
        hasher,
        count,
    } = out;
    inner
        .into_inner()
        .map_err(|e| Error::io(&what, e.into_error()))?;
    Ok((file, hasher.finish(), count))
}

/// The stored manifest with the layer descriptors of `layers` (digest, size, media type); all
/// else (config, annotations) kept; keys come out sorted.
fn rewrite_manifest(manifest: &[u8], layers: &[PushedLayer]) -> Result<Vec<u8>> {
    let bad = |reason: &str| Error::BadDocument {
        what: "stored manifest".into(),
        reason: reason.into(),
    };
    let mut v: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| Error::BadJson {
            what: "stored manifest".into(),
            source: e,
        })?;
    let descs = v
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
        d.insert("mediaType".into(), l.media_type.clone().into());
        d.insert("digest".into(), l.digest.to_string().into());
        d.insert("size".into(), l.size.into());
        // A URL list belongs to the old blob.
        d.remove("urls");
    }
    Ok(serde_json::to_vec(&v).expect("a JSON value serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_manifest_keeps_all_but_the_recompressed_layer_descriptors() {
        let old = Digest::of(b"old");
        let new = Digest::of(b"new");
        let config = Digest::of(b"config");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config.to_string(), "size": 6},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": old.to_string(), "size": 3,
                        "urls": ["https://elsewhere.example/blob"],
                        "annotations": {"a": "b"}}],
            "annotations": {"x": "y"}
        });
        let layers = [PushedLayer {
            diff_id: old,
            digest: new,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: 42,
            how: LayerPush::Uploaded,
        }];
        let out = rewrite_manifest(&serde_json::to_vec(&manifest).unwrap(), &layers).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["config"], manifest["config"]);
        assert_eq!(v["annotations"], manifest["annotations"]);
        let l = &v["layers"][0];
        assert_eq!(l["digest"], new.to_string());
        assert_eq!(l["size"], 42);
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(l["annotations"], manifest["layers"][0]["annotations"]);
        assert!(l.get("urls").is_none(), "the old blob's URLs are dropped");
        assert!(
            rewrite_manifest(&out, &[]).is_err(),
            "layer counts must agree"
        );
    }
}
