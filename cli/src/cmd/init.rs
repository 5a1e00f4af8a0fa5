//! `init`: create an empty store.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use layerstore_store::{Limits, ObjectCompression, Store, StoreOptions};
use serde::Serialize;

use crate::context::{Context, View};
use crate::parse::{self, LimitSetting};

/// Create an empty store.
#[derive(clap::Args)]
pub struct Args {
    /// Objects up to this many bytes are kept in the index instead of loose files (K/M/G
    /// suffixes).
    #[arg(long, value_name = "SIZE", value_parser = parse::size,
          default_value_t = StoreOptions::default().inline_threshold)]
    inline_threshold: u64,
    /// Store each content of at least --compress-min bytes as a zstd frame at this level
    /// (default 3) where that saves space; readers decompress transparently.
    #[arg(long, value_name = "LEVEL", num_args = 0..=1, default_missing_value = "3",
          value_parser = clap::value_parser!(i32).range(-7..=22))]
    compress: Option<i32>,
    /// Smallest content --compress applies to (K/M/G suffixes).
    #[arg(long, value_name = "SIZE", requires = "compress", value_parser = parse::size)]
    compress_min: Option<u64>,
    /// Set a resource limit for every import, NAME=VALUE (layer-bytes, entries, path,
    /// component, depth, pax-record, xattr-bytes, json-bytes; sizes take K/M/G).
    #[arg(long = "limit", value_name = "NAME=VALUE", value_parser = parse::limit)]
    limits: Vec<LimitSetting>,
}

#[derive(Serialize)]
struct Initialized {
    store: PathBuf,
}

impl View for Initialized {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        if !ctx.quiet {
            writeln!(w, "initialized store {}", self.store.display())?;
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let opts = StoreOptions {
        inline_threshold: a.inline_threshold,
        limits: parse::apply_limits(Limits::default(), &a.limits),
        compression: a.compress.map(|level| ObjectCompression {
            level,
            min_size: a
                .compress_min
                .unwrap_or(ObjectCompression::default().min_size),
        }),
    };
    let path = ctx.store_path();
    Store::init(path, &opts).with_context(|| format!("cannot create store {}", path.display()))?;
    ctx.emit(&Initialized { store: path.into() })?;
    Ok(ExitCode::SUCCESS)
}
