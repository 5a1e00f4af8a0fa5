//! Image sources, named with skopeo's syntax: `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
//! `docker-archive:FILE[:N or NAME]`, `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]` (a registry, see
//! [`crate::registry`]). A [`Source`] is opened first (the file or directory exists and is of
//! its transport's kind; a registry answers), then resolves
//! to one image (manifest, config, layer descriptors) and opens blobs by digest. Files are read
//! through a [`Container`]: a directory handle (no symlink leaves it) or an indexed tar archive
//! (members read in place, never extracted).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use layerstore_store::{Digest, Limits};

use crate::error::{Error, Result};
use crate::resolve::{self, Platform, ResolvedImage};

/// A parsed source spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    OciDir {
        path: PathBuf,
        reference: Option<String>,
    },
    OciArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    DockerArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    /// `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`.
    Registry {
        reference: crate::registry::Reference,
    },
}

impl SourceSpec {
    /// Parse `TRANSPORT:PATH[:REF]`.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidSource {
            spec: spec.into(),
            reason: reason.into(),
        };
        if let Some(r) = spec.strip_prefix("docker://") {
            let reference = crate::registry::Reference::parse(r)?;
            return Ok(SourceSpec::Registry { reference });
        }
        let (transport, rest) = spec.split_once(':').ok_or_else(|| {
            bad("expected TRANSPORT:PATH, e.g. oci:DIR:TAG, oci-archive:FILE, docker-archive:FILE")
        })?;
        // The transport is checked before the rest, so `docker:` says what is missing.
        let make: fn(PathBuf, Option<String>) -> SourceSpec = match transport {
            "oci" => |path, reference| SourceSpec::OciDir { path, reference },
            "oci-archive" => |path, reference| SourceSpec::OciArchive { path, reference },
            "docker-archive" => |path, reference| SourceSpec::DockerArchive { path, reference },
            // `docker://` was taken above: `docker:NAME` lacks the slashes.
            "docker" => {
                return Err(bad(
                    "a registry source is docker://HOST[:PORT]/REPO[:TAG|@DIGEST]",
                ));
            }
            _ => {
                return Err(bad(
                    "unknown transport; supported: oci:DIR, oci-archive:FILE, docker-archive:FILE, \
                     docker://HOST/REPO",
                ));
            }
        };
        if rest.is_empty() {
            return Err(bad("empty path"));
        }
        // As in skopeo, the path ends at the first ':' and the rest is the reference, so
        // `docker-archive:a.tar:app:v1` names the image `app:v1`. `oci:DIR@sha256:…` also works.
        let (path, reference) = match (rest.find("@sha256:"), rest.find(':')) {
            (Some(at), Some(colon)) if colon > at => {
                (rest[..at].to_string(), Some(rest[at..].to_string()))
            }
            (_, Some(colon)) => (
                rest[..colon].to_string(),
                Some(rest[colon + 1..].to_string()),
            ),
            (_, None) => (rest.to_string(), None),
        };
        let reference = reference.filter(|r| !r.is_empty());
        Ok(make(PathBuf::from(path), reference))
    }

    /// The reference part, if any.
    pub fn reference(&self) -> Option<&str> {
        match self {
            SourceSpec::OciDir { reference, .. }
            | SourceSpec::OciArchive { reference, .. }
            | SourceSpec::DockerArchive { reference, .. } => reference.as_deref(),
            SourceSpec::Registry { .. } => None,
        }
    }

    /// What an image imported from here records as its origin: `docker://` references in
    /// canonical form (registry, repository, and the tag, or else the digest: the origin is
    /// where updates are looked for, so a tag pinned to a digest records the tag), other specs
    /// as given.
    pub fn origin(&self, spec: &str) -> String {
        match self {
            SourceSpec::Registry { reference } => {
                let mut r = reference.clone();
                if r.tag.is_some() {
                    r.digest = None;
                }
                format!("docker://{r}")
            }
            _ => spec.to_string(),
        }
    }
}

/// An image source, open: the first step of an import. [`Source::open`] checks that the
/// directory or archive exists and is of the kind its transport reads, so a source that cannot
/// be read fails before anything (a store) is created for it.
pub struct Source {
    spec: String,
    parsed: SourceSpec,
    container: Opened,
}

/// What a [`Source`] reads from: files, or a registry (which resolves by itself).
enum Opened {
    Files(Box<dyn Container>),
    Registry(Box<crate::registry::RegistryContainer>),
}

