//! The node's protocol settings: the knobs `docs/api.md` lists as flags,
//! in the units the core uses (logical milliseconds from `Tick`).

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Which commit protocol the node runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Multi-Paxos: keeps going while a majority lives.
    #[default]
    Paxos,
    /// Textbook two-phase commit with a fixed coordinator (the lowest id):
    /// safe, but blocks while the coordinator or any participant is down.
    /// A baseline to compare Paxos with under faults.
    TwoPhaseCommit,
}

impl Protocol {
    /// The name `--protocol` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Paxos => "paxos",
            Protocol::TwoPhaseCommit => "two-phase-commit",
        }
    }
}

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

/// How many acceptors make a quorum of one phase (Flexible Paxos, Howard
/// et al. 2016): any phase 1 quorum must intersect any phase 2 quorum, so
/// with sizes `q1 + q2 > n` the two can be chosen freely.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum QuorumSize {
    /// More than half of the members.
    #[default]
    Majority,
    /// Every member.
    All,
    /// This many members.
    Nodes(usize),
}

impl QuorumSize {
    /// The size in a cluster of `n` members.
    pub fn of(self, n: usize) -> usize {
        match self {
            QuorumSize::Majority => n / 2 + 1,
            QuorumSize::All => n,
            QuorumSize::Nodes(k) => k,
        }
    }
}

impl std::fmt::Display for QuorumSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuorumSize::Majority => f.write_str("majority"),
            QuorumSize::All => f.write_str("all"),
            QuorumSize::Nodes(k) => write!(f, "{k}"),
        }
    }
}

impl std::str::FromStr for QuorumSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "majority" => Ok(QuorumSize::Majority),
            "all" => Ok(QuorumSize::All),
            _ => match s.parse::<usize>() {
                Ok(0) | Err(_) => Err(format!(
                    "quorum size {s:?}: give `majority`, `all` or a positive number of nodes"
                )),
                Ok(k) => Ok(QuorumSize::Nodes(k)),
            },
        }
    }
}

impl From<QuorumSize> for String {
    fn from(q: QuorumSize) -> String {
        q.to_string()
    }
}

impl TryFrom<String> for QuorumSize {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// The protocol configuration of one replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// Every member of the cluster, this node included.
    pub members: Vec<NodeId>,
    /// Paxos, or the two-phase-commit baseline (which uses none of the
    /// Paxos knobs below but the timeouts).
    #[serde(default)]
    pub protocol: Protocol,
    pub proposers: Proposers,
    pub learn: Learn,
    pub reads: Reads,
    /// Read by the storage, not the core; kept here so one value
    /// describes a node.
    pub fsync: Fsync,
    /// Client commands per log slot.
    pub batch_size: usize,
    /// Slots in phase 2 at once. Commands that arrive while the window is
    /// full wait for a slot to be chosen and then go out together, so a
    /// small window batches by itself under load (see `--pipeline`).
    pub pipeline: usize,
    /// Thrifty phase 2 (with `learn=leader`): a new slot's accept goes to
    /// just enough followers for a phase 2 quorum (those whose votes last
    /// completed one, then those heard from last) and to
    /// every follower with clients (it forwarded commands within the last
    /// request deadline); the others get it only if it is still unchosen
    /// at the next heartbeat's re-send, and learn chosen values by
    /// catching up. Fewer votes and fsyncs per slot on a machine the
    /// nodes share (see `--thrifty`).
    #[serde(default = "yes")]
    pub thrifty: bool,
    pub heartbeat_ms: u64,
    /// Followers start an election after a random timeout in
    /// `[election_timeout_ms, 2 * election_timeout_ms]` without a heartbeat.
    pub election_timeout_ms: u64,
    /// Subtracted from the lease so clocks that drift apart by less than
    /// this per election timeout cannot overlap two leases. Clock jumps
    /// are not covered (docs/api.md, "Leases and clocks").
    pub lease_drift_ms: u64,
    /// Deadline of a client request; past it the core replies
    /// `NotProposed` or `Indeterminate`.
    pub request_timeout_ms: u64,
    /// Take a snapshot (and let the log be truncated) every this many
    /// applied slots; 0 never.
    pub snapshot_every: u64,
    /// Most chosen entries sent in one catch-up reply.
    pub catch_up_batch: usize,
    /// Promises a candidate needs (phase 1).
    #[serde(default)]
    pub phase1_quorum: QuorumSize,
    /// Votes that choose a value (phase 2).
    #[serde(default)]
    pub phase2_quorum: QuorumSize,
    /// Test-only: quorums that need not intersect (`q1 + q2 <= n`) are
    /// allowed, so the bench can show it catches what follows. **Unsafe on
    /// purpose.**
    #[serde(default)]
    pub unsafe_quorums: bool,
    /// Test-only protocol bug: a new leader ignores the values reported in
    /// promises and fills those slots with no-ops. Exists so the
    /// simulation can prove it catches a broken Paxos. Never set it.
    #[doc(hidden)]
    #[serde(skip)]
    pub bug_ignore_promised_values: bool,
    /// Test-only: a follower may campaign while its own lease guard still
    /// holds (issue 11, bug 3), so the simulation can prove it catches the
    /// stale lease reads that follow. Never set it.
    #[doc(hidden)]
    #[serde(skip)]
    pub bug_campaign_in_lease_guard: bool,
    /// Test-only: some bug is put back on purpose (in the core or around
    /// it), so a broken safety invariant is logged for the simulation to
    /// report rather than panicking. Never set it.
    #[doc(hidden)]
    #[serde(skip)]
    pub bug_on_purpose: bool,
    /// Test-only 2PC bug: the coordinator answers its client (and tells
    /// participants) before its commit record is durable. Never set it.
    #[doc(hidden)]
    #[serde(skip)]
    pub bug_tpc_early_commit: bool,
    /// Test-only 2PC bug: the coordinator commits once a majority of the
    /// cluster (itself included) voted yes, not every participant. Never
    /// set it.
    #[doc(hidden)]
    #[serde(skip)]
    pub bug_tpc_commit_on_majority: bool,
}

