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
//! | zero bytes after the end-of-archive marker, any length | not read | accepted, kept for the round trip (past [`TarLimits::raw_trailer`] bytes as a zero run of the skeleton, so memory stays bounded; the layer-bytes limit applies) |
//! | any non-zero byte after the marker (junk or a header) | not read (`tar --ignore-zeros` reads on) | refused |
//! | header checksum | unsigned or signed sum, field parsed as octal | same |

use std::fmt;
use std::io::BufRead;

use layerstore_store::skeleton::SkeletonBuilder;

mod header;
use header::*;

/// Limits the parser enforces.
#[derive(Clone, Copy, Debug)]
pub struct TarLimits {
    /// Largest PAX or GNU long-name record.
    pub max_record: u64,
    /// Largest data of a non-regular entry kept in the skeleton.
    pub max_raw_data: u64,
    /// Zero bytes after the end-of-archive marker kept as they are in the skeleton; past them,
    /// the rest of the padding, of any length, is kept as its length (a zero run).
    pub raw_trailer: u64,
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
    /// too), then zero padding of any length (real writers pad to their record size, some far
    /// more), kept raw up to [`TarLimits::raw_trailer`] and as a zero run past it, so memory
    /// stays bounded. A non-zero byte is refused: readers that go on past the marker
    /// (`tar --ignore-zeros`) would see entries the others do not.
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
        let mut raw_left = self.limits.raw_trailer;
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
            let raw = (n as u64).min(raw_left) as usize;
            self.skeleton.raw(&buf[..raw]);
            self.skeleton.zeros((n - raw) as u64);
            raw_left -= raw as u64;
            self.r.consume(n);
            self.pos += n as u64;
        }
    }
}

fn padding(size: u64) -> u64 {
    (512 - size % 512) % 512
}

#[cfg(test)]
mod tests;
