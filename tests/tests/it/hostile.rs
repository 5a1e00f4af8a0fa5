//! Hostile and malformed input: every case gets either a typed rejection that names the entry or
//! digest and leaves nothing behind, or an acceptance whose tree stays inside the image root.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::common::*;
use layerstore_import::Error;
use layerstore_store::{CheckoutOptions, EntryKind, Limits, Store, StoreOptions};
use layerstore_tests::{
    Compression, Entry, GoEntry, GoTar, ImageSpec, Layer, LayerBuilder, OciLayout, RawHeader,
    RawTar, TarFormat, explain_disagreement, reference_readings,
};

/// What a case must produce.
#[derive(Clone, Copy)]
enum Verdict {
    /// Rejected; the message contains this text.
    Reject(&'static str),
    /// Accepted; these paths exist in the merged tree and these do not.
    Accept {
        has: &'static [&'static str],
        lacks: &'static [&'static str],
    },
}
use Verdict::*;

fn tar(entries: Vec<Entry>, format: TarFormat) -> Vec<u8> {
    LayerBuilder::new(format).with_entries(entries).tar_bytes()
}

type Tamper = Box<dyn Fn(&Path, &layerstore_tests::WrittenImage)>;

/// One row of the hostile table: layers (bottom first), what must come of them, and how to run
/// them.
struct Case {
    name: String,
    layers: Vec<Vec<u8>>,
    verdict: Verdict,
    /// Each compression is a run of its own (gzip alone unless the case says otherwise).
    compressions: Vec<Compression>,
    opts: StoreOptions,
    /// Edits the OCI layout after it is written (broken blobs, documents).
    tamper: Option<Tamper>,
    /// Why a refused case is refused when the tar readers agree on it (runtimes disagree on
    /// how to apply it).
    because: Option<&'static str>,
}

impl Case {
    fn new(name: impl Into<String>, layers: Vec<Vec<u8>>, verdict: Verdict) -> Self {
        Case {
            name: name.into(),
            layers,
            verdict,
            compressions: vec![Compression::Gzip],
            opts: StoreOptions::default(),
            tamper: None,
            because: None,
        }
    }

    fn because(mut self, why: &'static str) -> Self {
        self.because = Some(why);
        self
    }

    fn compressions(mut self, c: &[Compression]) -> Self {
        self.compressions = c.to_vec();
        self
    }

    /// Plain, gzip and zstd: for cases where the stream's end (padding, trailers) or its
    /// length is what the case is about.
    fn every_compression(self) -> Self {
        self.compressions(&[Compression::None, Compression::Gzip, Compression::Zstd])
    }

    fn opts(mut self, opts: StoreOptions) -> Self {
        self.opts = opts;
        self
    }

    fn tamper(mut self, f: impl Fn(&Path, &layerstore_tests::WrittenImage) + 'static) -> Self {
        self.tamper = Some(Box::new(f));
        self
    }

    /// Run the case once per compression, then compare with Go's archive/tar: an accepted
    /// one-layer image must be the layer as Go reads it; a refused tar is explained by how the
    /// references read it.
    fn check(self) {
        for &c in &self.compressions {
            self.run(c);
        }
        let Some(go) = go() else { return };
        if self.tamper.is_some() {
            return;
        }
        match self.verdict {
            Accept { .. } => {
                for (i, l) in self.layers.iter().enumerate() {
                    let listing = go.list(l);
                    assert_eq!(
                        listing.error, None,
                        "{}: Go refuses layer {i}, which layerstore accepts",
                        self.name
                    );
                }
            }
            Reject(_) => {
                let why = self
                    .layers
                    .iter()
                    .map(|l| explain_disagreement(&reference_readings(l, Some(go))))
                    .collect::<Vec<_>>()
                    .join(" | ");
                match self.because {
                    Some(b) => eprintln!("{}: refused: {b}; the tar references: {why}", self.name),
                    None => eprintln!("{}: refused; the references: {why}", self.name),
                }
            }
        }
    }

    /// Import the case into a fresh store, check the verdict, then check that nothing leaked: a
    /// canary beside the checkout is untouched, fsck is clean, no staging is left.
    fn run(&self, compression: Compression) {
        let name = format!("{} ({compression:?})", self.name);
        let tmp = tempfile::tempdir().unwrap();
        let canary = tmp.path().join("canary");
        std::fs::create_dir_all(canary.join("etc")).unwrap();
        std::fs::write(canary.join("etc/passwd"), "root:x:0:0\n").unwrap();
        let before = snapshot(tmp.path());
        let oci = tmp.path().join("oci");
        let mut layout = OciLayout::create(&oci).unwrap();
        let spec = ImageSpec::new(
            self.layers
                .iter()
                .map(|t| Layer::new(t.clone(), compression))
                .collect(),
        );
        let written = layout.add_image("case", &spec).unwrap();
        if let Some(t) = &self.tamper {
            t(&oci, &written);
        }
        let store = Store::init(&tmp.path().join("store"), &self.opts).unwrap();
        let res = import(&store, &format!("oci:{}:case", oci.display()));
        match (self.verdict, res) {
            (Reject(text), Err(e)) => {
                let msg = format!("{e:#}");
                let chain =
                    std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join(": ");
                assert!(
                    chain.contains(text),
                    "{name}: error {chain:?} does not mention {text:?} ({msg})"
                );
                assert!(
                    store.images().unwrap().is_empty(),
                    "{name}: an image ref was published"
                );
                assert!(
                    store.refs(None).unwrap().is_empty(),
                    "{name}: refs were published"
                );
            }
            (Reject(text), Ok(_)) => {
                panic!("{name}: accepted, expected a rejection mentioning {text:?}")
            }
            (Accept { .. }, Err(e)) => panic!("{name}: rejected: {e:#}"),
            (Accept { has, lacks }, Ok(_)) => {
                let img = store.resolve_image("case").unwrap();
                let tree = store.merged_tree(&img).unwrap();
                for p in has {
                    assert!(
                        tree.entries.contains_key(p.as_bytes()),
                        "{name}: {p} missing; tree: {:?}",
                        tree.entries
                            .keys()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                            .collect::<Vec<_>>()
                    );
                }
                for p in lacks {
                    assert!(
                        !tree.entries.contains_key(p.as_bytes()),
                        "{name}: {p} present"
                    );
                }
                let dest = tmp.path().join("checkout");
                store
                    .checkout(&tree, &dest, &CheckoutOptions::default())
                    .unwrap_or_else(|e| panic!("{name}: checkout: {e}"));
                if let (Some(go), [layer], None) = (go(), &self.layers[..], &self.tamper) {
                    assert_image_is_what_go_reads(&name, go, layer, &tree, &dest);
                }
                // Round trip: every layer exports to its diff_id.
                for l in &img.layers {
                    let mut out = Vec::new();
                    store.export_layer_tar(&l.diff_id, &mut out).unwrap();
                    assert_eq!(
                        layerstore_store::Digest::of(&out),
                        l.diff_id,
                        "{name}: round trip"
                    );
                }
                std::fs::remove_dir_all(&dest).unwrap();
            }
        }
        assert_sound(&store);
        drop(store);
        std::fs::remove_dir_all(tmp.path().join("store")).unwrap();
        std::fs::remove_dir_all(&oci).unwrap();
        assert_eq!(
            snapshot(tmp.path()),
            before,
            "{name}: something was written outside the store"
        );
    }
}

/// A name as containerd roots it: components without `.` and empty ones; `None` with `..`
/// (layerstore refuses those names, so an accepted layer has none).
fn rooted(name: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => out.push(c),
        }
    }
    Some(out.join(&b'/'))
}

