//! The throughput-latency curve of runs that differ only in load (the perf
//! suite's): p50 and p99 latency against the throughput the run achieved,
//! a line per configuration and loop, as consensus systems are compared in
//! the literature (Paxi's benchmark, for one). Where a curve bends up is
//! the configuration's knee: past it, more offered load buys latency, not
//! throughput.
//!
//! A run's configuration is its series name without its load
//! (`perf-synod-concurrency=16` and `perf-synod-rate=2000` are both
//! `perf-synod`, as `synod suite` names the runs of a load axis), and its
//! target; its loop is open when it ran at an offered `--rate`, closed
//! otherwise. The load itself is the number of clients of a closed loop,
//! the offered rate of an open one. The curve is drawn only where some
//! configuration ran at two loads or more: otherwise the runs differ in
//! something else, and there is no curve to draw.
//!
//! Each point's latency is the worst across operation kinds (as the
//! trends take it) of the ok ops, in an open loop from when each op was
//! due (`run.open_loop_latency`, so a backlog shows), in a closed loop from
//! its invocation; its throughput is the run's ok ops/s. Points of a line
//! are in the order of that throughput, not of the load asked for: past
//! the knee a higher load can achieve less.

use std::fmt::Write as _;

use plotters::prelude::*;
use synod_checker::html::escape;
use synod_checker::palette::RUNS;

use super::super::figures::{fmt_opt, RunFigures};

const W: u32 = 960;
const H: u32 = 380;

/// One run on the curve.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Point {
    /// The run's `name/stamp`, for people.
    pub run: String,
    pub concurrency: Option<u64>,
    pub rate: Option<f64>,
    /// ok ops/s achieved.
    pub throughput: f64,
    pub p50: f64,
    pub p99: f64,
    pub node_cpu_us: Option<f64>,
    pub client_cpu_us: Option<f64>,
}

impl Point {
    /// What was asked: `16 clients` or `2000 ops/s`.
    pub fn load(&self) -> String {
        match (self.rate, self.concurrency) {
            (Some(r), _) => format!("{r:.0} ops/s"),
            (None, Some(1)) => "1 client".into(),
            (None, Some(c)) => format!("{c} clients"),
            (None, None) => "-".into(),
        }
    }
}

/// One line: a configuration's runs of one loop, by achieved throughput.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Curve {
    /// The configuration as the legend and the table name it.
    pub config: String,
    /// The colour's index: one per configuration, shared by its loops.
    pub colour: usize,
    pub open: bool,
    pub points: Vec<Point>,
}

impl Curve {
    pub fn loop_name(&self) -> &'static str {
        if self.open {
            "open"
        } else {
            "closed"
        }
    }

    pub fn label(&self) -> String {
        format!("{} {} loop", self.config, self.loop_name())
    }
}

/// The run's series name without the load segments a suite adds.
fn configuration_of(name: &str) -> String {
    name.split('-')
        .filter(|seg| !(seg.starts_with("concurrency=") || seg.starts_with("rate=")))
        .collect::<Vec<_>>()
        .join("-")
}

/// The curves of `runs`, or `None` when no configuration ran at two
/// loads (or no run has the figures: a failed run is not a point).
pub(super) fn curves(runs: &[RunFigures]) -> Option<Vec<Curve>> {
    // (configuration, target) in first-seen order, and their points.
    let mut configs: Vec<(String, String)> = Vec::new();
    let mut lines: Vec<(usize, bool, Vec<Point>)> = Vec::new();
    for r in runs {
        let (Some(throughput), Some((p50, p99))) = (r.throughput, r.response_time()) else {
            continue;
        };
        let key = (configuration_of(&r.name), r.target.clone());
        let ci = match configs.iter().position(|c| *c == key) {
            Some(i) => i,
            None => {
                configs.push(key);
                configs.len() - 1
            }
        };
        let open = r.rate.is_some();
        let point = Point {
            run: r.label(),
            concurrency: r.concurrency,
            rate: r.rate,
            throughput,
            p50,
            p99,
            node_cpu_us: r.node_cpu_us_per_op,
            client_cpu_us: r.client_cpu_us_per_op,
        };
        match lines.iter_mut().find(|(c, o, _)| *c == ci && *o == open) {
            Some((_, _, points)) => points.push(point),
            None => lines.push((ci, open, vec![point])),
        }
    }
    let varies = (0..configs.len()).any(|ci| {
        let mut loads: Vec<(Option<u64>, Option<u64>)> = lines
            .iter()
            .filter(|(c, _, _)| *c == ci)
            .flat_map(|(_, _, ps)| ps.iter().map(|p| (p.concurrency, p.rate.map(f64::to_bits))))
            .collect();
        loads.sort();
        loads.dedup();
        loads.len() > 1
    });
    if !varies {
        return None;
    }
    let names = legend_names(&configs);
    let mut out: Vec<Curve> = lines
        .into_iter()
        .map(|(ci, open, mut points)| {
            points.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
            Curve {
                config: names[ci].clone(),
                colour: ci,
                open,
                points,
            }
        })
        .collect();
    // Closed before open within a configuration, configurations in the
    // order they came.
    out.sort_by_key(|c| (c.colour, c.open));
    Some(out)
}

