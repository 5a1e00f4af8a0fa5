//! `cat`: write a file of an image to standard output.

use std::process::ExitCode;

use anyhow::Result;

use crate::context::Context;

/// Write a file of an image's merged tree to stdout (symlinks followed).
#[derive(clap::Args)]
pub struct Args {
    /// The image: a name, or a manifest digest or ID (a unique prefix is enough).
    image: String,
    /// The file inside the image.
    path: String,
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    ctx.refuse_json("cat writes the file's bytes")?;
    let store = ctx.shared()?;
    let (_, id) = store.lookup(&a.image, a.path.as_bytes())?;
    let data = store.read_object(&id)?;
    // A write error here is the output's; `Context::finish` reports it as such.
    data.copy_to(&mut *ctx.out())?;
    Ok(ExitCode::SUCCESS)
}
