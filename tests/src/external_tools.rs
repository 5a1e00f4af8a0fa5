//! Cross-checks of the fixtures against independent implementations:
//! GNU tar, umoci and skopeo. Each test prints `SKIP: ...` and passes when
//! its tool is not installed.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::sample::tests::{shared_series, shared_specs};
use crate::{
    Compression, Entry, ImageSpec, LayerBuilder, OciLayout, TarFormat, decompress,
    write_docker_archive, write_oci_archive,
};

/// Absolute path of `name` on `$PATH`, or `None` after printing a skip note.
fn require(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIP: `{name}` is not installed; external cross-check not run");
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("tool printed JSON")
}

/// GNU tar's default ("escape") quoting of a name in listings.
fn gnu_quote(name: &[u8]) -> String {
    let mut s = String::new();
    for &b in name {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x21..=0x7e | b' ' => s.push(b as char),
            _ => s.push_str(&format!("\\{b:03o}")),
        }
    }
    s
}

fn long(len: usize, tag: &str) -> Vec<u8> {
    let mut p = Vec::new();
    let mut i = 0;
    while p.len() < len {
        p.extend_from_slice(format!("{tag}{i:02}-{}/", "d".repeat(40)).as_bytes());
        i += 1;
    }
    p.truncate(len - 1);
    p.push(b'f');
    p
}

/// (entry, expected mode column of `tar -tv`, expected name suffix).
fn gnu_tar_cases(format: TarFormat) -> Vec<(Entry, &'static str, String)> {
    let mut cases = vec![
        (Entry::dir("etc"), "drwxr-xr-x", "etc/".to_owned()),
        (
            Entry::file("etc/shadow", "root:*:\n").mode(0o640).gid(42),
            "-rw-r----- 0/42",
            "etc/shadow".to_owned(),
        ),
        (
            Entry::file("usr/bin/passwd", vec![7u8; 3000]).mode(0o4755),
            "-rwsr-xr-x",
            "usr/bin/passwd".to_owned(),
        ),
        (
            Entry::dir("tmp").mode(0o1777),
            "drwxrwxrwt",
            "tmp/".to_owned(),
        ),
        (
            Entry::symlink("bin", "usr/bin"),
            "lrwxrwxrwx",
            "bin -> usr/bin".to_owned(),
        ),
        (
            Entry::hardlink("usr/bin/chpasswd", "usr/bin/passwd"),
            "hrw-r--r--",
            "usr/bin/chpasswd link to usr/bin/passwd".to_owned(),
        ),
        (
            Entry::fifo("run/initctl").mode(0o600),
            "prw-------",
            "run/initctl".to_owned(),
        ),
        (
            Entry::char_dev("dev/null", 1, 3).mode(0o666),
            "crw-rw-rw- 0/0 1,3",
            "dev/null".to_owned(),
        ),
        (
            Entry::block_dev("dev/sda", 8, 0).mode(0o660).gid(6),
            "brw-rw---- 0/6 8,0",
            "dev/sda".to_owned(),
        ),
        (
            Entry::file(b"caf\xe9/men\xfc.txt".as_slice(), "latin-1"),
            "-rw-r--r--",
            gnu_quote(b"caf\xe9/men\xfc.txt"),
        ),
        (
            Entry::file("home/user/f", "x").uid(1000).gid(1000),
            "-rw-r--r-- 1000/1000",
            "home/user/f".to_owned(),
        ),
        (
            Entry::file("usr/bin/ping", "ping")
                .mode(0o755)
                .xattr("user.comment", "hello")
                .mtime_nsec(123_456_789),
            "-rwxr-xr-x",
            "usr/bin/ping".to_owned(),
        ),
        (
            Entry::whiteout("usr/bin/curl"),
            "-rw-r--r--",
            "usr/bin/.wh.curl".to_owned(),
        ),
        (
            Entry::opaque("usr/share/doc"),
            "-rw-r--r--",
            "usr/share/doc/.wh..wh..opq".to_owned(),
        ),
    ];
    let split = long(200, "s");
    cases.push((
        Entry::file(&split, "ustar can split this"),
        "-rw-r--r--",
        String::from_utf8(split).unwrap(),
    ));
    if format != TarFormat::Ustar {
        let name = long(300, "n");
        let target = long(150, "t");
        cases.push((
            Entry::file(&name, "long"),
            "-rw-r--r--",
            String::from_utf8(name).unwrap(),
        ));
        cases.push((
            Entry::symlink("long-link", &target),
            "lrwxrwxrwx",
            format!("long-link -> {}", String::from_utf8(target).unwrap()),
        ));
        let mut base = b"x/".to_vec();
        base.extend(std::iter::repeat_n(b'b', 120));
        cases.push((
            Entry::file(&base, "long basename"),
            "-rw-r--r--",
            String::from_utf8(base).unwrap(),
        ));
    }
    cases
}