/// Short names for the legend: a prefix every configuration shares (the
/// suite's, `perf-`) left out; the target added where two configurations
/// of one name ran on different targets.
fn legend_names(configs: &[(String, String)]) -> Vec<String> {
    let mut prefix = String::new();
    if configs.len() > 1 {
        let first = &configs[0].0;
        for (i, _) in first.match_indices('-') {
            let p = &first[..=i];
            if configs
                .iter()
                .all(|(c, _)| c.starts_with(p) && c.len() > p.len())
            {
                prefix = p.to_string();
            }
        }
    }
    configs
        .iter()
        .map(|(c, target)| {
            let short = c.strip_prefix(&prefix).unwrap_or(c).to_string();
            let clash = configs.iter().any(|(o, t)| o == c && t != target);
            if clash {
                format!("{short} ({target})")
            } else {
                short
            }
        })
        .collect()
}

/// The picture: p50 (left) and p99 (right) in ms on a log axis against
/// achieved ok ops/s; a colour per configuration, a solid line with dots
/// for the closed loop, a dashed one with triangles for the open loop.
pub(super) fn plot(curves: &[Curve]) -> String {
    let points = || curves.iter().flat_map(|c| c.points.iter());
    let x_max = points().map(|p| p.throughput).fold(1.0, f64::max) * 1.1;
    let y_min = points()
        .map(|p| p.p50.min(p.p99))
        .fold(f64::INFINITY, f64::min)
        .clamp(0.01, 1e6)
        * 0.7;
    // A decade of headroom on the log axis keeps the legend off the points.
    let y_max = points().map(|p| p.p99.max(p.p50)).fold(y_min, f64::max) * 10.0;
    let mut svg = String::new();
    let result: Result<(), String> = (|| {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(W / 2);
        for (area, q, pick) in [
            (&left, "p50", (|p: &Point| p.p50) as fn(&Point) -> f64),
            (&right, "p99", |p: &Point| p.p99),
        ] {
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("{q} latency against achieved throughput"),
                    ("sans-serif", 15),
                )
                .margin(8)
                .x_label_area_size(32)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("ok ops/s achieved")
                .y_desc(format!("{q} ms (log scale)"))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| {
                    if *y >= 1.0 {
                        format!("{y:.0}")
                    } else {
                        format!("{y}")
                    }
                })
                .draw()
                .map_err(|e| e.to_string())?;
            for c in curves {
                let colour = RUNS[c.colour % RUNS.len()];
                let xy: Vec<(f64, f64)> = c
                    .points
                    .iter()
                    .map(|p| (p.throughput, pick(p).max(y_min)))
                    .collect();
                let label = c.label();
                if c.open {
                    chart
                        .draw_series(DashedLineSeries::new(
                            xy.clone(),
                            6,
                            4,
                            colour.stroke_width(2),
                        ))
                        .map_err(|e| e.to_string())?
                        .label(label)
                        .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 5, colour.filled()));
                    chart
                        .draw_series(
                            xy.iter()
                                .map(|&p| TriangleMarker::new(p, 5, colour.filled())),
                        )
                        .map_err(|e| e.to_string())?;
                } else {
                    chart
                        .draw_series(LineSeries::new(xy.clone(), colour.stroke_width(2)))
                        .map_err(|e| e.to_string())?
                        .label(label)
                        .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
                    chart
                        .draw_series(xy.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                        .map_err(|e| e.to_string())?;
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())
    })();
    super::plots::svg_or_reason(svg, result)
}

