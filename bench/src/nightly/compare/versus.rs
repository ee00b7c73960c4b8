//! The picture of a suite that crosses configurations with faults (the
//! versus suite): for each fault, a bar per configuration, showing how
//! much of what the clients asked during the fault windows succeeded, and
//! how long the service was down in them.
//!
//! A run's fault is its `--nemesis` value; its configuration is its series
//! name without the fault (`versus-paxos-3-kill-leader` is `versus-paxos-3`
//! under `kill:leader`), as `synod suite` names runs. Availability here is
//! pooled over the run's fault windows (ok completions and cas mismatches
//! over completions inside them), not over the whole run, whose quiet
//! stretches would hide a protocol that blocks.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use synod_checker::html::escape;
use synod_checker::palette::RUNS;

use super::super::figures::RunFigures;

/// One bar: a configuration under a fault.
struct Bar {
    config: String,
    fault: String,
    /// (ok + cas mismatches) / completed inside the fault windows.
    availability: Option<f64>,
    /// The worst down-time of the windows (ms), and in election timeouts.
    downtime_ms: Option<f64>,
    downtime_elections: Option<f64>,
    /// Some window saw no ok after its start before the run ended.
    never: bool,
}

fn fault_of(r: &RunFigures) -> String {
    r.settings
        .split_whitespace()
        .find_map(|w| w.strip_prefix("faults="))
        .unwrap_or("none")
        .to_string()
}

/// The run's configuration: its series name without the fault's suffix.
fn config_of(r: &RunFigures, fault: &str) -> String {
    let suffix: String = fault
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    r.name
        .strip_suffix(&format!("-{suffix}"))
        .unwrap_or(&r.name)
        .to_string()
}

fn bars(runs: &[RunFigures]) -> Vec<Bar> {
    runs.iter()
        .map(|r| {
            let fault = fault_of(r);
            let (answered, completed) = r
                .windows
                .iter()
                .fold((0, 0), |(a, c), w| (a + w.ok + w.mismatch, c + w.completed));
            let worst = r.worst_downtime();
            Bar {
                config: config_of(r, &fault),
                fault,
                availability: (completed > 0).then(|| answered as f64 / completed as f64),
                downtime_ms: worst.map(|(ms, _)| ms),
                downtime_elections: worst.and_then(|(_, e)| e),
                never: r.never_resumed() > 0,
            }
        })
        .collect()
}

/// The two pictures (availability in the fault windows, worst down-time),
/// when the runs cross at least two configurations or two faults, each
/// with fault windows; `None` otherwise.
pub fn by_fault(runs: &[RunFigures]) -> Option<[(&'static str, String); 2]> {
    let bars: Vec<Bar> = bars(runs)
        .into_iter()
        .filter(|b| b.fault != "none")
        .collect();
    let faults: Vec<String> = unique(bars.iter().map(|b| b.fault.clone()));
    let configs: Vec<String> = unique(bars.iter().map(|b| b.config.clone()));
    if bars.is_empty() || (faults.len() < 2 && configs.len() < 2) {
        return None;
    }
    let availability = chart(
        "availability during the fault windows (%: ok or cas mismatch, of completed)",
        &faults,
        &configs,
        &bars,
        100.0,
        &|b| {
            b.availability
                .map(|a| (a * 100.0, format!("{:.1}%", a * 100.0)))
        },
    );
    let max_ms = bars
        .iter()
        .filter_map(|b| b.downtime_ms)
        .fold(1.0, f64::max);
    let downtime = chart(
        "worst down-time in a fault window (s; in election timeouts where known)",
        &faults,
        &configs,
        &bars,
        max_ms / 1000.0,
        &|b| {
            let ms = b.downtime_ms?;
            let label = match (b.never, b.downtime_elections) {
                (true, _) => "never resumed".to_string(),
                (false, Some(e)) => format!("{:.2} s ({e:.1} et)", ms / 1000.0),
                (false, None) => format!("{:.2} s", ms / 1000.0),
            };
            Some((ms / 1000.0, label))
        },
    );
    Some([
        ("by-fault-availability", availability),
        ("by-fault-downtime", downtime),
    ])
}

/// Distinct values in their first-seen order.
fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}

/// Grouped bars: a group per fault, a bar per configuration.
fn chart(
    title: &str,
    faults: &[String],
    configs: &[String],
    bars: &[Bar],
    y_max: f64,
    value: &dyn Fn(&Bar) -> Option<(f64, String)>,
) -> String {
    let (width, height, left, top, bottom) = (960.0, 300.0, 50.0, 30.0, 70.0);
    let legend_h = 18.0 * configs.len().div_ceil(3) as f64;
    let plot_h = height - top - bottom;
    let total_h = height + legend_h;
    let group_w = (width - left - 10.0) / faults.len() as f64;
    let bar_w = (group_w * 0.8 / configs.len() as f64).min(60.0);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let y = |v: f64| top + plot_h - (v / y_max).clamp(0.0, 1.0) * plot_h;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{total_h}\" font-family=\"sans-serif\" font-size=\"11\">\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
        width / 2.0,
        escape(title)
    );
    for k in 0..=4 {
        let v = y_max * k as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{width}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#eee\"/><text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\" fill=\"#666\">{3:.1}</text>",
            y(v),
            left - 4.0,
            y(v) + 4.0,
            v
        );
    }
    let colour = |i: usize| {
        let c = RUNS[i % RUNS.len()];
        format!("rgb({},{},{})", c.0, c.1, c.2)
    };
    for (fi, fault) in faults.iter().enumerate() {
        let g0 = left + fi as f64 * group_w + group_w * 0.1;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\">{}</text>",
            left + (fi as f64 + 0.5) * group_w,
            top + plot_h + 18.0,
            escape(fault)
        );
        for (ci, config) in configs.iter().enumerate() {
            let Some(bar) = bars
                .iter()
                .find(|b| &b.fault == fault && &b.config == config)
            else {
                continue;
            };
            let x0 = g0 + ci as f64 * bar_w;
            match value(bar) {
                Some((v, label)) => {
                    let top_y = y(v);
                    let _ = write!(
                        s,
                        "<g class=\"bar\"><title>{} under {}: {}</title><rect x=\"{x0:.1}\" y=\"{top_y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{}</text></g>",
                        escape(config),
                        escape(fault),
                        escape(&label),
                        bar_w - 2.0,
                        (top + plot_h - top_y).max(0.5),
                        colour(ci),
                        x0 + bar_w / 2.0 - 1.0,
                        (top_y - 3.0).max(top - 2.0),
                        escape(label.split(' ').next().unwrap_or(""))
                    );
                }
                None => {
                    let _ = write!(
                        s,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">n/a</text>",
                        x0 + bar_w / 2.0,
                        top + plot_h - 3.0
                    );
                }
            }
        }
    }
    for (ci, config) in configs.iter().enumerate() {
        let (col, row) = (ci % 3, ci / 3);
        let (lx, ly) = (left + col as f64 * 300.0, height - 24.0 + row as f64 * 18.0);
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{ly:.1}\">{}</text>",
            ly - 10.0,
            colour(ci),
            lx + 16.0,
            escape(config)
        );
    }
    s.push_str("</svg>");
    s
}
