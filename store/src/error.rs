//! The store's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the store. Each variant names the object, digest, ref or path
/// involved; the cause is in `source`, never repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("index database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{path} is not a layerstore store (no meta.json)")]
    NotAStore { path: PathBuf },
    #[error("{path} already holds a store or other files")]
    AlreadyExists { path: PathBuf },
    #[error("store format {found} is not supported (this layerstore knows format {known})")]
    UnsupportedFormat { found: u32, known: u32 },
    #[error("store needs feature {feature:?}, which this layerstore does not know")]
    UnknownFeature { feature: String },
    #[error("index schema version {found} is newer than this layerstore knows ({known})")]
    SchemaTooNew { found: u32, known: u32 },
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        digest: String,
        reason: &'static str,
    },
    #[error("invalid object id {id:?}")]
    InvalidObjectId { id: String },
    #[error("invalid ref name {name:?}: {reason}")]
    InvalidRefName { name: String, reason: &'static str },
    #[error("no image named {name:?}")]
    ImageNotFound { name: String },
    #[error("{prefix:?} names more than one image: {}", candidates.join("; "))]
    AmbiguousImage {
        prefix: String,
        candidates: Vec<String>,
    },
    #[error("no layer {diff_id}")]
    LayerNotFound { diff_id: String },
    #[error("object {id} is missing from the store")]
    ObjectMissing { id: String },
    #[error("object {id} is corrupt (content hashes to {actual})")]
    ObjectCorrupt { id: String, actual: String },
    #[error("no such path {path:?} in image {image}")]
    PathNotFound { image: String, path: String },
    #[error("{path:?} in image {image} is not a regular file")]
    NotAFile { image: String, path: String },
    #[error("{path:?} in image {image} is not a directory")]
    NotADirectory { image: String, path: String },
    #[error("layer {diff_id}: {reason} at {path:?}")]
    BadTree {
        diff_id: String,
        path: String,
        reason: &'static str,
    },
    #[error("layer {diff_id}: stored tar skeleton is damaged: {reason}")]
    BadSkeleton {
        diff_id: String,
        reason: &'static str,
    },
    #[error("checkout target {path} exists and is not an empty directory")]
    TargetNotEmpty { path: PathBuf },
    /// A checkout of several images goes into a new directory only.
    #[error("checkout target {path} exists (a checkout of several images makes it)")]
    TargetExists { path: PathBuf },
    #[error("checkout target {path} is a symbolic link")]
    TargetIsSymlink { path: PathBuf },
    #[error("no ref {name}")]
    RefNotFound { name: String },
    #[error("no root named {name:?}")]
    RootNotFound { name: String },
    #[error("image {digest} is not in the store")]
    ImageNotStored { digest: String },
    #[error("invalid label {label:?}: {reason}")]
    InvalidLabel { label: String, reason: &'static str },
    #[error("object {id} was removed by a concurrent gc before the import pinned it")]
    ObjectSwept { id: String },
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    #[error("cannot compress object {id}")]
    Compress {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("syncfs on the store failed; nothing was published")]
    Sync(#[source] std::io::Error),
    #[error("layer {diff_id} is damaged: fsck --repair removed corrupt content it needs; {advice}")]
    LayerDamaged { diff_id: String, advice: String },
    #[error("store {path} is read-only for this user; {what} needs write access to it")]
    ReadOnlyStore { path: PathBuf, what: &'static str },
    #[error("{what} takes the exclusive store lock, but this handle holds the shared one")]
    SharedLockHeld { what: &'static str },
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: impl Into<std::io::Error>) -> Self {
        Error::Io {
            path: path.into(),
            source: source.into(),
        }
    }
}

/// Attach a path to an `io::Result` (or anything convertible, like rustix errors).
pub trait IoContext<T> {
    /// Map the error to [`Error::Io`] naming `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T, E: Into<std::io::Error>> IoContext<T> for std::result::Result<T, E> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
