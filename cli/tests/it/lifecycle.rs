//! Real-binary tests of the ref lifecycle: disk generation through a temporary merged ref, gc,
//! why, and the crash and concurrency guarantees (SIGKILL at many points, concurrent processes).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bin, layerstore, ok, sample};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run_tool(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// fsck clean and every image ref checks out completely.
#[track_caller]
fn assert_sound(store: &Path, scratch: &Path) {
    let f = layerstore(store, &["fsck", "--json"]);
    assert_eq!(f.code, 0, "fsck: {}", String::from_utf8_lossy(&f.stdout));
    let images = ok(store, &["images", "--json"]).json();
    for (i, img) in images.as_array().unwrap().iter().enumerate() {
        let name = img["name"].as_str().unwrap();
        let dest = scratch.join(format!("check-{i}"));
        ok(store, &["checkout", name, dest.to_str().unwrap()]);
        std::fs::remove_dir_all(&dest).unwrap();
    }
}

#[test]
fn disk_images_hold_the_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = sample(tmp.path());
    let store = tmp.path().join("store");
    ok(
        &store,
        &["import", &format!("oci:{}:app-v3", oci.display())],
    );
    let co = tmp.path().join("co");
    ok(&store, &["checkout", "app-v3", co.to_str().unwrap()]);
    let files = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                if m.is_dir() {
                    stack.push(p);
                    out.push((rel, b"dir".to_vec()));
                } else if m.file_type().is_symlink() {
                    out.push((
                        rel,
                        std::fs::read_link(&p)
                            .unwrap()
                            .into_os_string()
                            .into_encoded_bytes(),
                    ));
                } else if m.is_file() {
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    };
    let want = files(&co);

    // tar: listed by GNU tar, and extracts to the same files.
    let t = tmp.path().join("rootfs.tar");
    let rep = ok(
        &store,
        &[
            "disk",
            "app-v3",
            t.to_str().unwrap(),
            "--format",
            "tar",
            "--json",
        ],
    )
    .json();
    assert_eq!(rep["merged_kept"], false);
    let list = Command::new("tar").arg("-tf").arg(&t).output().unwrap();
    assert!(list.status.success());
    assert!(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .any(|l| l.ends_with("etc/os-release"))
    );
    let x = tmp.path().join("from-tar");
    std::fs::create_dir(&x).unwrap();
    run_tool(Command::new("tar").arg("-xf").arg(&t).arg("-C").arg(&x));
    assert_eq!(files(&x), want, "tar content equals the checkout");
    // The merged ref existed only during generation.
    assert!(
        ok(&store, &["refs", "--kind", "merged", "--json"])
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );

    if have("mkfs.erofs") && have("fsck.erofs") {
        let e = tmp.path().join("rootfs.erofs");
        ok(
            &store,
            &["disk", "app-v3", e.to_str().unwrap(), "--format", "erofs"],
        );
        let x = tmp.path().join("from-erofs");
        run_tool(
            Command::new("fsck.erofs")
                .arg(format!("--extract={}", x.display()))
                .arg(&e),
        );
        assert_eq!(files(&x), want, "erofs content equals the checkout");
    } else {
        eprintln!("skipped erofs: needs erofs-utils");
    }
    if have("mkfs.ext4") && have("debugfs") && have("e2fsck") {
        let e = tmp.path().join("rootfs.ext4");
        ok(
            &store,
            &[
                "disk",
                "app-v3",
                e.to_str().unwrap(),
                "--format",
                "ext4",
                "--keep-merged",
            ],
        );
        run_tool(Command::new("e2fsck").args(["-n", "-f"]).arg(&e));
        let x = tmp.path().join("from-ext4");
        std::fs::create_dir(&x).unwrap();
        run_tool(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("rdump / {}", x.display()))
                .arg(&e),
        );
        let mut got = files(&x);
        got.retain(|(p, _)| !p.starts_with("lost+found"));
        assert_eq!(got, want, "ext4 content equals the checkout");
        let merged = ok(&store, &["refs", "--kind", "merged", "--json"]).json();
        assert_eq!(
            merged[0]["name"], "merged/app-v3",
            "--keep-merged keeps the ref"
        );
    } else {
        eprintln!("skipped ext4: needs e2fsprogs");
    }
    // A failing generation drops its merged ref and leaves no output.
    let bad = tmp.path().join("no-such-dir/out.tar");
    assert_eq!(
        layerstore(&store, &["disk", "app-v3", bad.to_str().unwrap()]).code,
        2
    );
    assert_eq!(
        ok(&store, &["refs", "--kind", "merged", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_sound(&store, tmp.path());
}

#[test]
fn gc_and_why_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = sample(tmp.path());
    let store = tmp.path().join("store");
    for t in ["base-v1", "app-v1", "base-v2", "app-v2"] {
        ok(&store, &["import", &format!("oci:{}:{t}", oci.display())]);
    }
    let why = ok(&store, &["why", "app-v1:/etc/os-release", "--json"]).json();
    let roots: Vec<&str> = why
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["root"].as_str().unwrap())
        .collect();
    assert!(
        roots.contains(&"image/app-v1") && roots.contains(&"image/base-v1"),
        "{roots:?}"
    );
    ok(&store, &["rm", "base-v1", "app-v1"]);
    let plan = ok(&store, &["gc", "--dry-run", "--json"]).json();
    assert_eq!(plan["layers"].as_array().unwrap().len(), 2);
    let d = plan["layers"][0].as_str().unwrap();
    let w = ok(&store, &["why", d]);
    assert!(w.text().contains("nothing keeps"));
    let rep = ok(&store, &["gc", "--json"]).json();
    assert_eq!(rep["removed"]["layers"], plan["layers"]);
    assert_eq!(
        rep["bytes_freed"].as_u64().unwrap(),
        plan["object_bytes"].as_u64().unwrap()
    );
    let again = ok(&store, &["gc", "--dry-run"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "nothing to collect"
    );
    // Once collected, the layer is not in the store: asking about it is an error.
    let w = layerstore(&store, &["why", d]);
    assert_eq!(w.code, 2, "{}", w.stderr);
    assert!(w.stderr.contains("is not in the store"), "{}", w.stderr);
    assert_sound(&store, tmp.path());
}

/// A tiny deterministic generator for delays.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn sigkill_at_any_point_keeps_the_store_sound() {
    let iterations: usize = std::env::var("LAYERSTORE_KILL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let oci = sample(tmp.path());
    let store = tmp.path().join("store");
    let src = |t: &str| format!("oci:{}:{t}", oci.display());
    ok(&store, &["import", &src("base-v1")]);
    ok(&store, &["import", &src("app-v1")]);
    // Kill delays are drawn below how long each kind of command last took when it ran to the
    // end, so the kills land mid-run however fast or loaded the machine is.
    let mut span = [200_000u64; 4];
    let mut rng = Lcg(0x5eed);
    let disk_out = tmp.path().join("disk.tar");
    let mut killed = 0;
    for i in 0..iterations {
        let args: Vec<String> = match i % 4 {
            0 => vec![
                "import".into(),
                src(["base-v2", "app-v2", "app-v3"][i / 4 % 3]),
                "--tag".into(),
                format!("t{}", i % 7),
            ],
            1 => vec!["gc".into()],
            2 => vec![
                "disk".into(),
                "app-v1".into(),
                disk_out.to_string_lossy().into_owned(),
            ],
            _ => vec![
                "import".into(),
                src("app-v3"),
                "--tag".into(),
                format!("t{}", i % 7),
            ],
        };
        // Give gc something to do now and then.
        if i % 4 == 1 && i % 8 == 1 {
            let tags = ok(&store, &["refs", "--kind", "image", "--json"]).json();
            for t in tags.as_array().unwrap() {
                let n = t["name"].as_str().unwrap().trim_start_matches("image/");
                if n.starts_with('t') {
                    ok(&store, &["rm", n]);
                }
            }
        }
        let before = ok(&store, &["refs", "--json"])
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut child = bin()
            .arg("--store")
            .arg(&store)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        std::thread::sleep(Duration::from_micros(rng.below(span[i % 4])));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        } else {
            span[i % 4] = (started.elapsed().as_micros() as u64).max(1000);
        }
        let _ = child.kill();
        child.wait().unwrap();
        // The store opens; staging leftovers are the most fsck may find, and repair clears them.
        let f = layerstore(&store, &["fsck", "--json"]);
        if f.code != 0 {
            let findings = f.json()["findings"].clone();
            for fd in findings.as_array().unwrap() {
                assert_eq!(
                    fd["kind"], "staging-leftover",
                    "iteration {i} ({args:?}): {fd}"
                );
            }
            ok(&store, &["fsck", "--repair"]);
        }
        // Every image and merged ref that existed before still resolves completely.
        let now = ok(&store, &["refs", "--json"]).json();
        for r in before {
            let name = r["name"].as_str().unwrap();
            if name.starts_with("layer/") {
                continue; // gc drops layer refs no root lists
            }
            assert!(
                now.as_array().unwrap().iter().any(|n| n["name"] == name),
                "iteration {i} ({args:?}): {name} lost"
            );
        }
        // Completeness (ref → image → layers → entries → object rows → files, every file
        // re-hashed) is what the clean fsck above established; a checkout every few rounds
        // proves it end to end.
        if i % 10 == 9 {
            assert_sound(&store, tmp.path());
        }
    }
    eprintln!("{killed} of {iterations} commands were killed mid-run");
    assert!(
        killed >= iterations / 3,
        "too few kills landed mid-run ({killed})"
    );
    ok(&store, &["gc"]);
    assert_sound(&store, tmp.path());
}

