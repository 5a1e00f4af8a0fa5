//! Decoding one header block and the extension records (PAX, GNU long names) in front of an
//! entry, field by field as Go's `archive/tar` decodes them; the stream walk is in the parent.

use super::*;

/// Extension headers seen before a real entry.
#[derive(Default)]
pub(super) struct Ext {
    /// Records of the PAX `x` header, in stream order.
    pub(super) pax: Option<Records>,
    pub(super) gnu_name: Option<Vec<u8>>,
    pub(super) gnu_link: Option<Vec<u8>>,
}

impl Ext {
    pub(super) fn any(&self) -> bool {
        self.pax.is_some() || self.gnu_name.is_some() || self.gnu_link.is_some()
    }

    /// The name the extensions give, for error messages.
    pub(super) fn name(&self) -> Option<&[u8]> {
        self.pax
            .iter()
            .flatten()
            .rev()
            .find(|(k, v)| k == b"path" && !v.is_empty())
            .map(|(_, v)| v.as_slice())
            .or(self.gnu_name.as_deref())
    }
}

/// How a header block lays out its fields (Go's `getFormat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    V7,
    Ustar,
    Star,
    Gnu,
}

/// The fields of one header block, decoded as Go's `readHeader` does.
pub(super) struct Header {
    pub(super) typeflag: u8,
    pub(super) name: Vec<u8>,
    pub(super) link: Vec<u8>,
    pub(super) size: i64,
    pub(super) mode: i64,
    pub(super) uid: i64,
    pub(super) gid: i64,
    pub(super) mtime: i64,
    pub(super) dev_major: i64,
    pub(super) dev_minor: i64,
}

