//! The peer stream: one long-lived TCP connection per directed peer link,
//! carrying the same JSON message batches as `POST /peer/v1/messages`
//! without an HTTP exchange per batch (`docs/api.md`, "Peer stream").
//!
//! Why: measured on loopback, one HTTP exchange costs the two processes
//! more CPU than the protocol work it carries, and its response holds the
//! link until it arrives. A stream costs one write on the sender and one
//! read on the receiver per batch, and batches leave back to back.
//!
//! # Format
//!
//! The sender opens a connection to the node's one address and writes
//! [`PREFACE`] (its first byte, NUL, can start no HTTP request, so the
//! listener tells the two apart by one byte), then frames: a 4-byte
//! big-endian length and that many bytes of JSON. The first frame is the
//! [`Hello`] (token, sender, cluster); the receiver answers with one frame,
//! `{"ok":true}` or the error object every API refusal uses, and closes on
//! an error. Every later frame is a JSON array of messages, as in a POST's
//! `messages`.
//!
//! The receiver acknowledges, at most every [`ACK_EVERY`] and only when it
//! has read something new, with 8 bytes: the big-endian count of batches it
//! has read on this connection. A sender whose oldest unacknowledged batch
//! is older than [`STALL`] drops the connection (its unacknowledged
//! batches are lost, as a timed-out POST's was) and opens a new one: a
//! partition, a paused peer or a link holding bytes costs a link at most
//! that long after it heals, instead of TCP's backed-off retransmissions.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use synod_node::{Message, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{watch, Mutex, Notify};

use super::api::{self, AppState, PEER_BODY_LIMIT};
use super::metrics::kind_index;

/// What a peer stream starts with.
pub const PREFACE: &[u8] = b"\0synod-peer/1\n";

/// How often, at most, the receiver acknowledges.
pub const ACK_EVERY: Duration = Duration::from_millis(100);

/// How long a batch may go unacknowledged before the sender gives the
/// connection up (the old per-POST timeout).
pub const STALL: Duration = Duration::from_millis(1000);

/// Most bytes of the hello frame.
const HELLO_LIMIT: usize = 4096;

/// The first frame of a stream.
#[derive(Serialize, Deserialize)]
pub struct Hello {
    /// The cluster token, as `Authorization: Bearer` carries it over HTTP.
    pub token: String,
    pub from: NodeId,
    pub cluster: String,
}

/// Appends one frame holding `value`'s JSON to `buf`.
pub fn encode_frame(buf: &mut Vec<u8>, value: &impl Serialize) -> serde_json::Result<()> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    if let Err(e) = serde_json::to_writer(&mut *buf, value) {
        buf.truncate(at);
        return Err(e);
    }
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Reads one frame's payload into `buf`; `Ok(false)` at a clean end of
/// stream before the frame began.
pub async fn read_frame(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the limit of {limit}"),
        ));
    }
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Ok(true)
}

/// Why a stream was refused or ended, for the log.
fn refuse(error: &str, reason: String) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = encode_frame(&mut out, &api::error_body(error, true, &reason));
    out
}

