//! `images`: list the named images.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use layerstore_store::Digest;
use layerstore_store::labels::LabelFilter;
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, Align, table};
use crate::parse;

/// List images (with -q, their IDs only; with -v, digests untruncated).
#[derive(clap::Args)]
pub struct Args {
    /// Only images with this label, `label=KEY` or `label=KEY=VALUE` (repeatable: all must
    /// match). Config labels and local labels (`import --label`) both count; a local label
    /// overrides a config label of the same key.
    #[arg(long = "filter", value_name = "label=KEY[=VALUE]", value_parser = parse::filter)]
    filters: Vec<LabelFilter>,
}

/// One image name.
#[derive(Serialize)]
struct Image {
    name: String,
    /// The image ID as podman shows it: the config digest's hex.
    id: String,
    manifest_digest: Digest,
    config_digest: Digest,
    layers: usize,
    logical_size: u64,
    created: Option<String>,
    /// Where the image was imported from (`docker://HOST/REPO:TAG`, or the source as given);
    /// null for images imported before origins were recorded.
    origin: Option<String>,
}

#[derive(Serialize)]
#[serde(transparent)]
struct Images(Vec<Image>);

impl View for Images {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            // podman's `images -q`: each ID once.
            let mut seen = std::collections::HashSet::new();
            for i in &self.0 {
                if seen.insert(&i.id) {
                    writeln!(w, "{}", &i.id[..12])?;
                }
            }
            return Ok(());
        }
        let full = ctx.verbose > 0;
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|i| {
                let digest = i.manifest_digest.to_string();
                vec![
                    i.name.clone(),
                    if full {
                        i.id.clone()
                    } else {
                        i.id[..12].to_string()
                    },
                    if full {
                        digest
                    } else {
                        digest[..19].to_string()
                    },
                    i.layers.to_string(),
                    fmt::bytes(i.logical_size),
                    i.created.clone().unwrap_or_else(|| "-".into()),
                    i.origin.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(
            w,
            &[
                ("NAME", Align::Left),
                ("ID", Align::Left),
                ("DIGEST", Align::Left),
                ("LAYERS", Align::Right),
                ("SIZE", Align::Right),
                ("CREATED", Align::Left),
                ("ORIGIN", Align::Left),
            ],
            &rows,
        )
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.shared()?;
    let matching = store.images_with_labels(&a.filters)?;
    let images = store
        .images()?
        .into_iter()
        .filter(|(_, i)| matching.binary_search(&i.manifest_digest).is_ok())
        .map(|(name, i)| Image {
            name,
            id: i.config_digest.hex(),
            manifest_digest: i.manifest_digest,
            config_digest: i.config_digest,
            layers: i.layers.len(),
            logical_size: i.logical_size,
            created: i.created,
            origin: i.origin,
        })
        .collect();
    ctx.emit(&Images(images))?;
    Ok(ExitCode::SUCCESS)
}
