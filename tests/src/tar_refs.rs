//! The tar readers layerstore is compared with: GNU tar and bsdtar (their `-tv` listings), and
//! Go's `archive/tar`, which docker, containerd, podman and containers/storage unpack layers
//! with. For Go, a small stdlib-only program
//! (`go/gotar.go`) is built at run time when a Go toolchain is installed (Debian `golang-go`),
//! without network or module downloads, and lists every entry with its type, name, link name,
//! size, mode, owner, times, device numbers, xattrs and a sha256 of the data Go reads.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// The Go program's source.
pub const GOTAR_SOURCE: &str = include_str!("go/gotar.go");

/// One entry as Go's `archive/tar` reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoEntry {
    pub typeflag: u8,
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub size: i64,
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub dev_major: i64,
    pub dev_minor: i64,
    /// Hex sha256 of the data Go reads for the entry.
    pub sha256: String,
    /// `SCHILY.xattr.*` records, sorted.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What Go makes of one archive: its entries, and the error that stopped it, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoListing {
    pub entries: Vec<GoEntry>,
    pub error: Option<String>,
}

/// The built reader.
#[derive(Debug, Clone)]
pub struct GoTar {
    bin: PathBuf,
}

fn go_on_path() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join("go"))
        .find(|p| p.is_file())
}

impl GoTar {
    /// Build the reader below `dir` (reused while its source is unchanged; the Go build cache and
    /// GOPATH live there too). `Err` says why it is unavailable: no Go toolchain, or a failed
    /// build.
    pub fn build(dir: &Path) -> Result<GoTar, String> {
        let go = go_on_path().ok_or("`go` is not installed (Debian package golang-go)")?;
        let hash = hex::encode(&Sha256::digest(GOTAR_SOURCE.as_bytes())[..8]);
        let bin = dir.join(format!("gotar-{hash}"));
        if bin.is_file() {
            return Ok(GoTar { bin });
        }
        let io = |e: std::io::Error| format!("preparing {}: {e}", dir.display());
        // Another test binary may build at the same time: each builds in its own directory and
        // renames the result into place.
        let work = dir.join(format!("gotar-build-{}", std::process::id()));
        std::fs::create_dir_all(&work).map_err(io)?;
        std::fs::write(work.join("gotar.go"), GOTAR_SOURCE).map_err(io)?;
        let out = Command::new(go)
            .arg("build")
            .arg("-o")
            .arg(work.join("gotar"))
            .arg("gotar.go")
            .current_dir(&work)
            .env("GOCACHE", dir.join("go-cache"))
            .env("GOPATH", dir.join("go-path"))
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .output()
            .map_err(|e| format!("cannot run go: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "go build failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::rename(work.join("gotar"), &bin).map_err(io)?;
        let _ = std::fs::remove_dir_all(&work);
        Ok(GoTar { bin })
    }

    /// List archives (plain tar bytes) as Go reads them, all in one run of the reader.
    pub fn list_many(&self, archives: &[&[u8]]) -> Vec<GoListing> {
        let dir = std::env::temp_dir().join(format!(
            "layerstore-gotar-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let files: Vec<PathBuf> = archives
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let p = dir.join(format!("{i}.tar"));
                std::fs::write(&p, a).expect("write archive");
                p
            })
            .collect();
        let out = Command::new(&self.bin)
            .args(&files)
            .output()
            .expect("run gotar");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "gotar failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_listing(&out.stdout)
    }

    /// List one archive.
    pub fn list(&self, archive: &[u8]) -> GoListing {
        self.list_many(&[archive]).pop().expect("one listing")
    }
}

fn unhex(s: &str) -> Vec<u8> {
    if s == "-" {
        Vec::new()
    } else {
        hex::decode(s).expect("gotar prints hex")
    }
}

fn parse_listing(out: &[u8]) -> Vec<GoListing> {
    let text = String::from_utf8(out.to_vec()).expect("gotar prints text");
    let mut all = Vec::new();
    for line in text.lines() {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "archive" => all.push(GoListing {
                entries: Vec::new(),
                error: None,
            }),
            "ok" => {}
            "error" => all.last_mut().expect("archive first").error = Some(rest.to_string()),
            "entry" => {
                let f: Vec<&str> = rest.split(' ').collect();
                assert_eq!(f.len(), 13, "gotar line {line:?}");
                let n = |i: usize| f[i].parse::<i64>().expect("gotar prints numbers");
                let xattrs = if f[12] == "-" {
                    Vec::new()
                } else {
                    f[12]
                        .split(',')
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("name=value");
                            (unhex(k), unhex(v))
                        })
                        .collect()
                };
                all.last_mut()
                    .expect("archive first")
                    .entries
                    .push(GoEntry {
                        typeflag: u8::from_str_radix(f[0], 16).expect("hex type"),
                        name: unhex(f[1]),
                        link: unhex(f[2]),
                        size: n(3),
                        mode: n(4),
                        uid: n(5),
                        gid: n(6),
                        mtime: n(7),
                        mtime_nsec: n(8) as u32,
                        dev_major: n(9),
                        dev_minor: n(10),
                        sha256: f[11].to_string(),
                        xattrs,
                    });
            }
            _ => panic!("unexpected gotar line {line:?}"),
        }
    }
    all
}

