//! `dedup-report`: dedup figures as a table, JSON or an SVG chart.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use layerstore_import::Platform;
use layerstore_import::dedup::DedupReport;
use layerstore_store::Store;
use serde::Serialize;

use crate::chart;
use crate::context::{Context, View};
use crate::fmt::{self, Align, plural, table};
use crate::parse;

/// Dedup figures for stored images or for sources analysed without importing them
///
/// Stored images are analysed in the order given (default: all, oldest first); --source
/// (repeatable) analyses images without importing them.
#[derive(clap::Args)]
pub struct Args {
    /// Stored images to analyse, in this order (names, digests or IDs; default: all).
    images: Vec<String>,
    /// Analyse this source instead (oci:DIR:REF, oci-archive:…, docker-archive:…).
    #[arg(long = "source", value_name = "SOURCE", value_parser = parse::source)]
    sources: Vec<String>,
    /// Also draw the figures as an SVG chart into FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Platform to pick from image indexes (with --source).
    #[arg(long, value_parser = parse::platform)]
    platform: Option<Platform>,
}

#[derive(Serialize)]
#[serde(transparent)]
struct Report(DedupReport);

impl View for Report {
    fn text(&self, _: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        let report = &self.0;
        let rows: Vec<Vec<String>> = report
            .images
            .iter()
            .chain(std::iter::once(&report.total))
            .map(|f| {
                vec![
                    f.name.clone(),
                    fmt::bytes(f.logical_bytes),
                    f.files.to_string(),
                    fmt::bytes(f.layer_level),
                    fmt::bytes(f.file_level.raw),
                    fmt::bytes(f.file_level.zstd),
                    fmt::bytes(f.cdc_16k.raw),
                    fmt::bytes(f.cdc_64k.raw),
                    fmt::bytes(f.shared_bytes),
                    fmt::bytes(f.new_file_bytes),
                ]
            })
            .collect();
        let r = Align::Right;
        table(
            w,
            &[
                ("IMAGE", Align::Left),
                ("LOGICAL", r),
                ("FILES", r),
                ("LAYER-LVL", r),
                ("FILE-LVL", r),
                ("+ZSTD", r),
                ("CDC16K", r),
                ("CDC64K", r),
                ("SHARED", r),
                ("NEW", r),
            ],
            &rows,
        )?;
        let t = &report.total;
        writeln!(w)?;
        writeln!(
            w,
            "series of {}, {} logical: layer-level {} ({} as compressed blobs), file-level {} ({} with zstd),",
            plural(report.images.len() as u64, "image", "images"),
            fmt::bytes(t.logical_bytes),
            fmt::bytes(t.layer_level),
            fmt::bytes(t.layer_blobs),
            fmt::bytes(t.file_level.raw),
            fmt::bytes(t.file_level.zstd)
        )?;
        writeln!(
            w,
            "  FastCDC 16 KiB {} ({} with zstd), 64 KiB {} ({} with zstd)",
            fmt::bytes(t.cdc_16k.raw),
            fmt::bytes(t.cdc_16k.zstd),
            fmt::bytes(t.cdc_64k.raw),
            fmt::bytes(t.cdc_64k.zstd)
        )?;
        if !report.largest_shared.is_empty() {
            writeln!(w, "largest shared files:")?;
            for s in &report.largest_shared {
                writeln!(
                    w,
                    "  {:>10}  in {}  {}",
                    fmt::bytes(s.size),
                    plural(s.images as u64, "image", "images"),
                    s.path
                )?;
            }
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    // A chart that cannot be written fails before the analysis, not after it.
    let svg = match &a.svg {
        Some(p) => Some((
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
            p,
        )),
        None => None,
    };
    let report = analyse(ctx, &a);
    if report.is_err()
        && let Some((_, path)) = &svg
    {
        let _ = std::fs::remove_file(path);
    }
    let report = Report(report?);
    ctx.emit(&report)?;
    if let Some((mut f, path)) = svg {
        let doc = chart::render_svg(&report.0)?;
        f.write_all(doc.as_bytes())
            .and_then(|()| f.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn analyse(ctx: &Context, a: &Args) -> Result<DedupReport> {
    Ok(if !a.sources.is_empty() {
        if !a.images.is_empty() {
            bail!("give stored images or --source, not both");
        }
        let platform = a.platform.clone().unwrap_or_else(Platform::host);
        let limits = match Store::open(ctx.store_path()) {
            Ok(s) => s.limits(),
            Err(_) => layerstore_store::Limits::default(),
        };
        layerstore_import::dedup::analyze_sources(&a.sources, &platform, &limits)?
    } else {
        let store = ctx.open()?;
        let names: Vec<String> = if a.images.is_empty() {
            let mut all = store.images()?;
            all.sort_by(|a, b| a.1.created.cmp(&b.1.created).then(a.0.cmp(&b.0)));
            all.into_iter().map(|(n, _)| n).collect()
        } else {
            // Digests and IDs become the image's name (or full digest) the analysis resolves.
            let mut names = Vec::new();
            for spec in &a.images {
                let info = store.find_image(spec)?;
                let name = spec.strip_prefix("image/").unwrap_or(spec);
                names.push(if info.names.iter().any(|n| n == name) {
                    name.to_string()
                } else {
                    info.names
                        .first()
                        .cloned()
                        .unwrap_or_else(|| info.manifest_digest.to_string())
                });
            }
            names
        };
        let mut layers = Vec::new();
        for n in &names {
            layers.extend(store.find_image(n)?.layers.iter().map(|l| l.diff_id));
        }
        let _pin = store.pin_for_read("dedup-report", &layers)?;
        layerstore_import::dedup::analyze_stored(&store, &names)?
    })
}
