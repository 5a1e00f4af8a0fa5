//! One registry's HTTP client: scheme detection, authentication (Basic, or Bearer tokens cached
//! per scope until they expire), redirects followed by hand (loops refused; `Authorization` only
//! ever goes to the registry's own origin) and bounded retries of 5xx, 429 and dropped
//! connections with backoff (`Retry-After` honoured).

use std::collections::{HashMap, HashSet};
use std::io::Seek;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::http::Response;
use ureq::{Agent, Body};
use url::Url;

use super::RegistryError;
use super::auth::{Challenge, Credentials, TokenResponse, parse_challenge};

/// Attempts at one request that keeps failing with 5xx, 429 or a dropped connection.
pub(crate) const ATTEMPTS: u32 = 5;
/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 10;
/// The longest `Retry-After` obeyed; a registry asking for more gets it capped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Token responses are small; anything larger is not a token.
const MAX_TOKEN_BYTES: u64 = 1 << 20;

/// The manifest media types a pull accepts.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// The HTTP methods the client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// A request body, re-sendable on a retry.
#[derive(Clone, Copy)]
pub(crate) enum Payload<'a> {
    None,
    Bytes(&'a [u8]),
    File(&'a std::fs::File),
}

struct Token {
    value: String,
    expires: Instant,
}

/// A client for one registry.
pub(crate) struct Client {
    agent: Agent,
    /// `scheme://host[:port]`: the origin that may see credentials.
    base: Url,
    /// `host[:port]`, for messages.
    registry: String,
    creds: Option<Credentials>,
    /// What the registry asked for at its last 401 (`None`: nothing yet, requests go bare).
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, Token>>,
    /// Backoff before retry `n` (1-based) is `backoff * 2^(n-1)`.
    backoff: Duration,
}

/// Whether a response status is worth retrying.
fn retryable(status: u16) -> bool {
    status == 429 || (500..600).contains(&status) && status != 501
}

impl Client {
    /// A client for `api_host`, pinging `/v2/` to find the scheme and the auth challenge. With
    /// `tls_verify` false, HTTPS is tried without verification and then plain HTTP (as podman
    /// does for an insecure registry).
    pub(crate) fn connect(
        api_host: &str,
        registry: &str,
        creds: Option<Credentials>,
        tls_verify: bool,
    ) -> Result<Self, RegistryError> {
        let tls = ureq::tls::TlsConfig::builder()
            .disable_verification(!tls_verify)
            .build();
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(tls)
            // A stalled connection is a dropped one (and resumed); a slow one is not.
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("layerstore/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let schemes: &[&str] = if tls_verify {
            &["https"]
        } else {
            &["https", "http"]
        };
        let mut last_err = None;
        for (i, scheme) in schemes.iter().enumerate() {
            let base = Url::parse(&format!("{scheme}://{api_host}/")).map_err(|e| {
                RegistryError::InvalidReference {
                    reference: api_host.into(),
                    reason: e.to_string(),
                }
            })?;
            let client = Client {
                agent: agent.clone(),
                base,
                registry: registry.into(),
                creds: creds.clone(),
                challenge: Mutex::new(None),
                tokens: Mutex::new(HashMap::new()),
                backoff: Duration::from_millis(200),
            };
            // HTTPS probed against a plain-HTTP port fails at once and for good: only the
            // last scheme tried is worth retrying.
            let attempts = if i + 1 == schemes.len() { ATTEMPTS } else { 1 };
            match client.ping(attempts) {
                Ok(()) => return Ok(client),
                Err(e @ (RegistryError::Transport { .. } | RegistryError::TlsHandshake { .. })) => {
                    log::debug!("{scheme}://{api_host}: {e}");
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("one scheme was tried"))
    }

    /// `GET /v2/`: learns the challenge. Credentials are checked later, per repository (a token
    /// server grants per scope).
    fn ping(&self, attempts: u32) -> Result<(), RegistryError> {
        let url = self.url("v2/");
        let resp = self.send_retrying_to(
            Method::Get,
            &url,
            &[],
            None,
            &self.base,
            attempts,
            Payload::None,
        )?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 => {
                let ch = www_authenticate(&resp);
                log::debug!("{url}: challenge {ch:?}");
                match ch {
                    Some(ch) => {
                        *self.challenge.lock().expect("not poisoned") = Some(ch);
                        Ok(())
                    }
                    None => Err(RegistryError::Unauthorized {
                        registry: self.registry.clone(),
                        reason: "401 without a Basic or Bearer challenge".into(),
                    }),
                }
            }
            // Some registries do not serve /v2/ at all; the real requests will tell.
            404 => Ok(()),
            s => Err(status_error(&url, s, resp)),
        }
    }

    /// `path` (relative to the registry root, no leading `/`) as a URL.
    pub(crate) fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("a relative path joins")
    }

    /// GET `url` for repository `repo` with `headers`, authenticated as the registry asks,
    /// following redirects and retrying transient failures. Returns any final status; 401 only
    /// when the credentials (or their absence) were refused.
    pub(crate) fn get(
        &self,
        url: &Url,
        repo: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response<Body>, RegistryError> {
        self.request(Method::Get, url, repo, false, headers, Payload::None)
    }

    /// [`Client::get`] for any method; with `push`, the token asked for allows pushing.
    pub(crate) fn request(
        &self,
        method: Method,
        url: &Url,
        repo: &str,
        push: bool,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut scope = if push {
            format!("repository:{repo}:pull,push")
        } else {
            format!("repository:{repo}:pull")
        };
        let mut reauthenticated = false;
        loop {
            let auth = self.authorization(&scope)?;
            let resp = self.send_retrying_to(
                method,
                url,
                headers,
                auth.as_deref(),
                &self.base,
                ATTEMPTS,
                payload,
            )?;
            if resp.status().as_u16() != 401 {
                return Ok(resp);
            }
            let ch = www_authenticate(&resp);
            log::debug!("{url}: 401, challenge {ch:?}");
            let refused = |reason: String| RegistryError::Unauthorized {
                registry: self.registry.clone(),
                reason,
            };
            if reauthenticated {
                return Err(refused(match (&self.creds, auth) {
                    (None, _) => {
                        format!("{repo}: the registry requires credentials (--creds or --authfile)")
                    }
                    (Some(c), _) => format!("{repo}: credentials of {:?} were refused", c.username),
                }));
            }
            let Some(ch) = ch else {
                return Err(refused(format!(
                    "{repo}: 401 without a Basic or Bearer challenge"
                )));
            };
            // A new challenge (or insufficient_scope on a cached token): forget the token and
            // ask again, once, for what the registry says it wants besides (a cross-repository
            // mount needs pull on the source repository too).
            self.tokens.lock().expect("not poisoned").remove(&scope);
            if let Challenge::Bearer {
                scope: Some(wanted),
                ..
            } = &ch
            {
                scope = merge_scopes(&scope, wanted);
            }
            *self.challenge.lock().expect("not poisoned") = Some(ch);
            reauthenticated = true;
        }
    }

    /// The `Authorization` value for `scope`, fetching a token if the registry wants one.
    fn authorization(&self, scope: &str) -> Result<Option<String>, RegistryError> {
        let challenge = self.challenge.lock().expect("not poisoned").clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.creds.as_ref().map(Credentials::basic_header)),
            Some(Challenge::Bearer { realm, service, .. }) => {
                if let Some(t) = self.tokens.lock().expect("not poisoned").get(scope)
                    && t.expires > Instant::now()
                {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scope)?;
                let value = format!("Bearer {}", token.value);
                self.tokens
                    .lock()
                    .expect("not poisoned")
                    .insert(scope.to_string(), token);
                Ok(Some(value))
            }
        }
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, RegistryError> {
        let mut url = Url::parse(realm).map_err(|e| RegistryError::Unauthorized {
            registry: self.registry.clone(),
            reason: format!("the token realm {realm:?} is not a URL: {e}"),
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                reason: format!("the token realm {realm:?} is not http(s)"),
            });
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            // One `scope` parameter per scope, as the token spec and docker's clients send them.
            for one in scope.split(' ').filter(|s| !s.is_empty()) {
                q.append_pair("scope", one);
            }
        }
        let basic = self.creds.as_ref().map(Credentials::basic_header);
        let asked = Instant::now();
        // The realm is a host the registry names: credentials go there by design (this is how
        // the token flow works), but not on to wherever it redirects.
        let mut resp = self.send_retrying_to(
            Method::Get,
            &url,
            &[],
            basic.as_deref(),
            &url,
            ATTEMPTS,
            Payload::None,
        )?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                reason: match &self.creds {
                    Some(c) => format!(
                        "the token server refused the credentials of {:?} for {scope}",
                        c.username
                    ),
                    None => format!("the token server requires credentials for {scope}"),
                },
            });
        }
        if !(200..300).contains(&status) {
            return Err(status_error(&url, status, resp));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_TOKEN_BYTES)
            .read_to_vec()
            .map_err(|e| transport(&url, e))?;
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Unauthorized {
                registry: self.registry.clone(),
                reason: format!("the token server's answer is not a token: {e}"),
            })?;
        let value = t
            .token
            .filter(|t| !t.is_empty())
            .or(t.access_token)
            .ok_or_else(|| RegistryError::Unauthorized {
                registry: self.registry.clone(),
                reason: "the token server's answer has no token".into(),
            })?;
        // Renew a little early: a token that expires in flight costs a 401 and a retry.
        let life = Duration::from_secs(t.expires_in.unwrap_or(60).max(1));
        Ok(Token {
            value,
            expires: asked + life.mul_f32(0.9),
        })
    }

    /// Send, retrying 5xx, 429 and transport failures up to `attempts` times with backoff.
    /// `auth` goes only to `origin`'s scheme, host and port.
    #[allow(clippy::too_many_arguments)]
    fn send_retrying_to(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        auth: Option<&str>,
        origin: &Url,
        attempts: u32,
        payload: Payload<'_>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut attempt = 1;
        loop {
            let res = self.send(method, url, headers, auth, origin, payload);
            let wait = match &res {
                Ok(resp) if retryable(resp.status().as_u16()) => {
                    let status = resp.status().as_u16();
                    if attempt >= attempts {
                        return Err(RegistryError::RetriesExhausted {
                            url: url.to_string(),
                            attempts: attempt,
                            last: format!("HTTP {status}"),
                        });
                    }
                    retry_after(resp).unwrap_or_else(|| self.backoff(attempt))
                }
                Err(RegistryError::Transport { source, .. }) if transient(source) => {
                    if attempt >= attempts {
                        return res;
                    }
                    self.backoff(attempt)
                }
                _ => return res,
            };
            log::debug!("{url}: attempt {attempt} failed; retrying in {wait:?}");
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        self.backoff * 2u32.pow(attempt.saturating_sub(1).min(6))
    }

    /// One request, following redirects by hand (for GET and HEAD; an upload's redirect is
    /// the caller's to judge).
    fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        auth: Option<&str>,
        origin: &Url,
        payload: Payload<'_>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut url = url.clone();
        let mut seen = HashSet::new();
        loop {
            seen.insert(url.clone());
            let mut req = ureq::http::Request::builder()
                .method(method.as_str())
                .uri(url.as_str());
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            // Blob storage behind a registry rejects (or leaks) a registry's credentials.
            if let Some(a) = auth
                && same_origin(&url, origin)
            {
                req = req.header("Authorization", a);
            }
            let bad_request = |e: ureq::http::Error| RegistryError::Status {
                url: url.to_string(),
                status: 0,
                message: format!("cannot build the request: {e}"),
            };
            let resp = match payload {
                Payload::None => self.agent.run(req.body(()).map_err(bad_request)?),
                Payload::Bytes(b) => self.agent.run(req.body(b).map_err(bad_request)?),
                Payload::File(f) => {
                    // A retry sends the file again from its start.
                    (&*f)
                        .seek(std::io::SeekFrom::Start(0))
                        .map_err(|e| transport(&url, ureq::Error::Io(e)))?;
                    self.agent.run(req.body(f).map_err(bad_request)?)
                }
            }
            .map_err(|e| transport(&url, e))?;
            let status = resp.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308)
                || !matches!(method, Method::Get | Method::Head)
            {
                return Ok(resp);
            }
            let location = resp
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| RegistryError::Status {
                    url: url.to_string(),
                    status,
                    message: "a redirect without a Location".into(),
                })?;
            let next = url.join(location).map_err(|e| RegistryError::Status {
                url: url.to_string(),
                status,
                message: format!("a redirect to a bad Location {location:?}: {e}"),
            })?;
            if !matches!(next.scheme(), "https" | "http") {
                return Err(RegistryError::Status {
                    url: url.to_string(),
                    status,
                    message: format!("a redirect to a non-http URL {next}"),
                });
            }
            if seen.contains(&next) || seen.len() > MAX_REDIRECTS {
                return Err(RegistryError::RedirectLoop {
                    url: url.to_string(),
                    hops: seen.len(),
                });
            }
            log::debug!("{url}: redirected to {next}");
            url = next;
        }
    }
}

