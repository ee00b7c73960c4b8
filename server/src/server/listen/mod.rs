//! The accept loop and the life of one HTTP/1 connection: timeouts, a
//! connection limit below the descriptor limit, capacity reserved for the
//! cluster's own traffic, and JSON bodies for the errors hyper answers
//! by itself.
//!
//! # Timeouts
//!
//! - **Header**: from the first byte of a request to the end of its head
//!   (`--header-timeout-ms`), so a client trickling its headers (slowloris)
//!   cannot hold a connection.
//! - **Idle**: a connection with no request in progress and no byte of a
//!   new one is closed after `--idle-timeout-ms`. The node's own pooled
//!   clients (peer links) drop idle connections sooner, so the server
//!   never closes one under a request in flight.
//! - **Body**: a request body must arrive within `--body-timeout-ms`
//!   (checked where handlers read it, [`super::api`]); a request being
//!   served has no timeout here, since the core answers every command by
//!   its deadline.
//!
//! # Limits and the reserve
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard limit, and at
//! most `--max-connections` connections are open at once (by default half
//! the descriptor limit less a margin, at most 4096), so the log, the
//! snapshot and the peer links always find a descriptor. When every slot
//! is taken the node stops accepting: new connections wait in the kernel's
//! backlog, costing it nothing.
//!
//! Peer traffic must not be starved by clients. Of the slots, a reserve
//! (16 per peer, at least 32) is closed to connections that have not shown
//! the cluster token. A connection is *trusted* once a request on it
//! carries the token (a peer link or the nemesis's admin calls), and a
//! trusted connection no longer counts against the clients' share. When
//! the clients' share is full, a new connection is still accepted into
//! the reserve *on trial*: its first request must arrive within
//! [`TRIAL_HEADER_TIMEOUT`] of the accept and carry the token, or it is answered 503
//! `overloaded` and closed; when the reserve is full of trials, the oldest
//! trial makes room for the newest. A peer sends its head at once, so it
//! wins against idle or trickling clients.
//!
//! Why a reserve rather than a separate peer listener: the reserve needs
//! no second address, so every backend (the local link proxies, the
//! docker compose file and its iptables rules, external clusters, the
//! test harnesses) and every document of one address per node stays as it
//! is, and a node started by hand cannot be misconfigured into peers that
//! share the clients' door. What it gives up: a flood of new connections
//! faster than a peer can send one request head could still evict that
//! peer's trial; a node's established (pooled, trusted) peer connections
//! are never touched.
//!
//! # Peer streams
//!
//! A connection whose first byte is NUL is a peer stream
//! ([`super::peer_stream`]), not HTTP: it goes to the stream's reader
//! instead of hyper, in the same slot, on trial like any other until its
//! hello shows the token.
//!
//! # Errors hyper answers itself
//!
//! A request line or head over [`MAX_HEAD_BYTES`], too many headers, or a
//! request that is not HTTP at all never reaches the router: hyper writes
//! a bare status line and closes. [`Watched`](connection::Watched)
//! recognises that response (a status line written when no handler
//! produced one) and writes the same JSON error body as every other 4xx
//! in its place.
//!
//! # Layout
//!
//! This file holds the limits, the accept loop and the [`Trust`] a handler
//! is given; `slots` keeps the connection slots and the reserve;
//! `connection` runs one connection, its timeouts and the JSON bodies in
//! place of hyper's.

mod connection;
mod slots;

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::metrics::Metrics;
use connection::connection;
use slots::{Slot, Slots};

/// Largest request head (request line and headers) hyper buffers; over it
/// the answer is 431 (414 if the request line alone is that long).
pub const MAX_HEAD_BYTES: usize = 64 << 10;
/// Most headers in one request (hyper's limit); over it, 431.
pub const MAX_HEADERS: usize = 100;
/// How long a connection on trial has to deliver its first request head.
pub const TRIAL_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Descriptors kept free of connections: log, snapshot, lock, peer links,
/// the runtime's own.
const FD_MARGIN: u64 = 64;
/// The default connection limit never exceeds this.
const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// How the listener treats connections; built once at start.
#[derive(Clone)]
pub struct Config {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// Every connection, trusted or not.
    pub max_connections: usize,
    /// Slots closed to connections that have not shown the token.
    pub reserved: usize,
    /// The cluster token: what a connection on trial must show.
    pub token: Arc<str>,
    pub metrics: Arc<Metrics>,
    /// Where peer streams go (`super::peer_stream`); set once the API's
    /// state exists. Without it a peer stream is closed at once.
    pub peer_streams: Option<super::api::AppState>,
}

