//! Building a [`Report`] from events as they stream past: the aggregates
//! (counts, latency histograms, time buckets, a decimated sample) and the
//! fault windows with their availability, recovery and down-time.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::{
    ms, Downtime, FaultWindow, LatencyRow, NodeRow, Outage, Report, Sample, Second, TypeRow,
    MAX_SAMPLES,
};
use crate::fxhash::FxHashMap;
use crate::history::{Event, EventType, Fun, History, Process};

/// The most time buckets a report keeps (a day and more of seconds).
const MAX_BUCKETS: usize = 100_000;

fn histogram() -> Histogram<u64> {
    // 1 ns .. 1 hour at 3 significant figures; saturating records clamp
    // anything beyond, and these bounds are valid, so creation cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .unwrap_or_else(|e| unreachable!("constant histogram bounds are valid: {e}"))
}

/// Keeps every `stride`-th of a stream, doubling the stride (and halving
/// what it kept) whenever it holds more than its cap: an even sample of a
/// stream whose length is not known in advance.
#[derive(Default)]
struct Decimator {
    kept: Vec<(u64, Sample)>,
    stride: u64,
    seen: u64,
}

impl Decimator {
    fn push(&mut self, s: Sample) {
        let stride = self.stride.max(1);
        if self.seen.is_multiple_of(stride) {
            self.kept.push((self.seen, s));
            if self.kept.len() > MAX_SAMPLES {
                let wider = stride * 2;
                self.kept.retain(|(n, _)| n.is_multiple_of(wider));
                self.stride = wider;
            }
        }
        self.seen += 1;
    }
}

/// The completions within one time bucket.
#[derive(Clone, Default)]
struct Bucket {
    ok: u64,
    mismatch: u64,
    fail: u64,
    info: u64,
    /// ok completions by operation: a handful, so a scan.
    ok_by_f: Vec<(String, u64)>,
    latency: Option<Histogram<u64>>,
}

/// Adds `n` to `name`'s count in a short list.
fn bump(list: &mut Vec<(String, u64)>, name: &str, n: u64) {
    match list.iter_mut().find(|(f, _)| f == name) {
        Some((_, c)) => *c += n,
        None => list.push((name.to_string(), n)),
    }
}

impl Bucket {
    fn absorb(&mut self, other: Bucket) {
        self.ok += other.ok;
        self.mismatch += other.mismatch;
        self.fail += other.fail;
        self.info += other.info;
        for (f, n) in other.ok_by_f {
            bump(&mut self.ok_by_f, &f, n);
        }
        if let Some(h) = other.latency {
            match &mut self.latency {
                Some(mine) => {
                    // Same bounds on both sides, so adding cannot fail.
                    let _ = mine.add(&h);
                }
                None => self.latency = Some(h),
            }
        }
    }
}

/// What a window's down-time is built from as the events stream past
/// (one per window, same index).
#[derive(Clone, Copy, Default)]
struct Track {
    /// The first ok completion at or after the window's start.
    first_ok: Option<u64>,
    /// The last ok inside the window so far (its start before any).
    last_ok: u64,
    /// The longest stretch without an ok inside the window so far.
    gap: u64,
}

