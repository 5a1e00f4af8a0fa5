//! The table of contents of a zstd:chunked layer: where it is (the layer descriptor's
//! annotations), checking it against its checksum, and its entries.
//!
//! Blob layout (containers/storage `pkg/chunked/compressor`): the tar stream as zstd frames, a new
//! frame started before and after each file's payload (and at each chunk boundary inside a file),
//! so a payload's frames decompress alone to exactly its content; then skippable frames (magic
//! `0x184D2A50`, a 4-byte little-endian length, the data) holding the TOC (zstd-compressed JSON),
//! in the current format the tar-split, and a footer. The annotations name the TOC's offset and
//! lengths and its sha256; the annotations are covered by the manifest digest, the footer is not,
//! so only the annotations are trusted and the footer is never read.
//!
//! Two annotation families: `io.github.containers.zstd-chunked.*` (containers/storage since
//! 2022, also `tarsplit-position`) and `io.containers.zstd-chunked.*` (skopeo 1.9, Debian 12's:
//! a 40-byte footer, no tar-split). Their `manifest-position` reads the same:
//! `OFFSET:COMPRESSED:UNCOMPRESSED:TYPE` with type 1 (CRFS JSON).

use std::collections::BTreeMap;
use std::io::Read;

use layerstore_store::Digest;
use serde::Deserialize;

use super::ChunkedError;

/// The annotation families, current first: (checksum key, position key).
pub const ANNOTATION_FAMILIES: [(&str, &str); 2] = [
    (
        "io.github.containers.zstd-chunked.manifest-checksum",
        "io.github.containers.zstd-chunked.manifest-position",
    ),
    (
        "io.containers.zstd-chunked.manifest-checksum",
        "io.containers.zstd-chunked.manifest-position",
    ),
];

/// The current family's tar-split position key.
pub const TARSPLIT_POSITION: &str = "io.github.containers.zstd-chunked.tarsplit-position";

/// The length of a skippable frame's header (magic and length).
pub const SKIPPABLE_HEADER: u64 = 8;

/// The skippable frame magic this format uses (`0x184D2A50`, little-endian).
pub const SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];

/// Where a layer's TOC is, from its descriptor's annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TocLocation {
    /// sha256 of the compressed TOC bytes.
    pub checksum: Digest,
    /// Blob offset of the compressed TOC (after its skippable frame header).
    pub offset: u64,
    pub compressed: u64,
    pub uncompressed: u64,
}

impl TocLocation {
    /// Where the tar stream's frames end: the TOC's skippable frame starts there.
    pub fn data_end(&self) -> u64 {
        self.offset - SKIPPABLE_HEADER
    }
}

/// The TOC location the annotations name: `Ok(None)` when the layer is not zstd:chunked (no
/// annotation of either family). Annotations that are there but malformed are an error.
pub fn locate(
    annotations: &BTreeMap<String, String>,
    blob_size: u64,
) -> Result<Option<TocLocation>, ChunkedError> {
    let Some((ck, pk)) = ANNOTATION_FAMILIES
        .iter()
        .find(|(c, p)| annotations.contains_key(*c) || annotations.contains_key(*p))
    else {
        return Ok(None);
    };
    let bad = |key: &str, reason: &str| ChunkedError::BadAnnotation {
        key: key.into(),
        value: annotations.get(key).cloned().unwrap_or_default(),
        reason: reason.into(),
    };
    let checksum: Digest = annotations
        .get(*ck)
        .ok_or_else(|| bad(ck, "missing"))?
        .parse()
        .map_err(|_| bad(ck, "not a sha256 digest"))?;
    let pos = annotations.get(*pk).ok_or_else(|| bad(pk, "missing"))?;
    let fields: Vec<u64> = pos
        .split(':')
        .map(|f| f.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad(pk, "not OFFSET:COMPRESSED:UNCOMPRESSED:TYPE"))?;
    let [offset, compressed, uncompressed, kind] = fields[..] else {
        return Err(bad(pk, "not OFFSET:COMPRESSED:UNCOMPRESSED:TYPE"));
    };
    if kind != 1 {
        return Err(bad(pk, "unknown TOC type (only 1, CRFS JSON, is known)"));
    }
    if compressed == 0 {
        return Err(bad(pk, "an empty TOC"));
    }
    if offset < SKIPPABLE_HEADER
        || offset
            .checked_add(compressed)
            .is_none_or(|end| end > blob_size)
    {
        return Err(bad(pk, "the TOC lies outside the blob"));
    }
    Ok(Some(TocLocation {
        checksum,
        offset,
        compressed,
        uncompressed,
    }))
}

