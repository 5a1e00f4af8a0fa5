//! Layer compression.

use std::io::{self, Read, Write};

/// How a layer blob is compressed on top of its tar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Compression {
    /// Plain tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
    /// gzip via flate2 at its default level (`...tar+gzip`).
    #[default]
    Gzip,
    /// zstd at the library's default level (`...tar+zstd`).
    Zstd,
}

impl Compression {
    /// The OCI layer media type for a blob compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// Short name used in history entries and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Compress `tar` with `c`. Deterministic: the gzip header carries no
/// timestamp or file name, and zstd uses a fixed level.
pub fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(tar.len() / 2),
                flate2::Compression::default(),
            );
            enc.write_all(tar).expect("writing to a Vec cannot fail");
            enc.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Zstd => {
            zstd::stream::encode_all(tar, 0).expect("zstd compression into memory failed")
        }
    }
}

/// Undo [`compress`]. Multi-member gzip and multi-frame zstd are accepted.
pub fn decompress(blob: &[u8], c: Compression) -> io::Result<Vec<u8>> {
    match c {
        Compression::None => Ok(blob.to_vec()),
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(blob).read_to_end(&mut out)?;
            Ok(out)
        }
        Compression::Zstd => zstd::stream::decode_all(blob),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_determinism() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let a = compress(&data, c);
            let b = compress(&data, c);
            assert_eq!(a, b, "{c:?} not deterministic");
            if c != Compression::None {
                assert!(a.len() < data.len() / 4, "{c:?} did not compress");
            }
            assert_eq!(decompress(&a, c).unwrap(), data);
        }
        assert_eq!(&compress(b"x", Compression::Gzip)[..2], &[0x1f, 0x8b]);
        assert_eq!(
            &compress(b"x", Compression::Zstd)[..4],
            &[0x28, 0xb5, 0x2f, 0xfd]
        );
    }
}