#[test]
fn concurrent_imports_rm_and_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = sample(tmp.path());
    let store = tmp.path().join("store");
    ok(
        &store,
        &["import", &format!("oci:{}:base-v1", oci.display())],
    );
    let deadline = Instant::now() + Duration::from_secs(12);
    let tags = ["base-v1", "app-v1", "base-v2", "app-v2", "app-v3"];
    std::thread::scope(|s| {
        for w in 0..3 {
            let (store, oci) = (&store, &oci);
            s.spawn(move || {
                let mut rng = Lcg(w as u64 + 1);
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    match (w, n % 3) {
                        (0 | 1, _) => {
                            let t = tags[rng.below(5) as usize];
                            let name = format!("w{w}-{}", rng.below(4));
                            ok(
                                store,
                                &[
                                    "import",
                                    &format!("oci:{}:{t}", oci.display()),
                                    "--tag",
                                    &name,
                                ],
                            );
                            let dest = store.parent().unwrap().join(format!("co-{w}"));
                            // Worker 2 may have removed the tag since; anything else (a
                            // missing object above all) is a failure.
                            let r = layerstore(
                                store,
                                &[
                                    "checkout",
                                    &name,
                                    dest.to_str().unwrap(),
                                    "--mode",
                                    "hardlink",
                                ],
                            );
                            assert!(
                                r.code == 0 || r.stderr.contains("no image named"),
                                "{}",
                                r.stderr
                            );
                            if dest.exists() {
                                std::fs::remove_dir_all(&dest).unwrap();
                            }
                        }
                        (_, 0) => {
                            let victim = format!("w{}-{}", rng.below(2), rng.below(4));
                            // The name may be gone already (never made, or removed since).
                            let r = layerstore(store, &["rm", &victim]);
                            assert!(
                                r.code == 0
                                    || r.stderr.contains("no ref")
                                    || r.stderr.contains("no image named"),
                                "{}",
                                r.stderr
                            );
                        }
                        _ => {
                            ok(store, &["gc"]);
                        }
                    }
                }
            });
        }
    });
    ok(&store, &["gc"]);
    assert_sound(&store, tmp.path());
}
