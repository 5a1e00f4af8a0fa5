//! Binding registry images to a root (bootc's logically bound images): every image the store
//! lacks is pulled, then all the bindings are recorded in one transaction, so a failed pull
//! leaves the root's bindings as they were and a rerun is idempotent.
//!
//! Between an image's pull and the transaction nothing names the image (the pull writes layer
//! refs only, which keep nothing), so a gc in that window would take it and the binding would
//! fail or, worse, point at an image no longer stored. So each image is pinned by digest to
//! this operation's lease *before* it is looked up or pulled ([`layerstore_store::Lease::pin_images`]):
//! gc keeps it whole from the moment it is stored until the bindings are recorded.

use layerstore_store::{Binding, Digest, Store};

use crate::error::{Error, Result};
use crate::{ImportOptions, Source};

/// One image to bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindTarget {
    /// The reference as the user gave it (for messages and the report).
    pub given: String,
    /// `HOST[:PORT]/REPO`, or `HOST[:PORT]/REPO:TAG` for a tag (the binding's reference then
    /// keeps the tag it resolved: `HOST/REPO:TAG@sha256:…`).
    pub repository: String,
    /// The manifest digest it is pinned to; `None`: a tag, resolved once now.
    pub digest: Option<Digest>,
}

/// What [`bind`] did.
#[derive(Clone, Debug)]
pub struct BindReport {
    /// The root's bindings after it.
    pub bindings: Vec<Binding>,
    /// The references pulled (the others were stored already).
    pub pulled: Vec<String>,
}

/// Bind `targets` to the root `root`: pull each image the store lacks (registries reached as
/// `opts.registry` says, an index narrowed to `opts.platform`), then record every binding in
/// one durable transaction. With `exactly`, the root's other bindings are dropped in that
/// transaction (the root binds what its image declares, `bind --from-image`).
pub fn bind(
    store: &Store,
    root: &str,
    targets: &[BindTarget],
    exactly: bool,
    opts: &ImportOptions<'_>,
) -> Result<BindReport> {
    // A root that does not exist is an error before anything is fetched.
    store.root_image(root)?;
    let limits = opts.limits.unwrap_or_else(|| store.limits());
    let lease = store.begin_lease(&format!("bind {root}"))?;
    let mut bindings = Vec::new();
    let mut pulled = Vec::new();
    for t in targets {
        let digest = match t.digest {
            Some(d) => d,
            None => {
                Source::open_with(&format!("docker://{}", t.given), &opts.registry)?
                    .resolve(opts.platform.as_ref(), &limits)?
                    .manifest_digest
            }
        };
        let stored = lease.pin_images(&[digest])?[0];
        if !stored {
            let pull = ImportOptions {
                tag: None,
                platform: opts.platform.clone(),
                jobs: opts.jobs,
                limits: opts.limits,
                progress: opts.progress,
                layers_only: true,
                labels: Vec::new(),
                registry: opts.registry.clone(),
            };
            let report =
                crate::import(store, &format!("docker://{}@{digest}", t.repository), &pull)?;
            if report.manifest_digest != digest {
                return Err(Error::BadDocument {
                    what: format!("bound image {}", t.given),
                    reason: format!(
                        "pulling it gave image {}, not {digest} (a digest of an index binds \
                         this platform's image: bind that digest)",
                        report.manifest_digest
                    ),
                });
            }
            pulled.push(t.given.clone());
        }
        bindings.push((digest, format!("{}@{digest}", t.repository)));
    }
    let bindings = if exactly {
        store.bind_exactly(root, &bindings)?
    } else {
        store.bind(root, &bindings)?
    };
    // The bindings keep the images now; the pins go with the lease.
    drop(lease);
    Ok(BindReport { bindings, pulled })
}
