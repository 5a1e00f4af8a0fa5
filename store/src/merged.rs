//! Merged trees: the flattened tree of an image, recorded once (whiteouts resolved) and pinned by
//! a `merged/NAME` ref while a disk image is generated from it. It is stored as a layers row keyed
//! `merged:MANIFEST-DIGEST` (merged = 1), so it pins exactly the objects the flattened tree needs.

use crate::error::{Error, Result};
use crate::merge::MergedTree;
use crate::query::ImageInfo;
use crate::refs::{RefKind, RefName};
use crate::store::Store;

/// The layers-table key of an image's merged tree.
pub fn merged_key(image: &ImageInfo) -> String {
    format!("merged:{}", image.manifest_digest)
}

impl Store {
    /// Flatten `image`, record the tree and point `merged/NAME` at it in one durable transaction.
    /// Returns the ref and the tree.
    pub fn create_merged(&self, name: &str, image: &ImageInfo) -> Result<(RefName, MergedTree)> {
        let r = RefName::new(RefKind::Merged, name)?;
        let tree = self.merged_tree(image)?;
        let key = merged_key(image);
        self.durable(false, |tx| -> Result<()> {
            crate::publish::insert_tree(tx, &key, true, 0, &[], tree.depth_first().into_iter())?;
            crate::refs::upsert_refs(tx, &[(r.clone(), key)])
        })?;
        Ok((r, tree))
    }

    /// The tree a `merged/NAME` ref pins.
    pub fn merged_by_ref(&self, name: &str) -> Result<MergedTree> {
        let r = RefName::new(RefKind::Merged, name)?;
        let key = self.ref_target(&r)?.ok_or_else(|| Error::RefNotFound {
            name: r.to_string(),
        })?;
        let mut tree = MergedTree::default();
        for e in self.entries_by_key(&key)? {
            tree.entries.insert(e.path.clone(), e);
        }
        Ok(tree)
    }
}
