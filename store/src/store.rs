//! Opening and creating a store, its configuration and its lock.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::schema;
use crate::tree::PathLimits;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Features this build understands; a store that names another one is refused.
const KNOWN_FEATURES: &[&str] = &[ZSTD_OBJECTS, SKELETON_ZERO_RUNS];
/// The feature a store names once objects may be stored as zstd frames.
pub const ZSTD_OBJECTS: &str = "zstd-objects";
/// The feature a store names once a layer's skeleton holds a zero run (skeleton.rs, `LSK2`):
/// builds from before cannot rebuild that layer, so they refuse the store rather than fail on
/// its export.
pub const SKELETON_ZERO_RUNS: &str = "skeleton-zero-runs";

/// `meta.json`: the format version, feature flags and tunables fixed at `init`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoreConfig {
    pub format: u32,
    #[serde(default)]
    pub features: Vec<String>,
    /// Objects of at most this many bytes live in the index instead of loose files.
    #[serde(default = "default_inline_threshold")]
    pub inline_threshold: u64,
    #[serde(default)]
    pub limits: Limits,
    /// Per-object zstd compression; `None` stores contents as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<ObjectCompression>,
}

/// Per-object compression: contents of at least `min_size` bytes are stored as one zstd frame
/// when that saves space (a 4 KiB block for loose files, an eighth for inline ones). Readers
/// decompress transparently; hardlink and reflink checkouts copy such objects instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCompression {
    pub level: i32,
    pub min_size: u64,
}

impl Default for ObjectCompression {
    fn default() -> Self {
        ObjectCompression {
            level: 3,
            min_size: 512,
        }
    }
}

fn default_inline_threshold() -> u64 {
    StoreOptions::default().inline_threshold
}

/// Resource limits applied to everything imported. Defaults are safe for hostile input and loose
/// enough for every real distribution image.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest uncompressed layer tar in bytes.
    pub max_layer_bytes: u64,
    /// Most entries in one layer.
    pub max_entries: u64,
    /// Longest path, component and deepest nesting.
    pub max_path: usize,
    pub max_component: usize,
    pub max_depth: usize,
    /// Largest single PAX or GNU long-name record, and largest total xattr bytes of one entry.
    pub max_pax_record: u64,
    pub max_xattr_bytes: u64,
    /// Largest manifest, index or config JSON.
    pub max_json_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_bytes: 64 << 30,
            max_entries: 4_000_000,
            max_path: 4095,
            max_component: 255,
            max_depth: 256,
            max_pax_record: 1 << 20,
            max_xattr_bytes: 1 << 20,
            max_json_bytes: 4 << 20,
        }
    }
}

impl Limits {
    /// The names `set` accepts.
    pub const NAMES: [&'static str; 8] = [
        "layer-bytes",
        "entries",
        "path",
        "component",
        "depth",
        "pax-record",
        "xattr-bytes",
        "json-bytes",
    ];

