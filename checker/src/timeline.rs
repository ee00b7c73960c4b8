//! `timeline.html`: a window of a history drawn in the spirit of Jepsen's
//! timeline. One lane per client process, each op a bar from its
//! invocation to its completion coloured by outcome (a bar that never
//! completed runs dashed to the window's edge), fault windows shaded
//! behind the lanes, and every bar's values on hover.
//!
//! Whole runs are too big to draw, so a timeline covers a [`Window`]: the
//! seconds around the first violation of an invalid run
//! ([`Window::around_violation`]), the first fault of a valid one, or what
//! the user asks for (`synod check --from S --to S`). The
//! [`TimelineBuilder`] takes the history's events in one streaming pass
//! and keeps only the ops that overlap the window; the ops an explanation
//! blames are outlined and named.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use crate::check::Checked;
use crate::history::{Event, EventType, Process};
use crate::html::escape;
use crate::palette;
use crate::report::Report;

/// The most bars a page draws; past it the page says how many it left out.
pub const MAX_BARS: usize = 20_000;

/// The margin around the failing op in the default window of an invalid
/// run, on each side.
const AROUND_NS: u64 = 1_500_000_000;
/// The widest default window.
const MAX_DEFAULT_NS: u64 = 10_000_000_000;

/// A stretch the user asks for, in seconds after the history's first
/// event (`synod check --from S --to S`); `to_s: None` runs to the end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub from_s: f64,
    pub to_s: Option<f64>,
}

/// A stretch of a history, in the history's own times (ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from: u64,
    pub to: u64,
}

impl Window {
    /// A [`Span`] of a history that runs from `start` to `end`.
    pub fn of_span(span: Span, start: u64, end: u64) -> Window {
        let at = |s: f64| start.saturating_add((s.max(0.0) * 1e9) as u64);
        let from = at(span.from_s);
        Window {
            from,
            to: span.to_s.map(at).unwrap_or(end).max(from),
        }
    }

    /// The seconds around the earliest op an explanation names as failing.
    fn around_violation(checked: &Checked) -> Option<Window> {
        let failing = checked
            .explanations
            .iter()
            .map(|e| &e.failing)
            .min_by_key(|o| o.call)?;
        let ret = failing.ret.unwrap_or(failing.call + AROUND_NS);
        let from = failing.call.saturating_sub(AROUND_NS);
        Some(Window {
            from,
            to: ret.saturating_add(AROUND_NS).min(from + MAX_DEFAULT_NS),
        })
    }

    /// The default: around the first violation of an invalid run; else the
    /// first fault (a little before its start until a little after its
    /// stop); else the first seconds of the history. Never wider than 10 s.
    pub fn default_for(checked: &Checked, report: &Report) -> Window {
        if let Some(w) = Window::around_violation(checked) {
            let from = w.from.max(report.start);
            return Window {
                from,
                to: w.to.min(report.end).max(from),
            };
        }
        let (from, to) = match report.faults.first() {
            Some(f) => (
                f.start.saturating_sub(AROUND_NS / 3).max(report.start),
                f.stop.unwrap_or(report.end).saturating_add(AROUND_NS),
            ),
            None => (report.start, report.end),
        };
        Window {
            from,
            to: to.min(from + MAX_DEFAULT_NS).min(report.end.max(from)),
        }
    }

    fn overlaps(&self, call: u64, ret: Option<u64>) -> bool {
        call <= self.to && ret.is_none_or(|r| r >= self.from)
    }
}

/// How an op ended, as the timeline colours it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// A cas that compared and found another value: a definite answer.
    Mismatch,
    Fail,
    Info,
    /// Never completed before the history ended.
    Open,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Mismatch => "fail (cas mismatch)",
            Outcome::Fail => "fail",
            Outcome::Info => "info (unknown)",
            Outcome::Open => "open (never completed)",
        }
    }

    fn fill(self) -> String {
        let hex = |c: plotters::style::RGBColor| format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2);
        match self {
            Outcome::Ok => hex(palette::OK),
            Outcome::Mismatch => "#e8a0a0".into(),
            Outcome::Fail => hex(palette::FAIL),
            Outcome::Info | Outcome::Open => hex(palette::INFO),
        }
    }
}