/// A one-layer image's merged tree (layerstore's `ls -R`) and its checkout hold exactly the
/// entries Go's archive/tar reads from the layer, with their types, modes, owners, times, link
/// targets, device numbers and contents. Entries written through a symlink of the same layer are
/// left to the symlink cases' own checks (their place depends on resolution, not on reading).
fn assert_image_is_what_go_reads(
    name: &str,
    go: &GoTar,
    layer: &[u8],
    tree: &layerstore_store::MergedTree,
    dest: &Path,
) {
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    let listing = go.list(layer);
    assert_eq!(listing.error, None, "{name}: Go refuses a layer we accept");
    let mut model: BTreeMap<Vec<u8>, GoEntry> = BTreeMap::new();
    let mut through_symlink = false;
    // Whiteouts and opaque markers: docker and containerd create their missing parents.
    let mut markers = Vec::new();
    for e in listing.entries.iter().filter(|e| e.typeflag != b'g') {
        let path = rooted(&e.name).expect("accepted names have no '..'");
        let is_whiteout = path.split(|&b| b == b'/').any(|c| c.starts_with(b".wh."));
        if is_whiteout {
            markers.push(path);
            continue;
        }
        if path.is_empty() {
            continue;
        }
        let mut parent = Vec::new();
        let mut via_link = false;
        for c in path
            .split(|&b| b == b'/')
            .collect::<Vec<_>>()
            .split_last()
            .unwrap()
            .1
        {
            parent = layerstore_store::tree::join(&parent, c);
            via_link |= model.get(&parent).is_some_and(|p| p.typeflag != b'5');
        }
        if via_link {
            through_symlink = true;
            continue;
        }
        let mut e = e.clone();
        if e.typeflag == b'1' {
            let target = rooted(&e.link).expect("accepted link targets have no '..'");
            let t = &model[&target];
            e.sha256 = t.sha256.clone();
            e.link = target;
        }
        // A replaced entry takes its subtree with it, unless a directory replaces a directory.
        if model
            .get(&path)
            .is_some_and(|o| !(o.typeflag == b'5' && e.typeflag == b'5'))
        {
            let mut below = path.clone();
            below.push(b'/');
            let doomed: Vec<Vec<u8>> = model
                .range(below.clone()..)
                .take_while(|(k, _)| k.starts_with(&below))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                model.remove(&k);
            }
        }
        model.insert(path, e);
    }
    let sha = |p: &Path| {
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            std::fs::read(p).unwrap(),
        ))
    };
    for (path, g) in &model {
        let shown = String::from_utf8_lossy(path);
        let t = tree
            .entries
            .get(path)
            .unwrap_or_else(|| panic!("{name}: Go reads {shown}, the image lacks it"));
        let kind = match g.typeflag {
            b'0' | 0 => EntryKind::Regular,
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'5' => EntryKind::Directory,
            b'6' => EntryKind::Fifo,
            t => panic!("{name}: Go reads {shown} as type {t:#x}, which layerstore accepted"),
        };
        assert_eq!(t.kind, kind, "{name}: {shown}: type");
        assert_eq!(i64::from(t.mode), g.mode & 0o7777, "{name}: {shown}: mode");
        assert_eq!(
            (t.uid as i64, t.gid as i64),
            (g.uid, g.gid),
            "{name}: {shown}: owner"
        );
        assert_eq!(
            (t.mtime, t.mtime_nsec),
            (g.mtime, g.mtime_nsec),
            "{name}: {shown}: mtime"
        );
        assert_eq!(t.xattrs, g.xattrs, "{name}: {shown}: xattrs");
        let on_disk = dest.join(std::ffi::OsStr::from_bytes(path));
        match kind {
            EntryKind::Symlink => {
                assert_eq!(
                    t.link.as_deref(),
                    Some(&g.link[..]),
                    "{name}: {shown}: target"
                );
                let l = std::fs::read_link(&on_disk).unwrap();
                assert_eq!(
                    l.as_os_str().as_bytes(),
                    &g.link[..],
                    "{name}: {shown}: checkout"
                );
            }
            EntryKind::Regular | EntryKind::Hardlink => {
                assert_eq!(sha(&on_disk), g.sha256, "{name}: {shown}: content");
                // The link's first member may be gone (replaced later in the layer).
                if kind == EntryKind::Hardlink && model.contains_key(&g.link) {
                    let first = dest.join(std::ffi::OsStr::from_bytes(&g.link));
                    assert_eq!(
                        std::fs::metadata(&on_disk).unwrap().ino(),
                        std::fs::metadata(first).unwrap().ino(),
                        "{name}: {shown}: hard link"
                    );
                }
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                assert_eq!(
                    (i64::from(t.dev_major), i64::from(t.dev_minor)),
                    (g.dev_major, g.dev_minor),
                    "{name}: {shown}: device"
                );
            }
            EntryKind::Directory => {
                assert!(
                    std::fs::symlink_metadata(&on_disk).unwrap().is_dir(),
                    "{name}: {shown}"
                );
            }
            _ => {}
        }
    }
    if !through_symlink {
        let mut ancestors = std::collections::HashSet::new();
        for k in model.keys().chain(&markers) {
            ancestors.insert(Vec::new());
            for (i, &b) in k.iter().enumerate() {
                if b == b'/' {
                    ancestors.insert(k[..i].to_vec());
                }
            }
        }
        for (path, t) in &tree.entries {
            let implicit = ancestors.contains(path);
            assert!(
                model.contains_key(path) || (t.kind == EntryKind::Directory && implicit),
                "{name}: the image has {}, which Go does not read",
                String::from_utf8_lossy(path)
            );
        }
    }
}

fn raw_file(name: &[u8], data: &[u8]) -> Vec<u8> {
    RawTar::new()
        .header(
            &RawHeader::ustar(b'0')
                .name(name)
                .size(data.len() as u64)
                .mode(0o644),
        )
        .data(data)
        .end()
        .finish_record()
}

#[test]
fn names_stay_inside_the_root() {
    Case::new(
        "dotdot in ustar name",
        vec![raw_file(b"../escape", b"x")],
        Reject("'..'"),
    )
    .check();
    Case::new(
        "dotdot inside a path",
        vec![raw_file(b"a/../../escape", b"x")],
        Reject("'..'"),
    )
    .check();
    Case::new(
        "dotdot through PAX path",
        vec![
            RawTar::new()
                .pax([("path", "../../etc/passwd")])
                .header(&RawHeader::ustar(b'0').name(b"harmless").size(1))
                .data(b"x")
                .end()
                .finish_record(),
        ],
        Reject("'..'"),
    )
    .check();
    Case::new(
        "dotdot through a GNU long name",
        vec![
            RawTar::new()
                .gnu_long_name(format!("{}/../../../x", "d".repeat(120)).as_bytes())
                .header(&RawHeader::gnu(b'0').name(b"short").size(1))
                .data(b"x")
                .end()
                .finish_record(),
        ],
        Reject("'..'"),
    )
    .check();
    Case::new(
        "absolute names are rooted",
        vec![raw_file(b"/etc/passwd", b"img")],
        Accept {
            has: &["etc/passwd"],
            lacks: &[],
        },
    )
    .check();
    Case::new(
        "NUL in a PAX path",
        vec![
            RawTar::new()
                .pax([(&b"path"[..], &b"a\0b"[..])])
                .header(&RawHeader::ustar(b'0').name(b"x").size(0))
                .end()
                .finish_record(),
        ],
        Reject("NUL"),
    )
    .check();
    Case::new(
        "component over 255 bytes",
        vec![tar(vec![Entry::file("x".repeat(256), "x")], TarFormat::Pax)],
        Reject("too long"),
    )
    .check();
    let deep: String = (0..300).map(|_| "d/").collect::<String>() + "f";
    Case::new(
        "nested too deeply",
        vec![tar(vec![Entry::file(deep, "x")], TarFormat::Pax)],
        Reject("nested too deeply"),
    )
    .check();
    Case::new(
        "root replaced by a symlink",
        vec![tar(vec![Entry::symlink("./", "/etc")], TarFormat::Pax)],
        Reject("root must be a directory"),
    )
    .check();
    Case::new(
        "empty name",
        vec![raw_file(b"", b"x")],
        Reject("root must be a directory"),
    )
    .check();
}

