//! Pulling from registries, end to end and only over loopback: a real `docker-registry`
//! (anonymous and htpasswd Basic auth) fed by `skopeo copy`, and a small fault-injecting HTTP
//! server of our own for what a real registry will not do on demand (dropped connections,
//! 503/429, redirect loops, lies about sizes and digests, Bearer tokens). Every failure ends
//! with no image ref and a sound store.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use layerstore_import::registry::{Credentials, RegistryError, RegistryOptions};
use layerstore_import::{Error, ImportOptions, ImportReport};
use layerstore_store::{RefKind, Store};
use layerstore_tests::rng::Rng;
use layerstore_tests::{
    Compression, Entry, ImageSpec, Layer, LayerBuilder, OciLayout, TarFormat, WrittenImage,
};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A layer of `n` incompressible bytes in one file (so a blob is big enough to cut in half).
fn layer(label: &str, n: usize, c: Compression) -> Layer {
    let mut rng = Rng::from_label(label);
    let tar = LayerBuilder::new(TarFormat::Pax)
        .with_entries([
            Entry::dir("data"),
            Entry::file(format!("data/{label}.bin"), rng.bytes(n)),
            Entry::file(format!("data/{label}.txt"), format!("{label}\n")),
        ])
        .tar_bytes();
    Layer::new(tar, c)
}

/// Two images sharing a base layer: `v1` = base + app1, `v2` = base + app2.
fn two_versions(dir: &Path) -> (PathBuf, WrittenImage, WrittenImage) {
    let oci = dir.join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let base = layer("base", 300_000, Compression::Gzip);
    let v1 = layout
        .add_image(
            "v1",
            &ImageSpec::new(vec![
                base.clone(),
                layer("app1", 100_000, Compression::Zstd),
            ]),
        )
        .unwrap();
    let v2 = layout
        .add_image(
            "v2",
            &ImageSpec::new(vec![base, layer("app2", 100_000, Compression::Gzip)]),
        )
        .unwrap();
    (oci, v1, v2)
}

fn options(registry: RegistryOptions) -> ImportOptions<'static> {
    ImportOptions {
        registry,
        ..ImportOptions::default()
    }
}

fn insecure() -> RegistryOptions {
    RegistryOptions {
        tls_verify: false,
        ..RegistryOptions::default()
    }
}

fn pull(
    store: &Store,
    spec: &str,
    opts: &ImportOptions<'_>,
) -> layerstore_import::Result<ImportReport> {
    layerstore_import::import(store, spec, opts)
}

/// The registry error behind `err`, also where a reader passed it on as an I/O error.
fn registry_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a RegistryError> {
    let mut e = Some(err);
    while let Some(cur) = e {
        if let Some(r) = cur.downcast_ref::<RegistryError>() {
            return Some(r);
        }
        if let Some(r) = cur
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<RegistryError>())
        {
            return Some(r);
        }
        if let Some(Error::Registry(r)) = cur.downcast_ref::<Error>() {
            return Some(r);
        }
        e = cur.source();
    }
    None
}

/// A failed pull left no image ref and a sound store.
#[track_caller]
fn assert_failed_cleanly(store: &Store) {
    assert!(store.refs(Some(RefKind::Image)).unwrap().is_empty());
    assert_sound(store);
}

// ---------------------------------------------------------------------------------------------
// A real docker-registry