/// One op in the window.
#[derive(Clone, Debug)]
struct Bar {
    process: u64,
    call: u64,
    ret: Option<u64>,
    outcome: Outcome,
    f: String,
    key: String,
    /// The invocation's value, and the completion's when it differs.
    value: String,
    result: Option<String>,
    node: Option<String>,
    error: Option<String>,
    invoke_index: u64,
}

/// Collects the ops of a [`Window`] from a stream of events.
pub struct TimelineBuilder {
    window: Window,
    pending: HashMap<u64, Bar>,
    bars: Vec<Bar>,
    left_out: u64,
}

impl TimelineBuilder {
    pub fn new(window: Window) -> Self {
        TimelineBuilder {
            window,
            pending: HashMap::new(),
            bars: Vec::new(),
            left_out: 0,
        }
    }

    /// Takes one event, in history order.
    pub fn push(&mut self, e: &Event) {
        let Process::Client(p) = e.process else {
            return;
        };
        if e.kind == EventType::Invoke {
            if e.time > self.window.to {
                return;
            }
            self.pending.insert(
                p,
                Bar {
                    process: p,
                    call: e.time,
                    ret: None,
                    outcome: Outcome::Open,
                    f: e.f.as_str().to_string(),
                    key: e.key().to_string(),
                    value: short(&e.value),
                    result: None,
                    node: e.node.clone(),
                    error: None,
                    invoke_index: e.index,
                },
            );
            return;
        }
        let Some(mut bar) = self.pending.remove(&p) else {
            return;
        };
        bar.ret = Some(e.time);
        bar.outcome = match e.kind {
            EventType::Ok => Outcome::Ok,
            EventType::Fail if e.says_mismatch() => Outcome::Mismatch,
            EventType::Fail => Outcome::Fail,
            _ => Outcome::Info,
        };
        let result = short(&e.value);
        if result != bar.value {
            bar.result = Some(result);
        }
        bar.error = e.error.clone();
        if e.node.is_some() {
            bar.node = e.node.clone();
        }
        self.keep(bar);
    }

    fn keep(&mut self, bar: Bar) {
        if !self.window.overlaps(bar.call, bar.ret) {
            return;
        }
        if self.bars.len() < MAX_BARS {
            self.bars.push(bar);
        } else {
            self.left_out += 1;
        }
    }

    /// The ops collected, with those still open at the end.
    pub fn finish(mut self) -> Timeline {
        let open: Vec<Bar> = self.pending.drain().map(|(_, b)| b).collect();
        for bar in open {
            self.keep(bar);
        }
        self.bars.sort_by_key(|b| (b.call, b.process));
        Timeline {
            window: self.window,
            bars: self.bars,
            left_out: self.left_out,
        }
    }
}

/// A value as a bar's tooltip shows it: compact JSON, cut at 80 chars.
fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// The ops of one window, ready to draw.
pub struct Timeline {
    pub window: Window,
    bars: Vec<Bar>,
    left_out: u64,
}

impl Timeline {
    /// How many ops it draws.
    pub fn len(&self) -> usize {
        self.bars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bars.is_empty()
    }

