//! Rebuilding a layer's exact uncompressed stream from fetched ranges and held contents.
//!
//! Pieces are rebuilt in blob order: fetched frames are decompressed as they arrive (a fetched
//! payload is sha256ed on the way and must match its TOC digest and size; its blake3 is kept, so
//! the pair can be remembered once the layer is published), a held payload is copied from the
//! store. The whole stream is sha256ed and must equal the diff_id: only then is it handed to the
//! import pipeline, so nothing unverified is ever published.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::ops::Range;

use layerstore_store::{Digest, DigestHasher, ObjectId};
use sha2::Digest as _;

use super::ChunkedError;
use super::plan::{Piece, PieceKind, Plan, requests};

/// Ranges fetched per request, at most.
pub const MAX_RANGES: usize = 1000;
/// Bytes asked per request, about: bounds the memory a request's answer takes.
pub const MAX_REQUEST_BYTES: u64 = 32 << 20;

/// Each asked range's bytes, and the response bytes the answer took.
pub type Fetched = Result<(Vec<Vec<u8>>, u64), ChunkedError>;

/// Fetches requests of ranges.
pub type FetchFn<'a> = dyn FnMut(&[Range<u64>]) -> Fetched + 'a;

/// Bytes of the blob in order, fetched a request at a time.
struct Fetcher<'a, 'f> {
    requests: VecDeque<Vec<Range<u64>>>,
    /// Fetched ranges not yet used up: (start, bytes, used).
    parts: VecDeque<(u64, Vec<u8>, usize)>,
    fetch: &'a mut FetchFn<'f>,
    fetched: u64,
    requests_made: u64,
}

impl Fetcher<'_, '_> {
    /// Copy bytes at blob offset `pos` into `buf`.
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> Result<usize, ChunkedError> {
        loop {
            while let Some((start, data, _)) = self.parts.front()
                && start + data.len() as u64 <= pos
            {
                self.parts.pop_front();
            }
            if self.parts.is_empty() {
                let Some(req) = self.requests.pop_front() else {
                    return Err(ChunkedError::Rebuild {
                        reason: format!("byte {pos} is in no fetched range"),
                    });
                };
                let (ranges, bytes) = (self.fetch)(&req)?;
                self.fetched += bytes;
                self.requests_made += 1;
                if ranges.len() != req.len() {
                    return Err(ChunkedError::Rebuild {
                        reason: "a range request answered the wrong number of ranges".into(),
                    });
                }
                for (r, data) in req.iter().zip(ranges) {
                    if data.len() as u64 != r.end - r.start {
                        return Err(ChunkedError::Rebuild {
                            reason: format!(
                                "range {}-{} answered with {} bytes",
                                r.start,
                                r.end - 1,
                                data.len()
                            ),
                        });
                    }
                    self.parts.push_back((r.start, data, 0));
                }
                continue;
            }
            let (start, data, _) = self.parts.front().expect("not empty");
            if *start > pos {
                return Err(ChunkedError::Rebuild {
                    reason: format!("byte {pos} is in no fetched range"),
                });
            }
            let at = (pos - start) as usize;
            let n = buf.len().min(data.len() - at);
            buf[..n].copy_from_slice(&data[at..at + n]);
            return Ok(n);
        }
    }
}

/// The blob bytes `pos..end`, read through a [`Fetcher`].
struct Span<'a, 'b, 'f> {
    f: &'a mut Fetcher<'b, 'f>,
    pos: u64,
    end: u64,
}

impl Read for Span<'_, '_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min((self.end - self.pos).min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self
            .f
            .read_at(self.pos, &mut buf[..want])
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Writes to the output, sha256ing the whole stream (the diff_id) and bounding its length.
struct Out<'w> {
    inner: &'w mut dyn Write,
    diff_id: DigestHasher,
    len: u64,
    max: u64,
}

impl Write for Out<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.len + buf.len() as u64 > self.max {
            return Err(io::Error::other(ChunkedError::Rebuild {
                reason: format!("the layer grows past the limit of {} bytes", self.max),
            }));
        }
        let n = self.inner.write(buf)?;
        self.diff_id.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a payload to the output while hashing it with sha256 and blake3.
struct PayloadOut<'a, 'w> {
    out: &'a mut Out<'w>,
    sha: sha2::Sha256,
    blake: blake3::Hasher,
    len: u64,
}

impl Write for PayloadOut<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.sha.update(&buf[..n]);
        self.blake.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// What a rebuild did.
#[derive(Debug, Default)]
pub struct Rebuilt {
    pub tar_size: u64,
    /// Response bytes fetched, and requests made.
    pub fetched: u64,
    pub requests: u64,
    /// The contents fetched, each checked against its TOC digest: (object id, sha256).
    pub verified: Vec<(ObjectId, Digest)>,
}