    /// Set one limit by name (see [`Limits::NAMES`]).
    pub fn set(&mut self, name: &str, value: u64) -> std::result::Result<(), String> {
        let v = value as usize;
        match name {
            "layer-bytes" => self.max_layer_bytes = value,
            "entries" => self.max_entries = value,
            "path" => self.max_path = v,
            "component" => self.max_component = v,
            "depth" => self.max_depth = v,
            "pax-record" => self.max_pax_record = value,
            "xattr-bytes" => self.max_xattr_bytes = value,
            "json-bytes" => self.max_json_bytes = value,
            _ => {
                return Err(format!(
                    "unknown limit {name:?} (one of {})",
                    Self::NAMES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The path part of the limits.
    pub fn paths(&self) -> PathLimits {
        PathLimits {
            max_component: self.max_component,
            max_path: self.max_path,
            max_depth: self.max_depth,
        }
    }
}

/// Options for [`Store::init`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub inline_threshold: u64,
    pub limits: Limits,
    pub compression: Option<ObjectCompression>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            inline_threshold: 4096,
            limits: Limits::default(),
            compression: None,
        }
    }
}

/// An open store. Cheap to share between threads: the index connection is behind a mutex and all
/// file access goes through directory handles.
pub struct Store {
    pub(crate) path: PathBuf,
    pub(crate) root: Dir,
    pub(crate) objects: Dir,
    pub(crate) staging: Dir,
    pub(crate) conn: Mutex<Connection>,
    pub(crate) config: StoreConfig,
    /// Shared locks held through this store (see [`Store::lock`]).
    shared_held: Arc<AtomicUsize>,
}

/// Which flock a [`StoreLock`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Readers for their whole run; imports while they pin and place objects.
    Shared,
    /// Only the gc sweep and repairs.
    Exclusive,
}

/// A held flock on `STORE/lock` (or `gc.lock`); released on drop (and by the kernel when the
/// process dies).
pub struct StoreLock {
    _file: std::fs::File,
    /// The store's count of shared locks this process holds, for a shared lock.
    shared: Option<Arc<AtomicUsize>>,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        if let Some(n) = &self.shared {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Create a new store at `path` (created if missing; must be empty if present).
    pub fn init(path: &Path, opts: &StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(path).at(path)?;
        let root = Dir::open_ambient_dir(path, ambient_authority()).at(path)?;
        if root.entries().at(path)?.next().is_some() {
            return Err(Error::AlreadyExists { path: path.into() });
        }
        // Creating objects/ claims the directory: a concurrent init that loses the race sees it
        // as a store being made.
        match root.create_dir("objects") {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists { path: path.into() });
            }
            r => r.at(path.join("objects"))?,
        }
        let objects = root.open_dir("objects").at(path.join("objects"))?;
        for i in 0..=255u8 {
            objects
                .create_dir(format!("{i:02x}"))
                .at(path.join("objects"))?;
        }
        root.create_dir("staging").at(path.join("staging"))?;
        root.write("lock", b"").at(path.join("lock"))?;
        let config = StoreConfig {
            format: FORMAT_VERSION,
            features: opts
                .compression
                .map(|_| ZSTD_OBJECTS.to_string())
                .into_iter()
                .collect(),
            inline_threshold: opts.inline_threshold,
            limits: opts.limits,
            compression: opts.compression,
        };
        {
            let conn = open_index(path)?;
            drop(conn);
        }
        // meta.json last: a store without it is not a store, so a crash during init leaves
        // something `init` can be retried on after removing it.
        let json = serde_json::to_vec_pretty(&config).expect("config serializes");
        crate::fsutil::atomic_write(&root, "meta.json", &json).at(path.join("meta.json"))?;
        syncfs(&root)?;
        Store::open(path)
    }

