//! `layerstore`: store OCI images in a deduplicated, content-addressed store.
//!
//! Exit status: 0 success, 1 the command ran and found problems (`fsck`), 2 error. Results go to
//! stdout (JSON with `--json`), progress and diagnostics to stderr.

mod chart;
mod dedup;
mod fmt;
mod lifecycle;
mod progress;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use layerstore_import::{ImportOptions, Platform};
use layerstore_store::fsck::FsckOptions;
use layerstore_store::tree::display_path;
use layerstore_store::{
    CheckoutMode, CheckoutOptions, Digest, EntryKind, LockMode, RefKind, RefName, Store,
    StoreOptions,
};

#[derive(Parser)]
#[command(
    name = "layerstore",
    version,
    about = "A content-addressed, deduplicated store for OCI images"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Global {
    /// The store directory [default: $LAYERSTORE_STORE, else /var/lib/layerstore as root, else
    /// $XDG_DATA_HOME/layerstore]
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing but results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More diagnostics on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Create an empty store.
    Init {
        /// Objects up to this many bytes are kept in the index instead of loose files.
        #[arg(long, default_value_t = StoreOptions::default().inline_threshold)]
        inline_threshold: u64,
        /// Store each content of at least --compress-min bytes as a zstd frame at this level
        /// (default 3) where that saves space; readers decompress transparently.
        #[arg(long, value_name = "LEVEL", num_args = 0..=1, default_missing_value = "3",
              value_parser = clap::value_parser!(i32).range(-7..=22))]
        compress: Option<i32>,
        /// Smallest content --compress applies to (K/M/G suffixes).
        #[arg(long, value_name = "SIZE", requires = "compress")]
        compress_min: Option<String>,
        /// Set a resource limit for every import, NAME=VALUE (layer-bytes, entries, path,
        /// component, depth, pax-record, xattr-bytes, json-bytes; sizes take K/M/G).
        #[arg(long = "limit", value_name = "NAME=VALUE")]
        limits: Vec<String>,
    },
    /// Import an image: oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:N|NAME],
    /// docker://HOST[:PORT]/REPO[:TAG|@DIGEST].
    Import {
        #[arg(required_unless_present = "prepared")]
        source: Option<String>,
        /// Import exactly the update `prepare` cached for NAME (its digest, not its tag).
        #[arg(long, value_name = "NAME", conflicts_with_all = ["source", "tag"])]
        prepared: Option<String>,
        /// Registry credentials USER[:PASSWORD] (docker:// sources).
        #[arg(long, value_name = "USER[:PASSWORD]")]
        creds: Option<String>,
        /// Registry auth file (default: $REGISTRY_AUTH_FILE, then podman's and docker's).
        #[arg(long, value_name = "FILE")]
        authfile: Option<PathBuf>,
        /// Verify registry TLS certificates; false also allows plain HTTP.
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
              num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        tls_verify: bool,
        /// Name of the image ref (default: the source's reference or tag).
        #[arg(long)]
        tag: Option<String>,
        /// Platform to pick from an image index, os/arch[/variant] (default: the host's).
        #[arg(long)]
        platform: Option<String>,
        /// Layers to import at once (default: CPU count).
        #[arg(long)]
        jobs: Option<usize>,
        /// Override a resource limit for this import, NAME=VALUE (see `init --help`).
        #[arg(long = "limit", value_name = "NAME=VALUE")]
        limits: Vec<String>,
    },
    /// Push a stored image to a registry: docker://HOST[:PORT]/REPO[:TAG].
    Push {
        image: String,
        destination: String,
        /// Registry credentials USER[:PASSWORD].
        #[arg(long, value_name = "USER[:PASSWORD]")]
        creds: Option<String>,
        /// Registry auth file (default: $REGISTRY_AUTH_FILE, then podman's and docker's).
        #[arg(long, value_name = "FILE")]
        authfile: Option<PathBuf>,
        /// Verify registry TLS certificates; false also allows plain HTTP.
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
              num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        tls_verify: bool,
        /// Compression of layers the registry has under no known digest.
        #[arg(long, value_enum, default_value = "gzip")]
        compress: PushCompressArg,
    },
    /// Check an image's origin (or SOURCE with --tag NAME) for an update: fetch only its
    /// manifest and config, and cache them when they differ from the stored image.
    Prepare {
        /// An image name (its origin is checked), or a source with --tag.
        target: String,
        /// The image name SOURCE updates.
        #[arg(long)]
        tag: Option<String>,
        /// Drop the cached update of the image instead.
        #[arg(long, conflicts_with = "tag")]
        clear: bool,
        /// Platform to pick from an image index, os/arch[/variant] (default: the host's).
        #[arg(long)]
        platform: Option<String>,
        /// Registry credentials USER[:PASSWORD].
        #[arg(long, value_name = "USER[:PASSWORD]")]
        creds: Option<String>,
        /// Registry auth file (default: $REGISTRY_AUTH_FILE, then podman's and docker's).
        #[arg(long, value_name = "FILE")]
        authfile: Option<PathBuf>,
        /// Verify registry TLS certificates; false also allows plain HTTP.
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
              num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        tls_verify: bool,
    },
    /// Images with origin, digest and version, and their cached updates (reads the store only).
    Status { names: Vec<String> },
    /// List images.
    Images,
    /// Show an image's manifest, config and layers.
    Inspect { image: String },
    /// List a directory of an image's merged tree (from the index, no checkout).
    Ls {
        image: String,
        #[arg(default_value = "/")]
        path: String,
        /// List the whole subtree.
        #[arg(short = 'R', long)]
        recursive: bool,
    },
    /// Write a file of an image's merged tree to stdout.
    Cat { image: String, path: String },
    /// Write an image's merged root filesystem into DEST (must not exist or be empty).
    Checkout {
        image: String,
        dest: PathBuf,
        /// copy, reflink, or hardlink (hard-links the store's read-only objects: never modify them).
        #[arg(long, value_enum, default_value_t = ModeArg::Copy)]
        mode: ModeArg,
    },
    /// Write a stored layer's uncompressed tar, byte for byte as imported, to FILE or stdout.
    ExportLayer {
        diff_id: String,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Space used: logical and stored bytes, dedup ratio, per-image exclusive and shared bytes.
    Df,
    /// Verify every object and ref; exit 1 if problems remain.
    Fsck {
        /// Remove staging leftovers, dead leases and rows that point nowhere.
        #[arg(long)]
        repair: bool,
    },
    /// Remove what no ref needs: layer refs no image lists, then unreachable layers and objects.
    Gc {
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
    },
    /// Which roots keep something alive: IMAGE, sha256:DIGEST (image or layer), OBJECT-ID, or
    /// IMAGE:/PATH.
    Why { target: String },
    /// Write a disk image of IMAGE: a rootfs tar, EROFS or ext4, from a temporary merged ref.
    Disk {
        image: String,
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = FormatArg::Tar)]
        format: FormatArg,
        /// ext4 size, e.g. 512M or 2G (default: from the content).
        #[arg(long)]
        size: Option<String>,
        /// Keep the merged/ ref afterwards (drop it with `rm --merged` or by re-running gc after
        /// removing it).
        #[arg(long)]
        keep_merged: bool,
    },
    /// Dedup figures for stored images (in the order given; default all, oldest first) or for
    /// sources analysed without importing them (--source, repeatable).
    DedupReport {
        images: Vec<String>,
        /// Analyse this source instead (oci:DIR:REF, oci-archive:…, docker-archive:…).
        #[arg(long = "source", value_name = "SOURCE")]
        sources: Vec<String>,
        /// Also draw the figures as an SVG chart.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Platform to pick from image indexes (with --source).
        #[arg(long)]
        platform: Option<String>,
    },
    /// List refs.
    Refs {
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
    /// Give an image another name.
    Tag { image: String, new_name: String },
    /// Remove image names (space comes back at the next gc).
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Copy,
    Reflink,
    Hardlink,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Tar,
    Erofs,
    Ext4,
}

