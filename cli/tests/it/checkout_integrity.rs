//! Real-binary tests of issue 19: hardlink checkouts carry the image's metadata, a write through
//! one changes nothing other images read, fsck --repair heals with a re-import, reflink falls
//! back to copying, a failed checkout leaves nothing, and a read-only store can be read.
//!
//! Set `LAYERSTORE_CORPUS` to an OCI layout to run the umoci comparison on its images too.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore_tests::{Compression, OciLayout, SAMPLE_TAGS};

use crate::{Run, layerstore, ok};

/// Run `layerstore --store STORE ARGS`, as `user` (through setpriv) if given.
fn run_as(user: Option<&str>, store: &Path, args: &[&str]) -> Run {
    let Some(user) = user else {
        return layerstore(store, args);
    };
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={user}"),
        &format!("--regid={user}"),
        "--clear-groups",
        env!("CARGO_BIN_EXE_layerstore"),
    ]);
    // setpriv does not reset HOME; nothing here reads it.
    c.env("HOME", "/")
        .env_remove("LAYERSTORE_STORE")
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("runs")
        .into()
}

/// Unmounts what a test mounted, also when it panics.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `checkout IMAGE DEST --mode MODE`, which must succeed.
#[track_caller]
fn checkout(store: &Path, image: &str, dest: &Path, mode: &str) -> Run {
    ok(
        store,
        &["checkout", image, dest.to_str().unwrap(), "--mode", mode],
    )
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The sample series as an OCI layout, imported into a fresh store: (layout, store). Its zstd
/// layers are gzip here (the same diff_ids): umoci before 0.5 reads no zstd.
fn sample_store(tmp: &Path) -> (PathBuf, PathBuf) {
    let layout = tmp.join("sample");
    let mut l = OciLayout::create(&layout).expect("layout");
    for (name, mut spec) in layerstore_tests::sample::sample_specs() {
        for layer in &mut spec.layers {
            if layer.compression == Compression::Zstd {
                layer.compression = Compression::Gzip;
            }
        }
        l.add_image(&name, &spec).expect("image");
    }
    let store = tmp.join("store");
    for tag in SAMPLE_TAGS {
        ok(
            &store,
            &["import", "-q", &format!("oci:{}:{tag}", layout.display())],
        );
    }
    (layout, store)
}

/// What a checkout shows of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Facts {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    content: Vec<u8>,
}

fn xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut names).unwrap_or(0);
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut v = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(p, name, &mut v) {
            out.insert(name.to_vec(), v[..len].to_vec());
        }
    }
    out
}

/// Every path below `root` with its facts.
fn facts(root: &Path) -> BTreeMap<PathBuf, Facts> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Facts>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let (kind, content) = if ft.is_dir() {
                ("dir", Vec::new())
            } else if ft.is_symlink() {
                (
                    "symlink",
                    std::fs::read_link(&p)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if ft.is_file() {
                (
                    "file",
                    blake3::hash(&std::fs::read(&p).unwrap())
                        .as_bytes()
                        .to_vec(),
                )
            } else {
                ("special", Vec::new())
            };
            out.insert(
                p.strip_prefix(root).unwrap().to_path_buf(),
                Facts {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime: m.mtime(),
                    xattrs: xattrs(&p),
                    content,
                },
            );
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The OCI layout's tags (`org.opencontainers.image.ref.name` in index.json).
fn layout_tags(layout: &Path) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(String::from)
        .collect()
}

/// A hardlink checkout of each image equals umoci's unpack in mode, owner, xattrs and content
/// (mtimes of files are normalised to 0 in hardlink mode, see the README); as root, with
/// `real_bash` (the corpus; the sample series' bash is a stub), the image's bash runs in a chroot
/// of it.
fn hardlink_equals_umoci(
    layout: &Path,
    store: &Path,
    tags: &[String],
    tmp: &Path,
    real_bash: bool,
) {
    for tag in tags {
        let bundle = tmp.join(format!("umoci-{tag}"));
        let mut umoci = Command::new("umoci");
        umoci.arg("unpack");
        if !is_root() {
            umoci.arg("--rootless");
        }
        let out = umoci
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle)
            .output()
            .expect("umoci runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "umoci unpack {tag}: {err}");
        let hl = tmp.join(format!("hl-{tag}"));
        checkout(store, tag, &hl, "hardlink");
        let want = facts(&bundle.join("rootfs"));
        let got = facts(&hl);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{tag}: paths"
        );
        let mut files = 0;
        for (p, w) in &want {
            let g = &got[p];
            let mut w = w.clone();
            // umoci records its own metadata in user.rootlesscontainers on rootless unpacks.
            w.xattrs.remove(&b"user.rootlesscontainers"[..]);
            if w.kind == "file" {
                files += 1;
                assert_eq!(g.mtime, 0, "{tag} {}: normalised mtime", p.display());
                w.mtime = 0;
            }
            if w.kind == "symlink" {
                w.mode = g.mode;
            }
            assert_eq!(g, &w, "{tag} {}", p.display());
        }
        assert!(files > 0);
        if real_bash && is_root() {
            let st = Command::new("chroot")
                .arg(&hl)
                .args(["/usr/bin/bash", "-c", "true"])
                .status()
                .expect("chroot runs");
            assert!(st.success(), "{tag}: chroot bash -c true: {st}");
        }
    }
}

