//! The zstd frames objects may be stored as: encoding one, and telling from its headers alone
//! whether a file holds one whole frame (a file cut short by a crash does not).

use std::cell::RefCell;
use std::io;

use crate::digest::ObjectId;
use crate::error::{Error, Result};

/// Filesystem block size the space rule for loose files counts in.
const BLOCK: u64 = 4096;

/// Whether storing `stored` bytes instead of `size` is worth a decompression on every read: a
/// loose file must save at least one block, an inline blob an eighth of its size.
pub(super) fn worthwhile(size: u64, stored: u64, inline: bool) -> bool {
    if inline {
        stored <= size - size / 8
    } else {
        stored.div_ceil(BLOCK) < size.div_ceil(BLOCK)
    }
}

thread_local! {
    /// One compression context per thread and level: creating one costs more than compressing
    /// a small file.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
}

/// One zstd frame of `content`, with its size and a checksum.
pub(crate) fn zstd_frame(content: &[u8], level: i32) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut c = zstd::bulk::Compressor::new(level)?;
            c.include_checksum(true)?;
            c.include_contentsize(true)?;
            *cell = Some((level, c));
        }
        let (_, c) = cell.as_mut().expect("set above");
        c.compress(content)
    })
}

/// Whether the file `f` of `len` bytes is one complete zstd frame of `size` content bytes, judged
/// from its headers alone (RFC 8878): the frame header declares the size and a checksum, and the
/// chain of block headers ends, with the checksum, exactly at the end of the file.
pub(super) fn whole_frame(f: &std::fs::File, len: u64, size: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let read_at = |buf: &mut [u8], at: u64| -> io::Result<bool> {
        match f.read_exact_at(buf, at) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    };
    let mut hdr = [0u8; 18];
    let n = hdr.len().min(len as usize);
    if !read_at(&mut hdr[..n], 0)? || n < 6 {
        return Ok(false);
    }
    if !matches!(zstd::zstd_safe::get_frame_content_size(&hdr[..n]), Ok(Some(d)) if d == size) {
        return Ok(false);
    }
    let fhd = hdr[4];
    let single_segment = fhd & 0x20 != 0;
    let has_checksum = fhd & 0x04 != 0;
    let fcs_len = match fhd >> 6 {
        0 => u64::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let did_len = [0, 1, 2, 4][usize::from(fhd & 3)];
    let mut pos = 5 + u64::from(!single_segment) + did_len + fcs_len;
    loop {
        let mut bh = [0u8; 3];
        if !read_at(&mut bh, pos)? {
            return Ok(false);
        }
        let v = u32::from_le_bytes([bh[0], bh[1], bh[2], 0]);
        let body = match (v >> 1) & 3 {
            0 | 2 => u64::from(v >> 3),
            1 => 1,
            _ => return Ok(false),
        };
        pos += 3 + body;
        if pos > len {
            return Ok(false);
        }
        if v & 1 == 1 {
            break;
        }
    }
    Ok(pos + if has_checksum { 4 } else { 0 } == len)
}

/// Decode an inline zstd blob of an object of `size` bytes.
pub(super) fn unzstd_inline(id: &ObjectId, blob: &[u8], size: u64) -> Result<Vec<u8>> {
    let corrupt = |actual: String| Error::ObjectCorrupt {
        id: id.hex(),
        actual,
    };
    let data = zstd::bulk::decompress(blob, size as usize)
        .map_err(|e| corrupt(format!("inline zstd blob: {e}")))?;
    if data.len() as u64 != size {
        return Err(corrupt(format!("{} bytes, expected {size}", data.len())));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worthwhile_counts_blocks_for_files_and_an_eighth_inline() {
        assert!(worthwhile(8192, 4096, false));
        assert!(!worthwhile(8000, 4097, false));
        assert!(worthwhile(5000, 4000, false));
        assert!(!worthwhile(4096, 100, false));
        assert!(worthwhile(1000, 875, true));
        assert!(!worthwhile(1000, 876, true));
    }
}