/// Bytes up to the first NUL (Go's `parseString`).
pub(super) fn cstr(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// Go's `parseOctal`: NULs and spaces trimmed at both ends, cut at a NUL, base 8, 64 bits.
pub(super) fn parse_octal(b: &[u8]) -> Option<i64> {
    let is_pad = |c: &u8| *c == 0 || *c == b' ';
    let start = b.iter().position(|c| !is_pad(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !is_pad(c)).map_or(start, |i| i + 1);
    if start == end {
        return Some(0);
    }
    // Go skips leading NULs, GNU tar reads a leading NUL as an empty field: refuse the difference.
    if b[..start].contains(&0) {
        return None;
    }
    let digits = cstr(&b[start..end]);
    let mut x: u64 = 0;
    for &c in digits {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        x = x.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
    }
    // Go converts the uint64 to int64 as it is; fields are too short to reach the sign bit.
    Some(x as i64)
}

/// Go's `parseNumeric`: base-256 two's complement when the first byte has its top bit set,
/// octal otherwise.
pub(super) fn parse_numeric(b: &[u8]) -> Option<i64> {
    if b.first().is_some_and(|&c| c & 0x80 != 0) {
        let inv = if b[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return None;
            }
            x = x << 8 | u64::from(c);
        }
        if x >> 63 > 0 {
            return None;
        }
        return Some(if inv == 0xff { !(x as i64) } else { x as i64 });
    }
    parse_octal(b)
}

pub(super) fn layout(block: &[u8; 512]) -> Layout {
    let magic = &block[257..263];
    let version = &block[263..265];
    let trailer = &block[508..512];
    if magic == b"ustar\0" && trailer == b"tar\0" {
        Layout::Star
    } else if magic == b"ustar\0" {
        Layout::Ustar
    } else if magic == b"ustar " && version == b" \0" {
        Layout::Gnu
    } else {
        Layout::V7
    }
}

pub(super) fn checksum_ok(block: &[u8; 512]) -> bool {
    let Some(want) = parse_octal(&block[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    want == unsigned || want == signed
}

pub(super) fn decode_header(block: &[u8; 512], offset: u64) -> TResult<Header> {
    let mut name = cstr(&block[0..100]).to_vec();
    let bad = |field: &str, name: &[u8]| {
        entry_err(
            offset,
            name,
            TarRule::BadNumber,
            format!("invalid {field} field"),
        )
    };
    let num = |range: std::ops::Range<usize>, field: &str, name: &[u8]| {
        parse_numeric(&block[range]).ok_or_else(|| bad(field, name))
    };
    let layout = layout(block);
    // Go decodes (and fails on) the device and time fields of every entry of these layouts.
    let (dev_major, dev_minor) = if layout == Layout::V7 {
        (0, 0)
    } else {
        (
            num(329..337, "device major", &name)?,
            num(337..345, "device minor", &name)?,
        )
    };
    let prefix: &[u8] = match layout {
        Layout::V7 => b"",
        Layout::Ustar => cstr(&block[345..500]),
        Layout::Star => {
            num(476..488, "atime", &name)?;
            num(488..500, "ctime", &name)?;
            if !block[345..476].contains(&0) {
                return Err(entry_err(
                    offset,
                    &name,
                    TarRule::AmbiguousHeader,
                    "star prefix fills its field (GNU tar reads it into the times)",
                ));
            }
            cstr(&block[345..476])
        }
        Layout::Gnu => {
            for (range, field) in [(345..357, "atime"), (357..369, "ctime")] {
                if block[range.start] != 0 && parse_numeric(&block[range]).is_none() {
                    return Err(entry_err(
                        offset,
                        &name,
                        TarRule::AmbiguousHeader,
                        format!("GNU {field} does not parse (Go reads it as a name prefix)"),
                    ));
                }
            }
            b""
        }
    };
    if !prefix.is_empty() {
        let mut full = prefix.to_vec();
        full.push(b'/');
        full.extend_from_slice(&name);
        name = full;
    }
    Ok(Header {
        typeflag: block[156],
        link: cstr(&block[157..257]).to_vec(),
        size: num(124..136, "size", &name)?,
        mode: num(100..108, "mode", &name)?,
        uid: num(108..116, "uid", &name)?,
        gid: num(116..124, "gid", &name)?,
        mtime: num(136..148, "mtime", &name)?,
        dev_major,
        dev_minor,
        name,
    })
}

/// PAX records (key, value) in stream order.
pub(super) type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Go's `parsePAX` records (`LEN key=value\n`), in stream order; why not, if malformed.
pub(super) fn parse_pax_records(mut data: &[u8]) -> Result<Records, &'static str> {
    const MALFORMED: &str = "malformed PAX record";
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data.iter().position(|&b| b == b' ').ok_or(MALFORMED)?;
        let n: i64 = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(MALFORMED)?;
        if n < 5 || n > data.len() as i64 {
            return Err(MALFORMED);
        }
        let rest = &data[sp + 1..];
        let n = n - (sp as i64 + 1);
        if n <= 0 {
            return Err(MALFORMED);
        }
        let n = n as usize;
        if rest[n - 1] != b'\n' {
            return Err(MALFORMED);
        }
        let rec = &rest[..n - 1];
        data = &rest[n..];
        let eq = rec.iter().position(|&b| b == b'=').ok_or(MALFORMED)?;
        let (k, v) = (&rec[..eq], &rec[eq + 1..]);
        if k.is_empty() || k.contains(&0) {
            return Err("PAX key is empty or contains a NUL byte");
        }
        if matches!(k, b"path" | b"linkpath" | b"uname" | b"gname") && v.contains(&0) {
            return Err("PAX path, linkpath, uname or gname contains a NUL byte");
        }
        if k.starts_with(b"GNU.sparse.") {
            return Err("GNU sparse records are not supported");
        }
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}

/// Values of the PAX records that matter, with Go's `mergePAX` rules: the last record of a key
/// wins and an empty value keeps the header's.
#[derive(Default)]
pub(super) struct Pax {
    pub(super) path: Option<Vec<u8>>,
    pub(super) link: Option<Vec<u8>>,
    pub(super) size: Option<i64>,
    pub(super) uid: Option<i64>,
    pub(super) gid: Option<i64>,
    pub(super) mtime: Option<(i64, u32)>,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(super) fn merge_pax(records: &[(Vec<u8>, Vec<u8>)]) -> Result<Pax, String> {
    let mut p = Pax::default();
    for (k, v) in records {
        let key = String::from_utf8_lossy(k);
        if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
            if name.is_empty() {
                return Err("empty xattr name".into());
            }
            if v.is_empty() {
                // Go leaves it out of `Xattrs` and keeps it in `PAXRecords`; readers of either
                // disagree on whether the attribute exists.
                return Err(format!("PAX {key} has an empty value"));
            }
            p.xattrs.retain(|(n, _)| n != name);
            p.xattrs.push((name.to_vec(), v.clone()));
            continue;
        }
        if v.is_empty() {
            if matches!(
                &k[..],
                b"path" | b"linkpath" | b"size" | b"uid" | b"gid" | b"mtime" | b"atime" | b"ctime"
            ) {
                // Go keeps the header's value; GNU tar calls the header malformed (and reads an
                // empty path as `.`).
                return Err(format!("PAX {key} has an empty value"));
            }
            continue;
        }
        let int = || {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| format!("invalid PAX {key}"))
        };
        match &k[..] {
            b"path" => p.path = Some(v.clone()),
            b"linkpath" => p.link = Some(v.clone()),
            b"size" => p.size = Some(int()?),
            b"uid" => p.uid = Some(int()?),
            b"gid" => p.gid = Some(int()?),
            b"mtime" => {
                p.mtime = Some(
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(parse_pax_time)
                        .ok_or("invalid PAX mtime")?,
                )
            }
            // atime and ctime must parse for Go; their values are not recorded.
            b"atime" | b"ctime" => {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(parse_pax_time)
                    .ok_or_else(|| format!("invalid PAX {key}"))?;
            }
            _ => {} // uname, gname, comment, charset, …: not recorded
        }
    }
    p.xattrs.sort();
    Ok(p)
}

/// Go's `parsePAXTime`: `SECONDS[.FRACTION]`, seconds by `strconv.ParseInt`, the fraction
/// truncated to nanoseconds; negative times count the fraction toward negative infinity.
pub(super) fn parse_pax_time(s: &str) -> Option<(i64, u32)> {
    let (secs_s, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs_s.parse().ok()?;
    if frac.is_empty() {
        return Some((secs, 0));
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().ok()?;
    if !secs_s.starts_with('-') || nsec == 0 {
        Some((secs, nsec))
    } else {
        Some((secs.checked_sub(1)?, 1_000_000_000 - nsec))
    }
}