impl Config {
    /// Raises the descriptor limit and derives the connection limits from
    /// it and the flags; refuses a limit that would not leave room.
    pub fn new(
        args: &super::cli::Args,
        peers: usize,
        token: Arc<str>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Config> {
        if args.header_timeout_ms == 0 || args.idle_timeout_ms == 0 || args.body_timeout_ms == 0 {
            anyhow::bail!(
                "--header-timeout-ms, --idle-timeout-ms and --body-timeout-ms must be positive"
            );
        }
        let nofile = raise_fd_limit();
        let room = connection_room(nofile);
        let max_connections = match args.max_connections {
            Some(0) => anyhow::bail!("--max-connections must be positive"),
            Some(n) if n > room => anyhow::bail!(
                "--max-connections {n} leaves too few descriptors: the limit is {nofile} \
                 (RLIMIT_NOFILE), so at most {room} connections fit; raise `ulimit -n` or \
                 lower --max-connections"
            ),
            Some(n) => n,
            None => room.min(DEFAULT_MAX_CONNECTIONS),
        };
        if max_connections < 2 {
            anyhow::bail!(
                "the descriptor limit {nofile} (RLIMIT_NOFILE) leaves no room for connections; \
                 raise `ulimit -n`"
            );
        }
        let reserved = (16 * peers).max(32).min(max_connections / 2);
        tracing::info!(
            nofile,
            max_connections,
            reserved,
            header_timeout_ms = args.header_timeout_ms,
            idle_timeout_ms = args.idle_timeout_ms,
            "connection limits"
        );
        Ok(Config {
            header_timeout: Duration::from_millis(args.header_timeout_ms),
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
            max_connections,
            reserved,
            token,
            metrics,
            peer_streams: None,
        })
    }
}

/// Connections that fit under a descriptor limit of `nofile`: half of it
/// less a margin, so the node's own files always find a descriptor.
pub fn connection_room(nofile: u64) -> usize {
    (nofile / 2).saturating_sub(FD_MARGIN / 2).min(1 << 20) as usize
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft
/// limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we
    // pass, which lives on this stack frame.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Connections the kernel queues before we accept them (capped by
/// `net.core.somaxconn`): a burst of connections waits there, and so do
/// new ones while every slot is taken.
const BACKLOG: u32 = 4096;

/// Binds the node's address with a deep accept backlog.
pub async fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `app` on `listener` until `stop` resolves, then lets every
/// connection finish its request in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: Config,
    stop: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let slots = Arc::new(Slots::new(config.max_connections, config.reserved));
    let config = Arc::new(config);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(stop);
    loop {
        while conns.try_join_next().is_some() {}
        // Every slot taken and no trial to evict: leave new connections
        // in the backlog until one closes.
        if !slots.has_room() {
            tokio::select! {
                _ = slots.freed.notified() => continue,
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                _ = &mut stop => break,
            }
        }
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    accept_error(&e).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Some(slot) = slots.admit() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        conns.spawn(connection(
            stream,
            app.clone(),
            config.clone(),
            slot,
            shutdown_rx.clone(),
        ));
    }
    drop(listener);
    shutdown_tx.send_replace(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// Descriptors or memory ran out (EMFILE, ENFILE, ENOMEM): the connection
/// stays in the backlog, so wait for some to close rather than spin.
async fn accept_error(e: &io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => {}
        _ => {
            tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The request extension that lets [`api`](super::api) mark a connection
/// trusted.
#[derive(Clone)]
pub struct Trust(Arc<Slot>);

impl Trust {
    pub fn grant(&self) {
        self.0.trust();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_leaves_descriptors_for_the_node() {
        assert_eq!(connection_room(64), 0);
        assert_eq!(connection_room(1024), 480);
        assert!(connection_room(20_000) < 10_000);
    }
}
