//! Leadership and time: following a leader, heartbeats and their acks,
//! elections, stepping down, the read lease and its guard, and the tick
//! that drives every timer.

use std::collections::BTreeSet;

use rand::Rng;

use crate::config::{Learn, Proposers};
use crate::message::Message;
use crate::types::{Ballot, KvOp, NodeId, Slot};

use super::{Outputs, Replica, Role};

impl Replica {
    /// A leader's heartbeat: followed and acked if it is at least as new as
    /// this node's promise, nacked otherwise.
    pub(super) fn on_heartbeat(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        commit: Slot,
        sent_at: u64,
        term_start: Slot,
        out: &mut Outputs,
    ) {
        match ballot {
            // A leader at least as new as our promise.
            b if b >= self.acceptor.promised => {
                self.hear_leader(from, b, out);
                self.learn_commit(from, b, commit, out);
                self.maybe_end_rejoin(b, term_start, out);
                let ack = Message::HeartbeatAck {
                    ballot: b,
                    sent_at,
                    commit: self.commit,
                };
                self.send(from, ack, out);
            }
            // A stale leader: tell it, so it steps down.
            b => {
                let refusal = self.acceptor.nack();
                self.nack(from, b, refusal, out);
            }
        }
    }

    /// Hears the leader of `ballot` (in an accept or a heartbeat at least
    /// as new as this node's promise): a proposer with a lower ballot
    /// yields, and this node follows `from`.
    pub(super) fn hear_leader(&mut self, from: NodeId, ballot: Ballot, out: &mut Outputs) {
        self.yield_to(ballot, out);
        self.follow(from, ballot);
    }

    /// A candidate or leader whose ballot is below `ballot`, which this
    /// node just promised or heard a leader of, steps down.
    pub(super) fn yield_to(&mut self, ballot: Ballot, out: &mut Outputs) {
        if self.current_ballot().is_some_and(|mine| mine < ballot) {
            self.step_down(out);
        }
    }

    /// Records `from` at `ballot` as the leader we follow.
    pub(super) fn follow(&mut self, from: NodeId, ballot: Ballot) {
        if from == self.cfg.id {
            return;
        }
        self.leader = Some((from, ballot));
        if ballot > self.reclaimed_for {
            self.reclaimed_for = ballot;
            self.reclaim_sent();
        }
        self.last_heard_leader = self.now;
        self.heard_since_tick = true;
        self.election_deadline = self.now + self.election_timeout();
    }

    /// Back to follower: drop leader state, keep own clients' commands.
    pub(super) fn step_down(&mut self, _out: &mut Outputs) {
        if let Role::Leader(l) = &self.role {
            tracing::debug!(node = self.cfg.id, ballot = %l.ballot, "stepping down");
        }
        self.role = Role::Follower;
        let (id, boot) = (self.cfg.id, self.boot);
        self.queue.retain(|c| c.id.node == id && c.id.boot == boot);
        // Lease reads fall back to the log.
        for r in std::mem::take(&mut self.lease_reads) {
            self.queue_own(r.request, None, KvOp::Read { key: r.key }, r.deadline);
        }
        self.election_deadline = self.now + self.election_timeout();
        if self.cfg.proposers == Proposers::Any {
            let t = self.cfg.heartbeat_ms;
            self.backoff_ms = (self.backoff_ms * 2).clamp(t, 8 * self.cfg.election_timeout_ms);
            self.backoff_until = self.now + self.rng.gen_range(0..=self.backoff_ms);
        }
    }

    pub(super) fn heartbeat(&mut self, out: &mut Outputs) {
        let now = self.now;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        l.last_heartbeat = now;
        l.announced_commit = self.commit;
        l.owed = l.owed.split_off(&self.commit);
        l.acked_sent_at.insert(self.cfg.id, now);
        l.last_heard_from.insert(self.cfg.id, now);
        self.last_heard_leader = now;
        let m = Message::Heartbeat {
            ballot: l.ballot,
            commit: self.commit,
            sent_at: now,
            term_start: l.term_start,
        };
        self.send_to_others(m, out);
    }