/// Builds a [`Report`] from events as they stream past, holding only the
/// open invocations, the aggregates and a sample of latencies: a history
/// of any size is reported on without being held.
pub struct ReportBuilder {
    /// Process -> (f, invocation time).
    open: FxHashMap<u64, (Fun, u64)>,
    start: Option<u64>,
    end: u64,
    operations: u64,
    completed: u64,
    ok: u64,
    /// Completed cas ops that compared and found another value.
    mismatch: u64,
    /// Per node the client spoke to: completed, ok, latency of the ok ops.
    nodes: Vec<(String, u64, u64, Histogram<u64>)>,
    counts: BTreeMap<String, BTreeMap<String, u64>>,
    /// (f, outcome, latency): a handful, so a scan beats hashing strings.
    histograms: Vec<(String, &'static str, Histogram<u64>)>,
    /// One second each at first; twice as wide each time there would be
    /// more than [`MAX_BUCKETS`].
    bucket_ns: u64,
    buckets: Vec<Bucket>,
    ok_samples: Decimator,
    other_samples: Decimator,
    windows: Vec<FaultWindow>,
    /// Windows a completion may still count in: open ones, and ones that
    /// stopped at the latest time seen.
    active: Vec<usize>,
    /// Stopped windows whose first ok after the stop is still to come.
    awaiting_recovery: Vec<usize>,
    /// Per window: its down-time so far.
    tracks: Vec<Track>,
    /// Windows whose first ok at or after the start is still to come.
    awaiting_first_ok: Vec<usize>,
    /// The run's election timeout (ms), for down-time in its units.
    election_timeout_ms: Option<f64>,
    last_ok: Option<u64>,
    /// The longest stretch without an ok so far, and where the current one
    /// began.
    longest_gap: Option<(u64, u64)>,
}

impl Default for ReportBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn outcome_name(kind: EventType) -> &'static str {
    match kind {
        EventType::Ok => "ok",
        EventType::Fail => "fail",
        EventType::Info => "info",
        EventType::Invoke => "open",
    }
}

impl ReportBuilder {
    pub fn new() -> Self {
        ReportBuilder {
            open: FxHashMap::default(),
            start: None,
            end: 0,
            operations: 0,
            completed: 0,
            ok: 0,
            mismatch: 0,
            nodes: Vec::new(),
            counts: BTreeMap::new(),
            histograms: Vec::new(),
            bucket_ns: 1_000_000_000,
            buckets: Vec::new(),
            ok_samples: Decimator::default(),
            other_samples: Decimator::default(),
            windows: Vec::new(),
            active: Vec::new(),
            awaiting_recovery: Vec::new(),
            tracks: Vec::new(),
            awaiting_first_ok: Vec::new(),
            election_timeout_ms: None,
            last_ok: None,
            longest_gap: None,
        }
    }

    /// Down-times are also given in units of this election timeout (ms);
    /// a timeout that is not a positive number is left out.
    pub fn with_election_timeout_ms(mut self, ms: Option<f64>) -> Self {
        self.election_timeout_ms = ms.filter(|t| t.is_finite() && *t > 0.0);
        self
    }

    fn count(&mut self, f: &Fun, outcome: &str) {
        let by_outcome = match self.counts.get_mut(f.as_str()) {
            Some(m) => m,
            None => self.counts.entry(f.as_str().to_string()).or_default(),
        };
        match by_outcome.get_mut(outcome) {
            Some(n) => *n += 1,
            None => {
                by_outcome.insert(outcome.to_string(), 1);
            }
        }
    }

