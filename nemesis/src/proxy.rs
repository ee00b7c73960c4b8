//! Link proxies: one TCP proxy per directed peer link, so network faults are
//! real TCP faults on loopback without root.
//!
//! Node *i* reaches node *j* through the proxy for the link *i -> j*: *i*'s
//! `--peers` URL for *j* points at the proxy's port, and the proxy forwards
//! to *j*'s listen address. The proxy's behaviour is a [`LinkFault`], kept as
//! data in a `watch` channel, so setting the same fault twice is a no-op and
//! healing is setting the default.
//!
//! - **blackhole**: bytes stop flowing in both directions of every
//!   connection on the link and new connections are accepted but never
//!   connected onwards, as with an iptables `DROP`. Held bytes are delivered
//!   in order once healed (TCP would have retransmitted them), so a healed
//!   link carries a consistent byte stream and never a corrupted one.
//! - **delay**: every chunk is delivered `base + uniform(0, jitter)` after it
//!   was read, never before an earlier chunk (per-direction FIFO).
//! - **reset**: every open connection is closed with a TCP RST, and new
//!   connections are reset as soon as they are accepted, like an iptables
//!   `REJECT --reject-with tcp-reset`.
//!
//! Underneath, a connection obeys a [`ConnFault`]: one [`LinkFault`] for
//! the bytes towards the destination and one for the bytes back. A
//! [`LinkProxy`] gives both directions its link's fault; the etcd member
//! proxies ([`crate::member_proxy`]) give each direction the fault of the
//! link its bytes travel, since etcd's raft streams flow back along the
//! connections their receiver opened.

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::backend::LinkFault;

/// What one proxied connection does to its bytes, each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnFault {
    /// Bytes from the connecting node to the destination (its requests).
    pub to_target: LinkFault,
    /// Bytes from the destination back to the connecting node (replies,
    /// and the messages of a stream the connecting node subscribed to).
    pub to_source: LinkFault,
}

impl ConnFault {
    /// The same fault both ways, as for a Synod link.
    pub fn both(fault: LinkFault) -> ConnFault {
        ConnFault {
            to_target: fault,
            to_source: fault,
        }
    }

    /// A connection is reset if either of its directions is.
    fn reset(&self) -> bool {
        self.to_target.reset || self.to_source.reset
    }
}

/// A running proxy for one directed link. Dropping it stops the proxy and
/// closes every connection it carries.
pub struct LinkProxy {
    /// Where the source node connects.
    listen: SocketAddr,
    /// Where the proxy forwards to: the destination node's listen address.
    target: SocketAddr,
    /// The fault in force, the same both ways; every connection task
    /// watches it.
    fault: watch::Sender<ConnFault>,
    /// The accept loop; it owns the connection tasks, so aborting it (on
    /// drop) ends them all.
    accept: JoinHandle<()>,
}

