//! `why`: which roots keep something alive.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use layerstore_gc::why::{Reason, Subject, why};
use layerstore_store::{Digest, ObjectId};
use serde::Serialize;

use crate::context::{Context, View};

/// Which roots keep something alive: an image, a layer, an object or a file
#[derive(clap::Args)]
pub struct Args {
    /// IMAGE (name, digest or ID), sha256:DIGEST of a layer, an OBJECT-ID, or IMAGE:/PATH.
    target: String,
}

#[derive(Serialize)]
#[serde(transparent)]
struct Why {
    reasons: Vec<Reason>,
    #[serde(skip)]
    target: String,
}

impl View for Why {
    fn text(&self, _: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if self.reasons.is_empty() {
            return writeln!(
                w,
                "nothing keeps {} alive; the next gc removes it",
                self.target
            );
        }
        for r in &self.reasons {
            match &r.layer {
                Some(l) => writeln!(w, "{} -> {} -> layer {l}", r.root, r.via)?,
                None => writeln!(w, "{} -> {}", r.root, r.via)?,
            }
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.shared()?;
    let target = &a.target;
    let subject = if let Some((img, path)) = target.split_once(":/") {
        let (_, id) = store.lookup(img, format!("/{path}").as_bytes())?;
        Subject::Object(id)
    } else if target.len() == "sha256:".len() + 64 && target.starts_with("sha256:") {
        let d: Digest = target.parse()?;
        if store.image_by_digest(&d)?.is_some() {
            Subject::Image(d)
        } else {
            Subject::Layer(d)
        }
    } else if let Ok(id) = target.parse::<ObjectId>() {
        Subject::Object(id)
    } else {
        Subject::Image(store.find_image(target)?.manifest_digest)
    };
    let reasons = why(&store, &subject)?;
    ctx.emit(&Why {
        reasons,
        target: target.clone(),
    })?;
    Ok(ExitCode::SUCCESS)
}
