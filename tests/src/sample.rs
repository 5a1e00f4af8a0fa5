//! A deterministic five-image "distribution update" series.
//!
//! | tag       | layers                                   | format / compression |
//! |-----------|------------------------------------------|----------------------|
//! | `base-v1` | base v1                                  | PAX / gzip           |
//! | `app-v1`  | base v1, app v1                          | GNU / zstd           |
//! | `base-v2` | base v2                                  | PAX / gzip           |
//! | `app-v2`  | base v2, app v2                          | GNU / zstd           |
//! | `app-v3`  | base v2, app v2, cleanup (whiteouts)     | ustar / none         |
//!
//! The base layer is a Debian-like tree of ~380 regular files, ~30 symlinks
//! and ~115 directories (about 3.5 MiB of tar): tiny config files, docs, dpkg
//! metadata, a few dozen small executables, shared libraries with soname
//! symlinks and six 100-400 KiB "binaries" whose content compresses (about
//! 2.3x with gzip) but not trivially. It also holds the
//! awkward cases: setuid/setgid files, a sticky `/tmp`, a hardlink pair
//! (`usr/bin/perl` / `usr/bin/perl5.36.0`), a `security.capability` xattr on
//! `usr/bin/ping`, a fifo (`run/initctl`), a char device (`dev/null`), a
//! non-UTF-8 file name, absolute and relative symlinks, non-root owners and
//! a basename longer than 100 bytes (PAX `path`).
//!
//! Base v2 is a point release: every mtime changes, ~5% of the files change
//! content (patched libc/libssl/libcrypto/libgnutls, base-files version
//! files, changelogs, dpkg metadata), one file is added and one removed.
//! The app layer adds python-like files, `usr/bin/curl`, libraries, CA
//! certificates and a path over 255 bytes (GNU `L`/`K` records); v2 rebuilds
//! it on base v2 with curl and one python module patched. The app-v3 layer
//! whites out `usr/bin/curl` and libcurl, makes `usr/share/doc` opaque and
//! re-adds a single README there.
//!
//! The tree always uses `x86_64-linux-gnu` paths and the images declare
//! `amd64`, so the output is byte-identical on every machine.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crate::compress::{Compression, compress};
use crate::oci::{ImageSpec, Layer, OciLayout, WrittenImage};
use crate::rng::{self, Rng};
use crate::sha256_hex;
use crate::tarbuild::{Entry, EntryKind, LayerBuilder, TarFormat};

/// Tags written by [`sample_series`], in order.
pub const SAMPLE_TAGS: [&str; 5] = ["base-v1", "app-v1", "base-v2", "app-v2", "app-v3"];

/// Multiarch directory used in the sample tree.
pub const MULTIARCH: &str = "x86_64-linux-gnu";

/// Architecture the sample images declare.
pub const SAMPLE_ARCH: &str = "amd64";

/// mtime of every entry in base v1.
pub const T_BASE_V1: u64 = 1_689_580_800; // 2023-07-17
/// mtime of every entry in app v1.
pub const T_APP_V1: u64 = 1_689_667_200; // 2023-07-18
/// mtime of every entry in base v2.
pub const T_BASE_V2: u64 = 1_696_636_800; // 2023-10-07
/// mtime of every entry in app v2.
pub const T_APP_V2: u64 = 1_696_723_200; // 2023-10-08
/// mtime of every entry in the app-v3 cleanup layer.
pub const T_APP_V3: u64 = 1_700_006_400; // 2023-11-15

/// Format `secs` since the epoch as RFC 3339 UTC (`2023-07-17T00:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A tree of entries keyed by path (without trailing slash), all with one
/// mtime; missing parent directories are filled in on output.
struct Tree {
    mtime: u64,
    entries: BTreeMap<Vec<u8>, Entry>,
}

fn key_of(path: &[u8]) -> Vec<u8> {
    let mut k = path.to_vec();
    while k.len() > 1 && k.last() == Some(&b'/') {
        k.pop();
    }
    k
}

fn user_name(id: u64) -> &'static str {
    match id {
        0 => "root",
        4 => "adm",
        8 => "mail",
        42 => "shadow",
        1000 => "user",
        _ => "",
    }
}

impl Tree {
    fn new(mtime: u64) -> Self {
        Tree {
            mtime,
            entries: BTreeMap::new(),
        }
    }

    fn add(&mut self, e: Entry) {
        let e = e.mtime(self.mtime);
        self.entries.insert(key_of(&e.path), e);
    }

    fn file(&mut self, path: &str, data: Vec<u8>) {
        self.add(Entry::file(path, data));
    }

    fn get_mut(&mut self, path: &str) -> &mut Entry {
        self.entries
            .get_mut(path.as_bytes())
            .unwrap_or_else(|| panic!("sample tree has no {path}"))
    }

    fn into_entries(mut self) -> Vec<Entry> {
        let mut missing = Vec::new();
        for k in self.entries.keys() {
            for (i, &b) in k.iter().enumerate() {
                if b == b'/' && i > 0 && !self.entries.contains_key(&k[..i]) {
                    missing.push(k[..i].to_vec());
                }
            }
        }
        for d in missing {
            self.add(Entry::dir(d));
        }
        let mut out: Vec<Entry> = self.entries.into_values().collect();
        for e in &mut out {
            e.uname = user_name(e.uid).as_bytes().to_vec();
            e.gname = user_name(e.gid).as_bytes().to_vec();
        }
        // Hardlink targets must precede their links.
        for (i, e) in out.iter().enumerate() {
            if e.kind == EntryKind::Hardlink {
                assert!(out[..i].iter().any(|t| t.path == e.link_target));
            }
        }
        out
    }
}

