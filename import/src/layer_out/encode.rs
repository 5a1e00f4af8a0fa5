//! The writer functions, one per [`Compression`](super::Compression): each gets the level and
//! the tar and writes the blob (see the module above for what they promise).

use std::io::{self, BufWriter, Write};

use rayon::prelude::*;

use super::{Annotations, EncodeJob};
use crate::error::{Error, Result};

pub(super) fn write_plain(job: EncodeJob<'_>, out: &mut dyn Write) -> Result<Annotations> {
    (job.tar)(&mut *out)?;
    Ok(Annotations::new())
}

pub(super) fn write_gzip(job: EncodeJob<'_>, out: &mut dyn Write) -> Result<Annotations> {
    let err = |source| Error::LayerOut {
        diff_id: job.diff_id,
        compression: "gzip",
        source,
    };
    let level = u32::try_from(job.level).expect("gzip levels are checked to be 0..=9");
    let mut gz = BlockGzip::new(out, level).map_err(err)?;
    (job.tar)(&mut gz)?;
    gz.finish().map_err(err)?;
    Ok(Annotations::new())
}

/// The tar is cut into blocks of this size, each deflated on its own (as `pigz -i` does) so
/// that the blocks of one layer compress on all cores. The cut is fixed: the blob depends on the
/// tar and the level only, never on how many threads there are.
const GZIP_BLOCK: usize = 1 << 20;
/// Blocks gathered before they are compressed at once (memory: this many blocks in and out).
const GZIP_BATCH: usize = 8;

/// One gzip member (fixed header: no name, mtime 0, OS unknown) whose deflate stream is the
/// blocks' streams one after another: every block but the last ends with a sync flush (an
/// empty stored block, byte-aligned), the last with the final block. Any gzip reader reads it
/// as one stream; the CRC and size cover the whole tar.
struct BlockGzip<'a> {
    out: &'a mut dyn Write,
    level: u32,
    pending: Vec<u8>,
    crc: flate2::Crc,
}

impl<'a> BlockGzip<'a> {
    fn new(out: &'a mut dyn Write, level: u32) -> io::Result<Self> {
        // ID1 ID2, CM deflate, no flags, MTIME 0, XFL 0, OS 255 (unknown).
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        Ok(BlockGzip {
            out,
            level,
            pending: Vec::with_capacity(GZIP_BLOCK * GZIP_BATCH),
            crc: flate2::Crc::new(),
        })
    }

    /// Compress the whole blocks pending (all of them, the last one final, when `last`).
    fn compress(&mut self, last: bool) -> io::Result<()> {
        let whole = if last {
            self.pending.len()
        } else {
            self.pending.len() / GZIP_BLOCK * GZIP_BLOCK
        };
        let mut blocks: Vec<&[u8]> = self.pending[..whole].chunks(GZIP_BLOCK).collect();
        if last && blocks.is_empty() {
            // An empty tail still needs the final block.
            blocks.push(&[]);
        }
        let n = blocks.len();
        let level = self.level;
        let deflated: Vec<Vec<u8>> = blocks
            .into_par_iter()
            .enumerate()
            .map(|(i, b)| deflate_block(b, level, last && i + 1 == n))
            .collect();
        for d in deflated {
            self.out.write_all(&d)?;
        }
        self.pending.drain(..whole);
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.compress(true)?;
        self.out.write_all(&self.crc.sum().to_le_bytes())?;
        self.out.write_all(&self.crc.amount().to_le_bytes())?;
        self.out.flush()
    }
}

impl Write for BlockGzip<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = GZIP_BLOCK * GZIP_BATCH - self.pending.len();
        let n = buf.len().min(room);
        self.pending.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        if self.pending.len() == GZIP_BLOCK * GZIP_BATCH {
            self.compress(false)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        // Blocks are cut at fixed offsets, never where a caller flushes.
        Ok(())
    }
}

/// One block as raw deflate: ended by a sync flush, or by the final block when `last`.
fn deflate_block(data: &[u8], level: u32, last: bool) -> Vec<u8> {
    use flate2::{Compress, FlushCompress, Status};
    let mut c = Compress::new(flate2::Compression::new(level), false);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity());
        }
        let done = c.total_in() as usize;
        let status = c
            .compress_vec(&data[done..], &mut out, flush)
            .expect("deflating memory into memory does not fail");
        let all_in = c.total_in() as usize == data.len();
        // A flush is complete once it returns with output space left over.
        match (last, status) {
            (true, Status::StreamEnd) => break,
            (false, _) if all_in && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    out
}

pub(super) fn write_zstd(job: EncodeJob<'_>, out: &mut dyn Write) -> Result<Annotations> {
    let err = |source| Error::LayerOut {
        diff_id: job.diff_id,
        compression: "zstd",
        source,
    };
    // One frame from one thread: the same bytes as every earlier export and push wrote.
    let mut z = zstd::stream::write::Encoder::new(out, job.level).map_err(err)?;
    (job.tar)(&mut z)?;
    z.finish().map_err(err)?;
    Ok(Annotations::new())
}

pub(super) fn write_zstd_chunked(job: EncodeJob<'_>, out: &mut dyn Write) -> Result<Annotations> {
    let err = |source| Error::LayerOut {
        diff_id: job.diff_id,
        compression: "zstd:chunked",
        source,
    };
    // The table of contents needs each file's offsets in the tar: the tar is spooled to a
    // temporary file and read twice (entries, then frames).
    let mut tar = tempfile::tempfile().map_err(err)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, &mut tar);
        (job.tar)(&mut w)?;
        w.flush().map_err(err)?;
    }
    crate::chunked::write::write_chunked(&mut tar, out, job.level).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text-like bytes that compress, of `len` bytes.
    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"layerstore gzip block "[(i * 7 + i / 1000) % 22])
            .collect()
    }

    #[test]
    fn block_gzip_reads_back_whole_at_every_block_boundary_and_is_the_same_each_time() {
        use std::io::Read;
        for len in [
            0,
            1,
            GZIP_BLOCK - 1,
            GZIP_BLOCK,
            GZIP_BLOCK + 1,
            GZIP_BLOCK * GZIP_BATCH,
            GZIP_BLOCK * GZIP_BATCH * 2 + 12345,
        ] {
            let data = sample(len);
            let gzip = |level: u32| {
                let mut out = Vec::new();
                let mut gz = BlockGzip::new(&mut out, level).unwrap();
                // Odd write sizes: the blocks are cut at fixed offsets whatever the writes.
                for piece in data.chunks(77_777) {
                    gz.write_all(piece).unwrap();
                }
                gz.finish().unwrap();
                out
            };
            for level in [0, 1, 6, 9] {
                let blob = gzip(level);
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(&blob[..])
                    .read_to_end(&mut back)
                    .unwrap();
                assert!(back == data, "{len} bytes at level {level}");
                assert_eq!(gzip(level), blob, "{len} bytes at level {level}");
                if level > 0 && len > 1000 {
                    assert!(blob.len() < len / 4, "{len} bytes compress");
                }
            }
        }
    }
}