/// Where a held content comes from: its bytes written into `w`, returning the length.
pub type HeldFn<'a> = dyn FnMut(&ObjectId, &mut dyn Write) -> Result<u64, ChunkedError> + 'a;

/// Rebuild the uncompressed stream `plan` describes into `out`, at most `max_len` bytes, and
/// check it against `diff_id`.
pub fn rebuild(
    plan: &Plan,
    fetch: &mut FetchFn<'_>,
    held: &mut HeldFn<'_>,
    out: &mut dyn Write,
    diff_id: &Digest,
    max_len: u64,
) -> Result<Rebuilt, ChunkedError> {
    let mut f = Fetcher {
        requests: requests(&plan.fetch, MAX_RANGES, MAX_REQUEST_BYTES).into(),
        parts: VecDeque::new(),
        fetch,
        fetched: 0,
        requests_made: 0,
    };
    let mut o = Out {
        inner: out,
        diff_id: DigestHasher::default(),
        len: 0,
        max: max_len,
    };
    let mut verified = Vec::new();
    for p in &plan.pieces {
        rebuild_piece(p, &mut f, held, &mut o, &mut verified)?;
    }
    o.flush().map_err(ChunkedError::output)?;
    let actual = o.diff_id.finish();
    if actual != *diff_id {
        return Err(ChunkedError::DiffId {
            expected: *diff_id,
            actual,
        });
    }
    Ok(Rebuilt {
        tar_size: o.len,
        fetched: f.fetched,
        requests: f.requests_made,
        verified,
    })
}

fn decompress(span: Span<'_, '_, '_>, w: &mut dyn Write, what: &str) -> Result<u64, ChunkedError> {
    let bad = |e: io::Error| match e.downcast::<ChunkedError>() {
        Ok(c) => c,
        Err(e) => ChunkedError::Rebuild {
            reason: format!("{what}: {e}"),
        },
    };
    let mut d = zstd::stream::read::Decoder::new(span).map_err(bad)?;
    d.window_log_max(27).map_err(bad)?;
    io::copy(&mut d, w).map_err(bad)
}

