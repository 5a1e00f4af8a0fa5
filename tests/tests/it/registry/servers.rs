//! The registries the registry tests talk to: a real `docker-registry` started on a free
//! loopback port, and a fault-injecting HTTP server of our own.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use layerstore_tests::WrittenImage;

pub use layerstore_tests::registry::{DockerRegistry, RegistryAuth};

// ---------------------------------------------------------------------------------------------
// A fault-injecting registry of our own

#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `None`: no Content-Length, the body ends when the connection closes.
    pub content_length: Option<u64>,
}

impl Resp {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        Resp {
            status,
            content_length: Some(body.len() as u64),
            headers: Vec::new(),
            body,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    /// Promise the whole body but send only `n` bytes, then drop the connection.
    pub fn cut_at(mut self, n: usize) -> Self {
        self.body.truncate(n);
        self
    }
}

/// One request per connection (`Connection: close`), a thread each.
pub struct FaultServer {
    pub port: u16,
    /// Connections accepted, HTTP or not.
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
}

impl FaultServer {
    pub fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Self {
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

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self, path: &str) -> Vec<Req> {
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

pub fn serve_one(conn: TcpStream, handler: &dyn Fn(&Req) -> Resp, reqs: &Mutex<Vec<Req>>) {
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
pub struct Content {
    pub manifests: HashMap<String, (Vec<u8>, String)>,
    pub blobs: HashMap<String, Vec<u8>>,
}

impl Content {
    /// A copy, for a handler that serves it changed.
    pub fn clone_for_test(&self) -> Self {
        Content {
            manifests: self.manifests.clone(),
            blobs: self.blobs.clone(),
        }
    }

    pub fn of(layout: &Path, tags: &[(&str, &WrittenImage)]) -> Self {
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
    pub fn serve(&self, req: &Req) -> Resp {
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