#[test]
fn symlinks_resolve_inside_the_root() {
    Case::new(
        "write through an absolute symlink",
        vec![tar(
            vec![
                Entry::dir("etc"),
                Entry::symlink("x", "/etc"),
                Entry::file("x/passwd", "img"),
            ],
            TarFormat::Pax,
        )],
        Accept {
            has: &["etc/passwd", "x"],
            lacks: &["x/passwd"],
        },
    )
    .check();
    Case::new(
        "write through a dotdot symlink",
        vec![tar(
            vec![Entry::symlink("s", ".."), Entry::file("s/a/b", "img")],
            TarFormat::Pax,
        )],
        Accept {
            has: &["a/b", "s"],
            lacks: &[],
        },
    )
    .check();
    Case::new(
        "symlink in a lower layer",
        vec![
            tar(
                vec![Entry::symlink("lib", "usr/lib"), Entry::dir("usr/lib")],
                TarFormat::Gnu,
            ),
            tar(vec![Entry::file("lib/libc.so", "c")], TarFormat::Gnu),
        ],
        Accept {
            has: &["usr/lib/libc.so", "lib"],
            lacks: &["lib/libc.so"],
        },
    )
    .check();
    Case::new(
        "symlink then a file at the same path",
        vec![tar(
            vec![
                Entry::symlink("p", "/etc/shadow"),
                Entry::file("p", "plain"),
            ],
            TarFormat::Pax,
        )],
        Accept {
            has: &["p"],
            lacks: &["etc/shadow", "etc"],
        },
    )
    .check();
    Case::new(
        "symlink loop",
        vec![tar(
            vec![
                Entry::symlink("a", "b"),
                Entry::symlink("b", "a"),
                Entry::file("a/x", "x"),
            ],
            TarFormat::Pax,
        )],
        Reject("too many levels of symbolic links"),
    )
    .check();
    Case::new(
        "whiteout through a symlinked parent",
        vec![
            tar(
                vec![
                    Entry::dir("real"),
                    Entry::file("real/f", "1"),
                    Entry::symlink("link", "real"),
                ],
                TarFormat::Pax,
            ),
            tar(vec![Entry::whiteout("link/f")], TarFormat::Pax),
        ],
        Accept {
            has: &["real", "link"],
            lacks: &["real/f"],
        },
    )
    .check();
}

#[test]
fn hard_links_name_earlier_entries_of_the_layer() {
    Case::new(
        "hard link to an absolute path",
        vec![tar(
            vec![Entry::hardlink("l", "/etc/passwd")],
            TarFormat::Pax,
        )],
        Reject("not earlier in this layer"),
    )
    .check();
    Case::new(
        "hard link with dotdot",
        vec![tar(
            vec![Entry::file("a", "x"), Entry::hardlink("l", "../a")],
            TarFormat::Pax,
        )],
        Reject("'..'"),
    )
    .check();
    Case::new(
        "hard link to itself",
        vec![tar(vec![Entry::hardlink("l", "l")], TarFormat::Pax)],
        Reject("hard link to itself"),
    )
    .check();
    Case::new(
        "hard link to a directory",
        vec![tar(
            vec![Entry::dir("d"), Entry::hardlink("l", "d")],
            TarFormat::Pax,
        )],
        Reject("hard link to a directory"),
    )
    .check();
    Case::new(
        "forward reference",
        vec![tar(
            vec![Entry::hardlink("l", "later"), Entry::file("later", "x")],
            TarFormat::Pax,
        )],
        Reject("not earlier in this layer"),
    )
    .check();
    Case::new(
        "absolute hard link to an earlier file",
        vec![tar(
            vec![Entry::file("etc/a", "x"), Entry::hardlink("b", "/etc/a")],
            TarFormat::Pax,
        )],
        Accept {
            has: &["etc/a", "b"],
            lacks: &[],
        },
    )
    .check();
}

#[test]
fn tar_format_abuse() {
    let good = RawHeader::ustar(b'0').name(b"f").size(3);
    Case::new(
        "bad header checksum",
        vec![
            RawTar::new()
                .header(&good.clone().cksum_delta(1))
                .data(b"abc")
                .end()
                .finish_record(),
        ],
        Reject("checksum"),
    )
    .check();
    Case::new(
        "unknown type flag",
        vec![
            RawTar::new()
                .header(&RawHeader::ustar(b'Z').name(b"f").size(0))
                .end()
                .finish_record(),
        ],
        Reject("unknown entry type"),
    )
    .check();
    Case::new(
        "GNU sparse entry",
        vec![
            RawTar::new()
                .header(&RawHeader::gnu(b'S').name(b"f").size(0))
                .end()
                .finish_record(),
        ],
        Reject("sparse"),
    )
    .check();
    Case::new(
        "truncated data",
        vec![
            RawTar::new()
                .header(&RawHeader::ustar(b'0').name(b"f").size(5000))
                .bytes(b"short")
                .finish(),
        ],
        Reject("truncated"),
    )
    .check();
    Case::new(
        "PAX size wins over the header",
        vec![
            RawTar::new()
                .pax([("size", "5")])
                .header(&RawHeader::ustar(b'0').name(b"f").size(1))
                .data(b"hello")
                .end()
                .finish_record(),
        ],
        Accept {
            has: &["f"],
            lacks: &[],
        },
    )
    .check();
    Case::new(
        "junk after the end of the archive",
        vec![
            RawTar::new()
                .header(&good)
                .data(b"abc")
                .end()
                .bytes(b"trailing junk")
                .finish(),
        ],
        Reject("only zero bytes may follow the end-of-archive marker"),
    )
    .every_compression()
    .check();
    Case::new(
        "global PAX header",
        vec![
            RawTar::new()
                .global_pax([("comment", "hi")])
                .header(&good)
                .data(b"abc")
                .end()
                .finish_record(),
        ],
        Accept {
            has: &["f"],
            lacks: &[],
        },
    )
    .check();
    Case::new(
        "extension header at the end",
        vec![RawTar::new().pax([("path", "x")]).end().finish_record()],
        Reject("extension header"),
    )
    .check();
    Case::new(
        "oversized PAX record",
        vec![
            RawTar::new()
                .pax([("comment".to_string(), "x".repeat(2 << 20))])
                .header(&good)
                .data(b"abc")
                .end()
                .finish_record(),
        ],
        Reject("too large"),
    )
    .check();
    Case::new(
        "uid beyond 32 bits",
        vec![
            RawTar::new()
                .pax([("uid", "4294967296")])
                .header(&good)
                .data(b"abc")
                .end()
                .finish_record(),
        ],
        Reject("32 bits"),
    )
    .check();
    Case::new(
        "base-256 uid",
        vec![{
            let mut h = RawHeader::gnu(b'0').name(b"f").size(3);
            h.set_base256(layerstore_tests::Field::Uid, 1 << 40);
            RawTar::new().header(&h).data(b"abc").end().finish_record()
        }],
        Reject("32 bits"),
    )
    .check();
    Case::new(
        "malformed PAX record",
        vec![
            RawTar::new()
                .pax_typed(b'x', b"p", b"99 path=x\n")
                .header(&good)
                .data(b"abc")
                .end()
                .finish_record(),
        ],
        Reject("PAX"),
    )
    .check();
}

/// `entry "/NAME": RULE`, as a refusal names the entry and the rule it breaks.
macro_rules! refusal {
    ($entry:literal, $rule:literal) => {
        concat!("entry \"/", $entry, "\": ", $rule)
    };
}

const NO_DATA: &str = "an entry without data must declare size 0";

