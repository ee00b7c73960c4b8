//! Self-contained HTML pages: the run report and the explanation of a
//! non-linearizable key. Plain `format!` and inline CSS/SVG: a page is one
//! file that opens anywhere, offline, years later.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::check::{Checked, Explanation, ShownOp};
use crate::plots;
use crate::report::{ms_and_elections, Report};

/// Escapes text for HTML content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
.valid{color:#070}.invalid{color:#b00}.unknown{color:#a60}\
pre{background:#f7f7f7;padding:1em;overflow-x:auto}h1 span{font-weight:normal}\
.op rect{stroke:#333;stroke-width:.5}.op:hover rect{stroke-width:2}";

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

fn opt(v: Option<f64>, scale: f64, unit: &str) -> String {
    v.map(|x| format!("{:.3}{unit}", x * scale))
        .unwrap_or_else(|| "-".into())
}

/// A section the caller adds to `report.html`: what the run measured
/// beyond the history, which the checker cannot know (the bench's
/// peer-message counts). Plain text, escaped when rendered; the table is
/// left out when `header` is empty.
#[derive(Clone, Debug, Default)]
pub struct Section {
    pub heading: String,
    pub text: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Section {
    fn render(&self, b: &mut String) {
        let _ = writeln!(b, "<h2>{}</h2>", escape(&self.heading));
        if !self.text.is_empty() {
            let _ = writeln!(b, "<p>{}</p>", escape(&self.text));
        }
        if self.header.is_empty() {
            return;
        }
        b.push_str("<table><tr>");
        for h in &self.header {
            let _ = write!(b, "<th>{}</th>", escape(h));
        }
        b.push_str("</tr>");
        for row in &self.rows {
            b.push_str("<tr>");
            for cell in row {
                let _ = write!(b, "<td>{}</td>", escape(cell));
            }
            b.push_str("</tr>");
        }
        b.push_str("</table>\n");
    }
}

/// The run report: verdict, counts, latency, availability, faults, plots.
pub fn report_page(title: &str, checked: &Checked, report: &Report) -> String {
    report_page_with(title, checked, report, &[])
}

/// The run report with the caller's `sections` after the operation counts.
pub fn report_page_with(
    title: &str,
    checked: &Checked,
    report: &Report,
    sections: &[Section],
) -> String {
    let mut b = String::new();
    let v = checked.verdict.as_str();
    let _ = writeln!(
        b,
        "<h1>{} <span class=\"{v}\">{v}</span></h1>",
        escape(title)
    );
    let _ = writeln!(
        b,
        "<p>model <b>{}</b>, {} keys, {} operations, checked in {:.1} ms; overall availability {} \
         (ok, or a cas the state machine answered with a mismatch), ok share {}.</p>",
        checked.model,
        checked.keys.len(),
        report.operations,
        checked.millis,
        opt(report.availability, 100.0, "%"),
        opt(report.ok_share, 100.0, "%")
    );
    b.push_str("<p>See <a href=\"timeline.html\">the timeline</a>: every process's operations as bars over a stretch of the run, faults shaded, around the first violation of an invalid run.</p>");
    if !checked.invalid_keys.is_empty() {
        let _ = writeln!(
            b,
            "<p class=\"invalid\">Not linearizable: keys {}. See <a href=\"explanation.html\">the explanation</a>.</p>",
            escape(&checked.invalid_keys.join(", "))
        );
        for e in &checked.explanations {
            let _ = writeln!(b, "<pre>{}</pre>", escape(&e.to_text()));
        }
    }
    if !checked.unknown_keys.is_empty() {
        let _ = writeln!(
            b,
            "<p class=\"unknown\">Undecided keys ({}): {}</p>",
            checked.unknown_keys.len(),
            escape(&checked.unknown_keys.join(", "))
        );
    }

    b.push_str("<h2>Operations</h2><table><tr><th>f</th>");
    let outcomes = ["ok", "fail", "info", "open"];
    for o in outcomes {
        let _ = write!(b, "<th>{o}</th>");
    }
    b.push_str("</tr>");
    for (f, by) in &report.counts {
        let _ = write!(b, "<tr><td>{}</td>", escape(f));
        for o in outcomes {
            let _ = write!(b, "<td>{}</td>", by.get(o).copied().unwrap_or(0));
        }
        b.push_str("</tr>");
    }
    b.push_str("</table>");
    for section in sections {
        section.render(&mut b);
    }

    if !report.by_node.is_empty() {
        b.push_str("<h2>By node</h2><p>Completions by the node the client spoke to; latency of the ok ones. A slow node, or a leader every request is forwarded to, stands out here.</p><table><tr><th>node</th><th>completed</th><th>ok</th><th>ok share</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>");
        for n in &report.by_node {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                escape(&n.node),
                n.completed,
                n.ok,
                opt((n.completed > 0).then(|| n.ok as f64 / n.completed as f64), 100.0, "%"),
                n.p50,
                n.p99,
                n.max
            );
        }
        b.push_str("</table>");
    }
    if !report.by_type.is_empty() {
        b.push_str("<h2>Throughput by operation</h2><table><tr><th>f</th><th>ok</th><th>ok/s over the run</th><th>ok/s in the busiest second</th></tr>");
        for t in &report.by_type {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
                escape(&t.f),
                t.ok,
                t.ok_per_second,
                t.peak_per_second
            );
        }
        b.push_str("</table>");
    }

    b.push_str("<h2>Latency (ms)</h2><table><tr><th>f</th><th>outcome</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
    for l in &report.latency {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            escape(&l.f),
            escape(&l.outcome),
            l.count,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        );
    }
    b.push_str("</table>");

    b.push_str("<h2>Faults</h2>");
    if report.faults.is_empty() {
        b.push_str("<p>No nemesis events.</p>");
    } else {
        b.push_str("<table><tr><th>fault</th><th>start (s)</th><th>stop (s)</th><th>completed</th><th>ok</th><th>availability</th><th>ok share</th><th>down-time from start</th><th>longest gap without ok</th><th>recovery after stop (s)</th></tr>");
        for w in &report.faults {
            let s = |t: u64| (t.saturating_sub(report.start)) as f64 / 1e9;
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&w.name),
                s(w.start),
                w.stop.map(|t| format!("{:.3}", s(t))).unwrap_or_else(|| "never".into()),
                w.completed,
                w.ok,
                opt(w.availability, 100.0, "%"),
                opt(w.ok_share, 100.0, "%"),
                match &w.downtime {
                    Some(d) => match d.ms {
                        Some(ms) => ms_and_elections(ms, d.elections),
                        None => "no ok after start".into(),
                    },
                    None => "-".into(),
                },
                w.downtime
                    .as_ref()
                    .map(|d| ms_and_elections(d.longest_gap_ms, d.longest_gap_elections))
                    .unwrap_or_else(|| "-".into()),
                w.recovery
                    .map(|r| format!("{:.3}", r as f64 / 1e9))
                    .unwrap_or_else(|| if w.stop.is_some() { "no ok after".into() } else { "-".into() })
            );
        }
        b.push_str("</table>");
    }
    if let Some(o) = &report.longest_without_ok {
        let _ = writeln!(
            b,
            "<p>Longest stretch without an ok operation: <b>{:.3} s</b> (from {:.3} s to {:.3} s).</p>",
            o.seconds,
            o.start.saturating_sub(report.start) as f64 / 1e9,
            o.end.saturating_sub(report.start) as f64 / 1e9
        );
    }

    b.push_str("<h2>Plots</h2>");
    for svg in [
        plots::latency_scatter(report),
        plots::latency_quantiles(report),
        plots::throughput(report),
        plots::throughput_by_type(report),
        plots::availability(report),
    ] {
        let _ = writeln!(b, "<div>{svg}</div>");
    }

    b.push_str("<h2>Keys</h2><table><tr><th>key</th><th>ops</th><th>verdict</th><th>explored</th><th>ms</th></tr>");
    let mut shown: Vec<_> = checked.keys.iter().collect();
    // Thousands of valid keys say nothing: show the undecided and invalid
    // ones first, then the slowest.
    shown.sort_by(|a, b| {
        (a.verdict == crate::Verdict::Valid)
            .cmp(&(b.verdict == crate::Verdict::Valid))
            .then(b.millis.total_cmp(&a.millis))
    });
    for k in shown.iter().take(100) {
        let v = k.verdict.as_str();
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td class=\"{v}\">{v}{}</td><td>{}</td><td>{:.2}</td></tr>",
            escape(&k.key),
            k.ops,
            k.reason
                .as_deref()
                .map(|r| format!(" ({})", escape(r)))
                .unwrap_or_default(),
            k.explored,
            k.millis
        );
    }
    b.push_str("</table>");
    if shown.len() > 100 {
        let _ = writeln!(b, "<p>... and {} more keys.</p>", shown.len() - 100);
    }
    page(title, &b)
}

