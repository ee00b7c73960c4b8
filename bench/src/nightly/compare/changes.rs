//! What changed between runs, and whether it is beyond noise: the rows of
//! the side-by-side table, each cell with its change from the baseline
//! and the two tests (over [`THRESHOLD`], over twice the spread) that
//! mark it.

use super::super::figures::{fmt_opt, RunFigures};

/// The row of peer messages per client operation: more is worse, like
/// latency.
pub(super) const PEER_ROW: &str = "peer msgs/op";

/// The rows of CPU per client operation, the nodes' and the bench's own:
/// more is worse.
pub(super) const NODE_CPU_ROW: &str = "node CPU µs/op";
pub(super) const CLIENT_CPU_ROW: &str = "client CPU µs/op";

/// Whether a rise in the row's figure is a regression (latency, cost),
/// rather than an improvement (throughput, availability).
pub(super) fn higher_is_worse(label: &str) -> bool {
    label.ends_with(" ms") || [PEER_ROW, NODE_CPU_ROW, CLIENT_CPU_ROW].contains(&label)
}

/// The run's load in words: `closed, 16 clients` or `open, 2000 ops/s
/// (256 workers)`.
pub(super) fn load_of(r: &RunFigures) -> String {
    match (r.rate, r.concurrency) {
        (Some(rate), Some(c)) => format!("open, {rate:.0} ops/s ({c} workers)"),
        (Some(rate), None) => format!("open, {rate:.0} ops/s"),
        (None, Some(c)) => format!("closed, {c} clients"),
        (None, None) => "-".into(),
    }
}

/// A relative change smaller than this is never marked.
pub const THRESHOLD: f64 = 0.20;

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
pub(super) struct Row {
    pub(super) label: String,
    pub(super) cells: Vec<(String, Option<Change>)>,
}

pub(super) fn rows(runs: &[RunFigures]) -> Vec<Row> {
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
        text_row("seed", &|r| r.seed.to_string()),
        text_row("load", &load_of),
        text_row("operations", &|r| {
            r.operations
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into())
        }),
    ];
    out.push(Row {
        label: "ok ops/s".into(),
        cells: runs
            .iter()
            .map(|r| {
                let c = base.and_then(|b| {
                    change(
                        b.throughput?,
                        r.throughput?,
                        &ok_per_second(b),
                        &ok_per_second(r),
                    )
                });
                (fmt_opt(r.throughput, 1), c)
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
        label: "ok share %".into(),
        cells: runs
            .iter()
            .map(|r| (fmt_opt(r.ok_share.map(|a| a * 100.0), 2), None))
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
    // One figure per run each, no per-second spread: only the threshold
    // applies. Missing is `n/a` (an ssh or external cluster, an old run),
    // never 0.
    for (label, pick) in [
        (
            NODE_CPU_ROW,
            (|r: &RunFigures| r.node_cpu_us_per_op) as fn(&RunFigures) -> _,
        ),
        (CLIENT_CPU_ROW, |r: &RunFigures| r.client_cpu_us_per_op),
    ] {
        out.push(Row {
            label: label.into(),
            cells: runs
                .iter()
                .map(|r| {
                    let c = match (base.and_then(pick), pick(r)) {
                        (Some(b), Some(x)) => change(b, x, &[], &[]),
                        _ => None,
                    };
                    let text = pick(r)
                        .map(|m| format!("{m:.0}"))
                        .unwrap_or_else(|| "n/a".into());
                    (text, c)
                })
                .collect(),
        });
    }
    out.push(text_row(
        "recovery after heal",
        &|r| match (r.recovery, r.unrecovered) {
            (_, n) if n > 0 => format!("never ({n} heals)"),
            (Some(x), _) => format!("{x:.2} s"),
            (None, _) => "-".into(),
        },
    ));
    // Down-time: the worst window of the run, then of each fault.
    out.push(text_row("worst down-time", &|r| r.downtime_cell()));
    let mut faults: Vec<&str> = Vec::new();
    for r in runs {
        for d in &r.downtime {
            if !faults.contains(&d.fault.as_str()) {
                faults.push(&d.fault);
            }
        }
    }
    for fault in faults {
        out.push(text_row(&format!("down-time {fault}"), &|r| match r
            .downtime
            .iter()
            .find(|d| d.fault == fault)
        {
            None => "-".into(),
            Some(d) if d.never_resumed > 0 => format!("never ({})", d.never_resumed),
            Some(d) => match (d.worst_ms, d.worst_elections) {
                (Some(ms), Some(e)) => format!("{ms:.0} ms ({e:.2} et)"),
                (Some(ms), None) => format!("{ms:.0} ms"),
                (None, _) => "-".into(),
            },
        }));
    }
    out.push(text_row("explanation", &|r| {
        r.explanation
            .as_deref()
            .and_then(|e| e.lines().next())
            .unwrap_or("")
            .to_string()
    }));
    out
}

pub(super) fn mark(c: Option<Change>) -> String {
    match c {
        Some(c) if c.marked => format!(" ({:+.0}%)", c.relative * 100.0),
        _ => String::new(),
    }
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
}
