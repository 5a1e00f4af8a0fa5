//! Import progress on stderr: one indicatif bar per layer read, hidden when stderr is not a
//! terminal or with `--json`/`--quiet`.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use layerstore_import::{LayerStats, Progress, ResolvedImage};
use layerstore_store::Digest;

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
