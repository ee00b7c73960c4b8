//! Reports from any history: counts, latency distributions, throughput,
//! availability, fault windows and recovery.
//!
//! Everything here is a function of the history alone (no verdict needed),
//! so reports work for imported histories too. Latency is completion time
//! minus invocation time, recorded in hdrhistogram (3 significant figures)
//! per operation and outcome. Availability is the share of *completed*
//! operations that are `ok`; a fault window is a `start-X` nemesis event up
//! to the matching `stop-X` (or the end of the history). A window's
//! down-time ([`Downtime`]) is measured from its start: to the first `ok`
//! at or after it, and the longest stretch without an `ok` inside it;
//! its `recovery` from its stop to the first `ok` after that.
//!
//! Layout: this file holds the report's shape (what `results.json`
//! stores) and the `.hgrm` text; `builder` computes it from the events.

mod builder;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::history::EventType;

pub use builder::{report, ReportBuilder};

/// One operation's latency, as the scatter plot draws it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Completion time (ns).
    pub complete: u64,
    pub latency: u64,
    pub outcome: EventType,
}

/// Latency percentiles of one (f, outcome), in milliseconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatencyRow {
    pub f: String,
    pub outcome: String,
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// Completions in one second of the run (a longer bucket for runs of
/// more than a day).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the run started, at the bucket's start.
    pub t: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Of `fail`, cas ops that compared and found another value: answers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mismatch: u64,
    /// (ok + mismatch) / (ok + fail + info): the share the system
    /// answered ([`Report::availability`]); `None` if nothing completed.
    pub availability: Option<f64>,
    /// ok / (ok + fail + info): the plain ok share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_share: Option<f64>,
    /// ok completions by operation (`read`, `write`, ...): throughput by
    /// type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ok_by_f: BTreeMap<String, u64>,
    /// Latency quantiles (ms) of the ops completing in this second.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Completions at one node (the node the client spoke to, as the history
/// names it): a slow node or a hot leader shows here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    pub node: String,
    pub completed: u64,
    pub ok: u64,
    /// Latency of the node's ok ops (ms).
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// One operation type's throughput over the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypeRow {
    pub f: String,
    pub ok: u64,
    /// ok per second of the run, and in its busiest second.
    pub ok_per_second: f64,
    pub peak_per_second: u64,
}

/// A fault the nemesis started (and maybe stopped).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultWindow {
    /// `partition` for `start-partition`; the nemesis' own name otherwise.
    pub name: String,
    pub start: u64,
    /// `None`: never stopped before the history ended.
    pub stop: Option<u64>,
    pub completed: u64,
    pub ok: u64,
    /// Completed cas ops that compared and found another value.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mismatch: u64,
    /// (ok + mismatch) / completed ([`Report::availability`]).
    pub availability: Option<f64>,
    /// ok / completed: the plain ok share (absent in `results.json`
    /// written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_share: Option<f64>,
    /// From the stop to the first `ok` completion after it (ns).
    pub recovery: Option<u64>,
    /// How long the fault kept clients from succeeding, measured from its
    /// start; absent in `results.json` written before these figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime: Option<Downtime>,
}

/// A fault window's down-time, in milliseconds and, where the run's
/// election timeout is known, in election timeouts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Downtime {
    /// From the fault's start to the first `ok` completion at or after it
    /// (ms). `None` exactly when `resumed` is false.
    pub ms: Option<f64>,
    /// `ms` in election timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elections: Option<f64>,
    /// Whether any `ok` completion came at or after the start before the
    /// history ended; false: the clients never succeeded again, and there
    /// is no figure for `ms` (not a made-up one).
    pub resumed: bool,
    /// The longest stretch without an `ok` completion inside the window:
    /// from its start, between oks, and to its stop (or to the end of the
    /// history if it never stopped) (ms).
    pub longest_gap_ms: f64,
    /// `longest_gap_ms` in election timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_gap_elections: Option<f64>,
}

impl Downtime {
    /// The figure a bound holds a window to: the larger of `ms` and
    /// `longest_gap_ms`; `None` if the clients never succeeded again
    /// (no bound is met then).
    pub fn worst_ms(&self) -> Option<f64> {
        self.ms.map(|ms| ms.max(self.longest_gap_ms))
    }

    /// [`Downtime::worst_ms`] in election timeouts, where known.
    pub fn worst_elections(&self) -> Option<f64> {
        match (self.elections, self.longest_gap_elections) {
            (Some(a), Some(b)) if self.resumed => Some(a.max(b)),
            _ => None,
        }
    }
}

/// The longest stretch of the run without an `ok` completion.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outage {
    pub start: u64,
    pub end: u64,
    pub seconds: f64,
}

/// Everything the report shows, as `results.json` stores it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub operations: u64,
    /// f -> outcome -> count (`open`: never completed).
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    pub latency: Vec<LatencyRow>,
    pub seconds: Vec<Second>,
    pub faults: Vec<FaultWindow>,
    pub longest_without_ok: Option<Outage>,
    /// The election timeout the down-times are measured in (ms), when the
    /// caller knew it (`synod run` does for Synod nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_timeout_ms: Option<f64>,
    /// Overall share of completed ops the system answered: `ok`, plus
    /// the definite answers of the state machine (a cas that compared and
    /// found another value). Timeouts (`info`), refusals (`not-proposed`)
    /// and every other failure count against it. (Before this figure,
    /// `results.json` had the plain ok share here.)
    pub availability: Option<f64>,
    /// Completions by the node the client spoke to; empty where the
    /// history does not say (imports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_node: Vec<NodeRow>,
    /// Throughput by operation type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_type: Vec<TypeRow>,
    /// Overall share of completed ops that are `ok` (absent in
    /// `results.json` written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_share: Option<f64>,
    /// Time of the first and last event (ns).
    pub start: u64,
    pub end: u64,
    /// Completed ops for the latency scatter: every op while there are
    /// few, then an even sample of at most [`MAX_SAMPLES`] ok ops and as
    /// many others.
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// (f, outcome) -> histogram of latency in ns.
    #[serde(skip)]
    pub histograms: BTreeMap<(String, String), Histogram<u64>>,
}

/// The most ok ops (and, apart, other ops) the scatter keeps.
pub const MAX_SAMPLES: usize = 20_000;

/// `812.0 ms (2.71 election timeouts)`, or the ms alone.
pub fn ms_and_elections(ms: f64, elections: Option<f64>) -> String {
    match elections {
        Some(e) => format!("{ms:.1} ms ({e:.2} election timeouts)"),
        None => format!("{ms:.1} ms"),
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// HdrHistogram's percentile spectrum text (`.hgrm`), values in ms.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - q))
        } else {
            format!("{:>14}", "inf")
        };
        let _ = writeln!(
            s,
            "{:>12.3} {:>14.12} {:>10} {inv}",
            ms(v.value_iterated_to()),
            q,
            v.count_since_last_iteration()
        );
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1e6,
        h.stdev() / 1e6
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        ms(h.max()),
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    );
    s
}
