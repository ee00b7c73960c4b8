//! Counters and gauges for `GET /admin/metrics`, in the Prometheus text
//! format. Everything is an atomic so the hot paths (HTTP handlers, the
//! replica task, the disk thread, peer links) never take a lock to count.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use synod_wire::api::{CAS_MISMATCH, INDETERMINATE, NOT_PROPOSED};
use synod_wire::metrics::PEER_MESSAGES_TOTAL;
use synod_wire::MessageKind;

/// Client operations, in label order.
pub const OPS: [&str; 3] = ["read", "write", "cas"];
/// Client outcomes, in label order: `ok`, then the API's error codes.
pub const OUTCOMES: [&str; 4] = ["ok", CAS_MISMATCH, NOT_PROPOSED, INDETERMINATE];
/// Protocol message kinds ([`MessageKind::ALL`], the names
/// [`synod_node::Message::kind`] gives), then `other`, which nothing counts
/// since every message has a kind, kept so the metrics page keeps its
/// lines.
pub const KINDS: usize = MessageKind::ALL.len() + 1;

/// The `type` label of kind number `i`.
fn kind_name(i: usize) -> &'static str {
    MessageKind::ALL.get(i).map_or("other", |k| k.as_str())
}
/// 4xx errors by `error` field.
pub const HTTP_ERRORS: [&str; 7] = [
    "bad-request",
    "not-found",
    "method-not-allowed",
    "too-large",
    "unauthorized",
    "overloaded",
    "request-timeout",
];
/// Why the node closed a connection ([`super::listen`]).
pub const CLOSE_REASONS: [&str; 4] = ["idle", "header-timeout", "evicted", "refused"];

pub fn kind_index(kind: MessageKind) -> usize {
    kind.index()
}

/// A cumulative histogram with fixed buckets (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// From 50 µs to 5 s: fsyncs and client requests both land in range.
const LATENCY_BOUNDS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

impl Histogram {
    fn latency() -> Self {
        Histogram {
            bounds: &LATENCY_BOUNDS,
            counts: LATENCY_BOUNDS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| s <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Every metric the node exports.
pub struct Metrics {
    pub requests: [[AtomicU64; OUTCOMES.len()]; OPS.len()],
    pub request_seconds: [Histogram; OPS.len()],
    pub http_errors: [AtomicU64; HTTP_ERRORS.len()],
    pub peer_sent: [AtomicU64; KINDS],
    pub peer_received: [AtomicU64; KINDS],
    /// Messages dropped because a link's queue was full (peer down or slow).
    pub peer_dropped: AtomicU64,
    pub peer_batches_ok: AtomicU64,
    pub peer_batches_failed: AtomicU64,
    pub fsyncs: AtomicU64,
    pub fsync_seconds: Histogram,
    pub records_appended: AtomicU64,
    pub compactions: AtomicU64,
    pub slots_chosen: AtomicU64,
    pub elections: AtomicU64,
    pub elections_won: AtomicU64,
    pub leader_changes: AtomicU64,
    // Gauges, refreshed by the replica task after every batch of inputs.
    /// 0 follower, 1 candidate, 2 leader.
    pub role: AtomicI64,
    pub commit_index: AtomicU64,
    pub applied_index: AtomicU64,
    pub ballot_round: AtomicU64,
    /// Bytes of frames in the log (not its preallocated zeros), kept by
    /// the disk thread.
    pub log_bytes: AtomicU64,
    /// HTTP connections open now.
    pub connections_open: AtomicI64,
    /// Connections the node closed, by [`CLOSE_REASONS`].
    pub connections_closed: [AtomicU64; CLOSE_REASONS.len()],
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| zeros()),
            request_seconds: std::array::from_fn(|_| Histogram::latency()),
            http_errors: zeros(),
            peer_sent: zeros(),
            peer_received: zeros(),
            peer_dropped: AtomicU64::new(0),
            peer_batches_ok: AtomicU64::new(0),
            peer_batches_failed: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            fsync_seconds: Histogram::latency(),
            records_appended: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            slots_chosen: AtomicU64::new(0),
            elections: AtomicU64::new(0),
            elections_won: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            role: AtomicI64::new(0),
            commit_index: AtomicU64::new(0),
            applied_index: AtomicU64::new(0),
            ballot_round: AtomicU64::new(0),
            log_bytes: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_closed: zeros(),
        }
    }

    pub fn connection_closed(&self, reason: &str) {
        if let Some(i) = CLOSE_REASONS.iter().position(|r| *r == reason) {
            self.connections_closed[i].fetch_add(1, Relaxed);
        }
    }

