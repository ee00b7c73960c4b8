//! The seam between the nemesis and a cluster: a [`Backend`] starts,
//! addresses, kills, pauses and tears down nodes, and carries the network
//! faults on its peer links. The nemesis decides *what* to break; a backend
//! knows *how* on its platform (local processes and link proxies here;
//! containers and iptables for a docker backend).
//!
//! A link's fault ([`LinkFault`], with its [`Delay`]) is part of this
//! contract, not of any one backend: the TCP proxy, iptables rules on
//! docker and ssh, and the etcd member proxies each carry it their way.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::error::Result;

/// A node of the cluster as the bench names it: numbered from 1 as
/// `synod-node --id` wants, shown as `n1`, `n2`, ... (the node's own id
/// type, `synod_node::NodeId`, is the protocol's; this is the bench's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(pub u32);

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl Serialize for NodeName {
    /// Histories and reports name nodes `n1`, `n2`, ...
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A directed peer link: traffic that `from` sends to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Link {
    pub from: NodeName,
    pub to: NodeName,
}

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

/// Who leads, as a backend whose nodes do not speak Synod's admin API
/// finds out (etcd's maintenance status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderReport {
    /// The backend has no way of its own: ask the nodes' admin API.
    AskAdmin,
    /// The cluster says; `None` if no node claims to lead right now.
    Reported(Option<NodeName>),
}

/// A running cluster, as the nemesis and the workload see it.
///
/// Every method takes `&self`: the workload reads addresses while the
/// nemesis kills and restarts nodes, so implementations keep their mutable
/// state behind locks. Every fault operation is idempotent: killing a dead
/// node or resuming a running one is not an error, so the nemesis can
/// re-apply its whole fault state at any time.
pub trait Backend: Send + Sync + 'static {
    /// The nodes, in id order.
    fn nodes(&self) -> Vec<NodeName>;

    /// The base URL of `node`'s client and admin API, e.g.
    /// `http://127.0.0.1:7001`.
    fn url(&self, node: NodeName) -> Result<String>;

    /// The cluster token for admin requests.
    fn token(&self) -> &str;

    /// Where `node`'s stdout and stderr go, if the backend keeps a file.
    fn log_path(&self, node: NodeName) -> Option<PathBuf>;

    /// Whether `node`'s process is running (paused counts as running).
    fn is_running(&self, node: NodeName) -> bool;

    /// Starts every node and waits until each answers `GET /health`.
    fn start(&self) -> impl Future<Output = Result<()>> + Send;

    /// Stops `node` gracefully (SIGTERM), waiting for it to exit.
    fn stop(&self, node: NodeName) -> impl Future<Output = Result<()>> + Send;

    /// Kills `node` at once (SIGKILL) and reaps it.
    fn kill(&self, node: NodeName) -> impl Future<Output = Result<()>> + Send;

    /// Waits for a node that is exiting by itself (after an admin crash) and
    /// reaps it; kills it if it has not exited within `grace`.
    fn reap(
        &self,
        node: NodeName,
        grace: std::time::Duration,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Starts `node` again with its data directory intact, if it is not
    /// running.
    fn restart(&self, node: NodeName) -> impl Future<Output = Result<()>> + Send;

    /// Freezes `node` (SIGSTOP).
    fn pause(&self, node: NodeName) -> Result<()>;

    /// Continues a paused `node` (SIGCONT).
    fn resume(&self, node: NodeName) -> Result<()>;

    /// Puts `fault` in force on the directed link; idempotent. A backend
    /// may hold the change until [`Backend::commit_links`].
    fn set_link(&self, link: Link, fault: LinkFault) -> Result<()>;

    /// Puts every link fault set since the last call in force, at once:
    /// the nemesis calls it after setting every link. Backends for which
    /// each change costs a round trip to a host (ssh) write each host's
    /// rules here once, all hosts in parallel; others have nothing left
    /// to do.
    fn commit_links(&self) -> Result<()> {
        Ok(())
    }

    /// Whether [`Backend::power_off`] works here: the nodes' data
    /// directories are on a filesystem that forgets unsynced writes.
    fn loses_unsynced_writes(&self) -> bool {
        false
    }

    /// Cuts `node`'s power: SIGKILL, then every write it had not synced
    /// is forgotten by the filesystem under its data directory. The node
    /// stays down until [`Backend::restart`]. Backends without such a
    /// filesystem refuse; the nemesis then needs the node's admin crash.
    fn power_off(&self, node: NodeName) -> impl Future<Output = Result<()>> + Send {
        async move {
            Err(crate::NemesisError::Unsupported(format!(
                "power loss of {node}: this backend has no lose-unsynced-writes filesystem"
            )))
        }
    }

    /// Whether the backend sets clocks itself ([`Backend::skew_clock`],
    /// e.g. through libfaketime) instead of the nodes' admin clock.
    fn skews_clocks(&self) -> bool {
        false
    }

    /// Sets `node`'s clock to `real_now * rate + offset`, from now on.
    fn skew_clock(&self, node: NodeName, offset_ms: i64, rate: f64) -> Result<()> {
        let _ = (offset_ms, rate);
        Err(crate::NemesisError::Unsupported(format!(
            "the clock of {node}: this backend has no clock of its own; use the admin clock"
        )))
    }

    /// Who leads, if the backend knows better than the nodes' admin API
    /// (an etcd cluster). The nemesis aims its `isolate-leader` partitions
    /// and half of its other faults there.
    fn report_leader(&self) -> impl Future<Output = LeaderReport> + Send {
        async { LeaderReport::AskAdmin }
    }

    /// Heals every fault, continues paused nodes, kills and reaps every
    /// process and stops the proxies. Safe to call more than once.
    fn teardown(&self) -> impl Future<Output = ()> + Send;
}
