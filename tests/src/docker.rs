//! `docker save` archives (the `docker-archive:` transport).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;

use serde_json::{Value, json};

use crate::oci::{ImageSpec, digest_hex};
use crate::sha256_hex;
use crate::tarbuild::{Entry, LayerBuilder, TarFormat};

/// Split `repo[:tag]` into repository and tag (default `latest`). A colon
/// inside the registry host part (`host:5000/app`) is not a tag separator.
pub fn split_repo_tag(reference: &str) -> (&str, &str) {
    match reference.rfind(':') {
        Some(i) if !reference[i + 1..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    }
}

/// Write a `docker save`-style archive holding `images` (`(repo:tag,
/// spec)`): `<layer hex>/layer.tar` (uncompressed, whatever the spec's
/// compression; each distinct layer once), `<config hex>.json`,
/// `manifest.json` (images with an identical config share one entry with
/// several `RepoTags`) and the legacy `repositories` file.
pub fn write_docker_archive(out_file: &Path, images: &[(&str, &ImageSpec)]) -> io::Result<()> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut manifest: Vec<Value> = Vec::new();
    let mut config_index: BTreeMap<String, usize> = BTreeMap::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();

    let mut add = |entries: &mut Vec<Entry>, e: Entry| {
        if seen.insert(e.path.clone()) {
            entries.push(e);
        }
    };

    for (reference, spec) in images {
        let (repo, tag) = split_repo_tag(reference);
        let repo_tag = format!("{repo}:{tag}");
        let diff_ids = spec.diff_ids();
        let mut layer_paths = Vec::new();
        for (layer, diff_id) in spec.layers.iter().zip(&diff_ids) {
            let hex = digest_hex(diff_id);
            add(&mut entries, Entry::dir(hex));
            add(
                &mut entries,
                Entry::file(format!("{hex}/layer.tar"), layer.tar.clone()),
            );
            layer_paths.push(format!("{hex}/layer.tar"));
        }
        let config = spec.config_json();
        let config_hex = sha256_hex(&config);
        let config_name = format!("{config_hex}.json");
        add(&mut entries, Entry::file(&config_name, config));
        if let Some(last) = diff_ids.last() {
            repositories
                .entry(repo.to_owned())
                .or_default()
                .insert(tag.to_owned(), digest_hex(last).to_owned());
        }
        match config_index.get(&config_hex) {
            Some(&i) => {
                let tags = manifest[i]["RepoTags"].as_array_mut().expect("array");
                if !tags.iter().any(|t| t == &json!(repo_tag)) {
                    tags.push(json!(repo_tag));
                }
            }
            None => {
                config_index.insert(config_hex, manifest.len());
                manifest.push(json!({
                    "Config": config_name,
                    "RepoTags": [repo_tag],
                    "Layers": layer_paths,
                }));
            }
        }
    }

    let manifest = serde_json::to_vec(&manifest).expect("JSON serialisation cannot fail");
    entries.push(Entry::file("manifest.json", manifest));
    let repositories = serde_json::to_vec(&repositories).expect("JSON serialisation cannot fail");
    entries.push(Entry::file("repositories", repositories));

    let tar = LayerBuilder::new(TarFormat::Pax)
        .with_entries(entries)
        .try_tar_bytes()?;
    fs::write(out_file, tar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compression, Layer, sha256_digest};
    use std::io::Read;

    #[test]
    fn repo_tag_split() {
        assert_eq!(split_repo_tag("app:v1"), ("app", "v1"));
        assert_eq!(split_repo_tag("app"), ("app", "latest"));
        assert_eq!(split_repo_tag("host:5000/app"), ("host:5000/app", "latest"));
        assert_eq!(split_repo_tag("host:5000/app:x"), ("host:5000/app", "x"));
    }

    #[test]
    fn docker_archive_layout() {
        let base = LayerBuilder::new(TarFormat::Gnu)
            .with_entries([Entry::file("etc/os-release", "ID=test\n")])
            .tar_bytes();
        let top = LayerBuilder::new(TarFormat::Gnu)
            .with_entries([Entry::file("app", "bin")])
            .tar_bytes();
        let a = ImageSpec::new(vec![Layer::new(base.clone(), Compression::Gzip)]);
        let b = ImageSpec::new(vec![
            Layer::new(base.clone(), Compression::Gzip),
            Layer::new(top.clone(), Compression::Zstd),
        ]);
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("d.tar");
        write_docker_archive(&out, &[("base:v1", &a), ("app:v1", &b), ("app:latest", &b)]).unwrap();
        let bytes = fs::read(&out).unwrap();
        let mut files = BTreeMap::new();
        for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            assert!(files.insert(name, data).is_none(), "duplicate entry");
        }
        let base_hex = sha256_hex(&base);
        assert_eq!(
            files[&format!("{base_hex}/layer.tar")],
            base,
            "uncompressed"
        );
        let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        let m = manifest.as_array().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1]["RepoTags"], json!(["app:v1", "app:latest"]));
        assert_eq!(m[1]["Layers"][0], format!("{base_hex}/layer.tar"));
        let cfg_name = m[1]["Config"].as_str().unwrap();
        let cfg = &files[cfg_name];
        assert_eq!(format!("{}.json", sha256_hex(cfg)), cfg_name);
        let cfg: Value = serde_json::from_slice(cfg).unwrap();
        assert_eq!(cfg["rootfs"]["diff_ids"][1], sha256_digest(&top));
        let repos: Value = serde_json::from_slice(&files["repositories"]).unwrap();
        assert_eq!(repos["app"]["v1"], sha256_hex(&top));
        assert_eq!(repos["base"]["v1"], base_hex);
    }
}