#[test]
fn hardlink_checkout_has_the_image_modes_owners_and_xattrs_of_umoci_unpack() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, store) = sample_store(tmp.path());
    let tags: Vec<String> = SAMPLE_TAGS.iter().map(|t| t.to_string()).collect();
    hardlink_equals_umoci(&layout, &store, &tags, tmp.path(), false);
    // The same image again links the variants made the first time.
    let again = tmp.path().join("again");
    let r = checkout(&store, "app-v2", &again, "hardlink");
    assert!(r.text().contains(" 0 new variants"), "{}", r.text());
    ok(&store, &["fsck"]);

    if let Some(corpus) = std::env::var_os("LAYERSTORE_CORPUS") {
        let corpus = PathBuf::from(corpus);
        let cstore = tmp.path().join("corpus-store");
        let tags = layout_tags(&corpus);
        for tag in &tags {
            ok(
                &cstore,
                &["import", "-q", &format!("oci:{}:{tag}", corpus.display())],
            );
        }
        let work = tmp.path().join("corpus");
        std::fs::create_dir(&work).unwrap();
        hardlink_equals_umoci(&corpus, &cstore, &tags, &work, true);
    }
}

/// The scenario of issue 19: a write through a hardlink checkout (root ignores the mode) changed
/// the object every image shares, and reads of other images failed. Now it changes a variant.
#[test]
fn a_write_through_a_hardlink_checkout_changes_nothing_other_images_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, store) = sample_store(tmp.path());
    let path = "/usr/bin/bash";
    let before = ok(&store, &["cat", "app-v1", path]).stdout;
    let hl = tmp.path().join("hl");
    checkout(&store, "app-v2", &hl, "hardlink");
    let file = hl.join(&path[1..]);
    let mut perm = std::fs::metadata(&file).unwrap().permissions();
    perm.set_mode(perm.mode() | 0o200);
    std::fs::set_permissions(&file, perm).unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(b"x\n").unwrap();
    }
    assert_eq!(ok(&store, &["cat", "app-v1", path]).stdout, before);
    assert_eq!(ok(&store, &["cat", "app-v2", path]).stdout, before);
    // fsck sees the changed variant; the next checkout makes it again.
    let r = layerstore(&store, &["fsck", "--json"]);
    assert_eq!(r.code, 1, "{}", r.text());
    assert!(
        r.text().contains(r#""kind": "changed-variant""#),
        "{}",
        r.text()
    );
    let r = layerstore(&store, &["fsck"]);
    assert!(r.text().contains("was changed through it"), "{}", r.text());
    let hl2 = tmp.path().join("hl2");
    let r = checkout(&store, "app-v1", &hl2, "hardlink");
    assert!(r.stderr.contains("made them again"), "{}", r.stderr);
    assert_eq!(std::fs::read(hl2.join(&path[1..])).unwrap(), before);
    let r = ok(&store, &["fsck", "--repair"]);
    assert!(!r.text().contains("problem:"), "{}", r.text());
    ok(&store, &["fsck"]);
}

