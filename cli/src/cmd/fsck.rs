//! `fsck`: verify every object and ref.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use layerstore_store::df::ObjectTotals;
use layerstore_store::fsck::{Finding, FsckOptions, FsckReport};
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, plural};
use crate::integrity;

/// Verify every object and ref; exit 1 if problems remain.
#[derive(clap::Args)]
pub struct Args {
    /// Remove staging leftovers, dead leases and rows that point nowhere.
    #[arg(long)]
    repair: bool,
}

#[derive(Serialize)]
#[serde(transparent)]
struct Fsck(FsckReport);

/// A finding as a sentence; modes in octal.
fn sentence(f: &Finding) -> String {
    let totals = |t: &ObjectTotals| {
        format!(
            "{} objects of {} bytes, {} loose of {} bytes",
            t.objects, t.object_bytes, t.loose_objects, t.loose_bytes
        )
    };
    #[allow(unreachable_patterns)] // a finding added later still prints, as JSON
    match f {
        Finding::CorruptObject { id, actual } => {
            format!("object {id} is corrupt: its content hashes to {actual}")
        }
        Finding::CorruptInlineObject { id } => {
            format!("inline object {id} is corrupt: its content does not hash to its id")
        }
        Finding::MissingObjectFile { id } => {
            format!("object {id} is missing: the index lists a loose file that is not there")
        }
        Finding::ObjectSizeMismatch { id, file, row } => {
            format!("object {id} has {file} bytes in its file, but the index says {row}")
        }
        Finding::BadObjectMode { id, mode } => format!(
            "object {id} has mode {mode:o}; object files are read-only regular files (100444), \
             never setuid or setgid"
        ),
        Finding::MissingObjectRow { id } => {
            format!("a layer entry names object {id}, which the index does not hold")
        }
        Finding::StrayFile { path } => format!("{path} in objects/ is not an object file"),
        Finding::DanglingRef { name, target } => {
            format!("ref {name} points at {target}, which is not stored")
        }
        Finding::MissingLayer { image, diff_id } => {
            format!("image {image} lists layer {diff_id}, which is not stored")
        }
        Finding::StagingLeftover { name } => {
            format!("staging/{name} is left over from an import that is no longer running")
        }
        Finding::UnreferencedInlineContents { count } => {
            format!(
                "{} in the index belong to no object",
                plural(*count, "inline content", "inline contents")
            )
        }
        Finding::ObjectTotals { recorded, counted } => format!(
            "the totals kept for df ({}) differ from the object rows ({})",
            totals(recorded),
            totals(counted)
        ),
        Finding::DamagedLayer { diff_id, .. } => {
            format!("layer {diff_id} lost content that --repair removed as damaged")
        }
        Finding::ChangedVariant { path, reason } => format!(
            "{path}, a file linked into a hardlink checkout, was changed through it ({reason}); \
             --repair removes it and the next checkout makes it again"
        ),
        Finding::BindingWithoutRef {
            root,
            image,
            reference,
        } => format!(
            "root {root} binds {reference}, but its ref bound/{root}/{image} is missing, so gc \
             does not keep the image; --repair writes the ref back"
        ),
        Finding::BoundRefWithoutBinding { name, target } => format!(
            "ref {name} ({target}) has no binding row, so unbind and root list do not show it; \
             --repair records it"
        ),
        other => serde_json::to_string(other).unwrap_or_else(|_| format!("{other:?}")),
    }
}

impl View for Fsck {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        let rep = &self.0;
        for f in &rep.repaired {
            writeln!(w, "repaired: {}", sentence(f))?;
        }
        for f in &rep.findings {
            writeln!(w, "problem: {}", sentence(f))?;
            if let Some(a) = integrity::advice(f) {
                writeln!(w, "  {a}")?;
            }
        }
        if !ctx.quiet {
            let mut summary = format!(
                "checked {} ({}), {}; ",
                plural(rep.objects_checked, "object", "objects"),
                fmt::bytes(rep.bytes_checked),
                plural(rep.refs_checked, "ref", "refs"),
            );
            if rep.unreferenced_files > 0 || ctx.verbose > 0 {
                summary.push_str(&plural(
                    rep.unreferenced_files,
                    "unreferenced object file (harmless; gc removes it); ",
                    "unreferenced object files (harmless; gc removes them); ",
                ));
            }
            summary.push_str(&match rep.findings.len() {
                0 => "no problems".to_string(),
                n => plural(n as u64, "problem", "problems"),
            });
            writeln!(w, "{summary}")?;
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    // fsck takes the shared lock for its check and, with --repair, the exclusive one for the
    // removals: this handle must not hold the shared lock across them.
    let store = ctx.open()?;
    let rep = store.fsck(&FsckOptions { repair: a.repair })?;
    let clean = rep.is_clean();
    ctx.emit(&Fsck(rep))?;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
