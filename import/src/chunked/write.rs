//! Writing zstd:chunked: a layer's tar as zstd frames, a new frame before and after each file's
//! payload, then the TOC (zstd JSON) and a footer in skippable frames, as containers/storage's
//! compressor lays them out (see [`super::toc`]). The blob stays one valid zstd stream of the
//! same tar (skippable frames are skipped by every decoder), so its diff_id is unchanged and
//! readers that know nothing of zstd:chunked read it as plain zstd.
//!
//! Written: the current annotation family (`manifest-checksum`, `manifest-position`), one frame
//! per payload (no rolling-checksum chunks: a TOC without chunks is valid, and a partial pull
//! works per file), the 64-byte footer with its tar-split fields zero. Not written: the
//! tar-split, so containers-storage versions that insist on one pull such a layer whole.
//! Reproducible: one zstd thread at the given level, and the TOC's keys in a fixed order, so the
//! same tar always makes the same blob. [`crate::layer_out`] calls it for
//! `Compression::ZstdChunked` (`push` and `export` `--compress zstd:chunked`).

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

use base64::Engine as _;
use layerstore_store::Digest;
use serde::Serialize;

use super::toc::{ANNOTATION_FAMILIES, SKIPPABLE_MAGIC};
use layerstore_store::rfc3339;

/// The magic at the end of the footer ("GNUlInUx").
const FOOTER_MAGIC: &[u8; 8] = b"GNUlInUx";

/// A TOC entry as written (containers/storage `minimal.FileMetadata`, its JSON keys).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    link_name: String,
    #[serde(skip_serializing_if = "is_zero")]
    mode: u64,
    #[serde(skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(skip_serializing_if = "is_zero")]
    uid: u64,
    #[serde(skip_serializing_if = "is_zero")]
    gid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    modtime: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    dev_major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    dev_minor: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    xattrs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    digest: String,
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "is_zero")]
    end_offset: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Serialize)]
struct TocOut<'a> {
    version: u32,
    entries: &'a [Entry],
}

/// Where each entry's payload is in the tar, and its TOC entry.
struct Scanned {
    entries: Vec<Entry>,
    /// For each TOC entry with a payload: its index and the tar byte range.
    payloads: Vec<(usize, u64, u64)>,
}

fn scan(tar: &mut std::fs::File) -> io::Result<Scanned> {
    let mut archive = tar::Archive::new(&mut *tar);
    let mut out = Scanned {
        entries: Vec::new(),
        payloads: Vec::new(),
    };
    for e in archive.entries_with_seek()? {
        let mut e = e?;
        let h = e.header();
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => "reg",
            tar::EntryType::Link => "hardlink",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Fifo => "fifo",
            t => {
                return Err(io::Error::other(format!(
                    "entry type {:?} has no zstd:chunked TOC type",
                    t.as_byte() as char
                )));
            }
        };
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link_name = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut entry = Entry {
            kind,
            name,
            link_name,
            mode: u64::from(h.mode().unwrap_or(0)),
            size: if kind == "reg" { e.size() } else { 0 },
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            modtime: h
                .mtime()
                .ok()
                .filter(|t| *t != 0)
                .map(|t| rfc3339(t as i64)),
            dev_major: u64::from(h.device_major().ok().flatten().unwrap_or(0)),
            dev_minor: u64::from(h.device_minor().ok().flatten().unwrap_or(0)),
            xattrs: BTreeMap::new(),
            digest: String::new(),
            offset: 0,
            end_offset: 0,
        };
        if let Some(pax) = e.pax_extensions()? {
            for r in pax {
                let r = r?;
                if let Some(k) = r.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    entry.xattrs.insert(
                        String::from_utf8_lossy(k).into_owned(),
                        base64::engine::general_purpose::STANDARD.encode(r.value_bytes()),
                    );
                }
            }
        }
        if entry.size > 0 {
            let start = e.raw_file_position();
            let mut sha = layerstore_store::DigestHasher::default();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = e.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                sha.update(&buf[..n]);
            }
            entry.digest = sha.finish().to_string();
            out.payloads
                .push((out.entries.len(), start, start + entry.size));
        }
        out.entries.push(entry);
    }
    Ok(out)
}

/// Counts what passes through.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Compress `len` bytes of `tar` from `from` as one zstd frame into `out`.
fn frame(
    tar: &mut std::fs::File,
    from: u64,
    len: u64,
    level: i32,
    out: &mut Counting<impl Write>,
) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    tar.seek(SeekFrom::Start(from))?;
    let mut z = zstd::stream::write::Encoder::new(&mut *out, level)?;
    z.include_contentsize(true)?;
    z.set_pledged_src_size(Some(len))?;
    io::copy(&mut (&mut *tar).take(len), &mut z)?;
    z.finish()?;
    Ok(())
}

fn skippable(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let len =
        u32::try_from(data.len()).map_err(|_| io::Error::other("a skippable frame over 4 GiB"))?;
    out.write_all(&SKIPPABLE_MAGIC)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(data)
}