    /// The page: a legend, the window, the blamed ops, and the SVG.
    pub fn page(&self, title: &str, checked: &Checked, report: &Report) -> String {
        let w = self.window;
        let rel = |t: u64| t.saturating_sub(report.start) as f64 / 1e9;
        // The ops the explanations blame, by their invocation's index.
        let failing: HashSet<u64> = checked
            .explanations
            .iter()
            .map(|e| e.failing.invoke_index)
            .collect();
        let concurrent: HashSet<u64> = checked
            .explanations
            .iter()
            .flat_map(|e| e.window.iter().filter_map(|&i| e.ops.get(i)))
            .map(|o| o.invoke_index)
            .collect();
        let mut b = String::new();
        let v = checked.verdict.as_str();
        let _ = writeln!(
            b,
            "<h1>{} <span class=\"{v}\">{v}</span> <span>timeline</span></h1>",
            escape(title)
        );
        let _ = writeln!(
            b,
            "<p>From {:.3} s to {:.3} s of the run: {} operations by {} processes{}. \
             Choose another stretch with <code>synod check --from S --to S</code>. \
             Back to <a href=\"report.html\">the report</a>.</p>",
            rel(w.from),
            rel(w.to),
            self.bars.len(),
            self.bars
                .iter()
                .map(|b| b.process)
                .collect::<HashSet<_>>()
                .len(),
            if self.left_out > 0 {
                format!(
                    " (the first {MAX_BARS}; {} more left out: choose a shorter stretch)",
                    self.left_out
                )
            } else {
                String::new()
            }
        );
        b.push_str("<p>");
        for o in [Outcome::Ok, Outcome::Mismatch, Outcome::Fail, Outcome::Info] {
            let _ = write!(
                b,
                "<span style=\"display:inline-block;width:1em;height:1em;background:{};vertical-align:middle\"></span> {} &nbsp; ",
                o.fill(),
                escape(o.name())
            );
        }
        b.push_str("faults shaded; hover a bar for its values.</p>");
        // The earliest violations, a few: a run with hundreds of bad keys
        // must still show its timeline on the first screen.
        let mut shown: Vec<_> = checked.explanations.iter().collect();
        shown.sort_by_key(|e| e.failing.call);
        let more = shown.len().saturating_sub(3);
        shown.truncate(3);
        for e in shown {
            let f = &e.failing;
            let shown = if w.overlaps(f.call, f.ret) {
                "outlined in black below"
            } else {
                "outside this stretch"
            };
            let _ = writeln!(
                b,
                "<p class=\"invalid\">Key {}: {} by process {} at {:.3} s cannot be linearized ({shown}; ops concurrent with it are outlined in red). See <a href=\"explanation.html\">the explanation</a>.</p>",
                escape(&format!("{:?}", e.key)),
                escape(&f.description),
                f.process,
                rel(f.call)
            );
        }
        if more > 0 {
            let _ = writeln!(
                b,
                "<p class=\"invalid\">... and {more} more keys that cannot be linearized: see <a href=\"explanation.html\">the explanation</a>.</p>"
            );
        }
        let _ = write!(
            b,
            "<div style=\"overflow-x:auto\">{}</div>",
            self.svg(report, &failing, &concurrent)
        );
        crate::html::page(&format!("{title}: timeline"), &b)
    }

