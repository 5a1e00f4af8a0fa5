//! Progress on stderr: one indicatif bar per layer read (import), compressed and uploaded
//! (push) or written (export), and a stash's one line; hidden when stderr is not a terminal or with `--json`/`--quiet`.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use layerstore_import::layer_out::{BlobProgress, LayerBlob, LayerCompression};
use layerstore_import::registry::push::{LayerPush, PushProgress, PushedLayer};
use layerstore_import::stash::{DiffCounts, StashProgress};
use layerstore_import::{LayerStats, Progress, ResolvedImage};
use layerstore_store::Digest;

/// Whether progress is drawn: stderr is a terminal and neither `--json` nor `--quiet` is given.
pub fn visible(ctx: &crate::context::Context) -> bool {
    use std::io::IsTerminal;
    !ctx.json && !ctx.quiet && std::io::stderr().is_terminal()
}

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<usize, ProgressBar>>,
}

impl Bars {
    pub fn new(visible: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Bars {
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for Bars {
    fn start(&self, _image: &ResolvedImage, layers: &[(usize, Digest, u64, bool)]) {
        let style = ProgressStyle::with_template(
            "{prefix:.bold} {bar:30.cyan/blue} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        let mut bars = self.bars.lock().expect("not poisoned");
        for (i, digest, size, read) in layers {
            let short = &digest.hex()[..12];
            if *read {
                let pb = self.multi.add(ProgressBar::new(*size));
                pb.set_style(style.clone());
                pb.set_prefix(format!("layer {i} {short}"));
                bars.insert(*i, pb);
            } else {
                let pb = self.multi.add(ProgressBar::new(0));
                pb.set_style(
                    ProgressStyle::with_template("{prefix:.bold} {msg}").expect("valid template"),
                );
                pb.set_prefix(format!("layer {i} {short}"));
                pb.finish_with_message("already stored");
            }
        }
    }

    fn read(&self, index: usize, bytes: u64) {
        if let Some(pb) = self.bars.lock().expect("not poisoned").get(&index) {
            pb.inc(bytes);
        }
    }

    fn layer_done(&self, index: usize, stats: &LayerStats) {
        if let Some(pb) = self.bars.lock().expect("not poisoned").get(&index) {
            pb.finish_with_message(format!(
                "{} files, {} new objects, {} deduplicated",
                stats.files, stats.new_objects, stats.dedup_hits
            ));
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        let _ = self.multi.clear();
    }
}

/// Push and export progress on stderr: one line per layer, made when its work begins. A layer
/// compressed shows its compressed bytes and rate, then (push) its upload against the blob's
/// size; a layer the registry has shows as "present" or "mounted". Hidden as [`Bars`] is.
pub struct LayerBars {
    multi: MultiProgress,
    /// "compressing" or "writing", said while a blob is made.
    verb: &'static str,
    bars: Mutex<HashMap<usize, ProgressBar>>,
}

impl LayerBars {
    pub fn new(visible: bool, verb: &'static str) -> Self {
        LayerBars {
            multi: MultiProgress::with_draw_target(if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            }),
            verb,
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// Layer `index`'s line in `template`, made now if it has none yet.
    fn line(&self, index: usize, template: &str) -> ProgressBar {
        let pb = self
            .bars
            .lock()
            .expect("not poisoned")
            .entry(index)
            .or_insert_with(|| {
                // Styled before it is added, so that it is never drawn in the default style.
                let pb = ProgressBar::new(0)
                    .with_style(style(template))
                    .with_prefix(format!("layer {index}"));
                self.multi.add(pb)
            })
            .clone();
        pb.set_style(style(template));
        pb
    }

    fn get(&self, index: usize) -> Option<ProgressBar> {
        self.bars.lock().expect("not poisoned").get(&index).cloned()
    }
}

/// A blob digest as a line names it: `sha256:` and 12 hex digits.
fn short(d: &Digest) -> String {
    format!("sha256:{}", &d.hex()[..12])
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
}

impl BlobProgress for LayerBars {
    fn blob_start(&self, index: usize, _diff_id: &Digest, compression: LayerCompression) {
        // The blob's size is known only at its end: bytes and rate, no bar.
        let pb = self.line(
            index,
            "{prefix:.bold} {spinner} {bytes:>10} {bytes_per_sec:>12} {msg}",
        );
        pb.set_message(format!("{} ({})", self.verb, compression.compression));
    }

    fn blob_bytes(&self, index: usize, bytes: u64) {
        if let Some(pb) = self.get(index) {
            pb.inc(bytes);
        }
    }

    fn blob_done(&self, index: usize, blob: &LayerBlob) {
        if let Some(pb) = self.get(index) {
            pb.set_style(style("{prefix:.bold} {bytes:>10} {msg}"));
            // Finishing fills the bar to its length: the blob's size.
            pb.set_length(blob.size);
            pb.finish_with_message(format!(
                "{}, {}",
                blob.compression.compression,
                short(&blob.digest)
            ));
        }
    }
}

impl PushProgress for LayerBars {
    fn layer_skipped(&self, index: usize, digest: &Digest, how: LayerPush) {
        self.line(index, "{prefix:.bold} {msg}")
            .finish_with_message(format!("{}, {}", push_word(how), short(digest)));
    }

    fn upload_start(&self, index: usize, size: u64) {
        if let Some(pb) = self.get(index) {
            // The compressed blob's line becomes its upload's: a bar against its size.
            pb.reset();
            pb.set_length(size);
            pb.set_style(style(
                "{prefix:.bold} {bar:30.cyan/blue} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
            ));
            pb.set_message("uploading");
        }
    }

    fn uploaded(&self, index: usize, bytes: u64) {
        if let Some(pb) = self.get(index) {
            pb.inc(bytes);
        }
    }

    fn layer_pushed(&self, index: usize, layer: &PushedLayer) {
        let done = match layer.how {
            LayerPush::Uploaded => format!("uploaded {}", crate::fmt::bytes(layer.size)),
            how => push_word(how).to_string(),
        };
        self.line(index, "{prefix:.bold} {msg}")
            .finish_with_message(format!("{done}, {}", short(&layer.digest)));
    }
}

fn push_word(how: LayerPush) -> &'static str {
    match how {
        LayerPush::Present => "present",
        LayerPush::Mounted => "mounted",
        LayerPush::Uploaded => "uploaded",
    }
}

impl Drop for LayerBars {
    fn drop(&mut self) {
        let _ = self.multi.clear();
    }
}

/// Stash progress on stderr: one line, a spinner while the root is walked, a bar against the
/// bytes read to compare contents with the parent's, then the layer's bytes and rate as it is
/// written. Hidden as [`Bars`] is.
pub struct StashBar(ProgressBar);

impl StashBar {
    pub fn new(visible: bool, root: &std::path::Path) -> Self {
        let pb = ProgressBar::with_draw_target(
            None,
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        )
        .with_style(style("{prefix:.bold} {spinner} {msg}"))
        .with_prefix(format!("stash {}", root.display()))
        .with_message("walking the tree");
        if visible {
            // The walk reports nothing until it ends: the spinner shows it is alive.
            pb.enable_steady_tick(std::time::Duration::from_millis(100));
        }
        StashBar(pb)
    }
}

impl StashProgress for StashBar {
    fn hashing(&self, files: u64, bytes: u64) {
        let pb = &self.0;
        pb.reset();
        pb.set_length(bytes);
        pb.set_style(style(
            "{prefix:.bold} {bar:30.cyan/blue} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
        ));
        pb.set_message(format!(
            "comparing {} with the parent's",
            crate::fmt::plural(files, "file", "files")
        ));
    }

    fn hashed(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn compared(&self, counts: &DiffCounts) {
        let pb = &self.0;
        pb.reset();
        pb.set_style(style(
            "{prefix:.bold} {spinner} {bytes:>10} {bytes_per_sec:>12} {msg}",
        ));
        pb.set_message(format!(
            "writing the layer: {} added, {} changed, {} removed",
            counts.added, counts.changed, counts.removed
        ));
    }

    fn layer_bytes(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

impl Drop for StashBar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
