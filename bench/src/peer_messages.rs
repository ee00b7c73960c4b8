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

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Time between two samples of every node's counters. Short enough that a
/// kill loses little of the dead node's count, long enough to cost nothing
/// (one small GET per node).
pub const INTERVAL: Duration = Duration::from_millis(500);

/// A scrape gives up after this long: a paused node must not hold up the
/// sample of the others.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);

/// Attempts at the last sample for a node that does not answer (it may be
/// finishing a restart the heal started).
const FINAL_ATTEMPTS: u32 = 4;

/// Sent-message counters by message type, as one scrape read them.
pub type Sample = BTreeMap<String, u64>;

/// The metric the nodes count peer messages in.
const METRIC: &str = "synod_peer_messages_total";

/// Why a metrics page could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("no {METRIC}{{direction=\"sent\"}} counter in the metrics (not a synod-node?)")]
    NoCounter,
}

/// Reads the `direction="sent"` counters of [`METRIC`] from a Prometheus
/// text page, by their `type` label. Other metrics, comments and other
/// directions are skipped; a malformed line of our metric is an error.
pub fn parse_sent(text: &str) -> Result<Sample, ParseError> {
    let mut sample = Sample::new();
    let mut found = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix(METRIC) else {
            continue;
        };
        // `synod_peer_messages_total_foo` is another metric.
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let bad = |reason: &str| ParseError::Line {
            line: i + 1,
            reason: format!("{reason}: {line:?}"),
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let end = closing_brace(r).ok_or_else(|| bad("unclosed label set"))?;
                (
                    parse_labels(&r[..end]).ok_or_else(|| bad("bad labels"))?,
                    &r[end + 1..],
                )
            }
            None => (Vec::new(), rest),
        };
        let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if label("direction") != Some("sent") {
            continue;
        }
        let kind = label("type").unwrap_or("other").to_string();
        // The value, then an optional timestamp.
        let value = value
            .split_whitespace()
            .next()
            .ok_or_else(|| bad("no value"))?;
        let count = parse_count(value).ok_or_else(|| bad("the value is not a count"))?;
        *sample.entry(kind).or_default() += count;
        found = true;
    }
    if found {
        Ok(sample)
    } else {
        Err(ParseError::NoCounter)
    }
}

