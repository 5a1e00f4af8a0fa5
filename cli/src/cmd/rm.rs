//! `rm`: remove image names, or with `--merged` the merged refs `disk --keep-merged` kept.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use layerstore_store::{RefKind, RefName};
use serde::Serialize;

use crate::context::{Context, View};

/// Remove image names, or merged refs with --merged (space comes back at the next gc).
#[derive(clap::Args)]
pub struct Args {
    /// Image names (or a digest or ID of an image with one name); with --merged, merged ref
    /// names as `refs --kind merged` lists them (with or without `merged/`).
    #[arg(required = true)]
    names: Vec<String>,
    /// Remove merged refs (kept by `disk --keep-merged`) instead of image names.
    #[arg(long)]
    merged: bool,
}

#[derive(Serialize)]
struct Removed {
    /// The refs removed, `KIND/NAME`.
    removed: Vec<RefName>,
}

impl View for Removed {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if !ctx.quiet {
            for n in &self.removed {
                match n.kind() {
                    RefKind::Image => writeln!(w, "removed {}", n.name())?,
                    _ => writeln!(w, "removed {n}")?,
                }
            }
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.shared()?;
    let mut names = Vec::new();
    for n in &a.names {
        if a.merged {
            let bare = n.strip_prefix("merged/").unwrap_or(n);
            names.push(RefName::merged(bare)?);
            continue;
        }
        let bare = n.strip_prefix("image/").unwrap_or(n);
        if let Ok(r) = RefName::image(bare)
            && store.ref_target(&r)?.is_some()
        {
            names.push(r);
            continue;
        }
        // Not a name: a digest or ID removes the image's name, when there is exactly one.
        let info = store.find_image(n)?;
        match &info.names[..] {
            [one] => names.push(RefName::image(one)?),
            [] => bail!("image {n} has no name to remove"),
            many => bail!(
                "image {n} has several names ({}); remove them by name",
                many.join(", ")
            ),
        }
    }
    store.remove_refs(&names)?;
    ctx.emit(&Removed { removed: names })?;
    Ok(ExitCode::SUCCESS)
}
