//! Pulling from OCI registries (the distribution API): `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`.
//!
//! A registry source is a [`Container`] like a layout: [`resolve`] fetches the manifest (an index
//! is narrowed to the platform's manifest, fetched by digest) and the config, every document
//! verified against its digest and size and limited to the store's `json-bytes`; layer blobs are
//! then opened on demand by the import pipeline, only for layers whose diff_id the store lacks,
//! `--jobs` at a time, and streamed through its digest and diff_id checks, so the download
//! overlaps inflating and writing. Layout:
//!
//! - [`reference`]: parsing `HOST/REPO:TAG@DIGEST` with Docker's defaults.
//! - [`auth`]: credentials (podman's lookup order) and `WWW-Authenticate` challenges.
//! - `client`: HTTP (ureq, rustls), auth, redirects by hand, retries with backoff.
//! - `blob`: a blob reader that resumes a dropped connection with `Range`.
//! - [`ranges`]: multi-range reads of a blob (`multipart/byteranges`), for partial pulls.
//! - [`tags`]: a repository's tags (paginated) and a tag's manifest digest, for `latest`.
//! - [`push`]: pushing a stored image (blobs the registry has or can mount are not uploaded;
//!   others are rebuilt from the store and compressed reproducibly).
//!
//! Why ureq and threads rather than an async client: the pipeline is thread-per-layer already
//! (a blocking reader feeding inflate and parse threads), so a blocking `Read` per layer slots in
//! without a runtime, and `--jobs` bounds the connections the same way it bounds the work.

pub mod auth;
mod blob;
mod client;
pub mod push;
pub mod ranges;
pub mod reference;
pub mod tags;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use layerstore_store::{Digest, Limits};
use oci_spec::image::{ImageIndex, ImageManifest};

use crate::error::{Error, Result};
use crate::resolve::{self, Platform, ResolvedImage};
use crate::source::Container;
pub use auth::Credentials;
use client::Client;
pub use reference::Reference;

/// How to reach and authenticate to registries.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// `--creds`: used for every registry this pull talks to.
    pub creds: Option<Credentials>,
    /// `--authfile`: the only auth file consulted when given.
    pub authfile: Option<PathBuf>,
    /// `--tls-verify`: with false, TLS certificates are not verified and plain HTTP is allowed.
    pub tls_verify: bool,
    /// `--offline`: refuse to reach any registry, before any connection is attempted.
    pub offline: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            creds: None,
            authfile: None,
            tls_verify: true,
            offline: false,
        }
    }
}

/// What can go wrong talking to a registry. Each variant names the URL, registry or blob.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("invalid registry reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("{registry}: not reaching the registry: --offline was given")]
    Offline { registry: String },
    #[error("invalid credentials: {reason}")]
    BadCredentials { reason: String },
    #[error("auth file {path}: {reason}")]
    BadAuthFile { path: PathBuf, reason: String },
    #[error("{url}: request failed")]
    Transport {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{url}: TLS handshake failed (a registry without TLS needs --tls-verify=false)")]
    TlsHandshake {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: still failing after {attempts} attempts (last: {last})")]
    RetriesExhausted {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("{registry}: access denied: {reason}")]
    Unauthorized { registry: String, reason: String },
    #[error("{url}: redirect loop after {hops} hops")]
    RedirectLoop { url: String, hops: usize },
    #[error("{registry}/{repository}: manifest {reference} not found: {message}")]
    ManifestUnknown {
        registry: String,
        repository: String,
        reference: String,
        message: String,
    },
    #[error(
        "{url}: Content-Type {content_type:?} does not match the manifest's mediaType {media_type:?}"
    )]
    ContentTypeMismatch {
        url: String,
        content_type: String,
        media_type: String,
    },
    #[error("{url}: unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType { url: String, media_type: String },
    #[error("blob {digest}: the registry sends {sent} bytes, its descriptor says {expected}")]
    BlobTooLong {
        digest: String,
        expected: u64,
        sent: u64,
    },
    #[error("{url}: the registry answered {status} to an upload: {message}")]
    Upload {
        url: String,
        status: u16,
        message: String,
    },
    #[error("blob {digest}: cannot resume at byte {offset}: {reason}")]
    ResumeFailed {
        digest: String,
        offset: u64,
        reason: String,
    },
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// One repository of one registry, as a source of blobs.
pub struct RegistryContainer {
    client: Client,
    reference: Reference,
    /// Descriptor sizes of the blobs this image names: a blob is read up to its size.
    sizes: Mutex<HashMap<Digest, u64>>,
}

fn path_digest(path: &str) -> Option<Digest> {
    format!("sha256:{}", path.strip_prefix("blobs/sha256/")?)
        .parse()
        .ok()
}