/// Corrupt an object (same size, mode kept), repair, re-import: fsck ends clean and a checkout
/// is byte-identical to one from before.
#[test]
fn fsck_repair_marks_layers_and_a_reimport_heals_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, store) = sample_store(tmp.path());
    let before = tmp.path().join("before");
    ok(&store, &["checkout", "app-v2", before.to_str().unwrap()]);
    // The object of a file of app-v2's base layer that base-v1 shares (named by its blake3).
    let id = blake3::hash(&std::fs::read(before.join("usr/bin/bash")).unwrap()).to_hex();
    let obj = store.join("objects").join(&id[..2]).join(&id[2..]);
    let mut perm = std::fs::metadata(&obj).unwrap().permissions();
    let mode = perm.mode();
    perm.set_mode(0o644);
    std::fs::set_permissions(&obj, perm.clone()).unwrap();
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&obj).unwrap();
        f.seek(std::io::SeekFrom::Start(100)).unwrap();
        f.write_all(b"CORRUPT").unwrap();
    }
    perm.set_mode(mode);
    std::fs::set_permissions(&obj, perm).unwrap();

    let r = layerstore(&store, &["fsck"]);
    assert_eq!(r.code, 1);
    assert!(
        r.text()
            .contains(&format!("problem: object {id} is corrupt")),
        "{}",
        r.text()
    );
    let r = layerstore(&store, &["fsck", "--repair"]);
    assert_eq!(r.code, 1, "damaged layers remain until a re-import");
    assert!(
        r.text()
            .contains(&format!("repaired: object {id} is corrupt")),
        "{}",
        r.text()
    );
    assert!(
        r.text().contains("import one of these again"),
        "{}",
        r.text()
    );
    assert!(!obj.exists());
    // Reads of the damaged layers say what to import.
    let co = tmp.path().join("co");
    let r = layerstore(&store, &["checkout", "app-v2", co.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("is damaged") && r.stderr.contains("app-v2"),
        "{}",
        r.stderr
    );
    assert!(!co.exists());
    let r = layerstore(&store, &["cat", "app-v1", "/usr/bin/bash"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("import one of these again"),
        "{}",
        r.stderr
    );
    // Importing reads the damaged layer again instead of "already stored".
    let r = ok(
        &store,
        &["import", &format!("oci:{}:app-v2", layout.display())],
    );
    assert!(
        r.text().contains("(1 read, 1 already stored)"),
        "{}",
        r.text()
    );
    let r = ok(&store, &["fsck"]);
    assert!(r.text().contains("no problems"), "{}", r.text());
    let after = tmp.path().join("after");
    ok(&store, &["checkout", "app-v2", after.to_str().unwrap()]);
    assert_eq!(facts(&after), facts(&before));
    // The object came back, so base-v1's layer, which shares it, reads again too.
    ok(&store, &["cat", "app-v1", "/usr/bin/bash"]);
}

/// `--mode reflink` copies where the filesystem cannot clone, and says so once.
#[test]
fn reflink_falls_back_to_copy_where_the_filesystem_cannot_clone() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, store) = sample_store(tmp.path());
    let copy = tmp.path().join("copy");
    ok(&store, &["checkout", "app-v2", copy.to_str().unwrap()]);
    let mut targets = vec![tmp.path().join("reflink")];
    let tmpfs = tmp.path().join("tmpfs");
    let mounted = is_root() && {
        std::fs::create_dir(&tmpfs).unwrap();
        Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&tmpfs)
            .status()
            .is_ok_and(|s| s.success())
    };
    let _unmount = mounted.then(|| Unmount(tmpfs.clone()));
    if mounted {
        targets.push(tmpfs.join("reflink"));
    }
    let fs_type = |p: &Path| {
        let out = Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for dest in &targets {
        let r = checkout(&store, "app-v2", dest, "reflink");
        let parent = dest.parent().unwrap();
        let clones = matches!(fs_type(parent).as_str(), "btrfs" | "xfs");
        let warned = r.stderr.matches("cannot clone").count();
        if clones && fs_type(&store) == fs_type(parent) {
            assert_eq!(warned, 0, "{}", r.stderr);
        } else {
            assert_eq!(warned, 1, "once: {}", r.stderr);
        }
        let (mut a, mut b) = (facts(&copy), facts(dest));
        for f in a.values_mut().chain(b.values_mut()) {
            // tmpfs keeps no security xattrs the copy on the store's filesystem might have.
            f.xattrs.clear();
        }
        assert_eq!(a, b, "{}", dest.display());
    }
    if mounted {
        // A hardlink checkout onto another filesystem cannot link: it copies, and says so.
        let dest = tmpfs.join("hardlink");
        let r = checkout(&store, "app-v2", &dest, "hardlink");
        assert_eq!(r.stderr.matches("copied").count(), 1, "{}", r.stderr);
        let (mut a, mut b) = (facts(&copy), facts(&dest));
        for f in a.values_mut().chain(b.values_mut()) {
            f.xattrs.clear();
        }
        assert_eq!(a, b);
    }
}