fn yes() -> bool {
    true
}

impl Config {
    /// The defaults of `docs/api.md` for node `id` in `members`.
    pub fn new(id: NodeId, members: Vec<NodeId>) -> Self {
        Config {
            id,
            members,
            protocol: Protocol::Paxos,
            proposers: Proposers::Leader,
            learn: Learn::Leader,
            reads: Reads::Log,
            fsync: Fsync::Always,
            batch_size: 64,
            pipeline: 2,
            thrifty: true,
            heartbeat_ms: 50,
            election_timeout_ms: 300,
            lease_drift_ms: 50,
            request_timeout_ms: 1000,
            snapshot_every: 10_000,
            catch_up_batch: 256,
            phase1_quorum: QuorumSize::Majority,
            phase2_quorum: QuorumSize::Majority,
            unsafe_quorums: false,
            bug_ignore_promised_values: false,
            bug_campaign_in_lease_guard: false,
            bug_on_purpose: false,
            bug_tpc_early_commit: false,
            bug_tpc_commit_on_majority: false,
        }
    }

    /// The fixed two-phase-commit coordinator: the lowest member id.
    pub fn coordinator(&self) -> NodeId {
        self.members.iter().copied().min().unwrap_or(self.id)
    }

    /// Promises that elect a candidate (phase 1).
    pub fn phase1_quorum(&self) -> usize {
        self.phase1_quorum.of(self.members.len())
    }

    /// Votes that choose a value (phase 2).
    pub fn phase2_quorum(&self) -> usize {
        self.phase2_quorum.of(self.members.len())
    }

    /// Heartbeat acks that grant a read lease: enough that every phase 1
    /// quorum holds one of the acking nodes, which promise no other
    /// candidate while the lease lasts (`n - q1 + 1`; a majority when
    /// phase 1 uses majorities).
    pub fn lease_quorum(&self) -> usize {
        (self.members.len() + 1)
            .saturating_sub(self.phase1_quorum())
            .max(1)
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
        if self.protocol == Protocol::TwoPhaseCommit {
            let mut refused = Vec::new();
            if self.proposers != Proposers::Leader {
                refused.push("proposers=any (the coordinator is fixed: node with the lowest id)");
            }
            if self.learn != Learn::Leader {
                refused.push("learn=all (participants learn the outcome from the coordinator)");
            }
            if self.reads != Reads::Log {
                refused.push("reads other than log (reads go through the coordinator)");
            }
            if self.phase1_quorum != QuorumSize::Majority
                || self.phase2_quorum != QuorumSize::Majority
                || self.unsafe_quorums
            {
                refused.push("quorum sizes (two-phase commit needs every participant's vote)");
            }
            if !refused.is_empty() {
                return Err(format!(
                    "protocol two-phase-commit does not take {}",
                    refused.join(", ")
                ));
            }
        }
        let n = self.members.len();
        let (q1, q2) = (self.phase1_quorum(), self.phase2_quorum());
        for (q, phase) in [(q1, "phase 1"), (q2, "phase 2")] {
            if q == 0 || q > n {
                return Err(format!(
                    "the {phase} quorum of {q} is not between 1 and the {n} members"
                ));
            }
        }
        if q1 + q2 <= n && !self.unsafe_quorums {
            return Err(format!(
                "quorums of {q1} (phase 1) and {q2} (phase 2) need not intersect in {n} \
                 members (q1 + q2 must exceed n), so two values could be chosen for one slot"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(n: u64, q1: &str, q2: &str) -> Config {
        let mut c = Config::new(1, (1..=n).collect());
        c.phase1_quorum = q1.parse().unwrap();
        c.phase2_quorum = q2.parse().unwrap();
        c
    }

    #[test]
    fn quorum_sizes_must_intersect_unless_unsafe_on_purpose() {
        for (n, q1, q2) in [
            (3, "majority", "majority"),
            (5, "4", "2"),
            (3, "all", "1"),
            (5, "1", "all"),
        ] {
            assert_eq!(sized(n, q1, q2).validate(), Ok(()), "{n} {q1} {q2}");
        }
        let mut c = sized(5, "3", "2");
        let e = c.validate().unwrap_err();
        assert!(e.contains("need not intersect in 5"), "{e}");
        c.unsafe_quorums = true;
        assert_eq!(c.validate(), Ok(()));
        let e = sized(3, "4", "majority").validate().unwrap_err();
        assert!(e.contains("phase 1 quorum of 4"), "{e}");
        assert!("0".parse::<QuorumSize>().is_err());
        assert!("half".parse::<QuorumSize>().is_err());
    }

    #[test]
    fn the_lease_needs_an_ack_in_every_phase1_quorum() {
        assert_eq!(sized(3, "majority", "majority").lease_quorum(), 2);
        assert_eq!(sized(5, "majority", "majority").lease_quorum(), 3);
        assert_eq!(sized(5, "4", "2").lease_quorum(), 2);
        assert_eq!(sized(3, "all", "1").lease_quorum(), 1);
        assert_eq!(sized(5, "2", "all").lease_quorum(), 4);
    }

    #[test]
    fn quorum_sizes_round_trip_through_json() {
        let c = sized(5, "all", "2");
        let back: Config = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back.phase1_quorum, QuorumSize::All);
        assert_eq!(back.phase2_quorum, QuorumSize::Nodes(2));
    }
}
