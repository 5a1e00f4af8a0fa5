//! `stash`: store a root tree as a new layer on a parent image (kiwi's stackbuild cache), and
//! `stash --list`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use layerstore_import::stash::{self, StashInfo, StashOptions, StashReport};
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, Align, plural};
use crate::parse;
use crate::progress;

/// Stash a root tree as a new image layer
///
/// The tree at ROOT is compared with the parent image's merged tree straight from the index:
/// added and changed files, metadata changes, removals (whiteouts) and directories replaced
/// wholesale (opaque whiteouts, where smaller) become one new layer; only contents the store
/// lacks are written. The parent is --parent; else the stash NAME already is, if it exists;
/// else there is none and the layer holds the whole tree. SOURCE_DATE_EPOCH sets the created
/// time (the same tree and time give the same image).
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The root tree to stash.
    #[arg(required_unless_present = "list", conflicts_with = "list")]
    root: Option<PathBuf>,
    /// The image to write, NAME[:TAG].
    #[arg(
        long,
        value_name = "NAME[:TAG]",
        required_unless_present = "list",
        conflicts_with = "list"
    )]
    tag: Option<String>,
    /// Stash on top of this image (a name, digest or ID).
    #[arg(long, value_name = "IMAGE")]
    parent: Option<String>,
    /// A config label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse::label)]
    labels: Vec<(String, String)>,
    /// Said in the image history entry.
    #[arg(long, value_name = "TEXT")]
    message: Option<String>,
    /// Take a file whose size, mtime and mode match the parent's as unchanged without reading
    /// it.
    #[arg(long)]
    trust_mtime: bool,
    /// Leave out paths matching PATTERN (rsync's rules: with a `/` from the root, else any
    /// name; `*` and `?`); the parent's entries there stay (repeatable).
    #[arg(long = "exclude", value_name = "PATTERN")]
    excludes: Vec<String>,
    /// List the stashes: name, parent, layers, size of the stash's layer, created, labels.
    #[arg(long)]
    list: bool,
}

#[derive(Serialize)]
struct Stashed<'a>(&'a StashReport);

impl View for Stashed<'_> {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            return writeln!(w, "{}", self.0.manifest_digest);
        }
        let r = self.0;
        let c = &r.counts;
        writeln!(
            w,
            "stashed {} as {} ({}): layer {} of {}, {} ({} entries; {} new contents, {})",
            r.name,
            r.manifest_digest,
            match r.parent {
                Some(p) => format!("on {p}"),
                None => "no parent".into(),
            },
            r.layers,
            r.diff_id,
            fmt::bytes(r.layer_size),
            r.entries,
            r.new_objects,
            fmt::bytes(r.new_bytes),
        )?;
        writeln!(
            w,
            "  {} added, {} changed, {} metadata only, {} removed, {}, {} hashed",
            c.added,
            c.changed,
            c.metadata_only,
            c.removed,
            plural(c.opaque, "opaque directory", "opaque directories"),
            c.hashed,
        )
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Listed(Vec<StashInfo>);

impl View for Listed {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            for s in &self.0 {
                writeln!(w, "{}", s.name)?;
            }
            return Ok(());
        }
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.parent.clone().unwrap_or_else(|| "-".into()),
                    s.layers.to_string(),
                    fmt::bytes(s.layer_size),
                    s.created.clone().unwrap_or_else(|| "-".into()),
                    if s.labels.is_empty() {
                        "-".into()
                    } else {
                        s.labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    },
                ]
            })
            .collect();
        fmt::table(
            w,
            &[
                ("NAME", Align::Left),
                ("PARENT", Align::Left),
                ("LAYERS", Align::Right),
                ("SIZE", Align::Right),
                ("CREATED", Align::Left),
                ("LABELS", Align::Left),
            ],
            &rows,
        )
    }
}

/// `SOURCE_DATE_EPOCH`, if set: seconds since the epoch.
fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => {
            Ok(Some(v.trim().parse().with_context(|| {
                format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")
            })?))
        }
        _ => Ok(None),
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    if a.list {
        let store = ctx.shared()?;
        ctx.emit(&Listed(stash::list(&store)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(root), Some(tag)) = (a.root, a.tag) else {
        bail!("stash needs ROOT and --tag");
    };
    let created = source_date_epoch()?;
    let store = ctx.open_or_init()?;
    let bar = progress::StashBar::new(progress::visible(ctx), &root);
    let opts = StashOptions {
        tag,
        parent: a.parent,
        labels: a.labels,
        message: a.message,
        trust_mtime: a.trust_mtime,
        exclude: a.excludes,
        created,
        limits: None,
        progress: &bar,
    };
    let report = stash::stash(&store, &root, &opts)
        .with_context(|| format!("cannot stash {}", root.display()))?;
    drop(bar);
    for w in &report.warnings {
        log::warn!("{w}");
    }
    ctx.emit(&Stashed(&report))?;
    Ok(ExitCode::SUCCESS)
}
