//! `quickv bench --plot FILE.svg`: the latency percentile curve (per kind of operation) and the
//! throughput over the run, side by side, drawn with plotters' SVG backend.

use std::path::Path;

use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;
use plotters::prelude::*;

/// The percentile curve's x axis: "nines", `-log10(1 - q)`, so 90%, 99% and 99.9% are equally
/// spaced; it ends at 99.99%.
const NINES: f64 = 4.0;

/// Draws the plot into `path`.
pub fn draw(
    path: &Path,
    title: &str,
    curves: &[(&'static str, &Histogram<u64>)],
    throughput: &[(f64, f64)],
) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", path.display());
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(|e| failed(&e))?;
    let (left, right) = root.split_horizontally(620);

    // Latency at each percentile, in ms.
    let points = |h: &Histogram<u64>| -> Vec<(f64, f64)> {
        (0..=400)
            .map(|i| {
                let nines = f64::from(i) / 100.0;
                let q = 1.0 - 10f64.powf(-nines);
                (nines, h.value_at_quantile(q) as f64 / 1000.0)
            })
            .collect()
    };
    let series: Vec<(&str, Vec<(f64, f64)>)> = curves.iter().map(|(name, h)| (*name, points(h))).collect();
    let top = series.iter().flat_map(|(_, p)| p.iter().map(|(_, ms)| *ms)).fold(0.1f64, f64::max) * 1.1;
    let mut chart = panel(&left, "latency by percentile", 0f64..NINES, 0f64..top).map_err(|e| failed(&e))?;
    let percentile = |nines: &f64| match nines.round() as i32 {
        0 => "0%".to_owned(),
        n => format!("{}%", 100.0 - 100.0 * 10f64.powi(-n)),
    };
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&percentile)
        .x_desc("percentile")
        .y_desc("ms")
        .draw()
        .map_err(|e| failed(&e))?;
    for (i, (name, points)) in series.into_iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| failed(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| failed(&e))?;

    // Operations per second over the run.
    let end = throughput.last().map_or(1.0, |(t, _)| *t).max(0.1);
    let peak = throughput.iter().map(|(_, rate)| *rate).fold(1.0f64, f64::max) * 1.1;
    let mut chart = panel(&right, "throughput over the run", 0f64..end, 0f64..peak).map_err(|e| failed(&e))?;
    chart.configure_mesh().x_desc("seconds").y_desc("ops/s").draw().map_err(|e| failed(&e))?;
    chart.draw_series(LineSeries::new(throughput.iter().copied(), BLUE.stroke_width(2))).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

type Panel<'a> = ChartContext<
    'a,
    SVGBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One of the two charts: its caption and axes' ranges, the same margins and label areas.
fn panel<'a>(
    area: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    caption: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Panel<'a>, DrawingAreaErrorKind<std::io::Error>> {
    ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plot is an SVG with both charts, the curves' names and the axes' labels.
    #[test]
    fn the_plot_is_an_svg_of_both_charts() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for us in 1..=10_000 {
            h.record(us * 10).expect("in bounds");
        }
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("bench.svg");
        let throughput: Vec<(f64, f64)> = (1..=20).map(|i| (f64::from(i) * 0.25, 4000.0 + f64::from(i))).collect();
        draw(&path, "workload c", &[("read", &h)], &throughput).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for text in ["latency by percentile", "throughput over the run", "read", "99.9%", "ops/s", "workload c"] {
            assert!(svg.contains(text), "no {text:?} in the plot");
        }
        assert!(svg.matches("<polyline").count() >= 2, "both lines drawn");
    }
}
