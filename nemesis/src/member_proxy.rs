//! Member proxies: one TCP proxy in front of each etcd member's peer port,
//! which tells which member is talking by what it says, so a local etcd
//! cluster gets the same per-link network faults as Synod nodes.
//!
//! Synod nodes take one URL per peer, so each directed link has its own
//! [`LinkProxy`](crate::proxy::LinkProxy). etcd members must agree on one
//! advertised peer URL per member: every member reaches member *j* at the
//! same address, so a proxy there has to learn the sender from the
//! traffic. etcd's peer traffic is HTTP/1.1 (`rafthttp`): stream
//! subscriptions (`GET /raft/stream/{message,msgapp}/<sender>`), pipelined
//! messages and snapshots (`POST /raft`, `POST /raft/snapshot`), and every
//! one of these requests carries `X-Server-From: <sender's member id in
//! hex>`. A TCP connection comes from one process, so once the first request
//! on it names the sender, every byte of it belongs to one pair of members.
//!
//! Each direction of such a connection then obeys its own link: requests
//! travel *sender -> j*, replies travel *j -> sender*. That matters for
//! etcd: a stream is opened by the member that *receives* it, so *j*'s raft
//! messages to the sender flow back along the sender's connection. Cutting
//! only the link *j -> sender* thus holds the stream's replies while the
//! sender's own requests still get through.
//!
//! Requests without the header (the health probes `GET /raft/probing`,
//! `GET /version`, `GET /members`, lease forwarding) cannot be told apart.
//! The proxy makes such a request the only one on its connection, by
//! rewriting its `Connection` header to `close` (etcd's Go server then
//! closes the connection after replying, and Go's client does not reuse
//! it), so a later request with the header always starts a connection of
//! its own. Traffic of unknown origin (no header, a sender we do not know
//! yet, or bytes that are not an HTTP request head within
//! [`MAX_HEAD`] bytes) is treated as if every other member sent it at
//! once: blackholed if any link into *j* is (its replies: if any link out
//! of *j* is), reset if any is, delayed by the longest delay. A cut never
//! leaks; the price is that a probe between two healthy members can be
//! held during a partial partition, which costs etcd a log line, not a
//! message.
//!
//! The member ids are etcd's (a hash of the peer URLs and the cluster
//! token); the backend learns them from the cluster after start and hands
//! them over with [`MemberProxy::learn`]. Connections opened before that
//! follow the unknown-origin rule, and switch to their own links as soon as
//! the ids are known: a connection subscribes to its sender's id, not to a
//! node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::backend::{LinkFault, NodeName};
use crate::lock;
use crate::proxy::{carry, set_if_changed, ConnFault};

/// The longest request head the proxy reads to find the sender; a Go client
/// writes a few hundred bytes.
pub const MAX_HEAD: usize = 64 * 1024;

/// The header rafthttp puts on every raft request.
const SENDER_HEADER: &str = "x-server-from";

/// At most this many distinct unknown sender ids get a channel of their
/// own; more (only a misbehaving peer would send them) share the
/// unknown-origin channel.
const MAX_SENDERS: usize = 64;

/// What the first bytes of a connection say about who sent them, and what
/// to forward.
#[derive(Debug, PartialEq, Eq)]
pub struct Sniffed {
    /// The sender's member id, from `X-Server-From`.
    pub sender: Option<u64>,
    /// The bytes to send on: as read, or with `Connection: close` put into
    /// a request head without a sender.
    pub forward: Vec<u8>,
}

