//! Criterion microbenchmarks of the import primitives, each beside a raw baseline that does the
//! same work on the same buffer:
//!
//! | group | ours | baseline |
//! | --- | --- | --- |
//! | `tar_parse` | `TarParser` (strict walk, skeleton kept) | `tar::Archive::entries()` |
//! | `inflate` | — (the pipeline's inflater is private; see `layer_pipeline`) | `flate2` / `zstd` decoders |
//! | `layer_pipeline` | `import_layer` (sha256 ×2, inflate, parse, blake3, objects) | the same steps in sequence with plain crates, no object writes |
//! | `blake3` | `ObjectId::of` | `blake3::hash`, `memcpy` |
//! | `sha256` | `Digest::of`, `DigestHasher` | `sha2::Sha256` |
//! | `object_write` | `Staging::put_bytes` (new, dedup hit) | `std::fs::write`, blake3 + stat |
//! | `object_write_zstd` | `put_bytes` into a `--compress` store | `zstd::bulk::compress`, + `fs::write` |
//! | `index_insert` | `Store::publish` of one layer into a fresh store | as many generic rows in one SQLite transaction (not the store's schema) |
//!
//! Inputs come from the `layerstore-tests` sample series (the ~4 MiB base layer) so they look like
//! a distribution tree. Files are written under `$LAYERSTORE_BENCH_TMP`, else `/dev/shm` (tmpfs,
//! so the numbers are CPU and syscalls, not the disk), else the system temp dir.
//! Every group reports `Throughput::Bytes` of the uncompressed input.

use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use layerstore_import::layer::{LayerInput, LayerProgress, import_layer, media_type_compression};
use layerstore_import::tarparse::{TarKind, TarLimits, TarParser};
use layerstore_store::{
    Digest, DigestHasher, ImageLayer, ImageRecord, LayerRecord, Limits, ObjectId, Store,
    StoreOptions,
};
use layerstore_tests::rng::{self, Rng};
use layerstore_tests::{Compression as Layer, Entry, LayerBuilder, TarFormat, compress};
use sha2::Digest as _;

/// Where temp stores and files go.
fn bench_root() -> PathBuf {
    if let Some(d) = std::env::var_os("LAYERSTORE_BENCH_TMP") {
        return d.into();
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.into()
    } else {
        std::env::temp_dir()
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("layerstore-bench-")
        .tempdir_in(bench_root())
        .expect("the bench temp dir is writable")
}

/// Total time of `iters` runs of `timed`, each on a fresh store made outside the timing.
fn in_fresh_stores(iters: u64, mut timed: impl FnMut(&Store) -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = temp_dir();
        let store =
            Store::init(&dir.path().join("s"), &StoreOptions::default()).expect("store init");
        total += timed(&store);
    }
    total
}

/// A group with a short run: the whole suite stays within a few minutes on a 2-core machine.
fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

fn base_tar() -> Vec<u8> {
    layerstore_tests::sample::base_layer(1)
}

fn kib(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}MiB", n >> 20)
    } else {
        format!("{}KiB", n >> 10)
    }
}

// ---------------------------------------------------------------------------------------------
// tar parse

const TAR_LIMITS: TarLimits = TarLimits {
    max_record: 1 << 20,
    max_raw_data: 1 << 20,
    raw_trailer: 1 << 20,
};

/// Our walker as the pipeline drives it: every entry, regular contents read whole into `buf`.
fn walk_ours(tar: &[u8], buf: &mut Vec<u8>) -> u64 {
    let dummy = ObjectId::from_slice(&[0u8; 32]).expect("32 bytes");
    let mut p = TarParser::new(tar, TAR_LIMITS);
    let mut total = 0;
    while let Some(e) = p.next_entry().expect("the sample layer parses") {
        total += e.path.len() as u64;
        if e.kind == TarKind::Regular {
            buf.resize(e.size as usize, 0);
            let mut filled = 0;
            while filled < buf.len() {
                let n = p.read_content(&mut buf[filled..]).expect("content reads");
                assert!(n > 0, "content ends early");
                filled += n;
            }
            p.content_done(e.size, dummy);
            total += e.size;
        }
    }
    total
}

