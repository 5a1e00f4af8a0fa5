//! The layerstore store: a content-addressed object store for OCI image layers with an SQLite
//! index.
//!
//! ```text
//! STORE/
//!   meta.json        format version, feature flags, inline threshold, limits (written last at init)
//!   index.sqlite     WAL; schema versioned by PRAGMA user_version (schema.rs)
//!   objects/ab/cdef… loose objects: file contents named by blake3, mode 0444, never setuid,
//!                    never device nodes; objects of <= inline_threshold bytes live in the index.
//!                    With compression configured (feature `zstd-objects`), a file or inline
//!                    blob may be one zstd frame of the content (`objects.zstd`); the name is
//!                    still the blake3 of the content
//!   staging/LEASE/   per-import temp files; anything here without a live lease is garbage
//!   variants/ab/cdef….META  what hardlink checkouts link: a copy of object abcdef… with one
//!                    combination of mode, owner and xattrs, mtime 0, made on first use;
//!                    disposable (variant.rs)
//!   objects/ab/.gc-… object files a gc sweep doomed, unlinked after it released the lock
//!   sweeping         left by a gc of an earlier version killed while it renamed doomed files
//!                    before its commit; opening the store puts those files back
//!   lock             flock: shared for short readers (whole run), and for imports and long
//!                    reads while they pin, exclusive for the gc sweep's transaction and fsck's
//!                    repairs
//!   dooming          flock: exclusive while a committed sweep renames its doomed files; an
//!                    import that found a file takes it shared before trusting the file
//!   gc.lock          flock held by a gc from start to end: one collection at a time
//!   turnstile        flock a gc takes before `lock` and shared holders pass through, so a
//!                    waiting gc is not starved by a stream of readers and imports
//! ```
//!
//! Invariants:
//! - An object's name is the blake3 of its content and of nothing else; identical content is
//!   stored once whatever its owner, mode, xattrs or path.
//! - Object files are never handed out: hardlink checkouts link variants, so a write through a
//!   checkout cannot change what other images read. A corrupt object is removed by
//!   `fsck --repair`, which marks the layers that need it (heal.rs); imports read those again.
//! - A store this process cannot write opens read-only (readonly.rs): reads work, pins are
//!   skipped, writes fail with [`Error::ReadOnlyStore`].
//! - Publish order: objects are written in staging, pinned to the import's lease and renamed
//!   into `objects/` first (orphans are harmless), then one `syncfs`, then one durable SQLite
//!   transaction records layers, objects, the image and its refs and ends the lease. Readers
//!   trust only refs, so a crash at any instant leaves a store that opens and holds every ref it
//!   held before.
//! - Layers are keyed by diff_id. The index keeps each layer's full tree and its tar skeleton, so
//!   the uncompressed tar is rebuilt byte for byte ([`Store::export_layer_tar`]); a long run of
//!   zeros (padding after the end-of-archive marker) is kept as its length ([`skeleton`]). A merged tree
//!   (the flattened image a `merged/` ref pins during disk generation) is stored the same way.
//! - An object file is trusted for dedup only if it holds the whole content: its size matches, or
//!   it is a zstd frame declaring that size whose block chain and checksum end exactly at the end
//!   of the file. Anything else is a leftover of a crash before its data reached the disk and is
//!   replaced.
//! - Locking: short readers (images, refs, cat, why, fsck) hold the shared flock for their whole
//!   run. Long reads (checkout, disk, export, dedup-report) hold it only while they pin the
//!   layers they read to a lease ([`Store::pin_image`]). An import holds it only while it pins a
//!   batch of objects (or the stored layers it builds on) and renames the batch's files into
//!   place; between batches a gc may sweep, and spares what live leases pin. A lease may also
//!   pin whole images by manifest digest, before they are stored ([`Lease::pin_images`]):
//!   `bind` pins each image it pulls until its binding is recorded.
//!   The sweep's transaction — re-check, then refs and image rows deleted and dead layers
//!   turned into `gc:ID` tombstones — is the only exclusive holder; nothing per object, entry or
//!   file happens under it. After it, under the `dooming` lock (taken before `lock` is let go),
//!   the tombstones' entries and the dead objects' rows go in small transactions, then the files
//!   whose rows went are renamed away; only a [`collect::Sweep`] can doom object files. A batch
//!   that found a file present waits for `dooming` after its pin, then looks again if the sweep
//!   generation moved (the sweep moves it again when its renames are done).
//! - df reads totals (`counters`) and a per-image usage summary (`image_usage`, `objects.users`)
//!   that every transaction changing image refs keeps up to date ([`df`]), never the entries.
//! - The other exclusive holder is `fsck --repair`: it checks under the shared lock, then
//!   re-checks and removes damaged objects and leftovers under the exclusive one, sparing what
//!   live leases pin ([`fsck`]).
//! - Roots and bindings ([`roots`]): a `root/NAME` ref pins a deployment's image by manifest
//!   digest; a `bound/ROOT/DIGEST` ref binds an image to it, with a `bindings` row naming the
//!   reference it was bound as. Both change in one transaction; removing a root removes its
//!   bindings. Labels ([`labels`]): config labels are indexed when the image row is written,
//!   local labels are kept beside it; both go with the image row.
//! - The store owns every SQL statement and key format (ref names: [`RefName`]; merged trees'
//!   layer keys: [`merged::merged_key`]). gc states its policy — which refs are roots, from what
//!   each ref kind keeps ([`RefKind::keeps`], which fsck checks against too) — through the typed
//!   calls of [`collect`].

mod blob_cache;
pub mod checkout;
pub mod collect;
pub mod content_sha256;
pub mod df;
pub mod digest;
pub mod disk;
pub mod error;
pub mod flatten;
pub mod fsck;
mod fsutil;
pub mod heal;
pub mod labels;
pub mod lease;
pub mod lookup;
pub mod merged;
pub mod object;
pub mod prepared;
pub mod publish;
pub mod query;
mod readonly;
pub mod refs;
pub mod roots;
mod schema;
pub mod skeleton;
pub mod store;
pub mod time;
pub mod tree;
pub mod variant;

pub use checkout::{CheckoutMode, CheckoutOptions, CheckoutStats};
pub use digest::{Digest, DigestHasher, ObjectId};
pub use error::{Error, Result};
pub use flatten::MergedTree;
pub use heal::DamagedLayer;
pub use lease::{LayerState, Lease};
pub use lookup::Follow;
pub use object::{LooseFile, NewObject, ObjectData, ObjectReader, PutOutcome, Staging};
pub use prepared::PreparedUpdate;
pub use publish::{ImageLayer, ImageRecord, LayerRecord};
pub use query::{ImageInfo, LayerInfo};
pub use refs::{RefInfo, RefKind, RefName};
pub use roots::{Binding, RootInfo};
pub use store::{Limits, LockMode, ObjectCompression, Store, StoreConfig, StoreLock, StoreOptions};
pub use time::rfc3339;
pub use tree::{EntryKind, TreeEntry};

impl Store {
    /// The merged tree of an image.
    /// Fails with [`Error::LayerDamaged`] if a layer lost content to `fsck --repair`.
    pub fn merged_tree(&self, image: &ImageInfo) -> Result<MergedTree> {
        let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id).collect();
        self.check_not_damaged(&diff_ids)?;
        let mut layers = Vec::with_capacity(image.layers.len());
        for l in &image.layers {
            layers.push((l.diff_id, self.layer_entries(&l.diff_id)?));
        }
        MergedTree::build(layers.iter().map(|(d, e)| (d, e.as_slice())))
    }
}