struct DockerRegistry {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl DockerRegistry {
    /// Start one on a free loopback port, with htpasswd Basic auth for `user` when given.
    /// `None` (the test skipped) without docker-registry or skopeo.
    fn start(user: Option<(&str, &str)>) -> Option<Self> {
        for tool in ["docker-registry", "skopeo"] {
            if !have(tool) {
                layerstore_tests::skip(&format!("{tool} is not installed"));
                return None;
            }
        }
        if user.is_some() && !have("htpasswd") {
            layerstore_tests::skip("htpasswd (apache2-utils) is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut auth = String::new();
        if let Some((u, p)) = user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: layerstore-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
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

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://HOST/REPO:TAG`.
    fn push(&self, layout: &Path, tag: &str, repo_tag: &str, creds: Option<&str>) {
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

    /// How many times layerstore GETs the blob `digest` of `repo`, from the access log.
    fn blob_gets(&self, repo: &str, digest: &str) -> usize {
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

#[test]
fn anonymous_pull_equals_the_oci_layout_import_and_records_its_origin() {
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (oci, v1, _) = two_versions(tmp.path());
    reg.push(&oci, "v1", "team/app:v1", None);

    let store = new_store(tmp.path());
    let spec = format!("docker://{}/team/app:v1", reg.host());
    let r = pull(&store, &spec, &options(insecure())).unwrap();
    assert_eq!(r.name, format!("{}/team/app:v1", reg.host()));
    assert_eq!(r.manifest_digest.to_string(), v1.manifest_digest);
    assert_eq!(r.config_digest.to_string(), v1.config_digest);
    let diff_ids: Vec<String> = r.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let want: Vec<String> = v1.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(diff_ids, want);
    assert!(r.layers.iter().all(|l| !l.reused));

    let info = store.resolve_image(&r.name).unwrap();
    assert_eq!(info.origin.as_deref(), Some(spec.as_str()));
    // The same image from the layout: the same manifest, layers and merged tree.
    let local = tempfile::tempdir().unwrap();
    let store2 = new_store(local.path());
    let r2 = import(&store2, &format!("oci:{}:v1", oci.display())).unwrap();
    assert_eq!(r2.manifest_digest, r.manifest_digest);
    let t1 = store.merged_tree(&info).unwrap();
    let t2 = store2
        .merged_tree(&store2.resolve_image("v1").unwrap())
        .unwrap();
    assert_eq!(format!("{t1:?}"), format!("{t2:?}"));
    assert_sound(&store);
}

#[test]
fn a_pull_by_digest_fetches_exactly_that_manifest() {
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (oci, v1, v2) = two_versions(tmp.path());
    reg.push(&oci, "v1", "app:v1", None);
    // The tag moves on; the digest still names v1.
    reg.push(&oci, "v2", "app:v1", None);
    let store = new_store(tmp.path());
    let spec = format!("docker://{}/app@{}", reg.host(), v1.manifest_digest);
    let r = pull(&store, &spec, &options(insecure())).unwrap();
    assert_eq!(r.manifest_digest.to_string(), v1.manifest_digest);
    assert_eq!(r.name, format!("{}/app@{}", reg.host(), v1.manifest_digest));
    let r = pull(
        &store,
        &format!("docker://{}/app:v1", reg.host()),
        &options(insecure()),
    )
    .unwrap();
    assert_eq!(r.manifest_digest.to_string(), v2.manifest_digest);
    assert_sound(&store);
}

#[test]
fn a_second_pull_fetches_only_the_layers_the_store_lacks() {
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (oci, v1, v2) = two_versions(tmp.path());
    reg.push(&oci, "v1", "app:v1", None);
    reg.push(&oci, "v2", "app:v2", None);
    let store = new_store(tmp.path());
    pull(
        &store,
        &format!("docker://{}/app:v1", reg.host()),
        &options(insecure()),
    )
    .unwrap();
    let base = &v1.layers[0].blob_digest;
    assert_eq!(
        v2.layers[0].blob_digest, *base,
        "the images share their base"
    );
    assert_eq!(reg.blob_gets("app", base), 1);

    let r = pull(
        &store,
        &format!("docker://{}/app:v2", reg.host()),
        &options(insecure()),
    )
    .unwrap();
    assert!(r.layers[0].reused);
    assert!(!r.layers[1].reused);
    assert_eq!(
        reg.blob_gets("app", base),
        1,
        "the stored base was fetched again"
    );
    assert_eq!(reg.blob_gets("app", &v2.layers[1].blob_digest), 1);
    // Pulling v2 again fetches no layer at all.
    pull(
        &store,
        &format!("docker://{}/app:v2", reg.host()),
        &options(insecure()),
    )
    .unwrap();
    assert_eq!(reg.blob_gets("app", &v2.layers[1].blob_digest), 1);
    assert_sound(&store);
}

#[test]
fn htpasswd_basic_auth_takes_creds_or_an_auth_file_and_refuses_wrong_ones() {
    let Some(reg) = DockerRegistry::start(Some(("alice", "s3cret"))) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (oci, _, _) = two_versions(tmp.path());
    reg.push(&oci, "v1", "app:v1", Some("alice:s3cret"));
    let spec = format!("docker://{}/app:v1", reg.host());

    // No credentials, wrong ones: a clear error, nothing left behind.
    let store = new_store(tmp.path());
    for creds in [None, Some("alice:wrong"), Some("mallory:s3cret")] {
        let opts = options(RegistryOptions {
            creds: creds.map(|c| Credentials::parse(c).unwrap()),
            ..insecure()
        });
        let err = pull(&store, &spec, &opts).unwrap_err();
        assert!(
            matches!(err, Error::Registry(RegistryError::Unauthorized { .. })),
            "{creds:?}: {err:#}"
        );
        assert_failed_cleanly(&store);
    }

    // --creds.
    let opts = options(RegistryOptions {
        creds: Some(Credentials::parse("alice:s3cret").unwrap()),
        ..insecure()
    });
    pull(&store, &spec, &opts).unwrap();
    assert_sound(&store);

    // --authfile, in podman's format (base64 USER:PASSWORD keyed by HOST:PORT).
    let authfile = tmp.path().join("auth.json");
    std::fs::write(
        &authfile,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    let other = tempfile::tempdir().unwrap();
    let store2 = new_store(other.path());
    let opts = options(RegistryOptions {
        authfile: Some(authfile),
        ..insecure()
    });
    pull(&store2, &spec, &opts).unwrap();
    assert_sound(&store2);
}

#[test]
fn a_pushed_image_reads_back_with_skopeo_and_pulls_back_equal_and_pushes_again_as_a_no_op() {
    use layerstore_import::registry::push::{LayerPush, PushOptions, push};
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (oci, v1, _) = two_versions(tmp.path());
    let store = new_store(tmp.path());
    import(&store, &format!("oci:{}:v1", oci.display())).unwrap();
    let dest = format!("docker://{}/pushed:v1", reg.host());
    let opts = PushOptions {
        registry: insecure(),
        ..PushOptions::default()
    };
    // The registry has none of the layout's blobs: every layer is compressed anew.
    let r = push(&store, "v1", &dest, &opts).unwrap();
    assert!(
        r.layers.iter().all(|l| l.how == LayerPush::Uploaded),
        "{r:?}"
    );
    let diff_ids: Vec<String> = r.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let want: Vec<String> = v1.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(diff_ids, want);

    // skopeo reads it back (verifying every digest) with the same diff_ids.
    let out = tmp.path().join("back");
    let st = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false"])
        .arg(&dest)
        .arg(format!("oci:{}:v1", out.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let back = import(
        &new_store(&tmp.path().join("s2")),
        &format!("oci:{}:v1", out.display()),
    )
    .unwrap();
    assert_eq!(back.manifest_digest, r.manifest_digest);
    assert_eq!(
        back.layers
            .iter()
            .map(|l| l.diff_id.to_string())
            .collect::<Vec<_>>(),
        want
    );

    // layerstore pulls it back to the same tree.
    let s3 = new_store(&tmp.path().join("s3"));
    let pulled = pull(&s3, &dest, &options(insecure())).unwrap();
    assert_eq!(pulled.manifest_digest, r.manifest_digest);
    let t_ours = store
        .merged_tree(&store.resolve_image("v1").unwrap())
        .unwrap();
    let t_back = s3
        .merged_tree(&s3.resolve_image(&pulled.name).unwrap())
        .unwrap();
    assert_eq!(format!("{t_ours:?}"), format!("{t_back:?}"));

    // Compression is reproducible: a second push finds every blob and uploads nothing.
    let again = push(&store, "v1", &dest, &opts).unwrap();
    assert_eq!(again.manifest_digest, r.manifest_digest);
    assert_eq!(again.uploaded_bytes, 0);
    assert!(again.layers.iter().all(|l| l.how == LayerPush::Present));
    assert_sound(&store);
    assert_sound(&s3);
}

#[test]
fn a_pulled_image_pushed_to_another_repository_is_mounted_with_its_digests() {
    use layerstore_import::registry::push::{LayerPush, PushOptions, push};
    let Some(reg) = DockerRegistry::start(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (oci, v1, _) = two_versions(tmp.path());
    reg.push(&oci, "v1", "app:v1", None);
    let store = new_store(tmp.path());
    let pulled = pull(
        &store,
        &format!("docker://{}/app:v1", reg.host()),
        &options(insecure()),
    )
    .unwrap();
    let opts = PushOptions {
        registry: insecure(),
        ..PushOptions::default()
    };
    let r = push(
        &store,
        &pulled.name,
        &format!("docker://{}/copy:v1", reg.host()),
        &opts,
    )
    .unwrap();
    assert!(
        r.layers.iter().all(|l| l.how == LayerPush::Mounted),
        "{r:?}"
    );
    assert_eq!(r.uploaded_bytes, 0);
    // The exact manifest: the same digest as the original.
    assert_eq!(r.manifest_digest.to_string(), v1.manifest_digest);
    let s2 = new_store(&tmp.path().join("s2"));
    let back = pull(
        &s2,
        &format!("docker://{}/copy:v1", reg.host()),
        &options(insecure()),
    )
    .unwrap();
    assert_eq!(back.manifest_digest.to_string(), v1.manifest_digest);
    assert_sound(&s2);
}

// ---------------------------------------------------------------------------------------------
// A fault-injecting registry of our own

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `None`: no Content-Length, the body ends when the connection closes.
    content_length: Option<u64>,
}

impl Resp {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        Resp {
            status,
            content_length: Some(body.len() as u64),
            headers: Vec::new(),
            body,
        }
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    /// Promise the whole body but send only `n` bytes, then drop the connection.
    fn cut_at(mut self, n: usize) -> Self {
        self.body.truncate(n);
        self
    }
}

/// One request per connection (`Connection: close`), a thread each.
struct FaultServer {
    port: u16,
    /// Connections accepted, HTTP or not.
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
}

impl FaultServer {
    fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let connections = Arc::new(AtomicUsize::new(0));
        let (reqs, stopped, conns) = (requests.clone(), stop.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                let (handler, reqs) = (handler.clone(), reqs.clone());
                std::thread::spawn(move || serve_one(conn, &*handler, &reqs));
            }
        });
        FaultServer {
            port,
            connections,
            requests,
            stop,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn requests(&self, path: &str) -> Vec<Req> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_one(conn: TcpStream, handler: &dyn Fn(&Req) -> Resp, reqs: &Mutex<Vec<Req>>) {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    // Not HTTP (a TLS ClientHello, 0x16, probing for HTTPS): answer at once in plain HTTP, as
    // docker-registry does, rather than wait for a line that never comes.
    let tls = reader
        .fill_buf()
        .map(|b| b.first() == Some(&0x16))
        .unwrap_or(true);
    if tls || reader.read_line(&mut line).is_err() || !line.ends_with("HTTP/1.1\r\n") {
        let mut conn = conn;
        let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let req = Req {
        method,
        path,
        headers,
    };
    reqs.lock().unwrap().push(req.clone());
    let resp = handler(&req);
    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", resp.status);
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(n) = resp.content_length {
        out.push_str(&format!("Content-Length: {n}\r\n"));
    }
    out.push_str("\r\n");
    let mut conn = conn;
    let _ = conn.write_all(out.as_bytes());
    if req.method != "HEAD" {
        let _ = conn.write_all(&resp.body);
    }
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// The manifests and blobs of an OCI layout, served as repository `app`.
struct Content {
    manifests: HashMap<String, (Vec<u8>, String)>,
    blobs: HashMap<String, Vec<u8>>,
}

impl Content {
    fn of(layout: &Path, tags: &[(&str, &WrittenImage)]) -> Self {
        let mut blobs = HashMap::new();
        for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            blobs.insert(
                format!("sha256:{}", e.file_name().to_string_lossy()),
                std::fs::read(e.path()).unwrap(),
            );
        }
        let mut manifests = HashMap::new();
        for (tag, img) in tags {
            let m = blobs[&img.manifest_digest].clone();
            let mt = layerstore_tests::oci::MEDIA_TYPE_MANIFEST.to_string();
            manifests.insert(tag.to_string(), (m.clone(), mt.clone()));
            manifests.insert(img.manifest_digest.clone(), (m, mt));
        }
        Content { manifests, blobs }
    }

    /// What a well-behaved registry answers (with `Range` support).
    fn serve(&self, req: &Req) -> Resp {
        if req.path == "/v2/" {
            return Resp::new(200, "{}");
        }
        if let Some(r) = req.path.strip_prefix("/v2/app/manifests/") {
            return match self.manifests.get(r) {
                Some((m, mt)) => Resp::new(200, m.clone()).header("Content-Type", mt),
                None => Resp::new(404, r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#),
            };
        }
        if let Some(d) = req.path.strip_prefix("/v2/app/blobs/") {
            let Some(b) = self.blobs.get(d) else {
                return Resp::new(404, r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#);
            };
            if let Some(from) = req
                .header("range")
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|r| r.parse::<usize>().ok())
            {
                return Resp::new(206, b[from..].to_vec()).header(
                    "Content-Range",
                    &format!("bytes {from}-{}/{}", b.len() - 1, b.len()),
                );
            }
            return Resp::new(200, b.clone());
        }
        Resp::new(404, "")
    }
}

fn blob_path(digest: &str) -> String {
    format!("/v2/app/blobs/{digest}")
}

/// A store, the fixture's content and its first image.
fn fault_fixture(tmp: &Path) -> (Store, Arc<Content>, WrittenImage) {
    let (oci, v1, v2) = two_versions(tmp);
    let content = Arc::new(Content::of(&oci, &[("v1", &v1), ("v2", &v2)]));
    (new_store(tmp), content, v1)
}

#[test]
fn a_dropped_blob_connection_resumes_with_range() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, content, v1) = fault_fixture(tmp.path());
    let base = v1.layers[0].blob_digest.clone();
    let half = v1.layers[0].blob_size as usize / 2;
    let cuts = AtomicUsize::new(0);
    let (c, b) = (content.clone(), base.clone());
    let srv = FaultServer::start(move |req| {
        let resp = c.serve(req);
        if req.path == blob_path(&b) && cuts.fetch_add(1, Ordering::SeqCst) == 0 {
            resp.cut_at(half)
        } else {
            resp
        }
    });
    let r = pull(
        &store,
        &format!("docker://{}/app:v1", srv.host()),
        &options(insecure()),
    )
    .unwrap();
    assert_eq!(r.manifest_digest.to_string(), v1.manifest_digest);
    let gets = srv.requests(&blob_path(&base));
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].header("range"), None);
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={half}-").as_str())
    );
    assert_sound(&store);
}

#[test]
fn a_registry_that_ignores_range_is_read_past_what_was_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, content, v1) = fault_fixture(tmp.path());
    let base = v1.layers[0].blob_digest.clone();
    let cuts = AtomicUsize::new(0);
    let (c, b) = (content.clone(), base.clone());
    let srv = FaultServer::start(move |req| {
        if req.path != blob_path(&b) {
            return c.serve(req);
        }
        // The whole blob, every time, and the first time cut short.
        let whole = Resp::new(200, c.blobs[&b].clone());
        if cuts.fetch_add(1, Ordering::SeqCst) == 0 {
            whole.cut_at(1000)
        } else {
            whole
        }
    });
    pull(
        &store,
        &format!("docker://{}/app:v1", srv.host()),
        &options(insecure()),
    )
    .unwrap();
    assert_eq!(srv.requests(&blob_path(&base)).len(), 2);
    assert_sound(&store);
}

#[test]
fn status_503_and_429_are_retried_after_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, content, v1) = fault_fixture(tmp.path());
    let base = v1.layers[0].blob_digest.clone();
    let n = AtomicUsize::new(0);
    let (c, b) = (content.clone(), base.clone());
    let srv = FaultServer::start(move |req| {
        if req.path == blob_path(&b) {
            match n.fetch_add(1, Ordering::SeqCst) {
                0 => return Resp::new(503, "busy").header("Retry-After", "0"),
                1 => return Resp::new(429, "slow down").header("Retry-After", "1"),
                _ => {}
            }
        }
        c.serve(req)
    });
    pull(
        &store,
        &format!("docker://{}/app:v1", srv.host()),
        &options(insecure()),
    )
    .unwrap();
    assert_eq!(srv.requests(&blob_path(&base)).len(), 3);
    assert_sound(&store);
}

#[test]
fn a_registry_failing_for_good_is_retried_a_bounded_number_of_times() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, content, v1) = fault_fixture(tmp.path());
    let base = v1.layers[0].blob_digest.clone();
    let (c, b) = (content.clone(), base.clone());
    let srv = FaultServer::start(move |req| {
        if req.path == blob_path(&b) {
            return Resp::new(500, "broken").header("Retry-After", "0");
        }
        c.serve(req)
    });
    let err = pull(
        &store,
        &format!("docker://{}/app:v1", srv.host()),
        &options(insecure()),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Registry(RegistryError::RetriesExhausted { attempts: 5, .. })
        ),
        "{err:#}"
    );
    assert_eq!(srv.requests(&blob_path(&base)).len(), 5);
    assert_failed_cleanly(&store);
}

