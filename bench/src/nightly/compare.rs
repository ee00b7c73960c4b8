//! `synod compare RUN...`: runs side by side.
//!
//! The same figures per run in one table, overlaid plots (latency
//! quantiles, throughput and availability over time, each run's fault
//! windows shaded in its colour), and every difference from the first run
//! (the baseline) that is beyond noise marked. "Beyond noise" is two
//! tests at once: the change is over [`THRESHOLD`] of the baseline, and it
//! is more than twice the spread the two runs show second by second
//! (the standard error of the difference of their per-second means). A
//! 25% swing in a run whose throughput already swings 40% from one
//! second to the next is not a finding. Peer messages per op is one
//! figure per run with no per-second spread, so only the threshold
//! applies to it; runs without it (etcd) show `n/a`.
//!
//! Written into the output directory: `compare.html` (self-contained,
//! plots inline), `compare.md` (for a pull request) and the plots as
//! `compare-*.svg`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::figures::{self, escape, fmt_opt, RunFigures, Second};

/// Arguments of `synod compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Run directories (store/NAME/TIMESTAMP), or series directories
    /// (store/NAME: every run in it); the first run is the baseline.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Where to write compare.html, compare.md and the plots.
    #[arg(long, default_value = "compare")]
    pub out: PathBuf,
}

/// The row of peer messages per client operation: more is worse, like
/// latency.
const PEER_ROW: &str = "peer msgs/op";

/// A relative change smaller than this is never marked.
pub const THRESHOLD: f64 = 0.20;

const W: u32 = 960;
const H: u32 = 300;
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(240, 228, 66),
];

