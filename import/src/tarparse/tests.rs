//! The parser on hand-made blocks: decoding as Go does, and every refusal rule.

use super::*;

fn header(name: &[u8], typeflag: u8, size: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..name.len()].copy_from_slice(name);
    b[100..107].copy_from_slice(b"0000644");
    b[108..115].copy_from_slice(b"0000000");
    b[116..123].copy_from_slice(b"0000000");
    b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    b[136..147].copy_from_slice(b"00000000000");
    b[156] = typeflag;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    seal(&mut b);
    b
}

fn seal(b: &mut [u8; 512]) {
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

fn data(d: &[u8]) -> Vec<u8> {
    let mut v = d.to_vec();
    v.resize(d.len().div_ceil(512) * 512, 0);
    v
}

fn pax(typeflag: u8, records: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let mut len = k.len() + v.len() + 3;
        len += len.to_string().len();
        if (len).to_string().len() != (len - 1).to_string().len() {
            len += 1;
        }
        body.extend_from_slice(format!("{len} {k}={v}\n").as_bytes());
    }
    let mut v = header(b"pax", typeflag, body.len() as u64).to_vec();
    v.extend(data(&body));
    v
}

fn parse(tar: &[u8]) -> Result<Vec<TarEntry>, TarError> {
    let limits = TarLimits {
        max_record: 1 << 20,
        max_raw_data: 1 << 20,
        raw_trailer: 1 << 20,
    };
    let mut p = TarParser::new(tar, limits);
    let mut out = Vec::new();
    while let Some(e) = p.next_entry()? {
        if e.kind == TarKind::Regular {
            let mut buf = vec![0u8; 4096];
            while p.read_content(&mut buf)? > 0 {}
            p.content_done(e.size, layerstore_store::ObjectId::of(b""));
        }
        out.push(e);
    }
    Ok(out)
}

fn end() -> Vec<u8> {
    vec![0u8; 1024]
}

#[test]
fn pax_times() {
    assert_eq!(
        parse_pax_time("1700000000.5"),
        Some((1700000000, 500_000_000))
    );
    assert_eq!(parse_pax_time("12"), Some((12, 0)));
    assert_eq!(parse_pax_time("-1.25"), Some((-2, 750_000_000)));
    assert_eq!(parse_pax_time("-0.5"), Some((-1, 500_000_000)));
    assert_eq!(parse_pax_time("1.0000000019"), Some((1, 1)));
    assert_eq!(parse_pax_time("x"), None);
    assert_eq!(parse_pax_time(""), None);
    assert_eq!(parse_pax_time("1.x"), None);
}

#[test]
fn numeric_fields_decode_as_go_does() {
    assert_eq!(parse_numeric(b"0000644\0"), Some(0o644));
    assert_eq!(parse_numeric(b"  644 \0\0"), Some(0o644));
    assert_eq!(parse_numeric(b"\0\0 644 \0"), None, "GNU tar reads 0");
    assert_eq!(parse_numeric(b"\0\0\0\0\0\0\0\0"), Some(0));
    assert_eq!(parse_numeric(b"        "), Some(0));
    assert_eq!(parse_numeric(b"64\x004"), Some(0o64));
    assert_eq!(parse_numeric(b"+644\0"), None);
    assert_eq!(parse_numeric(b"6 4\0"), None);
    assert_eq!(parse_numeric(b"9\0"), None);
    let mut b256 = [0u8; 12];
    b256[0] = 0x80;
    b256[11] = 5;
    assert_eq!(parse_numeric(&b256), Some(5));
    let neg = [0xffu8; 12];
    assert_eq!(parse_numeric(&neg), Some(-1));
    let mut over = [0u8; 12];
    over[0] = 0x80;
    over[3] = 0x80; // bit 64 of 88
    assert_eq!(parse_numeric(&over), None);
}