/// `tar::Archive::entries()`, decoding the same fields and reading every regular content.
fn walk_tar_crate(tar: &[u8], buf: &mut Vec<u8>) -> u64 {
    let mut ar = tar::Archive::new(tar);
    let mut total = 0;
    for e in ar.entries().expect("the sample layer parses") {
        let mut e = e.expect("entry parses");
        total += e.path_bytes().len() as u64;
        let h = e.header();
        let fields = (h.mode(), h.uid(), h.gid(), h.mtime());
        black_box((
            fields.0.expect("mode"),
            fields.1.expect("uid"),
            fields.2.expect("gid"),
            fields.3.expect("mtime"),
            e.link_name_bytes(),
        ));
        if let Some(x) = e.pax_extensions().expect("pax parses") {
            for r in x {
                black_box(r.expect("pax record parses").key_bytes());
            }
        }
        if e.header().entry_type().is_file() {
            buf.clear();
            e.read_to_end(buf).expect("content reads");
            total += buf.len() as u64;
        }
    }
    total
}

fn tar_parse(c: &mut Criterion) {
    let tar = base_tar();
    let mut buf = Vec::new();
    assert_eq!(walk_ours(&tar, &mut buf), walk_tar_crate(&tar, &mut buf));
    let mut g = group(c, "tar_parse");
    g.throughput(Throughput::Bytes(tar.len() as u64));
    g.bench_function("ours_TarParser", |b| {
        b.iter(|| walk_ours(black_box(&tar), &mut buf))
    });
    g.bench_function("tar_Archive_entries", |b| {
        b.iter(|| walk_tar_crate(black_box(&tar), &mut buf))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// inflate

/// Read `r` to its end through a 256 KiB buffer (the pipeline's chunk size).
fn drain(mut r: impl Read, buf: &mut [u8]) -> u64 {
    let mut n = 0;
    loop {
        match r.read(buf).expect("the blob inflates") {
            0 => return n,
            k => n += k as u64,
        }
    }
}

fn inflate(c: &mut Criterion) {
    let tar = base_tar();
    let gz = compress(&tar, Layer::Gzip);
    let zst = compress(&tar, Layer::Zstd);
    let mut buf = vec![0u8; 256 << 10];
    let mut g = group(c, "inflate");
    g.throughput(Throughput::Bytes(tar.len() as u64));
    g.bench_function("gzip/flate2_read_GzDecoder", |b| {
        b.iter(|| drain(flate2::read::GzDecoder::new(black_box(&gz[..])), &mut buf))
    });
    g.bench_function("gzip/flate2_bufread_MultiGzDecoder", |b| {
        b.iter(|| {
            let r = std::io::BufReader::with_capacity(256 << 10, black_box(&gz[..]));
            drain(flate2::bufread::MultiGzDecoder::new(r), &mut buf)
        })
    });
    g.bench_function("zstd/zstd_stream_Decoder", |b| {
        b.iter(|| {
            let d = zstd::stream::Decoder::new(black_box(&zst[..])).expect("zstd decoder");
            drain(d, &mut buf)
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// whole layer pipeline

struct Quiet;
impl LayerProgress for Quiet {
    fn read(&self, _index: usize, _n: u64) {}
}

struct Blob {
    kind: Layer,
    bytes: Vec<u8>,
    input: LayerInput,
}

fn blob(tar: &[u8], kind: Layer) -> Blob {
    let bytes = compress(tar, kind);
    let input = LayerInput {
        index: 0,
        blob_digest: Digest::of(&bytes),
        blob_size: bytes.len() as u64,
        media_type: kind.oci_media_type().to_string(),
        expected_diff_id: Digest::of(tar),
    };
    assert!(media_type_compression(&input.media_type).is_some());
    Blob { kind, bytes, input }
}

fn run_import(staging: &layerstore_store::Staging<'_>, b: &Blob) -> LayerRecord {
    let (record, _stats) = import_layer(
        &b.input,
        Box::new(&b.bytes[..]),
        staging,
        &Limits::default(),
        &Quiet,
    )
    .expect("the sample layer imports");
    record
}

/// The pipeline's steps one after another with plain crates, nothing written: sha256 of the blob,
/// inflate, sha256 of the tar, walk the tar, blake3 every regular content.
fn raw_chain(b: &Blob, buf: &mut Vec<u8>) -> u64 {
    let blob_sha = sha2::Sha256::digest(&b.bytes);
    let mut tar = Vec::with_capacity(8 << 20);
    match b.kind {
        Layer::None => tar.extend_from_slice(&b.bytes),
        Layer::Gzip => {
            flate2::read::GzDecoder::new(&b.bytes[..])
                .read_to_end(&mut tar)
                .expect("inflates");
        }
        Layer::Zstd => {
            zstd::stream::Decoder::new(&b.bytes[..])
                .expect("zstd decoder")
                .read_to_end(&mut tar)
                .expect("inflates");
        }
    }
    let tar_sha = sha2::Sha256::digest(&tar);
    black_box((blob_sha, tar_sha));
    let mut ar = tar::Archive::new(&tar[..]);
    let mut n = 0;
    for e in ar.entries().expect("parses") {
        let mut e = e.expect("entry parses");
        black_box(e.path_bytes());
        if e.header().entry_type().is_file() {
            buf.clear();
            e.read_to_end(buf).expect("content reads");
            black_box(blake3::hash(buf));
            n += buf.len() as u64;
        }
    }
    n
}

fn layer_pipeline(c: &mut Criterion) {
    let tar = base_tar();
    let mut g = group(c, "layer_pipeline");
    g.throughput(Throughput::Bytes(tar.len() as u64));
    let mut buf = Vec::new();
    for kind in [Layer::None, Layer::Gzip, Layer::Zstd] {
        let b = blob(&tar, kind);
        // A first import: a fresh store per iteration (made outside the timing), every loose
        // object written.
        g.bench_function(
            BenchmarkId::new("ours_import_layer_new_store", kind.name()),
            |bn| {
                bn.iter_custom(|iters| {
                    in_fresh_stores(iters, |store| {
                        let staging = store.staging("bench").expect("staging");
                        let t = Instant::now();
                        black_box(run_import(&staging, &b));
                        t.elapsed()
                    })
                })
            },
        );
        // A re-import: every loose object exists, so each is a stat (a dedup hit).
        let dir = temp_dir();
        let store =
            Store::init(&dir.path().join("s"), &StoreOptions::default()).expect("store init");
        let staging = store.staging("bench").expect("staging");
        run_import(&staging, &b);
        g.bench_function(
            BenchmarkId::new("ours_import_layer_dedup", kind.name()),
            |bn| bn.iter(|| run_import(&staging, &b)),
        );
        g.bench_function(BenchmarkId::new("raw_chain_no_writes", kind.name()), |bn| {
            bn.iter(|| raw_chain(&b, &mut buf))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// hashes

fn hash_inputs() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(7);
    vec![rng::binary(&mut rng, 16 << 10), base_tar()]
}

fn blake3_group(c: &mut Criterion) {
    let mut g = group(c, "blake3");
    for input in hash_inputs() {
        let size = if input.len() == 16 << 10 {
            kib(input.len())
        } else {
            "base_layer_tar".to_string()
        };
        let mut dst = vec![0u8; input.len()];
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(BenchmarkId::new("ours_ObjectId_of", &size), |b| {
            b.iter(|| ObjectId::of(black_box(&input)))
        });
        g.bench_function(BenchmarkId::new("blake3_hash", &size), |b| {
            b.iter(|| blake3::hash(black_box(&input)))
        });
        g.bench_function(BenchmarkId::new("memcpy", &size), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&input));
                black_box(&dst);
            })
        });
    }
    g.finish();
}

fn sha256_group(c: &mut Criterion) {
    let mut g = group(c, "sha256");
    for input in hash_inputs() {
        let size = if input.len() == 16 << 10 {
            kib(input.len())
        } else {
            "base_layer_tar".to_string()
        };
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(BenchmarkId::new("ours_Digest_of", &size), |b| {
            b.iter(|| Digest::of(black_box(&input)))
        });
        // As the pipeline feeds it: 256 KiB chunks.
        g.bench_function(
            BenchmarkId::new("ours_DigestHasher_256KiB_chunks", &size),
            |b| {
                b.iter(|| {
                    let mut h = DigestHasher::default();
                    for chunk in black_box(&input).chunks(256 << 10) {
                        h.update(chunk);
                    }
                    h.finish()
                })
            },
        );
        g.bench_function(BenchmarkId::new("sha2_Sha256_digest", &size), |b| {
            b.iter(|| sha2::Sha256::digest(black_box(&input)))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// object writes

/// Content that compresses about like a binary (2-3x).
fn object_content(len: usize) -> Vec<u8> {
    rng::binary(&mut Rng::new(len as u64), len)
}

/// Make `content` distinct from every earlier call.
fn bump(content: &mut [u8], n: &mut u64) {
    *n += 1;
    content[..8].copy_from_slice(&n.to_le_bytes());
}

/// Put the staging file of a just written object in place (the staging flush), then remove it,
/// so the next put of new content writes again.
fn remove_object(store: &Store, staging: &layerstore_store::Staging<'_>, id: &ObjectId) {
    staging.flush().expect("flush");
    std::fs::remove_file(store.object_path(id)).expect("rm object");
}

fn object_write(c: &mut Criterion) {
    let mut g = group(c, "object_write");
    let dir = temp_dir();
    let store = Store::init(&dir.path().join("s"), &StoreOptions::default()).expect("store init");
    let staging = store.staging("bench").expect("staging");
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir(&raw_dir).expect("mkdir");
    let mut counter = 0u64;
    for len in [16 << 10, 1 << 20] {
        let size = kib(len);
        let mut content = object_content(len);
        g.throughput(Throughput::Bytes(len as u64));
        // New content each time: the write of its staging file. Outside the timing, the
        // staging flush (which an import does once per `FLUSH_AT` objects) puts the file in
        // place, and it is removed.
        g.bench_function(BenchmarkId::new("ours_put_bytes_new", &size), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    bump(&mut content, &mut counter);
                    let t = Instant::now();
                    let (obj, _) = staging.put_bytes(black_box(&content)).expect("put");
                    total += t.elapsed();
                    remove_object(&store, &staging, &obj.id);
                }
                total
            })
        });
        bump(&mut content, &mut counter);
        staging.put_bytes(&content).expect("put");
        // In place, so the puts below find it.
        staging.flush().expect("flush");
        g.bench_function(BenchmarkId::new("ours_put_bytes_dedup_hit", &size), |b| {
            b.iter(|| staging.put_bytes(black_box(&content)).expect("put"))
        });
        let path = raw_dir.join("f");
        g.bench_function(BenchmarkId::new("std_fs_write_new_file", &size), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    bump(&mut content, &mut counter);
                    let t = Instant::now();
                    std::fs::write(&path, black_box(&content)).expect("write");
                    total += t.elapsed();
                    std::fs::remove_file(&path).expect("rm");
                }
                total
            })
        });
        // What a dedup hit cannot avoid: hash the content, look the name up.
        let existing = raw_dir.join("existing");
        std::fs::write(&existing, &content).expect("write");
        g.bench_function(BenchmarkId::new("blake3_and_stat", &size), |b| {
            b.iter(|| {
                black_box(blake3::hash(black_box(&content)));
                std::fs::metadata(&existing).expect("stat").len()
            })
        });
    }
    g.finish();
}

fn object_write_zstd(c: &mut Criterion) {
    let mut g = group(c, "object_write_zstd");
    let dir = temp_dir();
    let opts = StoreOptions {
        compression: Some(layerstore_store::ObjectCompression::default()),
        ..StoreOptions::default()
    };
    let level = layerstore_store::ObjectCompression::default().level;
    let store = Store::init(&dir.path().join("s"), &opts).expect("store init");
    let staging = store.staging("bench").expect("staging");
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir(&raw_dir).expect("mkdir");
    let mut counter = 0u64;
    for len in [16 << 10, 1 << 20] {
        let size = kib(len);
        let mut content = object_content(len);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(
            BenchmarkId::new("ours_put_bytes_new_compressed", &size),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        bump(&mut content, &mut counter);
                        let t = Instant::now();
                        let (obj, _) = staging.put_bytes(black_box(&content)).expect("put");
                        total += t.elapsed();
                        assert!(obj.zstd, "the sample content compresses");
                        remove_object(&store, &staging, &obj.id);
                    }
                    total
                })
            },
        );
        g.bench_function(BenchmarkId::new("zstd_bulk_compress", &size), |b| {
            b.iter(|| zstd::bulk::compress(black_box(&content), level).expect("zstd"))
        });
        let path = raw_dir.join("f");
        g.bench_function(
            BenchmarkId::new("zstd_bulk_compress_and_fs_write", &size),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        bump(&mut content, &mut counter);
                        let t = Instant::now();
                        let z = zstd::bulk::compress(black_box(&content), level).expect("zstd");
                        std::fs::write(&path, &z).expect("write");
                        total += t.elapsed();
                        std::fs::remove_file(&path).expect("rm");
                    }
                    total
                })
            },
        );
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// index insert

