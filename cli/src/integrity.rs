//! What `checkout` and `fsck` say about integrity (issue 19): the checkout summary and its
//! warnings, fsck's advice for damaged layers, and a clear message where a read-only store is
//! asked to write.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use layerstore_store::{CheckoutMode, CheckoutStats, fsck::Finding};

use crate::fmt;

/// The summary line of a checkout and, on stderr, what it could not do as asked (once each).
pub fn print_checkout(
    out: &mut impl Write,
    image: &str,
    dest: &Path,
    mode: CheckoutMode,
    stats: &CheckoutStats,
) -> Result<()> {
    let files = match mode {
        CheckoutMode::Hardlink => format!(
            "{} files ({}; {} linked, {} new variants of {})",
            stats.files,
            fmt::bytes(stats.bytes),
            stats.linked,
            stats.variants_made,
            fmt::bytes(stats.variant_bytes)
        ),
        _ => format!("{} files ({})", stats.files, fmt::bytes(stats.bytes)),
    };
    writeln!(
        out,
        "checked out {image} into {}: {} directories, {files}, {} symlinks, {} hard links, {} special files",
        dest.display(),
        stats.directories,
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
    warn_fallbacks(stats);
    Ok(())
}

/// Say once what a checkout copied instead of linking or cloning.
pub fn warn_fallbacks(stats: &CheckoutStats) {
    if stats.copied_not_cloned > 0 {
        log::warn!(
            "the target's filesystem cannot clone from the store; copied {} files instead",
            stats.copied_not_cloned
        );
    }
    if stats.copied_not_linked > 0 {
        log::warn!(
            "cannot link from the store here (read-only store or another filesystem); copied {} files instead",
            stats.copied_not_linked
        );
    }
    if stats.variants_remade > 0 {
        log::warn!(
            "{} linked files had been changed through an earlier hardlink checkout; made them again",
            stats.variants_remade
        );
    }
}

/// df's line for hardlink checkouts' variants, if there are any.
pub fn print_variants(out: &mut impl Write, store: &layerstore_store::Store) -> Result<()> {
    let (files, bytes) = store.variant_usage()?;
    if files > 0 {
        writeln!(
            out,
            "hardlink checkout variants: {files} files, {} ({bytes}); disposable, not counted above",
            fmt::bytes(bytes)
        )?;
    }
    Ok(())
}

/// fsck's advice for a finding, if it has one.
pub fn advice(f: &Finding) -> Option<String> {
    match f {
        Finding::DamagedLayer {
            diff_id, images, ..
        } => Some(if images.is_empty() {
            format!("layer {diff_id} lost content; no stored image lists it")
        } else {
            format!(
                "layer {diff_id} lost content; import one of these again to heal it: {}",
                images.join(", ")
            )
        }),
        _ => None,
    }
}

/// A clearer message for an error that is SQLite refusing to write a read-only index.
pub fn read_only_hint(e: &anyhow::Error) -> Option<&'static str> {
    e.chain()
        .filter_map(|c| c.downcast_ref::<layerstore_store::Error>())
        .any(|e| e.is_read_only_index())
        .then_some("the store is read-only for this user; this command needs write access to it")
}
