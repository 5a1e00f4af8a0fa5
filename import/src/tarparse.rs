//! A strict, streaming tar reader that keeps the stream's skeleton.
//!
//! Field decoding (octal and base-256 numbers, ustar prefixes, PAX records) comes from the `tar`
//! crate; the stream walk is ours so that every byte is accounted for: header blocks, extension
//! records and padding go to the [`SkeletonBuilder`], regular file content goes to the caller.
//! Extension headers apply to the next real entry only; PAX values win over GNU records, which
//! win over the ustar header (as in GNU tar and Go's archive/tar).

use std::io::BufRead;

use layerstore_store::skeleton::SkeletonBuilder;

/// Limits the parser enforces.
#[derive(Clone, Copy, Debug)]
pub struct TarLimits {
    /// Largest PAX or GNU long-name record.
    pub max_record: u64,
    /// Largest data of a non-regular entry kept in the skeleton.
    pub max_raw_data: u64,
    /// Most bytes after the end-of-archive marker.
    pub max_trailer: u64,
}

/// A malformed stream: the offset of the header and what is wrong.
#[derive(Debug)]
pub struct TarError {
    pub offset: u64,
    pub reason: String,
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

fn err(offset: u64, reason: impl Into<String>) -> TarError {
    TarError {
        offset,
        reason: reason.into(),
        io: None,
    }
}

fn read_failed(offset: u64, e: std::io::Error) -> TarError {
    TarError {
        offset,
        reason: "read failed".into(),
        io: Some(e),
    }
}

#[derive(Default)]
struct Ext {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    gnu_name: Option<Vec<u8>>,
    gnu_link: Option<Vec<u8>>,
    any: bool,
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
        self.r.read_exact(buf).map_err(|e| TarError {
            offset: at,
            reason: if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "archive is truncated".into()
            } else {
                "read failed".into()
            },
            io: (e.kind() != std::io::ErrorKind::UnexpectedEof).then_some(e),
        })?;
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
                return Err(err(at, "archive is truncated").into());
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
                return Err(err(self.pos, "data of a non-regular entry is too large"));
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
            let mut block = [0u8; 512];
            match self.r.read(&mut block[..1]) {
                Ok(0) if !ext.any => {
                    // A stream that ends without the end-of-archive blocks: accepted, like GNU tar.
                    self.done = true;
                    return Ok(None);
                }
                Ok(0) => return Err(err(offset, "archive ends after an extension header")),
                Ok(_) => {}
                Err(e) => return Err(read_failed(offset, e)),
            }
            self.pos += 1;
            self.read_exact(&mut block[1..])?;
            self.skeleton.raw(&block);
            if block.iter().all(|&b| b == 0) {
                if ext.any {
                    return Err(err(offset, "end of archive after an extension header"));
                }
                self.read_trailer()?;
                self.done = true;
                return Ok(None);
            }
            let h = tar::Header::from_byte_slice(&block);
            check_checksum(&block).map_err(|r| err(offset, r))?;
            let size = match ext.size.take() {
                Some(s) => s,
                None => h
                    .entry_size()
                    .map_err(|_| err(offset, "invalid size field"))?,
            };
            let typeflag = block[156];
            match typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    if size > self.limits.max_record {
                        return Err(err(
                            offset,
                            format!("extension record of {size} bytes is too large"),
                        ));
                    }
                    let data = self.raw(size)?;
                    let pad = padding(size);
                    self.raw(pad)?;
                    ext.any = true;
                    match typeflag {
                        b'x' => apply_pax(&mut ext, &data).map_err(|r| err(offset, r))?,
                        b'g' => {
                            // Global headers are kept in the skeleton; their values are not applied
                            // (GNU tar and Go ignore most of them too), but they must parse.
                            tar::PaxExtensions::new(&data)
                                .try_for_each(|e| e.map(drop))
                                .map_err(|_| err(offset, "malformed global PAX header"))?;
                            ext.any = ext.path.is_some()
                                || ext.link.is_some()
                                || ext.size.is_some()
                                || ext.gnu_name.is_some()
                                || ext.gnu_link.is_some();
                        }
                        b'L' => ext.gnu_name = Some(trim_nul(&data).to_vec()),
                        _ => ext.gnu_link = Some(trim_nul(&data).to_vec()),
                    }
                    continue;
                }
                _ => {}
            }
            let name = match ext.path.take().or(ext.gnu_name.take()) {
                Some(p) => p,
                None => h.path_bytes().into_owned(),
            };
            let kind = match typeflag {
                b'0' | b'\0' | b'7' if name.ends_with(b"/") => TarKind::Directory,
                b'0' | b'\0' | b'7' => TarKind::Regular,
                b'1' => TarKind::Hardlink,
                b'2' => TarKind::Symlink,
                b'3' => TarKind::CharDevice,
                b'4' => TarKind::BlockDevice,
                b'5' => TarKind::Directory,
                b'6' => TarKind::Fifo,
                b'S' => return Err(err(offset, "GNU sparse files are not supported")),
                b'D' | b'M' | b'V' | b'N' => {
                    return Err(err(
                        offset,
                        format!("GNU type '{}' is not supported", typeflag as char),
                    ));
                }
                t => return Err(err(offset, format!("unknown entry type 0x{t:02x}"))),
            };
            let link = match ext.link.take().or(ext.gnu_link.take()) {
                Some(l) => Some(l),
                None if matches!(kind, TarKind::Hardlink | TarKind::Symlink) => Some(
                    h.link_name_bytes()
                        .map(|l| l.into_owned())
                        .unwrap_or_default(),
                ),
                None => None,
            };
            let num = |r: std::io::Result<u64>, what: &str| {
                r.map_err(|_| err(offset, format!("invalid {what} field")))
            };
            let uid = match ext.uid {
                Some(u) => u,
                None => num(h.uid(), "uid")?,
            };
            let gid = match ext.gid {
                Some(g) => g,
                None => num(h.gid(), "gid")?,
            };
            let (mtime, mtime_nsec) = match ext.mtime {
                Some(m) => m,
                None => (
                    i64::try_from(num(h.mtime(), "mtime")?)
                        .map_err(|_| err(offset, "mtime overflows"))?,
                    0,
                ),
            };
            let mode = h.mode().map_err(|_| err(offset, "invalid mode field"))? & 0o7777;
            let (dev_major, dev_minor) =
                if matches!(kind, TarKind::CharDevice | TarKind::BlockDevice) {
                    (
                        h.device_major()
                            .map_err(|_| err(offset, "invalid device major"))?
                            .unwrap_or(0),
                        h.device_minor()
                            .map_err(|_| err(offset, "invalid device minor"))?
                            .unwrap_or(0),
                    )
                } else {
                    (0, 0)
                };
            // Data: content for regular files; anything else goes raw into the skeleton.
            self.pending = size;
            self.pending_pad = padding(size);
            return Ok(Some(TarEntry {
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
                xattrs: std::mem::take(&mut ext.xattrs),
            }));
        }
    }

    /// After the first zero block: the second one and any padding or junk, kept raw (bounded).
    fn read_trailer(&mut self) -> TResult<()> {
        let mut buf = [0u8; 8192];
        let mut total = 0u64;
        loop {
            let n = self
                .r
                .read(&mut buf)
                .map_err(|e| read_failed(self.pos, e))?;
            if n == 0 {
                return Ok(());
            }
            total += n as u64;
            if total > self.limits.max_trailer {
                return Err(err(self.pos, "too much data after the end of the archive"));
            }
            self.pos += n as u64;
            self.skeleton.raw(&buf[..n]);
        }
    }
}

