//! A strict, streaming tar reader that keeps the stream's skeleton.
//!
//! The stream walk and the field decoding are ours, so that every byte is accounted for (header
//! blocks, extension records and padding go to the [`SkeletonBuilder`], regular file content goes
//! to the caller) and so that the decoding follows Go's `archive/tar`, the reader docker,
//! containerd, podman and containers/storage unpack layers with. Where tar readers disagree on what
//! an archive holds (GNU tar, bsdtar and Go each resolve some corners their own way), a layer is
//! refused with a [`TarRule`] naming the entry: layerstore never stores a tree a runtime would not
//! see.
//!
//! | Corner | Go's `archive/tar` | layerstore |
//! |---|---|---|
//! | numeric fields, octal | leading/trailing NULs and spaces trimmed, cut at a NUL, base 8 | same, but a NUL before the digits is refused (GNU tar reads 0) |
//! | numeric fields, base-256 (first byte ≥ 0x80) | two's complement; over 63 bits is an error | same; negative uid/gid/size/mode/device refused |
//! | mtime before 1970 (negative base-256 or PAX `-S.F`) | accepted | same |
//! | uid/gid over 32 bits (base-256 or PAX) | accepted, truncated by runtimes | refused (`import` checks) |
//! | device numbers over 32 bits | accepted, truncated by `mkdev` | refused |
//! | invalid number in any field, devices and GNU times included | error | refused |
//! | ustar prefix | used when the magic is `ustar\0`, whatever the version | same |
//! | star (`tar\0` trailer) prefix | 131-byte prefix | same; a prefix filling its field is refused (GNU tar reads on) |
//! | GNU header whose atime/ctime do not parse | read as a pre-Go 1.8 ustar prefix | refused |
//! | type `\0` and name ending in `/` | directory | same |
//! | type `0` and name ending in `/` | a regular file `x/` (GNU tar: a directory) | refused |
//! | type `7` (contiguous) | listed as type `7`; containerd refuses it | refused |
//! | data on link, symlink, device, directory or fifo (size or PAX `size` ≠ 0) | ignored: the bytes are read as the next header (GNU tar skips them) | refused |
//! | PAX `path` + GNU `L`, PAX `linkpath` + GNU `K`, two `L`, two `K` | GNU record wins / last wins | refused |
//! | two PAX `x` headers for one entry | the last one alone applies | refused |
//! | PAX `size` | applies to the next real entry only | same |
//! | PAX `path`/`linkpath`/`size`/`uid`/`gid`/`*time` with an empty value | keeps the header's value (GNU tar: malformed) | refused |
//! | other PAX records with an empty value (`uname`, `comment`, …) | ignored | ignored |
//! | PAX `SCHILY.xattr.*` with an empty value | dropped from `Xattrs`, kept in `PAXRecords` (containerd applies it) | refused |
//! | malformed PAX record, NUL in a key or in a path/linkpath/uname/gname value | error | refused |
//! | PAX `uid`/`gid`/`size`/`mtime` syntax | `strconv.ParseInt`, `S[.F]` with F truncated to 9 digits | same |
//! | `uname`/`gname` (header or PAX) | listed; runtimes use the numeric ids | ignored: the numeric ids are stored |
//! | `atime`/`ctime` | listed; runtimes do not apply them | ignored |
//! | GNU sparse (type `S`, PAX `GNU.sparse.*`) | expanded | refused |
//! | GNU types `D`, `M`, `V`, `N`, vendor types | listed; containerd refuses them | refused |
//! | global header (`g`) | returned as an entry, its records not applied; runtimes skip it | kept in the skeleton, not applied; its records must parse |
//! | global header between an entry's extension headers | drops the pending extensions | refused |
//! | extension header followed by the end or by end of stream | the extension is dropped | refused |
//! | stream ending without the end-of-archive marker, at a block boundary | accepted | same |
//! | one zero block, then end of stream | accepted | same |
//! | a zero block followed by a non-zero block | error | refused |
//! | zero bytes after the end-of-archive marker | not read | accepted, kept for the round trip (up to [`TarLimits::max_trailer`]) |
//! | any non-zero byte after the marker (junk or a header) | not read (`tar --ignore-zeros` reads on) | refused |
//! | header checksum | unsigned or signed sum, field parsed as octal | same |