impl Source {
    /// Parse `spec` (`oci:DIR[:REF]`, `oci-archive:FILE[:REF]`, `docker-archive:FILE[:N|NAME]`,
    /// `docker://…`) and open what it names; registries are reached with the default options.
    pub fn open(spec: &str) -> Result<Self> {
        Self::open_with(spec, &crate::registry::RegistryOptions::default())
    }

    /// [`Source::open`], reaching a registry (connecting and authenticating) as `registry` says.
    pub fn open_with(spec: &str, registry: &crate::registry::RegistryOptions) -> Result<Self> {
        let parsed = SourceSpec::parse(spec)?;
        let not_a = |path: &Path, what: &str| Error::NoMatchingImage {
            source_spec: path.display().to_string(),
            reason: format!("not {what}"),
        };
        let expecting = |e: Error, expected: &str| match e {
            Error::NotAnArchive { path, .. } => Error::NotAnArchive {
                path,
                expected: expected.into(),
            },
            e => e,
        };
        let container: Box<dyn Container> = match &parsed {
            SourceSpec::Registry { reference } => {
                return Ok(Source {
                    spec: spec.into(),
                    container: Opened::Registry(Box::new(crate::registry::open(
                        reference, registry,
                    )?)),
                    parsed,
                });
            }
            SourceSpec::OciDir { path, .. } => {
                let c = DirContainer::open(path)?;
                if c.open_optional(OCI_LAYOUT)?.is_none() {
                    return Err(not_a(path, "an OCI layout (no oci-layout file)"));
                }
                Box::new(c)
            }
            SourceSpec::OciArchive { path, .. } => {
                let c = TarContainer::open(path)
                    .map_err(|e| expecting(e, "oci-archive reads an OCI layout in a tar"))?;
                if c.open_optional(OCI_LAYOUT)?.is_none() {
                    return Err(not_a(path, "an OCI layout archive (no oci-layout file)"));
                }
                Box::new(c)
            }
            SourceSpec::DockerArchive { path, .. } => {
                let c = TarContainer::open(path)
                    .map_err(|e| expecting(e, "docker-archive reads the tar docker save writes"))?;
                if c.open_optional(DOCKER_ARCHIVE_MANIFEST)?.is_none() {
                    return Err(not_a(path, "a docker archive (no manifest.json)"));
                }
                Box::new(c)
            }
        };
        Ok(Source {
            spec: spec.into(),
            parsed,
            container: Opened::Files(container),
        })
    }

    /// The spec as given.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The reference part of the spec, if any.
    pub fn reference(&self) -> Option<&str> {
        self.parsed.reference()
    }

    /// The parsed spec.
    pub fn parsed(&self) -> &SourceSpec {
        &self.parsed
    }

    /// What an image imported from here records as its origin ([`SourceSpec::origin`]).
    pub fn origin(&self) -> String {
        self.parsed.origin(&self.spec)
    }

    /// The files of the source.
    pub fn container(&self) -> &dyn Container {
        match &self.container {
            Opened::Files(c) => &**c,
            Opened::Registry(c) => &**c,
        }
    }