/// Serves one incoming peer stream (the listener has seen its first byte)
/// until the sender closes it, it breaks, it idles past the listener's
/// idle timeout, or the node shuts down. `trust` marks the connection's
/// slot trusted once the hello shows the token.
pub async fn serve(
    stream: TcpStream,
    st: AppState,
    idle_timeout: Duration,
    trust: impl FnOnce(),
    mut shutdown: watch::Receiver<bool>,
) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 << 10, rd);
    let mut preface = [0u8; PREFACE.len()];
    let mut buf = Vec::new();
    let hello = async {
        rd.read_exact(&mut preface).await.ok()?;
        if preface != PREFACE {
            return None;
        }
        read_frame(&mut rd, &mut buf, HELLO_LIMIT)
            .await
            .ok()
            .filter(|&more| more)?;
        Some(serde_json::from_slice::<Hello>(&buf))
    };
    // A peer sends its hello at once; anything slower is not a peer.
    let hello = match tokio::time::timeout(Duration::from_secs(1), hello).await {
        Ok(Some(Ok(h))) => h,
        Ok(Some(Err(e))) => {
            st.metrics.http_error("bad-request");
            let _ = wr
                .write_all(&refuse(
                    "bad-request",
                    format!("the hello is not valid: {e}"),
                ))
                .await;
            return;
        }
        _ => {
            st.metrics.connection_closed("header-timeout");
            return;
        }
    };
    let token_ok =
        !st.token.is_empty() && api::constant_time_eq(hello.token.as_bytes(), st.token.as_bytes());
    let refusal = if !token_ok {
        Some((
            "unauthorized",
            "a peer stream needs the cluster token".to_string(),
        ))
    } else if hello.from == st.id || !st.members.contains(&hello.from) {
        Some((
            "bad-request",
            format!(
                "`from` {} is not another member of this cluster {:?}",
                hello.from, st.members
            ),
        ))
    } else if hello.cluster != st.identity.cluster() {
        Some((
            "wrong-cluster",
            format!(
                "node {} belongs to cluster {}, this node to cluster {}",
                hello.from,
                hello.cluster,
                st.identity.cluster()
            ),
        ))
    } else {
        None
    };
    if let Some((error, reason)) = refusal {
        st.metrics.http_error(error);
        let _ = wr.write_all(&refuse(error, reason)).await;
        return;
    }
    trust();
    if let Err(e) = st.identity.note(hello.from).await {
        let _ = wr
            .write_all(&refuse("unavailable", e.reason().to_string()))
            .await;
        return;
    }
    let mut ok = Vec::new();
    let _ = encode_frame(&mut ok, &serde_json::json!({"ok": true}));
    if wr.write_all(&ok).await.is_err() {
        return;
    }
    let from = hello.from;
    // Acknowledgements go out from a task of their own: a frame being read
    // is never interrupted by an ack's timer (reading a frame is not
    // cancellation-safe, and a large or delayed frame spans many reads).
    let wr = Arc::new(Mutex::new(wr));
    let read = Arc::new(AtomicU64::new(0));
    let more = Arc::new(Notify::new());
    let acker = AbortOnDrop(tokio::spawn(acknowledge(
        wr.clone(),
        read.clone(),
        more.clone(),
    )));
    let mut n: u64 = 0;
    loop {
        // An idle timeout or a shutdown ends the stream, so dropping a
        // frame half read there loses nothing that matters.
        let r = tokio::select! {
            r = tokio::time::timeout(idle_timeout, read_frame(&mut rd, &mut buf, PEER_BODY_LIMIT)) => r,
            _ = shutdown.changed() => break,
        };
        match r {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => break,
            Ok(Err(e)) => {
                tracing::debug!(from, error = %e, "peer stream broke");
                break;
            }
            Err(_) => {
                st.metrics.connection_closed("idle");
                break;
            }
        }
        n += 1;
        read.store(n, Relaxed);
        more.notify_one();
        let messages: Vec<Message> = match serde_json::from_slice(&buf) {
            Ok(m) => m,
            Err(e) => {
                // A sender that writes garbage is told why and cut off.
                drop(acker);
                st.metrics.http_error("bad-request");
                let refusal = refuse(
                    "bad-request",
                    format!("batch {n} is not a JSON array of messages: {e}"),
                );
                let _ = wr.lock().await.write_all(&refusal).await;
                tracing::warn!(from, error = %e, "peer stream sent an invalid batch; closed");
                return;
            }
        };
        for m in &messages {
            st.metrics.peer_received[kind_index(m.message_kind())].fetch_add(1, Relaxed);
        }
        if messages.is_empty() {
            continue;
        }
        if st
            .events
            .try_send(super::driver::Event::Peer { from, messages })
            .is_err()
        {
            // A lost batch is a lost message.
            st.metrics.http_error("overloaded");
        }
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes the count of batches read, at most every [`ACK_EVERY`] and only
/// when it has grown.
async fn acknowledge(wr: Arc<Mutex<OwnedWriteHalf>>, read: Arc<AtomicU64>, more: Arc<Notify>) {
    let mut acked = 0;
    loop {
        more.notified().await;
        tokio::time::sleep(ACK_EVERY).await;
        let n = read.load(Relaxed);
        if n > acked {
            acked = n;
            if wr.lock().await.write_all(&n.to_be_bytes()).await.is_err() {
                return;
            }
        }
    }
}