#[test]
fn a_symlink_declaring_data_is_refused_by_name() {
    let mut t = header(b"lnk", b'2', 512).to_vec();
    t.extend(data(&header(b"hidden", b'0', 0)));
    t.extend(end());
    let e = parse(&t).unwrap_err();
    assert_eq!(e.rule, TarRule::DataOnHeaderOnlyEntry);
    assert_eq!(e.entry.as_deref(), Some(&b"lnk"[..]));
    assert!(e.reason.contains("\"/lnk\""), "{}", e.reason);
}

#[test]
fn a_pax_size_on_a_directory_is_refused() {
    let mut t = pax(b'x', &[("size", "512")]);
    t.extend(header(b"d/", b'5', 0));
    t.extend([0u8; 512]);
    t.extend(end());
    assert_eq!(parse(&t).unwrap_err().rule, TarRule::DataOnHeaderOnlyEntry);
}

#[test]
fn stacked_name_extensions_are_refused() {
    let mut gnu_l = header(b"././@LongLink", b'L', 9).to_vec();
    gnu_l.extend(data(b"from-gnu\0"));
    let mut t = gnu_l.clone();
    t.extend(pax(b'x', &[("path", "from-pax")]));
    t.extend(header(b"f", b'0', 0));
    t.extend(end());
    assert_eq!(parse(&t).unwrap_err().rule, TarRule::StackedExtensions);
    let mut t = gnu_l.clone();
    t.extend(gnu_l);
    t.extend(header(b"f", b'0', 0));
    assert_eq!(parse(&t).unwrap_err().rule, TarRule::StackedExtensions);
    let mut t = pax(b'x', &[("uid", "1")]);
    t.extend(pax(b'x', &[("gid", "1")]));
    t.extend(header(b"f", b'0', 0));
    assert_eq!(parse(&t).unwrap_err().rule, TarRule::StackedExtensions);
    // One of each kind, on different fields, is fine.
    let mut t = header(b"././@LongLink", b'L', 9).to_vec();
    t.extend(data(b"from-gnu\0"));
    t.extend(pax(b'x', &[("uid", "7")]));
    t.extend(header(b"f", b'0', 0));
    t.extend(end());
    let e = parse(&t).unwrap();
    assert_eq!((e[0].path.as_slice(), e[0].uid), (&b"from-gnu"[..], 7));
}

#[test]
fn zeros_after_the_end_marker_are_padding_and_anything_else_is_refused() {
    let mut t = header(b"f", b'0', 0).to_vec();
    t.extend(end());
    t.extend(vec![0u8; 100_000]);
    let mut p = TarParser::new(
        &t[..],
        TarLimits {
            max_record: 1 << 20,
            max_raw_data: 1 << 20,
            raw_trailer: 1 << 20,
        },
    );
    while p.next_entry().unwrap().is_some() {}
    assert_eq!(p.position(), t.len() as u64, "the padding is read");
    let mut junk = t.clone();
    junk.push(1);
    assert_eq!(parse(&junk).unwrap_err().rule, TarRule::DataAfterEnd);
    let mut hidden = header(b"f", b'0', 0).to_vec();
    hidden.extend(end());
    hidden.extend(header(b"hidden", b'0', 0));
    hidden.extend(end());
    assert_eq!(parse(&hidden).unwrap_err().rule, TarRule::DataAfterEnd);
    let mut half = header(b"f", b'0', 0).to_vec();
    half.extend([0u8; 512]);
    half.extend(header(b"hidden", b'0', 0));
    assert_eq!(parse(&half).unwrap_err().rule, TarRule::DataAfterEnd);
}