/// Write the tar in `tar` (a file: it is read twice) as a zstd:chunked blob into `out`, its
/// frames and the TOC at zstd `level`; returns the annotations its layer descriptor must carry.
pub fn write_chunked(
    tar: &mut std::fs::File,
    out: impl Write,
    level: i32,
) -> io::Result<BTreeMap<String, String>> {
    let tar_len = tar.seek(SeekFrom::End(0))?;
    tar.seek(SeekFrom::Start(0))?;
    let mut scanned = scan(tar)?;
    let mut out = Counting {
        inner: out,
        count: 0,
    };
    let mut cursor = 0u64;
    for &(i, start, end) in &scanned.payloads {
        frame(tar, cursor, start - cursor, level, &mut out)?;
        let offset = out.count;
        frame(tar, start, end - start, level, &mut out)?;
        scanned.entries[i].offset = offset;
        scanned.entries[i].end_offset = out.count;
        cursor = end;
    }
    frame(tar, cursor, tar_len - cursor, level, &mut out)?;
    let json = serde_json::to_vec(&TocOut {
        version: 1,
        entries: &scanned.entries,
    })
    .map_err(io::Error::other)?;
    let compressed = zstd::bulk::compress(&json, level)?;
    let toc_offset = out.count + 8;
    skippable(&mut out, &compressed)?;
    let mut footer = Vec::with_capacity(64);
    for v in [
        toc_offset,
        compressed.len() as u64,
        json.len() as u64,
        1, // CRFS JSON
        0, // no tar-split
        0,
        0,
    ] {
        footer.extend_from_slice(&v.to_le_bytes());
    }
    footer.extend_from_slice(FOOTER_MAGIC);
    skippable(&mut out, &footer)?;
    out.flush()?;
    let (ck, pk) = ANNOTATION_FAMILIES[0];
    Ok(BTreeMap::from([
        (ck.to_string(), Digest::of(&compressed).to_string()),
        (
            pk.to_string(),
            format!("{toc_offset}:{}:{}:1", compressed.len(), json.len()),
        ),
    ]))
}

/// The annotation keys that describe a zstd:chunked blob: they go when a layer is recompressed.
pub fn is_chunked_annotation(key: &str) -> bool {
    key.starts_with("io.github.containers.zstd-chunked.")
        || key.starts_with("io.containers.zstd-chunked.")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write as _;

    use super::*;
    use crate::chunked::plan::{PieceKind, plan};
    use crate::chunked::rebuild::rebuild;
    use crate::chunked::toc::{locate, parse};

    fn sample_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8], kind: tar::EntryType| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, name, data).unwrap();
        };
        add("etc/", b"", tar::EntryType::Directory);
        add("etc/a", &b"alpha ".repeat(1000), tar::EntryType::Regular);
        add("etc/empty", b"", tar::EntryType::Regular);
        add("etc/b", &[0u8; 10_000], tar::EntryType::Regular);
        add(
            &format!("etc/{}", "long".repeat(40)),
            b"long name",
            tar::EntryType::Regular,
        );
        b.into_inner().unwrap()
    }

    #[test]
    fn a_written_blob_is_plain_zstd_of_the_tar_and_pulls_partially() {
        let tar = sample_tar();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&tar).unwrap();
        let mut blob = Vec::new();
        let ann = write_chunked(&mut f, &mut blob, 3).unwrap();
        // Any zstd reader sees the tar.
        assert_eq!(zstd::decode_all(&blob[..]).unwrap(), tar);
        // Our reader finds and checks the TOC.
        let loc = locate(&ann, blob.len() as u64).unwrap().unwrap();
        let toc = parse(
            &blob[loc.offset as usize..(loc.offset + loc.compressed) as usize],
            &loc,
            1 << 20,
        )
        .unwrap();
        let names: Vec<&str> = toc.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names[..4], ["etc/", "etc/a", "etc/empty", "etc/b"]);
        assert_eq!(
            toc.entries[1].modtime.as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        // A store holding etc/b rebuilds the tar from the rest.
        let b = [0u8; 10_000];
        let id = layerstore_store::ObjectId::of(&b);
        let held = HashMap::from([(Digest::of(&b), (id, b.len() as u64))]);
        let p = plan(&toc.entries, &loc, &held, 0).unwrap();
        assert!(
            p.pieces
                .iter()
                .any(|x| matches!(x.kind, PieceKind::Held { .. }))
        );
        let mut fetch = |rs: &[std::ops::Range<u64>]| {
            Ok((
                rs.iter()
                    .map(|r| blob[r.start as usize..r.end as usize].to_vec())
                    .collect(),
                0,
            ))
        };
        let mut held_fn = |_: &layerstore_store::ObjectId, w: &mut dyn Write| {
            w.write_all(&b).unwrap();
            Ok(b.len() as u64)
        };
        let mut out = Vec::new();
        rebuild(
            &p,
            &mut fetch,
            &mut held_fn,
            &mut out,
            &Digest::of(&tar),
            1 << 20,
        )
        .unwrap();
        assert_eq!(out, tar);
        // Reproducible.
        let mut again = Vec::new();
        write_chunked(&mut f, &mut again, 3).unwrap();
        assert_eq!(again, blob);
    }
}
