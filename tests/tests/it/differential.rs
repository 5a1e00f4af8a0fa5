//! Differential check: for archives layerstore accepts, the entry list its parser reads equals
//! what GNU tar (`tar -tv --numeric-owner`), bsdtar and Go's `archive/tar` (the reader runtimes
//! unpack layers with) report, and Go's view matches in every detail (times, content hashes,
//! xattrs, device numbers). Archives layerstore refuses are listed with how the references
//! disagree about them.

use crate::common::go;

use layerstore_import::tarparse::{TarEntry, TarKind, TarLimits, TarParser, TarRule};
use layerstore_tests::tar_refs::have;
use layerstore_tests::{
    Entry, Field, GoEntry, GoTar, LayerBuilder, RawHeader, RawTar, RefRow, TarFormat, bsdtar_rows,
    explain_disagreement, gnu_tar_rows, go_rows, reference_readings,
};
use sha2::Digest as _;

fn limits() -> TarLimits {
    TarLimits {
        max_record: 1 << 20,
        max_raw_data: 1 << 20,
        raw_trailer: 1 << 20,
    }
}

/// Every entry our parser reads, with the sha256 of its data.
fn parse(tar: &[u8]) -> Result<Vec<(TarEntry, String)>, layerstore_import::tarparse::TarError> {
    parse_with(tar, limits())
}

