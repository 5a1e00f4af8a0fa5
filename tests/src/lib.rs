//! Test-fixture builders for layerstore.
//!
//! This crate produces the inputs that the store and importer are tested
//! against. Everything is generated in memory, byte-for-byte deterministic,
//! and built without sanitising anything, so hostile inputs are as easy to
//! make as well-formed ones.
//!
//! * [`tarbuild`]: layer tarballs. [`Entry`] describes one member (paths are
//!   raw bytes); [`LayerBuilder`] turns a list of entries into a tar in one of
//!   three [`TarFormat`]s (ustar prefix split, GNU `././@LongLink`, or PAX
//!   extended headers). [`RawTar`] and [`RawHeader`] append arbitrary header
//!   blocks, PAX records and data for malformed archives (bad checksums,
//!   truncated data, PAX sizes disagreeing with the header, junk after the
//!   end marker, ...).
//! * [`compress()`]: gzip / zstd / identity compression of a tar.
//! * [`oci`]: an OCI image layout on disk ([`OciLayout`]) holding single
//!   images and multi-platform indexes, plus [`write_oci_archive`] (a tar of
//!   the layout, as skopeo's `oci-archive:` transport expects).
//! * [`docker`]: `docker save` archives ([`write_docker_archive`]).
//! * [`sample`]: [`sample_series`] writes a five-image "distribution update"
//!   series (base-v1, app-v1, base-v2, app-v2, app-v3) into one OCI layout.
//! * [`rng`]: the small seeded PRNG and content generators the sample uses.
//!
//! The `make-sample-series OUTDIR` binary writes the sample series to disk.
//!
//! ```
//! use layerstore_tests::{Compression, Entry, LayerBuilder, TarFormat, compress};
//!
//! let tar = LayerBuilder::new(TarFormat::Pax)
//!     .with_entries([
//!         Entry::dir("etc"),
//!         Entry::file("etc/hostname", "box\n").mtime(1_700_000_000),
//!         Entry::symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
//!         Entry::file(b"caf\xe9".as_slice(), "non-UTF-8 name"),
//!     ])
//!     .tar_bytes();
//! assert_eq!(tar.len() % 10240, 0);
//! let gz = compress(&tar, Compression::Gzip);
//! assert_eq!(&gz[..2], &[0x1f, 0x8b]);
//! ```

pub mod compress;
pub mod docker;
pub mod oci;
pub mod registry;
pub mod rng;
pub mod sample;
pub mod tar_refs;
pub mod tarbuild;

#[cfg(all(test, unix))]
mod external_tools;

pub use compress::{Compression, compress, decompress};
pub use docker::write_docker_archive;
pub use oci::{
    Descriptor, ImageSpec, Layer, OciLayout, WrittenImage, WrittenIndex, WrittenLayer,
    oci_architecture, write_oci_archive,
};
pub use sample::{SAMPLE_TAGS, sample_series};
pub use tar_refs::{
    GoEntry, GoListing, GoTar, RefRow, bsdtar_rows, explain_disagreement, gnu_tar_rows, go_rows,
    reference_readings,
};
pub use tarbuild::{Entry, EntryKind, Field, LayerBuilder, RawHeader, RawTar, TarFormat};

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// OCI digest string (`sha256:<hex>`) of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Marks the running test as skipped at run time (a tool it needs is absent, or an opt-in tier is
/// not enabled): prints `skipped: REASON` and, when `$LAYERSTORE_SKIP_LOG` names a file (as
/// `scripts/test` sets it), appends `TEST: REASON` there so the suite's summary counts the test as
/// skipped, not passed. The caller returns right after.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_owned();
    eprintln!("skipped: {reason}");
    if let Some(log) = std::env::var_os("LAYERSTORE_SKIP_LOG") {
        use std::io::Write;
        // O_APPEND writes of one short line are atomic, so parallel tests don't interleave.
        let line = format!("{test}: {reason}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("cannot record the skip in {}: {e}", log.to_string_lossy());
        }
    }
}