    /// The bucket of time `t`, widening the buckets if need be.
    fn bucket(&mut self, t: u64) -> &mut Bucket {
        let start = self.start.unwrap_or(t);
        let mut i = (t.saturating_sub(start) / self.bucket_ns) as usize;
        while i >= MAX_BUCKETS {
            let old = std::mem::take(&mut self.buckets);
            let mut pairs = old.into_iter();
            while let Some(mut a) = pairs.next() {
                if let Some(b) = pairs.next() {
                    a.absorb(b);
                }
                self.buckets.push(a);
            }
            self.bucket_ns = self.bucket_ns.saturating_mul(2);
            i = (t.saturating_sub(start) / self.bucket_ns) as usize;
        }
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, Bucket::default());
        }
        &mut self.buckets[i]
    }

    /// Takes the next event of the history.
    pub fn push(&mut self, e: &Event) {
        self.start.get_or_insert(e.time);
        self.end = e.time;
        match e.process {
            Process::Nemesis => self.nemesis(e),
            Process::Client(p) if e.kind == EventType::Invoke => {
                self.operations += 1;
                self.open.insert(p, (e.f.clone(), e.time));
            }
            Process::Client(p) => {
                if let Some((f, invoke)) = self.open.remove(&p) {
                    let mismatch = e.kind == EventType::Fail && e.says_mismatch();
                    self.complete(&f, invoke, e.time, e.kind, mismatch);
                    if let Some(node) = &e.node {
                        self.at_node(node, e.kind, e.time.saturating_sub(invoke).max(1));
                    }
                }
            }
        }
    }

    /// One completion at `node`.
    fn at_node(&mut self, node: &str, kind: EventType, latency: u64) {
        let i = match self.nodes.iter().position(|(n, ..)| n == node) {
            Some(i) => i,
            None => {
                self.nodes.push((node.to_string(), 0, 0, histogram()));
                self.nodes.len() - 1
            }
        };
        let (_, completed, ok, h) = &mut self.nodes[i];
        *completed += 1;
        if kind == EventType::Ok {
            *ok += 1;
            h.saturating_record(latency);
        }
    }

    /// `mismatch`: a failed cas that compared and found another value.
    fn complete(&mut self, f: &Fun, invoke: u64, done: u64, kind: EventType, mismatch: bool) {
        let outcome = outcome_name(kind);
        self.count(f, outcome);
        let latency = done.saturating_sub(invoke).max(1);
        match self
            .histograms
            .iter_mut()
            .find(|(name, o, _)| name == f.as_str() && *o == outcome)
        {
            Some((_, _, h)) => h.saturating_record(latency),
            None => {
                let mut h = histogram();
                h.saturating_record(latency);
                self.histograms.push((f.as_str().to_string(), outcome, h));
            }
        }
        let b = self.bucket(done);
        match kind {
            EventType::Ok => {
                b.ok += 1;
                bump(&mut b.ok_by_f, f.as_str(), 1);
            }
            EventType::Fail => b.fail += 1,
            _ => b.info += 1,
        }
        b.mismatch += u64::from(mismatch);
        b.latency
            .get_or_insert_with(histogram)
            .saturating_record(latency);
        let sample = Sample {
            complete: done,
            latency,
            outcome: kind,
        };
        self.completed += 1;
        self.mismatch += u64::from(mismatch);
        if kind == EventType::Ok {
            self.ok += 1;
            self.ok_samples.push(sample);
            let from = self.last_ok.or(self.start).unwrap_or(done);
            self.gap(from, done);
            self.last_ok = Some(done);
            let windows = &mut self.windows;
            self.awaiting_recovery.retain(|&w| {
                let stop = windows[w].stop.unwrap_or(done);
                windows[w].recovery = Some(done.saturating_sub(stop));
                false
            });
            let tracks = &mut self.tracks;
            self.awaiting_first_ok.retain(|&w| {
                if windows[w].start > done {
                    return true;
                }
                tracks[w].first_ok = Some(done);
                false
            });
        } else {
            self.other_samples.push(sample);
        }
        let windows = &mut self.windows;
        self.active
            .retain(|&w| windows[w].stop.is_none_or(|stop| stop >= done));
        for &w in &self.active {
            let (w, track) = (&mut self.windows[w], &mut self.tracks[w]);
            if w.start <= done {
                w.completed += 1;
                w.mismatch += u64::from(mismatch);
                if kind == EventType::Ok {
                    w.ok += 1;
                    track.gap = track.gap.max(done.saturating_sub(track.last_ok));
                    track.last_ok = track.last_ok.max(done);
                }
            }
        }
    }

    fn gap(&mut self, from: u64, to: u64) {
        if self
            .longest_gap
            .is_none_or(|(a, b)| to.saturating_sub(from) > b - a)
        {
            self.longest_gap = Some((from, to.max(from)));
        }
    }

    fn nemesis(&mut self, e: &Event) {
        let f = e.f.as_str();
        if let Some(name) = fault_name(f, "start") {
            // Jepsen logs a start twice (before and after it acts): one
            // window per fault, so a repeated start of an open one is
            // ignored.
            if self
                .windows
                .iter()
                .any(|w| w.name == name && w.stop.is_none())
            {
                return;
            }
            let i = self.windows.len();
            self.active.push(i);
            let first_ok = (self.last_ok == Some(e.time)).then_some(e.time);
            if first_ok.is_none() {
                self.awaiting_first_ok.push(i);
            }
            self.tracks.push(Track {
                first_ok,
                last_ok: e.time,
                gap: 0,
            });
            self.windows.push(FaultWindow {
                name,
                start: e.time,
                stop: None,
                completed: 0,
                ok: 0,
                mismatch: 0,
                availability: None,
                ok_share: None,
                recovery: None,
                downtime: None,
            });
        } else if let Some(name) = fault_name(f, "stop") {
            if let Some(i) = self
                .windows
                .iter()
                .rposition(|w| w.name == name && w.stop.is_none())
            {
                self.windows[i].stop = Some(e.time);
                let track = &mut self.tracks[i];
                track.gap = track.gap.max(e.time.saturating_sub(track.last_ok));
                if self.last_ok == Some(e.time) {
                    self.windows[i].recovery = Some(0);
                } else {
                    self.awaiting_recovery.push(i);
                }
            }
        }
    }

    /// The report of everything pushed so far.
    pub fn finish(mut self) -> Report {
        let start = self.start.unwrap_or(0);
        let end = self.end;
        // Invocations the run never completed.
        let open: Vec<Fun> = self.open.drain().map(|(_, (f, _))| f).collect();
        for f in &open {
            self.count(f, "open");
        }
        let from = self.last_ok.unwrap_or(start);
        self.gap(from, end);
        // Buckets up to the end of the history, completions or not.
        let last = (end.saturating_sub(start) / self.bucket_ns) as usize;
        if self.buckets.len() <= last {
            self.bucket(end);
        }
        let width_s = self.bucket_ns / 1_000_000_000;
        let seconds = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let n = b.ok + b.fail + b.info;
                let q = |f: fn(&Histogram<u64>) -> u64| b.latency.as_ref().map(|h| ms(f(h)));
                Second {
                    t: i as u64 * width_s,
                    ok: b.ok,
                    fail: b.fail,
                    info: b.info,
                    mismatch: b.mismatch,
                    availability: share(b.ok + b.mismatch, n),
                    ok_share: share(b.ok, n),
                    ok_by_f: b.ok_by_f.iter().cloned().collect(),
                    p50: q(|h| h.value_at_quantile(0.5)),
                    p99: q(|h| h.value_at_quantile(0.99)),
                    max: q(|h| h.max()),
                }
            })
            .collect();
        let histograms: BTreeMap<(String, String), Histogram<u64>> = self
            .histograms
            .into_iter()
            .map(|(f, outcome, h)| ((f, outcome.to_string()), h))
            .collect();
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
        let unit = self.election_timeout_ms;
        let elections = |ms: f64| unit.map(|u| ms / u);
        for (w, track) in self.windows.iter_mut().zip(&self.tracks) {
            w.availability = share(w.ok + w.mismatch, w.completed);
            w.ok_share = share(w.ok, w.completed);
            // A window never stopped runs to the end of the history.
            let gap = match w.stop {
                Some(_) => track.gap,
                None => track.gap.max(end.saturating_sub(track.last_ok)),
            };
            let down = track.first_ok.map(|t| ms(t.saturating_sub(w.start)));
            w.downtime = Some(Downtime {
                ms: down,
                elections: down.and_then(elections),
                resumed: down.is_some(),
                longest_gap_ms: ms(gap),
                longest_gap_elections: elections(ms(gap)),
            });
        }
        let mut samples: Vec<Sample> = self
            .ok_samples
            .kept
            .into_iter()
            .chain(self.other_samples.kept)
            .map(|(_, s)| s)
            .collect();
        samples.sort_by_key(|s| s.complete);
        let mut by_type: Vec<TypeRow> = Vec::new();
        for b in &self.buckets {
            for (f, n) in &b.ok_by_f {
                match by_type.iter_mut().find(|t| &t.f == f) {
                    Some(t) => {
                        t.ok += n;
                        t.peak_per_second = t.peak_per_second.max(*n / width_s.max(1));
                    }
                    None => by_type.push(TypeRow {
                        f: f.clone(),
                        ok: *n,
                        ok_per_second: 0.0,
                        peak_per_second: *n / width_s.max(1),
                    }),
                }
            }
        }
        let run_s = (end.saturating_sub(start) as f64 / 1e9).max(1e-9);
        for t in &mut by_type {
            t.ok_per_second = t.ok as f64 / run_s;
        }
        by_type.sort_by(|a, b| a.f.cmp(&b.f));
        let mut by_node: Vec<NodeRow> = self
            .nodes
            .iter()
            .map(|(node, completed, ok, h)| NodeRow {
                node: node.clone(),
                completed: *completed,
                ok: *ok,
                p50: if *ok > 0 {
                    ms(h.value_at_quantile(0.5))
                } else {
                    0.0
                },
                p99: if *ok > 0 {
                    ms(h.value_at_quantile(0.99))
                } else {
                    0.0
                },
                max: if *ok > 0 { ms(h.max()) } else { 0.0 },
            })
            .collect();
        by_node.sort_by(|a, b| a.node.cmp(&b.node));
        Report {
            by_node,
            by_type,
            operations: self.operations,
            counts: self.counts,
            latency,
            seconds,
            faults: self.windows,
            longest_without_ok: self.longest_gap.map(|(a, b)| Outage {
                start: a,
                end: b,
                seconds: (b - a) as f64 / 1e9,
            }),
            election_timeout_ms: unit,
            availability: share(self.ok + self.mismatch, self.completed),
            ok_share: share(self.ok, self.completed),
            start,
            end,
            samples,
            histograms,
        }
    }
}

