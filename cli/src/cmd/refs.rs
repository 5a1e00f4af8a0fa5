//! `refs`: list refs.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use layerstore_store::{RefKind, RefName};
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, Align, table};

/// List refs.
#[derive(clap::Args)]
pub struct Args {
    /// Only refs of this kind.
    #[arg(long, value_parser = kind_parser())]
    kind: Option<RefKind>,
}

fn kind_parser() -> impl TypedValueParser<Value = RefKind> {
    PossibleValuesParser::new(RefKind::ALL.map(RefKind::as_str))
        .map(|s| s.parse::<RefKind>().expect("one of RefKind::ALL"))
}

#[derive(Serialize)]
struct Ref {
    name: RefName,
    kind: RefKind,
    target: String,
    /// When the ref was last set, RFC 3339.
    created: String,
}

#[derive(Serialize)]
#[serde(transparent)]
struct Refs(Vec<Ref>);

impl View for Refs {
    fn text(&self, _: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|r| vec![r.name.to_string(), r.target.clone(), r.created.clone()])
            .collect();
        table(
            w,
            &[
                ("NAME", Align::Left),
                ("TARGET", Align::Left),
                ("CREATED", Align::Left),
            ],
            &rows,
        )
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.shared()?;
    let refs = store
        .refs(a.kind)?
        .into_iter()
        .map(|r| Ref {
            name: r.name,
            kind: r.kind,
            target: r.target,
            created: fmt::rfc3339(r.created),
        })
        .collect();
    ctx.emit(&Refs(refs))?;
    Ok(ExitCode::SUCCESS)
}