/// The cells of one table row: configuration, loop, load, ok ops/s, p50,
/// p99, node and client CPU per op (`n/a` where not measured).
fn cells(c: &Curve, p: &Point) -> [String; 8] {
    let cpu = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
    [
        c.config.clone(),
        c.loop_name().to_string(),
        p.load(),
        format!("{:.0}", p.throughput),
        fmt_opt(Some(p.p50), 2),
        fmt_opt(Some(p.p99), 2),
        cpu(p.node_cpu_us),
        cpu(p.client_cpu_us),
    ]
}

const HEADER: [&str; 8] = [
    "configuration",
    "loop",
    "clients / rate",
    "ok ops/s",
    "p50 ms",
    "p99 ms",
    "node CPU µs/op",
    "client CPU µs/op",
];

/// The table of points for `compare.md`; empty without a curve.
pub(super) fn markdown(curves: &[Curve]) -> String {
    let mut s = String::from("## Throughput and latency\n\n");
    s += "p50 and p99 (the worst across operation kinds) against the ok ops/s each run \
          achieved; closed loop: a number of clients, each waiting for its answer; open \
          loop: an offered rate, latency counted from when each op was due. \
          `compare-throughput-latency.svg` draws it.\n\n";
    let _ = writeln!(s, "| {} |", HEADER.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(HEADER.len()));
    for c in curves {
        for p in &c.points {
            let _ = writeln!(s, "| {} |", cells(c, p).join(" | "));
        }
    }
    s += "\n";
    s
}

