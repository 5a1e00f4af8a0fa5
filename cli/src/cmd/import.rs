//! `import`: read an image from a local source or a registry into the store.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use layerstore_import::registry::{Credentials, RegistryError, RegistryOptions};
use layerstore_import::{ImportOptions, ImportReport, Platform};
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, plural};
use crate::parse::{self, LimitSetting};
use crate::progress;

/// Import an image from a local source or a registry
///
/// Sources (the forms skopeo names them by):
///   oci:DIR[:REF]                 an OCI image layout directory; REF is a tag
///                                 (org.opencontainers.image.ref.name) or @sha256:DIGEST
///   oci-archive:FILE[:REF]        the same layout as a tar archive
///   docker-archive:FILE[:N|NAME]  a `docker save` / `podman save` archive; N picks the
///                                 N-th image (from 0), NAME a repository tag in it
///   docker://HOST[:PORT]/REPO[:TAG|@DIGEST]
///                                 a registry; only layers the store lacks are fetched
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// What to import: oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:N|NAME] or
    /// docker://HOST[:PORT]/REPO[:TAG|@DIGEST].
    #[arg(value_name = "SOURCE", value_parser = parse::source, required_unless_present = "prepared")]
    source: Option<String>,
    /// Import exactly the update `prepare` cached for NAME (its digest, not its tag).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["source", "tag"])]
    prepared: Option<String>,
    /// Name of the image ref (default: the source's reference or tag).
    #[arg(long)]
    tag: Option<String>,
    /// Platform to pick from an image index, os/arch[/variant] (default: the host's).
    #[arg(long, value_parser = parse::platform)]
    platform: Option<Platform>,
    /// Layers to import at once (default: CPU count).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    jobs: Option<usize>,
    /// Override a resource limit for this import, NAME=VALUE (see `init --help`).
    #[arg(long = "limit", value_name = "NAME=VALUE", value_parser = parse::limit)]
    limits: Vec<LimitSetting>,
    /// Write layer refs only, no image ref (rpm-ostree's layers-only import). The layers stay
    /// only until the next gc, unless an image, root or bound image lists them by then.
    #[arg(long, conflicts_with = "tag")]
    layers_only: bool,
    /// Keep a local label KEY=VALUE with the image (repeatable). The store keeps it beside the
    /// image; the image's config and digest do not change. `inspect` shows it apart.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse::label)]
    labels: Vec<(String, String)>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// How to reach a registry: the flags import, push and prepare share.
#[derive(clap::Args)]
pub struct RegistryArgs {
    /// Registry credentials USER[:PASSWORD] (docker:// sources).
    #[arg(long, value_name = "USER[:PASSWORD]")]
    creds: Option<String>,
    /// Registry auth file (default: $REGISTRY_AUTH_FILE, then podman's and docker's).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Verify registry TLS certificates; false also allows plain HTTP. Only as
    /// --tls-verify=BOOL, so that `--tls-verify SOURCE` does not take SOURCE for its value.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tls_verify: bool,
}

impl RegistryArgs {
    /// The library's options (credentials parsed; `--offline` from the global flags).
    pub fn options(&self, ctx: &Context) -> Result<RegistryOptions> {
        Ok(RegistryOptions {
            creds: self.creds.as_deref().map(Credentials::parse).transpose()?,
            authfile: self.authfile.clone(),
            tls_verify: self.tls_verify,
            offline: ctx.offline,
        })
    }
}

#[derive(Serialize)]
struct Imported<'a> {
    #[serde(flatten)]
    report: &'a ImportReport,
    /// Wall-clock time of the import, in seconds.
    seconds: f64,
}

