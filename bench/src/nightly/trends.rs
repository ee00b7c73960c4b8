//! Trends across nights: every `synod suite` appends one line per run to
//! `STORE/_trends.jsonl` ([`TrendPoint`]), and `synod serve` draws each
//! figure over the nights, one line per configuration, invalid nights
//! marked (`/trends`). A p99 that crept up 30% over a week, or a recovery
//! that doubled after a change, shows as a slope, not as a number to
//! remember from last Tuesday.
//!
//! The file only grows, one JSON object per line, so a night that dies
//! half-way loses nothing already written and the file can be read,
//! grepped and cut with ordinary tools. A line that does not parse is
//! skipped by readers, which say so, naming the file and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use synod_checker::html::escape;

use super::figures::{FaultDowntime, RunFigures};

/// The trend file's name in the store.
pub const FILE: &str = "_trends.jsonl";

/// One run of one night, as the trend file keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    /// The run series (the configuration, with its fault): `store/<config>/`.
    pub config: String,
    /// The suite's start, a UTC timestamp: the night.
    pub night: String,
    pub suite: String,
    /// The commit under test: `$SYNOD_COMMIT`, `$GITHUB_SHA` or
    /// `$CI_COMMIT_SHA`, where set.
    pub commit: Option<String>,
    /// `valid`, `invalid`, `unknown` or `error`.
    pub verdict: String,
    /// ok ops per second.
    pub throughput: Option<f64>,
    /// The worst p50 and p99 across op kinds (ms).
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub availability: Option<f64>,
    /// The worst down-time of each fault.
    #[serde(default)]
    pub downtime: Vec<FaultDowntime>,
    pub messages_per_op: Option<f64>,
    /// The run's directory, relative to the store.
    pub run: Option<String>,
}

impl TrendPoint {
    /// The point of a run of the suite `suite` started at `night`.
    pub fn of(suite: &str, night: &str, r: &RunFigures, store: &Path) -> TrendPoint {
        TrendPoint {
            config: r.name.clone(),
            night: night.to_string(),
            suite: suite.to_string(),
            commit: commit(),
            verdict: r.verdict.clone(),
            throughput: r.throughput,
            p50: r.latency.iter().map(|l| l.p50).reduce(f64::max),
            p99: r.p99(),
            availability: r.availability,
            downtime: r.downtime.clone(),
            messages_per_op: r.peer_messages_per_op,
            run: Some(
                r.dir
                    .strip_prefix(store)
                    .unwrap_or(&r.dir)
                    .display()
                    .to_string(),
            ),
        }
    }

    /// The point of a run that left no figures (it died before judging).
    pub fn error(suite: &str, night: &str, config: &str) -> TrendPoint {
        TrendPoint {
            config: config.to_string(),
            night: night.to_string(),
            suite: suite.to_string(),
            commit: commit(),
            verdict: "error".into(),
            throughput: None,
            p50: None,
            p99: None,
            availability: None,
            downtime: Vec::new(),
            messages_per_op: None,
            run: None,
        }
    }

    /// The worst down-time of any fault (ms); `None` without figures.
    pub fn worst_downtime_ms(&self) -> Option<f64> {
        self.downtime
            .iter()
            .filter_map(|d| d.worst_ms)
            .reduce(f64::max)
    }
}