/// `ours` and the space-separated scopes of `wanted` not in it yet.
fn merge_scopes(ours: &str, wanted: &str) -> String {
    let mut all: Vec<&str> = ours.split(' ').filter(|s| !s.is_empty()).collect();
    for w in wanted.split(' ').filter(|s| !s.is_empty()) {
        if !all.contains(&w) {
            all.push(w);
        }
    }
    all.join(" ")
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn www_authenticate(resp: &Response<Body>) -> Option<Challenge> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_challenge)
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries; backoff covers it).
fn retry_after(resp: &Response<Body>) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Failures a new connection may not have: dropped, reset, refused, timed out. Not a failed
/// TLS handshake (ureq reports rustls's errors as `InvalidData`): another try fails the same.
pub(crate) fn transient(e: &ureq::Error) -> bool {
    use std::io::ErrorKind::*;
    match e {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ConnectionReset
                | ConnectionAborted
                | ConnectionRefused
                | NotConnected
                | BrokenPipe
                | UnexpectedEof
                | TimedOut
                | WouldBlock
                | Interrupted
        ),
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed => true,
        _ => false,
    }
}

pub(crate) fn transport(url: &Url, e: ureq::Error) -> RegistryError {
    if url.scheme() == "https"
        && matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData)
    {
        return RegistryError::TlsHandshake {
            url: url.to_string(),
            source: Box::new(e),
        };
    }
    RegistryError::Transport {
        url: url.to_string(),
        source: Box::new(e),
    }
}

