//! `gc`: remove what no root needs.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use layerstore_gc::{GcOptions, GcPlan, GcReport};
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, plural};

/// Remove what no ref needs: layer refs no image lists, then unreachable layers and objects.
#[derive(clap::Args)]
pub struct Args {
    /// Print the plan only.
    #[arg(long)]
    dry_run: bool,
}

/// What a dry run would remove.
#[derive(Serialize)]
#[serde(transparent)]
struct Plan(GcPlan);

/// What a collection removed; durations in seconds.
#[derive(Serialize)]
struct Collected {
    removed: GcPlan,
    bytes_freed: u64,
    leases_reclaimed: usize,
    lock_wait: f64,
    lock_held: f64,
    renames: f64,
    unlink: f64,
    variants_removed: u64,
}

impl From<GcReport> for Collected {
    fn from(r: GcReport) -> Self {
        Collected {
            removed: r.removed,
            bytes_freed: r.bytes_freed,
            leases_reclaimed: r.leases_reclaimed,
            lock_wait: r.lock_wait.as_secs_f64(),
            lock_held: r.lock_held.as_secs_f64(),
            renames: r.renames.as_secs_f64(),
            unlink: r.unlink.as_secs_f64(),
            variants_removed: r.variants_removed,
        }
    }
}

fn counts(p: &GcPlan) -> String {
    let cache = if p.blob_locations > 0 {
        format!(
            " (and {} of the blob info cache)",
            plural(p.blob_locations, "row", "rows")
        )
    } else {
        String::new()
    };
    format!(
        "{}, {}, {}, {} and {}{cache}",
        plural(p.layer_refs.len() as u64, "layer ref", "layer refs"),
        plural(p.images.len() as u64, "image", "images"),
        plural(p.layers.len() as u64, "layer", "layers"),
        plural(p.objects, "object", "objects"),
        plural(p.stray_files, "stray file", "stray files"),
    )
}

impl View for Plan {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        let p = &self.0;
        if p.is_empty() {
            return writeln!(w, "nothing to collect");
        }
        writeln!(
            w,
            "would remove {} ({} loose), freeing {}",
            counts(p),
            plural(p.loose_files, "file", "files"),
            fmt::bytes(p.bytes())
        )?;
        for l in &p.layers {
            writeln!(w, "  layer {l}")?;
        }
        if ctx.verbose > 0 {
            for i in &p.images {
                writeln!(w, "  image {i}")?;
            }
            for r in &p.layer_refs {
                writeln!(w, "  ref {r}")?;
            }
        }
        Ok(())
    }
}

impl View for Collected {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            return Ok(());
        }
        writeln!(
            w,
            "removed {}; freed {} (exclusive lock held {:.1} ms, unlinks after it {:.1} ms)",
            counts(&self.removed),
            fmt::bytes(self.bytes_freed),
            self.lock_held * 1000.0,
            self.unlink * 1000.0
        )?;
        if ctx.verbose > 0 {
            writeln!(
                w,
                "waited {:.1} ms for the exclusive lock; reclaimed {}",
                self.lock_wait * 1000.0,
                plural(self.leases_reclaimed as u64, "dead lease", "dead leases")
            )?;
            for l in &self.removed.layers {
                writeln!(w, "  layer {l}")?;
            }
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.open()?;
    let (plan, report) = layerstore_gc::collect(&store, &GcOptions { dry_run: a.dry_run })?;
    match report {
        None => ctx.emit(&Plan(plan))?,
        Some(r) => ctx.emit(&Collected::from(r))?,
    }
    Ok(ExitCode::SUCCESS)
}
