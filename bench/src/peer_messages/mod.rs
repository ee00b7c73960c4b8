//! Peer messages per client operation: what a configuration costs on the
//! wire (`learn=all` against `learn=leader`, `proposers=any` against a
//! stable leader).
//!
//! Every `synod-node` counts the protocol messages it delivered to a peer
//! in `synod_peer_messages_total{direction="sent",type="..."}` on
//! `GET /admin/metrics` (a message counts once the peer has acknowledged
//! the batch that carried it). The [`Scraper`] reads those counters on
//! every node right before the workload starts, every [`INTERVAL`] while
//! it runs, and once more after the clients have stopped; the run's figure
//! is the sum of the increases.
//!
//! Counters live in the node's memory, so a kill or a power loss resets
//! them. A node whose counters went down between two samples restarted: its
//! new values are all counted (from zero), and what it sent between the
//! previous sample and its death is lost, at most one interval of one
//! node's traffic per restart. A node that does not answer (paused,
//! restarting) is simply asked again at the next sample; nothing is lost,
//! since its counters kept counting. A node that could not be scraped at
//! the start or at the end leaves a gap, named in [`PeerMessages::gaps`].
//!
//! **Peer messages per op** = messages sent by all nodes, of every type
//! (heartbeats included: they are part of what a configuration costs),
//! between the first and the last sample, divided by the client operations
//! completed in the run (ok + fail + info).
//!
//! # Layout
//!
//! - this file: the per-node [`Tally`] and the run's [`PeerMessages`].
//! - `metrics_text`: the counters read out of a metrics page.
//! - `scraper`: the sampling during the run.
//! - `section`: the report's section.

mod metrics_text;
mod scraper;
mod section;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use scraper::Scraper;
pub use section::peer_section;

/// Time between two samples of every node's counters. Short enough that a
/// kill loses little of the dead node's count, long enough to cost nothing
/// (one small GET per node).
pub const INTERVAL: Duration = Duration::from_millis(500);

/// Sent-message counters by message type, as one scrape read them.
pub type Sample = BTreeMap<String, u64>;

/// One node's running account: its last sample and the increases counted
/// so far.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    last: Option<Sample>,
    counted: Sample,
    /// Samples in which the counters went down: the node restarted.
    restarts: u32,
}

impl Tally {
    /// Adds a sample. The first one is the baseline; after it, every type's
    /// increase is counted, unless some counter went down: then the node
    /// restarted since the last sample and its counters started again from
    /// zero, so every new value counts in full.
    pub fn observe(&mut self, sample: Sample) {
        if let Some(last) = &self.last {
            let restarted = last
                .iter()
                .any(|(k, &v)| sample.get(k).copied().unwrap_or(0) < v);
            for (k, &v) in &sample {
                let before = if restarted {
                    0
                } else {
                    last.get(k).copied().unwrap_or(0)
                };
                *self.counted.entry(k.clone()).or_default() += v - before;
            }
            if restarted {
                self.restarts += 1;
            }
        }
        self.last = Some(sample);
    }

    /// Whether any sample has been taken.
    pub fn started(&self) -> bool {
        self.last.is_some()
    }

    /// Messages counted, by type.
    pub fn counted(&self) -> &Sample {
        &self.counted
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }
}

/// The peer messages of a run, as `results.json` stores them under
/// `run.peer_messages`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerMessages {
    /// Messages sent by all nodes over the run, every type.
    pub sent: u64,
    /// Client operations completed (ok + fail + info).
    pub completed_ops: u64,
    /// `sent / completed_ops`; `None` when no operation completed.
    pub per_op: Option<f64>,
    /// Messages sent, by message type (types never sent left out).
    pub by_type: BTreeMap<String, u64>,
    /// Messages sent, by node.
    pub by_node: BTreeMap<String, u64>,
    /// Restarts seen (counters that went down), by node.
    pub restarts: BTreeMap<String, u32>,
    /// Rounds of scrapes taken.
    pub samples: u32,
    /// Seconds between samples.
    pub interval_s: f64,
    /// What the count misses, in words: nodes not scraped at the start or
    /// the end. Empty when every node was read both times.
    pub gaps: Vec<String>,
}

/// Sums per-node tallies into a run's figures; `None` if no node's
/// counters could ever be read (the figure is not available, which is not
/// the same as zero).
pub fn summarise(
    tallies: &[(String, Tally)],
    completed_ops: u64,
    samples: u32,
    gaps: Vec<String>,
) -> Option<PeerMessages> {
    if !tallies.iter().any(|(_, t)| t.started()) {
        return None;
    }
    let mut by_type = BTreeMap::new();
    let mut by_node = BTreeMap::new();
    let mut restarts = BTreeMap::new();
    for (node, t) in tallies {
        let mut node_total = 0;
        for (k, &v) in t.counted() {
            if v > 0 {
                *by_type.entry(k.clone()).or_default() += v;
            }
            node_total += v;
        }
        by_node.insert(node.clone(), node_total);
        if t.restarts() > 0 {
            restarts.insert(node.clone(), t.restarts());
        }
    }
    let sent: u64 = by_node.values().sum();
    Some(PeerMessages {
        sent,
        completed_ops,
        per_op: (completed_ops > 0).then(|| sent as f64 / completed_ops as f64),
        by_type,
        by_node,
        restarts,
        samples,
        interval_s: INTERVAL.as_secs_f64(),
        gaps,
    })
}