impl View for Imported<'_> {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            return Ok(());
        }
        let r = self.report;
        let reused = r.layers.iter().filter(|l| l.reused).count();
        let files: u64 = r
            .layers
            .iter()
            .filter_map(|l| l.stats.as_ref())
            .map(|s| s.files)
            .sum();
        writeln!(
            w,
            "imported {} {} in {:.2}s: {} ({} read, {} already stored), {}, {} ({}), {} deduplicated",
            r.name,
            r.manifest_digest,
            self.seconds,
            plural(r.layers.len() as u64, "layer", "layers"),
            r.layers.len() - reused,
            reused,
            plural(files, "file", "files"),
            plural(r.new_objects, "new object", "new objects"),
            fmt::bytes(r.new_bytes),
            r.dedup_hits,
        )?;
        // zstd:chunked layers: what was fetched against the blob, and why one went whole.
        for l in &r.layers {
            let Some(p) = l.stats.as_ref().and_then(|s| s.partial.as_ref()) else {
                continue;
            };
            match &p.whole {
                None => writeln!(
                    w,
                    "  layer {}  partial pull: fetched {} of a {} blob ({:.1}%), {} of {} from the store",
                    l.diff_id,
                    fmt::bytes(p.fetched_bytes),
                    fmt::bytes(p.blob_size),
                    100.0 * p.fetched_bytes as f64 / p.blob_size.max(1) as f64,
                    p.held_files,
                    plural(p.files, "file", "files"),
                )?,
                Some(why) => writeln!(
                    w,
                    "  layer {}  pulled whole ({} fetched): {why}",
                    l.diff_id,
                    fmt::bytes(p.fetched_bytes)
                )?,
            }
        }
        if ctx.verbose > 0 {
            for l in &r.layers {
                match &l.stats {
                    Some(s) => writeln!(
                        w,
                        "  layer {}  {} blob, {}, {} new objects, {} deduplicated",
                        l.diff_id,
                        fmt::bytes(l.blob_size),
                        plural(s.files, "file", "files"),
                        s.new_objects,
                        s.dedup_hits
                    )?,
                    None => writeln!(w, "  layer {}  already stored", l.diff_id)?,
                }
            }
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let registry = a.registry.options(ctx)?;
    // `--prepared NAME`: the source is the cached update's, pinned to its digest; it needs the
    // store (which must exist) before the source is opened.
    let (spec, cached) = match (a.source, &a.prepared) {
        (Some(s), _) => (s, None),
        (None, Some(name)) => {
            let store = ctx.open()?;
            let (spec, u) = layerstore_import::prepare::prepared_source(&store, name)
                .with_context(|| format!("cannot import the prepared update of {name}"))?;
            (spec, Some(u))
        }
        (None, None) => anyhow::bail!("give a SOURCE or --prepared NAME"),
    };
    // A prepared update the registry no longer has is named, with what to do.
    let gone = |e: layerstore_import::Error| -> anyhow::Error {
        match (e, &cached) {
            (
                layerstore_import::Error::Registry(e @ RegistryError::ManifestUnknown { .. }),
                Some(u),
            ) => anyhow::Error::new(e).context(format!(
                "the prepared update {} of {} is no longer in the registry; run `layerstore prepare {}` again",
                u.manifest_digest, u.name, u.name
            )),
            (e, _) => anyhow::Error::new(e).context(format!("cannot import {spec}")),
        }
    };
    // A source that cannot be read fails before a store is created for it.
    let source = layerstore_import::Source::open_with(&spec, &registry).map_err(&gone)?;
    let store = ctx.open_or_init()?;
    let bars = progress::Bars::new(!ctx.json && !ctx.quiet && std::io::stderr().is_terminal());
    let mut opts = ImportOptions {
        tag: a.tag.or(a.prepared),
        platform: a.platform,
        progress: &bars,
        layers_only: a.layers_only,
        labels: a.labels,
        registry,
        ..ImportOptions::default()
    };
    if let Some(j) = a.jobs {
        opts.jobs = j;
    }
    if !a.limits.is_empty() {
        opts.limits = Some(parse::apply_limits(store.limits(), &a.limits));
    }
    let started = std::time::Instant::now();
    let report = layerstore_import::import_source(&store, &source, &opts).map_err(&gone)?;
    drop(bars);
    ctx.emit(&Imported {
        report: &report,
        seconds: started.elapsed().as_secs_f64(),
    })?;
    Ok(ExitCode::SUCCESS)
}