/// Padding far past `raw_trailer` (the old code refused it past its 16 MiB limit): accepted,
/// held as a zero run rather than in memory, and rebuilt byte for byte; a non-zero byte after it
/// is still refused.
#[test]
fn zero_padding_of_any_length_is_kept_as_a_zero_run() {
    use std::io::{BufReader, Read};
    const PAD: u64 = 40 << 20;
    let mut head = header(b"f", b'0', 3).to_vec();
    head.extend(data(b"abc"));
    head.extend(end());
    let limits = TarLimits {
        max_record: 1 << 20,
        max_raw_data: 1 << 20,
        raw_trailer: 4096,
    };
    let stream = || BufReader::new((&head[..]).chain(std::io::repeat(0).take(PAD)));
    let mut p = TarParser::new(stream(), limits);
    let e = p.next_entry().unwrap().unwrap();
    let mut buf = vec![0u8; 16];
    let n = p.read_content(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"abc");
    p.content_done(e.size, layerstore_store::ObjectId::of(b"abc"));
    assert!(p.next_entry().unwrap().is_none());
    assert_eq!(p.position(), head.len() as u64 + PAD, "the padding is read");
    let sk = std::mem::take(&mut p.skeleton).finish().unwrap();
    assert!(
        sk.len() < 4096,
        "the zeros are not kept: {} bytes",
        sk.len()
    );
    let sk = layerstore_store::skeleton::Skeleton::decode(&sk, 1 << 16).unwrap();
    assert!(sk.raw.len() < 8192, "raw part: {} bytes", sk.raw.len());
    let mut out = Vec::new();
    sk.rebuild(&mut out, |_, w| std::io::Write::write_all(w, b"abc"))
        .unwrap();
    let mut want = Vec::new();
    stream().read_to_end(&mut want).unwrap();
    assert!(out == want, "the stream is rebuilt byte for byte");

    let junk = BufReader::new(
        (&head[..])
            .chain(std::io::repeat(0).take(PAD))
            .chain(&b"\x01"[..]),
    );
    let mut p = TarParser::new(junk, limits);
    p.next_entry().unwrap().unwrap();
    let mut sink = vec![0u8; 16];
    while p.read_content(&mut sink).unwrap() > 0 {}
    let e = p.next_entry().unwrap_err();
    assert_eq!(e.rule, TarRule::DataAfterEnd);
    assert_eq!(e.offset, head.len() as u64 + PAD);
}

#[test]
fn pax_records_apply_as_go_merges_them() {
    // A PAX size applies to the real entry only, not to a GNU long name between them.
    let mut t = pax(b'x', &[("uname", ""), ("size", "3"), ("mtime", "-1.5")]);
    t.extend(header(b"././@LongLink", b'K', 7));
    t.extend(data(b"target\0"));
    t.extend(header(b"f", b'0', 0));
    t.extend(data(b"abc"));
    t.extend(end());
    let e = parse(&t).unwrap();
    assert_eq!(e[0].path, b"f");
    assert_eq!(e[0].size, 3);
    assert_eq!((e[0].mtime, e[0].mtime_nsec), (-2, 500_000_000));
    for empty in ["SCHILY.xattr.user.a", "path", "uid"] {
        let mut t = pax(b'x', &[(empty, "")]);
        t.extend(header(b"f", b'0', 0));
        assert_eq!(parse(&t).unwrap_err().rule, TarRule::BadPax, "{empty}");
    }
}

#[test]
fn a_regular_type_with_a_trailing_slash_is_ambiguous_unless_it_is_the_old_nul_type() {
    let mut t = header(b"d/", b'0', 0).to_vec();
    t.extend(end());
    assert_eq!(parse(&t).unwrap_err().rule, TarRule::AmbiguousHeader);
    let mut t = header(b"d/", b'\0', 0).to_vec();
    t.extend(end());
    assert_eq!(parse(&t).unwrap()[0].kind, TarKind::Directory);
}

#[test]
fn a_global_header_between_extensions_is_refused() {
    let mut t = pax(b'x', &[("path", "a")]);
    t.extend(pax(b'g', &[("comment", "c")]));
    t.extend(header(b"f", b'0', 0));
    assert_eq!(parse(&t).unwrap_err().rule, TarRule::DanglingExtension);
}
