//! `checkout`: write an image's merged root filesystem into a directory; with several images,
//! their trees stacked in order (kiwi's stackbuild).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::ValueEnum;
use layerstore_store::{CheckoutMode, CheckoutOptions, CheckoutStats};
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, plural};
use crate::integrity;

/// Write an image's merged root filesystem into DEST (must not exist or be empty); with several
/// images, their merged trees applied in the given order into a new DEST, a later image's
/// entries replacing an earlier one's (as an rsync of each in turn).
#[derive(clap::Args)]
pub struct Args {
    /// The images (each a name, or a manifest digest or ID; a unique prefix is enough).
    #[arg(value_name = "IMAGE", required = true, num_args = 1..)]
    images: Vec<String>,
    /// The directory to write: it must not exist (or, for one image, be empty).
    #[arg(value_name = "DEST")]
    dest: PathBuf,
    /// copy, reflink, or hardlink (hard-links the store's read-only objects: never modify them).
    #[arg(long, value_enum, default_value_t = ModeArg::Copy)]
    mode: ModeArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Copy,
    Reflink,
    Hardlink,
}

#[derive(Serialize)]
struct CheckedOut<'a> {
    #[serde(flatten)]
    stats: &'a CheckoutStats,
    #[serde(skip)]
    image: &'a str,
    #[serde(skip)]
    dest: &'a std::path::Path,
    #[serde(skip)]
    mode: CheckoutMode,
}

impl View for CheckedOut<'_> {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            return Ok(());
        }
        let s = self.stats;
        let mut files = format!(
            "{} ({}",
            plural(s.files, "file", "files"),
            fmt::bytes(s.bytes)
        );
        if self.mode == CheckoutMode::Hardlink {
            files.push_str(&format!(
                "; {} linked, {} of {}",
                s.linked,
                plural(s.variants_made, "new variant", "new variants"),
                fmt::bytes(s.variant_bytes)
            ));
        }
        files.push(')');
        writeln!(
            w,
            "checked out {} into {}: {}, {}, {}, {}, {}",
            self.image,
            self.dest.display(),
            plural(s.directories, "directory", "directories"),
            files,
            plural(s.symlinks, "symlink", "symlinks"),
            plural(s.hardlinks, "hard link", "hard links"),
            plural(s.specials, "special file", "special files"),
        )
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let (images, dest) = (a.images, a.dest);
    let image = images.join(" ");
    let store = ctx.open()?;
    let mut pins = Vec::new();
    let mut trees = Vec::new();
    for name in &images {
        let info = store.find_image(name)?;
        // A reader that may not write the store pins nothing (a gc cannot run without write
        // access).
        pins.push(store.pin_image_if_writable(&info)?);
        trees.push(store.merged_tree(&info)?);
    }
    let opts = CheckoutOptions {
        mode: match a.mode {
            ModeArg::Copy => CheckoutMode::Copy,
            ModeArg::Reflink => CheckoutMode::Reflink,
            ModeArg::Hardlink => CheckoutMode::Hardlink,
        },
        ..CheckoutOptions::default()
    };
    let stats = if trees.len() == 1 {
        store.checkout(&trees[0], &dest, &opts)
    } else {
        store.checkout_stack(trees, &dest, &opts)
    }
    .with_context(|| format!("cannot check out {image} into {}", dest.display()))?;
    drop(pins);
    ctx.emit(&CheckedOut {
        stats: &stats,
        image: &image,
        dest: &dest,
        mode: opts.mode,
    })?;
    if !ctx.json && !ctx.quiet && (stats.skipped_devices > 0 || stats.skipped_xattrs > 0) {
        log::warn!(
            "not restored: {} device nodes, {} xattrs (unprivileged checkout or overlay markers)",
            stats.skipped_devices,
            stats.skipped_xattrs
        );
    }
    integrity::warn_fallbacks(&stats);
    Ok(ExitCode::SUCCESS)
}
