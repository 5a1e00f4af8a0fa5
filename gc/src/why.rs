//! `why`: which roots keep an image, layer, object or path alive, and through which refs. It
//! follows the same policy as the collection ([`crate::roots`]), so what it names as a reason is
//! exactly what keeps the subject from the next gc.

use layerstore_store::merged::merged_key;
use layerstore_store::{Digest, ObjectId, Store};
use serde::Serialize;

use crate::roots::{Kept, kept, names};
use crate::{Error, Result};

/// One chain from a root down to the thing asked about.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reason {
    /// The root ref (`image/…`, `root/…`, `merged/…`, `bound/…`, `prepared/…`), or `lease/ID`
    /// for an operation in flight that pinned the layer or object.
    pub root: String,
    /// The image (manifest digest) or merged tree the root names; for a lease, what it does.
    pub via: String,
    /// The layer that holds the thing, when it is an object.
    pub layer: Option<String>,
}

/// What `why` can be asked about.
#[derive(Clone, Debug)]
pub enum Subject {
    Image(Digest),
    Layer(Digest),
    Object(ObjectId),
}

/// The roots that keep `subject` alive; empty means the next gc removes it. Something the store
/// does not have at all is [`Error::NotInStore`].
pub fn why(store: &Store, subject: &Subject) -> Result<Vec<Reason>> {
    let known = match subject {
        Subject::Image(d) => store.image_by_digest(d)?.is_some(),
        Subject::Layer(d) => store.has_layer(d)? || !store.lease_pins_of_layer(d)?.is_empty(),
        Subject::Object(id) => store.has_object(id)?,
    };
    if !known {
        return Err(Error::NotInStore {
            subject: match subject {
                Subject::Image(d) | Subject::Layer(d) => d.to_string(),
                Subject::Object(id) => id.hex(),
            },
        });
    }
    let refs = store.refs(None)?;
    let names = names(&refs);
    // The layers the subject is in: for a layer itself, for an object every layers row (and
    // merged tree) whose entries name it.
    let holding: Vec<String> = match subject {
        Subject::Image(_) => Vec::new(),
        Subject::Layer(d) => vec![d.to_string()],
        Subject::Object(id) => store.layers_holding(id)?,
    };
    let mut reasons = Vec::new();
    for r in &refs {
        let Some(k) = kept(r, &names) else {
            continue;
        };
        let reason = |layer: Option<String>| Reason {
            root: r.name.to_string(),
            via: r.target.clone(),
            layer,
        };
        if let Subject::Image(d) = subject {
            if k.image() == *d {
                reasons.push(reason(None));
            }
            continue;
        }
        if let Kept::Merged(d) = k {
            let key = merged_key(&d);
            if holding.contains(&key) {
                reasons.push(reason(Some(key)));
            }
        }
        if !k.layers() {
            continue;
        }
        let Some(image) = store.image_by_digest(&k.image())? else {
            continue;
        };
        for l in &image.layers {
            let diff_id = l.diff_id.to_string();
            if holding.contains(&diff_id) {
                reasons.push(reason(Some(diff_id)));
            }
        }
    }
    let pins = match subject {
        Subject::Image(_) => Vec::new(),
        Subject::Layer(d) => store
            .lease_pins_of_layer(d)?
            .into_iter()
            .map(|p| (p, Some(d.to_string())))
            .collect(),
        Subject::Object(id) => store
            .lease_pins_of_object(id)?
            .into_iter()
            .map(|p| (p, None))
            .collect(),
    };
    // Images a lease pins whole (a bind in flight): the image itself, and what its layers hold.
    for (p, d) in store.lease_image_pins()? {
        let lease = |layer: Option<String>| Reason {
            root: format!("lease/{}", p.lease),
            via: p.what.clone(),
            layer,
        };
        if let Subject::Image(x) = subject {
            if *x == d {
                reasons.push(lease(None));
            }
            continue;
        }
        if let Some(image) = store.image_by_digest(&d)? {
            for l in &image.layers {
                let diff_id = l.diff_id.to_string();
                if holding.contains(&diff_id) {
                    reasons.push(lease(Some(diff_id)));
                }
            }
        }
    }
    reasons.extend(pins.into_iter().map(|(p, layer)| Reason {
        root: format!("lease/{}", p.lease),
        via: p.what,
        layer,
    }));
    reasons.sort();
    reasons.dedup();
    Ok(reasons)
}