use std::fmt;
use std::io::BufRead;

use layerstore_store::skeleton::SkeletonBuilder;

/// Limits the parser enforces.
#[derive(Clone, Copy, Debug)]
pub struct TarLimits {
    /// Largest PAX or GNU long-name record.
    pub max_record: u64,
    /// Largest data of a non-regular entry kept in the skeleton.
    pub max_raw_data: u64,
    /// Most zero bytes after the end-of-archive marker (they are kept in memory for the
    /// skeleton).
    pub max_trailer: u64,
}

/// A rule of the archive format that a stream breaks: either malformed everywhere, or read
/// differently by the tar readers runtimes use (see the table in the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TarRule {
    /// A link, symlink, directory, device or fifo declares data (its size is not 0).
    DataOnHeaderOnlyEntry,
    /// Two name (or link name) extensions, or two PAX headers, for one entry.
    StackedExtensions,
    /// An extension header with no entry after it, or a global header between an entry's
    /// extension headers.
    DanglingExtension,
    /// A non-zero byte after the end-of-archive marker.
    DataAfterEnd,
    /// More zero bytes after the end-of-archive marker than the limit.
    TrailerTooLong,
    /// A numeric field that does not parse, is negative or overflows.
    BadNumber,
    /// A PAX record that is malformed or holds a value the readers treat differently.
    BadPax,
    /// An extension record over the limit.
    RecordTooLarge,
    /// A header whose checksum does not match.
    BadChecksum,
    /// A header layout the readers decode differently.
    AmbiguousHeader,
    /// An entry type that is unknown or not supported (sparse, GNU volume types, contiguous).
    UnsupportedType,
    /// The data of a non-regular entry is too large to keep.
    RawDataTooLarge,
    /// The stream ends inside a header or an entry's data.
    Truncated,
    /// The stream could not be read.
    ReadFailed,
}

impl fmt::Display for TarRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TarRule::DataOnHeaderOnlyEntry => "an entry without data must declare size 0",
            TarRule::StackedExtensions => "one entry may have one name and one link extension",
            TarRule::DanglingExtension => "an extension header must precede an entry",
            TarRule::DataAfterEnd => "only zero bytes may follow the end-of-archive marker",
            TarRule::TrailerTooLong => "too many zero bytes after the end-of-archive marker",
            TarRule::BadNumber => "numeric fields must parse and fit",
            TarRule::BadPax => "PAX records must be well-formed and unambiguous",
            TarRule::RecordTooLarge => "extension records are limited in size",
            TarRule::BadChecksum => "header checksums must match",
            TarRule::AmbiguousHeader => "headers must decode one way only",
            TarRule::UnsupportedType => "entry types must be supported",
            TarRule::RawDataTooLarge => "data of a non-regular entry is limited in size",
            TarRule::Truncated => "the archive must not end inside a header or data",
            TarRule::ReadFailed => "the stream must be readable",
        })
    }
}

/// A stream layerstore refuses: the offset of the header, the entry (when its name is known),
/// the rule it breaks and the detail.
#[derive(Debug)]
pub struct TarError {
    pub offset: u64,
    /// `entry "NAME": RULE: DETAIL`, or `RULE: DETAIL` when no entry is known.
    pub reason: String,
    pub rule: TarRule,
    /// The name of the entry involved, as far as it was read.
    pub entry: Option<Vec<u8>>,
    /// The underlying read error, if the stream itself failed.
    pub io: Option<std::io::Error>,
}

type TResult<T> = Result<T, TarError>;

/// What an entry is in tar terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TarKind {
    Regular,
    Hardlink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

