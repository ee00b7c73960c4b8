//! The seam between the nemesis and a cluster: a [`Backend`] starts,
//! addresses, kills, pauses and tears down nodes, and carries the network
//! faults on its peer links. The nemesis decides *what* to break; a backend
//! knows *how* on its platform (local processes and link proxies here;
//! containers and iptables for a docker backend).

use std::fmt;
use std::future::Future;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use crate::error::Result;
use crate::proxy::LinkFault;

/// A node of the cluster, numbered from 1 as `synod-node --id` wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl Serialize for NodeId {
    /// Histories and reports name nodes `n1`, `n2`, ...
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A directed peer link: traffic that `from` sends to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Link {
    pub from: NodeId,
    pub to: NodeId,
}

/// Who leads, as a backend whose nodes do not speak Synod's admin API
/// finds out (etcd's maintenance status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderReport {
    /// The backend has no way of its own: ask the nodes' admin API.
    AskAdmin,
    /// The cluster says; `None` if no node claims to lead right now.
    Reported(Option<NodeId>),
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
    fn nodes(&self) -> Vec<NodeId>;

    /// The base URL of `node`'s client and admin API, e.g.
    /// `http://127.0.0.1:7001`.
    fn url(&self, node: NodeId) -> Result<String>;

    /// The cluster token for admin requests.
    fn token(&self) -> &str;

    /// Where `node`'s stdout and stderr go, if the backend keeps a file.
    fn log_path(&self, node: NodeId) -> Option<PathBuf>;

    /// Whether `node`'s process is running (paused counts as running).
    fn is_running(&self, node: NodeId) -> bool;

    /// Starts every node and waits until each answers `GET /health`.
    fn start(&self) -> impl Future<Output = Result<()>> + Send;

    /// Stops `node` gracefully (SIGTERM), waiting for it to exit.
    fn stop(&self, node: NodeId) -> impl Future<Output = Result<()>> + Send;

    /// Kills `node` at once (SIGKILL) and reaps it.
    fn kill(&self, node: NodeId) -> impl Future<Output = Result<()>> + Send;

    /// Waits for a node that is exiting by itself (after an admin crash) and
    /// reaps it; kills it if it has not exited within `grace`.
    fn reap(
        &self,
        node: NodeId,
        grace: std::time::Duration,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Starts `node` again with its data directory intact, if it is not
    /// running.
    fn restart(&self, node: NodeId) -> impl Future<Output = Result<()>> + Send;

    /// Freezes `node` (SIGSTOP).
    fn pause(&self, node: NodeId) -> Result<()>;

    /// Continues a paused `node` (SIGCONT).
    fn resume(&self, node: NodeId) -> Result<()>;

    /// Puts `fault` in force on the directed link; idempotent.
    fn set_link(&self, link: Link, fault: LinkFault) -> Result<()>;

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
