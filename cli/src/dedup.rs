//! `dedup-report`: the figures as a table, JSON or an SVG chart.

use std::io::{StdoutLock, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use layerstore_import::Platform;
use layerstore_store::Store;

use crate::{Global, chart, fmt, open, print_json};

pub fn dedup_report(
    g: &Global,
    store_path: &Path,
    out: &mut StdoutLock<'_>,
    images: &[String],
    sources: &[String],
    svg: &Option<PathBuf>,
    platform: &Option<String>,
) -> Result<()> {
    let report = if !sources.is_empty() {
        if !images.is_empty() {
            bail!("give stored images or --source, not both");
        }
        let platform = platform
            .as_deref()
            .map(Platform::parse)
            .transpose()?
            .unwrap_or_else(Platform::host);
        let limits = match Store::open(store_path) {
            Ok(s) => s.limits(),
            Err(_) => layerstore_store::Limits::default(),
        };
        layerstore_import::dedup::analyze_sources(sources, &platform, &limits)?
    } else {
        let store = open(store_path)?;
        let names: Vec<String> = if images.is_empty() {
            let mut all = store.images()?;
            all.sort_by(|a, b| a.1.created.cmp(&b.1.created).then(a.0.cmp(&b.0)));
            all.into_iter().map(|(n, _)| n).collect()
        } else {
            images.to_vec()
        };
        let mut layers = Vec::new();
        for n in &names {
            layers.extend(store.resolve_image(n)?.layers.iter().map(|l| l.diff_id));
        }
        let _pin = store.pin_for_read("dedup-report", &layers)?;
        layerstore_import::dedup::analyze_stored(&store, &names)?
    };
    if let Some(path) = svg {
        chart::write_svg(&report, path)?;
    }
    if g.json {
        print_json(&report)?;
    } else {
        writeln!(
            out,
            "{:<24} {:>10} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "IMAGE",
            "LOGICAL",
            "FILES",
            "LAYER-LVL",
            "FILE-LVL",
            "+ZSTD",
            "CDC16K",
            "CDC64K",
            "SHARED",
            "NEW"
        )?;
        for f in report.images.iter().chain(std::iter::once(&report.total)) {
            writeln!(
                out,
                "{:<24} {:>10} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                f.name,
                fmt::bytes(f.logical_bytes),
                f.files,
                fmt::bytes(f.layer_level),
                fmt::bytes(f.file_level.raw),
                fmt::bytes(f.file_level.zstd),
                fmt::bytes(f.cdc_16k.raw),
                fmt::bytes(f.cdc_64k.raw),
                fmt::bytes(f.shared_bytes),
                fmt::bytes(f.new_file_bytes)
            )?;
        }
        let t = &report.total;
        writeln!(out)?;
        writeln!(
            out,
            "series of {} images, {} logical: layer-level {} ({} as compressed blobs), file-level {} ({} with zstd),",
            report.images.len(),
            fmt::bytes(t.logical_bytes),
            fmt::bytes(t.layer_level),
            fmt::bytes(t.layer_blobs),
            fmt::bytes(t.file_level.raw),
            fmt::bytes(t.file_level.zstd)
        )?;
        writeln!(
            out,
            "  FastCDC 16 KiB {} ({} with zstd), 64 KiB {} ({} with zstd)",
            fmt::bytes(t.cdc_16k.raw),
            fmt::bytes(t.cdc_16k.zstd),
            fmt::bytes(t.cdc_64k.raw),
            fmt::bytes(t.cdc_64k.zstd)
        )?;
        if !report.largest_shared.is_empty() {
            writeln!(out, "largest shared files:")?;
            for s in &report.largest_shared {
                writeln!(
                    out,
                    "  {:>10}  in {} images  {}",
                    fmt::bytes(s.size),
                    s.images,
                    s.path
                )?;
            }
        }
    }
    Ok(())
}