#[test]
fn entries_without_data_declaring_a_size_are_refused() {
    let hidden = RawHeader::ustar(b'0').name(b"hidden").size(0);
    for (kind, header) in [
        ("symlink", RawHeader::ustar(b'2').name(b"e").linkname(b"t")),
        ("directory", RawHeader::ustar(b'5').name(b"e")),
        (
            "char device",
            RawHeader::ustar(b'3').name(b"e").devmajor(1).devminor(3),
        ),
        (
            "block device",
            RawHeader::ustar(b'4').name(b"e").devmajor(8),
        ),
        ("fifo", RawHeader::ustar(b'6').name(b"e")),
    ] {
        Case::new(
            format!("{kind} with a size field"),
            vec![
                RawTar::new()
                    .header(&header.clone().size(512))
                    .header(&hidden)
                    .end()
                    .finish_record(),
            ],
            Reject(refusal!("e", "an entry without data must declare size 0")),
        )
        .check();
        Case::new(
            format!("{kind} with a PAX size"),
            vec![
                RawTar::new()
                    .pax([("size", "512")])
                    .header(&header)
                    .header(&hidden)
                    .end()
                    .finish_record(),
            ],
            Reject(NO_DATA),
        )
        .check();
    }
    Case::new(
        "hard link with a size field",
        vec![
            RawTar::new()
                .header(&RawHeader::ustar(b'0').name(b"f").size(1))
                .data(b"x")
                .header(&RawHeader::ustar(b'1').name(b"h").linkname(b"f").size(512))
                .header(&hidden)
                .end()
                .finish_record(),
        ],
        Reject(refusal!("h", "an entry without data must declare size 0")),
    )
    .check();
    Case::new(
        "entries without data declaring size 0",
        vec![tar(
            vec![
                Entry::dir("d"),
                Entry::file("d/f", "x"),
                Entry::symlink("s", "d/f"),
                Entry::hardlink("h", "d/f"),
                Entry::fifo("p"),
            ],
            TarFormat::Pax,
        )],
        Accept {
            has: &["d/f", "s", "h", "p"],
            lacks: &["hidden"],
        },
    )
    .check();
}

#[test]
fn stacked_name_extensions_are_refused_and_single_ones_accepted() {
    let file = || RawHeader::gnu(b'0').name(b"short").size(0);
    let link = || RawHeader::gnu(b'2').name(b"l").linkname(b"t");
    const STACKED: &str = "one entry may have one name and one link extension";
    let cases = [
        (
            "PAX path and GNU long name",
            RawTar::new()
                .pax([("path", "from-pax")])
                .gnu_long_name(b"from-gnu")
                .header(&file()),
        ),
        (
            "PAX linkpath and GNU long link",
            RawTar::new()
                .gnu_long_link(b"gnu-target")
                .pax([("linkpath", "pax-target")])
                .header(&link()),
        ),
        (
            "two GNU long names",
            RawTar::new()
                .gnu_long_name(b"first")
                .gnu_long_name(b"second")
                .header(&file()),
        ),
        (
            "two GNU long links",
            RawTar::new()
                .gnu_long_link(b"first")
                .gnu_long_link(b"second")
                .header(&link()),
        ),
        (
            "two PAX headers",
            RawTar::new()
                .pax([("path", "first")])
                .pax([("path", "second")])
                .header(&file()),
        ),
    ];
    for (name, t) in cases {
        Case::new(name, vec![t.end().finish_record()], Reject(STACKED)).check();
    }
    let long = format!("{}/file", "n".repeat(150));
    let long: &'static str = Box::leak(long.into_boxed_str());
    for (name, t) in [
        (
            "one GNU long name",
            RawTar::new().gnu_long_name(long.as_bytes()).header(&file()),
        ),
        (
            "one PAX path",
            RawTar::new().pax([("path", long)]).header(&file()),
        ),
        (
            "a GNU long name and a PAX uid",
            RawTar::new()
                .gnu_long_name(long.as_bytes())
                .pax([("uid", "1000")])
                .header(&file()),
        ),
        (
            "a GNU long name and a PAX linkpath",
            RawTar::new()
                .gnu_long_name(long.as_bytes())
                .pax([("linkpath", "target")])
                .header(&link()),
        ),
    ] {
        Case::new(
            name,
            vec![t.end().finish_record()],
            Accept {
                has: &[],
                lacks: &["short", "l"],
            },
        )
        .check();
    }
}

#[test]
fn only_zero_bytes_may_follow_the_end_of_archive() {
    let body = || {
        RawTar::new()
            .header(&RawHeader::ustar(b'0').name(b"f").size(3))
            .data(b"abc")
    };
    Case::new(
        "zero padding after the end marker",
        vec![body().end().zero_blocks(2000).bytes(&[0; 100]).finish()],
        Accept {
            has: &["f"],
            lacks: &[],
        },
    )
    .every_compression()
    .check();
    // Past the old 16 MiB limit, and past what the skeleton keeps raw (1 MiB): the rest is a
    // zero run, and the export still rebuilds the diff_id (checked for every accepted case).
    Case::new(
        "zero padding longer than 16 MiB",
        vec![body().end().zero_blocks(17 << 11).bytes(&[0; 100]).finish()],
        Accept {
            has: &["f"],
            lacks: &[],
        },
    )
    .every_compression()
    .check();
    Case::new(
        "a non-zero byte after 17 MiB of zero padding",
        vec![body().end().zero_blocks(17 << 11).bytes(b"\x01").finish()],
        Reject("only zero bytes may follow the end-of-archive marker"),
    )
    .check();
    Case::new(
        "one zero block, then the end of the stream",
        vec![body().zero_blocks(1).finish()],
        Accept {
            has: &["f"],
            lacks: &[],
        },
    )
    .every_compression()
    .check();
    Case::new(
        "a header after the end marker",
        vec![
            body()
                .end()
                .header(&RawHeader::ustar(b'0').name(b"hidden").size(0))
                .end()
                .finish_record(),
        ],
        Reject("only zero bytes may follow the end-of-archive marker"),
    )
    .every_compression()
    .check();
    Case::new(
        "a non-zero byte deep in the padding",
        vec![
            body()
                .end()
                .zero_blocks(100)
                .bytes(b"\x01")
                .zero_blocks(1)
                .finish(),
        ],
        Reject("only zero bytes may follow the end-of-archive marker"),
    )
    .every_compression()
    .check();
    Case::new(
        "a zero block, then a header",
        vec![
            body()
                .zero_blocks(1)
                .header(&RawHeader::ustar(b'0').name(b"hidden").size(0))
                .end()
                .finish_record(),
        ],
        Reject("a zero block followed by a non-zero block"),
    )
    .every_compression()
    .check();
    Case::new(
        "zero padding over the layer-bytes limit",
        vec![body().end().zero_blocks(4096).finish()],
        Reject("exceeds the limit"),
    )
    .every_compression()
    .opts(limits(|l| l.max_layer_bytes = 1 << 20))
    .check();
}

