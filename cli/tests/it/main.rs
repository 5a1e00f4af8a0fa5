//! Real-binary tests of `layerstore`: one test binary, one runner.
//!
//! - `commands`: every command on fixture images written by `layerstore-tests`;
//! - `lifecycle`: disk generation, gc, why, and the crash and concurrency guarantees (SIGKILL
//!   at many points, concurrent processes);
//! - `output`: what users see: JSON and text, prefixes, pipes, exit codes, and the regressions
//!   found trying the command as a new user would;
//! - `registry`: the registry flags as the binary parses them;
//! - `export`: every export form, reproducible bytes, what skopeo reads, refused arguments.

mod bound;
mod checkout_integrity;
mod commands;
mod export;
mod labels;
mod lifecycle;
mod output;
mod registry;
mod roots;
mod stash;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The binary, with no store from the environment.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_layerstore"));
    c.env_remove("LAYERSTORE_STORE");
    c
}

/// What a run left: exit code, standard output and error.
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

impl From<std::process::Output> for Run {
    fn from(o: std::process::Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// `layerstore --store STORE ARGS…`.
pub fn layerstore(store: &Path, args: &[&str]) -> Run {
    bin()
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("the binary runs")
        .into()
}

/// Like [`layerstore`], and it must succeed.
#[track_caller]
pub fn ok(store: &Path, args: &[&str]) -> Run {
    let r = layerstore(store, args);
    assert_eq!(r.code, 0, "layerstore {args:?} failed: {}", r.stderr);
    r
}

/// The sample series written as an OCI layout under `dir`.
pub fn sample(dir: &Path) -> std::path::PathBuf {
    let oci = dir.join("sample");
    layerstore_tests::sample_series(&oci).unwrap();
    oci
}

/// Import `TAG` of the layout `oci`; its manifest digest.
pub fn import(store: &Path, oci: &Path, tag: &str) -> String {
    ok(
        store,
        &["--json", "import", &format!("oci:{}:{tag}", oci.display())],
    )
    .json()["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// fsck finds nothing.
#[track_caller]
pub fn assert_fsck_clean(store: &Path) {
    let r = layerstore(store, &["fsck", "--json"]);
    assert_eq!(r.code, 0, "fsck: {}", r.text());
    assert_eq!(r.json()["findings"], serde_json::json!([]));
}
