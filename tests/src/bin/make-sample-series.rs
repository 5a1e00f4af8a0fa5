//! `make-sample-series OUTDIR`: write the deterministic five-image sample
//! series as an OCI layout at OUTDIR and summarise it on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: make-sample-series OUTDIR");
        return ExitCode::from(2);
    };
    let out = PathBuf::from(out);
    match layerstore_tests::sample_series(&out) {
        Ok(images) => {
            for (tag, img) in &images {
                let blob: u64 = img.layers.iter().map(|l| l.blob_size).sum();
                let tar: u64 = img.layers.iter().map(|l| l.tar_size).sum();
                let kinds: Vec<&str> = img
                    .layers
                    .iter()
                    .map(|l| l.media_type.rsplit('.').next().unwrap_or(""))
                    .collect();
                eprintln!(
                    "{tag:8} {} layers={} [{}] blobs={blob} B tar={tar} B",
                    img.manifest_digest,
                    img.layers.len(),
                    kinds.join(",")
                );
            }
            eprintln!("wrote {} images to {}", images.len(), out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make-sample-series: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