/// The index of the `}` closing a label set, skipping quoted values.
fn closing_brace(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// `a="x",b="y\"z"` into pairs; `None` if it is not that shape.
fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let name = rest[..eq].trim().to_string();
        if name.is_empty() {
            return None;
        }
        let body = rest[eq + 1..].trim_start();
        let mut chars = body.char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match c {
                _ if escaped => {
                    value.push(match c {
                        'n' => '\n',
                        other => other,
                    });
                    escaped = false;
                }
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((name, value));
        rest = body[end? + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(out)
}

/// A counter value: an integer, or a float that is one (Prometheus allows
/// `1e+06`).
fn parse_count(s: &str) -> Option<u64> {
    if let Ok(v) = s.parse::<u64>() {
        return Some(v);
    }
    let f = s.parse::<f64>().ok()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

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
#[derive(Clone, Debug, Serialize, PartialEq)]
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

/// One scrape of one node.
async fn scrape(http: &reqwest::Client, url: &str, token: &str) -> Result<Sample, String> {
    let r = http
        .get(format!("{url}/admin/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("status {}", r.status()));
    }
    let text = r.text().await.map_err(|e| e.to_string())?;
    parse_sent(&text).map_err(|e| e.to_string())
}

/// Scrapes the nodes at `which` at once; returns who answered what.
async fn round(
    http: &reqwest::Client,
    nodes: &[(String, String)],
    token: &str,
    which: &[usize],
) -> Vec<(usize, Result<Sample, String>)> {
    let mut set = JoinSet::new();
    for &i in which {
        let (http, url, token) = (http.clone(), nodes[i].1.clone(), token.to_string());
        set.spawn(async move { (i, scrape(&http, &url, &token).await) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(pair) = r {
            out.push(pair);
        }
    }
    out
}

/// What the sampling task hands back: the tallies, the rounds, the gaps.
type Tallied = (Vec<(String, Tally)>, u32, Vec<String>);

/// Samples every node's counters from before the workload to after it.
/// Dropped without [`Scraper::finish`] (the run failed), it stops sampling.
pub struct Scraper {
    stop: watch::Sender<bool>,
    /// `None` once `finish` took it.
    task: Option<tokio::task::JoinHandle<Tallied>>,
}

impl Drop for Scraper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Scraper {
    /// Takes the baseline sample of `nodes` (`(name, base URL)`), then
    /// keeps sampling every [`INTERVAL`] in the background.
    pub async fn start(nodes: Vec<(String, String)>, token: String) -> anyhow::Result<Scraper> {
        let http = reqwest::Client::builder()
            .timeout(SCRAPE_TIMEOUT)
            .connect_timeout(SCRAPE_TIMEOUT)
            .build()?;
        let mut tallies: Vec<(String, Tally)> = nodes
            .iter()
            .map(|(n, _)| (n.clone(), Tally::default()))
            .collect();
        let all: Vec<usize> = (0..nodes.len()).collect();
        let mut gaps = Vec::new();
        let mut first_error: BTreeMap<usize, String> = BTreeMap::new();
        for (i, r) in round(&http, &nodes, &token, &all).await {
            match r {
                Ok(s) => tallies[i].1.observe(s),
                Err(e) => {
                    first_error.insert(i, e);
                }
            }
        }
        for (i, e) in &first_error {
            tracing::warn!(node = %nodes[*i].0, error = %e, "cannot read peer-message counters at the start");
            gaps.push(format!(
                "{} did not answer at the start ({e}): counted from its first answer",
                nodes[*i].0
            ));
        }
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut samples = 1;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(INTERVAL) => {}
                    _ = stop_rx.changed() => break,
                }
                for (i, r) in round(&http, &nodes, &token, &all).await {
                    if let Ok(s) = r {
                        tallies[i].1.observe(s);
                    }
                }
                samples += 1;
            }
            // The last sample: every node should be back (the heal
            // restarted and resumed them), but a restart may still be
            // finishing, so ask the silent ones again.
            let mut pending = all.clone();
            let mut errors = BTreeMap::new();
            for attempt in 0..FINAL_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(INTERVAL).await;
                }
                for (i, r) in round(&http, &nodes, &token, &pending).await {
                    match r {
                        Ok(s) => {
                            tallies[i].1.observe(s);
                            pending.retain(|&p| p != i);
                        }
                        Err(e) => {
                            errors.insert(i, e);
                        }
                    }
                }
                if pending.is_empty() {
                    break;
                }
            }
            samples += 1;
            for i in pending {
                let why = errors.remove(&i).unwrap_or_default();
                tracing::warn!(node = %nodes[i].0, error = %why, "cannot read peer-message counters at the end");
                gaps.push(if tallies[i].1.started() {
                    format!(
                        "{} did not answer at the end ({why}): counted up to its last answer",
                        nodes[i].0
                    )
                } else {
                    format!("{} never answered ({why}): not counted", nodes[i].0)
                });
            }
            (tallies, samples, gaps)
        });
        Ok(Scraper {
            stop,
            task: Some(task),
        })
    }

    /// Takes the last sample and sums up, with `completed_ops` client
    /// operations completed in the run. `Ok(None)`: no node ever answered
    /// with its counters (a node without `/admin/metrics`).
    pub async fn finish(mut self, completed_ops: u64) -> anyhow::Result<Option<PeerMessages>> {
        self.stop.send_replace(true);
        let task = self
            .task
            .take()
            .ok_or_else(|| anyhow::anyhow!("the metrics scraper was already finished"))?;
        let (tallies, samples, gaps) = task
            .await
            .map_err(|e| anyhow::anyhow!("the metrics scraper failed: {e}"))?;
        Ok(summarise(&tallies, completed_ops, samples, gaps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pairs: &[(&str, u64)]) -> Sample {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    const PAGE: &str = "\
# HELP synod_peer_messages_total Protocol messages by direction and type.
# TYPE synod_peer_messages_total counter
synod_peer_messages_total{direction=\"sent\",type=\"accept\"} 120
synod_peer_messages_total{direction=\"received\",type=\"accept\"} 7
synod_peer_messages_total{direction=\"sent\",type=\"heartbeat\"} 33
synod_peer_messages_total{type=\"accepted\", direction=\"sent\"} 1e3 1700000000000
# HELP synod_peer_messages_dropped_total Messages dropped.
synod_peer_messages_dropped_total 99
synod_requests_total{op=\"read\",outcome=\"ok\"} 5
";

    #[test]
    fn parses_sent_counters_by_type_and_skips_the_rest() {
        let s = parse_sent(PAGE).unwrap();
        assert_eq!(
            s,
            sample(&[("accept", 120), ("heartbeat", 33), ("accepted", 1000)])
        );
    }

    #[test]
    fn parses_the_shape_the_node_renders() {
        // node/src/server/metrics.rs: both directions per kind, zeros
        // included (the suite smoke test reads real nodes).
        let mut page = String::new();
        for (i, k) in ["prepare", "promise", "other"].iter().enumerate() {
            page += &format!(
                "synod_peer_messages_total{{direction=\"sent\",type=\"{k}\"}} {i}\n\
                 synod_peer_messages_total{{direction=\"received\",type=\"{k}\"}} 50\n"
            );
        }
        let s = parse_sent(&page).unwrap();
        assert_eq!(s, sample(&[("prepare", 0), ("promise", 1), ("other", 2)]));
    }

    #[test]
    fn quoted_braces_and_escapes_in_labels() {
        let s = parse_sent("synod_peer_messages_total{direction=\"sent\",type=\"a}\\\"b\"} 4\n")
            .unwrap();
        assert_eq!(s, sample(&[("a}\"b", 4)]));
    }

    #[test]
    fn a_page_without_the_counter_or_with_a_bad_value_is_an_error() {
        assert_eq!(
            parse_sent("etcd_server_has_leader 1\n"),
            Err(ParseError::NoCounter)
        );
        let e = parse_sent("synod_peer_messages_total{direction=\"sent\",type=\"x\"} -3\n")
            .unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e =
            parse_sent("synod_peer_messages_total{direction=\"sent\",type=\"x\" 3\n").unwrap_err();
        assert!(e.to_string().contains("unclosed"), "{e}");
        let e =
            parse_sent("synod_peer_messages_total{direction=\"sent\",type=\"x\"}\n").unwrap_err();
        assert!(e.to_string().contains("no value"), "{e}");
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