/// Runs `synod compare`.
pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let mut runs = Vec::new();
    for path in &args.runs {
        if path.join("config.json").is_file() {
            runs.push(figures::read_run(path)?);
        } else {
            let mut series: Vec<RunFigures> = std::fs::read_dir(path)
                .with_context(|| format!("{} is neither a run nor a series", path.display()))?
                .flatten()
                .filter(|e| e.path().join("config.json").is_file())
                .filter_map(|e| figures::read_run(&e.path()).ok())
                .collect();
            anyhow::ensure!(!series.is_empty(), "{}: no runs in it", path.display());
            series.sort_by(|a, b| a.stamp.cmp(&b.stamp));
            runs.extend(series);
        }
    }
    let files = write(&runs, &args.out)?;
    figures::out(&markdown(&runs));
    for f in files {
        figures::out(&format!("wrote {}\n", f.display()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the comparison of `runs` into `out`; returns the files written.
pub fn write(runs: &[RunFigures], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let plots = [
        ("latency", latency_plot(runs)),
        ("throughput", throughput_plot(runs)),
        ("availability", availability_plot(runs)),
    ];
    let mut files = Vec::new();
    for (name, svg) in &plots {
        let p = out.join(format!("compare-{name}.svg"));
        std::fs::write(&p, svg).with_context(|| format!("cannot write {}", p.display()))?;
        files.push(p);
    }
    let html_path = out.join("compare.html");
    let link = |r: &RunFigures| {
        let dir = r.dir.canonicalize().unwrap_or_else(|_| r.dir.clone());
        format!("file://{}", dir.join("report.html").display())
    };
    std::fs::write(&html_path, html(runs, &plots, &link))
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    let md_path = out.join("compare.md");
    std::fs::write(&md_path, markdown(runs))
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    files.insert(0, md_path);
    files.insert(0, html_path);
    Ok(files)
}

/// The comparison as one self-contained page; `link` gives each run's
/// report URL.
pub fn page(runs: &[RunFigures], link: &dyn Fn(&RunFigures) -> String) -> String {
    let plots = [
        ("latency", latency_plot(runs)),
        ("throughput", throughput_plot(runs)),
        ("availability", availability_plot(runs)),
    ];
    html(runs, &plots, link)
}

/// Mean and standard error of the mean.
fn mean_se(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((mean, (var / n).sqrt()))
}

/// A change from the baseline that is beyond noise: its sign and size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    pub relative: f64,
    pub marked: bool,
}

/// Compares a figure of a run with the baseline's; `spread_*` are the
/// per-second samples that say how much each run wobbles on its own.
pub fn change(base: f64, value: f64, spread_base: &[f64], spread_value: &[f64]) -> Option<Change> {
    if !(base.is_finite() && value.is_finite()) || base == 0.0 {
        return None;
    }
    let relative = (value - base) / base;
    let noise = match (mean_se(spread_base), mean_se(spread_value)) {
        (Some((_, a)), Some((_, b))) => 2.0 * (a * a + b * b).sqrt(),
        _ => 0.0,
    };
    Some(Change {
        relative,
        marked: relative.abs() > THRESHOLD && (value - base).abs() > noise,
    })
}

fn ok_per_second(r: &RunFigures) -> Vec<f64> {
    r.series.iter().map(|s| s.ok as f64).collect()
}

fn p99_per_second(r: &RunFigures) -> Vec<f64> {
    r.series.iter().filter_map(|s| s.p99).collect()
}

/// One row of the side-by-side table: a label and a cell per run, with
/// its change from the baseline.
struct Row {
    label: String,
    cells: Vec<(String, Option<Change>)>,
}

fn rows(runs: &[RunFigures]) -> Vec<Row> {
    let mut ops: Vec<String> = Vec::new();
    for r in runs {
        for l in &r.latency {
            if !ops.contains(&l.f) {
                ops.push(l.f.clone());
            }
        }
    }
    let base = runs.first();
    let text_row = |label: &str, f: &dyn Fn(&RunFigures) -> String| Row {
        label: label.to_string(),
        cells: runs.iter().map(|r| (f(r), None)).collect(),
    };
    let mut out = vec![
        text_row("verdict", &|r| r.verdict.clone()),
        text_row("target", &|r| format!("{} x{}", r.target, r.nodes)),
        text_row("settings", &|r| r.settings.clone()),
        text_row("seed", &|r| {
            r.seed.map(|s| s.to_string()).unwrap_or_default()
        }),
        text_row("operations", &|r| r.operations.to_string()),
    ];
    out.push(Row {
        label: "ok ops/s".into(),
        cells: runs
            .iter()
            .map(|r| {
                let c = base.and_then(|b| {
                    change(
                        b.throughput,
                        r.throughput,
                        &ok_per_second(b),
                        &ok_per_second(r),
                    )
                });
                (format!("{:.1}", r.throughput), c)
            })
            .collect(),
    });
    for op in &ops {
        for (q, pick) in [("p50", 0usize), ("p99", 1)] {
            out.push(Row {
                label: format!("{op} {q} ms"),
                cells: runs
                    .iter()
                    .map(|r| {
                        let v = |r: &RunFigures| {
                            r.latency.iter().find(|l| &l.f == op).map(|l| {
                                if pick == 0 {
                                    l.p50
                                } else {
                                    l.p99
                                }
                            })
                        };
                        let c = match (base.and_then(v), v(r)) {
                            (Some(b), Some(x)) if pick == 1 => {
                                change(b, x, &p99_per_second(base.unwrap_or(r)), &p99_per_second(r))
                            }
                            (Some(b), Some(x)) => change(b, x, &[], &[]),
                            _ => None,
                        };
                        (fmt_opt(v(r), 2), c)
                    })
                    .collect(),
            });
        }
    }
    out.push(Row {
        label: "availability %".into(),
        cells: runs
            .iter()
            .map(|r| {
                let per_s: Vec<f64> = r.series.iter().filter_map(|s| s.availability).collect();
                let c = match (base.and_then(|b| b.availability), r.availability) {
                    (Some(b), Some(x)) => base.and_then(|br| {
                        let bs: Vec<f64> =
                            br.series.iter().filter_map(|s| s.availability).collect();
                        change(b, x, &bs, &per_s)
                    }),
                    _ => None,
                };
                (fmt_opt(r.availability.map(|a| a * 100.0), 2), c)
            })
            .collect(),
    });
    out.push(Row {
        label: PEER_ROW.into(),
        cells: runs
            .iter()
            .map(|r| {
                // One figure per run, no per-second spread: only the
                // threshold applies.
                let c = match (
                    base.and_then(|b| b.peer_messages_per_op),
                    r.peer_messages_per_op,
                ) {
                    (Some(b), Some(x)) => change(b, x, &[], &[]),
                    _ => None,
                };
                let text = r
                    .peer_messages_per_op
                    .map(|m| format!("{m:.2}"))
                    .unwrap_or_else(|| "n/a".into());
                (text, c)
            })
            .collect(),
    });
    out.push(text_row(
        "recovery after heal",
        &|r| match (r.recovery, r.unrecovered) {
            (_, n) if n > 0 => format!("never ({n} heals)"),
            (Some(x), _) => format!("{x:.2} s"),
            (None, _) => "-".into(),
        },
    ));
    out.push(text_row("explanation", &|r| {
        r.explanation
            .as_deref()
            .and_then(|e| e.lines().next())
            .unwrap_or("")
            .to_string()
    }));
    out
}

fn mark(c: Option<Change>) -> String {
    match c {
        Some(c) if c.marked => format!(" ({:+.0}%)", c.relative * 100.0),
        _ => String::new(),
    }
}

/// The comparison as Markdown: the table, differences in bold.
pub fn markdown(runs: &[RunFigures]) -> String {
    let mut s = String::from("## Synod comparison\n\n");
    let _ = writeln!(
        s,
        "Baseline: `{}`. **Bold**: a change over {:.0}% and beyond the runs' second-to-second spread.\n",
        runs.first().map(|r| r.label()).unwrap_or_default(),
        THRESHOLD * 100.0
    );
    let md = |t: &str| t.replace('|', "\\|").replace('\n', " ");
    s += "| |";
    for r in runs {
        let _ = write!(s, " `{}` |", md(&r.label()));
    }
    s += "\n|---|";
    for _ in runs {
        s += "---|";
    }
    s += "\n";
    for row in rows(runs) {
        let _ = write!(s, "| {} |", md(&row.label));
        for (text, c) in &row.cells {
            match c {
                Some(ch) if ch.marked => {
                    let _ = write!(s, " **{}{}** |", md(text), mark(*c));
                }
                _ => {
                    let _ = write!(s, " {} |", md(text));
                }
            }
        }
        s += "\n";
    }
    s += "\nPlots: `compare-latency.svg`, `compare-throughput.svg`, `compare-availability.svg` (all in `compare.html`).\n";
    s
}

fn html(
    runs: &[RunFigures],
    plots: &[(&str, String)],
    link: &dyn Fn(&RunFigures) -> String,
) -> String {
    let mut s = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Synod comparison</title>\n<style>\n\
         body{font-family:sans-serif;margin:1.5em;color:#222}\n\
         table{border-collapse:collapse;margin-bottom:1.5em}\n\
         td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;font-size:14px}\n\
         th{background:#f4f4f4} td.l{text-align:left;font-weight:bold}\n\
         td.up{background:#fde2e2} td.down{background:#e2f5e8}\n\
         .valid{color:#070}.invalid{color:#b00;font-weight:bold}.unknown{color:#b60}.error{color:#b00}\n\
         .key span{display:inline-block;width:1em;height:.6em;margin:0 .3em 0 1em}\n\
         </style></head><body>\n<h1>Synod comparison</h1>\n",
    );
    let _ = writeln!(
        s,
        "<p>Baseline: <code>{}</code>. A shaded cell changed by over {:.0}% and beyond the runs' second-to-second spread.</p>",
        escape(&runs.first().map(|r| r.label()).unwrap_or_default()),
        THRESHOLD * 100.0
    );
    s += "<p class=\"key\">";
    for (i, r) in runs.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let _ = write!(
            s,
            "<span style=\"background:rgb({},{},{})\"></span>{}",
            c.0,
            c.1,
            c.2,
            escape(&r.label())
        );
    }
    s += "</p>\n<table>\n<tr><th></th>";
    for r in runs {
        let _ = write!(
            s,
            "<th><a href=\"{}\">{}</a></th>",
            escape(&link(r)),
            escape(&r.label())
        );
    }
    s += "</tr>\n";
    for row in rows(runs) {
        let _ = write!(s, "<tr><td class=\"l\">{}</td>", escape(&row.label));
        for (text, c) in &row.cells {
            let class = match c {
                // Higher is worse for latency, better for the rest.
                Some(ch) if ch.marked => {
                    let worse = if row.label.ends_with(" ms") || row.label == PEER_ROW {
                        ch.relative > 0.0
                    } else {
                        ch.relative < 0.0
                    };
                    if worse {
                        " class=\"up\""
                    } else {
                        " class=\"down\""
                    }
                }
                _ if row.label == "verdict" => "",
                _ => "",
            };
            let body = if row.label == "verdict" {
                format!("<span class=\"{0}\">{0}</span>", escape(text))
            } else {
                escape(&format!("{text}{}", mark(*c)))
            };
            let _ = write!(s, "<td{class}>{body}</td>");
        }
        s += "</tr>\n";
    }
    s += "</table>\n";
    for (name, svg) in plots {
        let _ = writeln!(s, "<div id=\"plot-{name}\">{svg}</div>");
    }
    s += "</body></html>\n";
    s
}

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
    match result {
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
        let c = COLOURS[i % COLOURS.len()];
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

fn latency_plot(runs: &[RunFigures]) -> String {
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

fn throughput_plot(runs: &[RunFigures]) -> String {
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

fn availability_plot(runs: &[RunFigures]) -> String {
    overlay(
        runs,
        "Availability (ok / completed, per second)",
        "availability",
        1.05,
        false,
        &|s| [None, s.availability],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_inside_the_spread_is_not_marked() {
        // Steady runs: a 30% drop is a finding.
        let c = change(100.0, 70.0, &[100.0, 101.0, 99.0], &[70.0, 71.0, 69.0]).unwrap();
        assert!(c.marked);
        // The same drop in runs that swing wildly second to second is not.
        let c = change(100.0, 70.0, &[10.0, 190.0, 100.0], &[0.0, 140.0, 70.0]).unwrap();
        assert!(!c.marked);
        // Small changes never are.
        let c = change(100.0, 110.0, &[100.0; 5], &[110.0; 5]).unwrap();
        assert!(!c.marked);
    }

    fn run(name: &str, per_op: Option<f64>) -> RunFigures {
        RunFigures {
            dir: PathBuf::from(name),
            name: name.into(),
            stamp: "20260101T000000Z".into(),
            verdict: "valid".into(),
            explanation: None,
            target: "synod".into(),
            nodes: 3,
            settings: String::new(),
            seed: Some(1),
            operations: 100,
            ok: 100,
            seconds: 10.0,
            throughput: 10.0,
            latency: vec![],
            availability: Some(1.0),
            recovery: None,
            unrecovered: 0,
            peer_messages_per_op: per_op,
            peer_messages: per_op.map(|p| (p * 100.0) as u64),
            series: vec![],
            windows: vec![],
        }
    }

    #[test]
    fn peer_messages_per_op_is_compared_and_missing_is_not_zero() {
        let runs = [
            run("leader", Some(8.0)),
            run("all", Some(12.0)),
            run("same", Some(8.4)),
            run("etcd", None),
        ];
        let md = markdown(&runs);
        let line = md
            .lines()
            .find(|l| l.starts_with("| peer msgs/op |"))
            .unwrap_or_else(|| panic!("no peer row:\n{md}"));
        assert_eq!(
            line,
            "| peer msgs/op | 8.00 | **12.00 (+50%)** | 8.40 | n/a |"
        );
        // More messages is worse: the cell is shaded as a regression.
        let html = page(&runs, &|r| r.name.clone());
        assert!(
            html.contains("<td class=\"up\">12.00 (+50%)</td>"),
            "{html}"
        );
    }
}
