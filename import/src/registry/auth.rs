//! Credentials and authentication challenges.
//!
//! Credentials are looked up in podman's order: `--creds`, then `--authfile`, else
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$XDG_CONFIG_HOME/containers/auth.json` (default `~/.config`), `~/.docker/config.json`; the
//! first file with an entry for the registry wins. An entry is keyed by `HOST[:PORT]`, optionally
//! with a repository namespace (the most specific key wins) or a URL (`https://HOST/v1/`), and holds
//! `auth`, base64 of `USER:PASSWORD`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::RegistryError;

/// A user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parse `USER[:PASSWORD]` (as `--creds` takes it).
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        let (u, p) = s.split_once(':').unwrap_or((s, ""));
        if u.is_empty() {
            return Err(RegistryError::BadCredentials {
                reason: "--creds must be USER[:PASSWORD] with a non-empty user".into(),
            });
        }
        Ok(Credentials {
            username: u.into(),
            password: p.into(),
        })
    }

    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// The auth files to consult when no `--authfile` is given, in podman's order; `env` reads an
/// environment variable (a parameter, so tests need not change the process environment).
pub fn default_auth_files(env: &dyn Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut out = Vec::new();
    if let Some(f) = nonempty("REGISTRY_AUTH_FILE") {
        out.push(f);
    }
    if let Some(d) = nonempty("XDG_RUNTIME_DIR") {
        out.push(d.join("containers/auth.json"));
    }
    let home = nonempty("HOME");
    match (nonempty("XDG_CONFIG_HOME"), &home) {
        (Some(d), _) => out.push(d.join("containers/auth.json")),
        (None, Some(h)) => out.push(h.join(".config/containers/auth.json")),
        (None, None) => {}
    }
    if let Some(h) = &home {
        out.push(h.join(".docker/config.json"));
    }
    out
}

/// Credentials for `registry`/`repository` from the first of `files` that has an entry.
/// Missing files are skipped; a file that exists but cannot be read or parsed is an error (a
/// silently ignored typo would look like the registry rejecting the user).
pub fn lookup(
    files: &[PathBuf],
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>, RegistryError> {
    for f in files {
        let data = match std::fs::read(f) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(RegistryError::BadAuthFile {
                    path: f.clone(),
                    reason: e.to_string(),
                });
            }
        };
        if let Some(c) = lookup_in(&data, f, registry, repository)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// An auth file's key without a scheme or a `/v1/`-style API suffix.
fn normalize_key(k: &str) -> &str {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let k = k.trim_end_matches('/');
    k.strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k)
}

fn lookup_in(
    data: &[u8],
    path: &Path,
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let bad = |reason: String| RegistryError::BadAuthFile {
        path: path.into(),
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    // Docker Hub's entries are traditionally keyed by its v1 index URL.
    let hosts: &[&str] = if registry == "docker.io" {
        &["docker.io", "index.docker.io", "registry-1.docker.io"]
    } else {
        &[registry]
    };
    // Most specific first: HOST/a/b, HOST/a, HOST.
    let mut candidates = Vec::new();
    for h in hosts {
        let parts: Vec<&str> = repository.split('/').collect();
        for n in (1..=parts.len()).rev() {
            candidates.push(format!("{h}/{}", parts[..n].join("/")));
        }
        candidates.push(h.to_string());
    }
    for want in &candidates {
        let Some(entry) = auths
            .iter()
            .find(|(k, _)| normalize_key(k) == want)
            .map(|(_, e)| e)
        else {
            continue;
        };
        let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) else {
            continue;
        };
        if auth.is_empty() {
            continue;
        }
        let decoded = BASE64
            .decode(auth.trim())
            .map_err(|e| bad(format!("entry {want}: auth is not base64: {e}")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| bad(format!("entry {want}: auth is not UTF-8")))?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or_else(|| bad(format!("entry {want}: auth is not USER:PASSWORD")))?;
        return Ok(Some(Credentials {
            username: u.into(),
            password: p.into(),
        }));
    }
    Ok(None)
}

/// How a registry wants requests authenticated, from its `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// The scope the registry asks for (when it says).
        scope: Option<String>,
        /// `error="insufficient_scope"` and the like.
        error: Option<String>,
    },
}

/// The first challenge of a supported scheme in a `WWW-Authenticate` value (Bearer preferred).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut basic = false;
    for c in http_auth::parser::ChallengeParser::new(header) {
        let Ok(c) = c else { break };
        if c.scheme.eq_ignore_ascii_case("bearer") {
            let get = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            let realm = get("realm")?;
            return Some(Challenge::Bearer {
                realm,
                service: get("service"),
                scope: get("scope"),
                error: get("error"),
            });
        }
        if c.scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        }
    }
    basic.then_some(Challenge::Basic)
}

/// A token server's answer.
#[derive(serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    /// Seconds; the distribution spec's default is 60.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull".into()),
                error: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        let c = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/t",error="insufficient_scope",scope="repository:x:pull""#,
        );
        assert!(
            matches!(c, Some(Challenge::Bearer { error: Some(e), .. }) if e == "insufficient_scope")
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(
            parse_challenge("Bearer"),
            None,
            "a Bearer challenge needs a realm"
        );
    }

    #[test]
    fn creds_parse_user_and_optional_password() {
        let c = Credentials::parse("u:p:q").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:q"));
        let c = Credentials::parse("u").unwrap();
        assert_eq!(c.password, "");
        assert!(Credentials::parse(":p").is_err());
        assert!(!format!("{c:?}").contains("p:q"));
        assert_eq!(
            Credentials::parse("aladdin:opensesame")
                .unwrap()
                .basic_header(),
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l"
        );
    }

    #[test]
    fn auth_files_are_searched_in_podmans_order() {
        let env = |k: &str| -> Option<OsString> {
            match k {
                "REGISTRY_AUTH_FILE" => Some("/r/auth.json".into()),
                "XDG_RUNTIME_DIR" => Some("/run/user/1".into()),
                "HOME" => Some("/home/u".into()),
                _ => None,
            }
        };
        assert_eq!(
            default_auth_files(&env),
            [
                "/r/auth.json",
                "/run/user/1/containers/auth.json",
                "/home/u/.config/containers/auth.json",
                "/home/u/.docker/config.json"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn the_most_specific_auth_entry_wins_and_the_first_file_with_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        let enc = |s: &str| BASE64.encode(s);
        std::fs::write(
            &a,
            serde_json::json!({"auths": {"other:1": {"auth": enc("x:y")}}}).to_string(),
        )
        .unwrap();
        std::fs::write(
            &b,
            serde_json::json!({"auths": {
                "https://reg:5000/v1/": {"auth": enc("host:h")},
                "reg:5000/team": {"auth": enc("team:t")},
            }})
            .to_string(),
        )
        .unwrap();
        let missing = dir.path().join("missing.json");
        let files = [missing, a.clone(), b];
        let c = lookup(&files, "reg:5000", "team/app").unwrap().unwrap();
        assert_eq!(c.username, "team");
        let c = lookup(&files, "reg:5000", "solo").unwrap().unwrap();
        assert_eq!(c.username, "host");
        assert_eq!(lookup(&files, "none:1", "x").unwrap(), None);
        std::fs::write(&a, "{").unwrap();
        assert!(matches!(
            lookup(&files, "reg:5000", "solo"),
            Err(RegistryError::BadAuthFile { .. })
        ));
    }
}