fn rebuild_piece(
    p: &Piece,
    f: &mut Fetcher<'_, '_>,
    held: &mut HeldFn<'_>,
    o: &mut Out<'_>,
    verified: &mut Vec<(ObjectId, Digest)>,
) -> Result<(), ChunkedError> {
    let span = |f| Span {
        f,
        pos: p.start,
        end: p.end,
    };
    match &p.kind {
        PieceKind::Stream => {
            decompress(span(f), o, &format!("frames at {}-{}", p.start, p.end - 1))?;
        }
        PieceKind::Payload { digest, size } => {
            let mut w = PayloadOut {
                out: o,
                sha: sha2::Sha256::new(),
                blake: blake3::Hasher::new(),
                len: 0,
            };
            decompress(span(f), &mut w, &format!("payload {digest}"))?;
            let actual = Digest::from_raw(w.sha.finalize().into());
            if w.len != *size || actual != *digest {
                return Err(ChunkedError::Payload {
                    digest: *digest,
                    reason: format!(
                        "the fetched frames {}-{} decompress to {} bytes with sha256 {actual}, \
                         the TOC says {size} bytes",
                        p.start,
                        p.end - 1,
                        w.len
                    ),
                });
            }
            verified.push((ObjectId::from_hash(w.blake.finalize()), *digest));
        }
        PieceKind::Held { object, size } => {
            let n = held(object, o)?;
            if n != *size {
                return Err(ChunkedError::Rebuild {
                    reason: format!(
                        "held object {} has {n} bytes, the TOC says {size}",
                        object.hex()
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::chunked::plan::plan;
    use crate::chunked::toc::{Toc, TocLocation};

    /// A toy chunked blob: header frame, payload frame per file, end frame; returns the blob,
    /// the uncompressed stream and the TOC entries.
    fn toy(files: &[&[u8]]) -> (Vec<u8>, Vec<u8>, Toc, TocLocation) {
        let mut blob = Vec::new();
        let mut tar = Vec::new();
        let mut entries = Vec::new();
        for (i, c) in files.iter().enumerate() {
            let head = format!("header {i}\n").into_bytes();
            blob.extend(zstd::encode_all(&head[..], 1).unwrap());
            tar.extend(&head);
            let start = blob.len();
            blob.extend(zstd::encode_all(*c, 1).unwrap());
            tar.extend(*c);
            entries.push(format!(
                r#"{{"type":"reg","name":"f{i}","size":{},"digest":"{}","offset":{start},"endOffset":{}}}"#,
                c.len(),
                Digest::of(c),
                blob.len()
            ));
        }
        blob.extend(zstd::encode_all(&b"end"[..], 1).unwrap());
        tar.extend(b"end");
        let toc: Toc = serde_json::from_str(&format!(
            r#"{{"version":1,"entries":[{}]}}"#,
            entries.join(",")
        ))
        .unwrap();
        let loc = TocLocation {
            checksum: Digest::of(b""),
            offset: blob.len() as u64 + 8,
            compressed: 1,
            uncompressed: 1,
        };
        (blob, tar, toc, loc)
    }

    fn serve(blob: &[u8]) -> impl FnMut(&[Range<u64>]) -> Fetched + '_ {
        move |rs: &[Range<u64>]| {
            let v: Vec<Vec<u8>> = rs
                .iter()
                .map(|r| blob[r.start as usize..r.end as usize].to_vec())
                .collect();
            let n = v.iter().map(|x| x.len() as u64).sum();
            Ok((v, n))
        }
    }

    #[test]
    fn a_partial_rebuild_equals_the_whole_stream() {
        let a = vec![7u8; 5000];
        let b = b"second file, fetched".repeat(50);
        let (blob, tar, toc, loc) = toy(&[&a, &b]);
        let id = ObjectId::of(&a);
        let held_map = HashMap::from([(Digest::of(&a), (id, a.len() as u64))]);
        let p = plan(&toc.entries, &loc, &held_map, 0).unwrap();
        assert_eq!(p.held_files, 1);
        let mut out = Vec::new();
        let mut fetch = serve(&blob);
        let mut held = |o: &ObjectId, w: &mut dyn Write| {
            assert_eq!(*o, id);
            w.write_all(&a).unwrap();
            Ok(a.len() as u64)
        };
        let r = rebuild(
            &p,
            &mut fetch,
            &mut held,
            &mut out,
            &Digest::of(&tar),
            1 << 20,
        )
        .unwrap();
        assert_eq!(out, tar);
        assert_eq!(r.tar_size, tar.len() as u64);
        assert!(r.fetched < blob.len() as u64);
        assert_eq!(r.verified, vec![(ObjectId::of(&b), Digest::of(&b))]);
    }

    #[test]
    fn wrong_bytes_for_a_range_fail_the_rebuild() {
        let a = b"first".repeat(100);
        let b = b"second".repeat(100);
        let (blob, tar, toc, loc) = toy(&[&a, &b]);
        let p = plan(&toc.entries, &loc, &HashMap::new(), 0).unwrap();
        // Every fetched byte flipped, or the answer of another file's frames: never accepted.
        let mut flipped = |rs: &[Range<u64>]| {
            let v: Vec<Vec<u8>> = rs
                .iter()
                .map(|r| {
                    blob[r.start as usize..r.end as usize]
                        .iter()
                        .map(|x| x ^ 0x55)
                        .collect()
                })
                .collect();
            Ok((v, 0))
        };
        let mut held =
            |_: &ObjectId, _: &mut dyn Write| -> Result<u64, ChunkedError> { unreachable!() };
        assert!(
            rebuild(
                &p,
                &mut flipped,
                &mut held,
                &mut Vec::new(),
                &Digest::of(&tar),
                1 << 20
            )
            .is_err()
        );
        // A payload replaced by another valid zstd frame of the right length is caught by its digest.
        let mut swapped = p.clone();
        if let PieceKind::Payload { digest, .. } = &mut swapped.pieces[1].kind {
            *digest = Digest::of(b"other");
        }
        let mut fetch = serve(&blob);
        assert!(matches!(
            rebuild(
                &swapped,
                &mut fetch,
                &mut held,
                &mut Vec::new(),
                &Digest::of(&tar),
                1 << 20
            ),
            Err(ChunkedError::Payload { .. })
        ));
        // The right bytes but another diff_id.
        let mut fetch = serve(&blob);
        assert!(matches!(
            rebuild(
                &p,
                &mut fetch,
                &mut held,
                &mut Vec::new(),
                &Digest::of(b"x"),
                1 << 20
            ),
            Err(ChunkedError::DiffId { .. })
        ));
        // Over the layer size limit.
        let mut fetch = serve(&blob);
        assert!(
            rebuild(
                &p,
                &mut fetch,
                &mut held,
                &mut Vec::new(),
                &Digest::of(&tar),
                10
            )
            .is_err()
        );
        // Short answers.
        let mut short = |rs: &[Range<u64>]| Ok((rs.iter().map(|_| vec![0u8; 1]).collect(), 0));
        assert!(
            rebuild(
                &p,
                &mut short,
                &mut held,
                &mut Vec::new(),
                &Digest::of(&tar),
                1 << 20
            )
            .is_err()
        );
    }
}
