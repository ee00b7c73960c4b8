//! A simulation's configuration, written as one line of `key=value` pairs
//! so a failing run prints a command that replays it exactly.

use std::fmt;
use std::str::FromStr;

use crate::config::{Fsync, Learn, Proposers, Protocol, QuorumSize, Reads};

/// Bugs a simulation can put back on purpose, to prove the seeds catch
/// them (`bug=` in the one-line form). Never set outside tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimBug {
    #[default]
    None,
    /// A new leader ignores the values reported in promises.
    IgnorePromised,
    /// Issue 11 bug 1: a set's later group leaves before an earlier one
    /// is durable.
    EarlyRelease,
    /// Issue 11 bug 2: a compaction erases later records of its batch.
    CompactLate,
    /// Issue 11 bug 3: a follower campaigns inside its own lease guard.
    LeaseCampaign,
    /// Two-phase commit: the coordinator answers (and announces a commit)
    /// before its commit record is durable.
    TpcEarlyCommit,
    /// Two-phase commit: the coordinator commits on a majority of yes
    /// votes instead of every participant's.
    TpcCommitOnMajority,
}

impl SimBug {
    const NAMES: [(SimBug, &'static str); 7] = [
        (SimBug::None, "none"),
        (SimBug::IgnorePromised, "ignore-promised"),
        (SimBug::EarlyRelease, "early-release"),
        (SimBug::CompactLate, "compact-late"),
        (SimBug::LeaseCampaign, "lease-campaign"),
        (SimBug::TpcEarlyCommit, "tpc-early-commit"),
        (SimBug::TpcCommitOnMajority, "tpc-commit-on-majority"),
    ];

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(b, _)| *b == self)
            .map_or("none", |(_, n)| n)
    }

    fn parse(v: &str) -> Result<SimBug, String> {
        match v {
            // The form older replay commands print.
            "false" => Ok(SimBug::None),
            "true" => Ok(SimBug::IgnorePromised),
            _ => Self::NAMES
                .iter()
                .find(|(_, n)| *n == v)
                .map(|(b, _)| *b)
                .ok_or_else(|| format!("unknown bug {v:?}")),
        }
    }
}

/// What a simulated run looks like: cluster, protocol modes, faults,
/// workload. `Display` and `FromStr` round-trip.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    pub nodes: usize,
    pub proposers: Proposers,
    pub learn: Learn,
    pub reads: Reads,
    pub fsync: Fsync,
    /// Percent of messages lost while faults are on.
    pub loss: u32,
    /// Percent of messages delivered twice while faults are on.
    pub dup: u32,
    /// Messages take 1..=this many ms (random delays reorder them).
    pub delay_ms: u64,
    /// Symmetric partitions (isolate a node, split in halves).
    pub partitions: bool,
    /// One-way partitions (a node hears but is not heard, and links cut in
    /// one direction).
    pub one_way: bool,
    /// Crash and restart nodes.
    pub crashes: bool,
    /// Crashes may be power losses (unsynced writes dropped).
    pub power_loss: bool,
    /// Pause nodes (SIGSTOP-like: nothing runs, messages wait).
    pub pauses: bool,
    /// Change nodes' clock rates during the run (within `skew`).
    pub clock: bool,
    /// Clock rates are drawn log-uniformly from `[1/(1+skew), 1+skew]`.
    pub skew: f64,
    pub clients: usize,
    pub keys: usize,
    /// Faults happen during the first `fault_ms`, then everything heals.
    pub fault_ms: u64,
    /// Clients keep going this long after healing.
    pub heal_ms: u64,
    /// A bug put back on purpose (teeth), or none.
    pub bug: SimBug,
    /// Phase 1 and phase 2 quorum sizes (`q1=`, `q2=`; shown only when not
    /// majorities). Sizes with `q1 + q2 <= n` run unsafe on purpose.
    pub q1: QuorumSize,
    pub q2: QuorumSize,
    /// Paxos or the two-phase-commit baseline (`protocol=`, shown only
    /// when not Paxos).
    pub protocol: Protocol,
}

impl SimConfig {
    /// Every fault on, safe protocol settings, small clock skew (well
    /// inside the lease's drift bound).
    pub fn standard(nodes: usize, proposers: Proposers, learn: Learn, reads: Reads) -> Self {
        SimConfig {
            nodes,
            proposers,
            learn,
            reads,
            fsync: Fsync::Always,
            loss: 5,
            dup: 3,
            delay_ms: 15,
            partitions: true,
            one_way: true,
            crashes: true,
            power_loss: true,
            pauses: true,
            clock: true,
            skew: 0.02,
            clients: 5,
            keys: 3,
            fault_ms: 3000,
            heal_ms: 2500,
            bug: SimBug::None,
            q1: QuorumSize::Majority,
            q2: QuorumSize::Majority,
            protocol: Protocol::Paxos,
        }
    }