fn parse_with(
    tar: &[u8],
    limits: TarLimits,
) -> Result<Vec<(TarEntry, String)>, layerstore_import::tarparse::TarError> {
    let mut p = TarParser::new(tar, limits);
    let mut out = Vec::new();
    while let Some(e) = p.next_entry()? {
        let mut h = sha2::Sha256::new();
        if e.kind == TarKind::Regular {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = p.read_content(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            p.content_done(e.size, layerstore_store::ObjectId::of(b""));
        }
        out.push((e, hex::encode(h.finalize())));
    }
    Ok(out)
}

fn letter(k: TarKind) -> char {
    match k {
        TarKind::Regular => '-',
        TarKind::Hardlink => 'h',
        TarKind::Symlink => 'l',
        TarKind::CharDevice => 'c',
        TarKind::BlockDevice => 'b',
        TarKind::Directory => 'd',
        TarKind::Fifo => 'p',
    }
}

fn ours(tar: &[u8]) -> Vec<RefRow> {
    parse(tar)
        .expect("accepted archive")
        .into_iter()
        .map(|(e, _)| {
            let mut path = e.path.clone();
            while path.len() > 1 && path.ends_with(b"/") {
                path.pop();
            }
            let size = if e.kind == TarKind::Regular {
                e.size
            } else {
                0
            };
            (
                letter(e.kind),
                e.mode & 0o7777,
                e.uid,
                e.gid,
                size,
                path,
                e.link.clone(),
            )
        })
        .collect()
}

/// Our entries in Go's terms, for a field-by-field comparison.
fn ours_as_go(tar: &[u8]) -> Vec<GoEntry> {
    to_go(parse(tar).expect("accepted archive"))
}

fn to_go(entries: Vec<(TarEntry, String)>) -> Vec<GoEntry> {
    let empty = hex::encode(sha2::Sha256::digest(b""));
    entries
        .into_iter()
        .map(|(e, sum)| GoEntry {
            typeflag: match e.kind {
                TarKind::Regular => b'0',
                TarKind::Hardlink => b'1',
                TarKind::Symlink => b'2',
                TarKind::CharDevice => b'3',
                TarKind::BlockDevice => b'4',
                TarKind::Directory => b'5',
                TarKind::Fifo => b'6',
            },
            name: e.path,
            link: e.link.unwrap_or_default(),
            size: e.size as i64,
            mode: i64::from(e.mode),
            uid: e.uid as i64,
            gid: e.gid as i64,
            mtime: e.mtime,
            mtime_nsec: e.mtime_nsec,
            dev_major: i64::from(e.dev_major),
            dev_minor: i64::from(e.dev_minor),
            sha256: if e.kind == TarKind::Regular {
                sum
            } else {
                empty.clone()
            },
            xattrs: e.xattrs,
        })
        .collect()
}

/// Go's entries with what layerstore does not record normalised away: global headers (skipped by
/// runtimes), mode bits above the permissions, the old NUL type flag, sizes, device numbers and
/// link names of entries that have none.
fn go_normalised(entries: &[GoEntry]) -> Vec<GoEntry> {
    entries
        .iter()
        .filter(|e| e.typeflag != b'g')
        .map(|e| {
            let mut e = e.clone();
            e.mode &= 0o7777;
            if e.typeflag == 0 {
                e.typeflag = b'0';
            }
            if !matches!(e.typeflag, b'3' | b'4') {
                e.dev_major = 0;
                e.dev_minor = 0;
            }
            if e.typeflag != b'0' {
                e.size = 0;
            }
            // A link name means nothing on other entry types; layerstore does not keep it.
            if !matches!(e.typeflag, b'1' | b'2') {
                e.link.clear();
            }
            e
        })
        .collect()
}

/// Whether layerstore and Go read `tar` alike, entry by entry and field by field.
#[track_caller]
fn assert_go_agrees(name: &str, go: &GoTar, tar: &[u8]) {
    let listing = go.list(tar);
    assert_eq!(
        listing.error, None,
        "{name}: Go refuses an archive we accept"
    );
    assert_eq!(
        ours_for_go(ours_as_go(tar)),
        go_normalised(&listing.entries),
        "{name}: Go disagrees"
    );
}

/// Sizes of entries without data are 0 in the comparison (Go lists the header's field).
fn ours_for_go(mut mine: Vec<GoEntry>) -> Vec<GoEntry> {
    for e in &mut mine {
        if e.typeflag != b'0' {
            e.size = 0;
        }
    }
    mine
}

/// The tar fuzz corpus (and `LAYERSTORE_TAR_CORPUS`, a directory of more inputs, such as a fuzz
/// run's new corpus): every input layerstore's parser accepts, with the fuzz target's limits,
/// reads the same in Go's archive/tar.
#[test]
fn fuzz_corpus_inputs_we_accept_read_alike_in_go() {
    let Some(go) = go() else { return };
    let mut dirs =
        vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/tar_stream")];
    if let Some(more) = std::env::var_os("LAYERSTORE_TAR_CORPUS") {
        dirs.push(more.into());
    }
    let fuzz_limits = TarLimits {
        max_record: 1 << 16,
        max_raw_data: 1 << 16,
        raw_trailer: 1 << 16,
    };
    let (mut inputs, mut accepted) = (0, Vec::new());
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            eprintln!("SKIP: no corpus at {}", dir.display());
            continue;
        };
        for f in rd {
            let path = f.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            inputs += 1;
            if let Ok(entries) = parse_with(&data, fuzz_limits) {
                accepted.push((path, data, entries));
            }
        }
    }
    let archives: Vec<&[u8]> = accepted.iter().map(|(_, d, _)| d.as_slice()).collect();
    let listings = go.list_many(&archives);
    let mut disagreements = Vec::new();
    for ((path, _, entries), listing) in accepted.iter().zip(&listings) {
        let mine = ours_for_go(to_go(entries.clone()));
        if listing.error.is_some() || mine != go_normalised(&listing.entries) {
            let go_view = go_normalised(&listing.entries);
            let at = mine.iter().zip(&go_view).position(|(a, b)| a != b);
            disagreements.push(format!(
                "{}: Go error {:?}; {} entries ours, {} Go; first difference: ours {:?}, Go {:?}",
                path.display(),
                listing.error,
                mine.len(),
                go_view.len(),
                at.map(|i| &mine[i]),
                at.map(|i| &go_view[i]),
            ));
        }
    }
    eprintln!(
        "tar corpus: {inputs} inputs, {} accepted, {} read differently by Go",
        accepted.len(),
        disagreements.len()
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Archives layerstore accepts, each read alike by every reference.
pub(crate) fn archives() -> Vec<(&'static str, Vec<u8>)> {
    let long = format!("usr/share/{}/file", "n".repeat(180));
    let entries = || {
        vec![
            Entry::dir("etc"),
            Entry::file("etc/passwd", "root:x:0:0\n").uid(0),
            Entry::file("usr/bin/su", vec![1u8; 3000]).mode(0o4755),
            Entry::symlink("bin", "usr/bin"),
            Entry::hardlink("usr/bin/su2", "usr/bin/su"),
            Entry::file("home/u/f", "x").uid(1000).gid(1000).mode(0o600),
            Entry::dir("tmp").mode(0o1777),
            Entry::fifo("run/fifo"),
            Entry::file(b"caf\xe9".as_slice(), "latin-1"),
        ]
    };
    let mut v = Vec::new();
    for (name, f) in [
        ("ustar", TarFormat::Ustar),
        ("gnu", TarFormat::Gnu),
        ("pax", TarFormat::Pax),
    ] {
        v.push((
            name,
            LayerBuilder::new(f).with_entries(entries()).tar_bytes(),
        ));
    }
    v.push((
        "gnu long names",
        LayerBuilder::new(TarFormat::Gnu)
            .with_entries([
                Entry::file(long.as_bytes(), "l"),
                Entry::symlink("s", long.as_bytes()),
            ])
            .tar_bytes(),
    ));
    v.push((
        "pax long names and xattrs",
        LayerBuilder::new(TarFormat::Pax)
            .with_entries([
                Entry::file(long.as_bytes(), "l").xattr("user.k", "v"),
                Entry::file("n", "x").mtime_nsec(5),
            ])
            .tar_bytes(),
    ));
    v.push((
        "pax size override",
        RawTar::new()
            .pax([("size", "5")])
            .header(&RawHeader::ustar(b'0').name(b"f").size(1))
            .data(b"hello")
            .end()
            .finish_record(),
    ));
    v.push((
        "pax uid override",
        RawTar::new()
            .pax([("uid", "3000000")])
            .header(&RawHeader::ustar(b'0').name(b"f").size(0))
            .end()
            .finish_record(),
    ));
    v.push((
        "global header",
        RawTar::new()
            .global_pax([("comment", "x")])
            .header(&RawHeader::ustar(b'0').name(b"f").size(0))
            .end()
            .finish_record(),
    ));
    v.push((
        "old-style directory (type NUL)",
        RawTar::new()
            .header(&RawHeader::ustar(0).name(b"olddir/").size(0).mode(0o755))
            .end()
            .finish_record(),
    ));
    v.push((
        "devices, fifo and a set-gid directory",
        LayerBuilder::new(TarFormat::Pax)
            .with_entries([
                Entry::char_dev("dev/null", 1, 3).mode(0o666),
                Entry::block_dev("dev/sda", 8, 0),
                Entry::fifo("run/p"),
                Entry::dir("srv").mode(0o2775),
            ])
            .tar_bytes(),
    ));
    v.push((
        "numeric fields padded with spaces and NULs",
        RawTar::new()
            .header(
                &RawHeader::ustar(b'0')
                    .name(b"f")
                    .size(3)
                    .set(Field::Mode, b"  644 \0\0")
                    .set(Field::Uid, b" 001750\0")
                    .set(Field::Gid, b"    12  "),
            )
            .data(b"abc")
            .end()
            .finish_record(),
    ));
    v.push(("base-256 uid, gid and mtime", {
        let mut h = RawHeader::gnu(b'0').name(b"f").size(1);
        h.set_base256(Field::Uid, 70_000);
        h.set_base256(Field::Gid, 3);
        h.set_base256(Field::Mtime, 1 << 34);
        RawTar::new().header(&h).data(b"x").end().finish_record()
    }));
    v.push((
        "negative base-256 mtime",
        RawTar::new()
            .header(
                &RawHeader::gnu(b'0')
                    .name(b"old")
                    .set(Field::Mtime, &[0xff; 12]),
            )
            .end()
            .finish_record(),
    ));
    v.push((
        "largest octal size and mtime",
        RawTar::new()
            .header(
                &RawHeader::ustar(b'0')
                    .name(b"f")
                    .set(Field::Mtime, b"77777777777\0"),
            )
            .end()
            .finish_record(),
    ));
    v.push((
        "PAX uname and comment with empty values",
        RawTar::new()
            .pax([("uname", ""), ("comment", "")])
            .header(&RawHeader::ustar(b'0').name(b"kept").uid(7).size(0))
            .end()
            .finish_record(),
    ));
    v.push((
        "PAX mtime with a long fraction and negative",
        RawTar::new()
            .pax([("mtime", "-1.1234567891")])
            .header(&RawHeader::ustar(b'0').name(b"f").size(0))
            .pax([("mtime", "1700000000.000000001")])
            .header(&RawHeader::ustar(b'0').name(b"g").size(0))
            .end()
            .finish_record(),
    ));
    v.push((
        "uname and gname overrides",
        RawTar::new()
            .pax([("uname", "alice"), ("gname", "staff")])
            .header(
                &RawHeader::ustar(b'0')
                    .name(b"f")
                    .uid(1000)
                    .gid(50)
                    .uname(b"bob")
                    .gname(b"wheel"),
            )
            .end()
            .finish_record(),
    ));
    v.push((
        "one GNU long name and one PAX uid",
        RawTar::new()
            .gnu_long_name(long.as_bytes())
            .pax([("uid", "42")])
            .header(&RawHeader::gnu(b'0').name(b"short").size(0))
            .end()
            .finish_record(),
    ));
    v.push((
        "ustar prefix",
        RawTar::new()
            .header(&RawHeader::ustar(b'0').prefix(b"usr/share/doc").name(b"f"))
            .end()
            .finish_record(),
    ));
    v.push((
        "zero padding after the end marker",
        RawTar::new()
            .header(&RawHeader::ustar(b'0').name(b"f").size(0))
            .end()
            .zero_blocks(100)
            .bytes(&[0; 7])
            .finish(),
    ));
    v.push((
        "zero padding past what the skeleton keeps raw",
        RawTar::new()
            .header(&RawHeader::ustar(b'0').name(b"f").size(0))
            .end()
            .zero_blocks(3 << 11)
            .bytes(&[0; 7])
            .finish(),
    ));
    v.push((
        "one zero block, then the end of the stream",
        RawTar::new()
            .header(&RawHeader::ustar(b'0').name(b"f").size(0))
            .zero_blocks(1)
            .finish(),
    ));
    v.push((
        "no end marker",
        RawTar::new()
            .header(&RawHeader::ustar(b'0').name(b"f").size(1))
            .data(b"x")
            .finish(),
    ));
    v
}

#[test]
fn our_entry_list_matches_gnu_tar_bsdtar_and_go() {
    let have_gnu = have("tar");
    let have_bsd = have("bsdtar");
    let go = go();
    if !have_gnu && !have_bsd && go.is_none() {
        layerstore_tests::skip("none of tar, bsdtar and go is installed");
        return;
    }
    for (name, tar) in archives() {
        let mine = ours(&tar);
        if have_gnu {
            assert_eq!(
                Ok(mine.clone()),
                gnu_tar_rows(&tar),
                "{name}: GNU tar disagrees"
            );
        }
        if have_bsd {
            // bsdtar lists hard links with the type of their target.
            let norm = |rows: Vec<RefRow>| -> Vec<RefRow> {
                rows.into_iter()
                    .map(|r| {
                        if r.0 == 'h' {
                            ('-', r.1, r.2, r.3, 0, r.5, r.6)
                        } else {
                            r
                        }
                    })
                    .collect()
            };
            let theirs = bsdtar_rows(&tar).map(norm);
            assert_eq!(Ok(norm(mine.clone())), theirs, "{name}: bsdtar disagrees");
        }
        if let Some(go) = go {
            assert_eq!(
                Ok(mine.clone()),
                go_rows(&go.list(&tar)),
                "{name}: Go disagrees"
            );
            assert_go_agrees(name, go, &tar);
        }
    }
}

/// Why a refused archive is refused although the references installed here read it alike.
type Note = Option<&'static str>;

/// Archives layerstore refuses, each with the rule it breaks; the test says how the references
/// read each one (they disagree with each other, or all refuse it, or the note says why not).
fn refused() -> Vec<(&'static str, TarRule, Vec<u8>, Note)> {
    let file = |n: &[u8]| RawHeader::ustar(b'0').name(n).size(0);
    vec![
        (
            "symlink with a size",
            TarRule::DataOnHeaderOnlyEntry,
            RawTar::new()
                .header(&RawHeader::ustar(b'2').name(b"lnk").linkname(b"t").size(512))
                .header(&file(b"hidden"))
                .end()
                .finish_record(),
            None,
        ),
        (
            "hard link with a size",
            TarRule::DataOnHeaderOnlyEntry,
            RawTar::new()
                .header(&RawHeader::ustar(b'0').name(b"f").size(1))
                .data(b"x")
                .header(&RawHeader::ustar(b'1').name(b"h").linkname(b"f").size(512))
                .header(&file(b"hidden"))
                .end()
                .finish_record(),
            Some(
                "POSIX pax lets a hard link carry data and libarchive reads it in pax archives; one rule for every entry without data",
            ),
        ),
        (
            "directory with a PAX size",
            TarRule::DataOnHeaderOnlyEntry,
            RawTar::new()
                .pax([("size", "512")])
                .header(&RawHeader::ustar(b'5').name(b"d/").size(0))
                .header(&file(b"d/hidden"))
                .end()
                .finish_record(),
            None,
        ),
        (
            "fifo with a size",
            TarRule::DataOnHeaderOnlyEntry,
            RawTar::new()
                .header(&RawHeader::ustar(b'6').name(b"p").size(512))
                .header(&file(b"hidden"))
                .end()
                .finish_record(),
            None,
        ),
        (
            "PAX path and GNU long name",
            TarRule::StackedExtensions,
            RawTar::new()
                .gnu_long_name(b"from-gnu")
                .pax([("path", "from-pax")])
                .header(&file(b"from-header"))
                .end()
                .finish_record(),
            None,
        ),
        (
            "PAX linkpath and GNU long link",
            TarRule::StackedExtensions,
            RawTar::new()
                .pax([("linkpath", "pax-target")])
                .gnu_long_link(b"gnu-target")
                .header(&RawHeader::ustar(b'2').name(b"l").linkname(b"t"))
                .end()
                .finish_record(),
            None,
        ),
        (
            "two GNU long names",
            TarRule::StackedExtensions,
            RawTar::new()
                .gnu_long_name(b"first")
                .gnu_long_name(b"second")
                .header(&file(b"f"))
                .end()
                .finish_record(),
            Some(
                "the readers here keep the last, but nothing specifies it; one name extension per entry leaves no reader a choice",
            ),
        ),
        (
            "two PAX headers",
            TarRule::StackedExtensions,
            RawTar::new()
                .pax([("path", "first")])
                .pax([("uid", "5")])
                .header(&file(b"f"))
                .end()
                .finish_record(),
            None,
        ),
        (
            "PAX path with an empty value",
            TarRule::BadPax,
            RawTar::new()
                .pax([("path", "")])
                .header(&file(b"from-header"))
                .end()
                .finish_record(),
            None,
        ),
        (
            "a header after the end marker",
            TarRule::DataAfterEnd,
            RawTar::new()
                .header(&file(b"f"))
                .end()
                .header(&file(b"hidden"))
                .end()
                .finish_record(),
            Some(
                "`tar --ignore-zeros` (how concatenated archives are read) lists the hidden entry the others skip",
            ),
        ),
        (
            "junk after the end marker",
            TarRule::DataAfterEnd,
            RawTar::new()
                .header(&file(b"f"))
                .end()
                .bytes(b"trailing junk")
                .finish(),
            Some("`tar --ignore-zeros` reads on past the marker and fails on the junk"),
        ),
        (
            "type 0 with a trailing slash",
            TarRule::AmbiguousHeader,
            RawTar::new()
                .header(&RawHeader::ustar(b'0').name(b"olddir/").size(0).mode(0o755))
                .end()
                .finish_record(),
            None,
        ),
        (
            "global header inside an entry's extensions",
            TarRule::DanglingExtension,
            RawTar::new()
                .pax([("path", "renamed")])
                .global_pax([("comment", "x")])
                .header(&file(b"f"))
                .end()
                .finish_record(),
            None,
        ),
        (
            "octal field with a NUL before its digits",
            TarRule::BadNumber,
            RawTar::new()
                .header(&file(b"f").set(Field::Uid, b"\0\x001750\0"))
                .end()
                .finish_record(),
            None,
        ),
    ]
}

#[test]
fn refused_archives_are_ones_the_references_disagree_on() {
    let go = go();
    for (name, rule, tar, note) in refused() {
        let e = parse(&tar).map(drop).expect_err(name);
        assert_eq!(e.rule, rule, "{name}: {}", e.reason);
        let readings = reference_readings(&tar, go);
        let why = explain_disagreement(&readings);
        eprintln!("{name}: refused ({}); {why}", e.reason);
        if readings.len() >= 2 {
            let distinct = readings
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(_, r)| r.as_ref().ok())
                .collect::<std::collections::HashSet<_>>()
                .len();
            let refusals = readings.iter().filter(|(_, r)| r.is_err()).count();
            assert!(
                distinct > 1 || refusals > 0 || note.is_some(),
                "{name}: every reference reads it alike, so why refuse it? {why}"
            );
            if distinct <= 1 && refusals == 0 {
                eprintln!(
                    "{name}: the references agree here; refused because {}",
                    note.unwrap_or_default()
                );
            }
        }
    }
}