/// A checkout that fails part way removes what it wrote: the target it made, or the contents of
/// the empty one it found.
#[test]
fn a_failing_checkout_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, store) = sample_store(tmp.path());
    // Truncate a loose object of a file deep in the tree: the checkout fails when it gets there.
    let good = tmp.path().join("good");
    ok(&store, &["checkout", "app-v2", good.to_str().unwrap()]);
    let id = blake3::hash(&std::fs::read(good.join("usr/bin/bash")).unwrap()).to_hex();
    let obj = store.join("objects").join(&id[..2]).join(&id[2..]);
    let mut perm = std::fs::metadata(&obj).unwrap().permissions();
    perm.set_mode(0o644);
    std::fs::set_permissions(&obj, perm).unwrap();
    let len = std::fs::metadata(&obj).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&obj)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    for mode in ["copy", "reflink", "hardlink"] {
        let made = tmp.path().join(format!("made-{mode}"));
        let r = layerstore(
            &store,
            &["checkout", "app-v2", made.to_str().unwrap(), "--mode", mode],
        );
        assert_eq!(r.code, 2, "{mode}: {}", r.text());
        assert!(!made.exists(), "{mode}: the target it made is gone");
        let empty = tmp.path().join(format!("empty-{mode}"));
        std::fs::create_dir(&empty).unwrap();
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o750)).unwrap();
        let r = layerstore(
            &store,
            &[
                "checkout",
                "app-v2",
                empty.to_str().unwrap(),
                "--mode",
                mode,
            ],
        );
        assert_eq!(r.code, 2, "{mode}");
        assert_eq!(
            std::fs::read_dir(&empty).unwrap().count(),
            0,
            "{mode}: emptied"
        );
        assert_eq!(
            std::fs::metadata(&empty).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        std::fs::remove_dir(&empty).unwrap();
    }
    // With the object whole again, a retry into the same target is not refused as non-empty.
    std::fs::write(&obj, std::fs::read(good.join("usr/bin/bash")).unwrap()).unwrap();
    let retry = tmp.path().join("empty-copy");
    std::fs::create_dir(&retry).unwrap();
    checkout(&store, "app-v2", &retry, "copy");
}