/// One entry with every extension applied.
#[derive(Clone, Debug)]
pub struct TarEntry {
    pub offset: u64,
    pub kind: TarKind,
    pub path: Vec<u8>,
    pub link: Option<Vec<u8>>,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Streaming parser.
pub struct TarParser<R> {
    r: R,
    pos: u64,
    limits: TarLimits,
    pub skeleton: SkeletonBuilder,
    /// Bytes of the current entry's data still unread, and its padding.
    pending: u64,
    pending_pad: u64,
    done: bool,
}

fn show(name: &[u8]) -> String {
    layerstore_store::tree::display_path(name)
}

fn err(offset: u64, rule: TarRule, detail: impl fmt::Display) -> TarError {
    TarError {
        offset,
        reason: format!("{rule}: {detail}"),
        rule,
        entry: None,
        io: None,
    }
}

/// An error about the entry `name`.
fn entry_err(offset: u64, name: &[u8], rule: TarRule, detail: impl fmt::Display) -> TarError {
    TarError {
        offset,
        reason: format!("entry {:?}: {rule}: {detail}", show(name)),
        rule,
        entry: Some(name.to_vec()),
        io: None,
    }
}

fn read_failed(offset: u64, e: std::io::Error) -> TarError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return err(offset, TarRule::Truncated, "archive is truncated");
    }
    TarError {
        offset,
        reason: "read failed".into(),
        rule: TarRule::ReadFailed,
        entry: None,
        io: Some(e),
    }
}

/// Extension headers seen before a real entry.
#[derive(Default)]
struct Ext {
    /// Records of the PAX `x` header, in stream order.
    pax: Option<Records>,
    gnu_name: Option<Vec<u8>>,
    gnu_link: Option<Vec<u8>>,
}

impl Ext {
    fn any(&self) -> bool {
        self.pax.is_some() || self.gnu_name.is_some() || self.gnu_link.is_some()
    }