/// A reference's rows, or its complaint.
pub type Listed = Result<Vec<RefRow>, String>;

/// One entry as every reference can list it: (type letter as `ls -l` shows it, permission bits,
/// uid, gid, size of regular files (0 otherwise), path without trailing slashes, link target).
/// Hard links are `h`.
pub type RefRow = (char, u32, u64, u64, u64, Vec<u8>, Option<Vec<u8>>);

fn trim_slashes(mut path: Vec<u8>) -> Vec<u8> {
    while path.len() > 1 && path.ends_with(b"/") {
        path.pop();
    }
    path
}

/// Go's listing as rows; global headers (which runtimes skip) are left out.
pub fn go_rows(l: &GoListing) -> Result<Vec<RefRow>, String> {
    if let Some(e) = &l.error {
        return Err(e.clone());
    }
    Ok(l.entries
        .iter()
        .filter(|e| e.typeflag != b'g')
        .map(|e| {
            let letter = match e.typeflag {
                b'0' | b'\0' => '-',
                b'1' => 'h',
                b'2' => 'l',
                b'3' => 'c',
                b'4' => 'b',
                b'5' => 'd',
                b'6' => 'p',
                t => t as char,
            };
            let link = matches!(letter, 'h' | 'l').then(|| e.link.clone());
            (
                letter,
                (e.mode & 0o7777) as u32,
                e.uid as u64,
                e.gid as u64,
                if letter == '-' { e.size as u64 } else { 0 },
                trim_slashes(e.name.clone()),
                link,
            )
        })
        .collect())
}

fn mode_bits(s: &[u8]) -> u32 {
    let mut m = 0;
    for (i, &c) in s[1..10].iter().enumerate() {
        let bit = 1 << (8 - i);
        match c {
            b'r' | b'w' | b'x' => m |= bit,
            b's' | b't' => {
                m |= bit;
                m |= [0o4000, 0o2000, 0o1000][i / 3];
            }
            b'S' | b'T' => m |= [0o4000, 0o2000, 0o1000][i / 3],
            _ => {}
        }
    }
    m
}

/// Split `path -> target` / `path link to target`.
fn split_link(rest: &[u8], letter: char) -> (Vec<u8>, Option<Vec<u8>>, char) {
    for (sep, kind) in [(&b" -> "[..], 'l'), (&b" link to "[..], 'h')] {
        if letter != 'l' && kind != 'h' {
            continue;
        }
        if let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
            let letter = if kind == 'h' { 'h' } else { letter };
            return (
                rest[..i].to_vec(),
                Some(rest[i + sep.len()..].to_vec()),
                letter,
            );
        }
    }
    (rest.to_vec(), None, letter)
}

fn fields(line: &[u8], n: usize) -> (Vec<&[u8]>, &[u8]) {
    let mut out = Vec::new();
    let mut rest = line;
    for _ in 0..n {
        let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        rest = &rest[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    (out, rest.strip_prefix(b" ").unwrap_or(rest))
}

/// Run a lister on `tar`; its stdout, or its complaint.
fn list(cmd: &mut Command, tar: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = cmd
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    // A lister that stops early closes its end; that is its answer, not an error here.
    let _ = stdin.write_all(tar);
    drop(stdin);
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    // A warning alone (GNU tar's "A lone zero block") is not a different reading.
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
    }
    Ok(o.stdout)
}

fn parse_num<T: std::str::FromStr>(b: &[u8]) -> Result<T, String> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("unexpected number {:?}", String::from_utf8_lossy(b)))
}