/// A parsed table of contents.
#[derive(Clone, Debug, Deserialize)]
pub struct Toc {
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub entries: Vec<TocEntry>,
}

/// The kind of a TOC entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    Reg,
    Hardlink,
    Symlink,
    Dir,
    Char,
    Block,
    Fifo,
    /// A further chunk of the regular file named just before.
    Chunk,
}

/// One TOC entry (containers/storage `minimal.FileMetadata`). Offsets are compressed blob
/// offsets; `size`, `chunkOffset` and `chunkSize` are uncompressed.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TocEntry {
    #[serde(rename = "type")]
    pub kind: EntryType,
    pub name: String,
    #[serde(default)]
    pub link_name: String,
    #[serde(default)]
    pub mode: u64,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub uid: u64,
    #[serde(default)]
    pub gid: u64,
    #[serde(default)]
    pub modtime: Option<String>,
    #[serde(default)]
    pub dev_major: u64,
    #[serde(default)]
    pub dev_minor: u64,
    /// Name → base64 value.
    #[serde(default)]
    pub xattrs: BTreeMap<String, String>,
    /// `sha256:…` of the whole content (regular files).
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub end_offset: u64,
    #[serde(default)]
    pub chunk_size: u64,
    #[serde(default)]
    pub chunk_offset: u64,
    #[serde(default)]
    pub chunk_digest: Option<String>,
    /// `""` (data) or `"zeros"` (a run of zeros; its frames still hold them).
    #[serde(default)]
    pub chunk_type: Option<String>,
}

impl TocEntry {
    /// Whether this chunk is a run of zeros.
    pub fn is_zeros(&self) -> bool {
        self.chunk_type.as_deref() == Some("zeros")
    }
}

