//! `push`: send a stored image to a registry.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use layerstore_import::layer_out::Compression;
use layerstore_import::registry::push::{self, LayerPush, PushReport};
use serde::Serialize;

use crate::cmd::import::RegistryArgs;
use crate::context::{Context, View};
use crate::fmt;
use crate::progress;

/// Push a stored image to a registry: docker://HOST[:PORT]/REPO[:TAG]
///
/// Blobs the registry has, or can mount from another of its repositories the store saw them
/// in, are not uploaded; the others are rebuilt from the store and compressed reproducibly.
#[derive(clap::Args)]
pub struct Args {
    /// The image: a name, or a manifest digest or ID (a unique prefix is enough).
    image: String,
    /// Where to: docker://HOST[:PORT]/REPO[:TAG].
    destination: String,
    /// Compression of layers the registry has under no known digest.
    #[arg(long, value_enum, default_value = "gzip")]
    compress: CompressArg,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// `push --compress`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum CompressArg {
    Gzip,
    Zstd,
    /// zstd with a table of contents, for partial pulls.
    #[value(name = "zstd:chunked")]
    ZstdChunked,
}

#[derive(Serialize)]
struct Pushed<'a> {
    #[serde(skip)]
    image: &'a str,
    #[serde(flatten)]
    report: &'a PushReport,
}

impl View for Pushed<'_> {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            return Ok(());
        }
        let r = self.report;
        let uploaded = r
            .layers
            .iter()
            .filter(|l| l.how == LayerPush::Uploaded)
            .count();
        writeln!(
            w,
            "pushed {} to {} {}: {} layers ({} uploaded, {} already there or mounted), {} uploaded",
            self.image,
            r.destination,
            r.manifest_digest,
            r.layers.len(),
            uploaded,
            r.layers.len() - uploaded,
            fmt::bytes(r.uploaded_bytes),
        )
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.open()?;
    let opts = push::PushOptions {
        registry: a.registry.options(ctx)?,
        compression: match a.compress {
            CompressArg::Gzip => Compression::Gzip,
            CompressArg::Zstd => Compression::Zstd,
            CompressArg::ZstdChunked => Compression::ZstdChunked,
        },
        chunk_bytes: None,
    };
    let bars = progress::LayerBars::new(progress::visible(ctx), "compressing");
    let report = push::push_with(&store, &a.image, &a.destination, &opts, &bars)
        .with_context(|| format!("cannot push {} to {}", a.image, a.destination))?;
    drop(bars);
    ctx.emit(&Pushed {
        image: &a.image,
        report: &report,
    })?;
    Ok(ExitCode::SUCCESS)
}