    /// Every fault on, two-phase commit (coordinator: node 1).
    pub fn two_phase_commit(nodes: usize) -> Self {
        let mut c = Self::standard(nodes, Proposers::Leader, Learn::Leader, Reads::Log);
        c.protocol = Protocol::TwoPhaseCommit;
        c
    }

    /// Whether the quorums need not intersect (teeth for Flexible Paxos).
    pub fn unsafe_quorums(&self) -> bool {
        self.q1.of(self.nodes) + self.q2.of(self.nodes) <= self.nodes
    }

    fn faults(&self) -> String {
        let mut f = Vec::new();
        for (on, name) in [
            (self.partitions, "partition"),
            (self.one_way, "oneway"),
            (self.crashes, "crash"),
            (self.power_loss, "powerloss"),
            (self.pauses, "pause"),
            (self.clock, "clock"),
        ] {
            if on {
                f.push(name);
            }
        }
        if f.is_empty() {
            "none".into()
        } else {
            f.join("+")
        }
    }
}

fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => unreachable!("modes serialize as strings"),
    }
}

fn parse_mode<T: serde::de::DeserializeOwned>(key: &str, v: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(v.into()))
        .map_err(|_| format!("bad value {v:?} for {key}"))
}

impl fmt::Display for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={},proposers={},learn={},reads={},fsync={},loss={},dup={},delay={},faults={},skew={},clients={},keys={},fault-ms={},heal-ms={},bug={}",
            self.nodes,
            name(&self.proposers),
            name(&self.learn),
            name(&self.reads),
            name(&self.fsync),
            self.loss,
            self.dup,
            self.delay_ms,
            self.faults(),
            self.skew,
            self.clients,
            self.keys,
            self.fault_ms,
            self.heal_ms,
            self.bug.name()
        )?;
        for (key, q) in [("q1", self.q1), ("q2", self.q2)] {
            if q != QuorumSize::Majority {
                write!(f, ",{key}={q}")?;
            }
        }
        if self.protocol != Protocol::Paxos {
            write!(f, ",protocol={}", self.protocol.as_str())?;
        }
        Ok(())
    }
}

impl FromStr for SimConfig {
    type Err = String;

    /// Parses the `Display` form; keys left out keep the standard 3-node
    /// defaults.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut c = SimConfig::standard(3, Proposers::Leader, Learn::Leader, Reads::Log);
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got {pair:?}"))?;
            let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{k}: {e}"));
            match k {
                "n" => c.nodes = num(v)? as usize,
                "proposers" => c.proposers = parse_mode(k, v)?,
                "learn" => c.learn = parse_mode(k, v)?,
                "reads" => c.reads = parse_mode(k, v)?,
                "fsync" => c.fsync = parse_mode(k, v)?,
                "loss" => c.loss = num(v)? as u32,
                "dup" => c.dup = num(v)? as u32,
                "delay" => c.delay_ms = num(v)?,
                "faults" => {
                    c.partitions = false;
                    c.one_way = false;
                    c.crashes = false;
                    c.power_loss = false;
                    c.pauses = false;
                    c.clock = false;
                    for f in v.split('+').filter(|f| *f != "none") {
                        match f {
                            "partition" => c.partitions = true,
                            "oneway" => c.one_way = true,
                            "crash" => c.crashes = true,
                            "powerloss" => c.power_loss = true,
                            "pause" => c.pauses = true,
                            "clock" => c.clock = true,
                            other => return Err(format!("unknown fault {other:?}")),
                        }
                    }
                }
                "skew" => c.skew = v.parse().map_err(|e| format!("skew: {e}"))?,
                "clients" => c.clients = num(v)? as usize,
                "keys" => c.keys = num(v)? as usize,
                "fault-ms" => c.fault_ms = num(v)?,
                "heal-ms" => c.heal_ms = num(v)?,
                "bug" => c.bug = SimBug::parse(v)?,
                "q1" => c.q1 = v.parse()?,
                "q2" => c.q2 = v.parse()?,
                "protocol" => c.protocol = parse_mode(k, v)?,
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        if c.nodes == 0 || c.clients == 0 || c.keys == 0 {
            return Err("nodes, clients and keys must be positive".into());
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips() {
        let mut c = SimConfig::standard(5, Proposers::Any, Learn::All, Reads::Lease);
        c.skew = 1.5;
        c.one_way = false;
        c.bug = SimBug::CompactLate;
        c.q1 = QuorumSize::All;
        c.q2 = QuorumSize::Nodes(1);
        let back: SimConfig = c.to_string().parse().unwrap();
        assert_eq!(back, c);
        let c = SimConfig::two_phase_commit(3);
        assert!(c.to_string().ends_with(",protocol=two-phase-commit"), "{c}");
        let back: SimConfig = c.to_string().parse().unwrap();
        assert_eq!(back, c);
    }
}
