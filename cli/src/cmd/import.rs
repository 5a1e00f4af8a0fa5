//! `import`: read an image from a local source into the store.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use layerstore_import::{ImportOptions, ImportReport, Platform};
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, plural};
use crate::parse::{self, LimitSetting};
use crate::progress;

/// Import an image from a local source
///
/// Sources (the forms skopeo names them by):
///   oci:DIR[:REF]                 an OCI image layout directory; REF is a tag
///                                 (org.opencontainers.image.ref.name) or @sha256:DIGEST
///   oci-archive:FILE[:REF]        the same layout as a tar archive
///   docker-archive:FILE[:N|NAME]  a `docker save` / `podman save` archive; N picks the
///                                 N-th image (from 0), NAME a repository tag in it
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// What to import: oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE[:N|NAME].
    #[arg(value_name = "SOURCE", value_parser = parse::source)]
    source: String,
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
    // A source that cannot be read fails before a store is created for it.
    let source = layerstore_import::Source::open(&a.source)
        .with_context(|| format!("cannot import {}", a.source))?;
    let store = ctx.open_or_init()?;
    let bars = progress::Bars::new(!ctx.json && !ctx.quiet && std::io::stderr().is_terminal());
    let mut opts = ImportOptions {
        tag: a.tag,
        platform: a.platform,
        progress: &bars,
        layers_only: a.layers_only,
        labels: a.labels,
        ..ImportOptions::default()
    };
    if let Some(j) = a.jobs {
        opts.jobs = j;
    }
    if !a.limits.is_empty() {
        opts.limits = Some(parse::apply_limits(store.limits(), &a.limits));
    }
    let started = std::time::Instant::now();
    let report = layerstore_import::import_source(&store, &source, &opts)
        .with_context(|| format!("cannot import {}", a.source))?;
    drop(bars);
    ctx.emit(&Imported {
        report: &report,
        seconds: started.elapsed().as_secs_f64(),
    })?;
    Ok(ExitCode::SUCCESS)
}
