//! `status`: images, where they came from, and the updates `prepare` cached for them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use layerstore_import::prepare::ImageStatus;
use serde::Serialize;

use crate::context::{Context, View};

/// Images with origin, digest and version, and their cached updates (reads the store only).
#[derive(clap::Args)]
pub struct Args {
    /// Image names to show (default: all).
    names: Vec<String>,
}

#[derive(Serialize)]
#[serde(transparent)]
struct Status(Vec<ImageStatus>);

impl View for Status {
    fn text(&self, _: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        for s in &self.0 {
            writeln!(
                w,
                "{}  {}  version {}  from {}",
                s.name,
                s.manifest_digest,
                s.version.as_deref().unwrap_or("-"),
                s.origin.as_deref().unwrap_or("-")
            )?;
            if let Some(u) = &s.update {
                writeln!(
                    w,
                    "  update: {}  version {}  created {}",
                    u.manifest_digest,
                    u.version.as_deref().unwrap_or("-"),
                    u.created.as_deref().unwrap_or("-")
                )?;
            }
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.shared()?;
    let status = layerstore_import::prepare::status(&store, &a.names)?;
    ctx.emit(&Status(status))?;
    Ok(ExitCode::SUCCESS)
}
