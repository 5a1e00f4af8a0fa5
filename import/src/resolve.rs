//! Resolving a source to one image: OCI layouts (directory or archive, with nested indexes and
//! platform selection) and docker-archive `manifest.json`.

use std::collections::BTreeMap;

use layerstore_store::{Digest, Limits};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layer::media_type_compression;
use crate::source::{Container, DOCKER_ARCHIVE_MANIFEST, OCI_LAYOUT, blob_path};

/// A platform to select from an image index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The entry of `index` for this platform (a variant, when given, must match too).
    pub(crate) fn pick<'a>(
        &self,
        index: &'a ImageIndex,
    ) -> Option<&'a oci_spec::image::Descriptor> {
        index.manifests().iter().find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == self.os
                    && p.architecture().to_string() == self.architecture
                    && (self.variant.is_none() || p.variant().as_deref() == self.variant.as_deref())
            })
        })
    }

    /// The platform this process runs on, in OCI terms.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: parts.get(2).map(|v| v.to_string()),
            }),
            _ => Err(Error::InvalidSource {
                spec: s.into(),
                reason: "platform must be os/arch[/variant]".into(),
            }),
        }
    }
}

impl Platform {
    /// Whether an image built for `image` is one for this platform. A variant counts only when
    /// both name one: most configs leave it out.
    pub fn admits(&self, image: &Platform) -> bool {
        self.os == image.os
            && self.architecture == image.architecture
            && match (&self.variant, &image.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A layer as the manifest lists it.
#[derive(Clone, Debug)]
pub struct LayerDescriptor {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Where to read it in the container.
    pub path: String,
    pub diff_id: Digest,
}

/// One image, verified down to its config.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layers: Vec<LayerDescriptor>,
    pub created: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The platform the config names (`os`, `architecture`, `variant`), if it names one.
    pub platform: Option<Platform>,
    /// The name the source gives the image (ref annotation, repo tag).
    pub default_name: Option<String>,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn digest(s: &str, what: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e: layerstore_store::Error| Error::BadDocument {
            what: what.into(),
            reason: e.to_string(),
        })
}

/// `data` is the blob its descriptor names: it hashes to `d` and, where the descriptor says, has
/// `size` bytes.
pub(crate) fn verify_blob(data: &[u8], d: &Digest, size: Option<u64>) -> Result<()> {
    let actual = Digest::of(data);
    if actual != *d {
        return Err(Error::DigestMismatch {
            digest: d.to_string(),
            actual: actual.to_string(),
        });
    }
    if let Some(s) = size
        && s != data.len() as u64
    {
        return Err(Error::SizeMismatch {
            digest: d.to_string(),
            expected: s,
            actual: data.len() as u64,
        });
    }
    Ok(())
}

/// Read a blob of known digest and size, verifying both.
fn read_blob(c: &dyn Container, d: &Digest, size: Option<u64>, limits: &Limits) -> Result<Vec<u8>> {
    if let Some(s) = size
        && s > limits.max_json_bytes
    {
        return Err(Error::TooLarge {
            what: format!("blob {d}"),
            limit: limits.max_json_bytes,
        });
    }
    let data = c
        .read_optional(&blob_path(d), limits.max_json_bytes)?
        .ok_or_else(|| Error::BlobMissing {
            digest: d.to_string(),
        })?;
    verify_blob(&data, d, size)?;
    Ok(data)
}

fn parse_json<T: for<'de> Deserialize<'de>>(data: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| Error::BadJson {
        what: what.into(),
        source: e,
    })
}

/// Resolve `reference` in an OCI layout.
pub fn resolve_oci(
    c: &dyn Container,
    reference: Option<&str>,
    platform: &Platform,
    limits: &Limits,
) -> Result<ResolvedImage> {
    let no_match = |reason: String| Error::NoMatchingImage {
        source_spec: c.describe(),
        reason,
    };
    let layout = c
        .read_optional(OCI_LAYOUT, 4096)?
        .ok_or_else(|| no_match("not an OCI layout (no oci-layout file)".into()))?;
    let layout: serde_json::Value = parse_json(&layout, OCI_LAYOUT)?;
    if layout
        .get("imageLayoutVersion")
        .and_then(|v| v.as_str())
        .is_none()
    {
        return Err(Error::BadDocument {
            what: "oci-layout".into(),
            reason: "no imageLayoutVersion".into(),
        });
    }
    let index_bytes = c
        .read_optional("index.json", limits.max_json_bytes)?
        .ok_or_else(|| no_match("no index.json".into()))?;
    let index: ImageIndex = parse_json(&index_bytes, "index.json")?;
    let descs = index.manifests();
    let chosen = match reference {
        Some(r) if r.starts_with("@sha256:") || r.starts_with("sha256:") => {
            let d = digest(r.trim_start_matches('@'), "reference")?;
            match descs
                .iter()
                .find(|m| m.digest().to_string() == d.to_string())
            {
                Some(m) => (d, m.media_type().to_string(), Some(m.size()), None),
                None => (d, String::new(), None, None),
            }
        }
        Some(r) => {
            let matches: Vec<_> = descs
                .iter()
                .filter(|m| {
                    m.annotations()
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .is_some_and(|n| n == r)
                })
                .collect();
            match matches[..] {
                [m] => (
                    digest(m.digest().as_ref(), "index.json")?,
                    m.media_type().to_string(),
                    Some(m.size()),
                    Some(r.to_string()),
                ),
                [] => return Err(no_match(format!("no image tagged {r:?}"))),
                _ => {
                    return Err(no_match(format!(
                        "{} images are tagged {r:?}",
                        matches.len()
                    )));
                }
            }
        }
        None => match descs.as_slice() {
            [m] => (
                digest(m.digest().as_ref(), "index.json")?,
                m.media_type().to_string(),
                Some(m.size()),
                m.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .cloned(),
            ),
            [] => return Err(no_match("the layout holds no image".into())),
            _ => {
                let names: Vec<_> = descs
                    .iter()
                    .filter_map(|m| {
                        m.annotations()
                            .as_ref()
                            .and_then(|a| a.get(REF_NAME))
                            .cloned()
                    })
                    .collect();
                return Err(no_match(format!(
                    "the layout holds {} images; name one ({})",
                    descs.len(),
                    names.join(", ")
                )));
            }
        },
    };
    let (mut d, mut media_type, mut size, default_name) = chosen;
    // Follow nested indexes to a manifest for the platform.
    for _depth in 0..4 {
        let data = read_blob(c, &d, size, limits)?;
        if media_type.is_empty() {
            let v: serde_json::Value = parse_json(&data, &format!("blob {d}"))?;
            media_type = v
                .get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| {
                    if v.get("manifests").is_some() {
                        OCI_INDEX.into()
                    } else {
                        OCI_MANIFEST.into()
                    }
                });
        }
        match media_type.as_str() {
            OCI_INDEX | DOCKER_LIST => {
                let idx: ImageIndex = parse_json(&data, &format!("image index {d}"))?;
                let m = platform.pick(&idx).ok_or_else(|| {
                    no_match(format!(
                        "index {d} has no manifest for {}/{}",
                        platform.os, platform.architecture
                    ))
                })?;
                d = digest(m.digest().as_ref(), &format!("image index {d}"))?;
                media_type = m.media_type().to_string();
                size = Some(m.size());
            }
            OCI_MANIFEST | DOCKER_MANIFEST => {
                return finish_manifest(c, d, media_type, data, default_name, limits);
            }
            other => {
                return Err(Error::BadDocument {
                    what: format!("descriptor {d}"),
                    reason: format!("unsupported media type {other:?}"),
                });
            }
        }
    }
    Err(Error::BadDocument {
        what: format!("image index {d}"),
        reason: "indexes nested too deeply".into(),
    })
}

