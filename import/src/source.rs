//! Image sources, named with skopeo's syntax: `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
//! `docker-archive:FILE[:N or NAME]`. A source resolves to one image (manifest, config, layer
//! descriptors) and opens blobs by digest. Files are read through a [`Container`]: a directory
//! handle (no symlink leaves it) or an indexed tar archive (members read in place, never
//! extracted).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use layerstore_store::Digest;

use crate::error::{Error, Result};

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
        let path = PathBuf::from(path);
        Ok(match transport {
            "oci" => SourceSpec::OciDir { path, reference },
            "oci-archive" => SourceSpec::OciArchive { path, reference },
            "docker-archive" => SourceSpec::DockerArchive { path, reference },
            "docker" => return Err(bad("registry sources are not supported yet")),
            _ => return Err(bad("unknown transport (oci, oci-archive, docker-archive)")),
        })
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

/// A read-only tree of files an image lives in.
pub trait Container: Send + Sync {
    /// Read a whole file of at most `max` bytes; `Ok(None)` if it does not exist.
    fn read_optional(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>>;
    /// Open a file for streaming; `Ok(None)` if it does not exist. Also returns its size. The
    /// reader is not buffered: callers read in large blocks or buffer it themselves.
    fn open_optional(&self, path: &str) -> Result<Option<(Box<dyn Read + Send + '_>, u64)>>;
    /// For messages.
    fn describe(&self) -> String;
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

fn read_bounded(mut r: impl Read, max: u64, what: &str) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    r.by_ref()
        .take(max + 1)
        .read_to_end(&mut v)
        .map_err(|e| Error::io(what, e))?;
    if v.len() as u64 > max {
        return Err(Error::TooLarge {
            what: what.into(),
            limit: max,
        });
    }
    Ok(v)
}

impl Container for DirContainer {
    fn read_optional(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        match self.open_optional(path)? {
            Some((r, _)) => Ok(Some(read_bounded(
                r,
                max,
                &self.path.join(path).to_string_lossy(),
            )?)),
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
        let bad = |e: std::io::Error| Error::InvalidSource {
            spec: path.display().to_string(),
            reason: format!("not a readable tar archive: {e}"),
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
            Some((r, _)) => Ok(Some(read_bounded(
                r,
                max,
                &format!("{}:{path}", self.path.display()),
            )?)),
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
            Some(d) => Ok(Some(read_bounded(&d[..], max, path)?)),
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
