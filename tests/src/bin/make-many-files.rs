//! `make-many-files OUTDIR IMAGES FILES [SHRINK]`: an OCI layout with IMAGES single-layer images
//! of FILES distinct files each, sized like a distribution tree (about 60% at most 4 KiB), for
//! scale benchmarks of gc, df and images. Images are tagged `img0`, `img1`, ….
//!
//! SHRINK (default 1) divides what files above 4 KiB have beyond 4 KiB: the same files, inline
//! and loose in the same numbers, in fewer bytes, so a store of 1,000,000 objects fits a disk
//! (SHRINK 8: about 52 MB an image instead of 216 MB).

use std::path::PathBuf;
use std::process::ExitCode;

use layerstore_tests::rng::Rng;
use layerstore_tests::{Compression, Entry, ImageSpec, Layer, LayerBuilder, OciLayout, TarFormat};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (out, images, files, shrink) = match &args[..] {
        [out, images, files] => (out, images, files, "1"),
        [out, images, files, shrink] => (out, images, files, shrink.as_str()),
        _ => {
            eprintln!("usage: make-many-files OUTDIR IMAGES FILES [SHRINK]");
            return ExitCode::from(2);
        }
    };
    let (Ok(images), Ok(files), Ok(shrink)) = (
        images.parse::<usize>(),
        files.parse::<usize>(),
        shrink.parse::<u64>(),
    ) else {
        eprintln!("IMAGES, FILES and SHRINK are numbers");
        return ExitCode::from(2);
    };
    let shrink = shrink.max(1);
    let mut layout = match OciLayout::create(&PathBuf::from(out)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("make-many-files: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rng = Rng::new(42);
    for i in 0..images {
        let entries: Vec<Entry> = (0..files)
            .map(|f| {
                let size = match rng.below(100) {
                    0..=59 => rng.range(16, 4096),
                    60..=94 => rng.range(4097, 65536),
                    _ => rng.range(65537, 262_144),
                };
                let size = if size > 4096 {
                    4097 + (size - 4097) / shrink
                } else {
                    size
                } as usize;
                // Distinct content: a header naming the file, then filler.
                let mut data = format!("image {i} file {f}\n").into_bytes();
                data.resize(size.max(data.len()), b'a' + (f % 26) as u8);
                Entry::file(format!("d{}/f{f}", f % 100), data)
            })
            .collect();
        let tar = LayerBuilder::new(TarFormat::Pax)
            .with_entries(entries)
            .tar_bytes();
        let spec = ImageSpec::new(vec![Layer::new(tar, Compression::Zstd)]);
        if let Err(e) = layout.add_image(&format!("img{i}"), &spec) {
            eprintln!("make-many-files: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
