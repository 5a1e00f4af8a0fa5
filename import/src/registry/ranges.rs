//! Fetching byte ranges of a blob: `GET` with `Range: bytes=a-b,c-d,…`, answered by
//! `206 multipart/byteranges` (one part per range, or ranges coalesced), a single-range `206`,
//! or `200` with the whole blob (registries on object storage, proxies that drop `Range`).
//! `416` or `400` (too many ranges, a header too long) are asked again with fewer, larger
//! ranges. The bytes are not trusted: the caller decompresses and checks them against digests.

use std::io::Read;
use std::ops::Range;

use layerstore_store::Digest;

use super::RegistryContainer;
use super::RegistryError;
use super::client::status_error;

/// Why ranges could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The registry answered with the whole blob: it does not serve ranges.
    #[error("blob {digest}: the registry ignores Range (it answered 200 with the whole blob)")]
    Ignored { digest: Digest },
    #[error("blob {digest}: the registry's answer to a range request is malformed: {reason}")]
    Malformed { digest: Digest, reason: String },
}

/// One `206` part: where it starts in the blob, and its bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub start: u64,
    pub data: Vec<u8>,
}

/// What a range request returned: each asked range's bytes, and the response bytes read.
pub(crate) struct Fetched {
    pub ranges: Vec<Vec<u8>>,
    pub body_bytes: u64,
    /// Requests made (more than one when the registry asked for fewer ranges).
    pub requests: u32,
}

impl RegistryContainer {
    /// Fetch the byte ranges `ranges` (ascending, disjoint, non-empty) of blob `digest` of
    /// `size` bytes.
    pub(crate) fn fetch_ranges(
        &self,
        digest: &Digest,
        size: u64,
        ranges: &[Range<u64>],
    ) -> Result<Fetched, RangeError> {
        let repo = &self.reference.repository;
        let url = self.client.url(&format!("v2/{repo}/blobs/{digest}"));
        let mut asked: Vec<Range<u64>> = ranges.to_vec();
        let mut requests = 0;
        let mut body_bytes = 0;
        loop {
            requests += 1;
            let header = range_header(&asked);
            let resp = self.client.get(&url, repo, &[("Range", &header)])?;
            let status = resp.status().as_u16();
            match status {
                206 => {}
                200 => return Err(RangeError::Ignored { digest: *digest }),
                416 | 400 | 413 | 431 if asked.len() > 1 => {
                    log::debug!(
                        "{url}: HTTP {status} to {} ranges; asking for fewer",
                        asked.len()
                    );
                    asked = coarsen(&asked);
                    continue;
                }
                _ => return Err(status_error(&url, status, resp).into()),
            }
            let malformed = |reason: String| RangeError::Malformed {
                digest: *digest,
                reason,
            };
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let content_type = header("content-type").unwrap_or_default();
            let content_range = header("content-range");
            let wanted: u64 = asked.iter().map(|r| r.end - r.start).sum();
            // Room for the part headers of a multipart answer; more is not an answer to this.
            let limit = wanted + 512 * asked.len() as u64 + (64 << 10);
            let mut body = Vec::new();
            resp.into_body()
                .into_reader()
                .take(limit + 1)
                .read_to_end(&mut body)
                .map_err(|e| malformed(format!("reading the answer: {e}")))?;
            body_bytes += body.len() as u64;
            if body.len() as u64 > limit {
                return Err(malformed(format!("more than {limit} bytes")));
            }
            let parts = match multipart_boundary(&content_type) {
                Some(b) => parse_multipart(&body, &b, size).map_err(malformed)?,
                None => {
                    let cr = content_range
                        .ok_or_else(|| malformed("206 without a Content-Range".into()))?;
                    let (r, _) = parse_content_range(&cr, size).map_err(malformed)?;
                    if r.end - r.start != body.len() as u64 {
                        return Err(malformed(format!(
                            "Content-Range {cr:?} but {} bytes",
                            body.len()
                        )));
                    }
                    vec![Part {
                        start: r.start,
                        data: body,
                    }]
                }
            };
            let ranges = slice_ranges(ranges, &parts).map_err(malformed)?;
            return Ok(Fetched {
                ranges,
                body_bytes,
                requests,
            });
        }
    }
}

/// `bytes=a-b,c-d` (inclusive ends) for `ranges` (exclusive ends).
fn range_header(ranges: &[Range<u64>]) -> String {
    let mut s = String::from("bytes=");
    for (i, r) in ranges.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("{}-{}", r.start, r.end - 1));
    }
    s
}

/// Half as many ranges, each pair of neighbours merged (the gap between them fetched too).
fn coarsen(ranges: &[Range<u64>]) -> Vec<Range<u64>> {
    ranges
        .chunks(2)
        .map(|c| c[0].start..c[c.len() - 1].end)
        .collect()
}

/// The boundary of a `multipart/byteranges` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut it = content_type.split(';');
    if !it
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/byteranges")
    {
        return None;
    }
    it.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
    .filter(|b| !b.is_empty())
}