#[test]
fn a_redirect_loop_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, content, v1) = fault_fixture(tmp.path());
    let base = v1.layers[0].blob_digest.clone();
    let (c, b) = (content.clone(), base.clone());
    let srv = FaultServer::start(move |req| match req.path.as_str() {
        p if p == blob_path(&b) => Resp::new(307, "").header("Location", "/loop/a"),
        "/loop/a" => Resp::new(302, "").header("Location", "/loop/b"),
        "/loop/b" => Resp::new(302, "").header("Location", "/loop/a"),
        _ => c.serve(req),
    });
    let err = pull(
        &store,
        &format!("docker://{}/app:v1", srv.host()),
        &options(insecure()),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Registry(RegistryError::RedirectLoop { .. })),
        "{err:#}"
    );
    assert_failed_cleanly(&store);
}

#[test]
fn a_blob_longer_than_its_descriptor_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, content, v1) = fault_fixture(tmp.path());
    let base = v1.layers[0].blob_digest.clone();
    for announced in [true, false] {
        let (c, b) = (content.clone(), base.clone());
        let srv = FaultServer::start(move |req| {
            if req.path == blob_path(&b) {
                let mut long = c.blobs[&b].clone();
                long.extend_from_slice(b"trailing garbage");
                let mut r = Resp::new(200, long);
                if !announced {
                    r.content_length = None;
                }
                return r;
            }
            c.serve(req)
        });
        let err = pull(
            &store,
            &format!("docker://{}/app:v1", srv.host()),
            &options(insecure()),
        )
        .unwrap_err();
        if announced {
            // Refused before a byte is read.
            assert!(
                matches!(err, Error::Registry(RegistryError::BlobTooLong { .. })),
                "{err:#}"
            );
        } else {
            // Refused at the first byte too many, whoever was reading.
            assert!(
                matches!(
                    registry_cause(&err),
                    Some(RegistryError::BlobTooLong { .. })
                ),
                "{err:?}"
            );
        }
        assert_failed_cleanly(&store);
    }
}