#[test]
fn whiteouts_resolve_their_parent_inside_the_image_like_containerd() {
    let lower = || {
        tar(
            vec![
                Entry::dir("real"),
                Entry::file("real/x", "1"),
                Entry::file("real/y", "2"),
                Entry::symlink("rel", "real"),
                Entry::symlink("abs", "/real"),
                Entry::symlink("up", "../../../real"),
                Entry::dir("etc"),
                Entry::file("etc/passwd", "image passwd"),
            ],
            TarFormat::Pax,
        )
    };
    for (link, marker) in [("rel", "whiteout"), ("abs", "whiteout"), ("up", "whiteout")] {
        Case::new(
            format!("{marker} through the {link} symlink"),
            vec![
                lower(),
                tar(vec![Entry::whiteout(format!("{link}/x"))], TarFormat::Pax),
            ],
            Accept {
                has: &["real/y", "rel", "abs", "up", "etc/passwd"],
                lacks: &["real/x"],
            },
        )
        .check();
    }
    for link in ["rel", "abs"] {
        Case::new(
            format!("opaque marker through the {link} symlink"),
            vec![
                lower(),
                tar(
                    vec![Entry::opaque(link), Entry::file(format!("{link}/new"), "3")],
                    TarFormat::Pax,
                ),
            ],
            Accept {
                has: &["real", "real/new", "rel", "abs", "etc/passwd"],
                lacks: &["real/x", "real/y"],
            },
        )
        .check();
    }
    Case::new(
        "whiteout of the symlink itself",
        vec![lower(), tar(vec![Entry::whiteout("abs")], TarFormat::Pax)],
        Accept {
            has: &["real/x", "rel"],
            lacks: &["abs"],
        },
    )
    .check();
    Case::new(
        "whiteout through a symlink to the root's parent",
        vec![
            tar(
                vec![
                    Entry::symlink("escape", "/.."),
                    Entry::dir("etc"),
                    Entry::file("etc/passwd", "image passwd"),
                ],
                TarFormat::Pax,
            ),
            tar(vec![Entry::whiteout("escape/etc/passwd")], TarFormat::Pax),
        ],
        Accept {
            has: &["escape", "etc"],
            lacks: &["etc/passwd"],
        },
    )
    .check();
}

/// Where runtimes agree, so do we: docker (`MkdirAll`) and containerd (`mkparent`) create the
/// missing parents of a whiteout or opaque marker. Where they do not (a marker under a symlink
/// its own layer creates or replaces: docker and containerd's naive applier resolve it when the
/// stream reaches it, containerd's overlay applier in the layer's own directory), the layer is
/// refused, naming the marker.
#[test]
fn whiteouts_agree_with_runtimes_or_are_refused() {
    let lower = || {
        tar(
            vec![
                Entry::dir("real"),
                Entry::file("real/x", "1"),
                Entry::symlink("old", "real"),
            ],
            TarFormat::Pax,
        )
    };
    Case::new(
        "a whiteout whose parents are missing",
        vec![tar(
            vec![Entry::file("f", "1"), Entry::whiteout("a/b/c")],
            TarFormat::Pax,
        )],
        Accept {
            has: &["f", "a", "a/b"],
            lacks: &["a/b/c"],
        },
    )
    .check();
    Case::new(
        "an opaque marker of a missing directory, over a lower layer",
        vec![
            lower(),
            tar(
                vec![Entry::opaque("o/p"), Entry::whiteout("old/q/r")],
                TarFormat::Pax,
            ),
        ],
        Accept {
            has: &["o", "o/p", "real/x", "real/q", "old"],
            lacks: &["real/q/r"],
        },
    )
    .check();
    for (what, upper) in [
        (
            "a whiteout through a symlink of the same layer",
            vec![Entry::symlink("lnk", "real"), Entry::whiteout("lnk/x")],
        ),
        (
            "a whiteout before the symlink of the same layer it goes through",
            vec![Entry::whiteout("lnk/x"), Entry::symlink("lnk", "/real")],
        ),
        (
            "an opaque marker through a symlink of the same layer",
            vec![Entry::symlink("lnk", "real"), Entry::opaque("lnk")],
        ),
        (
            "a whiteout under a lower symlink the layer replaces by a directory",
            vec![Entry::dir("old"), Entry::whiteout("old/x")],
        ),
    ] {
        Case::new(
            what,
            vec![lower(), tar(upper, TarFormat::Pax)],
            Reject("resolves through a symlink the same layer creates, replaces or removes"),
        )
        .because(
            "the tar readers agree; docker and containerd's naive applier resolve the marker \
             when the stream reaches it (before or after the symlink), containerd's overlay \
             applier in the layer's own directory (no symlink at all)",
        )
        .check();
    }
}

