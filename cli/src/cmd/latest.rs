//! `latest`: the newest image carrying a label, by `org.opencontainers.image.version`.

use std::cmp::Ordering;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use layerstore_store::Digest;
use layerstore_store::labels::LabelFilter;
use serde::Serialize;

use crate::context::{Context, View};
use crate::parse;
use crate::version;

/// The label holding an image's version.
pub const VERSION_LABEL: &str = "org.opencontainers.image.version";

/// Print the newest stored image whose labels match, by its version label
///
/// Candidates are the named images whose labels (config or local) match every --label and
/// that carry org.opencontainers.image.version. Versions compare version-aware (1.10 > 1.9 >
/// 1.2, numeric segments as numbers, a pre-release before its release); equal versions are
/// ordered by the image's created time. Exit status 1 when no image matches.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// KEY=VALUE (or KEY: present with any value) an image must carry (repeatable: all must
    /// match).
    #[arg(long = "label", value_name = "KEY=VALUE", required = true, value_parser = label_filter)]
    labels: Vec<LabelFilter>,
}

fn label_filter(s: &str) -> Result<LabelFilter, String> {
    parse::filter(&format!("label={s}"))
}

#[derive(Serialize)]
struct Latest {
    /// The image's names, sorted.
    names: Vec<String>,
    manifest_digest: Digest,
    version: String,
    created: Option<String>,
}

impl View for Latest {
    fn text(&self, _: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            w,
            "{} {} {}",
            self.names.first().map_or("-", String::as_str),
            self.manifest_digest,
            self.version
        )
    }
}

/// The newest of `candidates` by version, then created time.
fn newest(candidates: Vec<Latest>) -> Option<Latest> {
    candidates
        .into_iter()
        .max_by(|a, b| match version::compare(&a.version, &b.version) {
            Ordering::Equal => a.created.cmp(&b.created),
            o => o,
        })
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.shared()?;
    let matching = store.images_with_labels(&a.labels)?;
    let mut candidates: Vec<Latest> = Vec::new();
    for (name, info) in store.images()? {
        if matching.binary_search(&info.manifest_digest).is_err() {
            continue;
        }
        if let Some(c) = candidates
            .iter_mut()
            .find(|c| c.manifest_digest == info.manifest_digest)
        {
            c.names.push(name);
            continue;
        }
        let labels = store.labels(&info.manifest_digest)?;
        let Some(version) = labels.get(VERSION_LABEL) else {
            continue;
        };
        candidates.push(Latest {
            names: vec![name],
            manifest_digest: info.manifest_digest,
            version: version.to_string(),
            created: info.created,
        });
    }
    match newest(candidates) {
        Some(l) => {
            ctx.emit(&l)?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("layerstore: no named image matches with a {VERSION_LABEL} label");
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(version: &str, created: &str, n: u8) -> Latest {
        Latest {
            names: vec![format!("img{n}")],
            manifest_digest: format!("sha256:{}", format!("{n:02x}").repeat(32))
                .parse()
                .unwrap(),
            version: version.into(),
            created: Some(created.into()),
        }
    }

    #[test]
    fn newest_by_version_then_created_time() {
        let got = newest(vec![
            c("1.9", "2025-01-03T00:00:00Z", 1),
            c("1.10", "2025-01-01T00:00:00Z", 2),
            c("1.10", "2025-01-02T00:00:00Z", 3),
            c("1.10-rc1", "2025-01-05T00:00:00Z", 4),
        ])
        .unwrap();
        assert_eq!(got.names, ["img3"]);
        assert!(newest(Vec::new()).is_none());
    }
}
