//! `make-many-files OUTDIR IMAGES FILES`: an OCI layout with IMAGES single-layer images of FILES
//! distinct files each, sized like a distribution tree (about 60% at most 4 KiB), for scale
//! benchmarks of gc, df and images. Images are tagged `img0`, `img1`, ….

use std::path::PathBuf;
use std::process::ExitCode;

use layerstore_tests::rng::Rng;
use layerstore_tests::{Compression, Entry, ImageSpec, Layer, LayerBuilder, OciLayout, TarFormat};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, images, files] = &args[..] else {
        eprintln!("usage: make-many-files OUTDIR IMAGES FILES");
        return ExitCode::from(2);
    };
    let (Ok(images), Ok(files)) = (images.parse::<usize>(), files.parse::<usize>()) else {
        eprintln!("IMAGES and FILES are numbers");
        return ExitCode::from(2);
    };
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
