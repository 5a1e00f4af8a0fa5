//! `tag`: give an image another name.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use layerstore_store::{Digest, RefName};
use serde::Serialize;

use crate::context::{Context, View};

/// Give an image another name.
#[derive(clap::Args)]
pub struct Args {
    /// The image: a name, or a manifest digest or ID (a unique prefix is enough).
    image: String,
    /// The new name (replaces what it named before, if anything).
    new_name: String,
}

#[derive(Serialize)]
struct Tagged {
    name: String,
    manifest_digest: Digest,
}

impl View for Tagged {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if !ctx.quiet {
            writeln!(w, "tagged {} as {}", self.manifest_digest, self.name)?;
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.shared()?;
    let info = store.find_image(&a.image)?;
    let name = RefName::image(&a.new_name)?;
    store.set_refs(&[(name.clone(), info.manifest_digest.to_string())])?;
    ctx.emit(&Tagged {
        name: name.name().to_string(),
        manifest_digest: info.manifest_digest,
    })?;
    Ok(ExitCode::SUCCESS)
}