    /// Resolve the source to one image. `platform` picks a manifest from an image index (the
    /// host's if `None`); when given, an image built for another platform is an error, so an
    /// explicit choice is never ignored.
    pub fn resolve(&self, platform: Option<&Platform>, limits: &Limits) -> Result<ResolvedImage> {
        let image = self.resolve_from_index(platform.unwrap_or(&Platform::host()), limits)?;
        if let Some(wanted) = platform
            && let Some(actual) = &image.platform
            && !wanted.admits(actual)
        {
            return Err(Error::PlatformMismatch {
                source_spec: self.spec.clone(),
                requested: wanted.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(image)
    }

    /// Resolve the source to one image, using `platform` only to pick from an image index.
    pub(crate) fn resolve_from_index(
        &self,
        platform: &Platform,
        limits: &Limits,
    ) -> Result<ResolvedImage> {
        // A registry container knows its reference; files are resolved by their transport.
        match (&self.container, &self.parsed) {
            (Opened::Registry(r), _) => r.resolve(platform, limits),
            (
                Opened::Files(c),
                SourceSpec::OciDir { reference, .. } | SourceSpec::OciArchive { reference, .. },
            ) => resolve::resolve_oci(&**c, reference.as_deref(), platform, limits),
            (Opened::Files(c), SourceSpec::DockerArchive { reference, .. }) => {
                resolve::resolve_docker(&**c, reference.as_deref(), limits)
            }
            (Opened::Files(_), SourceSpec::Registry { .. }) => Err(Error::InvalidSource {
                spec: self.spec.clone(),
                reason: "a registry source was opened as files".into(),
            }),
        }
    }
}

/// The file that marks an OCI layout.
pub(crate) const OCI_LAYOUT: &str = "oci-layout";
/// The file that lists a docker archive's images.
pub(crate) const DOCKER_ARCHIVE_MANIFEST: &str = "manifest.json";

/// A read-only tree of files an image lives in.
pub trait Container: Send + Sync {
    /// Read a whole file of at most `max` bytes; `Ok(None)` if it does not exist.
    fn read_optional(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>>;
    /// Open a file for streaming; `Ok(None)` if it does not exist. Also returns its size. The
    /// reader is not buffered: callers read in large blocks or buffer it themselves.
    fn open_optional(&self, path: &str) -> Result<Option<(Box<dyn Read + Send + '_>, u64)>>;
    /// For messages.
    fn describe(&self) -> String;
    /// The registry repository this container reads, where layers may be pulled partially.
    fn registry(&self) -> Option<&crate::registry::RegistryContainer> {
        None
    }
}

/// The path of a blob in an OCI layout (the digest is validated, so this is never `..`).
pub fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// A directory, accessed through a capability handle.
pub struct DirContainer {
    dir: Dir,
    path: PathBuf,
}

impl DirContainer {
    /// Open `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let dir =
            Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| Error::io(path, e))?;
        Ok(DirContainer {
            dir,
            path: path.into(),
        })
    }
}

/// A failed read of `member` in an archive or in memory, named as such.
fn member_error(c: &dyn Container, member: &str, e: ReadError) -> Error {
    match e {
        ReadError::Io(source) => Error::ReadMember {
            container: c.describe(),
            member: member.into(),
            source,
        },
        ReadError::TooLarge(limit) => Error::TooLarge {
            what: format!("{member} in {}", c.describe()),
            limit,
        },
    }
}

/// Why [`read_bounded`] failed; the container names the file.
enum ReadError {
    Io(std::io::Error),
    TooLarge(u64),
}

fn read_bounded(mut r: impl Read, max: u64) -> Result<Vec<u8>, ReadError> {
    let mut v = Vec::new();
    r.by_ref()
        .take(max + 1)
        .read_to_end(&mut v)
        .map_err(ReadError::Io)?;
    if v.len() as u64 > max {
        return Err(ReadError::TooLarge(max));
    }
    Ok(v)
}

impl Container for DirContainer {
    fn read_optional(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        match self.open_optional(path)? {
            Some((r, _)) => Ok(Some(read_bounded(r, max).map_err(|e| match e {
                ReadError::Io(e) => Error::io(self.path.join(path), e),
                ReadError::TooLarge(limit) => Error::TooLarge {
                    what: self.path.join(path).display().to_string(),
                    limit,
                },
            })?)),
            None => Ok(None),
        }
    }

    fn open_optional(&self, path: &str) -> Result<Option<(Box<dyn Read + Send + '_>, u64)>> {
        match self.dir.open(path) {
            Ok(f) => {
                let meta = f
                    .metadata()
                    .map_err(|e| Error::io(self.path.join(path), e))?;
                if !meta.is_file() {
                    return Err(Error::io(
                        self.path.join(path),
                        std::io::Error::other("not a regular file"),
                    ));
                }
                Ok(Some((Box::new(f.into_std()), meta.len())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(self.path.join(path), e)),
        }
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A tar archive indexed once; members are read in place with positioned reads.
pub struct TarContainer {
    file: File,
    path: PathBuf,
    members: HashMap<String, (u64, u64)>,
}

impl TarContainer {
    /// Index the regular-file members of the archive at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut members = HashMap::new();
        let mut archive = tar::Archive::new(std::io::BufReader::new(&file));
        // The tar crate's messages quote header fields, which for a file that is not a tar are
        // the file's first bytes: an error from the system is kept, any other is "not a tar".
        let bad = |e: std::io::Error| match e.raw_os_error() {
            Some(_) => Error::io(path, e),
            None => Error::NotAnArchive {
                path: path.into(),
                expected: "an image archive is a tar file".into(),
            },
        };
        for entry in archive.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let kind = entry.header().entry_type();
            if !kind.is_file() {
                continue;
            }
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = name
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_string();
            members.insert(name, (entry.raw_file_position(), entry.size()));
            if members.len() > 1_000_000 {
                return Err(Error::TooLarge {
                    what: format!("member count of {}", path.display()),
                    limit: 1_000_000,
                });
            }
        }
        Ok(TarContainer {
            file,
            path: path.into(),
            members,
        })
    }
}

struct MemberReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(left) as usize;
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "archive member is truncated",
            ));
        }
        self.pos += got as u64;
        Ok(got)
    }
}