fn padding(size: u64) -> u64 {
    (512 - size % 512) % 512
}

fn trim_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

fn check_checksum(block: &[u8; 512]) -> Result<(), &'static str> {
    let field = &block[148..156];
    let text = trim_nul(field);
    let text = std::str::from_utf8(text).map_err(|_| "checksum field is not octal")?;
    let want = u32::from_str_radix(text.trim_matches(' '), 8)
        .map_err(|_| "checksum field is not octal")?;
    let unsigned: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    // Some old tars summed signed bytes.
    let signed: i32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i32::from(b as i8)
            }
        })
        .sum();
    if want == unsigned || want as i32 == signed {
        Ok(())
    } else {
        Err("header checksum mismatch")
    }
}

fn apply_pax(ext: &mut Ext, data: &[u8]) -> Result<(), String> {
    for rec in tar::PaxExtensions::new(data) {
        let rec = rec.map_err(|_| "malformed PAX record".to_string())?;
        let key = rec.key_bytes();
        let val = rec.value_bytes();
        let text = || {
            std::str::from_utf8(val)
                .map_err(|_| format!("PAX {} is not text", String::from_utf8_lossy(key)))
        };
        match key {
            b"path" => ext.path = Some(val.to_vec()),
            b"linkpath" => ext.link = Some(val.to_vec()),
            b"size" => {
                ext.size = Some(
                    text()?
                        .parse()
                        .map_err(|_| "invalid PAX size".to_string())?,
                )
            }
            b"uid" => ext.uid = Some(text()?.parse().map_err(|_| "invalid PAX uid".to_string())?),
            b"gid" => ext.gid = Some(text()?.parse().map_err(|_| "invalid PAX gid".to_string())?),
            b"mtime" => ext.mtime = Some(parse_pax_time(text()?).ok_or("invalid PAX mtime")?),
            k if k.starts_with(b"SCHILY.xattr.") => {
                let name = &k[b"SCHILY.xattr.".len()..];
                if name.is_empty() {
                    return Err("empty xattr name".into());
                }
                ext.xattrs.retain(|(n, _)| n != name);
                ext.xattrs.push((name.to_vec(), val.to_vec()));
            }
            k if k.starts_with(b"GNU.sparse.") => {
                return Err("GNU sparse files are not supported".into());
            }
            _ => {} // atime, ctime, uname, gname, comment, charset, …: not recorded
        }
    }
    ext.xattrs.sort();
    Ok(())
}

/// `[-]SECONDS[.FRACTION]` → (seconds, nanoseconds), rounding toward negative infinity like GNU tar.
fn parse_pax_time(s: &str) -> Option<(i64, u32)> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().ok()?;
    if !neg {
        Some((secs, nsec))
    } else if nsec == 0 {
        Some((-secs, 0))
    } else {
        Some((-secs - 1, 1_000_000_000 - nsec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some((1700000000, 500_000_000))
        );
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time("1.0000000019"), Some((1, 1)));
        assert_eq!(parse_pax_time("x"), None);
        assert_eq!(parse_pax_time(""), None);
    }
}
