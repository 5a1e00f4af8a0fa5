//! `export` as the binary runs it: every form, JSON, reproducible bytes, what skopeo reads, and
//! refusals (exit 2, nothing written).

use std::path::Path;

use crate::{import, layerstore, ok, sample};

/// A store holding app-v3 of the sample series (gzip, zstd and uncompressed layers).
fn store_with_app_v3(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store");
    import(&store, &sample(dir), "app-v3");
    store
}

#[test]
fn export_writes_every_form_the_same_bytes_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_app_v3(tmp.path());
    let inspect = ok(&store, &["--json", "inspect", "app-v3"]).json();
    let t = tmp.path().display();
    for (dest, file) in [
        (format!("oci-archive:{t}/a.tar:app"), format!("{t}/a.tar")),
        (
            format!("docker-archive:{t}/d.tar:app:v3"),
            format!("{t}/d.tar"),
        ),
        (
            format!("oci:{t}/layout:app"),
            format!("{t}/layout/index.json"),
        ),
    ] {
        let r = ok(&store, &["--json", "export", "app-v3", &dest]).json();
        assert_eq!(r["destination"], dest.as_str());
        assert_eq!(r["config_digest"], inspect["config_digest"], "{r}");
        assert_eq!(r["layers"].as_array().unwrap().len(), 3);
        let first = std::fs::read(&file).unwrap();
        let text = ok(&store, &["export", "app-v3", &dest]).text();
        assert!(
            text.starts_with(&format!("exported app-v3 to {dest}: ID sha256:")),
            "{text}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), first, "{dest}");
    }
    // --compress none: every blob is its diff_id; the manifest is new, the ID the same.
    let r = ok(
        &store,
        &[
            "--json",
            "export",
            "app-v3",
            &format!("oci-archive:{t}/n.tar"),
            "--compress",
            "none",
        ],
    )
    .json();
    assert_eq!(r["manifest_kept"], false);
    for l in r["layers"].as_array().unwrap() {
        assert_eq!(l["digest"], l["diff_id"]);
        assert_eq!(l["compression"], "none");
    }
    // An export of an export's import keeps the manifest.
    let again = tmp.path().join("again");
    ok(
        &again,
        &[
            "import",
            &format!("oci-archive:{t}/a.tar:app"),
            "--tag",
            "back",
        ],
    );
    let r = ok(
        &again,
        &[
            "--json",
            "export",
            "back",
            &format!("oci-archive:{t}/b.tar:app"),
        ],
    )
    .json();
    assert_eq!(r["manifest_kept"], true, "{r}");
    assert_eq!(
        std::fs::read(tmp.path().join("a.tar")).unwrap(),
        std::fs::read(tmp.path().join("b.tar")).unwrap()
    );
}

pub(crate) fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// With stderr not a terminal (a pipe, as in every test here) an export prints its result and
/// nothing else: no progress, no escape sequences; with --json the report alone.
#[test]
fn export_off_a_terminal_prints_only_its_result() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_app_v3(tmp.path());
    let dest = format!("oci-archive:{}/a.tar", tmp.path().display());
    let r = ok(&store, &["export", "app-v3", &dest]);
    assert_eq!(r.stderr, "");
    let text = r.text();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!("exported app-v3 to {dest}: ID sha256:")),
        "{text}"
    );
    let r = ok(&store, &["--json", "export", "app-v3", &dest]);
    assert_eq!(r.stderr, "");
    assert_eq!(r.json()["layers"].as_array().unwrap().len(), 3);
}

/// `layerstore --store STORE ARGS…` on a terminal (a pty made by `script`); what the terminal
/// showed, stdout and stderr together.
pub(crate) fn on_terminal(store: &Path, args: &[&str]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut line = format!(
        "stty cols 120 rows 40; exec {} --store {}",
        quote(env!("CARGO_BIN_EXE_layerstore")),
        quote(store.to_str().unwrap())
    );
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let o = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("LAYERSTORE_STORE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{args:?}: {shown}");
    shown
}

