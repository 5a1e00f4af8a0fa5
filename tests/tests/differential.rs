//! Differential check: for archives layerstore accepts, the entry list its parser reads equals
//! what GNU tar (`tar -tv --numeric-owner`) and bsdtar report.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::have;
use layerstore_import::tarparse::{TarKind, TarLimits, TarParser};
use layerstore_tests::{Entry, LayerBuilder, RawHeader, RawTar, TarFormat};

/// (type letter, permission bits, uid, gid, size, path, link) as `tar -tv` shows them.
type Row = (char, u32, u64, u64, u64, Vec<u8>, Option<Vec<u8>>);

fn ours(tar: &[u8]) -> Vec<Row> {
    let limits = TarLimits {
        max_record: 1 << 20,
        max_raw_data: 1 << 20,
        max_trailer: 1 << 20,
    };
    let mut p = TarParser::new(tar, limits);
    let mut out = Vec::new();
    while let Some(e) = p.next_entry().expect("accepted archive") {
        let letter = match e.kind {
            TarKind::Regular => '-',
            TarKind::Hardlink => 'h',
            TarKind::Symlink => 'l',
            TarKind::CharDevice => 'c',
            TarKind::BlockDevice => 'b',
            TarKind::Directory => 'd',
            TarKind::Fifo => 'p',
        };
        if e.kind == TarKind::Regular {
            let mut buf = vec![0u8; 65536];
            while p.read_content(&mut buf).unwrap() > 0 {}
            p.content_done(e.size, layerstore_store::ObjectId::of(b""));
        }
        let mut path = e.path.clone();
        while path.len() > 1 && path.ends_with(b"/") {
            path.pop();
        }
        let size = if matches!(e.kind, TarKind::Regular) {
            e.size
        } else {
            0
        };
        out.push((
            letter,
            e.mode & 0o7777,
            e.uid,
            e.gid,
            size,
            path,
            e.link.clone(),
        ));
    }
    out
}

fn mode_bits(s: &[u8]) -> u32 {
    let mut m = 0;
    for (i, &c) in s[1..10].iter().enumerate() {
        let bit = 1 << (8 - i);
        match c {
            b'r' | b'w' | b'x' => m |= bit,
            b's' | b't' => {
                m |= bit;
                m |= [0o4000, 0o2000, 0o1000][i / 3];
            }
            b'S' | b'T' => m |= [0o4000, 0o2000, 0o1000][i / 3],
            _ => {}
        }
    }
    m
}

/// Split `path -> target` / `path link to target`.
fn split_link(rest: &[u8], letter: char) -> (Vec<u8>, Option<Vec<u8>>, char) {
    for (sep, kind) in [(&b" -> "[..], 'l'), (&b" link to "[..], 'h')] {
        if letter != 'l' && kind != 'h' {
            continue;
        }
        if let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
            let letter = if kind == 'h' { 'h' } else { letter };
            return (
                rest[..i].to_vec(),
                Some(rest[i + sep.len()..].to_vec()),
                letter,
            );
        }
    }
    (rest.to_vec(), None, letter)
}

fn fields(line: &[u8], n: usize) -> (Vec<&[u8]>, &[u8]) {
    let mut out = Vec::new();
    let mut rest = line;
    for _ in 0..n {
        let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        rest = &rest[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    (out, rest.strip_prefix(b" ").unwrap_or(rest))
}

fn list(cmd: &mut Command, tar: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(tar).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn gnu(tar: &[u8]) -> Vec<Row> {
    let out = list(
        Command::new("tar").args(["--numeric-owner", "--quoting-style=literal", "-tvf", "-"]),
        tar,
    );
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (f, rest) = fields(l, 5);
            let letter = f[0][0] as char;
            let ids = std::str::from_utf8(f[1]).unwrap();
            let (u, g) = ids.split_once('/').unwrap();
            let size = if letter == '-' {
                std::str::from_utf8(f[2]).unwrap().parse().unwrap()
            } else {
                0
            };
            let (mut path, link, letter) = split_link(rest, letter);
            while path.len() > 1 && path.ends_with(b"/") {
                path.pop();
            }
            let letter = if letter == 'h' { 'h' } else { letter };
            (
                letter,
                mode_bits(f[0]),
                u.parse().unwrap(),
                g.parse().unwrap(),
                size,
                path,
                link,
            )
        })
        .collect()
}

fn bsd(tar: &[u8]) -> Vec<Row> {
    let out = list(
        Command::new("bsdtar").args(["--numeric-owner", "-tvf", "-"]),
        tar,
    );
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (f, rest) = fields(l, 8);
            let letter = f[0][0] as char;
            let size = if letter == '-' {
                std::str::from_utf8(f[4]).unwrap().parse().unwrap()
            } else {
                0
            };
            let (path, link, letter) = split_link(rest, letter);
            let mut path = unescape(&path);
            let link = link.map(|l| unescape(&l));
            while path.len() > 1 && path.ends_with(b"/") {
                path.pop();
            }
            (
                letter,
                mode_bits(f[0]),
                std::str::from_utf8(f[2]).unwrap().parse().unwrap(),
                std::str::from_utf8(f[3]).unwrap().parse().unwrap(),
                size,
                path,
                link,
            )
        })
        .collect()
}

/// bsdtar writes non-printable bytes as `\ooo` and a backslash as `\\`.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && s.get(i + 1..i + 4)
                .is_some_and(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)))
        {
            out.push(
                u8::from_str_radix(std::str::from_utf8(&s[i + 1..i + 4]).unwrap(), 8).unwrap(),
            );
            i += 4;
        } else if s[i] == b'\\' && s.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

fn archives() -> Vec<(&'static str, Vec<u8>)> {
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
        "old-style directory",
        RawTar::new()
            .header(&RawHeader::ustar(b'0').name(b"olddir/").size(0).mode(0o755))
            .end()
            .finish_record(),
    ));
    v
}

#[test]
fn our_entry_list_matches_gnu_tar_and_bsdtar() {
    let have_gnu = have("tar");
    let have_bsd = have("bsdtar");
    if !have_gnu && !have_bsd {
        eprintln!("skipped: neither tar nor bsdtar is installed");
        return;
    }
    for (name, tar) in archives() {
        let mine = ours(&tar);
        if have_gnu {
            assert_eq!(mine, gnu(&tar), "{name}: GNU tar disagrees");
        }
        if have_bsd {
            // bsdtar lists hard links with the type of their target.
            let theirs: Vec<Row> = bsd(&tar);
            let mine: Vec<Row> = mine
                .iter()
                .map(|r| {
                    if r.0 == 'h' {
                        ('-', r.1, r.2, r.3, 0, r.5.clone(), r.6.clone())
                    } else {
                        r.clone()
                    }
                })
                .collect();
            let theirs: Vec<Row> = theirs
                .into_iter()
                .map(|r| {
                    if r.6.is_some() && r.0 == 'h' {
                        ('-', r.1, r.2, r.3, 0, r.5, r.6)
                    } else {
                        r
                    }
                })
                .collect();
            assert_eq!(mine, theirs, "{name}: bsdtar disagrees");
        }
    }
}
