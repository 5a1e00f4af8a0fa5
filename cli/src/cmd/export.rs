//! `export`: write a stored image as an OCI layout, an oci-archive or a docker-archive.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use layerstore_import::export::{self, Destination, ExportOptions, ExportReport};
use layerstore_import::layer_out::{Compression, LayerCompression};
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt;
use crate::progress;

/// Export a stored image: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME[:TAG]]
///
/// Layers are rebuilt from the store (their diff_ids checked) and compressed in parallel; the
/// config is the imported bytes, so the image ID is kept. Without --compress, layers in an OCI
/// layout keep the compression they were imported with (and the manifest digest too, where the
/// compressed blobs come out the same) and a docker-archive holds uncompressed layers, as
/// `docker save` writes. The same image exported twice with the same options gives the same
/// bytes.
#[derive(clap::Args)]
pub struct Args {
    /// The image: a name, or a manifest digest or ID (a unique prefix is enough).
    image: String,
    /// Where to: oci:DIR[:TAG] (added to the layout in DIR, or a new one),
    /// oci-archive:FILE[:TAG], docker-archive:FILE[:NAME[:TAG]].
    #[arg(value_parser = destination)]
    destination: String,
    /// Compress every layer so: gzip, zstd, zstd:chunked (zstd with a table of contents, for
    /// partial pulls) or none.
    #[arg(long, value_parser = compression)]
    compress: Option<Compression>,
    /// The compression level (gzip 0-9, default 6; zstd 1-22, default 3).
    #[arg(long, requires = "compress", allow_negative_numbers = true)]
    level: Option<i32>,
}

fn destination(s: &str) -> Result<String, String> {
    Destination::parse(s).map_err(|e| e.to_string())?;
    Ok(s.into())
}

fn compression(s: &str) -> Result<Compression, String> {
    s.parse()
}

#[derive(Serialize)]
struct Exported<'a> {
    #[serde(skip)]
    image: &'a str,
    #[serde(flatten)]
    report: &'a ExportReport,
}

impl View for Exported<'_> {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            return Ok(());
        }
        let r = self.report;
        let kept = r.layers.iter().filter(|l| l.kept).count();
        let manifest = match (&r.manifest_digest, r.manifest_kept) {
            (Some(d), true) => format!("manifest {d} (as stored)"),
            (Some(d), false) => format!("manifest {d} (new)"),
            (None, _) => "no manifest".into(),
        };
        writeln!(
            w,
            "exported {} to {}: ID {}, {}, {} layers ({} with the stored digest), {} written",
            self.image,
            r.destination,
            r.config_digest,
            manifest,
            r.layers.len(),
            kept,
            fmt::bytes(r.bytes),
        )
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    // Options are checked before the store is opened.
    let opts = ExportOptions {
        compression: a
            .compress
            .map(|c| LayerCompression::new(c, a.level))
            .transpose()?,
    };
    let store = ctx.open()?;
    let bars = progress::LayerBars::new(progress::visible(ctx), "writing");
    let report = export::export_with(&store, &a.image, &a.destination, &opts, &bars)
        .with_context(|| format!("cannot export {} to {}", a.image, a.destination))?;
    drop(bars);
    ctx.emit(&Exported {
        image: &a.image,
        report: &report,
    })?;
    Ok(ExitCode::SUCCESS)
}