/// Reads `buf` (the first bytes of a connection) as an HTTP/1.x request
/// head. With `X-Server-From` it names the sender and forwards the bytes as
/// they are; a complete head without it gets `Connection: close` (any
/// other `Connection` header dropped); anything else is forwarded
/// untouched, of unknown origin.
pub fn sniff(buf: Vec<u8>) -> Sniffed {
    let unknown = |forward| Sniffed {
        sender: None,
        forward,
    };
    let Some(end) = head_end(&buf) else {
        return unknown(buf);
    };
    let Ok(head) = std::str::from_utf8(&buf[..end - 4]) else {
        return unknown(buf);
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let is_http = request_line.split(' ').count() == 3
        && (request_line.ends_with(" HTTP/1.1") || request_line.ends_with(" HTTP/1.0"));
    if !is_http {
        return unknown(buf);
    }
    let mut kept = vec![request_line];
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            // Not a header line: not a head we understand.
            return unknown(buf);
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case(SENDER_HEADER) {
            let sender = u64::from_str_radix(value.trim(), 16).ok();
            if sender.is_some() {
                return Sniffed {
                    sender,
                    forward: buf,
                };
            }
        }
        if !name.eq_ignore_ascii_case("connection") {
            kept.push(line);
        }
    }
    let mut forward = Vec::with_capacity(buf.len() + 20);
    for line in kept {
        forward.extend_from_slice(line.as_bytes());
        forward.extend_from_slice(b"\r\n");
    }
    forward.extend_from_slice(b"Connection: close\r\n\r\n");
    forward.extend_from_slice(&buf[end..]);
    unknown(forward)
}

