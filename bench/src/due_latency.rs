//! Open-loop latency counted from when each op was due.
//!
//! An open loop's worker that is late invokes its op at once, and the op
//! was due earlier: the time between is queueing the cluster caused, and a
//! latency that leaves it out hides an overloaded cluster (coordinated
//! omission). The history cannot carry the due time: the recorder writes
//! events in time order, so an invocation due before events it already
//! wrote is stamped with their time, about when it was sent. The history
//! stays what the checker needs (when each op was really in flight), and
//! the workload measures the response time itself, here: from the due time
//! to the completion, per operation kind, of the ok ops only (as the
//! report's latency is), in `run.open_loop_latency` of `results.json`.
//!
//! Each worker keeps its own histograms and adds them to the run's when it
//! stops, by any way out (aborted included: the guard's `Drop`), so the
//! clients take no lock per op for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Microseconds, up to an hour, three significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|e| panic!("fixed histogram bounds are valid: {e}"))
}

/// The run's histograms by operation kind, filled as workers stop.
#[derive(Clone, Default)]
pub struct DueLatency {
    merged: Arc<Mutex<BTreeMap<String, Histogram<u64>>>>,
}

/// One worker's histograms; added to the run's when dropped.
pub struct WorkerDueLatency {
    run: DueLatency,
    own: BTreeMap<String, Histogram<u64>>,
}

impl DueLatency {
    pub fn worker(&self) -> WorkerDueLatency {
        WorkerDueLatency {
            run: self.clone(),
            own: BTreeMap::new(),
        }
    }

    /// The figures by operation kind, in ms; empty when no ok op was due.
    pub fn figures(&self) -> Vec<OpDueLatency> {
        let merged = self.merged.lock().unwrap_or_else(|e| e.into_inner());
        merged
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(f, h)| OpDueLatency {
                f: f.clone(),
                count: h.len(),
                p50: h.value_at_quantile(0.5) as f64 / 1e3,
                p99: h.value_at_quantile(0.99) as f64 / 1e3,
                max: h.max() as f64 / 1e3,
            })
            .collect()
    }
}

impl WorkerDueLatency {
    /// An ok op of kind `f` completed `micros` after it was due.
    pub fn record(&mut self, f: &str, micros: u64) {
        if !self.own.contains_key(f) {
            self.own.insert(f.to_string(), histogram());
        }
        if let Some(h) = self.own.get_mut(f) {
            h.saturating_record(micros.max(1));
        }
    }
}

impl Drop for WorkerDueLatency {
    fn drop(&mut self) {
        let mut merged = self.run.merged.lock().unwrap_or_else(|e| e.into_inner());
        for (f, h) in std::mem::take(&mut self.own) {
            match merged.get_mut(&f) {
                // Same bounds on both sides: adding cannot fail.
                Some(m) => {
                    let _ = m.add(&h);
                }
                None => {
                    merged.insert(f, h);
                }
            }
        }
    }
}

/// Latency of one operation kind's ok ops from when each was due
/// (`run.open_loop_latency` in `results.json`), in ms.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpDueLatency {
    pub f: String,
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The summary line of an open-loop run.
pub fn summary(figures: &[OpDueLatency]) -> String {
    if figures.is_empty() {
        return String::new();
    }
    let per: Vec<String> = figures
        .iter()
        .map(|l| format!("{} p50 {:.2} ms p99 {:.2} ms", l.f, l.p50, l.p99))
        .collect();
    format!(
        "  open loop, from when each op was due: {}\n",
        per.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_add_up_when_they_stop_however_they_stop() {
        let run = DueLatency::default();
        let mut a = run.worker();
        let mut b = run.worker();
        for ms in 1..=100 {
            a.record("read", ms * 1000);
        }
        b.record("read", 5_000_000);
        b.record("write", 2000);
        assert!(run.figures().is_empty(), "nothing before a worker stops");
        drop(a);
        // A task aborted drops its worker's histograms with it: still added.
        let task = std::thread::spawn(move || drop(b));
        task.join().unwrap();
        let f = run.figures();
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].f.as_str(), f[0].count), ("read", 101));
        assert!((f[0].p50 - 51.0).abs() < 0.1, "{f:?}");
        assert!((f[0].max - 5000.0).abs() < 5.0, "{f:?}");
        assert_eq!((f[1].f.as_str(), f[1].count), ("write", 1));
    }
}
