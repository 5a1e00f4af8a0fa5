//! `root`: deployments. A root pins its image by digest, with the images bound to it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use layerstore_store::{Binding, Digest, RefName, RootInfo, Store};
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, Align, table};

/// Roots (deployments): each pins one image by digest, and the images bound to it
///
/// A root keeps its image's manifest, config and layers after the image's names are removed,
/// until the root moves to another image or is removed. A host keeps its booted and rollback
/// deployments as two roots.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Create the root NAME pinning IMAGE, or move it there (prints the previous digest).
    Set {
        /// The root's name.
        name: String,
        /// The image: a name, or a manifest digest or ID (a unique prefix is enough).
        image: String,
    },
    /// List roots: image digest and names, bound images, and the bytes only each keeps alive.
    List,
    /// Remove a root and its bindings (the next gc frees what only they kept).
    Rm {
        /// The root's name.
        name: String,
    },
}

#[derive(Serialize)]
struct Set {
    root: String,
    image: Digest,
    previous: Option<Digest>,
}

impl View for Set {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            return Ok(());
        }
        match &self.previous {
            Some(p) if *p == self.image => {
                writeln!(w, "root {} already at {}", self.root, self.image)
            }
            Some(p) => writeln!(w, "moved root {} from {p} to {}", self.root, self.image),
            None => writeln!(w, "created root {} at {}", self.root, self.image),
        }
    }
}

/// A bound image as `root list` shows it.
#[derive(Serialize)]
struct Bound {
    #[serde(flatten)]
    binding: Binding,
    /// Bytes only this binding keeps alive.
    exclusive_bytes: u64,
}

/// A root as `root list` shows it.
#[derive(Serialize)]
struct Root {
    name: String,
    image: Digest,
    names: Vec<String>,
    bound: Vec<Bound>,
    created: i64,
    /// Bytes only this root keeps alive: its image and bound images, less what anything else
    /// keeps (what `root rm` and the next gc would free).
    exclusive_bytes: u64,
    /// Of those, what its bound images alone keep.
    bound_exclusive_bytes: u64,
}

#[derive(Serialize)]
#[serde(transparent)]
struct List(Vec<Root>);

impl View for List {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        let full = ctx.verbose > 0;
        let short = |d: &Digest| {
            let s = d.to_string();
            if full { s } else { s[..19].to_string() }
        };
        let mut rows = Vec::new();
        for r in &self.0 {
            rows.push(vec![
                r.name.clone(),
                short(&r.image),
                if r.names.is_empty() {
                    "-".into()
                } else {
                    r.names.join(", ")
                },
                r.bound.len().to_string(),
                fmt::bytes(r.exclusive_bytes),
                fmt::bytes(r.bound_exclusive_bytes),
            ]);
        }
        table(
            w,
            &[
                ("ROOT", Align::Left),
                ("IMAGE", Align::Left),
                ("NAMES", Align::Left),
                ("BOUND", Align::Right),
                ("EXCLUSIVE", Align::Right),
                ("BOUND-EXCL", Align::Right),
            ],
            &rows,
        )?;
        if ctx.verbose > 0 {
            for r in &self.0 {
                for b in &r.bound {
                    writeln!(
                        w,
                        "  {} binds {} ({}, {} exclusive)",
                        r.name,
                        b.binding.reference,
                        short(&b.binding.image),
                        fmt::bytes(b.exclusive_bytes)
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Removed {
    root: String,
    image: Digest,
    unbound: Vec<Binding>,
}

impl View for Removed {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if !ctx.quiet {
            writeln!(
                w,
                "removed root {} (was at {}{})",
                self.root,
                self.image,
                match self.unbound.len() {
                    0 => String::new(),
                    n => format!(", {} unbound", fmt::plural(n as u64, "image", "images")),
                }
            )?;
        }
        Ok(())
    }
}

/// The bytes only `root` keeps alive (itself and its bindings), only its bindings, and only
/// each binding.
pub(crate) fn costs(store: &Store, root: &RootInfo) -> Result<(u64, u64, Vec<u64>)> {
    let bound: Vec<RefName> = root.bound.iter().map(|b| b.r#ref.clone()).collect();
    let mut all = bound.clone();
    all.push(RefName::root(&root.name)?);
    let mut sets = vec![all, bound.clone()];
    sets.extend(bound.into_iter().map(|b| vec![b]));
    let c = layerstore_gc::costs(store, &sets)?;
    Ok((c[0], c[1], c[2..].to_vec()))
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    match a.action {
        Action::Set { name, image } => {
            let store = ctx.shared()?;
            let info = store.find_image(&image)?;
            let previous = store
                .set_root(&name, &info.manifest_digest)
                .with_context(|| format!("cannot set root {name}"))?;
            ctx.emit(&Set {
                root: name,
                image: info.manifest_digest,
                previous,
            })?;
        }
        Action::List => {
            let store = ctx.shared()?;
            let mut out = Vec::new();
            for info in store.roots()? {
                let (exclusive_bytes, bound_exclusive_bytes, each) = costs(&store, &info)?;
                out.push(Root {
                    bound: info
                        .bound
                        .into_iter()
                        .zip(each)
                        .map(|(binding, exclusive_bytes)| Bound {
                            binding,
                            exclusive_bytes,
                        })
                        .collect(),
                    name: info.name,
                    image: info.image,
                    names: info.names,
                    created: info.created,
                    exclusive_bytes,
                    bound_exclusive_bytes,
                });
            }
            ctx.emit(&List(out))?;
        }
        Action::Rm { name } => {
            let store = ctx.shared()?;
            let (image, unbound) = store.remove_root(&name)?;
            ctx.emit(&Removed {
                root: name,
                image,
                unbound,
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