impl LinkProxy {
    /// Starts a proxy on an ephemeral port of 127.0.0.1 forwarding to
    /// `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<LinkProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let listen = listener.local_addr()?;
        let (fault, rx) = watch::channel(ConnFault::default());
        let accept = tokio::spawn(accept_loop(listener, target, rx));
        Ok(LinkProxy {
            listen,
            target,
            fault,
            accept,
        })
    }

    /// The address the source node should connect to.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The destination this proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Puts `fault` in force; idempotent. Returns whether anything changed.
    pub fn set(&self, fault: LinkFault) -> bool {
        set_if_changed(&self.fault, ConnFault::both(fault))
    }

    /// The fault in force.
    pub fn fault(&self) -> LinkFault {
        self.fault.borrow().to_target
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Sends `fault` unless it is already in force; returns whether it changed.
pub(crate) fn set_if_changed(tx: &watch::Sender<ConnFault>, fault: ConnFault) -> bool {
    tx.send_if_modified(|current| {
        if *current == fault {
            false
        } else {
            *current = fault;
            true
        }
    })
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, fault: watch::Receiver<ConnFault>) {
    // Owning the connection tasks here means aborting this task aborts them.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((down, _)) => {
                    conns.spawn(carry(down, Vec::new(), target, fault.clone()));
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e, "link proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // Reap finished connections so the set does not grow forever.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Closes `stream` with a TCP RST rather than a FIN.
pub(crate) fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// How much a held connection may send before we stop reading it: enough
/// for any request head, small enough to bound what a blackhole buffers.
const HELD_BYTES: usize = 1 << 20;

/// Carries one accepted connection to `target` under `fault`, sending
/// `prefix` (bytes already read from `down`) first.
pub(crate) async fn carry(
    down: TcpStream,
    mut prefix: Vec<u8>,
    target: SocketAddr,
    mut fault: watch::Receiver<ConnFault>,
) {
    // A new connection waits out a blackhole before it is connected onwards:
    // to the source it looks like a peer that never answers. If the source
    // gives up meanwhile, the connection is dropped, as a SYN that never
    // got through would be, rather than opened onwards after the heal.
    loop {
        let f = *fault.borrow_and_update();
        if f.reset() {
            reset(&down);
            return;
        }
        if !f.to_target.blackhole {
            break;
        }
        tokio::select! {
            changed = fault.changed() => if changed.is_err() { return },
            gone = source_gone(&down, &mut prefix) => if gone { return },
        }
    }
    let up = match TcpStream::connect(target).await {
        Ok(up) => up,
        Err(_) => {
            // The destination is down: the source sees a reset, as it would
            // connecting to a closed port.
            reset(&down);
            return;
        }
    };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (down_r, down_w) = down.into_split();
    let (up_r, up_w) = up.into_split();
    tokio::join!(
        pipe(down_r, up_w, prefix, fault.clone(), Direction::ToTarget),
        pipe(up_r, down_w, Vec::new(), fault.clone(), Direction::ToSource)
    );
}

/// Waits for what a held source does next: true if it closed or failed,
/// false if it sent bytes (kept in `held`, up to [`HELD_BYTES`]).
async fn source_gone(down: &TcpStream, held: &mut Vec<u8>) -> bool {
    if held.len() >= HELD_BYTES {
        // Stop reading: backpressure, as a full receive window would.
        return std::future::pending().await;
    }
    if down.readable().await.is_err() {
        return true;
    }
    let mut buf = [0u8; 16 * 1024];
    match down.try_read(&mut buf) {
        Ok(0) => true,
        Ok(n) => {
            held.extend_from_slice(&buf[..n]);
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Which way a [`pipe`] carries bytes, so it obeys that direction's fault.
#[derive(Clone, Copy)]
enum Direction {
    ToTarget,
    ToSource,
}

impl Direction {
    fn of(self, f: &ConnFault) -> LinkFault {
        match self {
            Direction::ToTarget => f.to_target,
            Direction::ToSource => f.to_source,
        }
    }
}

/// One direction of a connection: reads chunks (after `prefix`), stamps
/// each with its due time, and a writer delivers them in order once due and
/// not blackholed.
async fn pipe(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    prefix: Vec<u8>,
    fault: watch::Receiver<ConnFault>,
    dir: Direction,
) {
    // Bounded, so a blackholed link applies backpressure instead of
    // buffering without limit.
    let (tx, mut rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>(256);
    let reader_fault = fault.clone();
    let reader = async move {
        let mut last_due = Instant::now();
        let mut prefix = (!prefix.is_empty()).then_some(prefix);
        loop {
            let chunk = match prefix.take() {
                Some(bytes) => Some(bytes),
                None => {
                    let mut buf = vec![0u8; 16 * 1024];
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            Some(buf)
                        }
                    }
                }
            };
            let delay = dir.of(&reader_fault.borrow()).delay;
            let mut due = Instant::now();
            if let Some(d) = delay {
                let jitter_ns = d.jitter.as_nanos() as u64;
                let extra = if jitter_ns == 0 {
                    0
                } else {
                    rand::thread_rng().gen_range(0..=jitter_ns)
                };
                due += d.base + Duration::from_nanos(extra);
            }
            // FIFO: never deliver before an earlier chunk.
            due = due.max(last_due);
            last_due = due;
            let eof = chunk.is_none();
            if tx.send((due, chunk)).await.is_err() || eof {
                return;
            }
        }
    };
    let mut writer_fault = fault.clone();
    let writer = async {
        while let Some((due, chunk)) = rx.recv().await {
            // Only a delayed chunk waits: a timer rounds up to the next
            // millisecond, which every chunk of a healthy link would pay.
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            while dir.of(&writer_fault.borrow_and_update()).blackhole {
                if writer_fault.changed().await.is_err() {
                    return;
                }
            }
            match chunk {
                Some(bytes) => {
                    if w.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = w.shutdown().await;
                    return;
                }
            }
        }
    };
    let mut reset_fault = fault;
    let wait_reset = async {
        loop {
            if reset_fault.borrow_and_update().reset() {
                return;
            }
            if reset_fault.changed().await.is_err() {
                // The proxy is gone; the abort of its tasks ends us.
                std::future::pending::<()>().await;
            }
        }
    };
    let was_reset = tokio::select! {
        _ = async { tokio::join!(reader, writer) } => false,
        _ = wait_reset => true,
    };
    if was_reset {
        reset(w.as_ref());
        // Dropping a write half sends a FIN first; forgetting it lets the
        // socket close with nothing but the RST.
        w.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Delay;
    use std::io::ErrorKind;

    /// A tiny echo server on 127.0.0.1:0.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await?;
        Ok(got)
    }

    #[tokio::test]
    async fn healthy_link_forwards_both_ways() {
        let echo = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        let mut s = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s, b"hello").await.unwrap(), b"hello");
        assert!(proxy.fault().is_healthy());
    }

    #[tokio::test]
    async fn blackhole_holds_traffic_and_heal_delivers_it_in_order() {
        let echo = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        let mut s = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s, b"a").await.unwrap(), b"a");
        assert!(proxy.set(LinkFault {
            blackhole: true,
            ..LinkFault::default()
        }));
        // Setting the same fault again changes nothing.
        assert!(!proxy.set(LinkFault {
            blackhole: true,
            ..LinkFault::default()
        }));
        let r = tokio::time::timeout(Duration::from_millis(300), roundtrip(&mut s, b"bc")).await;
        assert!(r.is_err(), "a blackholed link must not answer");
        // A new connection is accepted but goes nowhere either.
        let mut s2 = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let r2 = tokio::time::timeout(Duration::from_millis(200), roundtrip(&mut s2, b"x")).await;
        assert!(r2.is_err());
        proxy.set(LinkFault::default());
        let mut got = vec![0u8; 2];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut got))
            .await
            .expect("healed link delivers held bytes")
            .unwrap();
        assert_eq!(got, b"bc");
        let mut got2 = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(2), s2.read_exact(&mut got2))
            .await
            .expect("held connection is connected once healed")
            .unwrap();
        assert_eq!(&got2, b"x");
    }

    #[tokio::test]
    async fn a_held_connection_its_source_gave_up_is_not_opened_after_the_heal() {
        // A server that counts the connections reaching it.
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let target = listener.local_addr().unwrap();
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let _ = seen_tx.send(());
                drop(s);
            }
        });
        let proxy = LinkProxy::start(target).await.unwrap();
        proxy.set(LinkFault {
            blackhole: true,
            ..LinkFault::default()
        });
        let mut s = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        s.write_all(b"request").await.unwrap();
        drop(s);
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.set(LinkFault::default());
        let r = tokio::time::timeout(Duration::from_millis(300), seen.recv()).await;
        assert!(r.is_err(), "an abandoned connection reached the server");
        // A live one still does.
        let _live = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), seen.recv())
            .await
            .expect("a new connection goes through");
    }

    #[tokio::test]
    async fn one_way_partition_blocks_only_its_direction() {
        // Two proxies model a -> b and b -> a; only a -> b is cut.
        let echo = echo_server().await;
        let a_to_b = LinkProxy::start(echo).await.unwrap();
        let b_to_a = LinkProxy::start(echo).await.unwrap();
        a_to_b.set(LinkFault {
            blackhole: true,
            ..LinkFault::default()
        });
        let mut blocked = TcpStream::connect(a_to_b.listen_addr()).await.unwrap();
        let mut open = TcpStream::connect(b_to_a.listen_addr()).await.unwrap();
        assert_eq!(roundtrip(&mut open, b"ok").await.unwrap(), b"ok");
        let r =
            tokio::time::timeout(Duration::from_millis(300), roundtrip(&mut blocked, b"no")).await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn delay_adds_latency_with_jitter_bounds() {
        let echo = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        let mut s = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        proxy.set(LinkFault {
            delay: Some(Delay {
                base: Duration::from_millis(100),
                jitter: Duration::from_millis(50),
            }),
            ..LinkFault::default()
        });
        let start = std::time::Instant::now();
        assert_eq!(roundtrip(&mut s, b"slow").await.unwrap(), b"slow");
        let took = start.elapsed();
        // Delayed both ways: at least 2 x base, at most 2 x (base + jitter) plus slack.
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
        proxy.set(LinkFault::default());
        let start = std::time::Instant::now();
        roundtrip(&mut s, b"fast").await.unwrap();
        assert!(start.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn reset_closes_connections_with_rst_and_refuses_new_ones() {
        let echo = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        let mut s = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s, b"a").await.unwrap(), b"a");
        proxy.set(LinkFault {
            reset: true,
            ..LinkFault::default()
        });
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("reset is prompt");
        match r {
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
            Ok(n) => panic!("expected a reset, read {n} bytes"),
        }
        let mut s2 = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let r2 = tokio::time::timeout(Duration::from_secs(2), roundtrip(&mut s2, b"b"))
            .await
            .expect("reset is prompt");
        assert!(r2.is_err());
        proxy.set(LinkFault::default());
        let mut s3 = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s3, b"c").await.unwrap(), b"c");
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_connections() {
        let echo = echo_server().await;
        let proxy = LinkProxy::start(echo).await.unwrap();
        let addr = proxy.listen_addr();
        let mut s = TcpStream::connect(addr).await.unwrap();
        roundtrip(&mut s, b"a").await.unwrap();
        drop(proxy);
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("closed promptly");
        assert!(matches!(r, Ok(0) | Err(_)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(addr).await.is_err(), "listener is gone");
    }
}
