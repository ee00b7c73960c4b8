//! Reports from any history: counts, latency distributions, throughput,
//! availability, fault windows and recovery.
//!
//! Everything here is a function of the history alone (no verdict needed),
//! so reports work for imported histories too. Latency is completion time
//! minus invocation time, recorded in hdrhistogram (3 significant figures)
//! per operation and outcome. Availability is the share of *completed*
//! operations that are `ok`; a fault window is a `start-X` nemesis event up
//! to the matching `stop-X` (or the end of the history).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::history::{EventType, History, Process};

/// One completed (or never completed) client operation.
#[derive(Clone, Debug)]
pub struct Completed {
    pub f: String,
    pub process: u64,
    pub invoke: u64,
    /// Completion time; `None` if the run stopped first.
    pub complete: Option<u64>,
    pub outcome: EventType,
}

impl Completed {
    pub fn latency(&self) -> Option<u64> {
        self.complete.map(|c| c.saturating_sub(self.invoke))
    }
}

/// Latency percentiles of one (f, outcome), in milliseconds.
#[derive(Clone, Debug, Serialize)]
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
#[derive(Clone, Debug, Default, Serialize)]
pub struct Second {
    /// Seconds since the run started, at the bucket's start.
    pub t: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// ok / (ok + fail + info); `None` if nothing completed.
    pub availability: Option<f64>,
    /// Latency quantiles (ms) of the ops completing in this second.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// A fault the nemesis started (and maybe stopped).
#[derive(Clone, Debug, Serialize)]
pub struct FaultWindow {
    /// `partition` for `start-partition`; the nemesis' own name otherwise.
    pub name: String,
    pub start: u64,
    /// `None`: never stopped before the history ended.
    pub stop: Option<u64>,
    pub completed: u64,
    pub ok: u64,
    pub availability: Option<f64>,
    /// From the stop to the first `ok` completion after it (ns).
    pub recovery: Option<u64>,
}

/// The longest stretch of the run without an `ok` completion.
#[derive(Clone, Debug, Serialize)]
pub struct Outage {
    pub start: u64,
    pub end: u64,
    pub seconds: f64,
}

/// Everything the report shows, as `results.json` stores it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub operations: u64,
    /// f -> outcome -> count (`open`: never completed).
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    pub latency: Vec<LatencyRow>,
    pub seconds: Vec<Second>,
    pub faults: Vec<FaultWindow>,
    pub longest_without_ok: Option<Outage>,
    /// Overall share of completed ops that are ok.
    pub availability: Option<f64>,
    /// Time of the first and last event (ns).
    pub start: u64,
    pub end: u64,
    #[serde(skip)]
    pub ops: Vec<Completed>,
    /// (f, outcome) -> histogram of latency in ns.
    #[serde(skip)]
    pub histograms: BTreeMap<(String, String), Histogram<u64>>,
}

/// The most time buckets a report keeps (a day and more of seconds).
const MAX_BUCKETS: u64 = 100_000;

fn histogram() -> Histogram<u64> {
    // 1 ns .. 1 hour at 3 significant figures; saturating records clamp
    // anything beyond, and these bounds are valid, so creation cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .unwrap_or_else(|e| unreachable!("constant histogram bounds are valid: {e}"))
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Pairs invocations with completions (open ones last).
pub fn operations(history: &History) -> Vec<Completed> {
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    let mut out: Vec<Completed> = Vec::new();
    for e in &history.events {
        let Process::Client(p) = e.process else {
            continue;
        };
        if e.kind == EventType::Invoke {
            open.insert(p, out.len());
            out.push(Completed {
                f: e.f.to_string(),
                process: p,
                invoke: e.time,
                complete: None,
                outcome: EventType::Info,
            });
        } else if let Some(i) = open.remove(&p) {
            out[i].complete = Some(e.time);
            out[i].outcome = e.kind;
        }
    }
    out
}

fn outcome_name(op: &Completed) -> &'static str {
    match (op.complete, op.outcome) {
        (None, _) => "open",
        (_, EventType::Ok) => "ok",
        (_, EventType::Fail) => "fail",
        _ => "info",
    }
}

/// Computes the report of a history.
pub fn report(history: &History) -> Report {
    let ops = operations(history);
    let start = history.events.first().map(|e| e.time).unwrap_or(0);
    let end = history.events.last().map(|e| e.time).unwrap_or(0);
    let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut histograms: BTreeMap<(String, String), Histogram<u64>> = BTreeMap::new();
    // One bucket per second, unless the run is absurdly long (or its
    // times are garbage): then wider buckets, so memory stays bounded.
    let span = end.saturating_sub(start);
    let bucket_ns = (span / MAX_BUCKETS).max(1_000_000_000);
    let span_s = (span / bucket_ns) as usize + 1;
    let mut seconds: Vec<Second> = (0..span_s)
        .map(|t| Second {
            t: t as u64 * (bucket_ns / 1_000_000_000),
            ..Second::default()
        })
        .collect();
    let mut per_second_hist: Vec<Option<Histogram<u64>>> = vec![None; span_s];
    let mut ok_times: Vec<u64> = Vec::new();
    for op in &ops {
        let outcome = outcome_name(op);
        *counts
            .entry(op.f.clone())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
        let (Some(done), Some(lat)) = (op.complete, op.latency()) else {
            continue;
        };
        histograms
            .entry((op.f.clone(), outcome.to_string()))
            .or_insert_with(histogram)
            .saturating_record(lat.max(1));
        let s = ((done.saturating_sub(start)) / bucket_ns) as usize;
        let s = s.min(span_s - 1);
        match op.outcome {
            EventType::Ok => {
                seconds[s].ok += 1;
                ok_times.push(done);
            }
            EventType::Fail => seconds[s].fail += 1,
            _ => seconds[s].info += 1,
        }
        per_second_hist[s]
            .get_or_insert_with(histogram)
            .saturating_record(lat.max(1));
    }
    for (sec, h) in seconds.iter_mut().zip(&per_second_hist) {
        let n = sec.ok + sec.fail + sec.info;
        sec.availability = (n > 0).then(|| sec.ok as f64 / n as f64);
        if let Some(h) = h {
            sec.p50 = Some(ms(h.value_at_quantile(0.5)));
            sec.p99 = Some(ms(h.value_at_quantile(0.99)));
            sec.max = Some(ms(h.max()));
        }
    }
    let latency = histograms
        .iter()
        .map(|((f, outcome), h)| LatencyRow {
            f: f.clone(),
            outcome: outcome.clone(),
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1e6,
        })
        .collect();
    ok_times.sort_unstable();
    let faults = fault_windows(history, &ops, &ok_times, end);
    let longest_without_ok = longest_gap(&ok_times, start, end);
    let completed = ops.iter().filter(|o| o.complete.is_some()).count();
    let ok = ok_times.len();
    Report {
        operations: ops.len() as u64,
        counts,
        latency,
        seconds,
        faults,
        longest_without_ok,
        availability: (completed > 0).then(|| ok as f64 / completed as f64),
        start,
        end,
        ops,
        histograms,
    }
}