/// Where the head ends (just past its blank line), if it does.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The sum of several links' faults, for traffic that could be on any of
/// them: blackholed or reset if any is, the longest delay of any.
fn worst<'a>(faults: impl Iterator<Item = &'a LinkFault>) -> LinkFault {
    let mut sum = LinkFault::default();
    for f in faults {
        sum.blackhole |= f.blackhole;
        sum.reset |= f.reset;
        sum.delay = match (sum.delay, f.delay) {
            (Some(a), Some(b)) => Some(if b.base + b.jitter > a.base + a.jitter {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        };
    }
    sum
}

/// The faults around one member and who is who: the routing table of its
/// proxy.
struct Routes {
    /// The member this proxy stands in front of.
    me: NodeName,
    /// etcd's member ids, learnt after start.
    members: BTreeMap<u64, NodeName>,
    /// The fault of each link `from -> me`.
    inbound: BTreeMap<NodeName, LinkFault>,
    /// The fault of each link `me -> to`.
    outbound: BTreeMap<NodeName, LinkFault>,
    /// One channel per sender id seen (`None`: unknown origin); every
    /// connection watches its sender's.
    channels: BTreeMap<Option<u64>, watch::Sender<ConnFault>>,
}

impl Routes {
    /// What a connection from `sender` must obey now.
    fn fault_for(&self, sender: Option<u64>) -> ConnFault {
        match sender.and_then(|id| self.members.get(&id)) {
            Some(&from) if from != self.me => ConnFault {
                to_target: self.inbound.get(&from).copied().unwrap_or_default(),
                to_source: self.outbound.get(&from).copied().unwrap_or_default(),
            },
            _ => ConnFault {
                to_target: worst(self.inbound.values()),
                to_source: worst(self.outbound.values()),
            },
        }
    }

    /// Re-sends every channel's fault; idempotent.
    fn refresh(&self) {
        for (&sender, tx) in &self.channels {
            set_if_changed(tx, self.fault_for(sender));
        }
    }

    fn subscribe(&mut self, sender: Option<u64>) -> watch::Receiver<ConnFault> {
        let key = match sender {
            Some(id) if self.members.contains_key(&id) || self.channels.len() < MAX_SENDERS => {
                Some(id)
            }
            _ => None,
        };
        if let Some(tx) = self.channels.get(&key) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(self.fault_for(key));
        self.channels.insert(key, tx);
        rx
    }
}

/// A running proxy in front of one etcd member's peer port. Dropping it
/// stops the proxy and closes every connection it carries.
pub struct MemberProxy {
    /// Where the other members connect: the member's advertised peer URL.
    listen: SocketAddr,
    routes: Arc<Mutex<Routes>>,
    /// The accept loop; it owns the connection tasks, so aborting it (on
    /// drop) ends them all.
    accept: JoinHandle<()>,
}

impl MemberProxy {
    /// Starts a proxy for member `me` on an ephemeral port of 127.0.0.1,
    /// forwarding to `target`, the member's real peer port.
    pub async fn start(me: NodeName, target: SocketAddr) -> std::io::Result<MemberProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let listen = listener.local_addr()?;
        let routes = Arc::new(Mutex::new(Routes {
            me,
            members: BTreeMap::new(),
            inbound: BTreeMap::new(),
            outbound: BTreeMap::new(),
            channels: BTreeMap::new(),
        }));
        let accept = tokio::spawn(accept_loop(listener, target, routes.clone()));
        Ok(MemberProxy {
            listen,
            routes,
            accept,
        })
    }

    /// The address the other members connect to.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Tells the proxy which etcd member id is which node.
    pub fn learn(&self, members: &BTreeMap<u64, NodeName>) {
        let mut r = lock(&self.routes);
        r.members = members.clone();
        r.refresh();
    }

    /// Puts `fault` in force on the link `from -> me`; idempotent.
    pub fn set_inbound(&self, from: NodeName, fault: LinkFault) {
        let mut r = lock(&self.routes);
        r.inbound.insert(from, fault);
        r.refresh();
    }

    /// Puts `fault` in force on the link `me -> to`; idempotent.
    pub fn set_outbound(&self, to: NodeName, fault: LinkFault) {
        let mut r = lock(&self.routes);
        r.outbound.insert(to, fault);
        r.refresh();
    }

    /// Heals every link through this proxy.
    pub fn heal(&self) {
        let mut r = lock(&self.routes);
        r.inbound.clear();
        r.outbound.clear();
        r.refresh();
    }
}

impl Drop for MemberProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, routes: Arc<Mutex<Routes>>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((down, _)) => {
                    conns.spawn(serve(down, target, routes.clone()));
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e, "member proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Reads the first request head, finds the sender and carries the
/// connection under its links' faults.
async fn serve(mut down: TcpStream, target: SocketAddr, routes: Arc<Mutex<Routes>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while head_end(&buf).is_none() && buf.len() < MAX_HEAD {
        match down.read(&mut chunk).await {
            Ok(0) | Err(_) if buf.is_empty() => return,
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let sniffed = sniff(buf);
    let fault = lock(&routes).subscribe(sniffed.sender);
    carry(down, sniffed.forward, target, fault).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Delay;
    use tokio::io::AsyncWriteExt;

    const STREAM_HEAD: &str = "GET /raft/stream/message/4036b1db24775ea0 HTTP/1.1\r\n\
        Host: 127.0.0.1:2380\r\nUser-Agent: Go-http-client/1.1\r\n\
        X-Server-From: 4036b1db24775ea0\r\nX-Raft-To: 80af5d65a6e2f603\r\n\r\n";

    #[test]
    fn a_raft_request_names_its_sender_and_is_forwarded_as_is() {
        let bytes = STREAM_HEAD.as_bytes().to_vec();
        let s = sniff(bytes.clone());
        assert_eq!(s.sender, Some(0x4036b1db24775ea0));
        assert_eq!(s.forward, bytes);
        // Header names are case-insensitive; a body already read stays.
        let post =
            b"POST /raft HTTP/1.1\r\nx-server-from: 2a\r\nContent-Length: 3\r\n\r\nabc".to_vec();
        let s = sniff(post.clone());
        assert_eq!(s.sender, Some(42));
        assert_eq!(s.forward, post);
    }

    #[test]
    fn a_request_without_sender_becomes_the_only_one_on_its_connection() {
        let probe =
            b"GET /raft/probing HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n".to_vec();
        let s = sniff(probe);
        assert_eq!(s.sender, None);
        assert_eq!(
            String::from_utf8(s.forward).unwrap(),
            "GET /raft/probing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let lease = b"POST /leases HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi".to_vec();
        assert_eq!(
            String::from_utf8(sniff(lease).forward).unwrap(),
            "POST /leases HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
        );
    }

    #[test]
    fn what_is_not_a_request_head_is_forwarded_untouched() {
        for bytes in [
            b"\x16\x03\x01 tls hello".to_vec(),
            b"GET /raft HTTP/1.1\r\nX-Server-From: 1".to_vec(),
            b"HELLO\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(),
        ] {
            let s = sniff(bytes.clone());
            assert_eq!(s.sender, None);
            assert_eq!(s.forward, bytes);
        }
        // A sender that is not a hex id is no sender.
        let s = sniff(b"GET / HTTP/1.1\r\nX-Server-From: zz\r\n\r\n".to_vec());
        assert_eq!(s.sender, None);
    }

    fn blackhole() -> LinkFault {
        LinkFault {
            blackhole: true,
            ..LinkFault::default()
        }
    }

    fn routes(me: u32) -> Routes {
        Routes {
            me: NodeName(me),
            members: BTreeMap::from([(0xa, NodeName(1)), (0xb, NodeName(2)), (0xc, NodeName(3))]),
            inbound: BTreeMap::new(),
            outbound: BTreeMap::new(),
            channels: BTreeMap::new(),
        }
    }

    #[test]
    fn each_direction_follows_its_own_link_and_unknowns_the_worst() {
        // The proxy in front of n3; n1 -> n3 is cut one way.
        let mut r = routes(3);
        r.inbound.insert(NodeName(1), blackhole());
        let slow = Delay {
            base: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
        };
        r.outbound.insert(
            NodeName(2),
            LinkFault {
                delay: Some(slow),
                ..LinkFault::default()
            },
        );
        // n1's requests are held, n3's replies to n1 flow.
        assert_eq!(
            r.fault_for(Some(0xa)),
            ConnFault {
                to_target: blackhole(),
                to_source: LinkFault::default(),
            }
        );
        // n2's requests flow, n3's replies to n2 are slow.
        assert_eq!(r.fault_for(Some(0xb)).to_target, LinkFault::default());
        assert_eq!(r.fault_for(Some(0xb)).to_source.delay, Some(slow));
        // Unknown, unmapped, or claiming to be n3 itself: the worst of all.
        for sender in [None, Some(0xdead), Some(0xc)] {
            let f = r.fault_for(sender);
            assert!(f.to_target.blackhole, "{sender:?}");
            assert_eq!(f.to_source.delay, Some(slow), "{sender:?}");
        }
    }

    #[test]
    fn a_connection_switches_to_its_link_once_the_ids_are_learnt() {
        let mut r = routes(3);
        r.members.clear();
        r.inbound.insert(NodeName(2), blackhole());
        let rx = r.subscribe(Some(0xa));
        // Before the ids are known, n1's connection is of unknown origin.
        assert!(rx.borrow().to_target.blackhole);
        r.members = routes(3).members;
        r.refresh();
        assert!(!rx.borrow().to_target.blackhole, "n1 -> n3 is healthy");
        // Too many unknown ids share the unknown-origin channel.
        for id in 0..2 * MAX_SENDERS as u64 {
            r.subscribe(Some(0x1000 + id));
        }
        assert!(r.channels.len() <= MAX_SENDERS + 1);
    }

    /// A fake peer port: answers each request head with its sender (or
    /// `-`), and closes the connection after a `Connection: close` one, as
    /// Go's server does (saying `close`).
    async fn fake_member() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while let Some(end) = head_end(&buf) {
                            let head: Vec<u8> = buf.drain(..end).collect();
                            let text = String::from_utf8_lossy(&head).to_lowercase();
                            let from = text
                                .lines()
                                .find_map(|l| l.strip_prefix("x-server-from: "))
                                .unwrap_or("-")
                                .to_string();
                            let close = text.contains("\r\nconnection: close\r\n");
                            let reply = if close {
                                format!("{from} close\n")
                            } else {
                                format!("{from}\n")
                            };
                            if s.write_all(reply.as_bytes()).await.is_err() || close {
                                return;
                            }
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        addr
    }

    async fn ask(s: &mut TcpStream, head: &str) -> std::io::Result<String> {
        s.write_all(head.as_bytes()).await?;
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\n") {
            if s.read(&mut b).await? == 0 {
                break;
            }
            got.push(b[0]);
        }
        Ok(String::from_utf8_lossy(&got).trim().to_string())
    }

    #[tokio::test]
    async fn a_one_way_cut_holds_only_its_sender_and_direction() {
        let member = fake_member().await;
        // The proxy in front of n3.
        let proxy = MemberProxy::start(NodeName(3), member).await.unwrap();
        proxy.learn(&routes(3).members);
        let head = |from: &str| {
            format!("GET /raft/stream/message/{from} HTTP/1.1\r\nX-Server-From: {from}\r\n\r\n")
        };
        let mut from_n1 = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let mut from_n2 = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert_eq!(ask(&mut from_n1, &head("a")).await.unwrap(), "a");
        assert_eq!(ask(&mut from_n2, &head("b")).await.unwrap(), "b");
        // Cut n3 -> n1 only: n1's requests still arrive, n3's answers to n1
        // are held; n2 is untouched.
        proxy.set_outbound(NodeName(1), blackhole());
        let held =
            tokio::time::timeout(Duration::from_millis(300), ask(&mut from_n1, &head("a"))).await;
        assert!(held.is_err(), "n3's reply to n1 must be held");
        assert_eq!(ask(&mut from_n2, &head("b")).await.unwrap(), "b");
        // A new connection from n1 is carried (its direction is open).
        let mut again = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        again.write_all(head("a").as_bytes()).await.unwrap();
        proxy.heal();
        // Healed: the held reply and the new connection's arrive.
        assert_eq!(ask(&mut from_n1, "").await.unwrap(), "a");
        assert_eq!(ask(&mut again, "").await.unwrap(), "a");
    }

    #[tokio::test]
    async fn a_partition_holds_new_connections_and_probes_are_closed_after_one_request() {
        let member = fake_member().await;
        let proxy = MemberProxy::start(NodeName(3), member).await.unwrap();
        proxy.learn(&routes(3).members);
        proxy.set_inbound(NodeName(1), blackhole());
        let mut from_n1 = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let r = tokio::time::timeout(
            Duration::from_millis(300),
            ask(
                &mut from_n1,
                "POST /raft HTTP/1.1\r\nX-Server-From: a\r\nContent-Length: 0\r\n\r\n",
            ),
        )
        .await;
        assert!(r.is_err(), "n1 -> n3 is cut");
        // A probe without a sender: n1 -> n3 is cut, so it is held too.
        let mut probe = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let r = tokio::time::timeout(
            Duration::from_millis(300),
            ask(&mut probe, "GET /raft/probing HTTP/1.1\r\n\r\n"),
        )
        .await;
        assert!(r.is_err(), "unknown origin follows the worst link");
        proxy.heal();
        assert_eq!(ask(&mut from_n1, "").await.unwrap(), "a");
        assert_eq!(ask(&mut probe, "").await.unwrap(), "- close");
        // A sender's connection stays open for its next request.
        assert_eq!(
            ask(
                &mut from_n1,
                "POST /raft HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
            )
            .await
            .unwrap(),
            "-"
        );
        // Reset on any link resets connections of unknown origin at once.
        proxy.set_inbound(
            NodeName(2),
            LinkFault {
                reset: true,
                ..LinkFault::default()
            },
        );
        let mut s = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            ask(&mut s, "GET /version HTTP/1.1\r\n\r\n"),
        )
        .await
        .expect("a reset is prompt");
        assert!(matches!(r.as_deref(), Err(_) | Ok("")), "{r:?}");
    }
}
