//! Outgoing peer traffic: one link task per peer, each draining a bounded
//! queue into batches on a long-lived peer stream ([`super::peer_stream`]).
//!
//! A batch is every message waiting when the link gets to it (at most
//! [`MAX_BATCH`]): under load messages queue while the previous batch is
//! written, so batching grows with load by itself and costs an idle link
//! nothing. A full queue (a peer that is down, paused or slow) drops new
//! messages: Paxos tolerates loss, and memory must not grow without bound.
//! A connection that cannot be opened, breaks, or leaves a batch
//! unacknowledged past [`STALL`] loses what it carried and is replaced on
//! the next message, as a lost packet would be.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use synod_node::{Message, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::metrics::{kind_index, Metrics};
use super::peer_stream::{encode_frame, read_frame, Hello, PREFACE, STALL};

/// Messages waiting per link before new ones are dropped.
const LINK_QUEUE: usize = 16_384;
/// Most messages in one batch (bounds a frame's size).
const MAX_BATCH: usize = 512;
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// A link with nothing to send for this long closes its connection,
/// well before the receiver's idle timeout (60 s by default) could close
/// it under a batch about to be written.
const IDLE_CLOSE: Duration = Duration::from_secs(20);

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
        let mut links = BTreeMap::new();
        for (&to, url) in urls {
            let addr = url
                .strip_prefix("http://")
                .ok_or_else(|| anyhow::anyhow!("the URL of node {to} ({url}) is not http://"))?;
            let (tx, rx) = mpsc::channel(LINK_QUEUE);
            links.insert(to, tx);
            let mut hello = Vec::new();
            encode_frame(
                &mut hello,
                &Hello {
                    token: token.into(),
                    from: me,
                    cluster: cluster.into(),
                },
            )?;
            let link = Link {
                to,
                addr: addr.into(),
                hello: [PREFACE, &hello].concat(),
                metrics: metrics.clone(),
                failures: 0,
                next_log: 0,
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
    to: NodeId,
    /// `host:port` of the peer (or of the nemesis's proxy in front of it).
    addr: String,
    /// The preface and hello frame every connection starts with.
    hello: Vec<u8>,
    metrics: Arc<Metrics>,
    failures: u64,
    next_log: u64,
}

/// One open stream: its write half, and what its acknowledgements say.
struct Conn {
    write: OwnedWriteHalf,
    /// Batches written, and when each unacknowledged one was.
    sent: u64,
    unacked: VecDeque<(u64, Instant)>,
    acks: Arc<Acks>,
    reader: tokio::task::JoinHandle<()>,
}

/// Written by the task reading acknowledgements.
#[derive(Default)]
struct Acks {
    acked: AtomicU64,
    broken: AtomicBool,
    changed: Notify,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Conn {
    /// Resolves once the connection is of no more use: broken, or its
    /// oldest unacknowledged batch older than [`STALL`].
    async fn unusable(&mut self) {
        loop {
            let acked = self.acks.acked.load(Relaxed);
            while self.unacked.front().is_some_and(|&(n, _)| n <= acked) {
                self.unacked.pop_front();
            }
            if self.acks.broken.load(Relaxed) {
                return;
            }
            match self.unacked.front() {
                Some(&(_, at)) if at + STALL <= Instant::now() => return,
                Some(&(_, at)) => tokio::select! {
                    _ = tokio::time::sleep_until(at + STALL) => {}
                    _ = self.acks.changed.notified() => {}
                },
                None => self.acks.changed.notified().await,
            }
        }
    }
}

impl Link {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut batch = Vec::with_capacity(64);
        let mut frame = Vec::with_capacity(4096);
        let mut conn: Option<Conn> = None;
        loop {
            let first = match conn.as_mut() {
                Some(c) => tokio::select! {
                    m = rx.recv() => m,
                    _ = c.unusable() => {
                        self.failed("the connection broke or stalled");
                        conn = None;
                        continue;
                    }
                    _ = tokio::time::sleep(IDLE_CLOSE) => {
                        conn = None;
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(first) = first else { break };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if conn.as_ref().is_some_and(|c| c.acks.broken.load(Relaxed)) {
                conn = None;
            }
            if conn.is_none() {
                match self.connect().await {
                    Ok(c) => conn = Some(c),
                    Err(why) => {
                        self.failed(&why);
                        batch.clear();
                        // Against a refusing peer, do not spin: a short
                        // pause also lets the queue coalesce into one batch.
                        let pause = if why.contains("wrong-cluster") {
                            100
                        } else {
                            5
                        };
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            frame.clear();
            if let Err(e) = encode_frame(&mut frame, &batch) {
                tracing::error!(to = self.to, error = %e, "cannot encode a peer batch");
                batch.clear();
                continue;
            }
            match tokio::time::timeout(STALL, c.write.write_all(&frame)).await {
                Ok(Ok(())) => {
                    c.sent += 1;
                    c.unacked.push_back((c.sent, Instant::now()));
                    self.metrics.peer_batches_ok.fetch_add(1, Relaxed);
                    for m in &batch {
                        self.metrics.peer_sent[kind_index(m.message_kind())].fetch_add(1, Relaxed);
                    }
                    if self.failures > 0 {
                        tracing::info!(
                            to = self.to,
                            failures = self.failures,
                            "peer link recovered"
                        );
                        self.failures = 0;
                        self.next_log = 0;
                    }
                }
                Ok(Err(e)) => {
                    self.failed(&e.to_string());
                    conn = None;
                }
                Err(_) => {
                    self.failed("a batch could not be written within the stall timeout");
                    conn = None;
                }
            }
            batch.clear();
        }
    }

    /// Counts a lost batch or connection; logs the first failure and then
    /// every 100th, so a dead peer does not flood the log.
    fn failed(&mut self, why: &str) {
        self.metrics.peer_batches_failed.fetch_add(1, Relaxed);
        if self.failures == 0 || self.failures >= self.next_log {
            self.next_log = self.failures + 100;
            if why.contains("wrong-cluster") {
                // Not a fault to wait out: a misconfiguration.
                tracing::error!(
                    to = self.to,
                    "peer refuses this node's cluster (check --data-dir and --peers): {why}"
                );
            } else {
                tracing::debug!(to = self.to, failures = self.failures, reason = %why, "peer link lost messages");
            }
        }
        self.failures += 1;
    }

    /// Opens a stream: connect, preface and hello, the peer's answer.
    async fn connect(&self) -> Result<Conn, String> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| format!("connecting to {} timed out", self.addr))?
            .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
        let _ = stream.set_nodelay(true);
        let (mut read, mut write) = stream.into_split();
        let answer = async {
            write.write_all(&self.hello).await?;
            let mut buf = Vec::new();
            if !read_frame(&mut read, &mut buf, 64 << 10).await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Ok::<_, std::io::Error>(buf)
        };
        let answer = tokio::time::timeout(STALL, answer)
            .await
            .map_err(|_| "the peer did not answer the hello".to_string())?
            .map_err(|e| format!("the hello failed: {e}"))?;
        let answer: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|e| format!("the peer's answer to the hello is not JSON: {e}"))?;
        if answer.get("ok") != Some(&serde_json::Value::Bool(true)) {
            return Err(format!("the peer refused the stream: {answer}"));
        }
        let acks = Arc::new(Acks::default());
        let reader = tokio::spawn(read_acks(read, acks.clone()));
        Ok(Conn {
            write,
            sent: 0,
            unacked: VecDeque::new(),
            acks,
            reader,
        })
    }
}

/// Reads the receiver's acknowledgements until the stream ends.
async fn read_acks(mut read: tokio::net::tcp::OwnedReadHalf, acks: Arc<Acks>) {
    let mut count = [0u8; 8];
    while read.read_exact(&mut count).await.is_ok() {
        let n = u64::from_be_bytes(count);
        // Counts only grow; anything else is not an acknowledgement.
        if n < acks.acked.load(Relaxed) {
            break;
        }
        acks.acked.store(n, Relaxed);
        acks.changed.notify_one();
    }
    acks.broken.store(true, Relaxed);
    acks.changed.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_node::Ballot;
    use tokio::io::BufReader;
    use tokio::net::TcpListener;

    /// A fake peer: answers every hello, reads every batch, and
    /// acknowledges them only if `ack`; counts the connections it got.
    async fn fake_peer(ack: bool) -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns = Arc::new(AtomicU64::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                counted.fetch_add(1, Relaxed);
                tokio::spawn(async move {
                    let (rd, mut wr) = s.into_split();
                    let mut rd = BufReader::new(rd);
                    let mut preface = [0u8; PREFACE.len()];
                    rd.read_exact(&mut preface).await.unwrap();
                    assert_eq!(preface, PREFACE);
                    let mut buf = Vec::new();
                    assert!(read_frame(&mut rd, &mut buf, 4096).await.unwrap());
                    let hello: Hello = serde_json::from_slice(&buf).unwrap();
                    assert_eq!((hello.from, hello.token.as_str()), (1, "secret"));
                    let mut ok = Vec::new();
                    encode_frame(&mut ok, &serde_json::json!({"ok": true})).unwrap();
                    wr.write_all(&ok).await.unwrap();
                    let mut n = 0u64;
                    while let Ok(true) = read_frame(&mut rd, &mut buf, 1 << 20).await {
                        let batch: Vec<Message> = serde_json::from_slice(&buf).unwrap();
                        assert!(!batch.is_empty());
                        n += 1;
                        if ack && wr.write_all(&n.to_be_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{addr}"), conns)
    }

    /// Sends a message every 50 ms for 2.5 s (over two stall timeouts).
    async fn send_for_a_while(url: String) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics::new());
        let urls = BTreeMap::from([(2, url)]);
        let peers = Peers::start(1, "c", &urls, "secret", metrics.clone()).unwrap();
        let nack = Message::Nack {
            ballot: Ballot { round: 1, node: 1 },
            promised: Ballot { round: 2, node: 3 },
        };
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            peers.send(2, nack.clone());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        metrics
    }

    #[tokio::test]
    async fn an_acknowledged_stream_carries_every_batch_on_one_connection() {
        let (url, conns) = fake_peer(true).await;
        let metrics = send_for_a_while(url).await;
        assert_eq!(conns.load(Relaxed), 1, "the link reconnected");
        assert_eq!(metrics.peer_batches_failed.load(Relaxed), 0);
        assert!(metrics.peer_batches_ok.load(Relaxed) >= 40);
    }

    #[tokio::test]
    async fn a_stream_that_stops_acknowledging_is_replaced_after_the_stall_timeout() {
        let (url, conns) = fake_peer(false).await;
        let metrics = send_for_a_while(url).await;
        let n = conns.load(Relaxed);
        // 2.5 s of unacknowledged batches: replaced after 1 s, and again
        // after 2 s; never more often than the stall timeout.
        assert!((2..=3).contains(&n), "{n} connections in 2.5 s");
        assert!(metrics.peer_batches_failed.load(Relaxed) >= 1);
    }

    #[tokio::test]
    async fn a_peer_that_is_down_costs_dropped_batches_not_a_stuck_link() {
        // Nothing listens on this port once the listener is gone.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let metrics = send_for_a_while(format!("http://{addr}")).await;
        assert_eq!(metrics.peer_batches_ok.load(Relaxed), 0);
        assert!(metrics.peer_batches_failed.load(Relaxed) >= 20);
    }
}