/// The commit under test, from the CI system's environment.
fn commit() -> Option<String> {
    ["SYNOD_COMMIT", "GITHUB_SHA", "CI_COMMIT_SHA"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// Appends `points` to the store's trend file.
pub fn append(store: &Path, points: &[TrendPoint]) -> anyhow::Result<PathBuf> {
    let path = store.join(FILE);
    let mut text = String::new();
    for p in points {
        text.push_str(&serde_json::to_string(p)?);
        text.push('\n');
    }
    std::fs::create_dir_all(store).with_context(|| format!("cannot create {}", store.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // One write: lines of concurrent suites do not interleave.
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot append to {}", path.display()))?;
    Ok(path)
}

/// The store's trend points, and a note per line that did not parse
/// (`FILE:LINE: reason`). No file: no points.
pub fn read(store: &Path) -> anyhow::Result<(Vec<TrendPoint>, Vec<String>)> {
    let path = store.join(FILE);
    let text = match super::figures::open_regular(&path) {
        Ok((mut f, _)) => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut f, &mut s)
                .with_context(|| format!("cannot read {}", path.display()))?;
            s
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut points = Vec::new();
    let mut notes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<TrendPoint>(line) {
            Ok(p) => points.push(p),
            Err(e) => notes.push(format!("{}:{}: skipped: {e}", path.display(), i + 1)),
        }
    }
    Ok((points, notes))
}

/// A figure the trends page draws.
struct Figure {
    title: &'static str,
    value: fn(&TrendPoint) -> Option<f64>,
}

const FIGURES: [Figure; 6] = [
    Figure {
        title: "ok ops/s",
        value: |p| p.throughput,
    },
    Figure {
        title: "p50 latency (ms, worst op kind)",
        value: |p| p.p50,
    },
    Figure {
        title: "p99 latency (ms, worst op kind)",
        value: |p| p.p99,
    },
    Figure {
        title: "availability (%)",
        value: |p| p.availability.map(|a| a * 100.0),
    },
    Figure {
        title: "worst down-time (ms, any fault)",
        value: |p| p.worst_downtime_ms(),
    },
    Figure {
        title: "peer messages per op",
        value: |p| p.messages_per_op,
    },
];

/// The trends page: each figure over the nights, a line per configuration
/// (`filter`: only configurations whose name contains it).
pub fn page(points: &[TrendPoint], notes: &[String], filter: Option<&str>) -> String {
    let points: Vec<&TrendPoint> = points
        .iter()
        .filter(|p| filter.is_none_or(|f| p.config.contains(f)))
        .collect();
    let nights: Vec<&str> = points
        .iter()
        .map(|p| p.night.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut configs: BTreeMap<&str, Vec<&TrendPoint>> = BTreeMap::new();
    for p in &points {
        configs.entry(p.config.as_str()).or_default().push(p);
    }
    let mut b = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Synod trends</title>\n<style>\n\
         body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1100px}\n\
         .legend span{display:inline-block;margin-right:1.2em}\n\
         .note{color:#a60}\n\
         </style></head><body>\n<h1>Synod trends</h1>\n",
    );
    let _ = writeln!(
        b,
        "<p>{} runs of {} configurations over {} nights, from <code>{FILE}</code> in the store \
         (<code>synod suite</code> appends a line per run). A red cross marks a night whose run was \
         not valid. Hover a point for its night, commit and run. \
         <a href=\"/\">All runs</a>.</p>",
        points.len(),
        configs.len(),
        nights.len()
    );
    for n in notes {
        let _ = writeln!(b, "<p class=\"note\">{}</p>", escape(n));
    }
    if points.is_empty() {
        b.push_str("<p>No nights yet: run <code>synod suite FILE.toml</code> with this store.</p>");
        b.push_str("</body></html>\n");
        return b;
    }
    let colour = |i: usize| {
        let c = synod_checker::palette::RUNS[i % synod_checker::palette::RUNS.len()];
        format!("rgb({},{},{})", c.0, c.1, c.2)
    };
    b.push_str("<p class=\"legend\">");
    for (i, c) in configs.keys().enumerate() {
        let _ = write!(
            b,
            "<span><svg width=\"22\" height=\"10\"><line x1=\"0\" x2=\"22\" y1=\"5\" y2=\"5\" stroke=\"{}\" stroke-width=\"3\"/></svg> {}</span>",
            colour(i),
            escape(c)
        );
    }
    b.push_str("</p>\n");
    for fig in &FIGURES {
        let _ = writeln!(
            b,
            "<h2>{}</h2>\n{}",
            escape(fig.title),
            chart(fig, &nights, &configs, &colour)
        );
    }
    b.push_str("</body></html>\n");
    b
}

/// One figure's SVG: nights along x, the figure up y, a polyline per
/// configuration.
fn chart(
    fig: &Figure,
    nights: &[&str],
    configs: &BTreeMap<&str, Vec<&TrendPoint>>,
    colour: &dyn Fn(usize) -> String,
) -> String {
    let (width, height, left, right, top, bottom) = (1000.0, 220.0, 70.0, 20.0, 12.0, 40.0);
    let values: Vec<f64> = configs
        .values()
        .flatten()
        .filter_map(|p| (fig.value)(p))
        .filter(|v| v.is_finite())
        .collect();
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    if values.is_empty() {
        s.push_str("<text x=\"10\" y=\"20\">no figures</text></svg>");
        return s;
    }
    let lo = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(0.0);
    let mut hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        hi = lo + 1.0;
    }
    let hi = hi * 1.08;
    let x = |i: usize| {
        if nights.len() <= 1 {
            left + (width - left - right) / 2.0
        } else {
            left + i as f64 / (nights.len() - 1) as f64 * (width - left - right)
        }
    };
    let y = |v: f64| top + (hi - v) / (hi - lo) * (height - top - bottom);
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let yv = y(v);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{yv:.1}\" y2=\"{yv:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#666\">{}</text>",
            width - right,
            left - 4.0,
            yv + 4.0,
            short_number(v)
        );
    }
    let every = nights.len().div_ceil(8).max(1);
    for (i, n) in nights.iter().enumerate() {
        if i % every == 0 || i + 1 == nights.len() {
            // The first and last labels hang inwards, to stay inside.
            let anchor = match i {
                0 if nights.len() > 1 => "start",
                _ if i + 1 == nights.len() && nights.len() > 1 => "end",
                _ => "middle",
            };
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\" fill=\"#666\">{}</text>",
                x(i),
                height - bottom + 16.0,
                escape(n)
            );
        }
    }
    for (ci, (config, pts)) in configs.iter().enumerate() {
        let c = colour(ci);
        let mut line = Vec::new();
        let mut marks = String::new();
        for p in pts {
            let Some(v) = (fig.value)(p).filter(|v| v.is_finite()) else {
                continue;
            };
            let Some(i) = nights.iter().position(|n| *n == p.night) else {
                continue;
            };
            let (px, py) = (x(i), y(v));
            line.push(format!("{px:.1},{py:.1}"));
            let tip = format!(
                "{config}, night {}: {} {}\nverdict {}{}{}",
                p.night,
                short_number(v),
                fig.title,
                p.verdict,
                p.commit
                    .as_deref()
                    .map(|c| format!("\ncommit {c}"))
                    .unwrap_or_default(),
                p.run
                    .as_deref()
                    .map(|r| format!("\nrun {r}"))
                    .unwrap_or_default()
            );
            if p.verdict == "valid" {
                let _ = write!(
                    marks,
                    "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3.5\" fill=\"{c}\"><title>{}</title></circle>",
                    escape(&tip)
                );
            } else {
                let _ = write!(
                    marks,
                    "<g class=\"not-valid\"><title>{}</title><path d=\"M{:.1},{:.1}l10,10m0,-10l-10,10\" stroke=\"#c00\" stroke-width=\"2.5\"/></g>",
                    escape(&tip),
                    px - 5.0,
                    py - 5.0
                );
            }
        }
        let _ = write!(
            s,
            "<polyline class=\"trend\" data-config=\"{}\" points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>{marks}",
            escape(config),
            line.join(" ")
        );
    }
    s.push_str("</svg>");
    s
}