impl Container for TarContainer {
    fn read_optional(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        match self.open_optional(path)? {
            Some((r, _)) => Ok(Some(
                read_bounded(r, max).map_err(|e| member_error(self, path, e))?,
            )),
            None => Ok(None),
        }
    }

    fn open_optional(&self, path: &str) -> Result<Option<(Box<dyn Read + Send + '_>, u64)>> {
        let Some(&(pos, size)) = self.members.get(path) else {
            return Ok(None);
        };
        let r = MemberReader {
            file: &self.file,
            pos,
            end: pos + size,
        };
        let _ = (&self.file).seek(SeekFrom::Start(0));
        Ok(Some((Box::new(r), size)))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_like_skopeo() {
        let p = |s: &str| SourceSpec::parse(s).unwrap();
        assert_eq!(
            p("oci:/x/y:base-v1"),
            SourceSpec::OciDir {
                path: "/x/y".into(),
                reference: Some("base-v1".into())
            }
        );
        assert_eq!(
            p("oci:dir"),
            SourceSpec::OciDir {
                path: "dir".into(),
                reference: None
            }
        );
        let d = format!("@sha256:{}", "a".repeat(64));
        assert_eq!(
            p(&format!("oci:/x{d}")),
            SourceSpec::OciDir {
                path: "/x".into(),
                reference: Some(d.clone())
            }
        );
        assert_eq!(
            p("docker-archive:/t/a.tar:1"),
            SourceSpec::DockerArchive {
                path: "/t/a.tar".into(),
                reference: Some("1".into())
            }
        );
        assert_eq!(
            p("docker-archive:a.tar:app:v1"),
            SourceSpec::DockerArchive {
                path: "a.tar".into(),
                reference: Some("app:v1".into())
            }
        );
        assert_eq!(
            p("oci-archive:a.tar"),
            SourceSpec::OciArchive {
                path: "a.tar".into(),
                reference: None
            }
        );
        assert!(SourceSpec::parse("nope").is_err());
        assert!(SourceSpec::parse("ftp:x").is_err());
        assert!(SourceSpec::parse("oci:").is_err());
    }

    #[test]
    fn docker_sources_parse_into_registry_references() {
        let SourceSpec::Registry { reference } =
            SourceSpec::parse("docker://localhost:5000/app/web:v1").unwrap()
        else {
            panic!("docker:// is a registry source");
        };
        assert_eq!(reference.registry, "localhost:5000");
        assert_eq!(reference.repository, "app/web");
        assert_eq!(reference.tag.as_deref(), Some("v1"));
        // Without the slashes it is no transport of its own, and says what the syntax is.
        let refused = SourceSpec::parse("docker:debian:12")
            .unwrap_err()
            .to_string();
        assert!(refused.contains("docker://HOST"), "{refused}");
    }

    #[test]
    fn the_crate_description_mentions_registries_now_that_docker_sources_import() {
        assert!(SourceSpec::parse("docker://debian:12").is_ok());
        let description = env!("CARGO_PKG_DESCRIPTION");
        assert!(
            description.contains("registries") && !description.contains("registries come later"),
            "the description does not promise registries: {description}"
        );
    }
}

/// Files held in memory (for tests and fuzzing: no filesystem involved).
#[derive(Default)]
pub struct MemContainer {
    pub files: HashMap<String, Vec<u8>>,
}

impl MemContainer {
    /// Add a blob under `blobs/sha256/HEX`; returns its digest.
    pub fn add_blob(&mut self, data: Vec<u8>) -> Digest {
        let d = Digest::of(&data);
        self.files.insert(blob_path(&d), data);
        d
    }
}

impl Container for MemContainer {
    fn read_optional(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        match self.files.get(path) {
            Some(d) => Ok(Some(
                read_bounded(&d[..], max).map_err(|e| member_error(self, path, e))?,
            )),
            None => Ok(None),
        }
    }

    fn open_optional(&self, path: &str) -> Result<Option<(Box<dyn Read + Send + '_>, u64)>> {
        Ok(self
            .files
            .get(path)
            .map(|d| (Box::new(&d[..]) as Box<dyn Read + Send>, d.len() as u64)))
    }

    fn describe(&self) -> String {
        "(memory)".into()
    }
}
