//! The comparison as text: `compare.md` for a pull request and
//! `compare.html`, self-contained with the plots inline, each run linked
//! to its own report.

use std::fmt::Write as _;

use synod_checker::html::escape;
use synod_checker::palette::RUNS;

use super::super::figures::RunFigures;
use super::changes::{higher_is_worse, mark, rows, THRESHOLD};
use super::curve;

/// The comparison as Markdown: the throughput-latency points where the
/// runs differ in load, then the table, differences in bold.
pub fn markdown(runs: &[RunFigures]) -> String {
    let mut s = curve::curves(runs)
        .map(|c| curve::markdown(&c))
        .unwrap_or_default();
    s += "## Synod comparison\n\n";
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
    s += "\nPlots: ";
    if curve::curves(runs).is_some() {
        s += "`compare-throughput-latency.svg`, ";
    }
    s += "`compare-latency.svg`, `compare-throughput.svg`, `compare-availability.svg` (all in `compare.html`).\n";
    s
}

/// The name of the throughput-latency plot (`compare-NAME.svg`).
pub(super) const CURVE_PLOT: &str = "throughput-latency";

pub(super) fn html(
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
        let c = RUNS[i % RUNS.len()];
        let _ = write!(
            s,
            "<span style=\"background:rgb({},{},{})\"></span>{}",
            c.0,
            c.1,
            c.2,
            escape(&r.label())
        );
    }
    s += "</p>\n";
    let curve_svg = plots.iter().find(|(n, _)| *n == CURVE_PLOT);
    if let (Some(curves), Some((_, svg))) = (curve::curves(runs), curve_svg) {
        s += &curve::html(&curves, svg);
        s += "<h2>Runs side by side</h2>\n";
    }
    s += "<table>\n<tr><th></th>";
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
                    let worse = if higher_is_worse(&row.label) {
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
    for (name, svg) in plots.iter().filter(|(n, _)| *n != CURVE_PLOT) {
        let _ = writeln!(s, "<div id=\"plot-{name}\">{svg}</div>");
    }
    s += "</body></html>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::super::page;
    use super::*;

    fn run(name: &str, per_op: Option<f64>) -> RunFigures {
        let mut r = crate::nightly::figures::test_figures(name);
        r.peer_messages_per_op = per_op;
        r.peer_messages = per_op.map(|p| (p * 100.0) as u64);
        r
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

    #[test]
    fn down_time_is_compared_per_run_and_per_fault() {
        use crate::nightly::figures::FaultDowntime;
        let fault = |name: &str, worst: Option<f64>, never| FaultDowntime {
            fault: name.into(),
            windows: 2,
            worst_ms: worst,
            worst_elections: worst.map(|ms| ms / 300.0),
            never_resumed: never,
        };
        let mut a = run("a", Some(8.0));
        a.downtime = vec![
            fault("partition", Some(900.0), 0),
            fault("kill", Some(300.0), 0),
        ];
        let mut b = run("b", Some(8.0));
        b.downtime = vec![fault("partition", Some(150.0), 1)];
        let old = run("old", Some(8.0));
        let md = markdown(&[a, b, old]);
        let row = |label: &str| {
            md.lines()
                .find(|l| l.starts_with(&format!("| {label} |")))
                .unwrap_or_else(|| panic!("no {label} row:\n{md}"))
                .to_string()
        };
        assert_eq!(
            row("worst down-time"),
            "| worst down-time | 900 ms (3.00 et) | never (1) | - |"
        );
        assert_eq!(
            row("down-time partition"),
            "| down-time partition | 900 ms (3.00 et) | never (1) | - |"
        );
        assert_eq!(
            row("down-time kill"),
            "| down-time kill | 300 ms (1.00 et) | - | - |"
        );
    }
}
