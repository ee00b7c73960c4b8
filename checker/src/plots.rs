//! SVG plots of a [`Report`], drawn with plotters' SVG backend.
//!
//! Each plot shares the same time axis (seconds since the run started) and
//! shades the nemesis' fault windows with their names, so a reader sees at
//! a glance what a fault did to latency, throughput and availability. A
//! plot that cannot be drawn yields a short SVG saying so rather than
//! failing the report.

use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::history::EventType;
use crate::palette::{FAIL, FAULT_WINDOWS, INFO, OK};
use crate::report::{FaultWindow, Report, Second};

const W: u32 = 960;
const H: u32 = 320;

fn secs(r: &Report, t: u64) -> f64 {
    t.saturating_sub(r.start) as f64 / 1e9
}

fn x_max(r: &Report) -> f64 {
    secs(r, r.end).max(1e-3)
}

fn failed(msg: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"40\"><text x=\"10\" y=\"25\">plot unavailable: {}</text></svg>",
        crate::html::escape(msg)
    )
}

/// Draws into an SVG string, turning any plotting error into a note.
fn draw<F>(f: F) -> String
where
    F: FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
{
    let mut svg = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|_| f(&root))
            .and_then(|_| root.present().map_err(|e| e.to_string()))
    };
    match result {
        Ok(()) => svg,
        Err(e) => failed(&e),
    }
}

/// Shades and labels the fault windows over the plotting area.
fn shade<Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    r: &Report,
    faults: &[FaultWindow],
    y0: f64,
    y1: f64,
) -> Result<(), String> {
    let mut names: Vec<&str> = Vec::new();
    for w in faults {
        let i = match names.iter().position(|n| *n == w.name) {
            Some(i) => i,
            None => {
                names.push(&w.name);
                names.len() - 1
            }
        };
        let colour = FAULT_WINDOWS[i % FAULT_WINDOWS.len()];
        let a = secs(r, w.start);
        let b = secs(r, w.stop.unwrap_or(r.end));
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y0), (b.max(a), y1)],
                colour.mix(0.25).filled(),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(
                w.name.clone(),
                (a, y1),
                ("sans-serif", 12).into_font().color(&colour.mix(0.9)),
            )))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Latency of every op (sampled) over time, log scale, coloured by outcome.
pub fn latency_scatter(r: &Report) -> String {
    // The report keeps an even sample of the ops (`Report::samples`).
    let points: Vec<(f64, f64, EventType)> = r
        .samples
        .iter()
        .map(|o| {
            let lat = o.latency as f64 / 1e6;
            (secs(r, o.complete), lat.max(1e-3), o.outcome)
        })
        .collect();
    let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.5;
    let y_min = points.iter().map(|p| p.1).fold(y_max, f64::min).max(1e-3) / 1.5;
    draw(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Latency of each operation", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max(r), (y_min..y_max).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("latency (ms)")
            .draw()
            .map_err(|e| e.to_string())?;
        shade(&mut chart, r, &r.faults, y_min, y_max)?;
        for (kind, colour, label) in [
            (EventType::Ok, OK, "ok"),
            (EventType::Fail, FAIL, "fail"),
            (EventType::Info, INFO, "info"),
        ] {
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.2 == kind)
                        .map(|p| Circle::new((p.0, p.1), 2, colour.mix(0.6).filled())),
                )
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 8, y), 3, colour.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// A line to draw: its label, colour, and the value it takes each second.
type Series<'a> = (&'a str, RGBColor, &'a dyn Fn(&Second) -> Option<f64>);

/// Lines per second (one series per accessor), with shading.
fn lines(r: &Report, title: &str, y_desc: &str, y_max: f64, series: &[Series<'_>]) -> String {
    draw(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max(r).max(1.0), 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc(y_desc)
            .draw()
            .map_err(|e| e.to_string())?;
        shade(&mut chart, r, &r.faults, 0.0, y_max)?;
        for &(label, colour, get) in series {
            chart
                .draw_series(LineSeries::new(
                    r.seconds
                        .iter()
                        .filter_map(|s| get(s).map(|v| (s.t as f64 + 0.5, v))),
                    colour.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// p50, p99 and max latency of the ops completing in each second.
pub fn latency_quantiles(r: &Report) -> String {
    let y_max = r.seconds.iter().filter_map(|s| s.max).fold(1.0, f64::max) * 1.1;
    lines(
        r,
        "Latency quantiles per second",
        "latency (ms)",
        y_max,
        &[
            ("p50", OK, &|s| s.p50),
            ("p99", INFO, &|s| s.p99),
            ("max", FAIL, &|s| s.max),
        ],
    )
}

/// Completions per second by outcome.
pub fn throughput(r: &Report) -> String {
    let y_max = r
        .seconds
        .iter()
        .map(|s| s.ok.max(s.fail).max(s.info))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    lines(
        r,
        "Throughput (completions per second)",
        "ops/s",
        y_max,
        &[
            ("ok", OK, &|s| Some(s.ok as f64)),
            ("fail", FAIL, &|s| Some(s.fail as f64)),
            ("info", INFO, &|s| Some(s.info as f64)),
        ],
    )
}

/// Share of completions the system answered, and the plain ok share, per
/// second.
pub fn availability(r: &Report) -> String {
    lines(
        r,
        "Availability (answered: ok or cas mismatch) and ok share",
        "share of completed",
        1.05,
        &[
            ("availability", OK, &|s| s.availability),
            ("ok share", INFO, &|s| s.ok_share),
        ],
    )
}

/// A value each second, owned.
type PerSecond = Box<dyn Fn(&Second) -> Option<f64>>;

/// ok completions per second by operation type.
pub fn throughput_by_type(r: &Report) -> String {
    let fs: Vec<&str> = r.by_type.iter().map(|t| t.f.as_str()).collect();
    let y_max = r
        .by_type
        .iter()
        .map(|t| t.peak_per_second)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let getters: Vec<PerSecond> = fs
        .iter()
        .map(|&f| {
            let f = f.to_string();
            Box::new(move |s: &Second| Some(s.ok_by_f.get(&f).copied().unwrap_or(0) as f64))
                as PerSecond
        })
        .collect();
    let series: Vec<Series<'_>> = fs
        .iter()
        .zip(&getters)
        .enumerate()
        .map(|(i, (&f, g))| {
            (
                f,
                crate::palette::RUNS[i % crate::palette::RUNS.len()],
                g.as_ref(),
            )
        })
        .collect();
    lines(
        r,
        "Throughput by operation (ok per second)",
        "ok/s",
        y_max,
        &series,
    )
}
