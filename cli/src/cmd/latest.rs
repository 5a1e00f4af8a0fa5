//! `latest`: the newest image carrying a label, by `org.opencontainers.image.version`; or the
//! newest version tag of a registry repository, with its manifest digest.

use std::cmp::Ordering;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use layerstore_import::registry::Reference;
use layerstore_store::labels::LabelFilter;
use layerstore_store::{Digest, Limits};
use serde::Serialize;

use crate::context::{Context, View};
use crate::parse;
use crate::version;

/// The label holding an image's version.
pub const VERSION_LABEL: &str = "org.opencontainers.image.version";

/// Print the newest stored image whose labels match, or a registry's newest version tag
///
/// With --label: candidates are the named images whose labels (config or local) match every
/// --label and that carry org.opencontainers.image.version. Versions compare version-aware
/// (1.10 > 1.9 > 1.2, numeric segments as numbers, a pre-release before its release); equal
/// versions are ordered by the image's created time.
/// With docker://HOST[:PORT]/REPO: the repository's tags are listed (every page) and the
/// newest tag that is a version (a digit first, or v and a digit) is printed with the digest
/// of the manifest it names now, without fetching a layer: the digest to pin and pull later.
/// Exit status 1 when nothing matches.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A registry repository, docker://HOST[:PORT]/REPO, instead of --label.
    #[arg(value_name = "REPOSITORY", conflicts_with = "labels")]
    repository: Option<String>,
    /// KEY=VALUE (or KEY: present with any value) an image must carry (repeatable: all must
    /// match).
    #[arg(long = "label", value_name = "KEY=VALUE", required_unless_present = "repository",
          value_parser = label_filter)]
    labels: Vec<LabelFilter>,
    #[command(flatten)]
    registry: crate::cmd::import::RegistryArgs,
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

/// The newest remote tag: the repository, the tag, the digest it names now.
#[derive(Serialize)]
struct LatestTag {
    repository: String,
    tag: String,
    /// `docker://HOST/REPO@DIGEST`: what to pull (or bind) to get exactly this.
    pinned: String,
    manifest_digest: Digest,
    /// Tags listed, and how many of them are versions.
    tags: usize,
    version_tags: usize,
}

impl View for LatestTag {
    fn text(&self, _: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            w,
            "{}:{} {}",
            self.repository, self.tag, self.manifest_digest
        )
    }
}

/// Whether a tag names a version: a digit first, or `v`/`V` and a digit (`latest`, `stable`,
/// `main` do not).
fn is_version_tag(tag: &str) -> bool {
    let t = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    t.starts_with(|c: char| c.is_ascii_digit())
}

/// The newest version tag of `tags`; equal versions (`1.2`, `1.2.0`) by name, for a stable
/// answer.
fn newest_tag(tags: &[String]) -> Option<&String> {
    tags.iter()
        .filter(|t| is_version_tag(t))
        .max_by(|a, b| version::compare(a, b).then_with(|| a.cmp(b)))
}

fn latest_tag(
    ctx: &Context,
    spec: &str,
    registry: &crate::cmd::import::RegistryArgs,
) -> Result<ExitCode> {
    let Some(rest) = spec.strip_prefix("docker://") else {
        anyhow::bail!("{spec:?} is not a registry repository: give docker://HOST[:PORT]/REPO");
    };
    let reference = Reference::parse(rest)?;
    if reference.digest.is_some() || rest.rsplit('/').next().is_some_and(|l| l.contains(':')) {
        anyhow::bail!("{spec}: give the repository without a tag or digest");
    }
    let repository = format!("docker://{}/{}", reference.registry, reference.repository);
    let container = layerstore_import::registry::open(&reference, &registry.options(ctx)?)
        .with_context(|| format!("cannot reach {repository}"))?;
    let tags = container
        .tags()
        .with_context(|| format!("cannot list the tags of {repository}"))?;
    let Some(tag) = newest_tag(&tags) else {
        eprintln!(
            "layerstore: {repository} has no version tag (of {} tags)",
            tags.len()
        );
        return Ok(ExitCode::from(1));
    };
    let digest = container
        .tag_digest(tag, &Limits::default())
        .with_context(|| format!("cannot resolve {repository}:{tag}"))?;
    ctx.emit(&LatestTag {
        pinned: format!("{repository}@{digest}"),
        repository,
        tag: tag.clone(),
        manifest_digest: digest,
        version_tags: tags.iter().filter(|t| is_version_tag(t)).count(),
        tags: tags.len(),
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    if let Some(spec) = &a.repository {
        return latest_tag(ctx, spec, &a.registry);
    }
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
    fn the_newest_version_tag_ignores_words() {
        let tags: Vec<String> = [
            "latest", "1.9", "v1.10", "1.10-rc1", "stable", "1.2", "main",
        ]
        .map(String::from)
        .into();
        assert_eq!(newest_tag(&tags).map(String::as_str), Some("v1.10"));
        assert_eq!(newest_tag(&["latest".to_string()]), None);
        assert!(is_version_tag("20241201") && is_version_tag("V2") && !is_version_tag("v"));
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
