//! `disk`: a rootfs tar, EROFS or ext4 image of an image, from a temporary merged ref.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum;
use layerstore_store::disk::{DiskFormat, DiskOptions, DiskReport};
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, plural};
use crate::parse;

/// Write a disk image of IMAGE: a rootfs tar, EROFS or ext4, from a temporary merged ref.
#[derive(clap::Args)]
pub struct Args {
    /// The image: a name, or a manifest digest or ID (a unique prefix is enough).
    image: String,
    /// The file to write; `-` writes a tar to standard output.
    out: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value_t = FormatArg::Tar)]
    format: FormatArg,
    /// ext4 size, e.g. 512M or 2G (default: from the content).
    #[arg(long, value_parser = parse::size)]
    size: Option<u64>,
    /// Keep the merged/ ref afterwards; `layerstore rm --merged NAME` drops it, and the next
    /// gc frees what only it held.
    #[arg(long)]
    keep_merged: bool,
    /// Also create the root NAME pinning the image, or move it there (coreos-assembler's flow:
    /// the image's name may then be removed; its layers stay for the deployment until the root
    /// moves on, so a rebase onto an image sharing layers reuses them).
    #[arg(long, value_name = "NAME")]
    root: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Tar,
    Erofs,
    Ext4,
}

#[derive(Serialize)]
#[serde(transparent)]
struct Disk(DiskReport);

impl View for Disk {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            return Ok(());
        }
        let r = &self.0;
        writeln!(
            w,
            "wrote {} ({}, {}) from {}{}",
            r.output.display(),
            fmt::bytes(r.bytes),
            plural(r.entries, "entry", "entries"),
            r.merged_ref,
            if r.merged_kept {
                " (kept; drop it with `layerstore rm --merged NAME`)"
            } else {
                " (dropped)"
            }
        )
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let to_stdout = a.out.as_os_str() == "-";
    let format = match a.format {
        FormatArg::Tar => DiskFormat::Tar,
        FormatArg::Erofs => DiskFormat::Erofs,
        FormatArg::Ext4 => DiskFormat::Ext4,
    };
    if to_stdout {
        if format != DiskFormat::Tar {
            bail!("only --format tar can be written to standard output");
        }
        ctx.refuse_json("the tar goes to standard output")?;
    }
    let store = ctx.open()?;
    let info = store.find_image(&a.image)?;
    let _pin = store.pin_image(&info)?;
    // The root is set before the disk is written: the image stays whatever happens to its
    // names meanwhile, and a disk that fails leaves the root where the user asked for it.
    if let Some(root) = &a.root {
        let previous = store
            .set_root(root, &info.manifest_digest)
            .with_context(|| format!("cannot set root {root}"))?;
        if let Some(p) = previous.filter(|p| *p != info.manifest_digest) {
            log::warn!("moved root {root} from {p}");
        }
    }
    let opts = DiskOptions {
        format,
        size: a.size,
        keep_merged: a.keep_merged,
        merged_name: merged_name(&a.image, &info),
    };
    if to_stdout {
        // A write error here is the output's; `Context::finish` reports it as such.
        let rep = store.generate_tar_to(&info, &mut *ctx.out(), &opts)?;
        if rep.merged_kept {
            log::warn!("kept {}", rep.merged_ref);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rep = store.generate_disk(&info, &a.out, &opts).with_context(|| {
        format!(
            "cannot write a disk image of {} to {}",
            a.image,
            a.out.display()
        )
    })?;
    ctx.emit(&Disk(rep))?;
    Ok(ExitCode::SUCCESS)
}

/// The merged ref's name: the image name given, else the image's first name (the image was
/// named by digest or ID), else its manifest digest's hex.
fn merged_name(spec: &str, info: &layerstore_store::ImageInfo) -> String {
    let name = spec.strip_prefix("image/").unwrap_or(spec);
    if info.names.iter().any(|n| n == name) {
        name.to_string()
    } else {
        info.names
            .first()
            .cloned()
            .unwrap_or_else(|| info.manifest_digest.hex())
    }
}
