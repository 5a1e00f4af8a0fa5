//! The dedup-report chart: per image, stacked bars of content already stored by earlier images
//! and new content; for the series, the strategies side by side, raw and with zstd.

use anyhow::Result;
use layerstore_import::dedup::DedupReport;
use plotters::prelude::*;

const MIB: f64 = 1024.0 * 1024.0;

/// The category name at integer positions, nothing elsewhere.
fn label(names: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() < 0.01 && i >= 0.0 {
        names.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// The chart as an SVG document.
pub fn render_svg(report: &DedupReport) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 520)).into_drawing_area();
        let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw the chart: {e}");
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let (left, right) = root.split_horizontally(600);
        images_panel(report, &left).map_err(|e| fail(&e))?;
        strategies_panel(report, &right).map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn images_panel(report: &DedupReport, area: &Area<'_>) -> Result<(), Box<dyn std::error::Error>> {
    let n = report.images.len().max(1);
    let max = report
        .images
        .iter()
        .map(|i| i.file_level.raw)
        .max()
        .unwrap_or(1) as f64
        / MIB
        * 1.4;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Per image: distinct content (file-level)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..max.max(0.001))?;
    let names: Vec<String> = report.images.iter().map(|i| i.name.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| label(&names, *x))
        .y_desc("MiB")
        .draw()?;
    let old = RGBColor(120, 144, 190);
    let new = RGBColor(230, 126, 34);
    for (i, f) in report.images.iter().enumerate() {
        let x0 = i as f64 - 0.3;
        let x1 = i as f64 + 0.3;
        let reused = (f.file_level.raw - f.new_file_bytes) as f64 / MIB;
        let added = f.new_file_bytes as f64 / MIB;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x0, 0.0), (x1, reused)],
            old.filled(),
        )))?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x0, reused), (x1, reused + added)],
            new.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("+{added:.1} MiB"),
            (x0, reused + added + max * 0.02),
            ("sans-serif", 13),
        )))?;
    }
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            old.filled(),
        )))?
        .label("already stored by earlier images")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], old.filled()));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            new.filled(),
        )))?
        .label("new in this image")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], new.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn strategies_panel(
    report: &DedupReport,
    area: &Area<'_>,
) -> Result<(), Box<dyn std::error::Error>> {
    let t = &report.total;
    let bars = [
        ("logical", t.logical_bytes, None),
        ("layers", t.layer_level, Some(t.layer_blobs)),
        ("files", t.file_level.raw, Some(t.file_level.zstd)),
        ("CDC 16K", t.cdc_16k.raw, Some(t.cdc_16k.zstd)),
        ("CDC 64K", t.cdc_64k.raw, Some(t.cdc_64k.zstd)),
    ];
    let names: Vec<String> = bars.iter().map(|b| b.0.to_string()).collect();
    let max = bars.iter().map(|b| b.1).max().unwrap_or(1) as f64 / MIB * 1.4;
    let mut chart = ChartBuilder::on(area)
        .caption("Series: bytes stored by strategy", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..bars.len() as f64 - 0.5, 0f64..max.max(0.001))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&|x| label(&names, *x))
        .y_desc("MiB")
        .draw()?;
    let raw = RGBColor(52, 101, 164);
    let packed = RGBColor(115, 210, 22);
    for (i, (_, r, z)) in bars.iter().enumerate() {
        let x = i as f64 - 0.5;
        let r = *r as f64 / MIB;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x + 0.1, 0.0), (x + 0.48, r)],
            raw.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{r:.1}"),
            (x + 0.1, r + max * 0.02),
            ("sans-serif", 12),
        )))?;
        if let Some(z) = z {
            let z = *z as f64 / MIB;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.52, 0.0), (x + 0.9, z)],
                packed.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{z:.1}"),
                (x + 0.52, z + max * 0.02),
                ("sans-serif", 12),
            )))?;
        }
    }
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            raw.filled(),
        )))?
        .label("uncompressed")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], raw.filled()));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            packed.filled(),
        )))?
        .label("zstd per object / chunk (layers: compressed blobs)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], packed.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
