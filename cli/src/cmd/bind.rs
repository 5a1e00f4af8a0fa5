//! `bind` / `unbind`: images bound to a root (bootc's logically bound images), kept by digest
//! while the root binds them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use layerstore_import::ImportOptions;
use layerstore_import::bind::BindTarget;
use layerstore_store::{Binding, Digest};
use serde::Serialize;

use crate::context::{Context, View};

/// Bind registry images to a root: pulled into the store, kept while the root binds them
///
/// Each REF must be pinned by digest, HOST/REPO@sha256:…; a tag is refused unless
/// --resolve-tags, which resolves it once and records the digest (it is never refreshed).
/// With --from-image, the references come from the root's own image: the symlinks in
/// usr/lib/bootc/bound-images.d/ to .image or .container files (bootc's convention), read
/// from the index without a checkout; the root then binds exactly those (images its previous
/// image declared are unbound in the same transaction). Every image is pulled first; the bindings are recorded
/// together only if all pulls succeed, so a failure leaves the root's bindings as they were,
/// and a rerun is idempotent.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct BindArgs {
    /// The root's name (see `root set`).
    root: String,
    /// Images to bind, HOST/REPO@sha256:DIGEST.
    #[arg(required_unless_present = "from_image", conflicts_with = "from_image")]
    refs: Vec<String>,
    /// Bind exactly the images the root's image declares (usr/lib/bootc/bound-images.d/),
    /// unbinding the others.
    #[arg(long)]
    from_image: bool,
    /// Accept tags: resolve each once and record the digest it names now.
    #[arg(long)]
    resolve_tags: bool,
    /// Platform to pick from an image index, os/arch[/variant] (default: the host's).
    #[arg(long, value_parser = crate::parse::platform)]
    platform: Option<layerstore_import::Platform>,
    #[command(flatten)]
    registry: crate::cmd::import::RegistryArgs,
}

/// Unbind images from a root (all of them without REF); the next gc frees what only they kept.
#[derive(clap::Args)]
pub struct UnbindArgs {
    /// The root's name.
    root: String,
    /// Bound references or manifest digests to unbind (default: all).
    refs: Vec<String>,
}

#[derive(Serialize)]
struct Bound {
    root: String,
    /// The root's bindings after the command.
    bindings: Vec<Binding>,
    /// References pulled into the store (the others were there already).
    pulled: Vec<String>,
}

impl View for Bound {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if ctx.quiet {
            return Ok(());
        }
        for r in &self.pulled {
            writeln!(w, "pulled {r}")?;
        }
        writeln!(
            w,
            "root {} binds {}",
            self.root,
            crate::fmt::plural(self.bindings.len() as u64, "image", "images")
        )?;
        for b in &self.bindings {
            writeln!(w, "  {}", b.reference)?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Unbound {
    root: String,
    unbound: Vec<Binding>,
}

impl View for Unbound {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if !ctx.quiet {
            for b in &self.unbound {
                writeln!(w, "unbound {} from {}", b.reference, self.root)?;
            }
        }
        Ok(())
    }
}

/// A reference as bound: the repository and, when pinned, the digest.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reference<'a> {
    pub repo: &'a str,
    pub digest: Option<Digest>,
}

/// Parse `HOST/REPO@sha256:…` or `HOST/REPO[:TAG]` (a `docker://` prefix is accepted).
pub(crate) fn parse_reference(r: &str) -> Result<Reference<'_>> {
    let r = r.strip_prefix("docker://").unwrap_or(r);
    if r.is_empty() || r.contains(char::is_whitespace) {
        bail!("invalid image reference {r:?}");
    }
    if let Some((repo, d)) = r.split_once('@') {
        let digest: Digest = d
            .parse()
            .with_context(|| format!("invalid digest in image reference {r:?}"))?;
        // A tag before the digest is ignored by registries; the digest is what binds.
        let repo = match repo.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => name,
            _ => repo,
        };
        return Ok(Reference {
            repo,
            digest: Some(digest),
        });
    }
    Ok(Reference {
        repo: r,
        digest: None,
    })
}

pub fn bind(ctx: &Context, a: BindArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let root_image = store.root_image(&a.root)?;
    let refs: Vec<String> = if a.from_image {
        let info = store
            .image_by_digest(&root_image)?
            .with_context(|| format!("root {}'s image {root_image} is not stored", a.root))?;
        layerstore_import::bound::read_bound_images(&store, &info)
            .with_context(|| format!("cannot read the bound images of root {}", a.root))?
            .into_iter()
            .map(|b| b.image)
            .collect()
    } else {
        a.refs.clone()
    };
    // Everything is checked before anything is pulled.
    let mut parsed = Vec::new();
    for r in &refs {
        let p = parse_reference(r)?;
        if p.digest.is_none() && !a.resolve_tags {
            bail!(
                "{r} is a tag, which can move; bind it pinned by digest as {}@sha256:… \
                 (`skopeo inspect --format '{{{{.Digest}}}}' docker://{r}` prints it), or pass \
                 --resolve-tags to resolve it once and record that digest",
                p.repo
            );
        }
        parsed.push((r, p));
    }
    let targets: Vec<BindTarget> = parsed
        .into_iter()
        .map(|(r, p)| BindTarget {
            given: r.strip_prefix("docker://").unwrap_or(r).to_string(),
            repository: p.repo.to_string(),
            digest: p.digest,
        })
        .collect();
    let opts = ImportOptions {
        platform: a.platform,
        registry: a.registry.options(ctx)?,
        ..ImportOptions::default()
    };
    let report = layerstore_import::bind::bind(&store, &a.root, &targets, a.from_image, &opts)
        .with_context(|| format!("cannot bind images to root {}", a.root))?;
    let (all, pulled) = (report.bindings, report.pulled);
    ctx.emit(&Bound {
        root: a.root,
        bindings: all,
        pulled,
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn unbind(ctx: &Context, a: UnbindArgs) -> Result<ExitCode> {
    let store = ctx.shared()?;
    let current = store.bindings(&a.root)?;
    let only = if a.refs.is_empty() {
        None
    } else {
        let mut digests = Vec::new();
        for r in &a.refs {
            let found = current
                .iter()
                .find(|b| b.reference == *r || b.image.to_string() == *r)
                .with_context(|| format!("root {} does not bind {r}", a.root))?;
            digests.push(found.image);
        }
        Some(digests)
    };
    let unbound = store.unbind(&a.root, only.as_deref())?;
    ctx.emit(&Unbound {
        root: a.root,
        unbound,
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_pinned_or_tagged() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = format!("quay.io/org/app@{d}");
        let p = parse_reference(&r).unwrap();
        assert_eq!(p.repo, "quay.io/org/app");
        assert_eq!(p.digest, Some(d.parse().unwrap()));
        let r2 = format!("docker://localhost:5000/app:1.2@{d}");
        assert_eq!(parse_reference(&r2).unwrap().repo, "localhost:5000/app");
        let t = parse_reference("localhost:5000/app:1.2").unwrap();
        assert_eq!(t.digest, None);
        assert!(parse_reference("a@sha256:12").is_err());
        assert!(parse_reference("").is_err());
        assert!(parse_reference("a b").is_err());
    }
}
