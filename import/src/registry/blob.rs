//! Streaming a blob from a registry, resuming with `Range` where a connection drops.
//!
//! The reader yields the blob's bytes in order exactly once; digest and size are verified by
//! whoever consumes it (the layer pipeline, or [`super::RegistryContainer::read_optional`]).
//! A registry that ignores `Range` and sends the whole blob again has the part already
//! delivered skipped.

use std::io::{self, Read};

use layerstore_store::Digest;
use ureq::http::Response;
use ureq::{Body, BodyReader};
use url::Url;

use super::RegistryError;
use super::client::{Client, status_error};

/// Resumes in a row without a byte of progress before the reader gives up.
const MAX_RESUMES: u32 = 5;

/// A blob being read.
pub(crate) struct BlobReader<'c> {
    client: &'c Client,
    repo: String,
    url: Url,
    digest: Digest,
    /// The descriptor's size: where the blob ends.
    size: u64,
    body: Option<BodyReader<'static>>,
    pos: u64,
    /// Bytes of the current response to drop (a registry that answered a `Range` with 200).
    skip: u64,
    resumes_without_progress: u32,
    /// Total resumes, for the log and tests.
    pub(crate) resumes: u32,
}

impl<'c> BlobReader<'c> {
    /// Start reading blob `digest` of `size` bytes from `repo`. `Ok(None)`: the registry does
    /// not have it.
    pub(crate) fn open(
        client: &'c Client,
        repo: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<Option<Self>, RegistryError> {
        let url = client.url(&format!("v2/{repo}/blobs/{digest}"));
        let resp = client.get(&url, repo, &[])?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(status_error(&url, status, resp));
        }
        let mut r = BlobReader {
            client,
            repo: repo.into(),
            url,
            digest: *digest,
            size,
            body: None,
            pos: 0,
            skip: 0,
            resumes_without_progress: 0,
            resumes: 0,
        };
        r.accept(resp, 0)?;
        Ok(Some(r))
    }

    /// Take `resp` (200 from byte 0, or 206 from `from`) as the body to read.
    fn accept(&mut self, resp: Response<Body>, from: u64) -> Result<(), RegistryError> {
        let status = resp.status().as_u16();
        let length = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        self.skip = 0;
        match status {
            200 => {
                // Fail before reading a byte when the registry says it will send too much.
                if let Some(n) = length
                    && n > self.size
                {
                    return Err(RegistryError::BlobTooLong {
                        digest: self.digest.to_string(),
                        expected: self.size,
                        sent: n,
                    });
                }
                self.skip = from;
            }
            206 => {
                let start = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(s, _)| s.trim().parse::<u64>().ok());
                if start != Some(from) {
                    return Err(RegistryError::ResumeFailed {
                        digest: self.digest.to_string(),
                        offset: from,
                        reason: format!(
                            "the registry answered the range with {:?}",
                            resp.headers().get("content-range")
                        ),
                    });
                }
                if let Some(n) = length
                    && from + n > self.size
                {
                    return Err(RegistryError::BlobTooLong {
                        digest: self.digest.to_string(),
                        expected: self.size,
                        sent: from + n,
                    });
                }
            }
            _ => {
                return Err(RegistryError::ResumeFailed {
                    digest: self.digest.to_string(),
                    offset: from,
                    reason: status_error(&self.url, status, resp).to_string(),
                });
            }
        }
        self.body = Some(resp.into_body().into_reader());
        Ok(())
    }

    /// Ask again for the rest of the blob from `self.pos`.
    fn resume(&mut self, why: &dyn std::fmt::Display) -> io::Result<()> {
        self.body = None;
        self.resumes_without_progress += 1;
        self.resumes += 1;
        if self.resumes_without_progress > MAX_RESUMES {
            return Err(io::Error::other(RegistryError::ResumeFailed {
                digest: self.digest.to_string(),
                offset: self.pos,
                reason: format!("{MAX_RESUMES} resumes made no progress; last: {why}"),
            }));
        }
        log::info!(
            "blob {}: connection lost at byte {} ({why}); resuming",
            self.digest,
            self.pos
        );
        std::thread::sleep(self.client.backoff(self.resumes_without_progress));
        let range = format!("bytes={}-", self.pos);
        let resp = self
            .client
            .get(&self.url, &self.repo, &[("Range", &range)])
            .map_err(io::Error::other)?;
        self.accept(resp, self.pos).map_err(io::Error::other)
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(body) = self.body.as_mut() else {
                self.resume(&"no open response")?;
                continue;
            };
            match body.read(buf) {
                Ok(0) if self.pos < self.size => {
                    // The registry ended the body early without saying so (no Content-Length).
                    self.resume(&"the response ended early")?;
                }
                Ok(0) => return Ok(0),
                Ok(n) if self.skip > 0 => {
                    let dropped = (n as u64).min(self.skip);
                    self.skip -= dropped;
                    let keep = n - dropped as usize;
                    if self.pos + keep as u64 > self.size {
                        return Err(io::Error::other(RegistryError::BlobTooLong {
                            digest: self.digest.to_string(),
                            expected: self.size,
                            sent: self.pos + keep as u64,
                        }));
                    }
                    if keep > 0 {
                        buf.copy_within(dropped as usize..n, 0);
                        self.pos += keep as u64;
                        self.resumes_without_progress = 0;
                        return Ok(keep);
                    }
                }
                Ok(n) if self.pos + n as u64 > self.size => {
                    // A registry sending more than the descriptor promises is not trusted
                    // with the rest (the caller would only learn it from a size mismatch, or
                    // from a decompressor choking on what follows).
                    return Err(io::Error::other(RegistryError::BlobTooLong {
                        digest: self.digest.to_string(),
                        expected: self.size,
                        sent: self.pos + n as u64,
                    }));
                }
                Ok(n) => {
                    self.pos += n as u64;
                    self.resumes_without_progress = 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if resumable(&e) => self.resume(&e)?,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A dropped or stalled connection (not, say, a TLS failure, which another try won't cure).
fn resumable(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | TimedOut | WouldBlock
    ) {
        return true;
    }
    // ureq wraps its own errors in `Other`.
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(super::client::transient)
}

/// Fetch a whole small blob (a config) of at most `max` bytes; `Ok(None)` if absent.
pub(crate) fn read_small(
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    max: u64,
) -> Result<Option<Vec<u8>>, crate::Error> {
    let Some(r) = BlobReader::open(client, repo, digest, size)? else {
        return Ok(None);
    };
    let mut v = Vec::new();
    r.take(max + 1)
        .read_to_end(&mut v)
        .map_err(|e| crate::Error::io(format!("blob {digest}"), e))?;
    if v.len() as u64 > max {
        return Err(crate::Error::TooLarge {
            what: format!("blob {digest}"),
            limit: max,
        });
    }
    Ok(Some(v))
}
