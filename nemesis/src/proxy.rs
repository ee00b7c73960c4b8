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

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Extra latency on a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Delay {
    /// Added to every chunk.
    pub base: Duration,
    /// Upper bound of a uniform random extra per chunk.
    pub jitter: Duration,
}

/// What a link does to its traffic; the default is a healthy link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkFault {
    /// Nothing flows (a partition, or one direction of it).
    pub blackhole: bool,
    /// Traffic flows late.
    pub delay: Option<Delay>,
    /// Connections are reset.
    pub reset: bool,
}

impl LinkFault {
    /// Whether this is a healthy link.
    pub fn is_healthy(&self) -> bool {
        *self == LinkFault::default()
    }
}

/// A running proxy for one directed link. Dropping it stops the proxy and
/// closes every connection it carries.
pub struct LinkProxy {
    /// Where the source node connects.
    listen: SocketAddr,
    /// Where the proxy forwards to: the destination node's listen address.
    target: SocketAddr,
    /// The fault in force; every connection task watches it.
    fault: watch::Sender<LinkFault>,
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
        let (fault, rx) = watch::channel(LinkFault::default());
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
        self.fault.send_if_modified(|current| {
            if *current == fault {
                false
            } else {
                *current = fault;
                true
            }
        })
    }

    /// The fault in force.
    pub fn fault(&self) -> LinkFault {
        *self.fault.borrow()
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, fault: watch::Receiver<LinkFault>) {
    // Owning the connection tasks here means aborting this task aborts them.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((down, _)) => {
                    conns.spawn(serve_connection(down, target, fault.clone()));
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
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn serve_connection(
    down: TcpStream,
    target: SocketAddr,
    mut fault: watch::Receiver<LinkFault>,
) {
    // A new connection waits out a blackhole before it is connected onwards:
    // to the source it looks like a peer that never answers.
    loop {
        let f = *fault.borrow_and_update();
        if f.reset {
            reset(&down);
            return;
        }
        if !f.blackhole {
            break;
        }
        if fault.changed().await.is_err() {
            return;
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
        pipe(down_r, up_w, fault.clone()),
        pipe(up_r, down_w, fault.clone())
    );
}

/// One direction of a connection: reads chunks, stamps each with its due
/// time, and a writer delivers them in order once due and not blackholed.
async fn pipe(mut r: OwnedReadHalf, mut w: OwnedWriteHalf, fault: watch::Receiver<LinkFault>) {
    // Bounded, so a blackholed link applies backpressure instead of
    // buffering without limit.
    let (tx, mut rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>(256);
    let reader_fault = fault.clone();
    let reader = async move {
        let mut last_due = Instant::now();
        loop {
            let mut buf = vec![0u8; 16 * 1024];
            let read = r.read(&mut buf).await;
            let chunk = match read {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some(buf)
                }
            };
            let delay = reader_fault.borrow().delay;
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
            tokio::time::sleep_until(due).await;
            while writer_fault.borrow_and_update().blackhole {
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
            if reset_fault.borrow_and_update().reset {
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