/// Every read-only command works for a user who may read the store but not write it: another
/// user (as root: `nobody`), a read-only bind mount (as root), or a store without write
/// permission (otherwise); commands that must write say so.
#[test]
fn a_read_only_store_lists_and_checks_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, store) = sample_store(tmp.path());
    let diff_id = {
        let r = ok(&store, &["--json", "inspect", "app-v2"]);
        let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        v["layers"][0]["diff_id"].as_str().unwrap().to_string()
    };
    let mut cases: Vec<(Option<&str>, PathBuf, PathBuf)> = Vec::new();
    let mut _ro_mount = None;
    if is_root() {
        // nobody must reach the store and write its own target.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let own = tmp.path().join("nobody");
        std::fs::create_dir(&own).unwrap();
        rustix::fs::chown(&own, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
        cases.push((Some("65534"), store.clone(), own));
        let ro = tmp.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        let st = Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(&store)
            .arg(&ro)
            .status()
            .unwrap();
        assert!(st.success());
        _ro_mount = Some(Unmount(ro.clone()));
        cases.push((None, ro, tmp.path().join("ro-targets")));
    } else {
        let st = Command::new("chmod")
            .args(["-R", "a-w"])
            .arg(&store)
            .status()
            .unwrap();
        assert!(st.success());
        cases.push((None, store.clone(), tmp.path().join("targets")));
    }
    for (user, store, targets) in &cases {
        let user = *user;
        let ctx = format!("{user:?} {}", store.display());
        for args in [
            vec!["images"],
            vec!["inspect", "app-v2"],
            vec!["ls", "app-v2", "/usr/bin"],
            vec!["cat", "app-v2", "/etc/os-release"],
            vec!["df"],
            vec!["refs"],
            vec!["why", "app-v2"],
            vec!["fsck"],
        ] {
            let r = run_as(user, store, &args);
            assert_eq!(r.code, 0, "{ctx} {args:?}: {}", r.stderr);
            assert!(!r.text().is_empty(), "{ctx} {args:?}");
        }
        let r = run_as(user, store, &["export-layer", &diff_id]);
        assert_eq!(r.code, 0, "{ctx}: {}", r.stderr);
        assert!(r.text().len() > 1024);
        if user.is_none() {
            std::fs::create_dir_all(targets).unwrap();
        }
        for mode in ["copy", "hardlink"] {
            let dest = targets.join(mode);
            let r = run_as(
                user,
                store,
                &["checkout", "app-v2", dest.to_str().unwrap(), "--mode", mode],
            );
            assert_eq!(r.code, 0, "{ctx} {mode}: {}", r.stderr);
            assert!(dest.join("etc/os-release").exists());
            if mode == "hardlink" {
                assert!(r.stderr.contains("copied"), "{ctx}: {}", r.stderr);
            }
        }
        let r = run_as(
            user,
            store,
            &["import", &format!("oci:{}:app-v1", layout.display())],
        );
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("read-only"), "{ctx}: {}", r.stderr);
        for args in [vec!["gc"], vec!["rm", "app-v1"], vec!["tag", "app-v1", "x"]] {
            let r = run_as(user, store, &args);
            assert_eq!(r.code, 2, "{ctx} {args:?}");
            assert!(
                r.stderr.contains("read-only"),
                "{ctx} {args:?}: {}",
                r.stderr
            );
        }
    }
    if !is_root() {
        let _ = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(&store)
            .status();
    }
}

/// The variants a hardlink checkout made go with their objects at gc: no image left, no variant
/// left, and the store checks clean.
#[test]
fn gc_removes_the_variants_of_the_objects_it_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, store) = sample_store(tmp.path());
    let hl = tmp.path().join("hl");
    checkout(&store, "app-v2", &hl, "hardlink");
    let variants = |store: &Path| -> usize {
        let Ok(subs) = std::fs::read_dir(store.join("variants")) else {
            return 0;
        };
        subs.map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum()
    };
    assert!(variants(&store) > 100, "{}", variants(&store));
    let mut rm = vec!["rm"];
    rm.extend(SAMPLE_TAGS);
    ok(&store, &rm);
    let r = ok(&store, &["gc", "--json"]);
    assert!(r.text().contains("\"variants_removed\""), "{}", r.text());
    assert_eq!(variants(&store), 0);
    // The checkout keeps its files: they were links, now the only names of those inodes.
    assert!(hl.join("usr/bin/bash").is_file());
    let r = ok(&store, &["fsck"]);
    assert!(r.text().contains("no problems"), "{}", r.text());
}

/// gc after removing some images removes their variants only: what stays checks out again by
/// links alone, making no new variant, and nothing is left unreferenced.
#[test]
fn gc_keeps_the_variants_of_what_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, store) = sample_store(tmp.path());
    let count = || {
        walk_files(&store.join("variants"))
            .iter()
            .filter(|p| !p.file_name().unwrap().as_bytes().starts_with(b"."))
            .count()
    };
    for tag in SAMPLE_TAGS {
        let dest = tmp.path().join(format!("hl-{tag}"));
        checkout(&store, tag, &dest, "hardlink");
    }
    let before = count();
    ok(&store, &["rm", "base-v1", "app-v1"]);
    ok(&store, &["gc"]);
    let after = count();
    assert!(after < before, "{after} of {before} variants left");
    let v = ok(&store, &["--json", "fsck"]).json();
    assert_eq!(v["unreferenced_files"], 0, "{v}");
    let again = tmp.path().join("again");
    let r = checkout(&store, "app-v2", &again, "hardlink");
    assert!(r.text().contains(" 0 new variants"), "{}", r.text());
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
