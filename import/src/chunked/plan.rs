//! The fetch plan of a partial pull: which byte ranges of the blob to fetch so that, with the
//! contents the store holds, the layer's exact uncompressed stream can be rebuilt.
//!
//! No tar-split is needed: the blob is cut into pieces at the payload boundaries the TOC names
//! (each payload is whole zstd frames), every piece that is not a held payload is fetched (tar
//! headers, padding, payloads the store lacks, the end-of-archive frame), and a held payload is
//! replaced by the stored content. A held payload smaller than `min_hold` compressed bytes is
//! fetched anyway: skipping it would cost a range (and a multipart part header) for nothing.

use std::collections::HashMap;
use std::ops::Range;

use layerstore_store::{Digest, ObjectId};

use super::ChunkedError;
use super::toc::{EntryType, TocEntry, TocLocation};

/// What one piece of the blob becomes in the rebuilt stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PieceKind {
    /// Frames of tar headers, padding and the archive's end: fetched and decompressed.
    Stream,
    /// A payload the store lacks: fetched, decompressed, checked against its TOC digest.
    Payload { digest: Digest, size: u64 },
    /// A payload the store holds as `object`: not fetched.
    Held { object: ObjectId, size: u64 },
}

/// A byte range of the blob (`start..end`) and what it becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub start: u64,
    pub end: u64,
    pub kind: PieceKind,
}

/// The plan of a partial pull.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Contiguous, in blob order, covering `0..data_end`.
    pub pieces: Vec<Piece>,
    /// The ranges to fetch, merged, in blob order.
    pub fetch: Vec<Range<u64>>,
    pub fetch_bytes: u64,
    /// Regular files with content, and those the store holds.
    pub files: u64,
    pub held_files: u64,
    /// Uncompressed bytes of the held files.
    pub held_bytes: u64,
}

/// The payloads the TOC names, checked: each a regular file's frames `offset..endOffset`, in
/// ascending, disjoint order inside the tar data; chunks inside their file.
pub fn payloads(
    entries: &[TocEntry],
    loc: &TocLocation,
) -> Result<Vec<(Range<u64>, Digest, u64)>, ChunkedError> {
    let bad = |e: &TocEntry, reason: &str| ChunkedError::BadToc {
        reason: format!("entry {:?}: {reason}", e.name),
    };
    let data_end = loc.data_end();
    let mut out: Vec<(Range<u64>, Digest, u64)> = Vec::new();
    let mut cursor = 0u64;
    // The regular file the chunks that follow belong to: (name, frames, size, last chunk start).
    let mut file: Option<(&str, Range<u64>, u64, u64)> = None;
    for e in entries {
        if e.name.is_empty() {
            return Err(bad(e, "no name"));
        }
        match e.kind {
            EntryType::Reg if e.size == 0 => {
                if e.offset != 0 || e.end_offset != 0 {
                    return Err(bad(e, "an empty file with a payload"));
                }
                file = None;
            }
            EntryType::Reg => {
                let digest: Digest = e
                    .digest
                    .as_deref()
                    .ok_or_else(|| bad(e, "a file with content but no digest"))?
                    .parse()
                    .map_err(|_| bad(e, "a digest that is not sha256"))?;
                if e.offset < cursor || e.end_offset <= e.offset || e.end_offset > data_end {
                    return Err(bad(
                        e,
                        "payload frames out of order, empty, or outside the tar data",
                    ));
                }
                cursor = e.end_offset;
                out.push((e.offset..e.end_offset, digest, e.size));
                file = Some((&e.name, e.offset..e.end_offset, e.size, e.offset));
            }
            EntryType::Chunk => {
                let Some((name, frames, size, last)) = file.as_mut() else {
                    return Err(bad(e, "a chunk that follows no regular file"));
                };
                if *name != e.name
                    || e.offset <= *last
                    || e.offset >= frames.end
                    || e.chunk_offset
                        .checked_add(e.chunk_size)
                        .is_none_or(|end| end > *size)
                {
                    return Err(bad(e, "a chunk outside its file"));
                }
                *last = e.offset;
            }
            EntryType::Hardlink
            | EntryType::Symlink
            | EntryType::Dir
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo => file = None,
        }
    }
    Ok(out)
}

