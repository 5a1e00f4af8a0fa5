//! dedup-report figures, cross-checked against an independent computation on the fixture tars.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use crate::common::*;
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

/// An OCI layout `dir/series` of a base image and an app image on it, created in the same
/// second as a series built in one go is; returns the `oci:` spec (append `:TAG`).
fn same_second_series(dir: &std::path::Path) -> String {
    use layerstore_tests::{
        Compression, Entry, ImageSpec, Layer, LayerBuilder, OciLayout, TarFormat,
    };
    let layer = |files: &[(&str, &str)]| {
        let tar = LayerBuilder::new(TarFormat::Pax)
            .with_entries(files.iter().map(|(p, c)| Entry::file(*p, *c)))
            .tar_bytes();
        Layer::new(tar, Compression::Gzip)
    };
    let base = layer(&[("usr/bin/tool", "tool v1\n"), ("etc/os", "base\n")]);
    let app = layer(&[("app/main", "app\n")]);
    let base_v2 = layer(&[("usr/bin/tool", "tool v2\n"), ("etc/os", "base\n")]);
    let created = "2024-05-01T10:00:00Z";
    let oci = dir.join("series");
    let mut layout = OciLayout::create(&oci).unwrap();
    for (tag, layers) in [
        ("base-v1", vec![base.clone()]),
        ("app-v1", vec![base, app.clone()]),
        ("base-v2", vec![base_v2.clone()]),
        ("app-v2", vec![base_v2, app]),
    ] {
        layout
            .add_image(tag, &ImageSpec::new(layers).with_created(created))
            .unwrap();
    }
    format!("oci:{}", oci.display())
}

#[test]
fn dedup_series_breaks_ties_in_creation_time_by_import_order() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = same_second_series(tmp.path());
    let store = new_store(tmp.path());
    let order = ["base-v1", "app-v1", "base-v2", "app-v2"];
    for t in order {
        import(&store, &format!("{spec}:{t}")).unwrap();
    }
    // By name, app-v1 would come before base-v1 and the base would add nothing new.
    let series = layerstore_import::dedup::stored_series(&store).unwrap();
    assert_eq!(series, order);
    let report = analyze_stored(&store, &series).unwrap();
    let names: Vec<&str> = report.images.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, order);
    // The first image of the series adds all it holds.
    let first = &report.images[0];
    assert!(first.new_file_bytes > 0);
    assert_eq!(first.new_file_bytes, first.file_level.raw);
}

#[test]
fn a_second_name_for_a_manifest_is_the_same_image_in_dedup_report() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = same_second_series(tmp.path());
    let store = new_store(tmp.path());
    for t in ["base-v1", "app-v1"] {
        import(&store, &format!("{spec}:{t}")).unwrap();
    }
    let opts = layerstore_import::ImportOptions {
        tag: Some("base:latest".into()),
        ..Default::default()
    };
    layerstore_import::import(&store, &format!("{spec}:base-v1"), &opts).unwrap();
    let series = layerstore_import::dedup::stored_series(&store).unwrap();
    assert_eq!(series.len(), 3, "three names");
    for names in [
        series,
        vec!["base-v1".into(), "app-v1".into(), "base:latest".into()],
    ] {
        let report = analyze_stored(&store, &names).unwrap();
        assert_eq!(report.images.len(), 2, "two manifests: {names:?}");
        let base = &report.images[0];
        assert_eq!(base.names, ["base-v1", "base:latest"]);
        assert!(base.name.contains("base-v1") && base.name.contains("base:latest"));
        assert_eq!(
            report.total.logical_bytes,
            base.logical_bytes + report.images[1].logical_bytes
        );
    }
}

#[test]
fn shared_files_at_one_path_with_different_contents_are_told_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = same_second_series(tmp.path());
    let store = new_store(tmp.path());
    let names: Vec<String> = ["base-v1", "app-v1", "base-v2", "app-v2"]
        .iter()
        .map(|t| {
            import(&store, &format!("{spec}:{t}")).unwrap();
            t.to_string()
        })
        .collect();
    let report = analyze_stored(&store, &names).unwrap();
    let tools: Vec<_> = report
        .largest_shared
        .iter()
        .filter(|s| s.path == "/usr/bin/tool")
        .collect();
    assert_eq!(tools.len(), 2, "{:?}", report.largest_shared);
    assert_ne!(tools[0].short_object(), tools[1].short_object());
    assert!(tools[0].object.hex().starts_with(&tools[0].short_object()));
}