#[test]
fn ambiguous_header_corners_agree_with_go_or_are_refused() {
    let file = || RawHeader::ustar(b'0').name(b"f").size(0);
    let accepted = Accept {
        has: &["f"],
        lacks: &[],
    };
    let one = |h: RawHeader| vec![RawTar::new().header(&h).end().finish_record()];
    let mut small_uid = RawHeader::gnu(b'0').name(b"f");
    small_uid.set_base256(layerstore_tests::Field::Uid, 70_000);
    Case::new("base-256 uid that fits", one(small_uid), accepted).check();
    Case::new(
        "negative base-256 uid",
        one(RawHeader::gnu(b'0')
            .name(b"f")
            .set(layerstore_tests::Field::Uid, &[0xff; 8])),
        Reject(refusal!(
            "f",
            "numeric fields must parse and fit: negative uid"
        )),
    )
    .check();
    Case::new(
        "negative base-256 mtime",
        one(RawHeader::gnu(b'0')
            .name(b"f")
            .set(layerstore_tests::Field::Mtime, &[0xff; 12])),
        accepted,
    )
    .check();
    Case::new(
        "base-256 size over 63 bits",
        one(file().set(
            layerstore_tests::Field::Size,
            &[0x80, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        )),
        Reject("invalid size field"),
    )
    .check();
    Case::new(
        "octal uid with a NUL before its digits",
        one(file().set(layerstore_tests::Field::Uid, b"\0\x001750\0")),
        Reject("invalid uid field"),
    )
    .check();
    Case::new(
        "octal fields padded with spaces",
        one(file()
            .set(layerstore_tests::Field::Mode, b"  644  \0")
            .set(layerstore_tests::Field::Gid, b"    12  ")),
        accepted,
    )
    .check();
    Case::new(
        "invalid device major on a regular file",
        one(file().set(layerstore_tests::Field::DevMajor, b"9999999\0")),
        Reject("invalid device major field"),
    )
    .check();
    Case::new(
        "PAX uid over 64 bits",
        vec![
            RawTar::new()
                .pax([("uid", "99999999999999999999")])
                .header(&file())
                .end()
                .finish_record(),
        ],
        Reject("invalid PAX uid"),
    )
    .check();
    for key in ["path", "size", "uid", "mtime", "SCHILY.xattr.user.a"] {
        Case::new(
            format!("PAX {key} with an empty value"),
            vec![
                RawTar::new()
                    .pax([(key, "")])
                    .header(&file())
                    .end()
                    .finish_record(),
            ],
            Reject("has an empty value"),
        )
        .check();
    }
    Case::new(
        "PAX GNU sparse records",
        vec![
            RawTar::new()
                .pax([("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0")])
                .header(&file())
                .end()
                .finish_record(),
        ],
        Reject("sparse"),
    )
    .check();
    Case::new(
        "uname and gname overrides",
        vec![
            RawTar::new()
                .pax([("uname", "alice"), ("gname", "staff")])
                .header(&file().uid(1000).gid(50).uname(b"bob").gname(b"wheel"))
                .end()
                .finish_record(),
        ],
        accepted,
    )
    .check();
    Case::new(
        "global header between an entry's extensions",
        vec![
            RawTar::new()
                .pax([("uid", "5")])
                .global_pax([("comment", "x")])
                .header(&file())
                .end()
                .finish_record(),
        ],
        Reject("an extension header must precede an entry"),
    )
    .check();
    Case::new(
        "type 7 (contiguous file)",
        one(RawHeader::ustar(b'7').name(b"f")),
        Reject(refusal!("f", "entry types must be supported")),
    )
    .check();
    Case::new(
        "type 0 with a trailing slash",
        one(RawHeader::ustar(b'0').name(b"d/").mode(0o755)),
        Reject("a regular file whose name ends in '/'"),
    )
    .check();
    Case::new(
        "type NUL with a trailing slash is a directory",
        one(RawHeader::ustar(0).name(b"d/").mode(0o755)),
        Accept {
            has: &["d"],
            lacks: &[],
        },
    )
    .check();
    Case::new(
        "GNU header whose atime does not parse",
        one(RawHeader::gnu(b'0').name(b"f").poke(345, b"usr/lib\0")),
        Reject("GNU atime does not parse"),
    )
    .check();
    Case::new(
        "ustar prefix with a non-standard version",
        one(RawHeader::ustar(b'0')
            .name(b"f")
            .prefix(b"usr/share")
            .set(layerstore_tests::Field::Version, b"xx")),
        Accept {
            has: &["usr/share/f"],
            lacks: &["f"],
        },
    )
    .check();
}

#[test]
fn whiteouts_follow_the_layer_rules() {
    Case::new(
        "bare .wh.",
        vec![tar(vec![Entry::file("d/.wh.", "")], TarFormat::Pax)],
        Reject("whiteout names nothing"),
    )
    .check();
    Case::new(
        "whiteout of dotdot",
        vec![tar(vec![Entry::file("d/.wh...", "")], TarFormat::Pax)],
        Reject("whiteout names nothing"),
    )
    .check();
    Case::new(
        "opaque marker after its siblings",
        vec![
            tar(vec![Entry::file("d/old", "1")], TarFormat::Pax),
            tar(
                vec![Entry::file("d/new", "2"), Entry::opaque("d")],
                TarFormat::Pax,
            ),
        ],
        Accept {
            has: &["d", "d/new"],
            lacks: &["d/old"],
        },
    )
    .check();
    // The OCI spec keeps a file its own layer whites out; docker and containerd's naive
    // applier remove it when the whiteout follows it in the stream, their overlay appliers fail
    // (the whiteout device cannot be made over the file): refused. A whiteout before the file
    // removes only the lower one for all of them.
    for (what, upper) in [
        (
            "whiteout after a file of the same name in one layer",
            vec![Entry::file("foo", "new"), Entry::whiteout("foo")],
        ),
        (
            "whiteout after entries below it in one layer",
            vec![Entry::file("d/new", "new"), Entry::whiteout("d")],
        ),
    ] {
        Case::new(
            what,
            vec![
                tar(
                    vec![Entry::file("foo", "old"), Entry::file("d/x", "1")],
                    TarFormat::Pax,
                ),
                tar(upper, TarFormat::Pax),
            ],
            Reject("a whiteout of an entry earlier in its own layer"),
        )
        .because(
            "the tar readers agree; the OCI spec keeps the entry, docker and containerd's \
             naive applier remove it, their overlay appliers fail",
        )
        .check();
    }
    Case::new(
        "whiteout before a file of the same name in one layer",
        vec![
            tar(vec![Entry::file("foo", "old")], TarFormat::Pax),
            tar(
                vec![Entry::whiteout("foo"), Entry::file("foo", "new")],
                TarFormat::Pax,
            ),
        ],
        Accept {
            has: &["foo"],
            lacks: &[],
        },
    )
    .check();
    Case::new(
        "AUFS hard-link directory",
        vec![tar(
            vec![
                Entry::file(".wh..wh.plnk/123.456", "x"),
                Entry::file("a", "a"),
            ],
            TarFormat::Pax,
        )],
        Accept {
            has: &["a"],
            lacks: &[".wh..wh.plnk"],
        },
    )
    .check();
}

#[test]
fn metadata_never_reaches_the_store_as_is() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let t = tar(
        vec![
            Entry::file("su", vec![9u8; 10_000]).mode(0o6755),
            Entry::char_dev("dev/null", 1, 3),
            Entry::block_dev("dev/sda", 8, 0),
            Entry::file("ovl", "x").xattr("trusted.overlay.opaque", "y"),
        ],
        TarFormat::Pax,
    );
    layout
        .add_image("m", &ImageSpec::new(vec![Layer::new(t, Compression::Zstd)]))
        .unwrap();
    let store = new_store(tmp.path());
    import(&store, &format!("oci:{}:m", oci.display())).unwrap();
    let img = store.resolve_image("m").unwrap();
    let tree = store.merged_tree(&img).unwrap();
    assert_eq!(
        tree.entries[&b"su"[..]].mode,
        0o6755,
        "the index keeps the mode"
    );
    assert_eq!(tree.entries[&b"dev/null"[..]].kind, EntryKind::CharDevice);
    // Every loose object is a plain read-only file.
    use std::os::unix::fs::MetadataExt;
    let mut loose = 0;
    for sub in std::fs::read_dir(store.path().join("objects")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let m = std::fs::symlink_metadata(f.unwrap().path()).unwrap();
            assert!(m.file_type().is_file());
            assert_eq!(m.mode() & 0o7777, 0o444);
            loose += 1;
        }
    }
    assert_eq!(loose, 1);
    // Overlay xattrs never become overlay markers in a checkout.
    let dest = tmp.path().join("co");
    store
        .checkout(&tree, &dest, &CheckoutOptions::default())
        .unwrap();
    let names = xattr_names(&dest.join("ovl"));
    assert!(!names.iter().any(|n| n.contains("overlay")), "{names:?}");
    assert_sound(&store);
}

fn xattr_names(p: &Path) -> Vec<String> {
    let out = std::process::Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(p)
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn broken_images_are_rejected_by_digest() {
    let layer = || vec![tar(vec![Entry::file("f", vec![1u8; 4000])], TarFormat::Pax)];
    let blob = |oci: &Path, w: &layerstore_tests::WrittenImage| {
        oci.join("blobs/sha256")
            .join(w.layers[0].blob_digest.trim_start_matches("sha256:"))
    };
    Case::new("flipped byte in a layer blob", layer(), Reject("sha256:"))
        .tamper(move |oci, w| {
            let p = blob(oci, w);
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len() - 10;
            b[n] ^= 0xff;
            std::fs::write(&p, b).unwrap();
        })
        .check();
    Case::new("truncated layer blob", layer(), Reject("sha256:"))
        .tamper(move |oci, w| {
            let p = blob(oci, w);
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() / 2]).unwrap();
        })
        .check();
    Case::new("missing layer blob", layer(), Reject("missing"))
        .tamper(move |oci, w| {
            std::fs::remove_file(blob(oci, w)).unwrap();
        })
        .check();
    Case::new("digest used as a path", layer(), Reject("index.json"))
        .tamper(|oci, _| {
            let p = oci.join("index.json");
            let s = std::fs::read_to_string(&p).unwrap();
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            let d = v["manifests"][0]["digest"].as_str().unwrap().to_string();
            std::fs::write(&p, s.replace(&d, "sha256:../../../../etc/passwd")).unwrap();
        })
        .check();
    Case::new("uppercase digest", layer(), Reject("index.json"))
        .tamper(|oci, _| {
            let p = oci.join("index.json");
            let s = std::fs::read_to_string(&p).unwrap();
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            let d = v["manifests"][0]["digest"].as_str().unwrap().to_string();
            std::fs::write(
                &p,
                s.replace(&d, &d.to_uppercase().replace("SHA256", "sha256")),
            )
            .unwrap();
        })
        .check();
    Case::new("config diff_id mismatch", layer(), Reject("diff_id"))
        .tamper(move |oci, w| {
            // Rewrite the config with another diff_id, then the manifest and index to match.
            let cfg_path = oci
                .join("blobs/sha256")
                .join(w.config_digest.trim_start_matches("sha256:"));
            let cfg = std::fs::read_to_string(&cfg_path).unwrap();
            let bad = cfg.replace(&w.layers[0].diff_id, &format!("sha256:{}", "0".repeat(64)));
            relink(oci, w, &w.config_digest, bad.as_bytes());
        })
        .check();
    Case::new("gzip media type holding zstd", layer(), Reject("promises"))
        .tamper(move |oci, w| {
            let tarball = layerstore_tests::decompress(
                &std::fs::read(blob(oci, w)).unwrap(),
                Compression::Gzip,
            )
            .unwrap();
            let zst = layerstore_tests::compress(&tarball, Compression::Zstd);
            relink(oci, w, &w.layers[0].blob_digest, &zst);
        })
        .check();
    let small = StoreOptions {
        limits: Limits {
            max_layer_bytes: 1 << 20,
            ..Limits::default()
        },
        ..StoreOptions::default()
    };
    Case::new(
        "decompression bomb",
        vec![tar(
            vec![Entry::file("zeros", vec![0u8; 8 << 20])],
            TarFormat::Pax,
        )],
        Reject("exceeds the limit"),
    )
    .opts(small)
    .check();
}