/// A layer of `files` small distinct files in 100 directories, like a package-heavy layer.
fn many_files_tar(files: usize) -> Vec<u8> {
    let mut rng = Rng::new(11);
    let mut entries: Vec<Entry> = (0..100).map(|d| Entry::dir(format!("d{d}"))).collect();
    entries.extend((0..files).map(|f| {
        let size = rng.range(64, 2048) as usize;
        let mut data = format!("file {f}\n").into_bytes();
        data.resize(size, b'a' + (f % 26) as u8);
        Entry::file(format!("d{}/f{f}", f % 100), data).mtime(1_700_000_000)
    }));
    LayerBuilder::new(TarFormat::Pax)
        .with_entries(entries)
        .tar_bytes()
}

/// The layer record an import of `tar` produces (imported once, into a throwaway store).
fn record_of(tar: &[u8]) -> LayerRecord {
    let dir = temp_dir();
    let store = Store::init(&dir.path().join("s"), &StoreOptions::default()).expect("store init");
    let staging = store.staging("bench").expect("staging");
    run_import(&staging, &blob(tar, Layer::None))
}

fn image_for(record: &LayerRecord) -> ImageRecord {
    ImageRecord {
        manifest_digest: Digest::of(b"bench manifest"),
        manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        manifest: b"{}".to_vec(),
        config_digest: Digest::of(b"bench config"),
        config: b"{}".to_vec(),
        created: None,
        origin: None,
        layers: vec![ImageLayer {
            diff_id: record.diff_id,
            blob_digest: record.diff_id,
            media_type: Layer::None.oci_media_type().into(),
            blob_size: record.tar_size,
        }],
    }
}