#[test]
fn a_wrong_blob_or_manifest_digest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, content, v1) = fault_fixture(tmp.path());
    let base = v1.layers[0].blob_digest.clone();
    let (c, b) = (content.clone(), base.clone());
    let srv = FaultServer::start(move |req| {
        if req.path == blob_path(&b) {
            // Same length, one byte changed.
            let mut wrong = c.blobs[&b].clone();
            let last = wrong.len() - 1;
            wrong[last] ^= 1;
            return Resp::new(200, wrong);
        }
        c.serve(req)
    });
    let err = pull(
        &store,
        &format!("docker://{}/app:v1", srv.host()),
        &options(insecure()),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains(&base),
        "the error names the blob: {err:#}"
    );
    assert_failed_cleanly(&store);

    // A manifest asked for by digest that hashes to something else.
    let c = content.clone();
    let v1_digest = v1.manifest_digest.clone();
    let srv = FaultServer::start(move |req| {
        if req.path == format!("/v2/app/manifests/{v1_digest}") {
            let (m, mt) = &c.manifests["v1"];
            let mut m = m.clone();
            m.push(b' ');
            return Resp::new(200, m).header("Content-Type", mt);
        }
        c.serve(req)
    });
    let spec = format!("docker://{}/app@{}", srv.host(), v1.manifest_digest);
    let err = pull(&store, &spec, &options(insecure())).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:#}");
    assert_failed_cleanly(&store);
}