/// Parse a verified manifest, fetch and verify its config, and list its layers.
pub(crate) fn finish_manifest(
    c: &dyn Container,
    manifest_digest: Digest,
    media_type: String,
    manifest: Vec<u8>,
    default_name: Option<String>,
    limits: &Limits,
) -> Result<ResolvedImage> {
    let what = format!("manifest {manifest_digest}");
    let m: ImageManifest = parse_json(&manifest, &what)?;
    let config_digest = digest(m.config().digest().as_ref(), &what)?;
    let config = read_blob(c, &config_digest, Some(m.config().size()), limits)?;
    let facts = parse_config(&config, &config_digest)?;
    let diff_ids = facts.diff_ids;
    if diff_ids.len() != m.layers().len() {
        return Err(Error::BadDocument {
            what: format!("config {config_digest}"),
            reason: format!(
                "lists {} diff_ids for {} layers",
                diff_ids.len(),
                m.layers().len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (l, diff_id) in m.layers().iter().zip(diff_ids) {
        let d = digest(l.digest().as_ref(), &what)?;
        let mt = l.media_type().to_string();
        if media_type_compression(&mt).is_none() {
            return Err(Error::Compression {
                digest: d.to_string(),
                reason: format!("unsupported layer media type {mt:?}"),
            });
        }
        layers.push(LayerDescriptor {
            path: blob_path(&d),
            digest: d,
            media_type: mt,
            size: l.size(),
            diff_id,
        });
    }
    Ok(ResolvedImage {
        manifest,
        manifest_digest,
        manifest_media_type: media_type,
        config,
        config_digest,
        layers,
        created: facts.created,
        labels: facts.labels,
        platform: facts.platform,
        default_name,
    })
}

/// What an import takes from an image config.
struct ConfigFacts {
    diff_ids: Vec<Digest>,
    created: Option<String>,
    labels: BTreeMap<String, String>,
    platform: Option<Platform>,
}

/// The platform fields of a config, read apart from the typed config so that an unusual
/// spelling leaves the platform unknown rather than failing the import.
#[derive(Deserialize)]
struct ConfigPlatform {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

fn parse_config(config: &[u8], d: &Digest) -> Result<ConfigFacts> {
    let what = format!("config {d}");
    let cfg: ImageConfiguration = parse_json(config, &what)?;
    let mut diff_ids = Vec::new();
    for s in cfg.rootfs().diff_ids() {
        diff_ids.push(digest(s, &what)?);
    }
    let labels = cfg
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .map(|l| l.into_iter().collect())
        .unwrap_or_default();
    let platform = match serde_json::from_slice::<ConfigPlatform>(config) {
        Ok(ConfigPlatform {
            os: Some(os),
            architecture: Some(architecture),
            variant,
        }) if !os.is_empty() && !architecture.is_empty() => Some(Platform {
            os,
            architecture,
            variant: variant.filter(|v| !v.is_empty()),
        }),
        _ => None,
    };
    Ok(ConfigFacts {
        diff_ids,
        created: cfg.created().clone(),
        labels,
        platform,
    })
}

/// A docker image name in full, as docker and skopeo normalize it: the registry `docker.io`
/// unless the first component looks like a host, `library/` for a one-component name on
/// docker.io, and the tag `latest` unless a tag or digest is given.
pub fn full_docker_name(name: &str) -> String {
    let (repo, suffix) = match name.split_once('@') {
        Some((repo, digest)) => (repo, format!("@{digest}")),
        None => match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, format!(":{tag}")),
            _ => (name, ":latest".to_string()),
        },
    };
    let (host, path) = match repo.split_once('/') {
        Some((host, path)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            (host, path)
        }
        _ => ("docker.io", repo),
    };
    let host = if host == "index.docker.io" {
        "docker.io"
    } else {
        host
    };
    if host == "docker.io" && !path.contains('/') {
        format!("{host}/library/{path}{suffix}")
    } else {
        format!("{host}/{path}{suffix}")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SynthDescriptor {
    media_type: String,
    size: u64,
    digest: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SynthManifest {
    schema_version: u32,
    media_type: &'static str,
    config: SynthDescriptor,
    layers: Vec<SynthDescriptor>,
}

/// Resolve an image in a docker-archive (`docker save` format): `reference` is an index into
/// `manifest.json` or one of its repo tags.
pub fn resolve_docker(
    c: &dyn Container,
    reference: Option<&str>,
    limits: &Limits,
) -> Result<ResolvedImage> {
    let no_match = |reason: String| Error::NoMatchingImage {
        source_spec: c.describe(),
        reason,
    };
    let data = c
        .read_optional(DOCKER_ARCHIVE_MANIFEST, limits.max_json_bytes)?
        .ok_or_else(|| no_match("not a docker archive (no manifest.json)".into()))?;
    let entries: Vec<DockerManifestEntry> = parse_json(&data, "manifest.json")?;
    let tags = |e: &DockerManifestEntry| e.repo_tags.clone().unwrap_or_default();
    // What the archive holds, for a message that helps pick one.
    let held = || {
        let all: Vec<String> = entries.iter().flat_map(tags).collect();
        if all.is_empty() {
            format!(
                "its {} images have no names; pick one by number",
                entries.len()
            )
        } else {
            format!("it holds {}", all.join(", "))
        }
    };
    let (entry, name) = match reference {
        None => match &entries[..] {
            [e] => (e, tags(e).first().cloned()),
            [] => return Err(no_match("the archive holds no image".into())),
            _ => {
                return Err(no_match(format!(
                    "the archive holds {} images; name one ({})",
                    entries.len(),
                    held()
                )));
            }
        },
        Some(r) => match r.parse::<usize>() {
            Ok(n) => {
                let e = entries
                    .get(n)
                    .ok_or_else(|| no_match(format!("no image number {n}; {}", held())))?;
                (e, tags(e).first().cloned())
            }
            Err(_) => {
                // As skopeo does, names compare in full: `debian:12` is
                // `docker.io/library/debian:12`, and a name without a tag is `:latest`.
                let wanted = full_docker_name(r);
                let e = entries
                    .iter()
                    .find(|e| tags(e).iter().any(|t| full_docker_name(t) == wanted))
                    .ok_or_else(|| no_match(format!("no image named {r:?}; {}", held())))?;
                (e, Some(r.to_string()))
            }
        },
    };
    let config = c
        .read_optional(&entry.config, limits.max_json_bytes)?
        .ok_or_else(|| Error::BlobMissing {
            digest: entry.config.clone(),
        })?;
    let config_digest = Digest::of(&config);
    let facts = parse_config(&config, &config_digest)?;
    let diff_ids = facts.diff_ids;
    if diff_ids.len() != entry.layers.len() {
        return Err(Error::BadDocument {
            what: "manifest.json".into(),
            reason: format!(
                "config lists {} diff_ids for {} layers",
                diff_ids.len(),
                entry.layers.len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
        let (mut r, size) = c.open_optional(path)?.ok_or_else(|| Error::BlobMissing {
            digest: path.clone(),
        })?;
        let mut head = [0u8; 4];
        let read_err = |source| Error::ReadMember {
            container: c.describe(),
            member: path.clone(),
            source,
        };
        let n = std::io::Read::read(&mut r, &mut head).map_err(read_err)?;
        let head = &head[..n];
        let (media_type, compressed) = if head.starts_with(&[0x1f, 0x8b]) {
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", true)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            ("application/vnd.oci.image.layer.v1.tar+zstd", true)
        } else {
            ("application/vnd.docker.image.rootfs.diff.tar", false)
        };
        drop(r);
        let d = match path.strip_prefix("blobs/sha256/") {
            Some(hex) => digest(&format!("sha256:{hex}"), "manifest.json")?,
            // An uncompressed layer's blob digest is its diff_id (verified while importing).
            None if !compressed => diff_id,
            None => {
                let (mut r, _) = c.open_optional(path)?.ok_or_else(|| Error::BlobMissing {
                    digest: path.clone(),
                })?;
                let mut h = layerstore_store::DigestHasher::default();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = std::io::Read::read(&mut r, &mut buf).map_err(read_err)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                h.finish()
            }
        };
        layers.push(LayerDescriptor {
            digest: d,
            media_type: media_type.into(),
            size,
            path: path.clone(),
            diff_id,
        });
    }
    let manifest = SynthManifest {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config: SynthDescriptor {
            media_type: "application/vnd.docker.container.image.v1+json".into(),
            size: config.len() as u64,
            digest: config_digest.to_string(),
        },
        layers: layers
            .iter()
            .map(|l| SynthDescriptor {
                media_type: l.media_type.clone(),
                size: l.size,
                digest: l.digest.to_string(),
            })
            .collect(),
    };
    let manifest = serde_json::to_vec(&manifest).expect("manifest serializes");
    Ok(ResolvedImage {
        manifest_digest: Digest::of(&manifest),
        manifest,
        manifest_media_type: DOCKER_MANIFEST.into(),
        config,
        config_digest,
        layers,
        created: facts.created,
        labels: facts.labels,
        platform: facts.platform,
        default_name: name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_names_are_compared_in_full_as_skopeo_does() {
        for (short, full) in [
            ("debian", "docker.io/library/debian:latest"),
            ("debian:base-v2", "docker.io/library/debian:base-v2"),
            ("library/debian:12", "docker.io/library/debian:12"),
            ("team/app", "docker.io/team/app:latest"),
            ("index.docker.io/team/app:1", "docker.io/team/app:1"),
            ("quay.io/team/tool:1", "quay.io/team/tool:1"),
            ("localhost/app", "localhost/app:latest"),
            ("host:5000/app", "host:5000/app:latest"),
            ("host:5000/app:2", "host:5000/app:2"),
            ("app@sha256:ab", "docker.io/library/app@sha256:ab"),
        ] {
            assert_eq!(full_docker_name(short), full, "{short}");
            assert_eq!(full_docker_name(full), full, "{full} is already full");
        }
    }

    #[test]
    fn a_platform_admits_images_without_a_variant() {
        let p = |s| Platform::parse(s).unwrap();
        assert!(p("linux/arm64").admits(&p("linux/arm64/v8")));
        assert!(p("linux/arm64/v8").admits(&p("linux/arm64")));
        assert!(!p("linux/arm/v7").admits(&p("linux/arm/v6")));
        assert!(!p("linux/arm64").admits(&p("linux/amd64")));
        assert_eq!(p("linux/arm/v7").to_string(), "linux/arm/v7");
    }
}
