//! Merged trees: the flattened tree of an image, recorded once (whiteouts resolved) and pinned by
//! a `merged/NAME` ref while a disk image is generated from it. It is stored as a layers row keyed
//! `merged:MANIFEST-DIGEST` (merged = 1), so it pins exactly the objects the flattened tree needs.

use crate::digest::Digest;
use crate::error::Result;
use crate::flatten::MergedTree;
use crate::query::ImageInfo;
use crate::refs::RefName;
use crate::store::Store;

/// The prefix of a merged tree's layers-table key.
const MERGED_PREFIX: &str = "merged:";

/// The layers-table key of the merged tree of the image with manifest digest `manifest`: the one
/// place that spells the key.
pub fn merged_key(manifest: &Digest) -> String {
    format!("{MERGED_PREFIX}{manifest}")
}

/// The image a merged tree's key names (the inverse of [`merged_key`]); `None` for any other key.
pub fn merged_key_image(key: &str) -> Option<Digest> {
    key.strip_prefix(MERGED_PREFIX)?.parse().ok()
}

impl Store {
    /// Flatten `image`, record the tree and point `merged/NAME` at it in one durable transaction.
    /// Returns the ref and the tree.
    pub fn create_merged(&self, name: &str, image: &ImageInfo) -> Result<(RefName, MergedTree)> {
        let r = RefName::merged(name)?;
        let tree = self.merged_tree(image)?;
        let key = merged_key(&image.manifest_digest);
        self.durable(false, |tx| -> Result<()> {
            crate::publish::insert_tree(tx, &key, true, 0, &[], tree.depth_first().into_iter())?;
            crate::refs::upsert_refs(tx, &[(r.clone(), key)])
        })?;
        Ok((r, tree))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_key_names_its_image_and_nothing_else_does() {
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        assert_eq!(merged_key_image(&merged_key(&d)), Some(d));
        assert_eq!(merged_key_image(&d.to_string()), None);
        assert_eq!(merged_key_image("merged:nonsense"), None);
    }
}
