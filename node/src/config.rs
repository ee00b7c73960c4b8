//! The node's protocol settings: the knobs `docs/api.md` lists as flags,
//! in the units the core uses (logical milliseconds from `Tick`).

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Who proposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proposers {
    /// A stable, elected leader proposes; followers forward to it.
    Leader,
    /// Every node proposes for its own clients, backing off with a
    /// randomized exponential delay when preempted (the paper's dueling
    /// proposers). Safe, but may livelock for a while.
    Any,
}

/// How learners hear that a value was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Learn {
    /// Acceptors answer the leader only; the leader (distinguished learner)
    /// announces the commit point.
    Leader,
    /// Every acceptor tells every node what it accepted; each node counts.
    All,
}

/// How reads are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reads {
    /// Reads go through the log like writes: linearizable.
    Log,
    /// The leader answers from its state while it holds a lease renewed by
    /// majority heartbeats. Linearizable while clock rates drift less than
    /// `lease_drift_ms` per election timeout. With `proposers=any` there is
    /// no stable leader to hold a lease, so reads go through the log.
    Lease,
    /// Any replica answers from its applied state. **Unsafe on purpose**:
    /// stale reads, so the bench can show it catches them.
    Local,
}

/// Whether the log is fsynced before the replies that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    Always,
    /// **Unsafe on purpose**: acknowledged state is lost on power loss.
    Never,
}

/// The protocol configuration of one replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// Every member of the cluster, this node included.
    pub members: Vec<NodeId>,
    pub proposers: Proposers,
    pub learn: Learn,
    pub reads: Reads,
    /// Read by the storage, not the core; kept here so one value
    /// describes a node.
    pub fsync: Fsync,
    /// Client commands per log slot.
    pub batch_size: usize,
    /// Slots in phase 2 at once.
    pub pipeline: usize,
    pub heartbeat_ms: u64,
    /// Followers start an election after a random timeout in
    /// `[election_timeout_ms, 2 * election_timeout_ms]` without a heartbeat.
    pub election_timeout_ms: u64,
    /// Subtracted from the lease so clocks that drift apart by less than
    /// this per election timeout cannot overlap two leases.
    pub lease_drift_ms: u64,
    /// Deadline of a client request; past it the core replies
    /// `NotProposed` or `Indeterminate`.
    pub request_timeout_ms: u64,
    /// Take a snapshot (and let the log be truncated) every this many
    /// applied slots; 0 never.
    pub snapshot_every: u64,
    /// Most chosen entries sent in one catch-up reply.
    pub catch_up_batch: usize,
    /// Test-only protocol bug: a new leader ignores the values reported in
    /// promises and fills those slots with no-ops. Exists so the
    /// simulation can prove it catches a broken Paxos. Never set it.
    #[doc(hidden)]
    #[serde(skip)]
    pub bug_ignore_promised_values: bool,
}

impl Config {
    /// The defaults of `docs/api.md` for node `id` in `members`.
    pub fn new(id: NodeId, members: Vec<NodeId>) -> Self {
        Config {
            id,
            members,
            proposers: Proposers::Leader,
            learn: Learn::Leader,
            reads: Reads::Log,
            fsync: Fsync::Always,
            batch_size: 64,
            pipeline: 16,
            heartbeat_ms: 50,
            election_timeout_ms: 300,
            lease_drift_ms: 50,
            request_timeout_ms: 1000,
            snapshot_every: 10_000,
            catch_up_batch: 256,
            bug_ignore_promised_values: false,
        }
    }

    /// Votes needed for a majority.
    pub fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// Why the configuration cannot run, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("node id must be positive".into());
        }
        if !self.members.contains(&self.id) {
            return Err(format!(
                "members {:?} do not include this node {}",
                self.members, self.id
            ));
        }
        let mut m = self.members.clone();
        m.sort_unstable();
        m.dedup();
        if m.len() != self.members.len() {
            return Err(format!("members {:?} repeat a node", self.members));
        }
        if self.batch_size == 0 || self.pipeline == 0 || self.catch_up_batch == 0 {
            return Err("batch size, pipeline and catch-up batch must be positive".into());
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms <= self.heartbeat_ms {
            return Err(format!(
                "election timeout ({} ms) must exceed the heartbeat interval ({} ms)",
                self.election_timeout_ms, self.heartbeat_ms
            ));
        }
        if self.reads == Reads::Lease && self.lease_drift_ms >= self.election_timeout_ms {
            return Err(format!(
                "lease drift ({} ms) must be below the election timeout ({} ms)",
                self.lease_drift_ms, self.election_timeout_ms
            ));
        }
        Ok(())
    }
}