/// The baseline's one table. Deliberately not the store's schema: a generic key/value table with
/// no index but its rowid, so the baseline is what SQLite itself costs for the rows and bytes of a
/// publish, and the gap to `Store::publish` is what the store's schema and durability add.
const BASELINE_TABLE: &str = "CREATE TABLE generic_rows (key BLOB NOT NULL, value BLOB)";

/// An empty baseline database: WAL with `synchronous=NORMAL`, the usual setup for an index that
/// one process writes.
fn baseline_db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open the baseline db");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("pragma");
    conn.pragma_update(None, "synchronous", "NORMAL")
        .expect("pragma");
    conn.execute_batch(BASELINE_TABLE).expect("baseline table");
    conn
}

/// The generic rows standing for one layer's publish: one per new object (its id, and its
/// content when inline), one per tree entry (its path) and one for the layer (its skeleton), so
/// the baseline writes as many rows, and about as many bytes, as the publish does.
fn baseline_rows(r: &LayerRecord) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let objects = r
        .objects
        .iter()
        .map(|o| (o.id.as_bytes().to_vec(), o.inline.clone()));
    let entries = r.entries.iter().map(|e| (e.path.clone(), None));
    let layer = std::iter::once((r.diff_id.to_string().into_bytes(), Some(r.skeleton.clone())));
    objects.chain(entries).chain(layer).collect()
}

