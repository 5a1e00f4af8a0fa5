//! Token auth against the real `docker-registry` configured with `auth: token:`: the registry
//! trusts a certificate made here with openssl, and sends clients to a token server this test
//! runs on 127.0.0.1, which signs RS256 JWTs with that certificate's key (the x5c header
//! carries the certificate, as docker_auth and other token servers do). This is the Bearer
//! flow of public registries, end to end: challenge, realm, service, scope, Basic credentials
//! to the token server, the token to the registry.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::servers::{DockerRegistry, FaultServer, Req, Resp};
use super::*;

const SERVICE: &str = "layerstore-test-registry";
const ISSUER: &str = "layerstore-test-issuer";

/// A signing key and its self-signed certificate, made with openssl.
struct Issuer {
    key: PathBuf,
    cert: PathBuf,
    /// The certificate, DER, base64 (the JWT header's x5c).
    x5c: String,
    serial: AtomicUsize,
}

impl Issuer {
    fn new(dir: &Path) -> Option<Issuer> {
        if !have("openssl") {
            layerstore_tests::skip("openssl is not installed");
            return None;
        }
        let (key, cert, der) = (
            dir.join("token.key"),
            dir.join("token.pem"),
            dir.join("token.der"),
        );
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=layerstore test token issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "openssl req failed");
        let ok = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .arg("-out")
            .arg(&der)
            .status()
            .unwrap();
        assert!(ok.success(), "openssl x509 failed");
        Some(Issuer {
            key,
            cert,
            x5c: STANDARD.encode(std::fs::read(&der).unwrap()),
            serial: AtomicUsize::new(0),
        })
    }

    /// A JWT granting `access` (repository name, actions) to `subject`, signed RS256.
    fn token(&self, subject: &str, access: &[(String, Vec<String>)]) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 60,
            "iat": now - 60,
            "jti": format!("t{}", self.serial.fetch_add(1, Ordering::SeqCst)),
            "access": access.iter().map(|(name, actions)| serde_json::json!({
                "type": "repository", "name": name, "actions": actions,
            })).collect::<Vec<_>>(),
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl dgst failed");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(out.stdout))
    }
}

/// `%XX` decoding of a query value (`+` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The query's values for `key`.
fn query(req: &Req, key: &str) -> Vec<String> {
    let q = req.path.split_once('?').map_or("", |(_, q)| q);
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| unescape(v))
        .collect()
}

/// The token server: Basic credentials `alice:s3cret` get what each `scope` asks for; no or
/// other credentials get 401.
fn token_server(issuer: Arc<Issuer>) -> FaultServer {
    FaultServer::start(move |req| {
        let basic = Credentials::parse("alice:s3cret").unwrap().basic_header();
        if !req.path.starts_with("/token?") {
            return Resp::new(404, "");
        }
        if req.header("authorization") != Some(basic.as_str()) || query(req, "service") != [SERVICE]
        {
            return Resp::new(401, r#"{"details":"bad credentials"}"#);
        }
        let access: Vec<(String, Vec<String>)> = query(req, "scope")
            .iter()
            .flat_map(|s| s.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                (kind == "repository").then(|| {
                    (
                        name.to_string(),
                        actions.split(',').map(String::from).collect(),
                    )
                })
            })
            .collect();
        let token = issuer.token("alice", &access);
        Resp::new(
            200,
            serde_json::json!({"token": token, "expires_in": 300}).to_string(),
        )
        .header("Content-Type", "application/json")
    })
}

/// The registry with token auth, its token server, and the issuer (kept alive).
fn token_registry(dir: &Path) -> Option<(DockerRegistry, FaultServer)> {
    let issuer = Arc::new(Issuer::new(dir)?);
    let tokens = token_server(issuer.clone());
    let reg = DockerRegistry::start_with(RegistryAuth::Token {
        realm: format!("http://{}/token", tokens.host()),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        rootcertbundle: issuer.cert.clone(),
    })?;
    Some((reg, tokens))
}

fn alice() -> RegistryOptions {
    RegistryOptions {
        creds: Some(Credentials::parse("alice:s3cret").unwrap()),
        ..insecure()
    }
}

#[test]
fn token_auth_against_a_real_registry_pulls_pushes_and_lists_tags_with_scoped_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((reg, tokens)) = token_registry(tmp.path()) else {
        return;
    };
    let (oci, v1, v2) = two_versions(tmp.path());
    // skopeo goes through the same flow to fill the registry.
    reg.push(&oci, "v1", "team/app:v1", Some("alice:s3cret"));
    reg.push(&oci, "v2", "team/app:v2", Some("alice:s3cret"));
    reg.push(&oci, "v2", "team/app:latest", Some("alice:s3cret"));

    // Without credentials the token server refuses; the pull fails cleanly.
    let store = new_store(&tmp.path().join("anon"));
    let err = refused(&store, &reg.host(), "team/app:v1");
    assert!(
        matches!(
            registry_cause(&err),
            Some(RegistryError::Unauthorized { .. })
        ),
        "{err:#}"
    );
    assert_failed_cleanly(&store);

    // With them: a pull token for the repository's pull scope, from the registry's realm.
    let store = new_store(&tmp.path().join("alice"));
    let spec = format!("docker://{}/team/app:v1", reg.host());
    let r = pull(&store, &spec, &options(alice())).unwrap();
    assert_eq!(r.manifest_digest.to_string(), v1.manifest_digest);
    assert!(r.layers.iter().all(|l| l.fetched_bytes == l.blob_size));
    let asked: Vec<Req> = tokens.requests.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .any(|q| query(q, "scope") == ["repository:team/app:pull"]),
        "{asked:?}"
    );
    assert_sound(&store);

    // The tags, under the same token (asked one per page: distribution 2.8 ignores `n` for
    // tags and sends one page; `tags_follow_link_pagination_with_n_and_last` covers `Link`).
    let reference =
        layerstore_import::registry::Reference::parse(&format!("{}/team/app", reg.host())).unwrap();
    let repo = layerstore_import::registry::open(&reference, &alice()).unwrap();
    let mut tags = repo.tags_paged(1).unwrap();
    tags.sort();
    assert_eq!(tags, ["latest", "v1", "v2"]);
    assert_eq!(
        repo.tag_digest("v2", &store.limits()).unwrap().to_string(),
        v2.manifest_digest
    );

    // A push asks for a pull,push token on the destination; mounting the layers from where
    // they were pulled needs pull on that repository too, which the registry's challenge
    // names and the next token includes. The image reads back equal.
    use layerstore_import::registry::push::{LayerPush, PushOptions, push};
    let opts = PushOptions {
        registry: alice(),
        ..PushOptions::default()
    };
    let dest = format!("docker://{}/copy:v1", reg.host());
    let pushed = push(&store, &r.name, &dest, &opts).unwrap();
    assert!(
        pushed.layers.iter().all(|l| l.how == LayerPush::Mounted),
        "{pushed:?}"
    );
    let asked: Vec<Req> = tokens.requests.lock().unwrap().clone();
    assert!(
        asked.iter().any(|q| query(q, "scope")
            == ["repository:copy:pull,push", "repository:team/app:pull"]),
        "{asked:?}"
    );
    let back = new_store(&tmp.path().join("back"));
    let b = pull(&back, &dest, &options(alice())).unwrap();
    let diff_ids = |r: &ImportReport| r.layers.iter().map(|l| l.diff_id).collect::<Vec<_>>();
    assert_eq!(diff_ids(&b), diff_ids(&r));
    assert_sound(&back);
}
