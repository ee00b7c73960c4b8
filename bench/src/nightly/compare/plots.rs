//! The overlaid SVG plots of `synod compare`: latency, throughput and
//! availability per second, one colour per run, each run's fault windows
//! shaded in its colour.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use synod_checker::html::escape;
use synod_checker::palette::RUNS;

use super::super::figures::{RunFigures, Second};

const W: u32 = 960;
const H: u32 = 300;

/// Draws overlaid per-second series, one line per run (two styles per run
/// when `series` yields two values), each run's fault windows shaded.
fn overlay(
    runs: &[RunFigures],
    title: &str,
    y_label: &str,
    y_max: f64,
    log_y: bool,
    series: &dyn Fn(&Second) -> [Option<f64>; 2],
) -> String {
    let x_max = runs
        .iter()
        .flat_map(|r| r.series.iter().map(|s| s.t + 1.0))
        .fold(1.0, f64::max);
    let mut svg = String::new();
    let result: Result<(), String> = (|| {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let y_max = y_max.max(1e-3);
        if log_y {
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..x_max, (0.01..y_max).log_scale())
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc(y_label)
                .draw()
                .map_err(|e| e.to_string())?;
            draw_runs(&mut chart, runs, x_max, 0.01, y_max, series)?;
        } else {
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc(y_label)
                .draw()
                .map_err(|e| e.to_string())?;
            draw_runs(&mut chart, runs, x_max, 0.0, y_max, series)?;
        }
        root.present().map_err(|e| e.to_string())
    })();
    svg_or_reason(svg, result)
}

/// A drawn picture, or where drawing failed a picture that says why
/// (a comparison page is still worth reading without one of its plots).
pub(super) fn svg_or_reason(svg: String, drawn: Result<(), String>) -> String {
    match drawn {
        Ok(()) => svg,
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"40\"><text x=\"10\" y=\"25\">plot unavailable: {}</text></svg>",
            escape(&e)
        ),
    }
}

/// The body of [`overlay`], on a linear or a log y axis: each run's fault
/// windows shaded, its lines (the first value thin, the second bold and
/// labelled; values are clamped to `y_min`, the axis floor), the legend.
fn draw_runs<'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    runs: &[RunFigures],
    x_max: f64,
    y_min: f64,
    y_max: f64,
    series: &dyn Fn(&Second) -> [Option<f64>; 2],
) -> Result<(), String> {
    for (i, r) in runs.iter().enumerate() {
        let c = RUNS[i % RUNS.len()];
        for w in &r.windows {
            let b = w.stop.unwrap_or(x_max);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(w.start, y_min), (b.max(w.start), y_max)],
                    c.mix(0.08).filled(),
                )))
                .map_err(|e| e.to_string())?;
        }
        let line = |k: usize| -> Vec<(f64, f64)> {
            r.series
                .iter()
                .filter_map(|s| series(s)[k].map(|v| (s.t, v.max(y_min))))
                .collect()
        };
        let thin = line(0);
        if !thin.is_empty() {
            chart
                .draw_series(LineSeries::new(thin, c.mix(0.5).stroke_width(1)))
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(LineSeries::new(line(1), c.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(r.label())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

pub(super) fn latency_plot(runs: &[RunFigures]) -> String {
    let y_max = runs
        .iter()
        .flat_map(|r| r.series.iter().filter_map(|s| s.p99))
        .fold(1.0, f64::max)
        * 1.5;
    overlay(
        runs,
        "Latency per second: p99 (bold), p50 (thin), ms, log scale",
        "latency (ms)",
        y_max,
        true,
        &|s| [s.p50, s.p99],
    )
}

pub(super) fn throughput_plot(runs: &[RunFigures]) -> String {
    let y_max = runs
        .iter()
        .flat_map(|r| r.series.iter().map(|s| s.ok as f64))
        .fold(1.0, f64::max)
        * 1.1;
    overlay(
        runs,
        "Throughput (ok ops per second)",
        "ops/s",
        y_max,
        false,
        &|s| [None, Some(s.ok as f64)],
    )
}

pub(super) fn availability_plot(runs: &[RunFigures]) -> String {
    overlay(
        runs,
        "Availability (ok / completed, per second)",
        "availability",
        1.05,
        false,
        &|s| [None, s.availability],
    )
}