#[test]
fn an_oversized_or_mislabelled_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, content, _) = fault_fixture(tmp.path());
    let c = content.clone();
    let srv = FaultServer::start(move |req| {
        let (m, mt) = &c.manifests["v1"];
        match req.path.as_str() {
            // Valid JSON, padded past the limit.
            "/v2/app/manifests/big" => {
                let mut big = m.clone();
                big.resize(m.len() + 8192, b' ');
                Resp::new(200, big).header("Content-Type", mt)
            }
            // The same, without a Content-Length to refuse it by.
            "/v2/app/manifests/big-unannounced" => {
                let mut big = m.clone();
                big.resize(m.len() + 8192, b' ');
                let mut r = Resp::new(200, big).header("Content-Type", mt);
                r.content_length = None;
                r
            }
            "/v2/app/manifests/mislabelled" => Resp::new(200, m.clone()).header(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v2+json",
            ),
            _ => c.serve(req),
        }
    });
    let mut limits = store.limits();
    limits.max_json_bytes = 4096;
    for tag in ["big", "big-unannounced"] {
        let opts = ImportOptions {
            limits: Some(limits),
            ..options(insecure())
        };
        let err = pull(&store, &format!("docker://{}/app:{tag}", srv.host()), &opts).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { limit: 4096, .. }),
            "{tag}: {err:#}"
        );
        assert_failed_cleanly(&store);
    }
    let err = pull(
        &store,
        &format!("docker://{}/app:mislabelled", srv.host()),
        &options(insecure()),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Registry(RegistryError::ContentTypeMismatch { .. })
        ),
        "{err:#}"
    );
    let err = pull(
        &store,
        &format!("docker://{}/app:nope", srv.host()),
        &options(insecure()),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Registry(RegistryError::ManifestUnknown { .. })),
        "{err:#}"
    );
    assert_failed_cleanly(&store);
}