    /// The name the extensions give, for error messages.
    fn name(&self) -> Option<&[u8]> {
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
enum Layout {
    V7,
    Ustar,
    Star,
    Gnu,
}

/// The fields of one header block, decoded as Go's `readHeader` does.
struct Header {
    typeflag: u8,
    name: Vec<u8>,
    link: Vec<u8>,
    size: i64,
    mode: i64,
    uid: i64,
    gid: i64,
    mtime: i64,
    dev_major: i64,
    dev_minor: i64,
}

/// Bytes up to the first NUL (Go's `parseString`).
fn cstr(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// Go's `parseOctal`: NULs and spaces trimmed at both ends, cut at a NUL, base 8, 64 bits.
fn parse_octal(b: &[u8]) -> Option<i64> {
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
fn parse_numeric(b: &[u8]) -> Option<i64> {
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

fn layout(block: &[u8; 512]) -> Layout {
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

fn checksum_ok(block: &[u8; 512]) -> bool {
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

fn decode_header(block: &[u8; 512], offset: u64) -> TResult<Header> {
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
type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Go's `parsePAX` records (`LEN key=value\n`), in stream order; why not, if malformed.
fn parse_pax_records(mut data: &[u8]) -> Result<Records, &'static str> {
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
struct Pax {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<i64>,
    uid: Option<i64>,
    gid: Option<i64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn merge_pax(records: &[(Vec<u8>, Vec<u8>)]) -> Result<Pax, String> {
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

impl<R: BufRead> TarParser<R> {
    /// Parse `r`.
    pub fn new(r: R, limits: TarLimits) -> Self {
        TarParser {
            r,
            pos: 0,
            limits,
            skeleton: SkeletonBuilder::default(),
            pending: 0,
            pending_pad: 0,
            done: false,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> TResult<()> {
        let at = self.pos;
        self.r.read_exact(buf).map_err(|e| read_failed(at, e))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Read `n` bytes that belong to the skeleton.
    fn raw(&mut self, n: u64) -> TResult<Vec<u8>> {
        let mut v = vec![0u8; n as usize];
        self.read_exact(&mut v)?;
        self.skeleton.raw(&v);
        Ok(v)
    }

    /// Read content of the current regular entry into `buf`; returns 0 at its end. Content does
    /// not go into the skeleton; call [`TarParser::content_done`] with its object afterwards.
    pub fn read_content(&mut self, buf: &mut [u8]) -> TResult<usize> {
        if self.pending == 0 {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.pending) as usize;
        self.read_exact(&mut buf[..n])?;
        self.pending -= n as u64;
        Ok(n)
    }

    /// Hand the rest of the current regular entry's content to `f`, a piece at a time, straight
    /// from the reader's buffer (no copy).
    pub fn each_content<E: From<TarError>>(
        &mut self,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        while self.pending > 0 {
            let at = self.pos;
            let buf = self.r.fill_buf().map_err(|e| read_failed(at, e))?;
            if buf.is_empty() {
                return Err(err(at, TarRule::Truncated, "archive is truncated").into());
            }
            let n = (buf.len() as u64).min(self.pending) as usize;
            f(&buf[..n])?;
            self.r.consume(n);
            self.pos += n as u64;
            self.pending -= n as u64;
        }
        Ok(())
    }

    /// If the reader's buffer holds the rest of the current regular entry's content, hand it to
    /// `f` (no copy) and count it as read; `None` (nothing read) if it does not.
    pub fn buffered_content<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> TResult<Option<T>> {
        let at = self.pos;
        let pending = self.pending;
        let buf = if pending == 0 {
            &[][..]
        } else {
            self.r.fill_buf().map_err(|e| read_failed(at, e))?
        };
        if (buf.len() as u64) < pending {
            return Ok(None);
        }
        let out = f(&buf[..pending as usize]);
        self.r.consume(pending as usize);
        self.pos += pending;
        self.pending = 0;
        Ok(Some(out))
    }

    /// The content of the current entry was `size` bytes of `object`.
    pub fn content_done(&mut self, size: u64, object: layerstore_store::ObjectId) {
        debug_assert_eq!(self.pending, 0);
        self.skeleton.splice(size, object);
    }

    /// Keep whatever data of the current entry is left in the skeleton (bounded), and its padding.
    fn finish_entry(&mut self) -> TResult<()> {
        if self.pending > 0 {
            if self.pending > self.limits.max_raw_data {
                return Err(err(
                    self.pos,
                    TarRule::RawDataTooLarge,
                    format!("{} bytes", self.pending),
                ));
            }
            let n = self.pending;
            self.pending = 0;
            self.raw(n)?;
        }
        if self.pending_pad > 0 {
            let n = self.pending_pad;
            self.pending_pad = 0;
            self.raw(n)?;
        }
        Ok(())
    }

    /// Read one 512-byte block into the skeleton; `None` at a clean end of stream.
    fn block(&mut self) -> TResult<Option<[u8; 512]>> {
        let mut block = [0u8; 512];
        let offset = self.pos;
        let n = loop {
            match self.r.read(&mut block[..1]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_failed(offset, e)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        self.pos += 1;
        self.read_exact(&mut block[1..])?;
        self.skeleton.raw(&block);
        Ok(Some(block))
    }

    /// The next entry, or `None` after the end-of-archive marker (the rest of the stream is then
    /// in the skeleton).
    pub fn next_entry(&mut self) -> TResult<Option<TarEntry>> {
        self.finish_entry()?;
        if self.done {
            return Ok(None);
        }
        let mut ext = Ext::default();
        loop {
            let offset = self.pos;
            let dangling = |ext: &Ext, what: &str| {
                let detail = format!("{what} after an extension header");
                match ext.name() {
                    Some(n) => entry_err(offset, n, TarRule::DanglingExtension, detail),
                    None => err(offset, TarRule::DanglingExtension, detail),
                }
            };
            let Some(block) = self.block()? else {
                if ext.any() {
                    return Err(dangling(&ext, "the archive ends"));
                }
                // A stream that ends without the end-of-archive blocks: accepted, like Go and
                // GNU tar.
                self.done = true;
                return Ok(None);
            };
            if block.iter().all(|&b| b == 0) {
                if ext.any() {
                    return Err(dangling(&ext, "end of archive"));
                }
                self.read_trailer()?;
                self.done = true;
                return Ok(None);
            }
            if !checksum_ok(&block) {
                let name = cstr(&block[..100]);
                return Err(entry_err(
                    offset,
                    name,
                    TarRule::BadChecksum,
                    "header checksum mismatch",
                ));
            }
            let h = decode_header(&block, offset)?;
            let typeflag = h.typeflag;
            if matches!(typeflag, b'x' | b'g' | b'L' | b'K') {
                let name = ext.name().unwrap_or(&h.name).to_vec();
                let fail = |rule, detail: String| entry_err(offset, &name, rule, detail);
                let size = u64::try_from(h.size)
                    .map_err(|_| fail(TarRule::BadNumber, "negative size".into()))?;
                if size > self.limits.max_record {
                    return Err(fail(
                        TarRule::RecordTooLarge,
                        format!("extension record of {size} bytes is too large"),
                    ));
                }
                let data = self.raw(size)?;
                self.raw(padding(size))?;
                match typeflag {
                    b'x' => {
                        if ext.pax.is_some() {
                            return Err(fail(
                                TarRule::StackedExtensions,
                                "two PAX headers (Go applies only the last)".into(),
                            ));
                        }
                        let recs = parse_pax_records(&data)
                            .map_err(|r| fail(TarRule::BadPax, r.into()))?;
                        ext.pax = Some(recs);
                    }
                    b'g' => {
                        if ext.any() {
                            return Err(fail(
                                TarRule::DanglingExtension,
                                "global header after an extension header (Go drops the extension)"
                                    .into(),
                            ));
                        }
                        // Kept in the skeleton, not applied (Go returns it as an entry of its
                        // own and runtimes skip it); its records must parse, as for Go.
                        parse_pax_records(&data).map_err(|r| fail(TarRule::BadPax, r.into()))?;
                    }
                    b'L' | b'K' => {
                        let value = cstr(&data).to_vec();
                        let (slot, what) = if typeflag == b'L' {
                            (&mut ext.gnu_name, "GNU long name")
                        } else {
                            (&mut ext.gnu_link, "GNU long link")
                        };
                        if slot.is_some() {
                            return Err(fail(
                                TarRule::StackedExtensions,
                                format!("two {what} records"),
                            ));
                        }
                        if value.is_empty() {
                            return Err(fail(TarRule::BadPax, format!("empty {what}")));
                        }
                        *slot = Some(value);
                    }
                    _ => unreachable!("matched above"),
                }
                continue;
            }
            return self.entry(offset, h, ext).map(Some);
        }
    }

    /// Apply the extensions to a real entry's header.
    fn entry(&mut self, offset: u64, h: Header, ext: Ext) -> TResult<TarEntry> {
        let pax_name = ext.name().unwrap_or(&h.name).to_vec();
        let fail = |name: &[u8], rule, detail: String| entry_err(offset, name, rule, detail);
        let pax = match &ext.pax {
            Some(recs) => merge_pax(recs).map_err(|r| fail(&pax_name, TarRule::BadPax, r))?,
            None => Pax::default(),
        };
        if pax.path.is_some() && ext.gnu_name.is_some() {
            return Err(fail(
                &pax_name,
                TarRule::StackedExtensions,
                "a PAX path and a GNU long name (GNU tar takes the first, Go the second)".into(),
            ));
        }
        if pax.link.is_some() && ext.gnu_link.is_some() {
            return Err(fail(
                &pax_name,
                TarRule::StackedExtensions,
                "a PAX linkpath and a GNU long link".into(),
            ));
        }
        let name = pax.path.or(ext.gnu_name).unwrap_or(h.name);
        let link = pax.link.or(ext.gnu_link).unwrap_or(h.link);
        let fail = |rule, detail: String| entry_err(offset, &name, rule, detail);
        let kind = match h.typeflag {
            b'\0' if name.ends_with(b"/") => TarKind::Directory,
            b'0' | b'\0' if name.ends_with(b"/") => {
                return Err(fail(
                    TarRule::AmbiguousHeader,
                    "a regular file whose name ends in '/' (GNU tar makes it a directory)".into(),
                ));
            }
            b'0' | b'\0' => TarKind::Regular,
            b'1' => TarKind::Hardlink,
            b'2' => TarKind::Symlink,
            b'3' => TarKind::CharDevice,
            b'4' => TarKind::BlockDevice,
            b'5' => TarKind::Directory,
            b'6' => TarKind::Fifo,
            b'7' => {
                return Err(fail(
                    TarRule::UnsupportedType,
                    "contiguous files (type '7') are not supported".into(),
                ));
            }
            b'S' => {
                return Err(fail(
                    TarRule::UnsupportedType,
                    "GNU sparse files are not supported".into(),
                ));
            }
            t @ (b'D' | b'M' | b'V' | b'N') => {
                return Err(fail(
                    TarRule::UnsupportedType,
                    format!("GNU type '{}' is not supported", t as char),
                ));
            }
            t => {
                return Err(fail(
                    TarRule::UnsupportedType,
                    format!("unknown entry type 0x{t:02x}"),
                ));
            }
        };
        let size = pax.size.unwrap_or(h.size);
        let size =
            u64::try_from(size).map_err(|_| fail(TarRule::BadNumber, "negative size".into()))?;
        if kind != TarKind::Regular && size != 0 {
            return Err(fail(
                TarRule::DataOnHeaderOnlyEntry,
                format!(
                    "a {} entry declares {size} bytes of data (Go reads them as headers, GNU tar skips them)",
                    format!("{kind:?}").to_lowercase()
                ),
            ));
        }
        let id = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| fail(TarRule::BadNumber, format!("negative {what}")))
        };
        let uid = id(pax.uid.unwrap_or(h.uid), "uid")?;
        let gid = id(pax.gid.unwrap_or(h.gid), "gid")?;
        let mode = u32::try_from(h.mode)
            .map_err(|_| fail(TarRule::BadNumber, "mode out of range".into()))?
            & 0o7777;
        let (mtime, mtime_nsec) = pax.mtime.unwrap_or((h.mtime, 0));
        let (dev_major, dev_minor) = if matches!(kind, TarKind::CharDevice | TarKind::BlockDevice) {
            let dev = |v: i64| {
                u32::try_from(v)
                    .map_err(|_| fail(TarRule::BadNumber, "device number out of range".into()))
            };
            (dev(h.dev_major)?, dev(h.dev_minor)?)
        } else {
            (0, 0)
        };
        let link = matches!(kind, TarKind::Hardlink | TarKind::Symlink).then_some(link);
        // Data: content for regular files; anything else goes raw into the skeleton.
        self.pending = size;
        self.pending_pad = padding(size);
        Ok(TarEntry {
            offset,
            kind,
            path: name,
            link,
            size,
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec,
            dev_major,
            dev_minor,
            xattrs: pax.xattrs,
        })
    }

    /// After the first zero block: the second one (or the end of the stream, which Go accepts
    /// too), then zero padding of any length up to the limit, kept raw. A non-zero byte is
    /// refused: readers that go on past the marker would see more entries than the others.
    fn read_trailer(&mut self) -> TResult<()> {
        let second = self.pos;
        let Some(block) = self.block()? else {
            return Ok(());
        };
        if block.iter().any(|&b| b != 0) {
            return Err(err(
                second,
                TarRule::DataAfterEnd,
                "a zero block followed by a non-zero block",
            ));
        }
        let mut total = 0u64;
        loop {
            let at = self.pos;
            let buf = self.r.fill_buf().map_err(|e| read_failed(at, e))?;
            if buf.is_empty() {
                return Ok(());
            }
            if let Some(i) = buf.iter().position(|&b| b != 0) {
                return Err(err(
                    at + i as u64,
                    TarRule::DataAfterEnd,
                    format!("byte 0x{:02x} after the end-of-archive marker", buf[i]),
                ));
            }
            let n = buf.len();
            total += n as u64;
            if total > self.limits.max_trailer {
                return Err(err(
                    at,
                    TarRule::TrailerTooLong,
                    format!("more than {} bytes", self.limits.max_trailer),
                ));
            }
            self.skeleton.raw(buf);
            self.r.consume(n);
            self.pos += n as u64;
        }
    }
}

fn padding(size: u64) -> u64 {
    (512 - size % 512) % 512
}

/// Go's `parsePAXTime`: `SECONDS[.FRACTION]`, seconds by `strconv.ParseInt`, the fraction
/// truncated to nanoseconds; negative times count the fraction toward negative infinity.
fn parse_pax_time(s: &str) -> Option<(i64, u32)> {
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

#[cfg(test)]
mod tests {
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
            max_trailer: 1 << 20,
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
                max_trailer: 1 << 20,
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
}