fn parse_size(s: &str) -> Result<u64> {
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => (
            &s[..i],
            match s[i..].to_ascii_uppercase().trim_end_matches(['B', 'I']) {
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => bail!("invalid size {s:?} (use e.g. 512M or 2G)"),
            },
        ),
    };
    let n: u64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    n.checked_mul(mult)
        .with_context(|| format!("size {s:?} is too large"))
}

fn apply_limits(
    mut l: layerstore_store::Limits,
    settings: &[String],
) -> Result<layerstore_store::Limits> {
    for s in settings {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--limit wants NAME=VALUE, not {s:?}"))?;
        l.set(k, parse_size(v)?).map_err(anyhow::Error::msg)?;
    }
    Ok(l)
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Image,
    Layer,
    Merged,
    Bound,
    Prepared,
}

fn default_store() -> PathBuf {
    if let Some(p) = std::env::var_os("LAYERSTORE_STORE").filter(|p| !p.is_empty()) {
        return p.into();
    }
    if rustix::process::geteuid().is_root() {
        return "/var/lib/layerstore".into();
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("layerstore")
}

/// `push --compress`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PushCompressArg {
    Gzip,
    Zstd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => log::LevelFilter::Error,
        (_, 0) => log::LevelFilter::Warn,
        (_, 1) => log::LevelFilter::Info,
        (_, 2) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp(None)
        .target(env_logger::Target::Stderr)
        .init();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("layerstore: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn open(path: &Path) -> Result<Store> {
    Store::open(path).with_context(|| format!("cannot open store {}", path.display()))
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let g = &cli.global;
    let store_path = g.store.clone().unwrap_or_else(default_store);
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Init {
            inline_threshold,
            compress,
            compress_min,
            limits,
        } => {
            let compression = match compress {
                None => None,
                Some(level) => Some(layerstore_store::Compression {
                    level: *level,
                    min_size: match compress_min {
                        Some(s) => parse_size(s)?,
                        None => layerstore_store::Compression::default().min_size,
                    },
                }),
            };
            let opts = StoreOptions {
                inline_threshold: *inline_threshold,
                limits: apply_limits(layerstore_store::Limits::default(), limits)?,
                compression,
            };
            Store::init(&store_path, &opts)
                .with_context(|| format!("cannot create store {}", store_path.display()))?;
            if g.json {
                print_json(&serde_json::json!({ "store": store_path }))?;
            } else if !g.quiet {
                writeln!(out, "initialized store {}", store_path.display())?;
            }
        }
        Command::Import {
            source,
            prepared,
            creds,
            authfile,
            tls_verify,
            tag,
            platform,
            jobs,
            limits,
        } => {
            let store = Store::open_or_init(&store_path, &StoreOptions::default())
                .with_context(|| format!("cannot open store {}", store_path.display()))?;
            let bars = progress::Bars::new(!g.json && !g.quiet && std::io::stderr().is_terminal());
            let mut opts = ImportOptions {
                tag: tag.clone(),
                platform: platform.as_deref().map(Platform::parse).transpose()?,
                progress: &bars,
                registry: layerstore_import::registry::RegistryOptions {
                    creds: creds
                        .as_deref()
                        .map(layerstore_import::registry::Credentials::parse)
                        .transpose()?,
                    authfile: authfile.clone(),
                    tls_verify: *tls_verify,
                },
                ..ImportOptions::default()
            };
            if let Some(j) = jobs {
                opts.jobs = *j;
            }
            if !limits.is_empty() {
                opts.limits = Some(apply_limits(store.limits(), limits)?);
            }
            let started = std::time::Instant::now();
            let (source, cached) = match (source, prepared) {
                (Some(s), _) => (s.clone(), None),
                (None, Some(name)) => {
                    let (spec, u) = layerstore_import::prepare::prepared_source(&store, name)?;
                    opts.tag = Some(name.clone());
                    (spec, Some(u))
                }
                (None, None) => unreachable!("clap requires one"),
            };
            let source = &source;
            let report = match layerstore_import::import(&store, source, &opts) {
                Err(layerstore_import::Error::Registry(
                    e @ layerstore_import::registry::RegistryError::ManifestUnknown { .. },
                )) if cached.is_some() => {
                    let u = cached.as_ref().expect("checked");
                    return Err(anyhow::Error::new(e).context(format!(
                        "the prepared update {} of {} is no longer in the registry; run `layerstore prepare {}` again",
                        u.manifest_digest, u.name, u.name
                    )));
                }
                res => res.with_context(|| format!("cannot import {source}"))?,
            };
            drop(bars);
            if g.json {
                print_json(&report)?;
            } else if !g.quiet {
                let reused = report.layers.iter().filter(|l| l.reused).count();
                writeln!(
                    out,
                    "imported {} {} in {:.2}s: {} layers ({} read, {} already stored), {} files, {} new objects ({}), {} deduplicated",
                    report.name,
                    report.manifest_digest,
                    started.elapsed().as_secs_f64(),
                    report.layers.len(),
                    report.layers.len() - reused,
                    reused,
                    report
                        .layers
                        .iter()
                        .filter_map(|l| l.stats.as_ref())
                        .map(|s| s.files)
                        .sum::<u64>(),
                    report.new_objects,
                    fmt::bytes(report.new_bytes),
                    report.dedup_hits,
                )?;
            }
        }
        Command::Push {
            image,
            destination,
            creds,
            authfile,
            tls_verify,
            compress,
        } => {
            use layerstore_import::registry::{Credentials, RegistryOptions, push};
            let store = open(&store_path)?;
            let opts = push::PushOptions {
                registry: RegistryOptions {
                    creds: creds.as_deref().map(Credentials::parse).transpose()?,
                    authfile: authfile.clone(),
                    tls_verify: *tls_verify,
                },
                compression: match compress {
                    PushCompressArg::Gzip => push::PushCompression::Gzip,
                    PushCompressArg::Zstd => push::PushCompression::Zstd,
                },
            };
            let report = push::push(&store, image, destination, &opts)
                .with_context(|| format!("cannot push {image} to {destination}"))?;
            if g.json {
                print_json(&report)?;
            } else if !g.quiet {
                let uploaded = report
                    .layers
                    .iter()
                    .filter(|l| l.how == push::LayerPush::Uploaded)
                    .count();
                writeln!(
                    out,
                    "pushed {image} to {} {}: {} layers ({} uploaded, {} already there or mounted), {} uploaded",
                    report.destination,
                    report.manifest_digest,
                    report.layers.len(),
                    uploaded,
                    report.layers.len() - uploaded,
                    fmt::bytes(report.uploaded_bytes),
                )?;
            }
        }
        Command::Prepare {
            target,
            tag,
            clear,
            platform,
            creds,
            authfile,
            tls_verify,
        } => {
            use layerstore_import::registry::{Credentials, RegistryOptions};
            let store = open(&store_path)?;
            if *clear {
                let gone = store.clear_prepared_update(target, None)?;
                if g.json {
                    print_json(&serde_json::json!({ "name": target, "cleared": gone }))?;
                } else if !g.quiet {
                    writeln!(
                        out,
                        "{}",
                        if gone {
                            format!("dropped the prepared update of {target}")
                        } else {
                            format!("{target} has no prepared update")
                        }
                    )?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            let opts = ImportOptions {
                platform: platform.as_deref().map(Platform::parse).transpose()?,
                registry: RegistryOptions {
                    creds: creds.as_deref().map(Credentials::parse).transpose()?,
                    authfile: authfile.clone(),
                    tls_verify: *tls_verify,
                },
                ..ImportOptions::default()
            };
            let (name, source) = match tag {
                Some(t) => (t.as_str(), Some(target.as_str())),
                None => (target.as_str(), None),
            };
            let r = layerstore_import::prepare::prepare(&store, name, source, &opts)
                .with_context(|| format!("cannot check {name} for an update"))?;
            if g.json {
                print_json(&r)?;
            } else if !g.quiet {
                if !r.update {
                    writeln!(out, "{name}: no update ({} at {})", r.available, r.source)?;
                } else {
                    writeln!(
                        out,
                        "{name}: update {} from {}\n  version: {}\n  created: {}\n  layers to fetch: {} ({}), already stored: {}, removed: {}",
                        r.available,
                        r.source,
                        r.version.as_deref().unwrap_or("-"),
                        r.created.as_deref().unwrap_or("-"),
                        r.to_fetch.len(),
                        fmt::bytes(r.fetch_bytes),
                        r.stored.len(),
                        r.removed.len(),
                    )?;
                }
            }
        }
        Command::Status { names } => {
            let store = open(&store_path)?;
            let _l = store.lock(LockMode::Shared)?;
            let st = layerstore_import::prepare::status(&store, names)?;
            if g.json {
                print_json(&st)?;
            } else {
                for s in &st {
                    writeln!(
                        out,
                        "{}  {}  version {}  from {}",
                        s.name,
                        s.manifest_digest,
                        s.version.as_deref().unwrap_or("-"),
                        s.origin.as_deref().unwrap_or("-")
                    )?;
                    if let Some(u) = &s.update {
                        writeln!(
                            out,
                            "  update: {}  version {}  created {}",
                            u.manifest_digest,
                            u.version.as_deref().unwrap_or("-"),
                            u.created.as_deref().unwrap_or("-")
                        )?;
                    }
                }
            }
        }
        Command::Images => {
            let store = open(&store_path)?;
            let _l = store.lock(LockMode::Shared)?;
            let images = store.images()?;
            if g.json {
                let v: Vec<_> = images
                    .iter()
                    .map(|(name, i)| {
                        serde_json::json!({
                            "name": name,
                            "manifest_digest": i.manifest_digest,
                            "layers": i.layers.len(),
                            "logical_size": i.logical_size,
                            "created": i.created,
                            "origin": i.origin,
                        })
                    })
                    .collect();
                print_json(&v)?;
            } else {
                writeln!(
                    out,
                    "{:<30} {:<19} {:>6} {:>10}  {:<25} ORIGIN",
                    "NAME", "DIGEST", "LAYERS", "SIZE", "CREATED"
                )?;
                for (name, i) in &images {
                    writeln!(
                        out,
                        "{:<30} {:<19} {:>6} {:>10}  {:<25} {}",
                        name,
                        &i.manifest_digest.to_string()[..19],
                        i.layers.len(),
                        fmt::bytes(i.logical_size),
                        i.created.as_deref().unwrap_or("-"),
                        i.origin.as_deref().unwrap_or("-")
                    )?;
                }
            }
        }
        Command::Inspect { image } => {
            let store = open(&store_path)?;
            let _l = store.lock(LockMode::Shared)?;
            let info = store.resolve_image(image)?;
            let (manifest, config) = store.image_documents(&info)?;
            let manifest: serde_json::Value = serde_json::from_slice(&manifest)?;
            let config: serde_json::Value = serde_json::from_slice(&config)?;
            let mut layers = Vec::new();
            for l in &info.layers {
                let li = store.layer_info(&l.diff_id)?;
                layers.push(serde_json::json!({
                    "diff_id": l.diff_id,
                    "blob_digest": l.blob_digest,
                    "media_type": l.media_type,
                    "blob_size": l.blob_size,
                    "tar_size": li.tar_size,
                    "entries": li.entry_count,
                    "content_size": li.content_size,
                }));
            }
            let labels = config
                .pointer("/config/Labels")
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            if g.json {
                print_json(&serde_json::json!({
                    "names": info.names,
                    "manifest_digest": info.manifest_digest,
                    "config_digest": info.config_digest,
                    "created": info.created,
                    "origin": info.origin,
                    "layers": layers,
                    "labels": labels,
                    "manifest": manifest,
                    "config": config,
                }))?;
            } else {
                writeln!(out, "Names:    {}", info.names.join(", "))?;
                writeln!(
                    out,
                    "Manifest: {} ({})",
                    info.manifest_digest, info.manifest_media_type
                )?;
                writeln!(out, "Config:   {}", info.config_digest)?;
                writeln!(out, "Created:  {}", info.created.as_deref().unwrap_or("-"))?;
                writeln!(out, "Origin:   {}", info.origin.as_deref().unwrap_or("-"))?;
                if let Some(p) = config.get("architecture") {
                    writeln!(
                        out,
                        "Platform: {}/{}",
                        config.get("os").and_then(|o| o.as_str()).unwrap_or("?"),
                        p.as_str().unwrap_or("?")
                    )?;
                }
                if let serde_json::Value::Object(m) = &labels {
                    writeln!(out, "Labels:")?;
                    for (k, v) in m {
                        writeln!(out, "  {k}={}", v.as_str().unwrap_or(&v.to_string()))?;
                    }
                }
                writeln!(out, "Layers:")?;
                for l in &layers {
                    writeln!(
                        out,
                        "  {}  blob {}  {} compressed, {} tar, {} entries",
                        l["diff_id"].as_str().unwrap_or_default(),
                        &l["blob_digest"].as_str().unwrap_or_default()[..19],
                        fmt::bytes(l["blob_size"].as_u64().unwrap_or(0)),
                        fmt::bytes(l["tar_size"].as_u64().unwrap_or(0)),
                        l["entries"]
                    )?;
                }
            }
        }
        Command::Ls {
            image,
            path,
            recursive,
        } => {
            let store = open(&store_path)?;
            let _l = store.lock(LockMode::Shared)?;
            let info = store.resolve_image(image)?;
            let tree = store.merged_tree(&info)?;
            let entry = tree
                .lookup(path.as_bytes())
                .with_context(|| format!("no such path {path:?} in image {image}"))?;
            let entries: Vec<_> = if entry.kind != EntryKind::Directory {
                vec![entry]
            } else if *recursive {
                tree.depth_first()
                    .into_iter()
                    .filter(|e| {
                        layerstore_store::tree::is_within(&e.path, &entry.path)
                            && e.path != entry.path
                    })
                    .collect()
            } else {
                tree.children(&entry.path)
            };
            if g.json {
                let v: Vec<_> = entries.iter().map(|e| entry_json(e)).collect();
                print_json(&v)?;
            } else {
                for e in entries {
                    let mut line = format!(
                        "{} {:>5} {:>5} {:>10} {}",
                        fmt::mode(e.kind.letter(), e.mode),
                        e.uid,
                        e.gid,
                        match e.kind {
                            EntryKind::CharDevice | EntryKind::BlockDevice =>
                                format!("{},{}", e.dev_major, e.dev_minor),
                            _ => e.size.to_string(),
                        },
                        display_path(&e.path)
                    );
                    if let Some(l) = &e.link {
                        line.push_str(if e.kind == EntryKind::Symlink {
                            " -> "
                        } else {
                            " link to "
                        });
                        line.push_str(&String::from_utf8_lossy(l));
                    }
                    writeln!(out, "{line}")?;
                }
            }
        }
        Command::Cat { image, path } => {
            let store = open(&store_path)?;
            let _l = store.lock(LockMode::Shared)?;
            let info = store.resolve_image(image)?;
            let tree = store.merged_tree(&info)?;
            let entry = tree
                .lookup(path.as_bytes())
                .with_context(|| format!("no such path {path:?} in image {image}"))?;
            let id = match (entry.kind, entry.object) {
                (EntryKind::Regular | EntryKind::Hardlink, Some(id)) => id,
                _ => bail!("{path:?} in image {image} is not a regular file"),
            };
            store.read_object(&id)?.copy_to(&mut out)?;
        }
        Command::Checkout { image, dest, mode } => {
            let store = open(&store_path)?;
            let info = store.resolve_image(image)?;
            let _pin = store.pin_image(&info)?;
            let tree = store.merged_tree(&info)?;
            let opts = CheckoutOptions {
                mode: match mode {
                    ModeArg::Copy => CheckoutMode::Copy,
                    ModeArg::Reflink => CheckoutMode::Reflink,
                    ModeArg::Hardlink => CheckoutMode::Hardlink,
                },
                ..CheckoutOptions::default()
            };
            let stats = store
                .checkout(&tree, dest, &opts)
                .with_context(|| format!("cannot check out {image} into {}", dest.display()))?;
            if g.json {
                print_json(&stats)?;
            } else if !g.quiet {
                writeln!(
                    out,
                    "checked out {image} into {}: {} directories, {} files ({}), {} symlinks, {} hard links, {} special files",
                    dest.display(),
                    stats.directories,
                    stats.files,
                    fmt::bytes(stats.bytes),
                    stats.symlinks,
                    stats.hardlinks,
                    stats.specials
                )?;
                if stats.skipped_devices > 0 || stats.skipped_xattrs > 0 {
                    log::warn!(
                        "not restored: {} device nodes, {} xattrs (unprivileged checkout or overlay markers)",
                        stats.skipped_devices,
                        stats.skipped_xattrs
                    );
                }
            }
        }
        Command::ExportLayer { diff_id, output } => {
            let store = open(&store_path)?;
            let d: Digest = diff_id.parse()?;
            let _pin = store.pin_for_read(&format!("export {d}"), &[d])?;
            match output {
                Some(p) => {
                    let mut f = std::io::BufWriter::new(
                        std::fs::File::create(p)
                            .with_context(|| format!("cannot create {}", p.display()))?,
                    );
                    store.export_layer_tar(&d, &mut f)?;
                    f.flush()?;
                }
                None => {
                    store.export_layer_tar(&d, &mut out)?;
                }
            }
        }
        Command::Df => {
            let store = open(&store_path)?;
            let _l = store.lock(LockMode::Shared)?;
            let df = store.df()?;
            if g.json {
                print_json(&df)?;
            } else {
                writeln!(
                    out,
                    "{:<30} {:>12} {:>12} {:>12}",
                    "IMAGE", "LOGICAL", "EXCLUSIVE", "SHARED"
                )?;
                for i in &df.images {
                    writeln!(
                        out,
                        "{:<30} {:>12} {:>12} {:>12}",
                        i.name,
                        fmt::bytes(i.logical_bytes),
                        fmt::bytes(i.exclusive_bytes),
                        fmt::bytes(i.shared_bytes)
                    )?;
                }
                writeln!(out)?;
                writeln!(
                    out,
                    "logical bytes of all images: {} ({})",
                    fmt::bytes(df.logical_bytes),
                    df.logical_bytes
                )?;
                writeln!(
                    out,
                    "distinct content: {} ({})",
                    fmt::bytes(df.object_bytes),
                    df.object_bytes
                )?;
                writeln!(
                    out,
                    "stored: {} ({}) = loose objects {} + index {} (with inline objects)",
                    fmt::bytes(df.stored_bytes),
                    df.stored_bytes,
                    fmt::bytes(df.loose_bytes),
                    fmt::bytes(df.index_bytes)
                )?;
                writeln!(
                    out,
                    "objects: {} ({} loose, {} inline), layers: {}",
                    df.objects, df.loose_objects, df.inline_objects, df.layers
                )?;
                writeln!(out, "dedup ratio: {:.2}x", df.dedup_ratio)?;
            }
        }
        Command::Fsck { repair } => {
            let store = open(&store_path)?;
            let _l = store.lock(LockMode::Shared)?;
            let rep = store.fsck(&FsckOptions { repair: *repair })?;
            if g.json {
                print_json(&rep)?;
            } else {
                for f in &rep.repaired {
                    writeln!(out, "repaired: {}", serde_json::to_string(f)?)?;
                }
                for f in &rep.findings {
                    writeln!(out, "problem: {}", serde_json::to_string(f)?)?;
                }
                if !g.quiet {
                    writeln!(
                        out,
                        "checked {} objects ({}), {} refs; {} unreferenced object files; {}",
                        rep.objects_checked,
                        fmt::bytes(rep.bytes_checked),
                        rep.refs_checked,
                        rep.unreferenced_files,
                        if rep.is_clean() {
                            "no problems".to_string()
                        } else {
                            format!("{} problems", rep.findings.len())
                        }
                    )?;
                }
            }
            if !rep.is_clean() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Gc { dry_run } => {
            crate::lifecycle::gc(g, &store_path, &mut out, dry_run)?;
        }
        Command::Why { target } => {
            crate::lifecycle::why(g, &store_path, &mut out, target)?;
        }
        Command::Disk {
            image,
            out: dest,
            format,
            size,
            keep_merged,
        } => {
            crate::lifecycle::disk(
                g,
                &store_path,
                &mut out,
                image,
                dest,
                format,
                size,
                keep_merged,
            )?;
        }
        Command::DedupReport {
            images,
            sources,
            svg,
            platform,
        } => {
            crate::dedup::dedup_report(g, &store_path, &mut out, images, sources, svg, platform)?;
        }
        Command::Refs { kind } => {
            let store = open(&store_path)?;
            let _l = store.lock(LockMode::Shared)?;
            let kind = kind.map(|k| match k {
                KindArg::Image => RefKind::Image,
                KindArg::Layer => RefKind::Layer,
                KindArg::Merged => RefKind::Merged,
                KindArg::Bound => RefKind::Bound,
                KindArg::Prepared => RefKind::Prepared,
            });
            let refs = store.refs(kind)?;
            if g.json {
                print_json(&refs)?;
            } else {
                for r in refs {
                    writeln!(out, "{} {}", r.name, r.target)?;
                }
            }
        }
        Command::Tag { image, new_name } => {
            let store = open(&store_path)?;
            let _l = store.lock(LockMode::Shared)?;
            let info = store.resolve_image(image)?;
            let name = RefName::image(new_name)?;
            store.set_refs(&[(name, info.manifest_digest.to_string())])?;
            if !g.quiet && !g.json {
                writeln!(out, "tagged {} as {new_name}", info.manifest_digest)?;
            }
        }
        Command::Rm { images } => {
            let store = open(&store_path)?;
            let _l = store.lock(LockMode::Shared)?;
            let names = images
                .iter()
                .map(|i| RefName::image(i.strip_prefix("image/").unwrap_or(i)))
                .collect::<Result<Vec<_>, _>>()?;
            store.remove_refs(&names)?;
            if !g.quiet && !g.json {
                for n in &names {
                    writeln!(out, "removed {}", n.name())?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn entry_json(e: &layerstore_store::TreeEntry) -> serde_json::Value {
    serde_json::json!({
        "path": display_path(&e.path),
        "kind": e.kind,
        "mode": format!("{:04o}", e.mode),
        "uid": e.uid,
        "gid": e.gid,
        "size": e.size,
        "mtime": e.mtime,
        "object": e.object,
        "link": e.link.as_ref().map(|l| String::from_utf8_lossy(l).into_owned()),
        "xattrs": e.xattrs.iter().map(|(k, _)| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>(),
    })
}