/// How one file of a package is generated.
#[derive(Clone, Copy, Debug)]
enum F {
    /// Executable-like binary, mode 0755, about this many KiB.
    Bin(&'static str, u32),
    /// Small executable `DIR/NAME` of 3-12 KiB (size derived from the name).
    SmallBin(&'static str, &'static str),
    /// Shared library `usr/lib/MULTIARCH/<real>` (+ `<soname>` symlink when
    /// different), about this many KiB.
    Lib(&'static str, &'static str, u32),
    /// Shell script of about this many bytes, mode 0755.
    Script(&'static str, u32),
    /// Configuration-style text of about this many bytes.
    Conf(&'static str, u32),
    /// Prose text of this many bytes.
    Text(&'static str, u32),
    /// Text from a template; `{V}` becomes the distribution point release.
    Versioned(&'static str, &'static str),
    /// Python module `usr/lib/python3.11/<module>.py`, about `0.375 * n` KiB.
    Py(&'static str, u32),
    /// Its `__pycache__/<name>.cpython-311.pyc`, about this many KiB.
    Pyc(&'static str, u32),
    /// Extension module `usr/lib/python3.11/lib-dynload/<name>.cpython-311-x86_64-linux-gnu.so`.
    DynLoad(&'static str, u32),
    /// The >255-byte python file at [`app_long_path`].
    LongPy,
    /// A symlink at this path pointing (absolutely) at [`app_long_path`].
    LongLink(&'static str),
    /// Binary data file (zoneinfo, terminfo, caches), about this many bytes.
    Data(&'static str, u32),
    /// Symlink.
    Link(&'static str, &'static str),
    /// Hard link to an earlier path.
    Hard(&'static str, &'static str),
}

struct Pkg {
    name: &'static str,
    section: &'static str,
    versions: [&'static str; 2],
    files: Vec<F>,
    /// Files whose content changes when the package is updated in v2: full
    /// paths, except bare file names for `F::Lib`.
    v2_changes: Vec<&'static str>,
}

impl Pkg {
    fn new(name: &'static str, section: &'static str, v1: &'static str, v2: &'static str) -> Self {
        Pkg {
            name,
            section,
            versions: [v1, v2],
            files: Vec::new(),
            v2_changes: Vec::new(),
        }
    }

    fn files(mut self, files: impl IntoIterator<Item = F>) -> Self {
        self.files.extend(files);
        self
    }

    fn changes(mut self, paths: &[&'static str]) -> Self {
        self.v2_changes.extend_from_slice(paths);
        self
    }

    fn version(&self, v: u32) -> &'static str {
        self.versions[if v >= 2 { 1 } else { 0 }]
    }

    fn updated(&self) -> bool {
        self.versions[0] != self.versions[1]
    }
}

fn lib_path(name: &str) -> String {
    format!("usr/lib/{MULTIARCH}/{name}")
}

fn point_release(v: u32) -> &'static str {
    if v >= 2 { "12.2" } else { "12.1" }
}

/// Size with a deterministic ±12% jitter.
fn jitter(path: &str, bytes: u64) -> usize {
    let mut r = Rng::from_label(format!("size:{path}"));
    let spread = bytes / 8;
    (bytes - spread + r.below(2 * spread + 1)) as usize
}

fn patch_text(orig: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = orig.to_vec();
    let mid = out.len() / 2;
    let at = out[mid..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(out.len(), |p| mid + p + 1);
    let line = format!(
        "    # security fix: reject oversized input (CVE-2023-{:05})\n",
        rng.below(50_000)
    );
    out.splice(at..at, line.into_bytes());
    out
}

fn pyc_path(module: &str) -> String {
    let (dir, base) = match module.rsplit_once('/') {
        Some((d, b)) => (format!("usr/lib/python3.11/{d}"), b),
        None => ("usr/lib/python3.11".to_owned(), module),
    };
    format!("{dir}/__pycache__/{base}.cpython-311.pyc")
}

/// Generate the entries (one, or a library plus its soname symlink) of one
/// package file.
fn gen_file(pkg: &Pkg, f: F, v: u32) -> Vec<Entry> {
    let finish = |path: &str, data: Vec<u8>, binary: bool| -> Vec<u8> {
        if v >= 2 && pkg.updated() && pkg.v2_changes.contains(&path) {
            let mut r = Rng::from_label(format!("v2:{path}"));
            if binary {
                rng::patch_binary(&data, &mut r)
            } else {
                patch_text(&data, &mut r)
            }
        } else {
            data
        }
    };
    let seeded = |path: &str| Rng::from_label(path);
    let bin = |path: &str, kib: u64| {
        let data = rng::binary(&mut seeded(path), jitter(path, kib * 1024));
        vec![Entry::file(path, finish(path, data, true)).mode(0o755)]
    };
    let py = |path: &str, kib: u32| {
        let module = path.rsplit('/').next().unwrap_or(path);
        let data = rng::python_source(
            &mut seeded(path),
            jitter(path, u64::from(kib) * 384),
            module,
        );
        vec![Entry::file(path, finish(path, data, false))]
    };
    match f {
        F::Bin(path, kib) => bin(path, u64::from(kib)),
        F::SmallBin(dir, name) => bin(
            &format!("{dir}/{name}"),
            3 + rng::fnv1a64(name.as_bytes()) % 10,
        ),
        F::DynLoad(name, kib) => bin(
            &format!("usr/lib/python3.11/lib-dynload/{name}.cpython-311-x86_64-linux-gnu.so"),
            u64::from(kib),
        ),
        F::Lib(real, soname, kib) => {
            let path = lib_path(real);
            let data = rng::binary(&mut seeded(&path), jitter(&path, u64::from(kib) * 1024));
            let mut out = vec![Entry::file(&path, finish(real, data, true))];
            if soname != real {
                out.push(Entry::symlink(lib_path(soname), real));
            }
            out
        }
        F::Script(path, len) => {
            let mut data = b"#!/bin/sh\nset -e\n# ".to_vec();
            data.extend(rng::text(&mut seeded(path), jitter(path, u64::from(len))));
            data.extend_from_slice(b"exec \"$@\"\n");
            vec![Entry::file(path, finish(path, data, false)).mode(0o755)]
        }
        F::Conf(path, len) => {
            let data = rng::conf(&mut seeded(path), jitter(path, u64::from(len)));
            vec![Entry::file(path, finish(path, data, false))]
        }
        F::Text(path, len) => {
            let data = rng::text(&mut seeded(path), len as usize);
            vec![Entry::file(path, finish(path, data, false))]
        }
        F::Versioned(path, template) => {
            let data = template.replace("{V}", point_release(v)).into_bytes();
            vec![Entry::file(path, data)]
        }
        F::Py(module, kib) => py(&format!("usr/lib/python3.11/{module}.py"), kib),
        F::LongPy => py(&app_long_path(), 2),
        F::Pyc(module, kib) => {
            let path = pyc_path(module);
            let mut data = b"\xa7\x0d\x0d\x0a\0\0\0\0".to_vec();
            data.extend(rng::binary(
                &mut seeded(&path),
                jitter(&path, u64::from(kib) * 1024),
            ));
            vec![Entry::file(&path, finish(&path, data, true))]
        }
        F::Data(path, len) => {
            let data = rng::binary(&mut seeded(path), jitter(path, u64::from(len)));
            vec![Entry::file(path, finish(path, data, true))]
        }
        F::Link(path, target) => vec![Entry::symlink(path, target)],
        F::LongLink(path) => vec![Entry::symlink(path, format!("/{}", app_long_path()))],
        F::Hard(path, target) => vec![Entry::hardlink(path, target).mode(0o755)],
    }
}

fn gzip_text(text: &[u8]) -> Vec<u8> {
    compress(text, Compression::Gzip)
}

fn changelog(pkg: &Pkg, v: u32) -> Vec<u8> {
    let mut r = Rng::from_label(format!("changelog:{}", pkg.name));
    let mut out = Vec::new();
    if v >= 2 && pkg.updated() {
        out.extend_from_slice(
            format!(
                "{} ({}) bookworm-security; urgency=high\n\n  * Security update.\n  * ",
                pkg.name, pkg.versions[1]
            )
            .as_bytes(),
        );
        out.extend(rng::text(
            &mut Rng::from_label(format!("cl2:{}", pkg.name)),
            300,
        ));
        out.extend_from_slice(b"\n -- Debian Security Team <team@security.debian.org>  Sat, 07 Oct 2023 00:00:00 +0000\n\n");
    }
    for i in 0..r.range(2, 8) {
        out.extend_from_slice(
            format!(
                "{} ({}~{i}) unstable; urgency=medium\n\n  * ",
                pkg.name, pkg.versions[0]
            )
            .as_bytes(),
        );
        let len = r.range(200, 1200) as usize;
        out.extend(rng::text(&mut r, len));
        out.extend_from_slice(
            b"\n -- Maintainer <maint@example.org>  Mon, 01 May 2023 12:00:00 +0000\n\n",
        );
    }
    gzip_text(&out)
}

/// Add a package's files, docs and dpkg metadata to `tree`.
fn install(tree: &mut Tree, pkg: &Pkg, v: u32) {
    let mut entries = Vec::new();
    for &f in &pkg.files {
        entries.extend(gen_file(pkg, f, v));
    }
    let doc = format!("usr/share/doc/{}", pkg.name);
    let copyright_len = 800 + Rng::from_label(pkg.name).below(3200) as usize;
    let mut copyright = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: {}\n\n",
        pkg.name
    )
    .into_bytes();
    copyright.extend(rng::text(
        &mut Rng::from_label(format!("copyright:{}", pkg.name)),
        copyright_len,
    ));
    entries.push(Entry::file(format!("{doc}/copyright"), copyright));
    // Like a "slim" image, library packages keep only their copyright
    // file unless they were updated.
    if pkg.section != "libs" || pkg.updated() {
        entries.push(Entry::file(
            format!("{doc}/changelog.Debian.gz"),
            changelog(pkg, v),
        ));
    }

    let info = "var/lib/dpkg/info";
    let mut list = b"/.\n".to_vec();
    let mut md5sums = Vec::new();
    for e in &entries {
        let p = key_of(&e.path);
        list.extend_from_slice(b"/");
        list.extend_from_slice(&p);
        list.push(b'\n');
        if e.kind == EntryKind::File {
            md5sums.extend_from_slice(&sha256_hex(&e.data).as_bytes()[..32]);
            md5sums.extend_from_slice(b"  ");
            md5sums.extend_from_slice(&p);
            md5sums.push(b'\n');
        }
    }
    entries.push(Entry::file(format!("{info}/{}.list", pkg.name), list));
    entries.push(Entry::file(format!("{info}/{}.md5sums", pkg.name), md5sums));
    for e in entries {
        tree.add(e);
    }
}

fn status_stanza(pkg: &Pkg, v: u32) -> Vec<u8> {
    let mut r = Rng::from_label(format!("status:{}", pkg.name));
    let mut s = format!(
        "Package: {}\nStatus: install ok installed\nPriority: {}\nSection: {}\nInstalled-Size: {}\nMaintainer: Debian Developers <debian-devel@lists.debian.org>\nArchitecture: {SAMPLE_ARCH}\nVersion: {}\nDescription: {} package\n ",
        pkg.name,
        if pkg.section == "libs" { "optional" } else { "required" },
        pkg.section,
        r.range(20, 9000),
        pkg.version(v),
        pkg.name
    )
    .into_bytes();
    let len = r.range(80, 400) as usize;
    s.extend(
        rng::text(&mut r, len)
            .iter()
            .map(|&b| if b == b'\n' { b' ' } else { b }),
    );
    s.extend_from_slice(b"\n\n");
    s
}

fn dpkg_log(pkgs: &[Pkg], v: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pkgs {
        out.extend_from_slice(
            format!(
                "2023-07-17 00:00:00 status installed {}:{SAMPLE_ARCH} {}\n",
                p.name, p.versions[0]
            )
            .as_bytes(),
        );
    }
    if v >= 2 {
        for p in pkgs.iter().filter(|p| p.updated()) {
            out.extend_from_slice(
                format!(
                    "2023-10-07 00:00:00 upgrade {}:{SAMPLE_ARCH} {} {}\n2023-10-07 00:00:00 status installed {}:{SAMPLE_ARCH} {}\n",
                    p.name, p.versions[0], p.versions[1], p.name, p.versions[1]
                )
                .as_bytes(),
            );
        }
    }
    out
}

fn lib(
    pkg: &'static str,
    ver: &'static str,
    real: &'static str,
    soname: &'static str,
    kib: u32,
) -> Pkg {
    Pkg::new(pkg, "libs", ver, ver).files([F::Lib(real, soname, kib)])
}

fn small_bins(names: &[&'static str], dir: &'static str) -> Vec<F> {
    names.iter().map(|&n| F::SmallBin(dir, n)).collect()
}

const COREUTILS: &str = "cat chmod chown cp date dd echo env head id ln ls md5sum mkdir mv rm \
    sha256sum sleep sort stat tail touch true uname wc";

const OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nPOINT_RELEASE={V}\nID=debian\nHOME_URL=\"https://www.debian.org/\"\nSUPPORT_URL=\"https://www.debian.org/support\"\nBUG_REPORT_URL=\"https://bugs.debian.org/\"\n";

/// Plain shared-library packages of the base image: (package, version,
/// real file, soname, KiB). Enough to give `usr/lib/MULTIARCH` its
/// soname-symlink shape; none of them changes in v2.
const BASE_LIBS: &[(&str, &str, &str, &str, u32)] = &[
    (
        "zlib1g",
        "1:1.2.13.dfsg-1",
        "libz.so.1.2.13",
        "libz.so.1",
        12,
    ),
    (
        "libzstd1",
        "1.5.4+dfsg2-5",
        "libzstd.so.1.5.4",
        "libzstd.so.1",
        32,
    ),
    (
        "liblzma5",
        "5.4.1-0.2",
        "liblzma.so.5.4.1",
        "liblzma.so.5",
        24,
    ),
    ("libacl1", "2.3.1-3", "libacl.so.1.1.2301", "libacl.so.1", 4),
    (
        "libselinux1",
        "3.4-1+b6",
        "libselinux.so.1",
        "libselinux.so.1",
        20,
    ),
    (
        "libpcre2-8-0",
        "10.42-1",
        "libpcre2-8.so.0.11.2",
        "libpcre2-8.so.0",
        30,
    ),
    ("libtinfo6", "6.4-4", "libtinfo.so.6.4", "libtinfo.so.6", 20),
    ("libcap2", "1:2.66-4", "libcap.so.2.66", "libcap.so.2", 6),
    (
        "libcrypt1",
        "1:4.4.33-2",
        "libcrypt.so.1.1.0",
        "libcrypt.so.1",
        16,
    ),
    (
        "libgcc-s1",
        "12.2.0-14",
        "libgcc_s.so.1",
        "libgcc_s.so.1",
        12,
    ),
    ("libpam0g", "1.5.2-6", "libpam.so.0.85.1", "libpam.so.0", 10),
    (
        "libsystemd0",
        "252.17-1~deb12u1",
        "libsystemd.so.0.35.0",
        "libsystemd.so.0",
        55,
    ),
    (
        "libnettle8",
        "3.8.1-2",
        "libnettle.so.8.6",
        "libnettle.so.8",
        24,
    ),
    (
        "libtasn1-6",
        "4.19.0-2",
        "libtasn1.so.6.6.3",
        "libtasn1.so.6",
        8,
    ),
];

/// The packages of the base image.
fn base_packages() -> Vec<Pkg> {
    let mut p = vec![
        Pkg::new("base-files", "admin", "12.4+deb12u1", "12.4+deb12u2").files([
            F::Versioned("etc/debian_version", "{V}\n"),
            F::Versioned("etc/issue", "Debian GNU/Linux {V} \\n \\l\n\n"),
            F::Versioned("etc/issue.net", "Debian GNU/Linux {V}\n"),
            F::Versioned("usr/lib/os-release", OS_RELEASE),
            F::Link("etc/os-release", "../usr/lib/os-release"),
            F::Conf("etc/host.conf", 60),
            F::Conf("etc/profile", 700),
            F::Text("etc/motd", 286),
            F::Conf("etc/dpkg/origins/debian", 120),
            F::Script("etc/update-motd.d/10-uname", 40),
            F::Text("usr/share/common-licenses/GPL-3", 35_149),
            F::Text("usr/share/common-licenses/Apache-2.0", 11_358),
            F::Text("usr/share/common-licenses/LGPL-2.1", 26_530),
            F::Conf("usr/share/base-files/dot.bashrc", 571),
            F::Conf("usr/share/base-files/profile", 769),
            F::Link("usr/share/common-licenses/GPL", "GPL-3"),
        ]),
        Pkg::new("bash", "shells", "5.2.15-2+b2", "5.2.15-2+b2").files([
            F::Bin("usr/bin/bash", 120),
            F::Script("usr/bin/bashbug", 7000),
            F::Conf("etc/bash.bashrc", 1994),
            F::Conf("etc/skel/.bashrc", 3526),
            F::Conf("etc/skel/.profile", 807),
            F::Conf("etc/skel/.bash_logout", 220),
        ]),
        Pkg::new("coreutils", "utils", "9.1-1", "9.1-1").files(
            COREUTILS
                .split_whitespace()
                .map(|n| F::SmallBin("usr/bin", n)),
        ),
        Pkg::new("dash", "shells", "0.5.12-2", "0.5.12-2")
            .files([F::Bin("usr/bin/dash", 20), F::Link("usr/bin/sh", "dash")]),
        Pkg::new("debianutils", "utils", "5.7-0.4", "5.7-0.4").files([
            F::Bin("usr/bin/run-parts", 6),
            F::Bin("usr/bin/tempfile", 4),
            F::Script("usr/bin/which", 946),
            F::Script("usr/sbin/add-shell", 1000),
            F::Script("usr/sbin/remove-shell", 900),
        ]),
        Pkg::new("diffutils", "utils", "1:3.8-4", "1:3.8-4")
            .files(small_bins(&["cmp", "diff", "diff3", "sdiff"], "usr/bin")),
        Pkg::new("dpkg", "admin", "1.21.22", "1.21.22").files([
            F::Bin("usr/bin/dpkg", 48),
            F::Bin("usr/bin/dpkg-deb", 20),
            F::Bin("usr/bin/dpkg-query", 24),
            F::Bin("usr/bin/dpkg-split", 14),
            F::Bin("usr/bin/dpkg-divert", 14),
            F::Bin("usr/bin/dpkg-trigger", 10),
            F::Bin("usr/sbin/start-stop-daemon", 10),
            F::Conf("etc/dpkg/dpkg.cfg", 446),
            F::Script("etc/cron.daily/dpkg", 1100),
            F::Conf("etc/logrotate.d/dpkg", 160),
        ]),
        Pkg::new("findutils", "utils", "4.9.0-4", "4.9.0-4")
            .files([F::Bin("usr/bin/find", 40), F::Bin("usr/bin/xargs", 12)]),
        Pkg::new("grep", "utils", "3.8-5", "3.8-5").files([
            F::Bin("usr/bin/grep", 28),
            F::Script("usr/bin/egrep", 41),
            F::Script("usr/bin/fgrep", 41),
        ]),
        Pkg::new("gzip", "utils", "1.12-1", "1.12-1").files([
            F::Bin("usr/bin/gzip", 18),
            F::Script("usr/bin/gunzip", 2346),
            F::Script("usr/bin/zcat", 1984),
            F::Script("usr/bin/zgrep", 8011),
        ]),
        Pkg::new("hostname", "admin", "3.23+nmu1", "3.23+nmu1").files([
            F::Bin("usr/bin/hostname", 4),
            F::Link("usr/bin/dnsdomainname", "hostname"),
            F::Link("usr/bin/domainname", "hostname"),
            F::Link("usr/bin/nisdomainname", "hostname"),
            F::Link("usr/bin/ypdomainname", "hostname"),
        ]),
        Pkg::new("login", "admin", "1:4.13+dfsg1-1", "1:4.13+dfsg1-1").files([
            F::Bin("usr/bin/login", 16),
            F::Bin("usr/bin/su", 18),
            F::Bin("usr/bin/newgrp", 10),
            F::Bin("usr/sbin/nologin", 4),
            F::Conf("etc/login.defs", 10_734),
            F::Conf("etc/pam.d/login", 4126),
            F::Conf("etc/pam.d/su", 2259),
        ]),
        Pkg::new("passwd", "admin", "1:4.13+dfsg1-1", "1:4.13+dfsg1-1").files([
            F::Bin("usr/bin/passwd", 14),
            F::Bin("usr/bin/chage", 15),
            F::Bin("usr/bin/chfn", 12),
            F::Bin("usr/bin/chsh", 10),
            F::Bin("usr/bin/gpasswd", 15),
            F::Bin("usr/bin/expiry", 6),
            F::Bin("usr/sbin/useradd", 28),
            F::Bin("usr/sbin/usermod", 20),
            F::Bin("usr/sbin/userdel", 15),
            F::Bin("usr/sbin/groupadd", 14),
            F::Bin("usr/sbin/chpasswd", 12),
            F::Conf("etc/default/useradd", 1118),
            F::Conf("etc/pam.d/passwd", 92),
            F::Conf("etc/pam.d/chfn", 384),
            F::Script("etc/cron.daily/passwd", 229),
        ]),
        Pkg::new(
            "mawk",
            "interpreters",
            "1.3.4.20200120-3.1",
            "1.3.4.20200120-3.1",
        )
        .files([
            F::Bin("usr/bin/mawk", 30),
            F::Link("etc/alternatives/awk", "/usr/bin/mawk"),
            F::Link("usr/bin/awk", "/etc/alternatives/awk"),
        ]),
        Pkg::new("perl-base", "perl", "5.36.0-7+deb12u1", "5.36.0-7+deb12u1").files([
            F::Bin("usr/bin/perl", 140),
            F::Hard("usr/bin/perl5.36.0", "usr/bin/perl"),
        ]),
        Pkg::new("sed", "utils", "4.9-1", "4.9-1").files([F::Bin("usr/bin/sed", 20)]),
        Pkg::new("tar", "utils", "1.34+dfsg-1.2", "1.34+dfsg-1.2")
            .files([F::Bin("usr/bin/tar", 32), F::Bin("usr/sbin/rmt-tar", 6)]),
        Pkg::new("util-linux", "utils", "2.38.1-5+b1", "2.38.1-5+b1").files(small_bins(
            &["more", "getopt", "setsid", "lscpu", "kill", "mesg"],
            "usr/bin",
        )),
        Pkg::new("iputils-ping", "net", "3:20221126-1", "3:20221126-1")
            .files([F::Bin("usr/bin/ping", 20)]),
        Pkg::new("sysvinit-utils", "admin", "3.06-4", "3.06-4").files([
            F::Bin("usr/sbin/killall5", 8),
            F::Link("usr/sbin/pidof", "killall5"),
        ]),
        Pkg::new("ncurses-base", "misc", "6.4-4", "6.4-4").files([
            F::Data("usr/lib/terminfo/d/dumb", 308),
            F::Data("usr/lib/terminfo/l/linux", 1788),
            F::Data("usr/lib/terminfo/v/vt100", 1190),
            F::Data("usr/lib/terminfo/x/xterm", 3848),
            F::Data("usr/lib/terminfo/x/xterm-256color", 3908),
            F::Text("etc/terminfo/README", 400),
        ]),
        Pkg::new(
            "tzdata",
            "localization",
            "2024a-0+deb12u1",
            "2024a-0+deb12u1",
        )
        .files([
            F::Data("usr/share/zoneinfo/Etc/UTC", 111),
            F::Link("usr/share/zoneinfo/UTC", "Etc/UTC"),
            F::Data("usr/share/zoneinfo/Europe/Berlin", 2298),
            F::Data("usr/share/zoneinfo/America/New_York", 3552),
            F::Data("usr/share/zoneinfo/Asia/Tokyo", 309),
            F::Conf("usr/share/zoneinfo/zone.tab", 18_822),
            F::Conf("usr/share/zoneinfo/iso3166.tab", 4463),
            F::Text("usr/share/zoneinfo/leap-seconds.list", 10_835),
        ]),
        Pkg::new("libc-bin", "libs", "2.36-9+deb12u1", "2.36-9+deb12u1").files([
            F::Script("usr/bin/ldd", 5412),
            F::Bin("usr/bin/getconf", 15),
            F::Bin("usr/bin/locale", 24),
            F::Bin("usr/bin/iconv", 28),
            F::Bin("usr/sbin/ldconfig", 50),
            F::Conf("etc/ld.so.conf", 34),
            F::Conf("etc/ld.so.conf.d/libc.conf", 44),
            F::Conf("etc/bindresvport.blacklist", 367),
            F::Conf("etc/gai.conf", 2584),
        ]),
        Pkg::new("libc6", "libs", "2.36-9+deb12u1", "2.36-9+deb12u3")
            .files([
                F::Lib("libc.so.6", "libc.so.6", 400),
                F::Lib("ld-linux-x86-64.so.2", "ld-linux-x86-64.so.2", 30),
                F::Link(
                    "usr/lib64/ld-linux-x86-64.so.2",
                    "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                ),
                F::Lib("libm.so.6", "libm.so.6", 45),
                F::Lib("libresolv.so.2", "libresolv.so.2", 15),
                F::Lib("libpthread.so.0", "libpthread.so.0", 4),
                F::Lib("libdl.so.2", "libdl.so.2", 4),
                F::Conf("etc/ld.so.conf.d/x86_64-linux-gnu.conf", 100),
            ])
            .changes(&["libc.so.6", "libm.so.6"]),
        Pkg::new("libssl3", "libs", "3.0.9-1", "3.0.11-1~deb12u1")
            .files([
                F::Lib("libssl.so.3", "libssl.so.3", 50),
                F::Lib("libcrypto.so.3", "libcrypto.so.3", 260),
                F::Lib("engines-3/afalg.so", "engines-3/afalg.so", 10),
                F::Lib("ossl-modules/legacy.so", "ossl-modules/legacy.so", 20),
            ])
            .changes(&["libssl.so.3", "libcrypto.so.3"]),
        Pkg::new("libgnutls30", "libs", "3.7.9-2", "3.7.9-2+deb12u1")
            .files([F::Lib("libgnutls.so.30.34.3", "libgnutls.so.30", 110)])
            .changes(&["libgnutls.so.30.34.3"]),
        Pkg::new("libpam-modules", "admin", "1.5.2-6", "1.5.2-6").files([
            F::Lib("security/pam_unix.so", "security/pam_unix.so", 10),
            F::Lib("security/pam_deny.so", "security/pam_deny.so", 4),
            F::Lib("security/pam_permit.so", "security/pam_permit.so", 4),
            F::Lib("security/pam_env.so", "security/pam_env.so", 6),
            F::Lib("security/pam_limits.so", "security/pam_limits.so", 6),
            F::Conf("etc/security/limits.conf", 2161),
            F::Conf("etc/security/pam_env.conf", 2972),
            F::Conf("etc/security/access.conf", 4564),
        ]),
        Pkg::new("libpam-runtime", "admin", "1.5.2-6", "1.5.2-6").files([
            F::Conf("etc/pam.d/common-auth", 1208),
            F::Conf("etc/pam.d/common-account", 1200),
            F::Conf("etc/pam.d/common-password", 1440),
            F::Conf("etc/pam.d/common-session", 1035),
            F::Conf("etc/pam.d/other", 520),
            F::Conf("etc/pam.conf", 552),
        ]),
        Pkg::new("netbase", "admin", "6.4", "6.4").files([
            F::Conf("etc/services", 12_813),
            F::Conf("etc/protocols", 2932),
            F::Conf("etc/rpc", 887),
            F::Conf("etc/ethertypes", 1816),
        ]),
        Pkg::new("libstdc++6", "libs", "12.2.0-14", "12.2.0-14").files([F::Lib(
            "libstdc++.so.6.0.30",
            "libstdc++.so.6",
            150,
        )]),
    ];
    p.extend(
        BASE_LIBS
            .iter()
            .map(|&(pkg, ver, real, soname, kib)| lib(pkg, ver, real, soname, kib)),
    );
    p
}

fn base_tree(v: u32) -> Tree {
    let mtime = if v >= 2 { T_BASE_V2 } else { T_BASE_V1 };
    let mut t = Tree::new(mtime);
    let pkgs = base_packages();
    for p in &pkgs {
        install(&mut t, p, v);
    }

    // Merged /usr.
    for (l, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        t.add(Entry::symlink(l, target));
    }
    // Top-level directories with their usual modes.
    for d in [
        "boot",
        "dev",
        "home",
        "media",
        "mnt",
        "opt",
        "proc",
        "run",
        "srv",
        "sys",
        "usr/local/bin",
        "var/cache/apt",
        "var/log/apt",
        "var/spool",
    ] {
        t.add(Entry::dir(d));
    }
    t.add(Entry::dir("root").mode(0o700));
    t.add(Entry::dir("tmp").mode(0o1777));
    t.add(Entry::dir("var/tmp").mode(0o1777));
    t.add(Entry::dir("run/lock").mode(0o1777));
    t.add(Entry::dir("var/mail").mode(0o2775).gid(8));
    t.add(Entry::dir("var/log/journal").mode(0o2755).gid(4));
    t.add(Entry::char_dev("dev/null", 1, 3).mode(0o666));
    t.add(Entry::fifo("run/initctl").mode(0o600));

    // Non-package configuration.
    t.file("etc/hostname", b"sample\n".to_vec());
    t.file(
        "etc/hosts",
        b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_vec(),
    );
    t.file("etc/resolv.conf", Vec::new());
    t.file("etc/machine-id", Vec::new());
    t.file("etc/environment", Vec::new());
    t.file("etc/timezone", b"Etc/UTC\n".to_vec());
    t.add(Entry::symlink(
        "etc/localtime",
        "/usr/share/zoneinfo/Etc/UTC",
    ));
    t.add(Entry::symlink("etc/mtab", "../proc/self/mounts"));
    t.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nsys:x:3:3:sys:/dev:/usr/sbin/nologin\nmail:x:8:8:mail:/var/mail:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nuser:x:1000:1000::/home/user:/bin/bash\n".to_vec(),
    );
    t.file(
        "etc/group",
        b"root:x:0:\nadm:x:4:\nmail:x:8:\nshadow:x:42:\nusers:x:100:\nnogroup:x:65534:\nuser:x:1000:\n".to_vec(),
    );
    t.add(
        Entry::file(
            "etc/shadow",
            b"root:*:19555:0:99999:7:::\ndaemon:*:19555:0:99999:7:::\nuser:!:19555:0:99999:7:::\n"
                .to_vec(),
        )
        .mode(0o640)
        .gid(42),
    );
    t.add(
        Entry::file("etc/gshadow", b"root:*::\nshadow:*::\nuser:!::\n".to_vec())
            .mode(0o640)
            .gid(42),
    );
    t.file("etc/subuid", b"user:100000:65536\n".to_vec());
    t.file("etc/subgid", b"user:100000:65536\n".to_vec());
    t.file("etc/shells", b"# /etc/shells: valid login shells\n/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n/bin/dash\n/usr/bin/dash\n".to_vec());
    t.file(
        "etc/nsswitch.conf",
        rng::conf(&mut Rng::from_label("nsswitch"), 494),
    );
    t.file(
        "etc/inputrc",
        rng::conf(&mut Rng::from_label("inputrc"), 1748),
    );
    t.file(
        "etc/xattr.conf",
        rng::conf(&mut Rng::from_label("xattr.conf"), 681),
    );
    t.file(
        "etc/fstab",
        b"# UNCONFIGURED FSTAB FOR BASE SYSTEM\n".to_vec(),
    );
    t.file(
        "etc/alternatives/README",
        rng::text(&mut Rng::from_label("alt"), 100),
    );
    t.file(
        "etc/ld.so.cache",
        rng::binary(&mut Rng::from_label(format!("ld.so.cache{v}")), 9_000),
    );
    t.file(
        "etc/apt/sources.list.d/debian.sources",
        b"Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n".to_vec(),
    );
    for name in [
        "docker-clean",
        "docker-gzip-indexes",
        "docker-no-languages",
        "docker-autoremove-suggests",
    ] {
        let data = rng::conf(&mut Rng::from_label(name), 180);
        t.file(&format!("etc/apt/apt.conf.d/{name}"), data);
    }
    t.file(
        "etc/dpkg/dpkg.cfg.d/docker-apt-speedup",
        b"force-unsafe-io\n".to_vec(),
    );
    t.file(
        "root/.bashrc",
        rng::conf(&mut Rng::from_label("root bashrc"), 571),
    );
    t.file(
        "root/.profile",
        rng::conf(&mut Rng::from_label("root profile"), 161),
    );
    t.add(Entry::dir("home/user").mode(0o750).uid(1000).gid(1000));
    t.add(
        Entry::file(
            "home/user/.bashrc",
            rng::conf(&mut Rng::from_label("skel bashrc"), 3526),
        )
        .uid(1000)
        .gid(1000),
    );

    // dpkg and debconf state.
    let mut status = Vec::new();
    for p in &pkgs {
        status.extend(status_stanza(p, v));
    }
    t.file("var/lib/dpkg/status", status);
    t.file("var/lib/dpkg/available", Vec::new());
    t.file("var/lib/dpkg/diversions", Vec::new());
    t.file("var/lib/dpkg/statoverride", Vec::new());
    t.add(Entry::file("var/lib/dpkg/lock", Vec::new()).mode(0o640));
    t.add(Entry::file("var/log/dpkg.log", dpkg_log(&pkgs, v)).mode(0o644));
    t.file(
        "var/cache/debconf/config.dat",
        rng::conf(&mut Rng::from_label("debconf config"), 12_000),
    );
    t.file(
        "var/cache/debconf/templates.dat",
        rng::conf(&mut Rng::from_label("debconf templates"), 60_000),
    );
    if v < 2 {
        t.file(
            "var/cache/debconf/config.dat-old",
            rng::conf(&mut Rng::from_label("debconf old"), 11_000),
        );
    } else {
        let mut news = Vec::new();
        news.extend_from_slice(
            b"openssl (3.0.11-1~deb12u1) bookworm-security; urgency=medium\n\n  ",
        );
        news.extend(rng::text(&mut Rng::from_label("libssl3 news"), 900));
        t.file("usr/share/doc/libssl3/NEWS.Debian.gz", gzip_text(&news));
    }

    // Awkward cases.
    t.add(Entry::file(
        b"usr/share/doc/base-files/README.caf\xe9-latin1".as_slice(),
        b"A file whose name is not valid UTF-8.\n".to_vec(),
    ));
    t.file(
        "usr/share/doc/base-files/README.\u{00fc}nicode-\u{2603}",
        b"A file whose name is non-ASCII UTF-8.\n".to_vec(),
    );
    let long_base = format!(
        "usr/share/doc/libpam0g/examples/{}.conf",
        "an-example-configuration-with-a-basename-longer-than-the-ustar-name-field-can-hold-"
            .repeat(2)
    );
    t.file(&long_base, rng::conf(&mut Rng::from_label("long"), 700));
    for p in [
        "usr/bin/passwd",
        "usr/bin/su",
        "usr/bin/newgrp",
        "usr/bin/chfn",
        "usr/bin/chsh",
        "usr/bin/gpasswd",
    ] {
        let e = t.get_mut(p);
        e.mode = 0o4755;
    }
    for p in ["usr/bin/chage", "usr/bin/expiry"] {
        let e = t.get_mut(p);
        e.mode = 0o2755;
        e.gid = 42;
    }
    // struct vfs_cap_data, revision 2, effective, permitted = CAP_NET_RAW.
    let cap = vec![
        1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    t.get_mut("usr/bin/ping")
        .xattrs
        .push(("security.capability".to_owned(), cap));
    t
}

/// The base layer tar (PAX format) for version 1 or 2.
pub fn base_layer(v: u32) -> Vec<u8> {
    LayerBuilder::new(TarFormat::Pax)
        .with_entries(base_tree(v).into_entries())
        .tar_bytes()
}

/// Standard-library modules of the app layer as `module:KiB`, split by
/// [`py_modules`]; every third one also gets a `.pyc`.
const PY_MODULES: &str = "\
    abc:6 argparse:24 base64:8 codecs:12 collections/__init__:20 contextlib:10 copy:4 \
    dataclasses:16 datetime:24 email/__init__:2 email/message:16 enum:20 functools:12 \
    gettext:8 hashlib:4 http/__init__:4 http/client:20 http/server:16 io:4 json/__init__:6 \
    json/decoder:6 json/encoder:6 logging/__init__:24 os:16 pathlib:16 posixpath:8 random:12 \
    re/__init__:8 re/_parser:16 shutil:20 socket:12 ssl:20 subprocess:24 tempfile:12 \
    threading:20 typing:24 urllib/__init__:1 urllib/parse:16 warnings:8 zipfile:24";

fn py_modules() -> impl Iterator<Item = (&'static str, u32)> {
    PY_MODULES.split_whitespace().map(|w| {
        let (m, kib) = w.split_once(':').expect("module:KiB");
        (m, kib.parse().expect("KiB"))
    })
}

/// Path of the deliberately long (>255 byte) file in the app layer.
pub fn app_long_path() -> String {
    format!(
        "usr/lib/python3/dist-packages/pip/_vendor/{}module_with_an_unreasonably_long_file_name_for_exercising_gnu_longlink_records.py",
        "a_rather_deeply_nested_vendored_package_directory/".repeat(3)
    )
}

fn app_packages() -> Vec<Pkg> {
    let mut py = Pkg::new("python3.11", "python", "3.11.2-6", "3.11.2-6+deb12u1")
        .files([
            F::Bin("usr/bin/python3.11", 160),
            F::Link("usr/bin/python3", "python3.11"),
            F::Script("usr/bin/pydoc3.11", 80),
            F::Conf("etc/python3.11/sitecustomize.py", 155),
            F::Lib("libexpat.so.1.8.10", "libexpat.so.1", 24),
        ])
        .changes(&[
            "usr/lib/python3.11/http/client.py",
            "usr/lib/python3.11/http/__pycache__/client.cpython-311.pyc",
        ]);
    for (i, (m, kib)) in py_modules().enumerate() {
        py.files.push(F::Py(m, kib));
        if i % 3 == 0 || m == "http/client" {
            py.files.push(F::Pyc(m, kib / 4 + 1));
        }
    }
    for (m, kib) in [
        ("_ssl", 24),
        ("_hashlib", 12),
        ("_json", 10),
        ("_decimal", 30),
    ] {
        py.files.push(F::DynLoad(m, kib));
    }
    py.files.push(F::LongPy);
    py.files.push(F::LongLink("usr/bin/pip-vendored-module"));
    vec![
        py,
        Pkg::new("curl", "web", "7.88.1-10+deb12u1", "7.88.1-10+deb12u4")
            .files([F::Bin("usr/bin/curl", 104)])
            .changes(&["usr/bin/curl"]),
        Pkg::new("libcurl4", "libs", "7.88.1-10+deb12u1", "7.88.1-10+deb12u4")
            .files([F::Lib("libcurl.so.4.8.0", "libcurl.so.4", 120)])
            .changes(&["libcurl.so.4.8.0"]),
        lib(
            "libnghttp2-14",
            "1.52.0-1",
            "libnghttp2.so.14.24.1",
            "libnghttp2.so.14",
            24,
        ),
        lib(
            "libbrotli1",
            "1.0.9-2+b6",
            "libbrotlidec.so.1.0.9",
            "libbrotlidec.so.1",
            10,
        ),
        lib(
            "libssh2-1",
            "1.10.0-3+b1",
            "libssh2.so.1.0.1",
            "libssh2.so.1",
            28,
        ),
        lib("libpsl5", "0.21.2-1", "libpsl.so.5.3.4", "libpsl.so.5", 10),
        Pkg::new("ca-certificates", "misc", "20230311", "20230311").files([
            F::Conf("etc/ca-certificates.conf", 6_000),
            F::Link(
                "etc/ssl/certs/ca-certificates.crt",
                "/etc/ssl/certs/ca-bundle.pem",
            ),
        ]),
    ]
}

fn pem_bundle() -> Vec<u8> {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut r = Rng::from_label("ca-bundle");
    let mut out = Vec::new();
    for i in 0..30 {
        out.extend_from_slice(format!("# Sample CA {i}\n-----BEGIN CERTIFICATE-----\n").as_bytes());
        for _ in 0..r.range(18, 30) {
            out.extend((0..64).map(|_| B64[r.index(64)]));
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    out
}

fn app_tree(v: u32) -> Tree {
    let mtime = if v >= 2 { T_APP_V2 } else { T_APP_V1 };
    let mut t = Tree::new(mtime);
    let apps = app_packages();
    for p in &apps {
        install(&mut t, p, v);
    }
    t.file("etc/ssl/certs/ca-bundle.pem", pem_bundle());
    // The app layer rewrites dpkg's status with its own packages appended.
    let mut status = Vec::new();
    for p in base_packages().iter().chain(&apps) {
        status.extend(status_stanza(p, v));
    }
    t.file("var/lib/dpkg/status", status);
    t.file(
        "etc/ld.so.cache",
        rng::binary(&mut Rng::from_label(format!("app ld.so.cache{v}")), 11_000),
    );
    t
}

/// The app layer tar (GNU format) for version 1 or 2.
pub fn app_layer(v: u32) -> Vec<u8> {
    LayerBuilder::new(TarFormat::Gnu)
        .with_entries(app_tree(v).into_entries())
        .tar_bytes()
}

/// The app-v3 cleanup layer (ustar): whiteouts for curl and libcurl, an
/// opaque `usr/share/doc` with one new README, a new config file.
pub fn app_v3_layer() -> Vec<u8> {
    let mut t = Tree::new(T_APP_V3);
    t.add(Entry::whiteout("usr/bin/curl"));
    t.add(Entry::whiteout(lib_path("libcurl.so.4")));
    t.add(Entry::whiteout(lib_path("libcurl.so.4.8.0")));
    t.add(Entry::whiteout("var/lib/dpkg/info/curl.list"));
    t.add(Entry::whiteout("var/lib/dpkg/info/curl.md5sums"));
    t.add(Entry::opaque("usr/share/doc"));
    t.file(
        "usr/share/doc/README",
        b"Documentation was removed from this image to save space.\n".to_vec(),
    );
    t.file(
        "etc/app/config.toml",
        b"[server]\nlisten = \"0.0.0.0:8080\"\nworkers = 4\n".to_vec(),
    );
    let mut status = Vec::new();
    for p in base_packages()
        .iter()
        .chain(&app_packages())
        .filter(|p| p.name != "curl")
    {
        status.extend(status_stanza(p, 2));
    }
    t.file("var/lib/dpkg/status", status);
    LayerBuilder::new(TarFormat::Ustar)
        .with_entries(t.into_entries())
        .tar_bytes()
}

fn spec(layers: Vec<Layer>, title: &str, version: &str, created: u64) -> ImageSpec {
    ImageSpec {
        layers,
        architecture: SAMPLE_ARCH.to_owned(),
        ..ImageSpec::default()
    }
    .with_created(rfc3339(created))
    .with_label("org.opencontainers.image.title", title)
    .with_label("org.opencontainers.image.version", version)
    .with_label("org.opencontainers.image.created", rfc3339(created))
    .with_label(
        "org.opencontainers.image.description",
        format!("layerstore sample series: {title} {version}"),
    )
}

/// The five sample images (tag, spec), in [`SAMPLE_TAGS`] order.
pub fn sample_specs() -> Vec<(String, ImageSpec)> {
    let base1 = Layer::new(base_layer(1), Compression::Gzip);
    let base2 = Layer::new(base_layer(2), Compression::Gzip);
    let app1 = Layer::new(app_layer(1), Compression::Zstd);
    let app2 = Layer::new(app_layer(2), Compression::Zstd);
    let app3 = Layer::new(app_v3_layer(), Compression::None);
    let with_base = |s: ImageSpec, base: &str| {
        s.with_label(
            "org.opencontainers.image.base.name",
            format!("sample-base:{base}"),
        )
    };
    vec![
        (
            "base-v1".to_owned(),
            spec(vec![base1.clone()], "sample-base", "12.1", T_BASE_V1),
        ),
        (
            "app-v1".to_owned(),
            with_base(
                spec(vec![base1, app1], "sample-app", "1.0.0", T_APP_V1),
                "12.1",
            ),
        ),
        (
            "base-v2".to_owned(),
            spec(vec![base2.clone()], "sample-base", "12.2", T_BASE_V2),
        ),
        (
            "app-v2".to_owned(),
            with_base(
                spec(
                    vec![base2.clone(), app2.clone()],
                    "sample-app",
                    "1.0.1",
                    T_APP_V2,
                ),
                "12.2",
            ),
        ),
        (
            "app-v3".to_owned(),
            with_base(
                spec(vec![base2, app2, app3], "sample-app", "1.1.0", T_APP_V3),
                "12.2",
            ),
        ),
    ]
}

/// Write the five-image sample series as one OCI layout at `out_dir`
/// (created if needed) and return `(tag, written image)` in
/// [`SAMPLE_TAGS`] order. Deterministic: the same bytes on every run and
/// machine.
pub fn sample_series(out_dir: &Path) -> io::Result<Vec<(String, WrittenImage)>> {
    let mut layout = OciLayout::create(out_dir)?;
    sample_specs()
        .into_iter()
        .map(|(tag, spec)| {
            let img = layout.add_image(&tag, &spec)?;
            Ok((tag, img))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::Read;
    use std::sync::OnceLock;

    /// The sample series written once per test process.
    pub(crate) fn shared_series() -> &'static (tempfile::TempDir, Vec<(String, WrittenImage)>) {
        static SERIES: OnceLock<(tempfile::TempDir, Vec<(String, WrittenImage)>)> = OnceLock::new();
        SERIES.get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let series = sample_series(&tmp.path().join("layout")).unwrap();
            (tmp, series)
        })
    }

    /// [`sample_specs`] computed once per test process.
    pub(crate) fn shared_specs() -> &'static [(String, ImageSpec)] {
        static SPECS: OnceLock<Vec<(String, ImageSpec)>> = OnceLock::new();
        SPECS.get_or_init(sample_specs)
    }

    struct Member {
        kind: u8,
        mode: u32,
        data: Vec<u8>,
        link: Option<Vec<u8>>,
        xattr: bool,
    }

    fn members(tar: &[u8]) -> BTreeMap<Vec<u8>, Member> {
        let mut out = BTreeMap::new();
        for e in tar::Archive::new(tar).entries().unwrap() {
            let mut e = e.unwrap();
            let xattr = e.pax_extensions().unwrap().is_some_and(|mut x| {
                x.any(|r| r.unwrap().key_bytes().starts_with(b"SCHILY.xattr."))
            });
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let m = Member {
                kind: e.header().entry_type().as_byte(),
                mode: e.header().mode().unwrap(),
                data,
                link: e.link_name_bytes().map(|l| l.into_owned()),
                xattr,
            };
            out.insert(key_of(&e.path_bytes()), m);
        }
        out
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(T_BASE_V1), "2023-07-17T08:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn series_shape() {
        let (tmp, series) = shared_series();
        let tags: Vec<&str> = series.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(tags, SAMPLE_TAGS);
        let n_layers: Vec<usize> = series.iter().map(|(_, w)| w.layers.len()).collect();
        assert_eq!(n_layers, [1, 2, 1, 2, 3]);
        let [b1, a1, b2, a2, a3] = [0, 1, 2, 3, 4].map(|i| &series[i].1);
        assert_eq!(a1.layers[0], b1.layers[0]);
        assert_eq!(a2.layers[0], b2.layers[0]);
        assert_eq!(a3.layers[..2], a2.layers[..]);
        assert_ne!(b1.layers[0].diff_id, b2.layers[0].diff_id);
        assert_ne!(a1.layers[1].diff_id, a2.layers[1].diff_id);
        let media: Vec<&str> = a3.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert_eq!(
            media,
            [
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.oci.image.layer.v1.tar+zstd",
                "application/vnd.oci.image.layer.v1.tar"
            ]
        );
        let total: u64 = [
            &b1.layers[0],
            &b2.layers[0],
            &a1.layers[1],
            &a2.layers[1],
            &a3.layers[2],
        ]
        .iter()
        .map(|l| l.tar_size)
        .sum();
        assert!(
            (4 << 20..24 << 20).contains(&total),
            "total tar bytes {total}"
        );
        // Written digests are consistent with the blobs on disk.
        crate::oci::tests::check_layout(&tmp.path().join("layout"));
    }

    #[test]
    fn deterministic() {
        assert_eq!(app_v3_layer(), app_v3_layer());
        let (_, series) = shared_series();
        for ((tag, spec), (tag2, written)) in shared_specs().iter().zip(series) {
            assert_eq!(tag, tag2);
            assert_eq!(
                spec.diff_ids(),
                written
                    .layers
                    .iter()
                    .map(|l| l.diff_id.clone())
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn base_tree_contents_and_v2_delta() {
        let v1 = members(&base_layer(1));
        let v2 = members(&base_layer(2));
        let files = |m: &BTreeMap<Vec<u8>, Member>| m.values().filter(|x| x.kind == b'0').count();
        let n = files(&v1);
        assert!((300..460).contains(&n), "{n} regular files");
        let non_dir = v1.values().filter(|x| x.kind != b'5').count();
        assert!(non_dir >= 400, "{non_dir}");

        let get = |p: &str| &v1[p.as_bytes()];
        assert_eq!(get("usr/bin/passwd").mode, 0o4755);
        assert_eq!(get("usr/bin/chage").mode, 0o2755);
        assert_eq!(get("tmp").mode, 0o1777);
        assert!(get("usr/bin/ping").xattr);
        assert_eq!(get("usr/bin/perl5.36.0").kind, b'1');
        assert_eq!(
            get("usr/bin/perl5.36.0").link.as_deref(),
            Some(&b"usr/bin/perl"[..])
        );
        assert_eq!(get("run/initctl").kind, b'6');
        assert_eq!(get("dev/null").kind, b'3');
        assert_eq!(get("bin").link.as_deref(), Some(&b"usr/bin"[..]));
        assert!(v1.contains_key(&b"usr/share/doc/base-files/README.caf\xe9-latin1"[..]));
        assert!(v1.keys().any(|k| k.len() > 200));

        let sizes: Vec<usize> = v1
            .values()
            .filter(|x| x.kind == b'0')
            .map(|x| x.data.len())
            .collect();
        assert!(sizes.iter().filter(|&&s| s < 512).count() > 50);
        assert!(
            sizes
                .iter()
                .filter(|&&s| (2048..16384).contains(&s))
                .count()
                > 50
        );
        let big = sizes
            .iter()
            .filter(|&&s| (100 << 10..=1 << 20).contains(&s))
            .count();
        assert!((5..20).contains(&big), "{big} large files");

        // ~5% of regular files changed content; one added, one removed.
        let changed: Vec<_> = v1
            .iter()
            .filter(|(k, m)| m.kind == b'0' && v2.get(*k).is_some_and(|m2| m2.data != m.data))
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        let pct = changed.len() * 100 / n;
        assert!((3..=8).contains(&pct), "{pct}% changed: {changed:?}");
        assert!(changed.contains(&format!("usr/lib/{MULTIARCH}/libssl.so.3")));
        let k1: BTreeSet<_> = v1.keys().collect();
        let k2: BTreeSet<_> = v2.keys().collect();
        assert_eq!(k1.difference(&k2).count(), 1);
        assert_eq!(k2.difference(&k1).count(), 1);
    }

    #[test]
    fn app_layers() {
        let a1 = members(&app_layer(1));
        let long = app_long_path();
        assert!(long.len() > 255);
        assert!(a1.contains_key(long.as_bytes()));
        assert!(a1.contains_key(&b"usr/bin/curl"[..]));
        let v3 = members(&app_v3_layer());
        assert!(v3.contains_key(&b"usr/bin/.wh.curl"[..]));
        assert!(v3.contains_key(&b"usr/share/doc/.wh..wh..opq"[..]));
        let a2 = members(&app_layer(2));
        let changed = a1
            .iter()
            .filter(|(k, m)| a2.get(*k).is_some_and(|m2| m2.data != m.data))
            .count();
        assert!((3..16).contains(&changed), "{changed} app files changed");
    }
}