/// Insert `rows` in one transaction with one prepared statement.
fn baseline_insert(conn: &mut rusqlite::Connection, rows: &[(Vec<u8>, Option<Vec<u8>>)]) {
    let tx = conn.transaction().expect("tx");
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO generic_rows (key, value) VALUES (?1, ?2)")
            .expect("prepare");
        for (key, value) in rows {
            insert.execute((key, value)).expect("insert a row");
        }
    }
    tx.commit().expect("commit");
}

fn index_insert(c: &mut Criterion) {
    let mut g = group(c, "index_insert");
    let layers = [
        ("base_layer", base_tar()),
        ("10k_small_files", many_files_tar(10_000)),
    ];
    for (name, tar) in &layers {
        let record = record_of(tar);
        let image = image_for(&record);
        // One id for both sides, so criterion reports them as the same input.
        let id = format!(
            "{name}_{}_entries_{}_objects",
            record.entries.len(),
            record.objects.len()
        );
        g.throughput(Throughput::Bytes(tar.len() as u64));
        // Into a fresh store each time (made outside the timing): lease row, objects, layer,
        // entries, image rows, syncfs, lease end.
        g.bench_function(BenchmarkId::new("ours_Store_publish", &id), |b| {
            b.iter_custom(|iters| {
                in_fresh_stores(iters, |store| {
                    let lease = store.begin_lease("bench").expect("lease");
                    let t = Instant::now();
                    store
                        .publish(lease, std::slice::from_ref(&record), &image, &[])
                        .expect("publish");
                    t.elapsed()
                })
            })
        });
        // The baseline: the same number of rows, in a generic table (see `BASELINE_TABLE`).
        let rows = baseline_rows(&record);
        g.bench_function(BenchmarkId::new("baseline_sqlite_generic_rows", &id), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = temp_dir();
                    let mut conn = baseline_db(&dir.path().join("baseline.sqlite"));
                    let t = Instant::now();
                    baseline_insert(&mut conn, &rows);
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    tar_parse,
    inflate,
    layer_pipeline,
    blake3_group,
    sha256_group,
    object_write,
    object_write_zstd,
    index_insert
);
criterion_main!(benches);