    /// Open an existing store.
    pub fn open(path: &Path) -> Result<Store> {
        let root = Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotAStore { path: path.into() }
            } else {
                Error::io(path, e)
            }
        })?;
        let meta = match root.read("meta.json") {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotAStore { path: path.into() });
            }
            Err(e) => return Err(Error::io(path.join("meta.json"), e)),
        };
        let config: StoreConfig = serde_json::from_slice(&meta)
            .map_err(|e| Error::io(path.join("meta.json"), std::io::Error::other(e)))?;
        if config.format != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                found: config.format,
                known: FORMAT_VERSION,
            });
        }
        if let Some(f) = config
            .features
            .iter()
            .find(|f| !KNOWN_FEATURES.contains(&f.as_str()))
        {
            return Err(Error::UnknownFeature { feature: f.clone() });
        }
        let objects = root.open_dir("objects").at(path.join("objects"))?;
        let staging = root.open_dir("staging").at(path.join("staging"))?;
        let conn = open_index(path)?;
        let store = Store {
            path: path.into(),
            root,
            objects,
            staging,
            conn: Mutex::new(conn),
            shared_held: Arc::new(AtomicUsize::new(0)),
            config,
        };
        // A reader that cannot write leaves a killed sweep to the next writer.
        if !store.is_read_only() {
            store.recover_sweep()?;
        }
        Ok(store)
    }

    /// Open the store at `path`, creating it first if there is none.
    pub fn open_or_init(path: &Path, opts: &StoreOptions) -> Result<Store> {
        match Store::open(path) {
            Err(Error::NotAStore { .. }) => match Store::init(path, opts) {
                // Another process is initializing it: meta.json, written last, says when it is
                // done (a store left half-made by a crash stays "not a store" after the wait).
                Err(Error::AlreadyExists { .. }) => {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    loop {
                        match Store::open(path) {
                            Err(Error::NotAStore { .. })
                                if std::time::Instant::now() < deadline =>
                            {
                                std::thread::sleep(std::time::Duration::from_millis(10));
                            }
                            r => break r,
                        }
                    }
                }
                r => r,
            },
            r => r,
        }
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration from `meta.json`.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Name `feature` in `meta.json` unless it is there already, so builds that do not know
    /// it refuse the store. The file is replaced atomically (the other fields are fixed at
    /// `init`, so a concurrent caller writes the same); the caller makes it durable (publish
    /// syncs the store before its rows need the feature).
    pub(crate) fn require_feature(&self, feature: &str) -> Result<()> {
        if self.config.features.iter().any(|f| f == feature) {
            return Ok(());
        }
        let path = self.path.join("meta.json");
        let meta = self.root.read("meta.json").at(&path)?;
        let mut config: StoreConfig = serde_json::from_slice(&meta)
            .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
        if config.features.iter().any(|f| f == feature) {
            return Ok(());
        }
        config.features.push(feature.to_string());
        let json = serde_json::to_vec_pretty(&config).expect("config serializes");
        crate::fsutil::atomic_write(&self.root, "meta.json", &json).at(&path)
    }

    /// The limits imports must apply.
    pub fn limits(&self) -> Limits {
        self.config.limits
    }

    /// The index connection.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take `gc.lock`, a different file from the store lock: held by a gc from start to end, so
    /// one collection runs at a time. Blocks until it is free.
    pub fn collector_lock(&self) -> Result<StoreLock> {
        self.require_writable("gc")?;
        Ok(StoreLock {
            _file: self.flock_file("gc.lock", rustix::fs::FlockOperation::LockExclusive)?,
            shared: None,
        })
    }

    /// Take the dooming lock (`STORE/dooming`): a gc sweep holds it exclusively from just
    /// before it releases the store lock until the files it doomed are renamed away; an import
    /// takes it shared (under the shared store lock) before it trusts an object file it found,
    /// so it never relies on a file whose row a committed sweep deleted but which is still at
    /// its name. See [`crate::collect::Sweep::apply`].
    pub fn dooming_lock(&self, mode: LockMode) -> Result<StoreLock> {
        use rustix::fs::FlockOperation::{LockExclusive, LockShared};
        let op = match mode {
            LockMode::Shared => LockShared,
            LockMode::Exclusive => LockExclusive,
        };
        Ok(StoreLock {
            _file: self.flock_file("dooming", op)?,
            shared: None,
        })
    }

    /// Whether a shared lock is held through this handle (by any thread): taking the exclusive
    /// one then would wait for itself.
    pub(crate) fn holds_shared_lock(&self) -> bool {
        self.shared_held.load(Ordering::Acquire) > 0
    }

    /// Take the store lock; blocks until it is free.
    pub fn lock(&self, mode: LockMode) -> Result<StoreLock> {
        use rustix::fs::FlockOperation::{LockExclusive, LockShared};
        if mode != LockMode::Shared {
            self.require_writable("this command")?;
        }
        match mode {
            // flock has no fairness: a steady stream of shared holders would starve a gc
            // forever. So a gc first takes `turnstile` exclusively, and a new shared holder
            // passes through `turnstile` (shared, let go at once) before it takes `lock`: while
            // a gc waits, newcomers queue behind it and only the holders it waits for remain.
            // A thread of a process that already holds the shared lock through this store
            // skips the turnstile, or a nested lock taken while a gc waits would deadlock.
            LockMode::Exclusive => {
                let turnstile = self.flock_file("turnstile", LockExclusive)?;
                let file = self.flock_file("lock", LockExclusive)?;
                drop(turnstile);
                Ok(StoreLock {
                    _file: file,
                    shared: None,
                })
            }
            LockMode::Shared => {
                let turnstile = (self.shared_held.load(Ordering::Acquire) == 0)
                    .then(|| self.flock_file("turnstile", LockShared))
                    .transpose()?;
                let file = self.flock_file("lock", LockShared)?;
                self.shared_held.fetch_add(1, Ordering::AcqRel);
                drop(turnstile);
                Ok(StoreLock {
                    _file: file,
                    shared: Some(Arc::clone(&self.shared_held)),
                })
            }
        }
    }

    /// Open `name` in the store root (made on first use: stores from before `gc.lock` and
    /// `turnstile` have neither) and flock it.
    fn flock_file(&self, name: &str, op: rustix::fs::FlockOperation) -> Result<std::fs::File> {
        let mut opts = cap_std::fs::OpenOptions::new();
        opts.read(true).write(true).create(name != "lock");
        let file = match self.root.open_with(name, &opts) {
            // A reader that may not write the store flocks a read-only descriptor (flock needs
            // no write access); one that cannot create `turnstile` uses `lock` in its place.
            Err(e)
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    || e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error()) =>
            {
                match self.root.open(name) {
                    Err(e2) if e2.kind() == std::io::ErrorKind::NotFound => self.root.open("lock"),
                    r => r,
                }
            }
            r => r,
        }
        .at(self.path.join(name))?
        .into_std();
        rustix::fs::flock(&file, op).at(self.path.join(name))?;
        Ok(file)
    }

    /// Make everything written so far durable: one `syncfs` of the store's filesystem.
    pub fn sync(&self) -> Result<()> {
        syncfs(&self.root)
    }

    /// The handle of the `objects/` directory.
    pub fn objects_dir(&self) -> &Dir {
        &self.objects
    }

    /// Run `f` in one transaction committed with `synchronous=FULL` (refs and gc sweeps: a
    /// commit that returned survives a power cut). `immediate` takes the write lock at `BEGIN`,
    /// for transactions that read before they write.
    pub(crate) fn durable<T, E: From<rusqlite::Error>>(
        &self,
        immediate: bool,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut conn = self.conn();
        conn.pragma_update(None, "synchronous", "FULL")?;
        let res = (|| {
            let tx = conn.transaction_with_behavior(if immediate {
                rusqlite::TransactionBehavior::Immediate
            } else {
                rusqlite::TransactionBehavior::Deferred
            })?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        res
    }
}

/// `syncfs` needs a real descriptor (directory handles may be `O_PATH`).
fn syncfs(root: &Dir) -> Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(
        root,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Sync(e.into()))?;
    rustix::fs::syncfs(&fd).map_err(|e| Error::Sync(e.into()))
}