    fn svg(&self, report: &Report, failing: &HashSet<u64>, concurrent: &HashSet<u64>) -> String {
        let w = self.window;
        let lanes: BTreeMap<u64, usize> = self
            .bars
            .iter()
            .map(|b| b.process)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, i))
            .collect();
        let (width, left, lane_h, top) = (1100.0, 80.0, 16.0, 24.0);
        let span = (w.to - w.from).max(1) as f64;
        let x =
            |t: u64| left + (t.clamp(w.from, w.to) - w.from) as f64 / span * (width - left - 10.0);
        let height = top + lanes.len().max(1) as f64 * lane_h + 10.0;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"10\">"
        );
        // Faults behind everything, each name its colour.
        let mut names: Vec<&str> = Vec::new();
        for f in &report.faults {
            let stop = f.stop.unwrap_or(report.end);
            if f.start > w.to || stop < w.from {
                continue;
            }
            let n = names.iter().position(|&n| n == f.name).unwrap_or_else(|| {
                names.push(&f.name);
                names.len() - 1
            });
            let c = palette::FAULT_WINDOWS[n % palette::FAULT_WINDOWS.len()];
            let (a, z) = (x(f.start), x(stop));
            let _ = write!(
                s,
                "<g class=\"fault\"><title>{}: {:.3} s to {}</title><rect x=\"{a:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"rgb({},{},{})\" fill-opacity=\"0.18\"/><text x=\"{:.1}\" y=\"12\">{}</text></g>",
                escape(&f.name),
                f.start.saturating_sub(report.start) as f64 / 1e9,
                f.stop
                    .map(|t| format!("{:.3} s", t.saturating_sub(report.start) as f64 / 1e9))
                    .unwrap_or_else(|| "the end".into()),
                top - 4.0,
                (z - a).max(1.0),
                height - top,
                c.0,
                c.1,
                c.2,
                a + 2.0,
                escape(&f.name)
            );
        }
        // A time axis: a tick every round step.
        let step = tick_step(span / 1e9);
        let first = ((w.from.saturating_sub(report.start)) as f64 / 1e9 / step).ceil() * step;
        let mut t = first;
        while report.start as f64 + t * 1e9 <= w.to as f64 {
            let at = report.start + (t * 1e9) as u64;
            let xt = x(at);
            let _ = write!(
                s,
                "<line x1=\"{xt:.1}\" x2=\"{xt:.1}\" y1=\"{}\" y2=\"{height}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{}\" fill=\"#666\">{t:.2} s</text>",
                top - 4.0,
                xt + 2.0,
                top - 6.0
            );
            t += step;
        }
        for (p, &lane) in &lanes {
            let y = top + lane as f64 * lane_h;
            let _ = write!(s, "<text x=\"4\" y=\"{:.1}\">process {p}</text>", y + 11.0);
        }
        let mut labels = String::new();
        for bar in &self.bars {
            let y = top + lanes[&bar.process] as f64 * lane_h + 2.0;
            let a = x(bar.call);
            let z = bar.ret.map(&x).unwrap_or(width - 10.0).max(a + 2.0);
            let (stroke, stroke_w) = if failing.contains(&bar.invoke_index) {
                ("#000", 2.5)
            } else if concurrent.contains(&bar.invoke_index) {
                ("#b00", 1.5)
            } else {
                ("none", 0.0)
            };
            let dash = if bar.ret.is_none() || bar.outcome == Outcome::Info {
                " stroke-dasharray=\"3 2\""
            } else {
                ""
            };
            let _ = write!(
                s,
                "<g class=\"op\"><title>{}</title><rect x=\"{a:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{}\" stroke=\"{stroke}\" stroke-width=\"{stroke_w}\"{dash}/></g>",
                escape(&bar.tip(report.start)),
                z - a,
                bar.outcome.fill()
            );
            if failing.contains(&bar.invoke_index) {
                // A bar of a millisecond is a few pixels wide: name it,
                // above every bar, on a white halo.
                let _ = write!(
                    labels,
                    "<text class=\"failing\" x=\"{:.1}\" y=\"{:.1}\" fill=\"#b00\" font-weight=\"bold\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\">&#x2717; {} cannot be linearized</text>",
                    z + 4.0,
                    y + 10.0,
                    escape(&bar.f)
                );
            }
        }
        s.push_str(&labels);
        s.push_str("</svg>");
        s
    }
}

impl Bar {
    fn tip(&self, start: u64) -> String {
        let rel = |t: u64| t.saturating_sub(start) as f64 / 1e9;
        let mut t = format!(
            "process {}: {} {:?} {}",
            self.process, self.f, self.key, self.value
        );
        if let Some(r) = &self.result {
            let _ = write!(t, " -> {r}");
        }
        let _ = write!(t, "\n{}", self.outcome.name());
        if let Some(e) = &self.error {
            let _ = write!(t, ": {e}");
        }
        let _ = write!(t, "\nfrom {:.6} s", rel(self.call));
        match self.ret {
            Some(r) => {
                let _ = write!(
                    t,
                    " to {:.6} s ({:.3} ms)",
                    rel(r),
                    (r - self.call) as f64 / 1e6
                );
            }
            None => t.push_str(", never completed"),
        }
        if let Some(n) = &self.node {
            let _ = write!(t, "\nnode {n}");
        }
        let _ = write!(t, "\nevent {}", self.invoke_index);
        t
    }
}

