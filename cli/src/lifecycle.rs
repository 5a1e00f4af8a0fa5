//! The ref-lifecycle commands: gc, why, disk.

use std::io::{StdoutLock, Write};
use std::path::Path;

use anyhow::{Context, Result};
use layerstore_store::{Digest, LockMode};

use crate::{FormatArg, Global, fmt, open, parse_size, print_json};

pub fn gc(g: &Global, store_path: &Path, out: &mut StdoutLock<'_>, dry_run: &bool) -> Result<()> {
    let store = open(store_path)?;
    let (plan, report) =
        layerstore_gc::collect(&store, &layerstore_gc::GcOptions { dry_run: *dry_run })?;
    match (g.json, report) {
        (true, None) => print_json(&plan)?,
        (true, Some(r)) => print_json(&r)?,
        (false, None) => {
            if plan.is_empty() {
                writeln!(out, "nothing to collect")?;
            } else {
                writeln!(
                    out,
                    "would remove {} layer refs, {} images, {} layers, {} objects ({} loose files) and {} stray files, freeing {}",
                    plan.layer_refs.len(),
                    plan.images.len(),
                    plan.layers.len(),
                    plan.objects,
                    plan.loose_files,
                    plan.stray_files,
                    fmt::bytes(plan.bytes())
                )?;
                for l in &plan.layers {
                    writeln!(out, "  layer {l}")?;
                }
            }
        }
        (false, Some(r)) => {
            if !g.quiet {
                let p = &r.removed;
                writeln!(
                    out,
                    "removed {} layer refs, {} images, {} layers, {} objects and {} stray files; freed {} (exclusive lock held {:.1} ms, unlinks after it {:.1} ms)",
                    p.layer_refs.len(),
                    p.images.len(),
                    p.layers.len(),
                    p.objects,
                    p.stray_files,
                    fmt::bytes(r.bytes_freed),
                    r.lock_held.as_secs_f64() * 1000.0,
                    r.unlink.as_secs_f64() * 1000.0
                )?;
            }
        }
    }
    Ok(())
}

pub fn why(g: &Global, store_path: &Path, out: &mut StdoutLock<'_>, target: &str) -> Result<()> {
    let store = open(store_path)?;
    let _l = store.lock(LockMode::Shared)?;
    use layerstore_gc::why::{Subject, why};
    let subject = if let Some((img, path)) = target.split_once(":/") {
        let info = store.resolve_image(img)?;
        let tree = store.merged_tree(&info)?;
        let e = tree
            .lookup(path.as_bytes())
            .with_context(|| format!("no such path /{path} in image {img}"))?;
        Subject::Object(
            e.object
                .with_context(|| format!("/{path} in image {img} has no content"))?,
        )
    } else if target.starts_with("sha256:") {
        let d: Digest = target.parse()?;
        if store.image_by_digest(&d)?.is_some() {
            Subject::Image(d)
        } else {
            Subject::Layer(d)
        }
    } else if let Ok(id) = target.parse::<layerstore_store::ObjectId>() {
        Subject::Object(id)
    } else {
        Subject::Image(store.resolve_image(target)?.manifest_digest)
    };
    let reasons = why(&store, &subject)?;
    if g.json {
        print_json(&reasons)?;
    } else if reasons.is_empty() {
        writeln!(out, "nothing keeps {target} alive; the next gc removes it")?;
    } else {
        for r in &reasons {
            match &r.layer {
                Some(l) => writeln!(out, "{} -> {} -> layer {l}", r.root, r.via)?,
                None => writeln!(out, "{} -> {}", r.root, r.via)?,
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn disk(
    g: &Global,
    store_path: &Path,
    out: &mut StdoutLock<'_>,
    image: &str,
    dest: &Path,
    format: &FormatArg,
    size: &Option<String>,
    keep_merged: &bool,
) -> Result<()> {
    let store = open(store_path)?;
    let info = store.resolve_image(image)?;
    let _pin = store.pin_image(&info)?;
    let opts = layerstore_store::disk::DiskOptions {
        format: match format {
            FormatArg::Tar => layerstore_store::disk::DiskFormat::Tar,
            FormatArg::Erofs => layerstore_store::disk::DiskFormat::Erofs,
            FormatArg::Ext4 => layerstore_store::disk::DiskFormat::Ext4,
        },
        size: size.as_deref().map(parse_size).transpose()?,
        keep_merged: *keep_merged,
        merged_name: image.strip_prefix("image/").unwrap_or(image).to_string(),
    };
    let rep = store
        .generate_disk(&info, dest, &opts)
        .with_context(|| format!("cannot write a disk image of {image} to {}", dest.display()))?;
    if g.json {
        print_json(&rep)?;
    } else if !g.quiet {
        writeln!(
            out,
            "wrote {} ({}, {} entries) from {}{}",
            dest.display(),
            fmt::bytes(rep.bytes),
            rep.entries,
            rep.merged_ref,
            if rep.merged_kept {
                " (kept)"
            } else {
                " (dropped)"
            }
        )?;
    }
    Ok(())
}