/// Replace blob `old` with `new` content and rewrite the manifest and index.json to point at it.
fn relink(oci: &Path, w: &layerstore_tests::WrittenImage, old: &str, new: &[u8]) {
    let new_digest = layerstore_tests::sha256_digest(new);
    std::fs::write(
        oci.join("blobs/sha256")
            .join(new_digest.trim_start_matches("sha256:")),
        new,
    )
    .unwrap();
    let man_path = oci
        .join("blobs/sha256")
        .join(w.manifest_digest.trim_start_matches("sha256:"));
    let mut man: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&man_path).unwrap()).unwrap();
    let obj = man.as_object_mut().unwrap();
    let mut descs: Vec<&mut serde_json::Value> = Vec::new();
    for (k, v) in obj.iter_mut() {
        match k.as_str() {
            "config" => descs.push(v),
            "layers" => descs.extend(v.as_array_mut().unwrap().iter_mut()),
            _ => {}
        }
    }
    for d in descs {
        if d["digest"] == old {
            d["digest"] = new_digest.clone().into();
            d["size"] = new.len().into();
        }
    }
    let man_bytes = serde_json::to_vec(&man).unwrap();
    let man_digest = layerstore_tests::sha256_digest(&man_bytes);
    std::fs::write(
        oci.join("blobs/sha256")
            .join(man_digest.trim_start_matches("sha256:")),
        &man_bytes,
    )
    .unwrap();
    let idx_path = oci.join("index.json");
    let idx = std::fs::read_to_string(&idx_path).unwrap();
    let idx = idx.replace(&w.manifest_digest, &man_digest);
    let mut v: serde_json::Value = serde_json::from_str(&idx).unwrap();
    v["manifests"][0]["size"] = man_bytes.len().into();
    std::fs::write(idx_path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn typed_errors_for_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    assert!(matches!(
        import(&store, "nope"),
        Err(Error::InvalidSource { .. })
    ));
    assert!(matches!(
        import(&store, &format!("oci:{}", tmp.path().display())),
        Err(Error::NoMatchingImage { .. })
    ));
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    layout
        .add_image(
            "a",
            &ImageSpec::new(vec![Layer::new(
                tar(vec![Entry::file("f", "1")], TarFormat::Pax),
                Compression::None,
            )]),
        )
        .unwrap();
    layout
        .add_image(
            "b",
            &ImageSpec::new(vec![Layer::new(
                tar(vec![Entry::file("f", "2")], TarFormat::Pax),
                Compression::None,
            )]),
        )
        .unwrap();
    let e = import(&store, &format!("oci:{}", oci.display())).unwrap_err();
    assert!(e.to_string().contains("name one"), "{e}");
    assert!(matches!(
        import(&store, &format!("oci:{}:c", oci.display())),
        Err(Error::NoMatchingImage { .. })
    ));
    assert_sound(&store);
}

fn limits(f: impl FnOnce(&mut Limits)) -> StoreOptions {
    let mut l = Limits::default();
    f(&mut l);
    StoreOptions {
        limits: l,
        ..StoreOptions::default()
    }
}

#[test]
fn resource_limits_hold() {
    let zeros = || {
        vec![tar(
            vec![Entry::file("zeros", vec![0u8; 8 << 20])],
            TarFormat::Pax,
        )]
    };
    Case::new("zstd bomb", zeros(), Reject("exceeds the limit"))
        .compressions(&[Compression::Zstd])
        .opts(limits(|l| l.max_layer_bytes = 1 << 20))
        .check();
    Case::new(
        "plain tar over the cap",
        zeros(),
        Reject("exceeds the limit"),
    )
    .compressions(&[Compression::None])
    .opts(limits(|l| l.max_layer_bytes = 1 << 20))
    .check();
    Case::new(
        "too many entries",
        vec![tar(
            (0..50).map(|i| Entry::file(format!("f{i}"), "")).collect(),
            TarFormat::Pax,
        )],
        Reject("entry count"),
    )
    .opts(limits(|l| l.max_entries = 10))
    .check();
    Case::new(
        "oversized xattr value",
        vec![tar(
            vec![Entry::file("f", "x").xattr("user.big", vec![b'v'; 2048])],
            TarFormat::Pax,
        )],
        Reject("extended attributes are too large"),
    )
    .opts(limits(|l| l.max_xattr_bytes = 1024))
    .check();
    Case::new(
        "path over a lowered limit",
        vec![tar(vec![Entry::file("a/b/c/d/e", "x")], TarFormat::Pax)],
        Reject("nested too deeply"),
    )
    .opts(limits(|l| l.max_depth = 3))
    .check();
    // A zstd frame that needs a window over 128 MiB.
    let t = tar(vec![Entry::file("f", vec![7u8; 1 << 20])], TarFormat::Pax);
    Case::new(
        "zstd window over 128 MiB",
        vec![t],
        Reject("decompression failed"),
    )
    .compressions(&[Compression::Zstd])
    .tamper(|oci, w| {
        let raw = layerstore_tests::decompress(
            &std::fs::read(
                oci.join("blobs/sha256")
                    .join(w.layers[0].blob_digest.trim_start_matches("sha256:")),
            )
            .unwrap(),
            Compression::Zstd,
        )
        .unwrap();
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        enc.set_parameter(zstd::stream::raw::CParameter::WindowLog(30))
            .unwrap();
        enc.long_distance_matching(true).unwrap();
        std::io::Write::write_all(&mut enc, &raw).unwrap();
        let big = enc.finish().unwrap();
        relink(oci, w, &w.layers[0].blob_digest, &big);
    })
    .check();
}

#[test]
fn large_but_legitimate_layers_are_accepted() {
    // 10^5 entries in one directory and 10^4 hard links to one file.
    let mut entries: Vec<Entry> = (0..100_000)
        .map(|i| Entry::file(format!("d/f{i:06}"), ""))
        .collect();
    entries.push(Entry::file("target", vec![3u8; 5000]));
    entries.extend((0..10_000).map(|i| Entry::hardlink(format!("links/l{i}"), "target")));
    Case::new(
        "10^5 entries and 10^4 hard links",
        vec![tar(entries, TarFormat::Ustar)],
        Accept {
            has: &["d/f099999", "links/l9999"],
            lacks: &[],
        },
    )
    .check();
}

#[test]
fn more_link_and_header_tricks() {
    Case::new(
        "hard link before a symlink swaps its parent",
        vec![tar(
            vec![
                Entry::dir("a"),
                Entry::file("a/f", "data"),
                Entry::hardlink("h", "a/f"),
                Entry::symlink("a", "/etc"),
            ],
            TarFormat::Pax,
        )],
        Accept {
            has: &["h", "a"],
            lacks: &["a/f"],
        },
    )
    .check();
    Case::new(
        "stacked extension headers",
        vec![
            RawTar::new()
                .gnu_long_name(b"from-gnu")
                .pax([("path", "from-pax")])
                .header(&RawHeader::ustar(b'0').name(b"from-header").size(1))
                .data(b"x")
                .end()
                .finish_record(),
        ],
        Reject("one entry may have one name and one link extension"),
    )
    .check();
    Case::new(
        "symlink then a directory at the same path",
        vec![tar(
            vec![
                Entry::symlink("d", "/etc"),
                Entry::dir("d"),
                Entry::file("d/x", "1"),
            ],
            TarFormat::Pax,
        )],
        Accept {
            has: &["d", "d/x"],
            lacks: &["etc/x"],
        },
    )
    .check();
    Case::new(
        "negative mtime",
        vec![
            RawTar::new()
                .pax([("mtime", "-100.5")])
                .header(&RawHeader::ustar(b'0').name(b"old").size(0))
                .end()
                .finish_record(),
        ],
        Accept {
            has: &["old"],
            lacks: &[],
        },
    )
    .check();
    Case::new(
        "non-UTF-8 names through PAX",
        vec![
            RawTar::new()
                .pax([(&b"path"[..], &b"\xff\xfe/x"[..])])
                .header(&RawHeader::ustar(b'0').name(b"x").size(0))
                .end()
                .finish_record(),
        ],
        Accept {
            has: &[],
            lacks: &["x"],
        },
    )
    .check();
}