/// Plan the pull of a layer whose TOC `entries` and location `loc` are verified, given the
/// contents the store holds (`held`: sha256 → object and size).
pub fn plan(
    entries: &[TocEntry],
    loc: &TocLocation,
    held: &HashMap<Digest, (ObjectId, u64)>,
    min_hold: u64,
) -> Result<Plan, ChunkedError> {
    let mut plan = Plan::default();
    let mut cursor = 0u64;
    for (frames, digest, size) in payloads(entries, loc)? {
        plan.files += 1;
        if frames.start > cursor {
            plan.pieces.push(Piece {
                start: cursor,
                end: frames.start,
                kind: PieceKind::Stream,
            });
        }
        let kind = match held.get(&digest) {
            Some((object, held_size))
                if *held_size == size && frames.end - frames.start >= min_hold =>
            {
                plan.held_files += 1;
                plan.held_bytes += size;
                PieceKind::Held {
                    object: *object,
                    size,
                }
            }
            _ => PieceKind::Payload { digest, size },
        };
        cursor = frames.end;
        plan.pieces.push(Piece {
            start: frames.start,
            end: frames.end,
            kind,
        });
    }
    if loc.data_end() > cursor {
        plan.pieces.push(Piece {
            start: cursor,
            end: loc.data_end(),
            kind: PieceKind::Stream,
        });
    }
    for p in &plan.pieces {
        if matches!(p.kind, PieceKind::Held { .. }) {
            continue;
        }
        match plan.fetch.last_mut() {
            Some(r) if r.end == p.start => r.end = p.end,
            _ => plan.fetch.push(p.start..p.end),
        }
        plan.fetch_bytes += p.end - p.start;
    }
    Ok(plan)
}

