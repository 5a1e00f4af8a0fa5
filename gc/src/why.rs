//! `why`: which roots keep an image, layer, object or path alive, and through which refs.

use layerstore_store::{Digest, ObjectId, Store};
use serde::Serialize;

use crate::Result;

/// One chain from a root down to the thing asked about.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Reason {
    /// The root ref (`image/…`, `merged/…`, `bound/…`, `prepared/…`), or `lease/ID` for an
    /// operation in flight that pinned the layer or object.
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

/// The roots that keep `subject` alive; empty means the next gc removes it.
pub fn why(store: &Store, subject: &Subject) -> Result<Vec<Reason>> {
    use rusqlite::types::Value;
    // Each query yields (root ref, what it names, the layer holding the subject or NULL).
    let (sql, param) = match subject {
        Subject::Image(d) => (
            "SELECT name, target, NULL FROM refs
             WHERE (target = ?1 OR target = 'merged:' || ?1) AND name NOT LIKE 'layer/%'
             ORDER BY name",
            Value::Text(d.to_string()),
        ),
        Subject::Layer(d) => (
            "SELECT r.name, r.target, il.diff_id FROM refs r
             JOIN images i
               ON i.manifest_digest = r.target OR 'merged:' || i.manifest_digest = r.target
             JOIN image_layers il ON il.image = i.id
             WHERE il.diff_id = ?1 AND r.name NOT LIKE 'layer/%'
             UNION
             SELECT 'lease/' || ll.lease, le.what, ll.diff_id FROM lease_layers ll
             JOIN leases le ON le.id = ll.lease
             WHERE ll.diff_id = ?1
             ORDER BY 1",
            Value::Text(d.to_string()),
        ),
        Subject::Object(id) => (
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
             UNION
             SELECT 'lease/' || lo.lease, le.what, NULL FROM lease_objects lo
             JOIN leases le ON le.id = lo.lease
             WHERE lo.id = ?1
             ORDER BY 1, 3",
            Value::Blob(id.as_bytes().to_vec()),
        ),
    };
    let conn = store.conn();
    let mut stmt = conn.prepare(sql)?;
    let reasons = stmt
        .query_map([param], |r| {
            Ok(Reason {
                root: r.get(0)?,
                via: r.get(1)?,
                layer: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(reasons)
}
