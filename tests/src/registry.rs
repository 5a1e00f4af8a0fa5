//! A real `docker-registry` (the Debian package, distribution 2.x) on a free loopback port,
//! with a temporary config and storage, for the registry tests of every test binary: anonymous,
//! htpasswd Basic auth, or token auth against a token server the test runs.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::tar_refs::have;

/// How the registry authenticates.
#[derive(Clone, Debug)]
pub enum RegistryAuth {
    /// Anonymous pulls and pushes.
    None,
    /// htpasswd Basic auth for one user.
    Basic { user: String, password: String },
    /// Bearer tokens (`auth: token:`): the registry sends clients to `realm` for a JWT signed
    /// by a key whose certificate is in `rootcertbundle`, issued by `issuer` for `service`.
    Token {
        realm: String,
        service: String,
        issuer: String,
        rootcertbundle: PathBuf,
    },
}

/// A running `docker-registry`, stopped when dropped.
pub struct DockerRegistry {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A loopback port free when asked (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl DockerRegistry {
    /// Start one on a free loopback port, with htpasswd Basic auth for `user` when given.
    /// `None` (the test skipped) without docker-registry or skopeo.
    pub fn start(user: Option<(&str, &str)>) -> Option<Self> {
        Self::start_with(match user {
            Some((u, p)) => RegistryAuth::Basic {
                user: u.into(),
                password: p.into(),
            },
            None => RegistryAuth::None,
        })
    }

    /// Start one on a free loopback port, authenticating as `auth` says. `None` (the test
    /// skipped) without docker-registry or skopeo (or htpasswd for Basic auth).
    pub fn start_with(auth: RegistryAuth) -> Option<Self> {
        for tool in ["docker-registry", "skopeo"] {
            if !have(tool) {
                crate::skip(&format!("{tool} is not installed"));
                return None;
            }
        }
        if matches!(auth, RegistryAuth::Basic { .. }) && !have("htpasswd") {
            crate::skip("htpasswd (apache2-utils) is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let auth = match &auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Basic { user, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "htpasswd failed");
                std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: layerstore-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                )
            }
            RegistryAuth::Token {
                realm,
                service,
                issuer,
                rootcertbundle,
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    \
                 issuer: {issuer}\n    rootcertbundle: {}\n",
                rootcertbundle.display()
            ),
        };
        // A port found free may be taken before the registry binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{port}\n{auth}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            // One file for both streams (the access log and the app log go to different ones).
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            // Bounded wait for it to listen (a readiness poll, not a timing assertion).
            for _ in 0..200 {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(DockerRegistry {
                        child,
                        port,
                        log: dir.path().join("registry.log"),
                        _dir: dir,
                    });
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://HOST/REPO:TAG`.
    pub fn push(&self, layout: &Path, tag: &str, repo_tag: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.arg(format!("--dest-creds={c}"));
        }
        let out = cmd
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// How many requests layerstore made whose access-log line contains `needle` (e.g.
    /// `"PATCH /v2/app/blobs/uploads/"`).
    pub fn requests_logged(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter(|l| l.contains(needle) && l.contains("layerstore/"))
            .count()
    }

    /// How many times layerstore GETs the blob `digest` of `repo`, from the access log.
    pub fn blob_gets(&self, repo: &str, digest: &str) -> usize {
        let needle = format!("\"GET /v2/{repo}/blobs/{digest} ");
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter(|l| l.contains(&needle) && l.contains("layerstore/"))
            .count()
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
