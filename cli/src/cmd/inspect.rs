//! `inspect`: an image's names, digests, platform, labels and layers.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use layerstore_store::Digest;
use serde::Serialize;

use crate::context::{Context, View};
use crate::fmt::{self, plural};

/// Show an image's manifest, config and layers.
#[derive(clap::Args)]
pub struct Args {
    /// The image: a name, or a manifest digest or ID (a unique prefix is enough).
    image: String,
}

#[derive(Serialize)]
struct Layer {
    diff_id: Digest,
    blob_digest: Digest,
    media_type: String,
    blob_size: u64,
    tar_size: u64,
    entries: u64,
    content_size: u64,
}

#[derive(Serialize)]
struct Inspect {
    names: Vec<String>,
    id: String,
    manifest_digest: Digest,
    manifest_media_type: String,
    config_digest: Digest,
    created: Option<String>,
    /// `os/architecture[/variant]` from the config.
    platform: Option<String>,
    /// Where the image was imported from (`docker://HOST/REPO:TAG`, or the source as given).
    origin: Option<String>,
    layers: Vec<Layer>,
    labels: BTreeMap<String, String>,
    /// Labels the store keeps beside the image (`import --label`), not in its config.
    local_labels: BTreeMap<String, String>,
    manifest: serde_json::Value,
    config: serde_json::Value,
}

impl View for Inspect {
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(w, "Names:    {}", self.names.join(", "))?;
        writeln!(w, "ID:       {}", self.id)?;
        writeln!(
            w,
            "Manifest: {} ({})",
            self.manifest_digest, self.manifest_media_type
        )?;
        writeln!(w, "Config:   {}", self.config_digest)?;
        writeln!(w, "Created:  {}", self.created.as_deref().unwrap_or("-"))?;
        writeln!(w, "Platform: {}", self.platform.as_deref().unwrap_or("-"))?;
        writeln!(w, "Origin:   {}", self.origin.as_deref().unwrap_or("-"))?;
        if !self.labels.is_empty() {
            writeln!(w, "Labels:")?;
            for (k, v) in &self.labels {
                writeln!(w, "  {k}={v}")?;
            }
        }
        if !self.local_labels.is_empty() {
            writeln!(w, "Local labels (kept by the store, not in the image):")?;
            for (k, v) in &self.local_labels {
                writeln!(w, "  {k}={v}")?;
            }
        }
        writeln!(w, "Layers:")?;
        for l in &self.layers {
            let blob = l.blob_digest.to_string();
            writeln!(
                w,
                "  {}  blob {}  {} compressed, {} tar, {}",
                l.diff_id,
                if ctx.verbose > 0 { &blob } else { &blob[..19] },
                fmt::bytes(l.blob_size),
                fmt::bytes(l.tar_size),
                plural(l.entries, "entry", "entries"),
            )?;
            if ctx.verbose > 0 {
                writeln!(
                    w,
                    "      {}, {} of file content",
                    l.media_type,
                    fmt::bytes(l.content_size)
                )?;
            }
        }
        if ctx.verbose > 1 {
            writeln!(w, "Config document:")?;
            writeln!(
                w,
                "{}",
                serde_json::to_string_pretty(&self.config).unwrap_or_default()
            )?;
        }
        Ok(())
    }
}

pub fn run(ctx: &Context, a: Args) -> Result<ExitCode> {
    let store = ctx.shared()?;
    let info = store.find_image(&a.image)?;
    let (manifest, config) = store.image_documents(&info)?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest)?;
    let config: serde_json::Value = serde_json::from_slice(&config)?;
    let mut layers = Vec::new();
    for l in &info.layers {
        let li = store.layer_info(&l.diff_id)?;
        layers.push(Layer {
            diff_id: l.diff_id,
            blob_digest: l.blob_digest,
            media_type: l.media_type.clone(),
            blob_size: l.blob_size,
            tar_size: li.tar_size,
            entries: li.entry_count,
            content_size: li.content_size,
        });
    }
    let labels = match config.pointer("/config/Labels") {
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                (k.clone(), v)
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let s = |k: &str| config.get(k).and_then(|v| v.as_str());
    let platform = match (s("os"), s("architecture")) {
        (Some(os), Some(arch)) => Some(match s("variant") {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        }),
        _ => None,
    };
    ctx.emit(&Inspect {
        names: info.names,
        id: info.config_digest.hex(),
        manifest_digest: info.manifest_digest,
        manifest_media_type: info.manifest_media_type,
        config_digest: info.config_digest,
        created: info.created,
        platform,
        origin: info.origin,
        layers,
        labels,
        local_labels: store.labels(&info.manifest_digest)?.local,
        manifest,
        config,
    })?;
    Ok(ExitCode::SUCCESS)
}