/// Cut `ranges` into requests of at most `max_ranges` ranges and about `max_bytes` bytes (a
/// range longer than that is split), so a request's answer is bounded in memory.
pub fn requests(ranges: &[Range<u64>], max_ranges: usize, max_bytes: u64) -> Vec<Vec<Range<u64>>> {
    let max_ranges = max_ranges.max(1);
    let max_bytes = max_bytes.max(1);
    let mut out: Vec<Vec<Range<u64>>> = Vec::new();
    let mut cur: Vec<Range<u64>> = Vec::new();
    let mut cur_bytes = 0u64;
    for r in ranges {
        let mut start = r.start;
        while start < r.end {
            if cur.len() >= max_ranges || cur_bytes >= max_bytes {
                out.push(std::mem::take(&mut cur));
                cur_bytes = 0;
            }
            let end = r.end.min(start.saturating_add(max_bytes - cur_bytes));
            cur.push(start..end);
            cur_bytes += end - start;
            start = end;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunked::toc::Toc;

    fn toc(json: &str) -> Vec<TocEntry> {
        serde_json::from_str::<Toc>(json).unwrap().entries
    }

    fn loc(data_end: u64) -> TocLocation {
        TocLocation {
            checksum: Digest::of(b""),
            offset: data_end + 8,
            compressed: 1,
            uncompressed: 1,
        }
    }

    const A: &str = "sha256:0ab2918ea6c958649c78f366e281d1c242eb4463e83c7725ad84e2a0f7ec2903";
    const B: &str = "sha256:c0c11664d3b0d63a31da0266427df183f211efb807f0452d720c68f390f6d66e";

    fn two_files() -> Vec<TocEntry> {
        toc(&format!(
            r#"{{"version":1,"entries":[
            {{"type":"dir","name":"d/"}},
            {{"type":"reg","name":"d/a","size":5000,"digest":"{A}","offset":100,"endOffset":2100}},
            {{"type":"reg","name":"d/e"}},
            {{"type":"reg","name":"d/b","size":9000,"digest":"{B}","offset":2200,"endOffset":6200}},
            {{"type":"chunk","name":"d/b","offset":4000,"chunkOffset":5000,"chunkSize":4000,"chunkType":"zeros"}},
            {{"type":"symlink","name":"d/l","linkName":"a"}}
        ]}}"#
        ))
    }

    #[test]
    fn the_plan_fetches_the_complement_of_held_payloads() {
        let id = ObjectId::of(b"a");
        let held = HashMap::from([(A.parse().unwrap(), (id, 5000))]);
        let p = plan(&two_files(), &loc(6300), &held, 512).unwrap();
        assert_eq!(p.fetch, vec![0..100, 2100..6300]);
        assert_eq!(p.fetch_bytes, 4300);
        assert_eq!((p.files, p.held_files, p.held_bytes), (2, 1, 5000));
        assert_eq!(p.pieces.len(), 5);
        assert_eq!(
            p.pieces[1].kind,
            PieceKind::Held {
                object: id,
                size: 5000
            }
        );
        // Contiguous cover of the tar data.
        for w in p.pieces.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert_eq!(p.pieces.last().unwrap().end, 6300);
    }

    #[test]
    fn small_or_differently_sized_held_payloads_are_fetched() {
        let id = ObjectId::of(b"a");
        let held = HashMap::from([(A.parse().unwrap(), (id, 5000))]);
        // 2000 compressed bytes are under min_hold: one range for everything.
        let p = plan(&two_files(), &loc(6300), &held, 4096).unwrap();
        assert_eq!(p.fetch, vec![0..6300]);
        assert_eq!(p.held_files, 0);
        let held = HashMap::from([(A.parse().unwrap(), (id, 4999))]);
        let p = plan(&two_files(), &loc(6300), &held, 512).unwrap();
        assert_eq!(p.fetch, vec![0..6300]);
    }

    #[test]
    fn hostile_payload_tables_are_refused() {
        let cases = [
            // Overlapping payloads.
            format!(
                r#"[{{"type":"reg","name":"a","size":1,"digest":"{A}","offset":10,"endOffset":50}},
                    {{"type":"reg","name":"b","size":1,"digest":"{B}","offset":40,"endOffset":60}}]"#
            ),
            // Past the tar data.
            format!(
                r#"[{{"type":"reg","name":"a","size":1,"digest":"{A}","offset":10,"endOffset":7000}}]"#
            ),
            // Empty frames, no digest, bad digest.
            format!(
                r#"[{{"type":"reg","name":"a","size":1,"digest":"{A}","offset":10,"endOffset":10}}]"#
            ),
            r#"[{"type":"reg","name":"a","size":1,"offset":10,"endOffset":20}]"#.to_string(),
            r#"[{"type":"reg","name":"a","size":1,"digest":"md5:x","offset":10,"endOffset":20}]"#
                .to_string(),
            // An empty file with a payload, a nameless entry.
            r#"[{"type":"reg","name":"a","offset":10,"endOffset":20}]"#.to_string(),
            r#"[{"type":"dir","name":""}]"#.to_string(),
            // Chunks: orphaned, of another file, outside the frames or the size.
            r#"[{"type":"chunk","name":"a","offset":10}]"#.to_string(),
            format!(
                r#"[{{"type":"reg","name":"a","size":10,"digest":"{A}","offset":10,"endOffset":50}},
                    {{"type":"chunk","name":"b","offset":20,"chunkOffset":5,"chunkSize":5}}]"#
            ),
            format!(
                r#"[{{"type":"reg","name":"a","size":10,"digest":"{A}","offset":10,"endOffset":50}},
                    {{"type":"chunk","name":"a","offset":60,"chunkOffset":5,"chunkSize":5}}]"#
            ),
            format!(
                r#"[{{"type":"reg","name":"a","size":10,"digest":"{A}","offset":10,"endOffset":50}},
                    {{"type":"chunk","name":"a","offset":20,"chunkOffset":5,"chunkSize":18446744073709551615}}]"#
            ),
        ];
        for c in cases {
            let entries = toc(&format!(r#"{{"version":1,"entries":{c}}}"#));
            assert!(
                plan(&entries, &loc(6300), &HashMap::new(), 0).is_err(),
                "{c}"
            );
        }
    }

    #[test]
    fn requests_are_bounded_in_ranges_and_bytes() {
        let ranges: Vec<Range<u64>> = (0..2500u64).map(|i| i * 10..i * 10 + 5).collect();
        let reqs = requests(&ranges, 1000, u64::MAX);
        assert_eq!(
            reqs.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        let reqs = requests(&[0..250, 300..310], 1000, 100);
        assert_eq!(
            reqs,
            vec![vec![0..100], vec![100..200], vec![200..250, 300..310]]
        );
        assert!(requests(&[], 1000, 100).is_empty());
    }
}
