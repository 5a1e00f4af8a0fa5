//! `df`: space used, from the index alone.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use layerstore_store::df::ImageUsage;
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, Align, plural, table};

/// Space used: logical and stored bytes, dedup ratio, per-image exclusive and shared bytes.
#[derive(clap::Args)]
pub struct Args {}

/// What a root costs: bytes only it keeps alive, and of those what its bound images keep.
#[derive(Serialize)]
struct RootUsage {
    name: String,
    bound_images: usize,
    exclusive_bytes: u64,
    bound_exclusive_bytes: u64,
}

#[derive(Serialize)]
struct Df {
    images: Vec<ImageUsage>,
    roots: Vec<RootUsage>,
    logical_bytes: u64,
    stored_bytes: u64,
    object_bytes: u64,
    loose_bytes: u64,
    objects: u64,
    loose_objects: u64,
    inline_objects: u64,
    index_bytes: u64,
    layers: u64,
    /// logical_bytes / object_bytes; null while nothing is stored.
    dedup_ratio: Option<f64>,
    /// Hardlink checkouts' variants (files, bytes): disposable copies, not counted above.
    variant_files: u64,
    variant_bytes: u64,
}

impl View for Df {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        // -v: exact byte counts and the manifest digest.
        let size = |n: u64| {
            if ctx.verbose > 0 {
                n.to_string()
            } else {
                fmt::bytes(n)
            }
        };
        let rows: Vec<Vec<String>> = self
            .images
            .iter()
            .map(|i| {
                let mut row = vec![
                    i.name.clone(),
                    size(i.logical_bytes),
                    size(i.exclusive_bytes),
                    size(i.shared_bytes),
                ];
                if ctx.verbose > 0 {
                    row.push(i.manifest_digest.to_string());
                }
                row
            })
            .collect();
        let mut header = vec![
            ("IMAGE", Align::Left),
            ("LOGICAL", Align::Right),
            ("EXCLUSIVE", Align::Right),
            ("SHARED", Align::Right),
        ];
        if ctx.verbose > 0 {
            header.push(("DIGEST", Align::Left));
        }
        table(w, &header, &rows)?;
        if !ctx.quiet {
            writeln!(
                w,
                "LOGICAL: the image's file contents, a content counted each time a file holds it.\n\
                 EXCLUSIVE: distinct content no other image holds (what removing it alone frees).\n\
                 SHARED: distinct content other images hold too.\n\
                 EXCLUSIVE + SHARED is the image's distinct content: less than LOGICAL where its \
                 files repeat a content."
            )?;
        }
        for r in &self.roots {
            writeln!(
                w,
                "root {}: {} only it keeps alive, {} of it for {}",
                r.name,
                fmt::bytes(r.exclusive_bytes),
                fmt::bytes(r.bound_exclusive_bytes),
                plural(r.bound_images as u64, "bound image", "bound images")
            )?;
        }
        writeln!(w)?;
        writeln!(
            w,
            "logical bytes of all images: {} ({})",
            fmt::bytes(self.logical_bytes),
            self.logical_bytes
        )?;
        writeln!(
            w,
            "distinct content: {} ({})",
            fmt::bytes(self.object_bytes),
            self.object_bytes
        )?;
        writeln!(
            w,
            "stored: {} ({}) = loose objects {} + index {} (with inline objects)",
            fmt::bytes(self.stored_bytes),
            self.stored_bytes,
            fmt::bytes(self.loose_bytes),
            fmt::bytes(self.index_bytes)
        )?;
        writeln!(
            w,
            "objects: {} ({} loose, {} inline), {}",
            self.objects,
            self.loose_objects,
            self.inline_objects,
            plural(self.layers, "layer", "layers")
        )?;
        match self.dedup_ratio {
            Some(r) => writeln!(w, "dedup ratio: {r:.2}x")?,
            None => writeln!(w, "dedup ratio: - (nothing stored)")?,
        }
        if self.variant_files > 0 {
            writeln!(
                w,
                "hardlink checkout variants: {}, {}; disposable, not counted above",
                plural(self.variant_files, "file", "files"),
                fmt::bytes(self.variant_bytes)
            )?;
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, _: Args) -> Result<ExitCode> {
    let store = ctx.shared()?;
    let df = store.df()?;
    let (variant_files, variant_bytes) = store.variant_usage()?;
    let mut roots = Vec::new();
    for r in store.roots()? {
        let (exclusive_bytes, bound_exclusive_bytes, _) = super::root::costs(&store, &r)?;
        roots.push(RootUsage {
            bound_images: r.bound.len(),
            name: r.name,
            exclusive_bytes,
            bound_exclusive_bytes,
        });
    }
    ctx.emit(&Df {
        variant_files,
        variant_bytes,
        roots,
        dedup_ratio: (df.object_bytes > 0).then_some(df.dedup_ratio),
        images: df.images,
        logical_bytes: df.logical_bytes,
        stored_bytes: df.stored_bytes,
        object_bytes: df.object_bytes,
        loose_bytes: df.loose_bytes,
        objects: df.objects,
        loose_objects: df.loose_objects,
        inline_objects: df.inline_objects,
        index_bytes: df.index_bytes,
        layers: df.layers,
    })?;
    Ok(ExitCode::SUCCESS)
}
