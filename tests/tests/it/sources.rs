//! Opening and resolving image sources as a user names them: transports, platforms, files that
//! are not archives, sources that do not exist, and docker-archive names.

use std::path::Path;

use crate::common::*;
use layerstore_import::{Error, ImportOptions, Platform, Source, SourceSpec};
use layerstore_tests::{Compression, Entry, ImageSpec, Layer, LayerBuilder, TarFormat};

/// An error and all its causes, as the CLI prints it with `{:#}`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn image_for(architecture: &str, file: &str) -> ImageSpec {
    let tar = LayerBuilder::new(TarFormat::Pax)
        .with_entries([Entry::file(file, "x\n")])
        .tar_bytes();
    ImageSpec {
        architecture: architecture.into(),
        ..ImageSpec::new(vec![Layer::new(tar, Compression::Gzip)])
    }
}

#[test]
fn docker_sources_are_registry_references() {
    // Docker's defaults fill in the registry, the library/ namespace and the tag.
    let Ok(SourceSpec::Registry { reference }) = SourceSpec::parse("docker://debian:12") else {
        panic!("docker:// is a registry source");
    };
    assert_eq!(reference.to_string(), "docker.io/library/debian:12");
    // Nothing is fetched to know what is wrong with these.
    let e = Source::open("docker:").err().expect("refused");
    assert!(e.to_string().contains("docker://HOST"), "{e}");
    let e = Source::open("docker://").err().expect("refused");
    assert!(e.to_string().contains("invalid registry reference"), "{e}");
    let e = Source::open("ftp:x").err().expect("refused");
    assert!(e.to_string().contains("unknown transport"), "{e}");
}

#[test]
fn platform_that_does_not_match_a_single_manifest_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    layerstore_tests::OciLayout::create(&oci)
        .unwrap()
        .add_image("one", &image_for("amd64", "etc/a"))
        .unwrap();
    let store = new_store(tmp.path());
    let spec = format!("oci:{}:one", oci.display());
    let with = |p: &str| ImportOptions {
        platform: Some(Platform::parse(p).unwrap()),
        ..ImportOptions::default()
    };
    let e = layerstore_import::import(&store, &spec, &with("linux/arm64"))
        .expect_err("an amd64 image is not imported for linux/arm64");
    assert!(matches!(e, Error::PlatformMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("linux/amd64"),
        "names the image's platform: {msg}"
    );
    assert!(
        msg.contains("linux/arm64"),
        "names the platform asked for: {msg}"
    );
    assert!(store.images().unwrap().is_empty());
    // The platform it is for imports, and so does no platform at all (whatever the host).
    layerstore_import::import(&store, &spec, &with("linux/amd64")).unwrap();
    import(&store, &spec).unwrap();
    assert_sound(&store);
}

#[test]
fn a_file_that_is_not_an_archive_is_named_never_echoed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    // Shorter and longer than a tar block: the first bytes land in header fields either way.
    for len in [200, 4000] {
        let file = tmp.path().join(format!("passwd-{len}"));
        let mut text = String::new();
        while text.len() < len {
            text.push_str("root:x:0:0:SECRET-hash:/root:/bin/bash\n");
        }
        std::fs::write(&file, &text).unwrap();
        for transport in ["docker-archive", "oci-archive"] {
            let spec = format!("{transport}:{}", file.display());
            let e = import(&store, &spec).expect_err("not an archive");
            let msg = chain(&e);
            assert!(!msg.contains("SECRET"), "{spec}: echoes the file: {msg}");
            assert!(!msg.contains("root:x"), "{spec}: echoes the file: {msg}");
            assert!(msg.contains(&file.display().to_string()), "{spec}: {msg}");
            assert!(msg.contains("not a tar archive"), "{spec}: {msg}");
            assert!(
                msg.contains(transport),
                "says what {transport} reads: {msg}"
            );
        }
    }
}

#[test]
fn a_source_that_does_not_exist_fails_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    for transport in ["oci", "oci-archive", "docker-archive"] {
        let spec = format!("{transport}:{}", missing.display());
        let e = Source::open(&spec).err().expect("missing");
        assert!(matches!(e, Error::Io { .. }), "{spec}: {e:?}");
    }
    // A directory that is not a layout fails to open too, before any store is made for it.
    let e = Source::open(&format!("oci:{}", tmp.path().display()))
        .err()
        .expect("not a layout");
    assert!(e.to_string().contains("oci-layout"), "{e}");
}

fn docker_archive(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("images.docker.tar");
    layerstore_tests::write_docker_archive(
        &file,
        &[
            (
                "docker.io/library/debian:base-v2",
                &image_for("amd64", "etc/debian"),
            ),
            ("docker.io/library/app:latest", &image_for("amd64", "app")),
            ("quay.io/team/tool:1", &image_for("amd64", "tool")),
        ],
    )
    .unwrap();
    file
}

#[test]
fn docker_archive_accepts_the_short_names_skopeo_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let file = docker_archive(tmp.path());
    let store = new_store(tmp.path());
    for (name, file_in_image) in [
        ("debian:base-v2", "etc/debian"),
        ("library/debian:base-v2", "etc/debian"),
        ("docker.io/library/debian:base-v2", "etc/debian"),
        ("app", "app"),
        ("app:latest", "app"),
        ("quay.io/team/tool:1", "tool"),
    ] {
        let r = import(&store, &format!("docker-archive:{}:{name}", file.display()))
            .unwrap_or_else(|e| panic!("{name}: {}", chain(&e)));
        assert_eq!(r.name, name);
        let img = store.resolve_image(name).unwrap();
        let tree = store.merged_tree(&img).unwrap();
        assert!(
            tree.lookup(file_in_image.as_bytes()).is_some(),
            "{name} is the image holding {file_in_image}"
        );
    }
    assert_sound(&store);
}

#[test]
fn docker_archive_miss_lists_the_names_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let file = docker_archive(tmp.path());
    let store = new_store(tmp.path());
    for name in ["debian:base-v3", "team/tool:1"] {
        let e = import(&store, &format!("docker-archive:{}:{name}", file.display()))
            .expect_err("no such image");
        let msg = e.to_string();
        for held in [
            "docker.io/library/debian:base-v2",
            "docker.io/library/app:latest",
            "quay.io/team/tool:1",
        ] {
            assert!(msg.contains(held), "{name}: lists {held}: {msg}");
        }
    }
}