/// `bytes a-b/size` as the range `a..b+1`, inside a blob of `size` bytes.
fn parse_content_range(v: &str, size: u64) -> Result<(Range<u64>, Option<u64>), String> {
    let bad = || format!("bad Content-Range {v:?}");
    let rest = v.trim().strip_prefix("bytes ").ok_or_else(bad)?;
    let (span, total) = rest.split_once('/').ok_or_else(bad)?;
    let (a, b) = span.split_once('-').ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().map_err(|_| bad())?),
    };
    if a > b || b >= size || total.is_some_and(|t| t != size) {
        return Err(format!(
            "Content-Range {v:?} outside the blob of {size} bytes"
        ));
    }
    Ok((a..b + 1, total))
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Parse a `multipart/byteranges` body. Each part's length comes from its `Content-Range`, so
/// binary data that happens to contain the boundary cannot cut a part short.
pub(crate) fn parse_multipart(body: &[u8], boundary: &str, size: u64) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}");
    let mut pos = find(body, delim.as_bytes(), 0).ok_or("no boundary in the body")?;
    let mut parts = Vec::new();
    loop {
        pos += delim.len();
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding, then the line break that ends the delimiter line.
        while body.get(pos).is_some_and(|c| *c == b' ' || *c == b'\t') {
            pos += 1;
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err("a boundary line without CRLF".into());
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("a part without a blank line")?;
        let head = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| "a part header that is not text")?;
        let mut range = None;
        for line in head.split("\r\n") {
            if let Some((k, v)) = line.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-range")
            {
                range = Some(parse_content_range(v, size)?.0);
            }
        }
        let range = range.ok_or("a part without Content-Range")?;
        let start = head_end + 4;
        let len = usize::try_from(range.end - range.start).map_err(|_| "a part too long")?;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= body.len())
            .ok_or("a part cut short")?;
        parts.push(Part {
            start: range.start,
            data: body[start..end].to_vec(),
        });
        if parts.len() > 100_000 {
            return Err("too many parts".into());
        }
        pos = end;
        if !body[pos..].starts_with(b"\r\n") || !body[pos + 2..].starts_with(delim.as_bytes()) {
            return Err("a part not followed by the boundary".into());
        }
        pos += 2;
    }
}

/// The bytes of each of `ranges`, from the parts that cover them.
fn slice_ranges(ranges: &[Range<u64>], parts: &[Part]) -> Result<Vec<Vec<u8>>, String> {
    ranges
        .iter()
        .map(|r| {
            parts
                .iter()
                .find(|p| p.start <= r.start && r.end <= p.start + p.data.len() as u64)
                .map(|p| {
                    let a = (r.start - p.start) as usize;
                    p.data[a..a + (r.end - r.start) as usize].to_vec()
                })
                .ok_or_else(|| format!("no part holds bytes {}-{}", r.start, r.end - 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(u64, &[u8])], boundary: &str, size: u64) -> Vec<u8> {
        let mut b = Vec::new();
        for (start, data) in parts {
            b.extend_from_slice(
                format!(
                    "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
                    start,
                    start + data.len() as u64 - 1
                )
                .as_bytes(),
            );
            b.extend_from_slice(data);
        }
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        b
    }

    #[test]
    fn multipart_answers_are_parsed_by_their_content_ranges() {
        // The second part's data contains the boundary: its length still comes from its range.
        let b = body(&[(0, b"abc"), (10, b"x\r\n--XYZ\r\ny")], "XYZ", 100);
        let parts = parse_multipart(&b, "XYZ", 100).unwrap();
        assert_eq!(
            parts,
            vec![
                Part {
                    start: 0,
                    data: b"abc".to_vec()
                },
                Part {
                    start: 10,
                    data: b"x\r\n--XYZ\r\ny".to_vec()
                },
            ]
        );
        assert_eq!(
            slice_ranges(&[0..2, 12..15], &parts).unwrap(),
            vec![b"ab".to_vec(), b"\n--".to_vec()]
        );
        assert!(slice_ranges(std::slice::from_ref(&(3..5)), &parts).is_err());
    }

    #[test]
    fn hostile_multipart_answers_are_errors_not_panics() {
        let good = body(&[(0, b"abc"), (10, b"defg")], "B", 100);
        for cut in 0..good.len() {
            let _ = parse_multipart(&good[..cut], "B", 100);
        }
        for bad in [
            &b""[..],
            b"--B",
            b"--B\r\n",
            b"--B\r\nContent-Range: bytes 5-2/100\r\n\r\nxxxx\r\n--B--",
            b"--B\r\nContent-Range: bytes 0-3/50\r\n\r\nxxxx\r\n--B--",
            b"--B\r\nContent-Range: bytes 0-300/100\r\n\r\nxxxx\r\n--B--",
            b"--B\r\nContent-Range: bytes 0-18446744073709551615/100\r\n\r\nx",
            b"--B\r\n\r\nxxxx\r\n--B--",
            b"--B\r\nContent-Range: bytes 0-3/100\r\n\r\nxxxxxxx--B--",
            b"--Bjunk",
        ] {
            assert!(
                parse_multipart(bad, "B", 100).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn content_types_and_ranges_are_read_strictly() {
        assert_eq!(
            multipart_boundary("multipart/byteranges; boundary=3d6b6a416f9b5").as_deref(),
            Some("3d6b6a416f9b5")
        );
        assert_eq!(
            multipart_boundary("Multipart/Byteranges;boundary=\"q\"").as_deref(),
            Some("q")
        );
        assert_eq!(multipart_boundary("application/octet-stream"), None);
        assert_eq!(multipart_boundary("multipart/byteranges"), None);
        assert_eq!(parse_content_range("bytes 0-9/10", 10).unwrap().0, 0..10);
        assert_eq!(parse_content_range("bytes 2-3/*", 10).unwrap().0, 2..4);
        assert!(parse_content_range("bytes 2-10/10", 10).is_err());
        assert!(parse_content_range("items 2-3/10", 10).is_err());
    }

    #[test]
    fn range_headers_and_coarsening() {
        assert_eq!(range_header(&[0..10, 20..21]), "bytes=0-9,20-20");
        assert_eq!(coarsen(&[0..1, 5..6, 9..10]), vec![0..6, 9..10]);
        let one = 0..1;
        assert_eq!(
            coarsen(std::slice::from_ref(&one)),
            std::slice::from_ref(&one)
        );
    }
}