/// Check the compressed TOC `compressed` against `loc` (length, then sha256) before anything in
/// it is read, then decompress it (at most `loc.uncompressed` bytes, itself at most `max_json`)
/// and parse it.
pub fn parse(compressed: &[u8], loc: &TocLocation, max_json: u64) -> Result<Toc, ChunkedError> {
    if loc.compressed > max_json || loc.uncompressed > max_json {
        return Err(ChunkedError::TocTooLarge {
            size: loc.compressed.max(loc.uncompressed),
            limit: max_json,
        });
    }
    if compressed.len() as u64 != loc.compressed {
        return Err(ChunkedError::BadToc {
            reason: format!(
                "{} bytes fetched, the annotation says {}",
                compressed.len(),
                loc.compressed
            ),
        });
    }
    let actual = Digest::of(compressed);
    if actual != loc.checksum {
        return Err(ChunkedError::TocChecksum {
            expected: loc.checksum,
            actual,
        });
    }
    let mut json = Vec::new();
    let mut d =
        zstd::stream::read::Decoder::with_buffer(compressed).map_err(|e| ChunkedError::BadToc {
            reason: format!("not zstd: {e}"),
        })?;
    d.window_log_max(27).map_err(|e| ChunkedError::BadToc {
        reason: format!("zstd: {e}"),
    })?;
    d.take(loc.uncompressed + 1)
        .read_to_end(&mut json)
        .map_err(|e| ChunkedError::BadToc {
            reason: format!("cannot decompress: {e}"),
        })?;
    if json.len() as u64 != loc.uncompressed {
        return Err(ChunkedError::BadToc {
            reason: format!(
                "decompresses to {}{} bytes, the annotation says {}",
                if json.len() as u64 > loc.uncompressed {
                    "more than "
                } else {
                    ""
                },
                json.len().min(loc.uncompressed as usize),
                loc.uncompressed
            ),
        });
    }
    let toc: Toc = serde_json::from_slice(&json).map_err(|e| ChunkedError::BadToc {
        reason: format!("not a TOC: {e}"),
    })?;
    if toc.version != 1 {
        return Err(ChunkedError::BadToc {
            reason: format!("version {} (only 1 is known)", toc.version),
        });
    }
    Ok(toc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CK: &str = "sha256:2562285a66f56c70fde52f63985389ba849399ea7f07bb1ada8dd7d92c38315c";

    #[test]
    fn both_annotation_families_locate_the_toc() {
        for (ck, pk) in ANNOTATION_FAMILIES {
            let loc = locate(&ann(&[(ck, CK), (pk, "100:50:400:1")]), 1000)
                .unwrap()
                .unwrap();
            assert_eq!(
                (loc.offset, loc.compressed, loc.uncompressed),
                (100, 50, 400)
            );
            assert_eq!(loc.data_end(), 92);
        }
        assert_eq!(locate(&ann(&[("other", "x")]), 1000).unwrap(), None);
    }

    #[test]
    fn malformed_positions_are_refused() {
        let (ck, pk) = ANNOTATION_FAMILIES[0];
        for pos in [
            "100:50:400",
            "100:50:400:2",
            "x:50:400:1",
            "-1:50:400:1",
            "990:50:400:1",
            "4:1:1:1",
            "8:0:0:1",
            "18446744073709551615:2:1:1",
            "",
        ] {
            assert!(
                locate(&ann(&[(ck, CK), (pk, pos)]), 1000).is_err(),
                "{pos:?}"
            );
        }
        assert!(locate(&ann(&[(pk, "100:50:400:1")]), 1000).is_err());
        assert!(locate(&ann(&[(ck, "md5:x"), (pk, "100:50:400:1")]), 1000).is_err());
    }

    fn compressed_toc(json: &str) -> (Vec<u8>, TocLocation) {
        let c = zstd::encode_all(json.as_bytes(), 3).unwrap();
        let loc = TocLocation {
            checksum: Digest::of(&c),
            offset: 8,
            compressed: c.len() as u64,
            uncompressed: json.len() as u64,
        };
        (c, loc)
    }

    #[test]
    fn a_toc_is_parsed_with_chunks_and_zeros() {
        let json = r#"{"version":1,"entries":[
            {"type":"dir","name":"etc/","mode":493,"modtime":"2026-12-06T21:16:20Z"},
            {"type":"reg","name":"etc/a","mode":420,"size":9000,"digest":"sha256:0ab2918ea6c958649c78f366e281d1c242eb4463e83c7725ad84e2a0f7ec2903","offset":300,"endOffset":900,"chunkSize":5000,"chunkDigest":"sha256:c0c11664d3b0d63a31da0266427df183f211efb807f0452d720c68f390f6d66e"},
            {"type":"chunk","name":"etc/a","offset":700,"chunkSize":4000,"chunkOffset":5000,"chunkType":"zeros"},
            {"type":"hardlink","name":"etc/b","linkName":"etc/a","xattrs":{"user.k":"dg=="}},
            {"type":"char","name":"dev/null","devMajor":1,"devMinor":3,"unknownField":true}
        ]}"#;
        let (c, loc) = compressed_toc(json);
        let toc = parse(&c, &loc, 1 << 20).unwrap();
        assert_eq!(toc.entries.len(), 5);
        assert_eq!(toc.entries[1].kind, EntryType::Reg);
        assert_eq!(toc.entries[1].end_offset, 900);
        assert!(toc.entries[2].is_zeros());
        assert_eq!(toc.entries[2].chunk_offset, 5000);
        assert_eq!(toc.entries[3].link_name, "etc/a");
        assert_eq!(toc.entries[4].dev_minor, 3);
    }

    #[test]
    fn a_toc_not_matching_its_checksum_is_not_read() {
        let (mut c, loc) = compressed_toc(r#"{"version":1,"entries":[]}"#);
        let last = c.len() - 1;
        c[last] ^= 1;
        assert!(matches!(
            parse(&c, &loc, 1 << 20),
            Err(ChunkedError::TocChecksum { .. })
        ));
    }

    #[test]
    fn hostile_tocs_are_errors_not_panics() {
        let cases = [
            r#"{"version":2,"entries":[]}"#,
            r#"{"version":1,"entries":[{"type":"socket","name":"x"}]}"#,
            r#"{"version":1,"entries":[{"type":"reg","name":"x","offset":-5}]}"#,
            r#"{"version":1,"entries":[{"type":"reg"}]}"#,
            r#"[1,2,3]"#,
            "not json",
        ];
        for json in cases {
            let (c, loc) = compressed_toc(json);
            assert!(parse(&c, &loc, 1 << 20).is_err(), "{json}");
        }
        // Over the json-bytes limit: refused before decompressing.
        let (c, loc) = compressed_toc(r#"{"version":1,"entries":[]}"#);
        assert!(matches!(
            parse(&c, &loc, 10),
            Err(ChunkedError::TocTooLarge { .. })
        ));
        // An annotation that understates the uncompressed size: refused, never read past.
        let (c, mut loc) = compressed_toc(r#"{"version":1,"entries":[]}"#);
        loc.uncompressed = 5;
        assert!(parse(&c, &loc, 1 << 20).is_err());
        // Not zstd at all, but matching its checksum.
        let junk = b"\x00\x01\x02garbage".to_vec();
        let loc = TocLocation {
            checksum: Digest::of(&junk),
            offset: 8,
            compressed: junk.len() as u64,
            uncompressed: 10,
        };
        assert!(parse(&junk, &loc, 1 << 20).is_err());
    }
}