/// Ops worth drawing: the concurrent window and the prefix's last steps.
fn drawn_ops(e: &Explanation) -> Vec<&ShownOp> {
    const CONTEXT: usize = 30;
    const MAX: usize = 400;
    let mut ids: Vec<usize> = e.window.clone();
    let tail = e.prefix.len().saturating_sub(CONTEXT);
    ids.extend_from_slice(&e.prefix[tail..]);
    ids.sort_unstable();
    ids.dedup();
    let lo = ids.iter().map(|&i| e.ops[i].call).min().unwrap_or(0);
    let hi = e.failing.ret.unwrap_or(e.failing.call);
    let mut ops: Vec<&ShownOp> = e
        .ops
        .iter()
        .filter(|o| ids.binary_search(&o.id).is_ok() || (o.call >= lo && o.call <= hi))
        .collect();
    ops.sort_by_key(|o| o.call);
    ops.truncate(MAX);
    ops
}

/// The lanes-and-bars SVG of one explanation.
fn timeline(e: &Explanation) -> String {
    let ops = drawn_ops(e);
    let mut lanes: BTreeMap<u64, usize> = BTreeMap::new();
    for o in &ops {
        let n = lanes.len();
        lanes.entry(o.process).or_insert(n);
    }
    // Lanes in process order.
    for (i, v) in lanes.values_mut().enumerate() {
        *v = i;
    }
    let t0 = ops.iter().map(|o| o.call).min().unwrap_or(0);
    let t1 = ops
        .iter()
        .map(|o| o.ret.unwrap_or(o.call))
        .max()
        .unwrap_or(t0 + 1)
        .max(t0 + 1);
    let (width, left, lane_h) = (1100.0, 90.0, 34.0);
    let span = (t1 - t0) as f64 * 1.08;
    let x = |t: u64| left + (t.saturating_sub(t0)) as f64 / span * (width - left - 10.0);
    let height = lanes.len() as f64 * lane_h + 40.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    for (p, &lane) in &lanes {
        let y = 20.0 + lane as f64 * lane_h;
        let _ = write!(
            s,
            "<text x=\"4\" y=\"{}\">process {p}</text><line x1=\"{left}\" x2=\"{width}\" y1=\"{}\" y2=\"{}\" stroke=\"#eee\"/>",
            y + 16.0,
            y + 28.0,
            y + 28.0
        );
    }
    for o in &ops {
        let lane = lanes.get(&o.process).copied().unwrap_or(0);
        let y = 20.0 + lane as f64 * lane_h;
        let a = x(o.call);
        let b = o.ret.map(&x).unwrap_or(width - 10.0).max(a + 3.0);
        let failing = o.id == e.failing.id;
        let fill = if failing {
            "#f28b82"
        } else if o.order.is_some() {
            "#8ab4f8"
        } else if o.ret.is_none() {
            "#fdd663"
        } else {
            "#dadce0"
        };
        let dash = if o.ret.is_none() {
            " stroke-dasharray=\"4 2\""
        } else {
            ""
        };
        let order = o
            .order
            .map(|n| format!("linearized #{}", n + 1))
            .unwrap_or_else(|| "not linearized".into());
        let states = match (&o.state_before, &o.state_after) {
            (Some(b), Some(a)) => format!("\nstate: {b} -> {a}"),
            _ => String::new(),
        };
        let tip = format!(
            "process {}: {} ({})\n{}{}\nfrom {:.3} ms to {}\nevent {}",
            o.process,
            o.description,
            o.outcome,
            order,
            states,
            o.call as f64 / 1e6,
            o.ret
                .map(|r| format!("{:.3} ms", r as f64 / 1e6))
                .unwrap_or_else(|| "never (may take effect any time after)".into()),
            o.invoke_index
        );
        let label = match o.order {
            Some(n) => format!("#{} {}", n + 1, o.description),
            None if failing => format!("✗ {}", o.description),
            None => o.description.clone(),
        };
        let _ = write!(
            s,
            "<g class=\"op\"><title>{}</title><rect x=\"{a:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"22\" rx=\"3\" fill=\"{fill}\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\" clip-path=\"none\">{}</text></g>",
            escape(&tip),
            b - a,
            a + 3.0,
            y + 15.0,
            escape(&label)
        );
    }
    s.push_str("</svg>");
    s
}