#[test]
fn authorization_never_follows_a_redirect_to_another_host() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, content, v1) = fault_fixture(tmp.path());
    let base = v1.layers[0].blob_digest.clone();
    // Blob storage on another origin (another port), recording what it is sent.
    let c = content.clone();
    let storage = FaultServer::start(move |req| {
        let d = req.path.trim_start_matches("/storage/");
        Resp::new(200, c.blobs[d].clone())
    });
    let storage_host = storage.host();
    let c = content.clone();
    let b = base.clone();
    let basic = Credentials::parse("bob:pw").unwrap().basic_header();
    let srv = FaultServer::start(move |req| {
        if req.header("authorization") != Some(basic.as_str()) {
            return Resp::new(401, "").header("WWW-Authenticate", r#"Basic realm="test""#);
        }
        if req.path == blob_path(&b) {
            return Resp::new(307, "")
                .header("Location", &format!("http://{storage_host}/storage/{b}"));
        }
        c.serve(req)
    });
    let opts = options(RegistryOptions {
        creds: Some(Credentials::parse("bob:pw").unwrap()),
        ..insecure()
    });
    pull(&store, &format!("docker://{}/app:v1", srv.host()), &opts).unwrap();
    let fetched = storage.requests(&format!("/storage/{base}"));
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].header("authorization"), None);
    assert_sound(&store);
}