/// GNU tar's listing (`tar -tv --numeric-owner`), or its complaint when it fails.
pub fn gnu_tar_rows(tar: &[u8]) -> Result<Vec<RefRow>, String> {
    let out = list(
        Command::new("tar").args(["--numeric-owner", "--quoting-style=literal", "-tvf", "-"]),
        tar,
    )?;
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (f, rest) = fields(l, 5);
            let letter = f[0][0] as char;
            let ids = std::str::from_utf8(f[1]).map_err(|e| e.to_string())?;
            let (u, g) = ids.split_once('/').ok_or("no uid/gid")?;
            let size = if letter == '-' { parse_num(f[2])? } else { 0 };
            let (path, link, letter) = split_link(rest, letter);
            Ok((
                letter,
                mode_bits(f[0]),
                parse_num(u.as_bytes())?,
                parse_num(g.as_bytes())?,
                size,
                trim_slashes(path),
                link,
            ))
        })
        .collect()
}

/// bsdtar's listing, with hard links as `h` rows (bsdtar shows them with their target's type).
pub fn bsdtar_rows(tar: &[u8]) -> Result<Vec<RefRow>, String> {
    let out = list(
        Command::new("bsdtar").args(["--numeric-owner", "-tvf", "-"]),
        tar,
    )?;
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (f, rest) = fields(l, 8);
            let letter = f[0][0] as char;
            let size = if letter == '-' { parse_num(f[4])? } else { 0 };
            let (path, link, letter) = split_link(rest, letter);
            let size = if letter == 'h' { 0 } else { size };
            Ok((
                letter,
                mode_bits(f[0]),
                parse_num(f[2])?,
                parse_num(f[3])?,
                size,
                trim_slashes(unescape(&path)),
                link.map(|l| unescape(&l)),
            ))
        })
        .collect()
}

/// bsdtar writes non-printable bytes as `\ooo` and a backslash as `\\`.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && s.get(i + 1..i + 4)
                .is_some_and(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)))
        {
            let o = std::str::from_utf8(&s[i + 1..i + 4]).expect("octal digits");
            out.push(u8::from_str_radix(o, 8).unwrap_or(b'?'));
            i += 4;
        } else if s[i] == b'\\' && s.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Whether `name` is on `$PATH`.
pub fn have(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
}

/// Every available reference's reading of `tar` (name, rows or complaint), for explaining why
/// layerstore refuses an archive.
pub fn reference_readings(tar: &[u8], go: Option<&GoTar>) -> Vec<(&'static str, Listed)> {
    let mut out = Vec::new();
    if have("tar") {
        out.push(("GNU tar", gnu_tar_rows(tar)));
    }
    if have("bsdtar") {
        out.push(("bsdtar", bsdtar_rows(tar)));
    }
    if let Some(go) = go {
        out.push(("Go archive/tar", go_rows(&go.list(tar))));
    }
    out
}

/// A sentence saying how the references read `tar`: which disagree, or that all refuse it.
pub fn explain_disagreement(readings: &[(&'static str, Listed)]) -> String {
    let mut groups: Vec<(Vec<&str>, &Listed)> = Vec::new();
    for (name, r) in readings {
        let same = |other: &Listed| match (r, other) {
            (Ok(a), Ok(b)) => a == b,
            (Err(_), Err(_)) => true,
            _ => false,
        };
        match groups.iter_mut().find(|(_, o)| same(o)) {
            Some(g) => g.0.push(name),
            None => groups.push((vec![name], r)),
        }
    }
    let describe = |r: &Listed| match r {
        Ok(rows) => format!(
            "list {:?}",
            rows.iter()
                .map(|r| match &r.6 {
                    Some(l) => format!(
                        "{}{} -> {}",
                        r.0,
                        String::from_utf8_lossy(&r.5),
                        String::from_utf8_lossy(l)
                    ),
                    None => format!(
                        "{}{} {}/{} {:o}",
                        r.0,
                        String::from_utf8_lossy(&r.5),
                        r.2,
                        r.3,
                        r.1
                    ),
                })
                .collect::<Vec<_>>()
        ),
        Err(e) => format!("refuse it ({e})"),
    };
    groups
        .iter()
        .map(|(names, r)| format!("{} {}", names.join(" and "), describe(r)))
        .collect::<Vec<_>>()
        .join("; ")
}