impl PeerMessages {
    /// One line for the terminal: the total, per op, and the biggest types.
    pub fn summary(&self) -> String {
        let mut types: Vec<(&String, &u64)> = self.by_type.iter().collect();
        types.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let types: Vec<String> = types.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let per_op = self
            .per_op
            .map(|p| format!("{p:.2}"))
            .unwrap_or_else(|| "-".into());
        let mut s = format!(
            "  peer messages {per_op} per op: {} sent / {} ops completed ({})\n",
            self.sent,
            self.completed_ops,
            types.join(", ")
        );
        for g in &self.gaps {
            s += &format!("  peer messages: {g}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pairs: &[(&str, u64)]) -> Sample {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn increases_are_counted_and_the_baseline_is_not() {
        let mut t = Tally::default();
        t.observe(sample(&[("accept", 100), ("heartbeat", 10)]));
        assert!(t.counted().is_empty());
        t.observe(sample(&[("accept", 150), ("heartbeat", 12)]));
        t.observe(sample(&[
            ("accept", 150),
            ("heartbeat", 15),
            ("prepare", 2),
        ]));
        assert_eq!(
            t.counted(),
            &sample(&[("accept", 50), ("heartbeat", 5), ("prepare", 2)])
        );
        assert_eq!(t.restarts(), 0);
    }

    #[test]
    fn a_counter_that_went_down_is_a_restart_counted_from_zero() {
        let mut t = Tally::default();
        t.observe(sample(&[("accept", 100), ("heartbeat", 10)]));
        t.observe(sample(&[("accept", 140), ("heartbeat", 20)]));
        // Killed and restarted: accept fell to 5, heartbeat is at 25, above
        // its old value, but it too counted from zero: all 25 are new.
        t.observe(sample(&[("accept", 5), ("heartbeat", 25)]));
        t.observe(sample(&[("accept", 9), ("heartbeat", 30)]));
        assert_eq!(
            t.counted(),
            &sample(&[("accept", 40 + 5 + 4), ("heartbeat", 10 + 25 + 5)])
        );
        assert_eq!(t.restarts(), 1);
        // A type that disappears also means the counters were reset.
        let mut t = Tally::default();
        t.observe(sample(&[("accept", 3), ("nack", 1)]));
        t.observe(sample(&[("accept", 4)]));
        assert_eq!(t.restarts(), 1);
        assert_eq!(t.counted(), &sample(&[("accept", 4)]));
    }

    #[test]
    fn a_missed_sample_loses_nothing() {
        // A paused node skips samples; its counters kept counting.
        let mut a = Tally::default();
        let mut b = Tally::default();
        let seq = [10, 20, 30, 40];
        for v in seq {
            a.observe(sample(&[("accept", v)]));
        }
        b.observe(sample(&[("accept", 10)]));
        b.observe(sample(&[("accept", 40)]));
        assert_eq!(a.counted(), b.counted());
    }

    #[test]
    fn per_op_is_all_messages_over_completed_ops() {
        let mut n1 = Tally::default();
        n1.observe(sample(&[("accept", 0), ("heartbeat", 0)]));
        n1.observe(sample(&[("accept", 200), ("heartbeat", 50)]));
        let mut n2 = Tally::default();
        n2.observe(sample(&[("accepted", 7)]));
        n2.observe(sample(&[("accepted", 57)]));
        let tallies = vec![("n1".to_string(), n1), ("n2".to_string(), n2)];
        let m = summarise(&tallies, 100, 2, vec![]).unwrap();
        assert_eq!(m.sent, 300);
        assert_eq!(m.per_op, Some(3.0));
        assert_eq!(m.by_node["n1"], 250);
        assert_eq!(m.by_type["accepted"], 50);
        assert!(m.summary().contains("3.00 per op"), "{}", m.summary());
        assert_eq!(summarise(&tallies, 0, 2, vec![]).unwrap().per_op, None);
        // A node that never answered counts nothing; if none ever did, the
        // figure is not available rather than 0.
        let silent = vec![("n1".to_string(), Tally::default())];
        assert_eq!(summarise(&silent, 100, 2, vec![]), None);
        let mut one = tallies.clone();
        one.push(("n3".to_string(), Tally::default()));
        assert_eq!(summarise(&one, 100, 2, vec![]).unwrap().sent, 300);
    }
}