/// `part / whole`; `None` for nothing at all.
fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Computes the report of a whole history in memory.
pub fn report(history: &History) -> Report {
    let mut b = ReportBuilder::new();
    for e in &history.events {
        b.push(e);
    }
    b.finish()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::hgrm;
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
            mismatch: false,
            not_proposed: false,
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

    /// Availability counts what the system answered: ok, and a cas that
    /// compared and found another value; timeouts, refusals (never
    /// proposed) and other failures count against it. The plain ok share
    /// stays beside it.
    #[test]
    fn a_cas_mismatch_is_an_answer_and_a_refusal_or_timeout_is_not() {
        let c = Process::Client;
        let done = |t, kind, f: Fun, mismatch, not_proposed| Event {
            mismatch,
            not_proposed,
            ..ev(t, c(1), kind, f)
        };
        let mut events = Vec::new();
        let outcomes = [
            (EventType::Ok, Fun::Write, false, false),
            (EventType::Fail, Fun::Cas, true, false), // mismatch: an answer
            (EventType::Fail, Fun::Cas, false, true), // never proposed
            (EventType::Info, Fun::Write, false, false), // timed out
        ];
        for (i, (kind, f, mismatch, refused)) in outcomes.into_iter().enumerate() {
            let t = i as u64 * 10;
            events.push(ev(t, c(1), EventType::Invoke, f.clone()));
            events.push(done(t + 5, kind, f, mismatch, refused));
        }
        let r = report(&History::new(events));
        assert_eq!(r.availability, Some(0.5));
        assert_eq!(r.ok_share, Some(0.25));
        let second = &r.seconds[0];
        assert_eq!(
            (second.mismatch, second.availability, second.ok_share),
            (1, Some(0.5), Some(0.25))
        );
        // Synod's own histories from before the `mismatch` field say it in
        // the error; that reads the same.
        let mut old = done(5, EventType::Fail, Fun::Cas, false, false);
        old.error = Some("cas-mismatch: the key holds 3".into());
        let r = report(&History::new(vec![
            ev(0, c(1), EventType::Invoke, Fun::Cas),
            old,
        ]));
        assert_eq!((r.availability, r.ok_share), (Some(1.0), Some(0.0)));
    }

    /// Latency by the node the client spoke to, and throughput by type.
    #[test]
    fn nodes_and_operation_types_are_reported_apart() {
        let c = Process::Client;
        let at = |t, kind, f: Fun, node: &str| Event {
            node: Some(node.into()),
            ..ev(t, c(1), kind, f)
        };
        let s = 1_000_000_000u64;
        let h = History::new(vec![
            ev(0, c(1), EventType::Invoke, Fun::Read),
            at(2 * MS, EventType::Ok, Fun::Read, "n1"),
            ev(10 * MS, c(1), EventType::Invoke, Fun::Write),
            at(50 * MS, EventType::Ok, Fun::Write, "n2"),
            ev(s, c(1), EventType::Invoke, Fun::Read),
            at(s + 3 * MS, EventType::Ok, Fun::Read, "n1"),
            ev(s + 10 * MS, c(1), EventType::Invoke, Fun::Write),
            at(s + 20 * MS, EventType::Info, Fun::Write, "n2"),
            ev(2 * s, c(1), EventType::Invoke, Fun::Read),
            at(2 * s + MS, EventType::Ok, Fun::Read, "n1"),
        ]);
        let r = report(&h);
        let n: Vec<(&str, u64, u64)> = r
            .by_node
            .iter()
            .map(|n| (n.node.as_str(), n.completed, n.ok))
            .collect();
        assert_eq!(n, [("n1", 3, 3), ("n2", 2, 1)]);
        // n2's one ok took 40 ms; n1's at most 3.
        assert!((r.by_node[1].p50 - 40.0).abs() < 0.1, "{:?}", r.by_node);
        assert!(r.by_node[0].max < 3.1, "{:?}", r.by_node);
        let t: Vec<(&str, u64, u64)> = r
            .by_type
            .iter()
            .map(|t| (t.f.as_str(), t.ok, t.peak_per_second))
            .collect();
        assert_eq!(t, [("read", 3, 1), ("write", 1, 1)]);
        assert_eq!(r.seconds[0].ok_by_f.get("write"), Some(&1));
        assert_eq!(r.seconds[1].ok_by_f.get("write"), None);
    }

    const MS: u64 = 1_000_000;

    /// A history from `(time in ms, what)`: `ok` and `fail` are reads
    /// completing then (each by its own client, invoked at 0), anything
    /// else a nemesis event; the report with a 100 ms election timeout.
    fn windows(steps: &[(u64, &str)]) -> Report {
        let mut events = Vec::new();
        for (p, &(t, what)) in steps.iter().enumerate() {
            let (p, t) = (p as u64, t * MS);
            match what {
                "ok" | "fail" => {
                    let kind = if what == "ok" {
                        EventType::Ok
                    } else {
                        EventType::Fail
                    };
                    events.push(ev(0, Process::Client(p), EventType::Invoke, Fun::Read));
                    events.push(ev(t, Process::Client(p), kind, Fun::Read));
                }
                f => events.push(ev(
                    t,
                    Process::Nemesis,
                    EventType::Info,
                    Fun::Nemesis(f.into()),
                )),
            }
        }
        events.sort_by_key(|e| e.time);
        let mut b = ReportBuilder::new().with_election_timeout_ms(Some(100.0));
        for e in &events {
            b.push(e);
        }
        b.finish()
    }

    fn downtime(r: &Report, i: usize) -> Downtime {
        r.faults[i].downtime.clone().expect("every window has one")
    }

    #[test]
    fn downtime_runs_from_the_start_to_the_first_ok_mid_window() {
        let r = windows(&[
            (500, "ok"),
            (1000, "start-partition"),
            (1500, "fail"),
            (2000, "ok"),
            (2500, "ok"),
            (3000, "stop-partition"),
            (3200, "ok"),
        ]);
        let d = downtime(&r, 0);
        assert_eq!(d.ms, Some(1000.0));
        assert!(d.resumed);
        assert_eq!(d.elections, Some(10.0));
        // Start to the first ok is the longest stretch; after the last ok
        // the window ran on for 500 ms.
        assert_eq!(d.longest_gap_ms, 1000.0);
        assert_eq!(d.longest_gap_elections, Some(10.0));
        assert_eq!(d.worst_ms(), Some(1000.0));
        assert_eq!(d.worst_elections(), Some(10.0));
        // The stop-to-first-ok figure is kept.
        assert_eq!(r.faults[0].recovery, Some(200 * MS));
        assert_eq!(r.election_timeout_ms, Some(100.0));
    }

    #[test]
    fn a_gap_inside_the_window_longer_than_the_start_gap_is_the_worst() {
        let r = windows(&[
            (1000, "start-kill"),
            (1100, "ok"),
            (1200, "ok"),
            (3200, "ok"),
            (4000, "stop-kill"),
        ]);
        let d = downtime(&r, 0);
        assert_eq!(d.ms, Some(100.0));
        assert_eq!(d.longest_gap_ms, 2000.0);
        assert_eq!(d.worst_ms(), Some(2000.0));
        assert_eq!(d.worst_elections(), Some(20.0));
    }

    #[test]
    fn no_ok_after_the_start_is_said_not_made_up() {
        // Stopped, but nothing succeeded before the history ended.
        let r = windows(&[
            (200, "ok"),
            (1000, "start-pause"),
            (1500, "fail"),
            (2000, "stop-pause"),
            (2600, "fail"),
        ]);
        let d = downtime(&r, 0);
        assert_eq!(d.ms, None);
        assert_eq!(d.elections, None);
        assert!(!d.resumed);
        assert_eq!(d.longest_gap_ms, 1000.0, "start to stop");
        assert_eq!(d.worst_ms(), None);
        assert_eq!(d.worst_elections(), None);
        assert_eq!(r.faults[0].recovery, None);
        // Never stopped: the gap runs to the end of the history.
        let r = windows(&[(200, "ok"), (1000, "start-pause"), (2600, "fail")]);
        let d = downtime(&r, 0);
        assert!(!d.resumed && d.ms.is_none());
        assert_eq!(d.longest_gap_ms, 1600.0);
    }

    #[test]
    fn a_window_without_completions_is_down_until_the_first_ok_after_it() {
        let r = windows(&[
            (100, "ok"),
            (1000, "start-partition"),
            (2000, "stop-partition"),
            (5000, "ok"),
        ]);
        let w = &r.faults[0];
        assert_eq!((w.completed, w.ok, w.availability), (0, 0, None));
        let d = downtime(&r, 0);
        assert_eq!(d.ms, Some(4000.0));
        assert_eq!(d.longest_gap_ms, 1000.0);
        assert_eq!(d.worst_ms(), Some(4000.0));
        assert_eq!(w.recovery, Some(3000 * MS));
        // An ok at the very instant of the start counts: no down-time.
        let r = windows(&[
            (1000, "ok"),
            (1000, "start-partition"),
            (1500, "stop-partition"),
        ]);
        assert_eq!(downtime(&r, 0).ms, Some(0.0));
    }

    #[test]
    fn overlapping_windows_are_measured_each_on_its_own() {
        let r = windows(&[
            (1000, "start-partition"),
            (2000, "start-kill"),
            (2500, "ok"),
            (3000, "stop-partition"),
            (4000, "ok"),
            (5000, "stop-kill"),
            (6000, "ok"),
        ]);
        let (p, k) = (downtime(&r, 0), downtime(&r, 1));
        assert_eq!(
            (r.faults[0].name.as_str(), r.faults[1].name.as_str()),
            ("partition", "kill")
        );
        assert_eq!(p.ms, Some(1500.0));
        assert_eq!(p.longest_gap_ms, 1500.0);
        assert_eq!(k.ms, Some(500.0));
        assert_eq!(k.longest_gap_ms, 1500.0, "2.5 s to 4 s");
        assert_eq!(r.faults[0].recovery, Some(1000 * MS));
        assert_eq!(r.faults[1].recovery, Some(1000 * MS));
    }

    #[test]
    fn without_an_election_timeout_the_units_are_left_out() {
        let h = History::new(vec![
            ev(
                0,
                Process::Nemesis,
                EventType::Info,
                Fun::Nemesis("start-kill".into()),
            ),
            ev(1, Process::Client(1), EventType::Invoke, Fun::Read),
            ev(300 * MS, Process::Client(1), EventType::Ok, Fun::Read),
        ]);
        let r = report(&h);
        let d = downtime(&r, 0);
        assert_eq!(d.ms, Some(300.0));
        assert_eq!((d.elections, d.longest_gap_elections), (None, None));
        assert_eq!(r.election_timeout_ms, None);
        let json = serde_json::to_value(&r.faults[0]).unwrap();
        assert!(json["downtime"].get("elections").is_none(), "{json}");
        // A window written before down-time existed reads, and writes back
        // the same.
        let old = serde_json::json!({"name": "kill", "start": 0, "stop": 5, "completed": 1,
            "ok": 1, "availability": 1.0, "recovery": 3});
        let w: FaultWindow = serde_json::from_value(old.clone()).unwrap();
        assert!(w.downtime.is_none());
        assert_eq!(serde_json::to_value(&w).unwrap(), old);
    }
}