/// On a terminal an export draws a line per layer (cleared at the end); --json and --quiet
/// draw nothing, so the terminal shows the report alone.
#[test]
fn export_on_a_terminal_draws_layer_progress_unless_json_or_quiet() {
    if !have("script") {
        layerstore_tests::skip("needs script (util-linux)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_app_v3(tmp.path());
    let dest = format!("oci-archive:{}/a.tar", tmp.path().display());
    let shown = on_terminal(&store, &["export", "app-v3", &dest]);
    for i in 0..3 {
        assert!(shown.contains(&format!("layer {i}")), "{shown:?}");
    }
    assert!(shown.contains("exported app-v3 to "), "{shown:?}");
    let shown = on_terminal(&store, &["--json", "export", "app-v3", &dest]);
    let report: serde_json::Value = serde_json::from_str(&shown)
        .unwrap_or_else(|e| panic!("the terminal shows more than the JSON report: {e}: {shown:?}"));
    assert_eq!(report["layers"].as_array().unwrap().len(), 3);
    let shown = on_terminal(&store, &["--quiet", "export", "app-v3", &dest]);
    assert_eq!(shown, "", "--quiet draws nothing");
}

#[test]
fn skopeo_reads_what_the_binary_exports() {
    if !have("skopeo") {
        layerstore_tests::skip("needs skopeo");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_app_v3(tmp.path());
    let t = tmp.path().display();
    for (dest, read) in [
        (
            format!("oci-archive:{t}/a.tar:app"),
            format!("oci-archive:{t}/a.tar:app"),
        ),
        (
            format!("docker-archive:{t}/d.tar:app:v3"),
            format!("docker-archive:{t}/d.tar"),
        ),
        (format!("oci:{t}/layout:app"), format!("oci:{t}/layout:app")),
    ] {
        ok(
            &store,
            &[
                "export",
                "app-v3",
                &dest,
                "--compress",
                "zstd",
                "--level",
                "7",
            ],
        );
        let o = std::process::Command::new("skopeo")
            .args(["copy", &read, &format!("oci:{t}/copy:x")])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{read}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn bad_export_arguments_exit_2_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_app_v3(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = out.display();
    let cases: Vec<Vec<String>> = vec![
        vec!["app-v3".into(), format!("oci:{o}/l:bad tag")],
        vec![
            "app-v3".into(),
            format!("docker-archive:{o}/d.tar:app@sha256:00"),
        ],
        vec!["app-v3".into(), format!("docker://localhost/app:v1")],
        vec!["app-v3".into(), format!("{o}/plain.tar")],
        vec!["app-v3".into(), format!("oci-archive:{o}/missing/a.tar")],
        vec![
            "app-v3".into(),
            format!("oci-archive:{o}/a.tar"),
            "--compress".into(),
            "lz4".into(),
        ],
        vec![
            "app-v3".into(),
            format!("oci-archive:{o}/a.tar"),
            "--level".into(),
            "3".into(),
        ],
        vec![
            "app-v3".into(),
            format!("oci-archive:{o}/a.tar"),
            "--compress".into(),
            "gzip".into(),
            "--level".into(),
            "10".into(),
        ],
        vec![
            "app-v3".into(),
            format!("oci-archive:{o}/a.tar"),
            "--compress".into(),
            "none".into(),
            "--level".into(),
            "1".into(),
        ],
        vec!["nope".into(), format!("oci-archive:{o}/a.tar")],
        vec!["nope".into(), format!("oci:{o}/layout")],
        vec![
            "app-v3".into(),
            format!("oci:{}", tmp.path().join("store").display()),
        ],
    ];
    for args in cases {
        let mut argv = vec!["export"];
        argv.extend(args.iter().map(String::as_str));
        let r = layerstore(&store, &argv);
        assert_eq!(r.code, 2, "{argv:?}: {}", r.stderr);
        assert!(r.stderr.contains("error"), "{argv:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{argv:?}");
        let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
        assert!(left.is_empty(), "{argv:?} left {left:?}");
    }
    crate::assert_fsck_clean(&store);
}
