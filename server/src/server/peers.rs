//! Outgoing peer traffic: one link task per peer, each draining a bounded
//! queue into batched `POST /peer/v1/messages` requests over a pooled
//! HTTP/1 connection.
//!
//! One request is in flight per link: while it travels, new messages queue
//! up and leave together in the next batch, so batching grows with load by
//! itself. A full queue (a peer that is down, paused or slow) drops new
//! messages: Paxos tolerates loss, and memory must not grow without bound.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use synod_node::{Message, NodeId};
use tokio::sync::mpsc;

use super::metrics::{kind_index, Metrics};

/// Messages waiting per link before new ones are dropped.
const LINK_QUEUE: usize = 16_384;
/// Most messages in one POST (bounds the body size of a batch).
const MAX_BATCH: usize = 512;

/// The wire format of a batch (`docs/api.md`).
#[derive(Serialize)]
struct BatchOut<'a> {
    from: NodeId,
    cluster: &'a str,
    messages: &'a [Message],
}

/// Handles to every link; cheap to share with the disk thread.
#[derive(Clone)]
pub struct Peers {
    links: Arc<BTreeMap<NodeId, mpsc::Sender<Message>>>,
    metrics: Arc<Metrics>,
}

impl Peers {
    /// Starts one link task per peer on the current tokio runtime.
    pub fn start(
        me: NodeId,
        cluster: &str,
        urls: &BTreeMap<NodeId, String>,
        token: &str,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Peers> {
        let http = reqwest::Client::builder()
            // Peers are on the cluster network; an environment proxy would
            // only add a hop and a failure mode.
            .no_proxy()
            .connect_timeout(Duration::from_millis(300))
            // A paused peer must not hold a link forever: its batch is lost
            // after this, like a dropped packet.
            .timeout(Duration::from_millis(1000))
            // Below the receiving node's idle timeout (60 s by default), so
            // it never closes a connection a batch is about to use.
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true)
            .build()?;
        let auth = format!("Bearer {token}");
        let mut links = BTreeMap::new();
        for (&to, url) in urls {
            let (tx, rx) = mpsc::channel(LINK_QUEUE);
            links.insert(to, tx);
            let link = Link {
                me,
                cluster: cluster.into(),
                to,
                url: format!("{url}/peer/v1/messages"),
                auth: auth.clone(),
                http: http.clone(),
                metrics: metrics.clone(),
            };
            tokio::spawn(link.run(rx));
        }
        Ok(Peers {
            links: Arc::new(links),
            metrics,
        })
    }

    /// Queues a message for `to` (never blocks; drops when the link is full).
    pub fn send(&self, to: NodeId, msg: Message) {
        match self.links.get(&to) {
            Some(link) => {
                if link.try_send(msg).is_err() {
                    self.metrics.peer_dropped.fetch_add(1, Relaxed);
                }
            }
            None => tracing::warn!(to, "the core sent a message to an unknown node"),
        }
    }
}

struct Link {
    me: NodeId,
    cluster: Arc<str>,
    to: NodeId,
    url: String,
    auth: String,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl Link {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let mut batch = Vec::with_capacity(64);
        let mut failures: u64 = 0;
        let mut next_log: u64 = 0;
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let body = match serde_json::to_vec(&BatchOut {
                from: self.me,
                cluster: &self.cluster,
                messages: &batch,
            }) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(to = self.to, error = %e, "cannot encode a peer batch");
                    batch.clear();
                    continue;
                }
            };
            let result = self
                .http
                .post(&self.url)
                .header(reqwest::header::AUTHORIZATION, &self.auth)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => {
                    self.metrics.peer_batches_ok.fetch_add(1, Relaxed);
                    for m in &batch {
                        self.metrics.peer_sent[kind_index(m.message_kind())].fetch_add(1, Relaxed);
                    }
                    if failures > 0 {
                        tracing::info!(to = self.to, failures, "peer link recovered");
                    }
                    failures = 0;
                }
                Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => {
                    self.metrics.peer_batches_failed.fetch_add(1, Relaxed);
                    // Not a fault to wait out: a misconfiguration.
                    if failures == 0 || failures >= next_log {
                        next_log = failures + 100;
                        let why = r.text().await.unwrap_or_default();
                        tracing::error!(to = self.to, "peer refuses this node's cluster (check --data-dir and --peers): {why}");
                    }
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => {
                    self.metrics.peer_batches_failed.fetch_add(1, Relaxed);
                    // Log the first failure and then every 100th: a dead
                    // peer must not flood the log.
                    if failures == 0 || failures >= next_log {
                        next_log = failures + 100;
                        let why = match other {
                            Ok(r) => format!("status {}", r.status()),
                            Err(e) => e.to_string(),
                        };
                        tracing::debug!(to = self.to, failures, reason = %why, "peer batch lost");
                    }
                    failures += 1;
                    // Against a refusing peer, do not spin: a short pause
                    // also lets the queue coalesce into one batch.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            batch.clear();
        }
    }
}