/// Waiting for another connection's write: poll every millisecond (SQLite's own backoff sleeps
/// up to 100 ms at a time, so a writer waiting behind a chain of short gc transactions lost
/// most of a second), for up to ten minutes.
pub(crate) fn busy(attempt: i32) -> bool {
    std::thread::sleep(std::time::Duration::from_millis(if attempt < 1000 {
        1
    } else {
        10
    }));
    attempt < 60_000
}

fn open_index(store: &Path) -> Result<Connection> {
    if !crate::readonly::writable(store) {
        return crate::readonly::open_index_read_only(store);
    }
    let mut conn = Connection::open(store.join("index.sqlite"))?;
    conn.busy_handler(Some(busy))?;
    // Only takes effect on a new database; inline objects of a few KiB fit its pages whole.
    conn.pragma_update(None, "page_size", 16384)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Layer rows are made durable by the WAL at NORMAL; refs raise it to FULL for their commit.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // gc's mark sets and sorts stay in memory instead of temp files; a larger page cache
    // (64 MiB) keeps a 100,000-object index from being read twice in one sweep.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    // Dirty pages stay in memory until the commit, up to 256 MiB (16,384 pages): an import into
    // a 1,000,000-object store dirties about 92 MiB of `objects` leaf pages (blake3 keys land
    // everywhere), and spilling them at 64 MiB wrote half of them to the WAL twice (147 MB of
    // WAL instead of 92). Clean pages still go at 64 MiB, so reads do not grow the cache.
    conn.pragma_update(None, "cache_spill", 16384)?;
    // libsqlite3-sys builds with SECURE_DELETE, which zeroes every freed cell: gc deleting
    // 50,000 rows spent an eighth of its time in it. Contents are not secrets here.
    conn.pragma_update(None, "secure_delete", "OFF")?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// A second connection to an open store's index, for a long read of its own.
pub(crate) fn open_reader(store: &Path) -> Result<Connection> {
    if !crate::readonly::writable(store) {
        return crate::readonly::open_index_read_only(store);
    }
    let conn = Connection::open(store.join("index.sqlite"))?;
    conn.busy_handler(Some(busy))?;
    Ok(conn)
}

/// Seconds since the epoch, for `created`/`imported_at` columns.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feature is named once, kept with the rest of `meta.json`, and known to this build;
    /// one this build does not know makes it refuse the store.
    #[test]
    fn a_required_feature_is_named_in_meta_json_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s");
        let opts = StoreOptions {
            inline_threshold: 123,
            ..StoreOptions::default()
        };
        let s = Store::init(&path, &opts).unwrap();
        s.require_feature(SKELETON_ZERO_RUNS).unwrap();
        s.require_feature(SKELETON_ZERO_RUNS).unwrap();
        let again = Store::open(&path).unwrap();
        assert_eq!(again.config().features, [SKELETON_ZERO_RUNS]);
        assert_eq!(again.config().inline_threshold, 123);
        again.require_feature("from-the-future").unwrap();
        drop((s, again));
        assert!(matches!(
            Store::open(&path),
            Err(Error::UnknownFeature { feature }) if feature == "from-the-future"
        ));
    }

    /// A gc waiting for the exclusive lock gets it before shared holders that came after it
    /// (three processes' worth of stores on one directory; sleeps only order the steps).
    #[test]
    fn a_waiting_exclusive_lock_is_not_starved_by_new_shared_holders() {
        use std::time::Duration;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s");
        drop(Store::init(&path, &StoreOptions::default()).unwrap());
        let (reader, gc, late) = (
            Store::open(&path).unwrap(),
            Store::open(&path).unwrap(),
            Store::open(&path).unwrap(),
        );
        let held = reader.lock(LockMode::Shared).unwrap();
        // A nested shared lock of a holder never waits, even behind a waiting gc.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let tx1 = tx.clone();
            s.spawn(move || {
                let _x = gc.lock(LockMode::Exclusive).unwrap();
                tx1.send("exclusive").unwrap();
                std::thread::sleep(Duration::from_millis(100));
            });
            std::thread::sleep(Duration::from_millis(200));
            let nested = reader.lock(LockMode::Shared).unwrap();
            let tx2 = tx.clone();
            s.spawn(move || {
                let _l = late.lock(LockMode::Shared).unwrap();
                tx2.send("late shared").unwrap();
            });
            std::thread::sleep(Duration::from_millis(200));
            tx.send("released").unwrap();
            drop(nested);
            drop(held);
        });
        let order: Vec<&str> = rx.try_iter().collect();
        assert_eq!(order, ["released", "exclusive", "late shared"]);
    }

    #[test]
    fn concurrent_open_or_init_all_get_the_one_store() {
        for _ in 0..20 {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("s");
            let results: Vec<Result<Store>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|_| s.spawn(|| Store::open_or_init(&path, &StoreOptions::default())))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for r in results {
                r.expect("every caller opens the store");
            }
        }
    }
}