/// `1234.5` -> `1234.5`; `0.000123` -> `0.000123`: a number for an axis.
fn short_number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(config: &str, night: &str, verdict: &str, p99: f64) -> TrendPoint {
        TrendPoint {
            config: config.into(),
            night: night.into(),
            suite: "nightly".into(),
            commit: Some("abc123".into()),
            verdict: verdict.into(),
            throughput: Some(1000.0),
            p50: Some(1.0),
            p99: Some(p99),
            availability: Some(0.99),
            downtime: vec![FaultDowntime {
                fault: "kill".into(),
                windows: 2,
                worst_ms: Some(640.0),
                worst_elections: Some(2.1),
                never_resumed: 0,
            }],
            messages_per_op: Some(2.5),
            run: Some(format!("{config}/{night}")),
        }
    }

    #[test]
    fn appended_nights_read_back_and_bad_lines_are_named() {
        let store = std::env::temp_dir().join(format!("synod-trends-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        let a = point("n-leader", "20261201T010000Z", "valid", 20.0);
        let b = point("n-leader", "20261202T010000Z", "invalid", 26.0);
        append(&store, std::slice::from_ref(&a)).unwrap();
        append(&store, std::slice::from_ref(&b)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(store.join(FILE))
            .unwrap()
            .write_all(b"{half a line\n")
            .unwrap();
        let (points, notes) = read(&store).unwrap();
        assert_eq!(points, [a, b]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("_trends.jsonl:3: skipped"), "{notes:?}");
        std::fs::remove_dir_all(&store).ok();
        // No file yet: nothing, and no error.
        assert_eq!(read(&store).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn the_page_draws_a_line_per_configuration_and_marks_bad_nights() {
        let nights = ["20261201T010000Z", "20261202T010000Z", "20261203T010000Z"];
        let mut points = Vec::new();
        for (i, n) in nights.iter().enumerate() {
            points.push(point("n-leader", n, "valid", 20.0 + i as f64));
            points.push(point(
                "n-any",
                n,
                if i == 1 { "invalid" } else { "valid" },
                30.0,
            ));
        }
        let page = page(&points, &[], None);
        // Six figures, two configurations each.
        assert_eq!(page.matches("<polyline class=\"trend\"").count(), 12);
        assert_eq!(page.matches("data-config=\"n-leader\"").count(), 6);
        // The invalid night of n-any, in every figure.
        assert_eq!(page.matches("class=\"not-valid\"").count(), 6);
        assert!(page.contains("6 runs of 2 configurations over 3 nights"));
        let only = super::page(&points, &[], Some("any"));
        assert_eq!(only.matches("<polyline class=\"trend\"").count(), 6);
        assert!(super::page(&[], &[], None).contains("No nights yet"));
    }
}