/// The picture and the table for `compare.html`.
pub(super) fn html(curves: &[Curve], svg: &str) -> String {
    let mut s = String::from("<h2>Throughput and latency</h2>\n");
    s += "<p>p50 and p99 (the worst across operation kinds) against the ok ops/s each run \
          achieved. Solid lines and dots: closed loop (a number of clients, each waiting for \
          its answer); dashed lines and triangles: open loop (an offered rate, latency \
          counted from when each op was due).</p>\n";
    let _ = writeln!(s, "<div id=\"plot-throughput-latency\">{svg}</div>");
    s += "<table>\n<tr>";
    for h in HEADER {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s += "</tr>\n";
    for c in curves {
        for p in &c.points {
            let row = cells(c, p);
            let _ = write!(
                s,
                "<tr title=\"{}\"><td class=\"l\">{}</td>",
                escape(&p.run),
                escape(&row[0])
            );
            for cell in &row[1..] {
                let _ = write!(s, "<td>{}</td>", escape(cell));
            }
            s += "</tr>\n";
        }
    }
    s += "</table>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nightly::figures::{test_figures, OpLatency};

    fn run(name: &str, target: &str, load: (u64, Option<f64>), ops: f64, ms: f64) -> RunFigures {
        let mut r = test_figures(name);
        r.target = target.into();
        r.concurrency = Some(load.0);
        r.rate = load.1;
        r.throughput = Some(ops);
        r.node_cpu_us_per_op = Some(400.0);
        r.client_cpu_us_per_op = Some(90.0);
        r.latency = vec![
            OpLatency {
                f: "read".into(),
                count: 10,
                p50: ms,
                p99: ms * 3.0,
            },
            // The worst kind is the point's latency.
            OpLatency {
                f: "write".into(),
                count: 10,
                p50: ms * 1.5,
                p99: ms * 4.0,
            },
        ];
        r
    }

    fn suite() -> Vec<RunFigures> {
        vec![
            run(
                "perf-synod-concurrency=64",
                "synod",
                (64, None),
                4000.0,
                12.0,
            ),
            run("perf-synod-concurrency=1", "synod", (1, None), 600.0, 1.5),
            run(
                "perf-synod-concurrency=16",
                "synod",
                (16, None),
                3000.0,
                5.0,
            ),
            run("perf-etcd-concurrency=1", "etcd", (1, None), 300.0, 3.0),
            run("perf-etcd-concurrency=64", "etcd", (64, None), 2000.0, 30.0),
            // Past the knee an open loop achieves less than it was offered,
            // and a higher offer can achieve less than a lower one.
            run(
                "perf-synod-rate=8000",
                "synod",
                (256, Some(8000.0)),
                3900.0,
                200.0,
            ),
            run(
                "perf-synod-rate=1000",
                "synod",
                (256, Some(1000.0)),
                1000.0,
                2.0,
            ),
            run(
                "perf-synod-rate=16000",
                "synod",
                (256, Some(16000.0)),
                3700.0,
                400.0,
            ),
            run(
                "perf-etcd-rate=1000",
                "etcd",
                (256, Some(1000.0)),
                990.0,
                4.0,
            ),
        ]
    }

    #[test]
    fn points_are_grouped_by_configuration_and_loop_and_ordered_by_throughput() {
        let curves = super::curves(&suite()).expect("the runs differ in load");
        let shape: Vec<(String, bool, Vec<f64>)> = curves
            .iter()
            .map(|c| {
                let xs = c.points.iter().map(|p| p.throughput).collect();
                (c.config.clone(), c.open, xs)
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("synod".to_string(), false, vec![600.0, 3000.0, 4000.0]),
                ("synod".to_string(), true, vec![1000.0, 3700.0, 3900.0]),
                ("etcd".to_string(), false, vec![300.0, 2000.0]),
                ("etcd".to_string(), true, vec![990.0]),
            ]
        );
        // The worst kind's latency: write's p50 and p99.
        let p = &curves[0].points[0];
        assert_eq!((p.p50, p.p99), (2.25, 6.0));
        // An open loop's point waits from the due time where measured.
        let mut runs = suite();
        runs[7].open_loop_latency = vec![OpLatency {
            f: "read".into(),
            count: 10,
            p50: 4000.0,
            p99: 9000.0,
        }];
        let curves = super::curves(&runs).unwrap();
        let p = &curves[1].points[1];
        assert_eq!((p.rate, p.p50, p.p99), (Some(16000.0), 4000.0, 9000.0));
        assert_eq!(curves[1].points[2].load(), "8000 ops/s");
        assert_eq!(curves[0].points[0].load(), "1 client");
        // One colour per configuration, shared by its two loops.
        assert_eq!(curves[0].colour, curves[1].colour);
        assert_ne!(curves[0].colour, curves[2].colour);
    }

    #[test]
    fn the_picture_has_a_line_per_configuration_and_loop_and_the_table_every_point() {
        let curves = curves(&suite()).unwrap();
        let svg = plot(&curves);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(!svg.contains("plot unavailable"), "{svg}");
        for label in [
            "synod closed loop",
            "synod open loop",
            "etcd closed loop",
            "etcd open loop",
        ] {
            // Once per panel.
            assert_eq!(svg.matches(label).count(), 2, "{label}");
        }
        let md = markdown(&curves);
        assert!(
            md.contains("| synod | closed | 64 clients | 4000 | 18.00 | 48.00 | 400 | 90 |"),
            "{md}"
        );
        assert!(
            md.contains("| synod | open | 16000 ops/s | 3700 | 600.00 | 1600.00 | 400 | 90 |"),
            "{md}"
        );
        assert_eq!(md.matches("\n| synod |").count(), 6, "{md}");
        assert_eq!(md.matches("\n| etcd |").count(), 3, "{md}");
    }

    #[test]
    fn runs_at_one_load_draw_no_curve_and_failed_runs_are_no_point() {
        // A fault matrix at one load: nothing changes along a curve.
        let runs = [
            run("nightly-log-kill", "synod", (10, None), 900.0, 5.0),
            run("nightly-log-partition", "synod", (10, None), 800.0, 6.0),
        ];
        assert_eq!(curves(&runs), None);
        // Two loads, but one run failed: no figures, no point, no curve.
        let mut failed = run("p-concurrency=16", "synod", (16, None), 0.0, 1.0);
        failed.throughput = None;
        let runs = [
            run("p-concurrency=1", "synod", (1, None), 500.0, 1.0),
            failed,
        ];
        assert_eq!(curves(&runs), None);
    }

    #[test]
    fn the_same_name_on_two_targets_is_two_configurations() {
        let runs = [
            run("default", "synod", (1, None), 500.0, 1.0),
            run("default", "synod", (16, None), 2500.0, 5.0),
            run("default", "etcd", (16, None), 1500.0, 9.0),
        ];
        let curves = curves(&runs).unwrap();
        let names: Vec<&str> = curves.iter().map(|c| c.config.as_str()).collect();
        assert_eq!(names, ["default (synod)", "default (etcd)"]);
        assert_eq!(
            configuration_of("perf-etcd-open-rate=500.5"),
            "perf-etcd-open"
        );
    }
}
