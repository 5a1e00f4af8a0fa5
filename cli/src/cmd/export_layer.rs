//! `export-layer`: a stored layer's uncompressed tar, byte for byte as imported.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use layerstore_store::Digest;
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt;
use crate::output::Recorder;
use crate::parse;

/// Write a stored layer's uncompressed tar, byte for byte as imported, to FILE or stdout.
#[derive(clap::Args)]
pub struct Args {
    /// The layer's diff_id (sha256:…), as `inspect` lists it.
    #[arg(value_parser = parse::digest)]
    diff_id: Digest,
    /// Write the tar to FILE instead of standard output (`-` is standard output).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Serialize)]
struct Exported {
    diff_id: Digest,
    output: PathBuf,
    bytes: u64,
}

impl View for Exported {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if !ctx.quiet {
            writeln!(
                w,
                "wrote layer {} to {} ({})",
                self.diff_id,
                self.output.display(),
                fmt::bytes(self.bytes)
            )?;
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let file = a.output.filter(|p| p.as_os_str() != "-");
    if file.is_none() {
        ctx.refuse_json("the tar goes to standard output; give --output FILE")?;
    }
    let store = ctx.open()?;
    let d = a.diff_id;
    let _pin = store.pin_for_read_if_writable(&format!("export {d}"), &[d])?;
    let Some(path) = file else {
        // A write error here is the output's; `Context::finish` reports it as such.
        store.export_layer_tar(&d, &mut *ctx.out())?;
        return Ok(ExitCode::SUCCESS);
    };
    let f = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = Recorder::new(std::io::BufWriter::new(f));
    let res = store
        .export_layer_tar(&d, &mut w)
        .map_err(anyhow::Error::from)
        .and_then(|n| Ok(w.flush().map(|()| n)?));
    // The store names the object it was copying when the write failed; the file is to blame.
    if let Some((_, msg)) = w.failure() {
        bail!("cannot write {}: {msg}", path.display());
    }
    let bytes = res?;
    ctx.emit(&Exported {
        diff_id: d,
        output: path,
        bytes,
    })?;
    Ok(ExitCode::SUCCESS)
}
