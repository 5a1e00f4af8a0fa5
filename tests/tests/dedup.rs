//! dedup-report figures, cross-checked against an independent computation on the fixture tars.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Read;

use common::*;
use layerstore_import::dedup::{DedupReport, analyze_sources, analyze_stored};
use layerstore_import::resolve::Platform;
use layerstore_store::Limits;
use layerstore_tests::{SAMPLE_TAGS, sample, sample_series};

/// (logical bytes, files, distinct contents) of a list of layer tars, read with the tar crate.
fn files(tars: &[&Vec<u8>]) -> (u64, u64, HashMap<blake3::Hash, Vec<u8>>) {
    let (mut logical, mut n, mut distinct) = (0, 0, HashMap::new());
    for t in tars {
        let mut a = tar::Archive::new(&t[..]);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path_bytes().into_owned();
            if !e.header().entry_type().is_file()
                || name
                    .rsplit(|&b| b == b'/')
                    .next()
                    .unwrap()
                    .starts_with(b".wh.")
            {
                continue;
            }
            let mut buf = Vec::new();
            e.read_to_end(&mut buf).unwrap();
            logical += buf.len() as u64;
            n += 1;
            distinct.insert(blake3::hash(&buf), buf);
        }
    }
    (logical, n, distinct)
}

fn cdc(contents: &HashMap<blake3::Hash, Vec<u8>>, avg: usize) -> (u64, u64) {
    let mut chunks: HashMap<blake3::Hash, (u64, u64)> = HashMap::new();
    for data in contents.values() {
        for c in fastcdc::v2020::FastCDC::new(data, avg / 4, avg, avg * 4) {
            let b = &data[c.offset..c.offset + c.length];
            let z = zstd::bulk::compress(b, 3).unwrap().len() as u64;
            chunks.insert(blake3::hash(b), (b.len() as u64, z.min(b.len() as u64)));
        }
    }
    chunks
        .values()
        .fold((0, 0), |(r, z), (a, b)| (r + a, z + b))
}

#[test]
fn figures_match_an_independent_count() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("sample");
    sample_series(&oci).unwrap();
    let store = new_store(tmp.path());
    for t in SAMPLE_TAGS {
        import(&store, &format!("oci:{}:{t}", oci.display())).unwrap();
    }
    let names: Vec<String> = SAMPLE_TAGS.iter().map(|s| s.to_string()).collect();
    let stored = analyze_stored(&store, &names).unwrap();

    let specs = sample::sample_specs();
    let mut seen: HashSet<blake3::Hash> = HashSet::new();
    let mut all: HashMap<blake3::Hash, Vec<u8>> = HashMap::new();
    for (f, (name, spec)) in stored.images.iter().zip(&specs) {
        assert_eq!(&f.name, name);
        let tars: Vec<&Vec<u8>> = spec.layers.iter().map(|l| &l.tar).collect();
        let (logical, n, distinct) = files(&tars);
        assert_eq!(f.logical_bytes, logical, "{name}");
        assert_eq!(f.files, n, "{name}");
        assert_eq!(
            f.file_level.raw,
            distinct.values().map(|d| d.len() as u64).sum::<u64>(),
            "{name}"
        );
        assert_eq!(f.distinct_files, distinct.len() as u64, "{name}");
        let zstd: u64 = distinct
            .values()
            .map(|d| (zstd::bulk::compress(d, 3).unwrap().len()).min(d.len()) as u64)
            .sum();
        assert_eq!(f.file_level.zstd, zstd, "{name}");
        let layers: HashSet<&Vec<u8>> = tars.iter().copied().collect();
        assert_eq!(
            f.layer_level,
            layers.iter().map(|t| t.len() as u64).sum::<u64>(),
            "{name}"
        );
        let new: u64 = distinct
            .iter()
            .filter(|(h, _)| !seen.contains(*h))
            .map(|(_, d)| d.len() as u64)
            .sum();
        assert_eq!(f.new_file_bytes, new, "{name}");
        assert_eq!(
            (f.cdc_16k.raw, f.cdc_16k.zstd),
            cdc(&distinct, 16 * 1024),
            "{name}"
        );
        seen.extend(distinct.keys().copied());
        all.extend(distinct);
    }
    assert_eq!(
        stored.total.file_level.raw,
        all.values().map(|d| d.len() as u64).sum::<u64>()
    );
    assert_eq!(
        (stored.total.cdc_64k.raw, stored.total.cdc_64k.zstd),
        cdc(&all, 64 * 1024)
    );
    assert_eq!(
        stored.total.file_level.raw,
        store.df().unwrap().object_bytes,
        "the store holds the file-level figure"
    );
    assert!(
        stored
            .largest_shared
            .windows(2)
            .all(|w| w[0].size >= w[1].size)
    );

    // The same figures without importing.
    let sources: Vec<String> = SAMPLE_TAGS
        .iter()
        .map(|t| format!("oci:{}:{t}", oci.display()))
        .collect();
    let streamed = analyze_sources(&sources, &Platform::host(), &Limits::default()).unwrap();
    let key = |r: &DedupReport| {
        serde_json::to_value(r.images.iter().chain([&r.total]).collect::<Vec<_>>()).unwrap()
    };
    assert_eq!(key(&stored), key(&streamed));
}