/// The explanation page of every non-linearizable key.
pub fn explanation_page(title: &str, explanations: &[Explanation]) -> String {
    let mut b = format!(
        "<h1>{} <span class=\"invalid\">not linearizable</span></h1>",
        escape(title)
    );
    b.push_str("<p>Blue bars are the longest linearizable prefix, numbered in linearization order; the red bar is the operation that cannot be linearized after it; grey bars are not linearized; yellow dashed bars never completed (they may take effect any time after their invocation, or never). Hover a bar for the model state before and after its step.</p>");
    for e in explanations {
        let _ = write!(
            b,
            "<h2>key {}</h2><pre>{}</pre><div style=\"overflow-x:auto\">{}</div>",
            escape(&format!("{:?}", e.key)),
            escape(&e.to_text()),
            timeline(e)
        );
        b.push_str("<h3>Longest linearizable prefix</h3><table><tr><th>#</th><th>process</th><th>operation</th><th>state before</th><th>state after</th></tr>");
        let tail = e.prefix.len().saturating_sub(200);
        for &i in &e.prefix[tail..] {
            let o = &e.ops[i];
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                o.order.map(|n| n + 1).unwrap_or(0),
                o.process,
                escape(&o.description),
                escape(o.state_before.as_deref().unwrap_or("")),
                escape(o.state_after.as_deref().unwrap_or(""))
            );
        }
        b.push_str("</table>");
    }
    page(title, &b)
}