impl Container for RegistryContainer {
    fn read_optional(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let Some(d) = path_digest(path) else {
            return Ok(None);
        };
        let size = self.size_of(&d).unwrap_or(max);
        blob::read_small(&self.client, &self.reference.repository, &d, size, max)
    }

    fn open_optional(&self, path: &str) -> Result<Option<(Box<dyn Read + Send + '_>, u64)>> {
        let Some(d) = path_digest(path) else {
            return Ok(None);
        };
        let Some(size) = self.size_of(&d) else {
            return Err(Error::BlobMissing {
                digest: d.to_string(),
            });
        };
        Ok(
            blob::BlobReader::open(&self.client, &self.reference.repository, &d, size)?
                .map(|r| (Box::new(r) as Box<dyn Read + Send>, size)),
        )
    }

    fn describe(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn registry(&self) -> Option<&RegistryContainer> {
        Some(self)
    }
}

impl RegistryContainer {
    fn size_of(&self, d: &Digest) -> Option<u64> {
        self.sizes.lock().expect("not poisoned").get(d).copied()
    }

    /// Fetch a manifest or index by tag or digest, limited to `limits.max_json_bytes`. Returns
    /// the exact bytes, their media type and their digest (the sha256 of those bytes, checked
    /// against `expect` when the reference is a digest or a descriptor names it).
    fn fetch_manifest(
        &self,
        reference: &str,
        expect: Option<(Digest, Option<u64>)>,
        limits: &Limits,
    ) -> Result<(Vec<u8>, String, Digest)> {
        let repo = &self.reference.repository;
        let url = self.client.url(&format!("v2/{repo}/manifests/{reference}"));
        let max = limits.max_json_bytes;
        if let Some((d, Some(size))) = &expect
            && *size > max
        {
            return Err(Error::TooLarge {
                what: format!("manifest {d}"),
                limit: max,
            });
        }
        let mut attempt = 1;
        let (data, content_type) = loop {
            let resp = self
                .client
                .get(&url, repo, &[("Accept", client::MANIFEST_ACCEPT)])?;
            let status = resp.status().as_u16();
            if status == 404 {
                let body = client::error_body(resp);
                return Err(RegistryError::ManifestUnknown {
                    registry: self.reference.registry.clone(),
                    repository: repo.clone(),
                    reference: reference.into(),
                    message: client::registry_message(&body),
                }
                .into());
            }
            if status != 200 {
                return Err(client::status_error(&url, status, resp).into());
            }
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            if let Some(n) = header("content-length").and_then(|v| v.trim().parse::<u64>().ok())
                && n > max
            {
                return Err(Error::TooLarge {
                    what: format!("manifest {reference} of {}", self.describe()),
                    limit: max,
                });
            }
            let content_type = header("content-type")
                .map(|c| {
                    c.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            let mut data = Vec::new();
            match resp
                .into_body()
                .into_reader()
                .take(max + 1)
                .read_to_end(&mut data)
            {
                Ok(_) => break (data, content_type),
                // A manifest is small: a dropped connection fetches it again.
                Err(e) if attempt < client::ATTEMPTS => {
                    log::debug!("{url}: {e}; fetching again");
                    std::thread::sleep(self.client.backoff(attempt));
                    attempt += 1;
                }
                Err(e) => return Err(Error::io(url.as_str(), e)),
            }
        };
        if data.len() as u64 > max {
            return Err(Error::TooLarge {
                what: format!("manifest {reference} of {}", self.describe()),
                limit: max,
            });
        }
        let digest = Digest::of(&data);
        if let Some((d, size)) = expect {
            resolve::verify_blob(&data, &d, size)?;
        }
        let v: serde_json::Value = serde_json::from_slice(&data).map_err(|e| Error::BadJson {
            what: format!("manifest {digest}"),
            source: e,
        })?;
        let declared = v.get("mediaType").and_then(|m| m.as_str());
        let media_type = match declared {
            Some(m) if !content_type.is_empty() && m != content_type => {
                return Err(RegistryError::ContentTypeMismatch {
                    url: url.to_string(),
                    content_type,
                    media_type: m.into(),
                }
                .into());
            }
            Some(m) => m.to_string(),
            None => content_type,
        };
        if ![OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].contains(&media_type.as_str()) {
            return Err(RegistryError::UnsupportedMediaType {
                url: url.to_string(),
                media_type,
            }
            .into());
        }
        Ok((data, media_type, digest))
    }
}

/// Remember where the blobs of an image pulled from `reference` live (the blob info cache a
/// push consults). A cache: failing to write it is logged, not an error.
pub fn remember_blobs(
    store: &layerstore_store::Store,
    reference: &Reference,
    report: &crate::ImportReport,
) {
    let mut digests: Vec<Digest> = report.layers.iter().map(|l| l.blob_digest).collect();
    digests.push(report.config_digest);
    let location = format!("{}/{}", reference.registry, reference.repository);
    if let Err(e) = store.record_blob_locations(&digests, &location) {
        log::warn!("cannot remember the blobs of {location}: {e}");
    }
}

/// Connect to the registry `reference` names (credentials as `opts` says); the source is then
/// resolved with [`RegistryContainer::resolve`].
pub fn open(reference: &Reference, opts: &RegistryOptions) -> Result<RegistryContainer> {
    Ok(RegistryContainer {
        client: connect(reference, opts)?,
        reference: reference.clone(),
        sizes: Mutex::new(HashMap::new()),
    })
}

/// Connect to the registry `reference` names and resolve it to one image (an index narrowed to
/// `platform`), with its config.
pub fn resolve(
    reference: &Reference,
    opts: &RegistryOptions,
    platform: &Platform,
    limits: &Limits,
) -> Result<(RegistryContainer, ResolvedImage)> {
    let container = open(reference, opts)?;
    let image = container.resolve(platform, limits)?;
    Ok((container, image))
}

/// Credentials for `reference` as `opts` says, and a client for its registry.
fn connect(reference: &Reference, opts: &RegistryOptions) -> Result<Client> {
    // Before credentials are looked up or a socket is opened: offline means no network at all.
    if opts.offline {
        return Err(RegistryError::Offline {
            registry: reference.registry.clone(),
        }
        .into());
    }
    let creds = match (&opts.creds, &opts.authfile) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(f)) => {
            if !f.exists() {
                return Err(RegistryError::BadAuthFile {
                    path: f.clone(),
                    reason: "no such file".into(),
                }
                .into());
            }
            auth::lookup(
                std::slice::from_ref(f),
                &reference.registry,
                &reference.repository,
            )?
        }
        (None, None) => auth::lookup(
            &auth::default_auth_files(&|k| std::env::var_os(k)),
            &reference.registry,
            &reference.repository,
        )?,
    };
    log::debug!(
        "{}: credentials {:?}",
        reference.registry,
        creds.as_ref().map(|c| &c.username)
    );
    Ok(Client::connect(
        reference.api_host(),
        &reference.registry,
        creds,
        opts.tls_verify,
    )?)
}

impl RegistryContainer {
    /// Resolve the reference this container was opened for to one image (an index narrowed to
    /// `platform`), fetching the manifest and the config, never a layer.
    pub fn resolve(&self, platform: &Platform, limits: &Limits) -> Result<ResolvedImage> {
        let container = self;
        let reference = &self.reference;
        let (mut data, mut media_type, mut digest) = container.fetch_manifest(
            &reference.manifest_reference(),
            reference.digest.map(|d| (d, None)),
            limits,
        )?;
        for _depth in 0..4 {
            match media_type.as_str() {
                OCI_INDEX | DOCKER_LIST => {
                    let idx: ImageIndex =
                        serde_json::from_slice(&data).map_err(|e| Error::BadJson {
                            what: format!("image index {digest}"),
                            source: e,
                        })?;
                    let m = platform.pick(&idx).ok_or_else(|| Error::NoMatchingImage {
                        source_spec: container.describe(),
                        reason: format!(
                            "index {digest} has no manifest for {}/{}",
                            platform.os, platform.architecture
                        ),
                    })?;
                    let d: Digest =
                        m.digest()
                            .as_ref()
                            .parse()
                            .map_err(|e: layerstore_store::Error| Error::BadDocument {
                                what: format!("image index {digest}"),
                                reason: e.to_string(),
                            })?;
                    (data, media_type, digest) = container.fetch_manifest(
                        &d.to_string(),
                        Some((d, Some(m.size()))),
                        limits,
                    )?;
                }
                _ => {
                    // The config's descriptor size bounds its fetch; the layers' bound theirs.
                    let m: ImageManifest =
                        serde_json::from_slice(&data).map_err(|e| Error::BadJson {
                            what: format!("manifest {digest}"),
                            source: e,
                        })?;
                    {
                        let mut sizes = container.sizes.lock().expect("not poisoned");
                        for desc in std::iter::once(m.config()).chain(m.layers()) {
                            if let Ok(d) = desc.digest().as_ref().parse::<Digest>() {
                                sizes.insert(d, desc.size());
                            }
                        }
                    }
                    return resolve::finish_manifest(
                        container,
                        digest,
                        media_type,
                        data,
                        Some(reference.default_name()),
                        limits,
                    );
                }
            }
        }
        Err(Error::BadDocument {
            what: format!("image index {digest}"),
            reason: "indexes nested too deeply".into(),
        })
    }
}
