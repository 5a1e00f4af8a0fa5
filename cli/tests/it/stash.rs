//! `stash`, `stash --list` and the stacked `checkout` as the binary runs them (kiwi's
//! stackbuild flow: check out an image, build in it, stash, stash again, build from the stack).

use std::path::Path;

use crate::*;

/// Every file below `dir`: path → content (or symlink target, or a directory marker).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if m.file_type().is_symlink() {
                out.push((
                    rel,
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                ));
            } else if m.is_dir() {
                out.push((rel, b"<dir>".to_vec()));
                stack.push(p);
            } else if m.is_file() {
                out.push((rel, std::fs::read(&p).unwrap()));
            } else {
                out.push((rel, b"<special>".to_vec()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn stash_on_an_image_then_on_itself_and_check_out_the_stack() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let oci = sample(tmp.path());
    import(&store, &oci, "app-v2");
    let parent_layers = ok(&store, &["--json", "inspect", "app-v2"]).json()["layers"]
        .as_array()
        .unwrap()
        .len();

    // Build in a checkout of the image.
    let root = tmp.path().join("root");
    let root_s = root.to_str().unwrap();
    ok(&store, &["checkout", "app-v2", root_s]);
    std::fs::write(root.join("built"), b"output of the build").unwrap();
    let victim = files(&root)
        .into_iter()
        .find(|(p, c)| c != b"<dir>" && c != b"<special>" && !p.contains('/'))
        .map(|(p, _)| p);
    if let Some(v) = &victim {
        std::fs::remove_file(root.join(v)).unwrap();
    }
    let sock = root.join("build.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();

    let r = ok(
        &store,
        &[
            "--json",
            "stash",
            root_s,
            "--tag",
            "kiwi:stash",
            "--parent",
            "app-v2",
            "--label",
            "stage=1",
            "--message",
            "first build",
        ],
    );
    let rep = r.json();
    assert_eq!(rep["layers"], parent_layers + 1);
    assert!(
        r.stderr.contains("socket /build.sock skipped"),
        "the socket is a warning: {}",
        r.stderr
    );
    std::fs::remove_file(&sock).unwrap();

    let out = tmp.path().join("out");
    ok(&store, &["checkout", "kiwi:stash", out.to_str().unwrap()]);
    assert_eq!(files(&root), files(&out));

    // The round trip: export (the parent's gzip layers and the stash's tar), import into a
    // fresh store, check out.
    let archive = tmp.path().join("stash.tar");
    ok(
        &store,
        &[
            "export",
            "kiwi:stash",
            &format!("oci-archive:{}:kiwi", archive.display()),
        ],
    );
    let fresh = tmp.path().join("fresh");
    ok(
        &fresh,
        &[
            "import",
            &format!("oci-archive:{}:kiwi", archive.display()),
            "--tag",
            "kiwi",
        ],
    );
    let back = tmp.path().join("back");
    ok(&fresh, &["checkout", "kiwi", back.to_str().unwrap()]);
    assert_eq!(files(&root), files(&back));

    // The name is a stash now: without --parent, the next stash goes on top of it.
    std::fs::write(root.join("built"), b"second build").unwrap();
    let r = ok(&store, &["--json", "stash", root_s, "--tag", "kiwi:stash"]).json();
    assert_eq!(r["layers"], parent_layers + 2);
    assert_eq!(r["parent"], rep["manifest_digest"]);

    // A new layer that is a valid tar whose sha256 is its diff_id.
    let diff_id = r["diff_id"].as_str().unwrap();
    let tar = ok(&store, &["export-layer", diff_id]).stdout;
    assert_eq!(layerstore_tests::sha256_digest(&tar), diff_id);

    let list = ok(&store, &["--json", "stash", "--list"]).json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "kiwi:stash");
    assert_eq!(list[0]["layers"], parent_layers + 2);
    assert_eq!(list[0]["labels"]["stage"], "1");
    assert!(
        list[0]["parent"]
            .as_str()
            .unwrap()
            .starts_with("kiwi:stash@sha256:")
    );
    let text = ok(&store, &["stash", "--list"]).text();
    assert!(
        text.starts_with("NAME") && text.contains("kiwi:stash"),
        "{text}"
    );

    // kiwi's stack: the image, then a stash of another tree; later entries win.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("built"), b"from the other stash").unwrap();
    ok(
        &store,
        &["stash", other.to_str().unwrap(), "--tag", "extra"],
    );
    let stacked = tmp.path().join("stacked");
    ok(
        &store,
        &[
            "checkout",
            "app-v2",
            "kiwi:stash",
            "extra",
            stacked.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(stacked.join("built")).unwrap(),
        b"from the other stash"
    );
    if let Some(v) = &victim {
        // app-v2 had it, the stash removed it: the stack applies app-v2 then the stash's
        // merged tree, which lacks it; nothing deletes it (rsync without --delete).
        assert!(stacked.join(v).exists());
    }
    // The stacked form needs a new DEST.
    let again = layerstore(
        &store,
        &["checkout", "app-v2", "extra", stacked.to_str().unwrap()],
    );
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    assert_fsck_clean(&store);
}

#[test]
fn source_date_epoch_makes_a_stash_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/config"), b"x=1\n").unwrap();
    let digests: Vec<(String, String)> = ["a", "b"]
        .iter()
        .map(|s| {
            let r: Run = bin()
                .arg("--store")
                .arg(tmp.path().join(s))
                .args(["--json", "stash", root.to_str().unwrap(), "--tag", "r"])
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .output()
                .unwrap()
                .into();
            assert_eq!(r.code, 0, "{}", r.stderr);
            let j = r.json();
            (
                j["manifest_digest"].as_str().unwrap().into(),
                j["config_digest"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
    let store = tmp.path().join("a");
    let list = ok(&store, &["--json", "stash", "--list"]).json();
    assert_eq!(list[0]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(list[0]["parent"], serde_json::Value::Null);
    assert_eq!(list[0]["layers"], 1);
}

#[test]
fn stash_without_tag_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let r = layerstore(
        &tmp.path().join("s"),
        &["stash", tmp.path().to_str().unwrap()],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--tag"), "{}", r.stderr);
}

/// Off a terminal a stash prints its two result lines and nothing on stderr; on one (a pty) it
/// draws its progress line, and with --json the terminal shows the report alone.
#[test]
fn stash_draws_progress_on_a_terminal_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/config"), b"x=1\n").unwrap();
    let root_s = root.to_str().unwrap();
    let store = tmp.path().join("store");
    let r = ok(&store, &["stash", root_s, "--tag", "r"]);
    assert_eq!(r.stderr, "");
    let text = r.text();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.starts_with("stashed r as sha256:"), "{text}");
    if !crate::export::have("script") {
        layerstore_tests::skip("needs script (util-linux)");
        return;
    }
    let shown = crate::export::on_terminal(&store, &["stash", root_s, "--tag", "r"]);
    assert!(shown.contains(&format!("stash {root_s}")), "{shown:?}");
    assert!(shown.contains("stashed r as sha256:"), "{shown:?}");
    let shown = crate::export::on_terminal(&store, &["--json", "stash", root_s, "--tag", "r"]);
    let report: serde_json::Value = serde_json::from_str(&shown)
        .unwrap_or_else(|e| panic!("the terminal shows more than the JSON report: {e}: {shown:?}"));
    assert_eq!(report["name"], "r");
}