/// `start-partition` -> `partition`; a bare `start` names the nemesis.
fn fault_name(f: &str, prefix: &str) -> Option<String> {
    let rest = f.strip_prefix(prefix)?;
    let rest = rest.trim_start_matches(['-', '_']);
    Some(if rest.is_empty() {
        "nemesis".to_string()
    } else {
        rest.to_string()
    })
}

fn fault_windows(
    history: &History,
    ops: &[Completed],
    ok_times: &[u64],
    end: u64,
) -> Vec<FaultWindow> {
    let mut windows: Vec<FaultWindow> = Vec::new();
    for e in &history.events {
        if e.process != Process::Nemesis {
            continue;
        }
        let f = e.f.as_str();
        if let Some(name) = fault_name(f, "start") {
            // Jepsen logs a start twice (before and after it acts): one
            // window per fault, so a repeated start of an open one is
            // ignored.
            if windows.iter().any(|w| w.name == name && w.stop.is_none()) {
                continue;
            }
            windows.push(FaultWindow {
                name,
                start: e.time,
                stop: None,
                completed: 0,
                ok: 0,
                availability: None,
                recovery: None,
            });
        } else if let Some(name) = fault_name(f, "stop") {
            if let Some(w) = windows
                .iter_mut()
                .rev()
                .find(|w| w.name == name && w.stop.is_none())
            {
                w.stop = Some(e.time);
            }
        }
    }
    for w in &mut windows {
        let stop = w.stop.unwrap_or(end);
        for op in ops {
            if let Some(done) = op.complete {
                if done >= w.start && done <= stop {
                    w.completed += 1;
                    if op.outcome == EventType::Ok {
                        w.ok += 1;
                    }
                }
            }
        }
        w.availability = (w.completed > 0).then(|| w.ok as f64 / w.completed as f64);
        if let Some(stop) = w.stop {
            let i = ok_times.partition_point(|&t| t < stop);
            w.recovery = ok_times.get(i).map(|&t| t - stop);
        }
    }
    windows
}

fn longest_gap(ok_times: &[u64], start: u64, end: u64) -> Option<Outage> {
    let mut best: Option<(u64, u64)> = None;
    let mut prev = start;
    for &t in ok_times.iter().chain(std::iter::once(&end)) {
        if best.is_none_or(|(a, b)| t.saturating_sub(prev) > b - a) {
            best = Some((prev, t.max(prev)));
        }
        prev = t;
    }
    best.map(|(a, b)| Outage {
        start: a,
        end: b,
        seconds: (b - a) as f64 / 1e9,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Event, Fun};
    use serde_json::Value;

    fn ev(time: u64, process: Process, kind: EventType, f: Fun) -> Event {
        Event {
            index: 0,
            time,
            process,
            kind,
            f,
            key: None,
            value: Value::Null,
            error: None,
            node: None,
        }
    }

    #[test]
    fn availability_windows_and_recovery() {
        let s = 1_000_000_000u64;
        let c = Process::Client;
        let h = History::new(vec![
            ev(0, c(1), EventType::Invoke, Fun::Read),
            ev(s / 10, c(1), EventType::Ok, Fun::Read),
            ev(
                s,
                Process::Nemesis,
                EventType::Info,
                Fun::Nemesis("start-partition".into()),
            ),
            ev(s + 1, c(1), EventType::Invoke, Fun::Read),
            ev(2 * s, c(1), EventType::Fail, Fun::Read),
            ev(
                3 * s,
                Process::Nemesis,
                EventType::Info,
                Fun::Nemesis("stop-partition".into()),
            ),
            ev(3 * s + 1, c(1), EventType::Invoke, Fun::Read),
            ev(4 * s, c(1), EventType::Ok, Fun::Read),
        ]);
        let r = report(&h);
        assert_eq!(r.counts["read"]["ok"], 2);
        assert_eq!(r.counts["read"]["fail"], 1);
        assert_eq!(r.faults.len(), 1);
        let w = &r.faults[0];
        assert_eq!(w.name, "partition");
        assert_eq!(w.availability, Some(0.0));
        assert_eq!(w.recovery, Some(s));
        let gap = r.longest_without_ok.unwrap();
        assert_eq!((gap.start, gap.end), (s / 10, 4 * s));
        assert_eq!(r.availability, Some(2.0 / 3.0));
        assert!(hgrm(&r.histograms[&("read".into(), "ok".into())]).contains("Total count"));
    }
}
