-- The index schema as it stands after every migration (store/src/schema.rs), in one place.
-- A fresh store's index equals this file table for table, column for column and index for index
-- (schema::tests::schema_sql_states_the_current_schema). The migrations stay: stores exist.
-- Digests are `sha256:…` text; object ids are the 32 raw bytes of a blake3; times are seconds
-- since the epoch unless named otherwise.

-- Contents. An object is a content named by its blake3, stored once whatever its metadata.
CREATE TABLE objects (
    id BLOB PRIMARY KEY,        -- blake3 of the content
    size INTEGER NOT NULL,      -- content bytes
    loose INTEGER NOT NULL,     -- 1: a file objects/ab/cdef…; 0: an inline_contents row
    zstd INTEGER NOT NULL DEFAULT 0, -- 1: stored as one zstd frame of the content
    stored INTEGER,             -- bytes stored, where not `size`
    content INTEGER,            -- inline_contents.id of an inline object
    -- For df's per-image usage summary (df/usage.rs): how many named images have the content,
    -- and the sum of their images.id (with one user, that user: removing the second-to-last one
    -- finds whom the content belongs to alone).
    users INTEGER NOT NULL DEFAULT 0,
    user_sum INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Small contents (<= the inline threshold) in import order, so gc deletes whole pages of them.
CREATE TABLE inline_contents (
    id INTEGER PRIMARY KEY,
    data BLOB NOT NULL          -- the content, or its zstd frame (objects.zstd)
);

-- Layers, keyed by diff_id (sha256 of the uncompressed tar). Merged trees (flattened images a
-- merged/ ref pins) are stored the same way, keyed `merged:MANIFEST-DIGEST`, with merged = 1.
CREATE TABLE layers (
    id INTEGER PRIMARY KEY,
    diff_id TEXT NOT NULL UNIQUE,
    merged INTEGER NOT NULL DEFAULT 0,
    tar_size INTEGER NOT NULL,
    entry_count INTEGER NOT NULL,
    content_size INTEGER NOT NULL,
    skeleton BLOB NOT NULL,     -- zstd tar skeleton (skeleton.rs): the tar minus contents
    imported_at INTEGER NOT NULL
);

-- Each layer's tree, in tar order. Paths are bytes.
CREATE TABLE entries (
    layer INTEGER NOT NULL REFERENCES layers(id),
    seq INTEGER NOT NULL,       -- position in the tar
    path BLOB NOT NULL,
    kind INTEGER NOT NULL,      -- tree::EntryKind (file, dir, symlink, hardlink, devices, whiteouts)
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    mtime_nsec INTEGER NOT NULL,
    size INTEGER NOT NULL,
    object BLOB,                -- objects.id of a regular file
    link BLOB,                  -- symlink target or hard link name
    dev_major INTEGER NOT NULL,
    dev_minor INTEGER NOT NULL,
    xattrs BLOB,                -- encoded name/value pairs
    PRIMARY KEY (layer, seq)
) WITHOUT ROWID;

-- Compressed blobs a layer was seen as (gzip, zstd, none), for exports and registries.
CREATE TABLE layer_blobs (
    digest TEXT PRIMARY KEY,    -- compressed blob digest
    diff_id TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL
) WITHOUT ROWID;

-- Layers fsck --repair took content from: the next import of an image that lists the layer
-- reads it again, and reads of it fail naming what to import.
CREATE TABLE damaged_layers (
    diff_id TEXT NOT NULL,
    object BLOB NOT NULL,       -- the removed object the layer needs
    found INTEGER NOT NULL,     -- when fsck removed it
    PRIMARY KEY (diff_id, object)
) WITHOUT ROWID;

-- Images by manifest digest, with the exact manifest and config bytes.
CREATE TABLE images (
    id INTEGER PRIMARY KEY,     -- import order
    manifest_digest TEXT NOT NULL UNIQUE,
    manifest_media_type TEXT NOT NULL,
    manifest BLOB NOT NULL,
    config_digest TEXT NOT NULL,
    config BLOB NOT NULL,
    created TEXT,               -- the config's `created`, RFC 3339
    imported_at INTEGER NOT NULL,
    origin TEXT                 -- `docker://HOST/REPO:TAG` or the source as given; NULL if older
);

CREATE TABLE image_layers (
    image INTEGER NOT NULL REFERENCES images(id),
    idx INTEGER NOT NULL,       -- 0 = bottom layer
    diff_id TEXT NOT NULL,
    blob_digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    PRIMARY KEY (image, idx)
) WITHOUT ROWID;
CREATE INDEX image_layers_diff_id ON image_layers(diff_id);
CREATE INDEX image_layers_blob ON image_layers(blob_digest);

-- An image's labels: its config's (local = 0, indexed when the image row is written) and
-- local ones the store keeps beside it (local = 1, `import --label`). They go with the row.
CREATE TABLE image_labels (
    image INTEGER NOT NULL REFERENCES images(id),
    local INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (image, local, key)
) WITHOUT ROWID;
CREATE INDEX image_labels_key ON image_labels(key, value);

-- Refs: the only thing readers trust. Keys are built by refs.rs, one function per kind.
CREATE TABLE refs (
    name TEXT PRIMARY KEY,      -- kind/rest, e.g. image/app:v1 or layer/sha256:…
    target TEXT NOT NULL,       -- a manifest digest or a diff_id
    created INTEGER NOT NULL
) WITHOUT ROWID;

-- The reference each bound/ROOT/DIGEST ref was bound as; written and removed with the ref.
CREATE TABLE bindings (
    root TEXT NOT NULL,         -- the root's name (without root/)
    image TEXT NOT NULL,        -- manifest digest
    reference TEXT NOT NULL,    -- HOST/REPO@sha256:…
    PRIMARY KEY (root, image)
) WITHOUT ROWID;

-- Imports and long reads in flight, and what they pin against gc.
CREATE TABLE leases (
    id TEXT PRIMARY KEY,        -- also the name of the staging directory
    pid INTEGER NOT NULL,
    boot_id TEXT NOT NULL,
    start_time INTEGER NOT NULL, -- process start time in clock ticks since boot
    created INTEGER NOT NULL,
    what TEXT NOT NULL,
    waiting INTEGER NOT NULL DEFAULT 0 -- 1: waiting for another import's claim on a layer
) WITHOUT ROWID;

CREATE TABLE lease_objects (
    id BLOB NOT NULL,
    lease TEXT NOT NULL,
    PRIMARY KEY (id, lease)
) WITHOUT ROWID;
CREATE INDEX lease_objects_lease ON lease_objects(lease);

CREATE TABLE lease_layers (
    diff_id TEXT NOT NULL,
    lease TEXT NOT NULL,
    PRIMARY KEY (diff_id, lease)
) WITHOUT ROWID;
CREATE INDEX lease_layers_lease ON lease_layers(lease);

-- Images a lease pins whole by manifest digest, perhaps before they are stored (bind).
CREATE TABLE lease_images (
    digest TEXT NOT NULL,       -- manifest digest
    lease TEXT NOT NULL,
    PRIMARY KEY (digest, lease)
) WITHOUT ROWID;
CREATE INDEX lease_images_lease ON lease_images(lease);

-- The import reading a layer now; others wait for it instead of reading it too.
CREATE TABLE layer_claims (
    diff_id TEXT PRIMARY KEY,
    lease TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX layer_claims_lease ON layer_claims(lease);

-- Totals kept up to date for df, and gc's sweep generation.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- The registry blob info cache (blob_cache.rs): which repositories a compressed blob was seen in,
-- so a push can mount it from there instead of uploading it.
CREATE TABLE blob_locations (
    digest TEXT NOT NULL,       -- compressed blob digest
    location TEXT NOT NULL,     -- HOST[:PORT]/REPO it was seen in
    seen INTEGER NOT NULL,
    PRIMARY KEY (digest, location)
) WITHOUT ROWID;

-- Updates `prepare` found (prepared.rs): the manifest and config inline, so nothing is pinned;
-- `import --prepared NAME` fetches exactly this digest, and any import of it clears the row.
CREATE TABLE prepared_updates (
    name TEXT PRIMARY KEY,      -- the image name it updates
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    manifest BLOB NOT NULL,
    config_digest TEXT NOT NULL,
    config BLOB NOT NULL,
    source TEXT NOT NULL,       -- the reference it was checked against
    checked INTEGER NOT NULL
) WITHOUT ROWID;

-- The sha256 of stored contents (content_sha256.rs), so a partial pull finds the files a
-- zstd:chunked table of contents names. Facts about contents: a row may outlive its object, and
-- lookups join objects.
CREATE TABLE object_sha256 (
    object BLOB PRIMARY KEY,    -- objects.id (blake3 of the content)
    sha256 BLOB NOT NULL        -- sha256 of the same content, 32 raw bytes
) WITHOUT ROWID;
CREATE INDEX object_sha256_sha256 ON object_sha256(sha256);

-- The per-image usage summary df reads (df/usage.rs, with objects.users and user_sum), kept up
-- to date by every transaction that changes image refs: for each image an image/ ref names, the
-- distinct content only it has and the content it shares with other named images.
CREATE TABLE image_usage (
    image INTEGER PRIMARY KEY,  -- images.id of an image an image/ ref names
    exclusive_bytes INTEGER NOT NULL,
    shared_bytes INTEGER NOT NULL
);