#[test]
fn hostile_oci_documents() {
    let layer = || vec![tar(vec![Entry::file("f", vec![1u8; 4000])], TarFormat::Pax)];
    let edit_index = |f: fn(serde_json::Value) -> serde_json::Value| {
        move |oci: &Path, _: &layerstore_tests::WrittenImage| {
            let p = oci.join("index.json");
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            std::fs::write(&p, serde_json::to_vec(&f(v)).unwrap()).unwrap();
        }
    };
    Case::new("unknown digest algorithm", layer(), Reject("sha256"))
        .tamper(edit_index(|mut v| {
            v["manifests"][0]["digest"] = format!("sha512:{}", "a".repeat(128)).into();
            v
        }))
        .check();
    Case::new(
        "descriptor size mismatch",
        layer(),
        Reject("bytes, the descriptor says"),
    )
    .tamper(edit_index(|mut v| {
        v["manifests"][0]["size"] = 3.into();
        v
    }))
    .check();
    Case::new("deeply nested JSON", layer(), Reject("index.json"))
        .tamper(|oci, _| {
            let deep = "[".repeat(100_000) + &"]".repeat(100_000);
            std::fs::write(oci.join("index.json"), deep).unwrap();
        })
        .check();
    Case::new("huge index.json", layer(), Reject("exceeds the limit"))
        .tamper(|oci, _| {
            let p = oci.join("index.json");
            let mut v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            v["annotations"] = serde_json::json!({ "pad": "x".repeat(5 << 20) });
            std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        })
        .check();
    Case::new("missing config blob", layer(), Reject("missing"))
        .tamper(move |oci, w| {
            std::fs::remove_file(
                oci.join("blobs/sha256")
                    .join(w.config_digest.trim_start_matches("sha256:")),
            )
            .unwrap();
        })
        .check();
    Case::new("unknown layer media type", layer(), Reject("media type"))
        .tamper(move |oci, w| {
            let man_path = oci
                .join("blobs/sha256")
                .join(w.manifest_digest.trim_start_matches("sha256:"));
            let s = std::fs::read_to_string(&man_path)
                .unwrap()
                .replace("tar+gzip", "tar+lz4");
            relink_manifest(oci, w, s.as_bytes());
        })
        .check();
    Case::new("config is not JSON", layer(), Reject("config"))
        .tamper(move |oci, w| {
            relink(oci, w, &w.config_digest, b"\x00\x01 not json");
        })
        .check();
}

/// Replace the manifest with `new` and point index.json at it.
fn relink_manifest(oci: &Path, w: &layerstore_tests::WrittenImage, new: &[u8]) {
    let d = layerstore_tests::sha256_digest(new);
    std::fs::write(
        oci.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:")),
        new,
    )
    .unwrap();
    let p = oci.join("index.json");
    let mut v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&p)
            .unwrap()
            .replace(&w.manifest_digest, &d),
    )
    .unwrap();
    v["manifests"][0]["size"] = new.len().into();
    std::fs::write(p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn a_full_disk_fails_cleanly() {
    if !is_root() {
        layerstore_tests::skip("mounting a small tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .status();
    if !ok.is_ok_and(|s| s.success()) {
        layerstore_tests::skip("cannot mount tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let mut rng = 0x1234_5678u64;
    let files: Vec<Entry> = (0..8)
        .map(|i| {
            let data: Vec<u8> = (0..600_000)
                .map(|_| {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (rng >> 56) as u8
                })
                .collect();
            Entry::file(format!("big{i}"), data)
        })
        .collect();
    layout
        .add_image(
            "big",
            &ImageSpec::new(vec![Layer::new(
                tar(files, TarFormat::Pax),
                Compression::Gzip,
            )]),
        )
        .unwrap();
    let store = Store::init(&mnt.join("store"), &StoreOptions::default()).unwrap();
    let e = import(&store, &format!("oci:{}:big", oci.display())).unwrap_err();
    assert!(
        format!("{e:#}").contains("No space left") || format!("{:?}", e).contains("StorageFull"),
        "{e:#}"
    );
    assert!(store.refs(None).unwrap().is_empty());
    assert_sound(&store);
}

/// A refusal carries its rule and the entry as typed fields, not only in the message.
#[test]
fn a_refusal_names_its_rule_and_entry_as_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    let tar = RawTar::new()
        .gnu_long_name(b"from-gnu")
        .pax([("path", "from-pax")])
        .header(&RawHeader::ustar(b'0').name(b"from-header").size(1))
        .data(b"x")
        .end()
        .finish_record();
    OciLayout::create(&oci)
        .unwrap()
        .add_image(
            "case",
            &ImageSpec::new(vec![Layer::new(tar, Compression::Gzip)]),
        )
        .unwrap();
    let store = Store::init(&tmp.path().join("store"), &StoreOptions::default()).unwrap();
    match import(&store, &format!("oci:{}:case", oci.display())) {
        Err(Error::Tar { rule, entry, .. }) => {
            assert_eq!(
                rule,
                layerstore_import::tarparse::TarRule::StackedExtensions
            );
            assert_eq!(entry.as_deref(), Some(&b"from-pax"[..]));
        }
        other => panic!("expected a tar refusal, got {other:?}"),
    }
    assert_sound(&store);
}

/// The differential suite's accepted archives, each imported as a one-layer image: its tree
/// (layerstore's `ls -R`) and its checkout are what Go's archive/tar reads, and it exports to
/// its diff_id.
#[test]
fn differential_archives_import_as_go_reads_them() {
    for (name, tar) in crate::differential::archives() {
        Case::new(
            format!("differential: {name}"),
            vec![tar],
            Accept {
                has: &[],
                lacks: &[],
            },
        )
        .check();
    }
}

/// A layer whose skeleton needs a zero run (padding past what is kept raw) makes the store name
/// the `skeleton-zero-runs` feature, so builds from before it refuse the store instead of failing
/// on that layer's export; a layer with ordinary padding does not.
#[test]
fn a_zero_run_skeleton_names_its_feature_in_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    let mut layout = OciLayout::create(&oci).unwrap();
    let body = RawTar::new()
        .header(&RawHeader::ustar(b'0').name(b"f").size(0))
        .end();
    for (name, blocks) in [("short", 16), ("long", 4096)] {
        let tar = body.clone().zero_blocks(blocks).finish();
        let spec = ImageSpec::new(vec![Layer::new(tar, Compression::Gzip)]);
        layout.add_image(name, &spec).unwrap();
    }
    let path = tmp.path().join("store");
    let store = Store::init(&path, &StoreOptions::default()).unwrap();
    let named = || {
        Store::open(&path)
            .unwrap()
            .config()
            .features
            .contains(&layerstore_store::store::SKELETON_ZERO_RUNS.to_string())
    };
    import(&store, &format!("oci:{}:short", oci.display())).unwrap();
    assert!(!named(), "ordinary padding needs no feature");
    import(&store, &format!("oci:{}:long", oci.display())).unwrap();
    assert!(named());
    assert_sound(&store);
}