    pub fn http_error(&self, error: &str) {
        if let Some(i) = HTTP_ERRORS.iter().position(|e| *e == error) {
            self.http_errors[i].fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8192);
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let _ = writeln!(o, "# HELP synod_requests_total Client requests by operation and outcome.\n# TYPE synod_requests_total counter");
        for (i, op) in OPS.iter().enumerate() {
            for (j, outcome) in OUTCOMES.iter().enumerate() {
                let v = self.requests[i][j].load(Relaxed);
                let _ = writeln!(
                    o,
                    "synod_requests_total{{op=\"{op}\",outcome=\"{outcome}\"}} {v}"
                );
            }
        }
        let _ = writeln!(o, "# HELP synod_request_seconds Client request latency by operation.\n# TYPE synod_request_seconds histogram");
        for (i, op) in OPS.iter().enumerate() {
            self.request_seconds[i].render(
                &mut o,
                "synod_request_seconds",
                &format!("op=\"{op}\""),
            );
        }
        let _ = writeln!(o, "# HELP synod_http_errors_total Refused requests by error.\n# TYPE synod_http_errors_total counter");
        for (i, e) in HTTP_ERRORS.iter().enumerate() {
            let v = self.http_errors[i].load(Relaxed);
            let _ = writeln!(o, "synod_http_errors_total{{error=\"{e}\"}} {v}");
        }
        let _ = writeln!(o, "# HELP {PEER_MESSAGES_TOTAL} Protocol messages by direction and type.\n# TYPE {PEER_MESSAGES_TOTAL} counter");
        for i in 0..KINDS {
            let k = kind_name(i);
            let s = self.peer_sent[i].load(Relaxed);
            let r = self.peer_received[i].load(Relaxed);
            let _ = writeln!(
                o,
                "{PEER_MESSAGES_TOTAL}{{direction=\"sent\",type=\"{k}\"}} {s}"
            );
            let _ = writeln!(
                o,
                "{PEER_MESSAGES_TOTAL}{{direction=\"received\",type=\"{k}\"}} {r}"
            );
        }
        counter(
            &mut o,
            "synod_peer_messages_dropped_total",
            "Messages dropped because a peer link's queue was full.",
            self.peer_dropped.load(Relaxed),
        );
        let _ = writeln!(o, "# HELP synod_peer_batches_total Peer batches written (ok) and batches or streams lost (failed).\n# TYPE synod_peer_batches_total counter");
        let _ = writeln!(
            o,
            "synod_peer_batches_total{{result=\"ok\"}} {}",
            self.peer_batches_ok.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "synod_peer_batches_total{{result=\"failed\"}} {}",
            self.peer_batches_failed.load(Relaxed)
        );
        counter(
            &mut o,
            "synod_fsyncs_total",
            "fdatasync calls on the log (one per group commit).",
            self.fsyncs.load(Relaxed),
        );
        let _ = writeln!(o, "# HELP synod_fsync_seconds Latency of log syncs.\n# TYPE synod_fsync_seconds histogram");
        self.fsync_seconds.render(&mut o, "synod_fsync_seconds", "");
        counter(
            &mut o,
            "synod_records_appended_total",
            "Log records appended.",
            self.records_appended.load(Relaxed),
        );
        counter(
            &mut o,
            "synod_compactions_total",
            "Snapshots written (log compactions).",
            self.compactions.load(Relaxed),
        );
        counter(
            &mut o,
            "synod_slots_chosen_total",
            "Log slots this node learned chosen.",
            self.slots_chosen.load(Relaxed),
        );
        counter(
            &mut o,
            "synod_elections_total",
            "Elections this node started (campaigns).",
            self.elections.load(Relaxed),
        );
        counter(
            &mut o,
            "synod_elections_won_total",
            "Elections this node won.",
            self.elections_won.load(Relaxed),
        );
        counter(
            &mut o,
            "synod_leader_changes_total",
            "Times the leader this node knows changed.",
            self.leader_changes.load(Relaxed),
        );
        let gauge = |o: &mut String, name: &str, help: &str, v: String| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut o,
            "synod_role",
            "0 follower, 1 candidate, 2 leader.",
            self.role.load(Relaxed).to_string(),
        );
        gauge(
            &mut o,
            "synod_commit_index",
            "Every slot below is known chosen.",
            self.commit_index.load(Relaxed).to_string(),
        );
        gauge(
            &mut o,
            "synod_applied_index",
            "Every slot below is applied.",
            self.applied_index.load(Relaxed).to_string(),
        );
        gauge(
            &mut o,
            "synod_ballot_round",
            "Round of the highest ballot promised.",
            self.ballot_round.load(Relaxed).to_string(),
        );
        gauge(
            &mut o,
            "synod_log_bytes",
            "Bytes of records in the log file (its preallocated zeros not counted).",
            self.log_bytes.load(Relaxed).to_string(),
        );
        gauge(
            &mut o,
            "synod_connections_open",
            "HTTP connections open now.",
            self.connections_open.load(Relaxed).to_string(),
        );
        let _ = writeln!(o, "# HELP synod_connections_closed_total Connections the node closed, by reason.\n# TYPE synod_connections_closed_total counter");
        for (i, r) in CLOSE_REASONS.iter().enumerate() {
            let v = self.connections_closed[i].load(Relaxed);
            let _ = writeln!(o, "synod_connections_closed_total{{reason=\"{r}\"}} {v}");
        }
        o
    }
}