/// A round tick spacing (s) giving about ten ticks over `span_s`.
fn tick_step(span_s: f64) -> f64 {
    let raw = (span_s / 10.0).max(1e-6);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Fun;
    use serde_json::json;

    fn ev(
        index: u64,
        time: u64,
        process: u64,
        kind: EventType,
        f: Fun,
        value: serde_json::Value,
    ) -> Event {
        Event {
            index,
            time,
            process: Process::Client(process),
            kind,
            f,
            key: Some("k".into()),
            value,
            error: None,
            node: Some("n1".into()),
            mismatch: false,
            not_proposed: false,
        }
    }

    #[test]
    fn keeps_only_the_ops_that_overlap_the_window() {
        let mut b = TimelineBuilder::new(Window { from: 100, to: 200 });
        let ops = [
            (0, 50, EventType::Ok),   // before: left out
            (60, 120, EventType::Ok), // reaches in
            (150, 160, EventType::Fail),
            (190, 400, EventType::Info), // reaches out
            (300, 310, EventType::Ok),   // after: left out
        ];
        let mut i = 0;
        for (p, (call, ret, kind)) in ops.into_iter().enumerate() {
            b.push(&ev(
                i,
                call,
                p as u64,
                EventType::Invoke,
                Fun::Write,
                json!(p),
            ));
            b.push(&ev(i + 1, ret, p as u64, kind, Fun::Write, json!(p)));
            i += 2;
        }
        // Invoked in the window, never completed.
        b.push(&ev(i, 180, 9, EventType::Invoke, Fun::Read, json!(null)));
        let t = b.finish();
        let calls: Vec<(u64, Outcome)> = t.bars.iter().map(|b| (b.call, b.outcome)).collect();
        assert_eq!(
            calls,
            [
                (60, Outcome::Ok),
                (150, Outcome::Fail),
                (180, Outcome::Open),
                (190, Outcome::Info)
            ]
        );
    }

    #[test]
    fn a_mismatch_is_its_own_outcome_and_values_show_on_hover() {
        let mut b = TimelineBuilder::new(Window { from: 0, to: 1000 });
        b.push(&ev(0, 10, 1, EventType::Invoke, Fun::Cas, json!([1, 2])));
        let mut done = ev(1, 20, 1, EventType::Fail, Fun::Cas, json!([1, 2]));
        done.mismatch = true;
        b.push(&done);
        b.push(&ev(2, 30, 2, EventType::Invoke, Fun::Read, json!(null)));
        b.push(&ev(3, 40, 2, EventType::Ok, Fun::Read, json!("<3>")));
        let t = b.finish();
        assert_eq!(t.bars[0].outcome, Outcome::Mismatch);
        assert_eq!(t.bars[1].result.as_deref(), Some("\"<3>\""));
        let tip = t.bars[1].tip(0);
        assert!(tip.contains("read \"k\" null -> \"<3>\""), "{tip}");
    }

    #[test]
    fn the_window_is_capped_and_says_how_many_it_left_out() {
        let mut b = TimelineBuilder::new(Window {
            from: 0,
            to: u64::MAX,
        });
        for i in 0..(MAX_BARS as u64 + 5) {
            b.push(&ev(2 * i, i, 1, EventType::Invoke, Fun::Read, json!(null)));
            b.push(&ev(2 * i + 1, i, 1, EventType::Ok, Fun::Read, json!(1)));
        }
        let t = b.finish();
        assert_eq!((t.len(), t.left_out), (MAX_BARS, 5));
    }

    #[test]
    fn seconds_are_relative_to_the_start_and_ticks_are_round() {
        let span = |from_s, to_s| Span { from_s, to_s };
        let w = Window::of_span(span(2.0, Some(3.5)), 1_000, 50_000_000_000);
        assert_eq!((w.from, w.to), (2_000_001_000, 3_500_001_000));
        assert_eq!(
            Window::of_span(span(1.0, None), 0, 7),
            Window {
                from: 1_000_000_000,
                to: 1_000_000_000
            }
        );
        assert_eq!(tick_step(10.0), 1.0);
        assert_eq!(tick_step(3.0), 0.5);
        assert_eq!(tick_step(0.012), 0.002);
    }
}
