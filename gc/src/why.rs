//! `why`: which roots keep an image, layer, object or path alive, and through which refs.

use layerstore_store::{Digest, ObjectId, Store};
use serde::Serialize;

use crate::Result;

/// One chain from a root down to the thing asked about.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Reason {
    /// The root ref (`image/…`, `merged/…`, `bound/…`, `prepared/…`).
    pub root: String,
    /// The image (manifest digest) or merged tree the root names.
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

/// The roots that keep `subject` alive; empty means the next gc removes it.
pub fn why(store: &Store, subject: &Subject) -> Result<Vec<Reason>> {
    let conn = store.conn();
    let mut out = Vec::new();
    match subject {
        Subject::Image(d) => {
            let mut stmt = conn.prepare(
                "SELECT name, target FROM refs
                 WHERE (target = ?1 OR target = 'merged:' || ?1) AND name NOT LIKE 'layer/%'
                 ORDER BY name",
            )?;
            for r in stmt.query_map([d.to_string()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })? {
                let (root, via) = r?;
                out.push(Reason {
                    root,
                    via,
                    layer: None,
                });
            }
        }
        Subject::Layer(d) => {
            let mut stmt = conn.prepare(
                "SELECT r.name, r.target FROM refs r
                 JOIN images i
                   ON i.manifest_digest = r.target OR 'merged:' || i.manifest_digest = r.target
                 JOIN image_layers il ON il.image = i.id
                 WHERE il.diff_id = ?1 AND r.name NOT LIKE 'layer/%'
                 ORDER BY 1",
            )?;
            for r in stmt.query_map([d.to_string()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })? {
                let (root, via) = r?;
                out.push(Reason {
                    root,
                    via,
                    layer: Some(d.to_string()),
                });
            }
        }
        Subject::Object(id) => {
            let mut stmt = conn.prepare(
                "SELECT DISTINCT r.name, r.target, l.diff_id FROM entries e
                 JOIN layers l ON l.id = e.layer
                 JOIN image_layers il ON il.diff_id = l.diff_id
                 JOIN images i ON i.id = il.image
                 JOIN refs r ON (r.target = i.manifest_digest OR r.target = 'merged:' || i.manifest_digest)
                   AND r.name NOT LIKE 'layer/%'
                 WHERE e.object = ?1
                 UNION
                 SELECT DISTINCT r.name, r.target, l.diff_id FROM entries e
                 JOIN layers l ON l.id = e.layer AND l.merged = 1
                 JOIN refs r ON r.target = l.diff_id AND r.name LIKE 'merged/%'
                 WHERE e.object = ?1
                 ORDER BY 1, 3",
            )?;
            for r in stmt.query_map([&id.as_bytes()[..]], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })? {
                let (root, via, layer) = r?;
                out.push(Reason {
                    root,
                    via,
                    layer: Some(layer),
                });
            }
        }
    }
    Ok(out)
}