#[test]
fn bearer_tokens_are_cached_per_scope_and_renewed_on_insufficient_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, content, v1) = fault_fixture(tmp.path());
    let base = v1.layers[0].blob_digest.clone();
    // The registry is its own token server; it learns its port once listening.
    let own_port = Arc::new(AtomicUsize::new(0));
    let issued = Arc::new(AtomicUsize::new(0));
    let valid = Arc::new(Mutex::new(std::collections::HashSet::<String>::new()));
    let revoked_once = Arc::new(AtomicBool::new(false));
    let (c, b, n, v, p) = (
        content.clone(),
        base.clone(),
        issued.clone(),
        valid.clone(),
        own_port.clone(),
    );
    let srv = FaultServer::start(move |req| {
        let host = format!("127.0.0.1:{}", p.load(Ordering::SeqCst));
        let challenge = |extra: &str| {
            format!(
                r#"Bearer realm="http://{host}/token",service="test-registry",scope="repository:app:pull"{extra}"#
            )
        };
        if req.path.starts_with("/token?") {
            let basic = Credentials::parse("carol:pw").unwrap().basic_header();
            if req.header("authorization") != Some(basic.as_str()) {
                return Resp::new(401, "");
            }
            let t = format!("tok-{}", n.fetch_add(1, Ordering::SeqCst) + 1);
            v.lock().unwrap().insert(format!("Bearer {t}"));
            return Resp::new(200, format!(r#"{{"token":"{t}","expires_in":300}}"#));
        }
        let auth = req.header("authorization").unwrap_or_default().to_string();
        if !v.lock().unwrap().contains(&auth) {
            return Resp::new(401, "").header("WWW-Authenticate", &challenge(""));
        }
        // The first token loses its scope at the first layer: the client must ask again.
        if req.path == blob_path(&b) && !revoked_once.swap(true, Ordering::SeqCst) {
            v.lock().unwrap().remove(&auth);
            return Resp::new(401, "").header(
                "WWW-Authenticate",
                &challenge(r#",error="insufficient_scope""#),
            );
        }
        c.serve(req)
    });
    own_port.store(srv.port as usize, Ordering::SeqCst);
    let opts = ImportOptions {
        // One layer at a time, so the number of token requests is exact.
        jobs: 1,
        ..options(RegistryOptions {
            creds: Some(Credentials::parse("carol:pw").unwrap()),
            ..insecure()
        })
    };
    pull(&store, &format!("docker://{}/app:v1", srv.host()), &opts).unwrap();
    let token_reqs: Vec<Req> = srv
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.starts_with("/token?"))
        .cloned()
        .collect();
    // One token for the manifest, the config and the layers, and one more after
    // insufficient_scope.
    assert_eq!(token_reqs.len(), 2, "{token_reqs:?}");
    assert!(token_reqs[0].path.contains("service=test-registry"));
    assert!(token_reqs[0].path.contains("scope=repository%3Aapp%3Apull"));
    assert_sound(&store);

    // Without credentials the token server refuses: a clear error.
    let other = tempfile::tempdir().unwrap();
    let store2 = new_store(other.path());
    let err = pull(
        &store2,
        &format!("docker://{}/app:v1", srv.host()),
        &options(insecure()),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Registry(RegistryError::Unauthorized { .. })),
        "{err:#}"
    );
    assert_failed_cleanly(&store2);
}

#[test]
fn plain_http_needs_tls_verify_false() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, content, _) = fault_fixture(tmp.path());
    let c = content.clone();
    let srv = FaultServer::start(move |req| c.serve(req));
    let err = pull(
        &store,
        &format!("docker://{}/app:v1", srv.host()),
        &options(RegistryOptions::default()),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Registry(RegistryError::TlsHandshake { .. })),
        "{err:#}"
    );
    assert_failed_cleanly(&store);
    // A TLS failure is not retried: another try fails the same way.
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
    assert!(srv.requests("/v2/").is_empty());
}