#[test]
fn gnu_tar_lists_our_archives() {
    let Some(tar) = require("tar") else { return };
    let version = run(Command::new(&tar).arg("--version"));
    if !String::from_utf8_lossy(&version.stdout).contains("GNU tar") {
        eprintln!("SKIP: `tar` is not GNU tar");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for format in [TarFormat::Ustar, TarFormat::Gnu, TarFormat::Pax] {
        let cases = gnu_tar_cases(format);
        let bytes = LayerBuilder::new(format)
            .with_entries(cases.iter().map(|(e, _, _)| e.clone()))
            .tar_bytes();
        let file = tmp.path().join(format!("{format:?}.tar"));
        fs::write(&file, &bytes).unwrap();
        let out = run(Command::new(&tar)
            .args(["--numeric-owner", "-tvf"])
            .arg(&file));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{format:?}: tar complained: {stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), cases.len(), "{format:?}:\n{stdout}");
        for ((_, mode, name), line) in cases.iter().zip(&lines) {
            let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                line.starts_with(mode) && line.ends_with(name.as_str()),
                "{format:?}: expected `{mode} ... {name}`, got `{line}`"
            );
        }
        // The archive extracts cleanly, long names and all.
        let dest = tmp.path().join(format!("x-{format:?}"));
        fs::create_dir(&dest).unwrap();
        run(Command::new(&tar)
            .args(["--no-same-owner", "-xf"])
            .arg(&file)
            .arg("-C")
            .arg(&dest)
            .args(["--exclude=dev/*"]));
        let latin1 = dest.join(OsStr::from_bytes(b"caf\xe9/men\xfc.txt"));
        assert_eq!(fs::read(latin1).unwrap(), b"latin-1");
        let passwd = fs::metadata(dest.join("usr/bin/passwd")).unwrap();
        let chpasswd = fs::metadata(dest.join("usr/bin/chpasswd")).unwrap();
        assert_eq!(passwd.ino(), chpasswd.ino(), "hardlink");
    }

    // The sample layers list completely too.
    let (dir, series) = shared_series();
    let layout = dir.path().join("layout");
    let app_v3 = &series[4].1;
    for layer in &app_v3.layers {
        let blob = fs::read(layout.join("blobs/sha256").join(&layer.blob_digest[7..])).unwrap();
        let c = match layer.media_type.rsplit('+').next() {
            Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            _ => Compression::None,
        };
        let plain = decompress(&blob, c).unwrap();
        let file = tmp.path().join("layer.tar");
        fs::write(&file, &plain).unwrap();
        let out = run(Command::new(&tar).arg("-tf").arg(&file));
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n = tar::Archive::new(&plain[..]).entries().unwrap().count();
        assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), n);
    }
}

fn unpack(umoci: &Path, image: &str, bundle: &Path) -> Output {
    Command::new(umoci)
        .args(["unpack", "--rootless", "--image", image])
        .arg(bundle)
        .output()
        .expect("run umoci")
}

