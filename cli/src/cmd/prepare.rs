//! `prepare`: check an image's origin for an update and cache what it offers.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use layerstore_import::prepare::PrepareReport;
use layerstore_import::{ImportOptions, Platform};
use serde::Serialize;

use crate::cmd::import::RegistryArgs;
use crate::context::{Context, View};
use crate::fmt;
use crate::parse;

/// Check an image's origin (or SOURCE with --tag NAME) for an update: fetch only its manifest
/// and config, and cache them when they differ from the stored image.
#[derive(clap::Args)]
pub struct Args {
    /// An image name (its origin is checked), or a source with --tag.
    target: String,
    /// The image name SOURCE updates.
    #[arg(long)]
    tag: Option<String>,
    /// Drop the cached update of the image instead.
    #[arg(long, conflicts_with = "tag")]
    clear: bool,
    /// Platform to pick from an image index, os/arch[/variant] (default: the host's).
    #[arg(long, value_parser = parse::platform)]
    platform: Option<Platform>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Serialize)]
#[serde(transparent)]
struct Prepared(PrepareReport);

impl View for Prepared {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            return Ok(());
        }
        let r = &self.0;
        if !r.update {
            return writeln!(w, "{}: no update ({} at {})", r.name, r.available, r.source);
        }
        writeln!(w, "{}: update {} from {}", r.name, r.available, r.source)?;
        writeln!(w, "  version: {}", r.version.as_deref().unwrap_or("-"))?;
        writeln!(w, "  created: {}", r.created.as_deref().unwrap_or("-"))?;
        writeln!(
            w,
            "  layers to fetch: {} ({}), already stored: {}, removed: {}",
            r.to_fetch.len(),
            fmt::bytes(r.fetch_bytes),
            r.stored.len(),
            r.removed.len(),
        )
    }
}

#[derive(Serialize)]
struct Cleared {
    name: String,
    /// Whether there was a cached update to drop.
    cleared: bool,
}

impl View for Cleared {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            return Ok(());
        }
        if self.cleared {
            writeln!(w, "dropped the prepared update of {}", self.name)
        } else {
            writeln!(w, "{} has no prepared update", self.name)
        }
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.open()?;
    if a.clear {
        let cleared = store.clear_prepared_update(&a.target, None)?;
        ctx.emit(&Cleared {
            name: a.target,
            cleared,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let opts = ImportOptions {
        platform: a.platform,
        registry: a.registry.options(ctx)?,
        ..ImportOptions::default()
    };
    let (name, source) = match &a.tag {
        Some(t) => (t.as_str(), Some(a.target.as_str())),
        None => (a.target.as_str(), None),
    };
    let report = layerstore_import::prepare::prepare(&store, name, source, &opts)
        .with_context(|| format!("cannot check {name} for an update"))?;
    ctx.emit(&Prepared(report))?;
    Ok(ExitCode::SUCCESS)
}