/// An unexpected status, with the registry's error message when it sends one.
pub(crate) fn status_error(url: &Url, status: u16, resp: Response<Body>) -> RegistryError {
    let body = error_body(resp);
    RegistryError::Status {
        url: url.to_string(),
        status,
        message: registry_message(&body),
    }
}

/// The first 64 KiB of an error response's body (empty if it cannot be read: the status is the
/// error, the body only explains it).
pub(crate) fn error_body(mut resp: Response<Body>) -> Vec<u8> {
    resp.body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_vec()
        .unwrap_or_default()
}

/// The distribution spec's `{"errors":[{"code","message"}]}`, or a prefix of the text.
pub(crate) fn registry_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        return e
            .errors
            .iter()
            .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_5xx_and_429_are_retried() {
        for s in [429, 500, 502, 503, 504] {
            assert!(retryable(s), "{s}");
        }
        for s in [200, 206, 400, 401, 403, 404, 416, 501] {
            assert!(!retryable(s), "{s}");
        }
    }

    #[test]
    fn a_challenge_scope_adds_to_ours() {
        assert_eq!(
            merge_scopes(
                "repository:copy:pull,push",
                "repository:copy:pull,push repository:team/app:pull"
            ),
            "repository:copy:pull,push repository:team/app:pull"
        );
        assert_eq!(merge_scopes("repository:a:pull", ""), "repository:a:pull");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(&u("https://r:443/v2/x"), &u("https://r/")));
        assert!(!same_origin(&u("https://r:5000/x"), &u("https://r/")));
        assert!(!same_origin(&u("http://r/x"), &u("https://r/")));
        assert!(!same_origin(&u("https://s3.example/x"), &u("https://r/")));
    }

    #[test]
    fn registry_errors_are_summarized() {
        assert_eq!(
            registry_message(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#
            ),
            "MANIFEST_UNKNOWN manifest unknown"
        );
        assert_eq!(registry_message(b"oops\n"), "oops");
    }
}
