//! The tests of layerstore through its libraries, one test binary (as ripgrep and ostree-rs-ext
//! do): scenarios on the sample series, garbage collection, compressed objects, hostile input,
//! the tar parser against the reference readers, image sources, exports read back by skopeo,
//! umoci and podman, registries (pull, push,
//! prepared updates, over loopback only), dedup figures and the opt-in
//! corpus tier (`LAYERSTORE_CORPUS`). Select a group by its module: `cargo test -p
//! layerstore-tests --test it hostile::`.

mod common;

mod compression;
mod corpus;
mod dedup;
mod differential;
mod export;
mod gc;
mod hostile;
mod registry;
mod scenario;
mod sources;
mod stash;
