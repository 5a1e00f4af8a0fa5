//! Registry references as `docker://` names them: `HOST[:PORT]/REPO[:TAG][@sha256:HEX]`, with
//! Docker's defaults (a first component that is not a host name means Docker Hub, a one-part
//! Docker Hub repository lives in `library/`, no tag means `latest`).

use std::fmt;

use layerstore_store::Digest;

use super::RegistryError;

/// Where Docker Hub's references point, and where its API answers.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed registry reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (or `docker.io`).
    pub registry: String,
    /// The repository path, e.g. `library/alpine`.
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// A pinned manifest digest; when given, it is what is fetched (the tag only names).
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse a reference without the `docker://` prefix.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        let bad = |reason: &str| RegistryError::InvalidReference {
            reference: s.chars().take(300).collect(),
            reason: reason.into(),
        };
        if s.is_empty() || s.len() > 1024 {
            return Err(bad("must be 1 to 1024 bytes"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let d: Digest = d
                    .parse()
                    .map_err(|_| bad("the digest must be sha256: and 64 lower-case hex digits"))?;
                (r, Some(d))
            }
            None => (s, None),
        };
        // The tag follows the last ':' after the last '/', so a port is never taken for a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(bad(
                    "a tag is 1 to 128 of A-Z a-z 0-9 _ . - (not first . or -)",
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_host(&registry) {
            return Err(bad("the registry host is not a valid HOST[:PORT]"));
        }
        let components_ok = repository.len() <= 255
            && repository.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
                    && c.as_bytes()[0].is_ascii_alphanumeric()
                    && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
            });
        if !components_ok {
            return Err(bad(
                "the repository is lower-case letters, digits and . _ - in /-separated components",
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The `host[:port]` the API answers on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask `/v2/REPO/manifests/` for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The image name a pull gives by default (`HOST/REPO:TAG` or `HOST/REPO@DIGEST`), valid
    /// as a ref name.
    pub fn default_name(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{}/{}:{t}", self.registry, self.repository),
            (None, Some(d)) => format!("{}/{}@{d}", self.registry, self.repository),
            (None, None) => format!("{}/{}", self.registry, self.repository),
        }
    }
}

fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, after)) => {
                if addr.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match after {
                    "" => return true,
                    p => match p.strip_prefix(':') {
                        Some(p) => ("x", Some(p)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    host_ok && port_ok
}

impl fmt::Display for Reference {
    /// `HOST/REPO[:TAG][@DIGEST]`, the canonical form recorded as an image's origin.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_dockers_defaults() {
        let r = Reference::parse("127.0.0.1:5000/app:v1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest, None);
        assert_eq!(r.to_string(), "127.0.0.1:5000/app:v1");

        // A port is not a tag; no tag means latest.
        let r = Reference::parse("localhost:5000/a/b").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost:5000", "a/b")
        );
        assert_eq!(r.tag.as_deref(), Some("latest"));

        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("reg.example/x@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.default_name(), format!("reg.example/x@{d}"));
        let r = Reference::parse(&format!("reg.example/x:v2@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(
            r.manifest_reference(),
            d,
            "the digest is fetched, the tag only names"
        );

        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/alpine");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("user/app:1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "user/app")
        );

        let r = Reference::parse("[::1]:5000/app").unwrap();
        assert_eq!(r.registry, "[::1]:5000");
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            "127.0.0.1:5000/App",
            "127.0.0.1:5000/app:",
            "127.0.0.1:5000/app:-x",
            "127.0.0.1:5000//app",
            "127.0.0.1:99999/app",
            "127.0.0.1:5000/app@sha256:abc",
            "127.0.0.1:5000/app@md5:00",
            "127.0.0.1:5000/../app",
            "127.0.0.1:5000/app:v1 x",
            "[zz]:5000/app",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