#[test]
fn umoci_reads_sample_series() {
    let Some(umoci) = require("umoci") else {
        return;
    };
    let (dir, series) = shared_series();
    let layout = dir.path().join("layout");
    let out = run(Command::new(&umoci).args(["ls", "--layout"]).arg(&layout));
    let mut tags: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    tags.sort_unstable();
    let mut want: Vec<&str> = series.iter().map(|(t, _)| t.as_str()).collect();
    want.sort_unstable();
    assert_eq!(tags, want);

    let tmp = tempfile::tempdir().unwrap();
    let b1 = tmp.path().join("base-v1");
    let out = unpack(&umoci, &format!("{}:base-v1", layout.display()), &b1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root1 = b1.join("rootfs");
    let perl = fs::metadata(root1.join("usr/bin/perl")).unwrap();
    let perl5 = fs::metadata(root1.join("usr/bin/perl5.36.0")).unwrap();
    assert_eq!(perl.ino(), perl5.ino(), "hardlink pair");
    let passwd = fs::metadata(root1.join("usr/bin/passwd")).unwrap();
    assert_eq!(passwd.mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::metadata(root1.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert!(
        root1
            .join(OsStr::from_bytes(
                b"usr/share/doc/base-files/README.caf\xe9-latin1"
            ))
            .exists()
    );
    assert_eq!(
        fs::read_link(root1.join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/Etc/UTC")
    );

    // app-v3 has a zstd layer; umoci before 0.5 only knows gzip/plain tar.
    // In that case check the same layers recompressed with gzip.
    let b3 = tmp.path().join("app-v3");
    let mut out = unpack(&umoci, &format!("{}:app-v3", layout.display()), &b3);
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("tar+zstd") {
        eprintln!(
            "NOTE: this umoci cannot unpack zstd layers; checking app-v3 recompressed with gzip"
        );
        let gz_layout = tmp.path().join("gzip-layout");
        let mut l = OciLayout::create(&gz_layout).unwrap();
        let (_, spec) = &shared_specs()[4];
        let mut spec: ImageSpec = spec.clone();
        for layer in &mut spec.layers {
            if layer.compression == Compression::Zstd {
                layer.compression = Compression::Gzip;
            }
        }
        l.add_image("app-v3", &spec).unwrap();
        let _ = fs::remove_dir_all(&b3);
        out = unpack(&umoci, &format!("{}:app-v3", gz_layout.display()), &b3);
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root3 = b3.join("rootfs");
    assert!(!root3.join("usr/bin/curl").exists(), "whiteout applied");
    assert!(
        fs::symlink_metadata(root3.join("usr/lib/x86_64-linux-gnu/libcurl.so.4")).is_err(),
        "symlink whited out"
    );
    assert!(root3.join("usr/bin/python3.11").exists());
    assert!(root3.join(crate::sample::app_long_path()).exists());
    assert!(root3.join("etc/app/config.toml").exists());
    let docs: Vec<_> = fs::read_dir(root3.join("usr/share/doc"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(docs, ["README"], "opaque directory hides lower docs");
    // base-v2 content underneath: patched libssl differs, perl does not.
    let lib = "usr/lib/x86_64-linux-gnu/libssl.so.3";
    assert_ne!(
        fs::read(root1.join(lib)).unwrap(),
        fs::read(root3.join(lib)).unwrap()
    );
    assert_eq!(
        fs::read(root1.join("usr/bin/perl")).unwrap(),
        fs::read(root3.join("usr/bin/perl")).unwrap()
    );
}

#[test]
fn skopeo_accepts_layout_and_archives() {
    let Some(skopeo) = require("skopeo") else {
        return;
    };
    let (dir, series) = shared_series();
    let layout = dir.path().join("layout");
    let tmp = tempfile::tempdir().unwrap();

    let out = run(Command::new(&skopeo)
        .arg("inspect")
        .arg(format!("oci:{}:base-v1", layout.display())));
    let v = json_of(&out);
    let base1 = &series[0].1;
    assert_eq!(v["Digest"], base1.manifest_digest);
    assert_eq!(v["Layers"][0], base1.layers[0].blob_digest);
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Labels"]["org.opencontainers.image.version"], "12.1");

    // A copy re-verifies every blob digest on the way.
    run(Command::new(&skopeo)
        .args(["copy", "--quiet", "--insecure-policy"])
        .arg(format!("oci:{}:app-v3", layout.display()))
        .arg(format!("dir:{}", tmp.path().join("copied").display())));

    let archive = tmp.path().join("oci-archive.tar");
    write_oci_archive(&layout, &archive).unwrap();
    let v = json_of(&run(Command::new(&skopeo)
        .arg("inspect")
        .arg(format!("oci-archive:{}:app-v1", archive.display()))));
    assert_eq!(v["Digest"], series[1].1.manifest_digest);

    let specs = shared_specs();
    let single = tmp.path().join("docker-single.tar");
    write_docker_archive(&single, &[("sample/base:v1", &specs[0].1)]).unwrap();
    let v = json_of(&run(Command::new(&skopeo)
        .arg("inspect")
        .arg(format!("docker-archive:{}", single.display()))));
    assert_eq!(v["Layers"][0], base1.layers[0].diff_id);
    assert_eq!(v["Labels"]["org.opencontainers.image.title"], "sample-base");

    let multi = tmp.path().join("docker-multi.tar");
    write_docker_archive(
        &multi,
        &[
            ("sample/base:v1", &specs[0].1),
            ("sample/app:v1", &specs[1].1),
            ("sample/app:latest", &specs[1].1),
            ("sample/app:v3", &specs[4].1),
        ],
    )
    .unwrap();
    for tag in ["sample/app:v1", "sample/app:latest"] {
        let v = json_of(&run(Command::new(&skopeo)
            .arg("inspect")
            .arg(format!("docker-archive:{}:{tag}", multi.display()))));
        assert_eq!(v["Layers"][1], series[1].1.layers[1].diff_id, "{tag}");
    }
    // Copying out of the archive checks each layer.tar against its diff_id.
    run(Command::new(&skopeo)
        .args(["copy", "--quiet", "--insecure-policy"])
        .arg(format!("docker-archive:{}:sample/app:v3", multi.display()))
        .arg(format!(
            "oci:{}:app-v3",
            tmp.path().join("from-docker").display()
        )));
}
