//! The import error type.

use std::path::PathBuf;

/// Everything an import can reject or fail on. Each variant names the source, digest, layer or
/// entry involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] layerstore_store::Error),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error("invalid image source {spec:?}: {reason}")]
    InvalidSource { spec: String, reason: String },
    /// A file of an image's `usr/lib/bootc/bound-images.d/` that bootc's convention refuses.
    #[error("bound image {file}: {reason}")]
    BoundImage { file: String, reason: String },
    /// An I/O error on a file of the host (a source directory or archive, a store object).
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {digest} is missing from the source")]
    BlobMissing { digest: String },
    #[error("blob {digest} has digest {actual}")]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {digest} is {actual} bytes, the descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "layer {index} ({digest}): uncompressed content has diff_id {actual}, the config says {expected}"
    )]
    DiffIdMismatch {
        index: usize,
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("{what} is not valid JSON for its type")]
    BadJson {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: {reason}")]
    BadDocument { what: String, reason: String },
    #[error("no image in {source_spec} matches: {reason}")]
    NoMatchingImage { source_spec: String, reason: String },
    #[error("layer {digest}: {reason}")]
    Compression { digest: String, reason: String },
    #[error("layer {digest}: decompression failed")]
    Decompress {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("layer {digest}: malformed tar at offset {offset}: {reason}")]
    Tar {
        digest: String,
        offset: u64,
        reason: String,
        /// The rule the layer breaks (the refusal table at the top of `tarparse.rs`).
        rule: crate::tarparse::TarRule,
        /// The entry it breaks it at, where there is one (raw path bytes).
        entry: Option<Vec<u8>>,
    },
    #[error("layer {digest}: entry {path}: {reason}")]
    BadEntry {
        digest: String,
        path: String,
        reason: String,
    },
    #[error("cannot read blob {digest} from the source")]
    ReadBlob {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {member} in {container}")]
    ReadMember {
        container: String,
        member: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a tar archive. The message names the file and what the transport
    /// expects, never the file's bytes (a mistyped path may name a secret).
    #[error("{path} is not a tar archive ({expected})")]
    NotAnArchive { path: PathBuf, expected: String },
    #[error("{source_spec} holds an image for {actual}, not {requested}")]
    PlatformMismatch {
        source_spec: String,
        requested: String,
        actual: String,
    },
    #[error("the object writers stopped before the layer was read")]
    WritersStopped,
    #[error("layer {digest}: cannot encode the tar skeleton")]
    Skeleton {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    /// A file of a stash's root could not be read (`path` as in the image, from `/`).
    #[error("stash of {root}: cannot read {path}")]
    StashRead {
        root: PathBuf,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file of a stash's root changed while it was read: the layer would have been torn.
    #[error("stash of {root}: {path} changed while it was read")]
    StashChanged { root: PathBuf, path: String },
    /// A stash that cannot be made as asked.
    #[error("stash of {root}: {reason}")]
    Stash { root: PathBuf, reason: String },
    /// A compression level the compression does not have.
    #[error("{compression} {accepted}, not {level}")]
    BadLevel {
        compression: &'static str,
        level: i32,
        accepted: String,
    },
    /// Writing a layer's compressed blob failed (the temporary file, or the compressor).
    #[error("layer {diff_id}: cannot write its {compression} blob")]
    LayerOut {
        diff_id: layerstore_store::Digest,
        compression: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The tar rebuilt from the store is not the layer it was stored as.
    #[error("layer {diff_id}: the tar rebuilt from the store has sha256 {actual}")]
    RebuiltDiffId {
        diff_id: layerstore_store::Digest,
        actual: layerstore_store::Digest,
    },
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error("cannot compress content {object} to estimate its stored size")]
    Estimate {
        object: layerstore_store::ObjectId,
        #[source]
        source: std::io::Error,
    },
}

/// The import result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