    /// learn=leader: when the commit point moves, tell at once the
    /// followers that wait for it: those whose clients' commands it covers
    /// (they answer them once they apply). The others hear it with the
    /// next accept or heartbeat, so a leader's own clients cost no
    /// announcement and no ack. With lease reads, and with learn=all,
    /// every follower hears at once, as a heartbeat.
    pub(super) fn announce_commit(&mut self, out: &mut Outputs) {
        let targeted = self.cfg.learn == Learn::Leader && !self.lease_mode();
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if l.announced_commit >= self.commit {
            return;
        }
        if !targeted {
            self.heartbeat(out);
            return;
        }
        l.announced_commit = self.commit;
        let later = l.owed.split_off(&self.commit);
        let owed: BTreeSet<NodeId> = std::mem::replace(&mut l.owed, later)
            .into_values()
            .flatten()
            .collect();
        if owed.is_empty() {
            return;
        }
        // A heartbeat in form, but not the periodic one: the others'
        // timers (and `last_heartbeat`) are left alone.
        let m = Message::Heartbeat {
            ballot: l.ballot,
            commit: self.commit,
            sent_at: self.now,
            term_start: l.term_start,
        };
        self.fan_out(m, |to| owed.contains(&to), out);
    }

    /// Whether this follower still owes its leader the guard: it heard the
    /// leader less than an election timeout ago, so it promises no other
    /// candidate (`on_prepare`) and, the same rule, does not run for leader
    /// itself.
    ///
    /// With lease reads that is safety: otherwise its own campaign, with a
    /// majority of nodes that no longer hear the leader, would overlap the
    /// lease this node's acks granted. With a stable leader and any reads
    /// it is liveness: when one link is cut (`partition:chained`, the
    /// leader's to one follower) the follower that cannot hear the leader
    /// would otherwise win through the node that hears both, and the old
    /// leader through it again, a leader change every election timeout for
    /// as long as the link stays cut (measured: 30 elections in a 30 s
    /// run). A leader that cannot hear a quorum steps down after an
    /// election timeout, which ends the guard (`on_tick`).
    pub(super) fn in_lease_guard(&self) -> bool {
        self.leader_guard()
            && !self.cfg.bug_campaign_in_lease_guard
            && self.leader.is_some_and(|(l, _)| l != self.cfg.id)
            && self.now < self.last_heard_leader + self.cfg.election_timeout_ms
    }

    /// Until when, on this node's clock, the leader may answer reads
    /// locally (0: no lease).
    pub fn lease_until(&self) -> u64 {
        if !self.lease_mode() {
            return 0;
        }
        let Role::Leader(l) = &self.role else {
            return 0;
        };
        let mut acks: Vec<u64> = self
            .cfg
            .members
            .iter()
            .map(|m| l.acked_sent_at.get(m).copied().unwrap_or(0))
            .collect();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let t = acks[self.cfg.lease_quorum() - 1];
        if t == 0 {
            return 0;
        }
        t + self.cfg.election_timeout_ms - self.cfg.lease_drift_ms
    }

    pub(super) fn on_tick(&mut self, out: &mut Outputs) {
        let now = self.now;
        if self.heard_since_tick {
            // The leader was heard since the last tick, maybe while this
            // node's clock was stale (a paused process handles its queued
            // messages before its first tick): restart the lease guard and
            // the election timer from a fresh clock, later than the real
            // receipt, never earlier.
            self.heard_since_tick = false;
            self.last_heard_leader = self.last_heard_leader.max(now);
            if !self.cfg.bug_campaign_in_lease_guard {
                let deadline = now + self.election_timeout();
                self.election_deadline = self.election_deadline.max(deadline);
            }
        }
        self.expire_requests(out);
        self.serve_lease_reads(out);
        // A leader that cannot hear a phase 2 quorum chooses nothing.
        let quorum = self.cfg.phase2_quorum();
        let t = self.cfg.election_timeout_ms;
        match &mut self.role {
            Role::Leader(l) => {
                let alive = self
                    .cfg
                    .members
                    .iter()
                    .filter(|m| l.last_heard_from.get(m).is_some_and(|&at| at + t > now))
                    .count();
                if alive < quorum && now >= l.elected_at + t {
                    tracing::debug!(node = self.cfg.id, "no majority for an election timeout");
                    self.step_down(out);
                } else if now >= l.last_heartbeat + self.cfg.heartbeat_ms {
                    self.heartbeat(out);
                    self.retransmit(out);
                }
            }
            Role::Candidate(c) => {
                if now >= c.deadline {
                    match self.cfg.proposers {
                        Proposers::Leader => self.campaign(out),
                        // Not enough promises in time: back off like a
                        // preempted proposer.
                        Proposers::Any => self.step_down(out),
                    }
                }
            }
            Role::Follower => {
                if self.cfg.proposers == Proposers::Leader
                    && now >= self.election_deadline
                    && !self.in_lease_guard()
                    && self.rejoin_floor.is_none()
                {
                    self.campaign(out);
                }
            }
        }
        if self.known_commit > self.commit && now >= self.next_catch_up {
            self.request_catch_up(out);
        }
    }
}
