//! The proposer: phase 1 (prepare, collect promises, adopt), phase 2a
//! (propose, re-send) and the pump that moves queued work on.
//!
//! With `proposers=leader` the proposer that won phase 1 is the
//! distinguished proposer of "Paxos Made Simple" ([`Leader`]): the only
//! one that issues proposals, one ballot covering every slot from its
//! term start. With `proposers=any` every node proposes for its own
//! clients and backs off when preempted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::config::{Learn, Proposers};
use crate::durability::Lsn;
use crate::message::{Message, MAX_ROUND};
use crate::storage::Record;
use crate::types::{Ballot, Command, Entry, NodeId, Slot};

use super::{Outputs, Replica, Role};

/// A candidate collecting promises.
#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) ballot: Ballot,
    /// One past the LSN of the record of its own promise to `ballot`: what
    /// every message it sends at this ballot stands on.
    pub(super) promise_at: Lsn,
    pub(super) promised_by: BTreeSet<NodeId>,
    /// Per slot, the highest-ballot accepted proposal reported so far.
    pub(super) reports: BTreeMap<Slot, (Ballot, Entry)>,
    /// Give up and retry (or back off) at this time.
    pub(super) deadline: u64,
}

/// A slot in phase 2.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) entry: Entry,
    pub(super) votes: BTreeSet<NodeId>,
}

/// A leader running phase 2: the distinguished proposer of "Paxos Made
/// Simple", the only one issuing proposals while it leads (and, with
/// `learn=leader`, the distinguished learner too: see the learner).
#[derive(Debug)]
pub(super) struct Leader {
    pub(super) ballot: Ballot,
    /// See [`Candidate::promise_at`].
    pub(super) promise_at: Lsn,
    /// The next free slot.
    pub(super) next_slot: Slot,
    /// `next_slot` at election: every slot below was chosen by an earlier
    /// leader or is recovered by this one's phase 1.
    pub(super) term_start: Slot,
    /// Phase 1's unfinished business: slots from `recover_next` up to
    /// `term_start` still to re-propose (P2c: the reported value, or a
    /// no-op for a gap), within the pipeline window like any proposal.
    pub(super) recover_next: Slot,
    /// The highest-ballot value reported per slot, for those re-proposals.
    pub(super) reports: BTreeMap<Slot, (Ballot, Entry)>,
    pub(super) in_flight: BTreeMap<Slot, InFlight>,
    /// Last time (own clock) each node answered this ballot.
    pub(super) last_heard_from: HashMap<NodeId, u64>,
    /// Per node, the latest heartbeat `sent_at` it acked (lease).
    pub(super) acked_sent_at: HashMap<NodeId, u64>,
    pub(super) elected_at: u64,
    pub(super) last_heartbeat: u64,
    /// Commit point last sent to every follower (in an accept or a
    /// heartbeat); `announce_commit` tells the followers in `owed` of a
    /// move past it at once.
    pub(super) announced_commit: Slot,
    /// Per slot chosen above the announced commit point, the followers
    /// whose clients' commands it holds: they wait for the commit point to
    /// pass it to answer them (see `announce_commit`).
    pub(super) owed: BTreeMap<Slot, BTreeSet<NodeId>>,
    /// Last time (own clock) each follower forwarded its clients'
    /// commands: with `thrifty`, a follower with clients gets every
    /// accept (see `thrifty_recipients`).
    pub(super) forwarded_at: HashMap<NodeId, u64>,
    /// Per follower, the number of the last choice its vote made (votes
    /// that complete a quorum, counted in `decisions`): the followers
    /// that answer first, which thrifty asks.
    pub(super) decided: HashMap<NodeId, u64>,
    pub(super) decisions: u64,
}

impl Replica {
    /// Phase 1a: campaign with a ballot above every round ever promised.
    pub(super) fn campaign(&mut self, out: &mut Outputs) {
        let Some(round) = self
            .acceptor
            .promised
            .round
            .checked_add(1)
            .filter(|&r| r <= MAX_ROUND)
        else {
            // Unreachable while peers' ballots are checked (`plausible`).
            tracing::error!(node = self.cfg.id, promised = %self.acceptor.promised, "no ballot left to campaign with");
            return;
        };
        let ballot = Ballot::new(round, self.cfg.id);
        assert!(
            ballot > self.last_ballot,
            "ballots of one incarnation must grow: {ballot} after {}",
            self.last_ballot
        );
        self.last_ballot = ballot;
        // Our own promise (phase 1b for our own prepare) is recorded before
        // any prepare is stamped, so every prepare stands on it: once one
        // has left, this ballot is never proposed again, even after a
        // restart.
        self.acceptor.promised = ballot;
        let promise_at = self.persist(Record::Promise { ballot }, out);
        let deadline = self.now + self.election_timeout();
        self.role = Role::Candidate(Candidate {
            ballot,
            promise_at,
            promised_by: BTreeSet::new(),
            reports: BTreeMap::new(),
            deadline,
        });
        self.leader = None;
        tracing::debug!(node = self.cfg.id, %ballot, "campaigning");
        let prepare = Message::Prepare {
            ballot,
            from_slot: self.commit,
        };
        self.broadcast(prepare, out);
    }

    /// Proposer, collecting the phase-1b promises of its prepare.
    pub(super) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        log_start: Slot,
        accepted: Vec<(Slot, Ballot, Entry)>,
        chosen: Vec<(Slot, Entry)>,
        out: &mut Outputs,
    ) {
        for (s, e) in chosen {
            self.choose(s, e, out);
        }
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        match ballot {
            b if b != c.ballot => {}
            // The acceptor compacted slots we do not know: its report would
            // miss their values. Learn them first; do not count it.
            _ if log_start > self.commit => {
                self.known_commit = self.known_commit.max(log_start);
                self.known_commit_from = from;
                self.next_catch_up = 0;
            }
            _ => {
                for (s, b, e) in accepted {
                    let higher = c.reports.get(&s).is_none_or(|(rb, _)| *rb < b);
                    if higher {
                        c.reports.insert(s, (b, e));
                    }
                }
                c.promised_by.insert(from);
                if c.promised_by.len() >= self.cfg.phase1_quorum() {
                    self.become_leader(out);
                }
            }
        }
    }

    /// Phase 1 done: adopt reported values (P2c), fill gaps, start phase 2.
    pub(super) fn become_leader(&mut self, out: &mut Outputs) {
        let Role::Candidate(c) = std::mem::replace(&mut self.role, Role::Follower) else {
            unreachable!("become_leader is called by a candidate");
        };
        let start = self.commit;
        let end = c
            .reports
            .keys()
            .next_back()
            .map_or(start, |s| s + 1)
            .max(self.chosen.keys().next_back().map_or(start, |s| s + 1))
            .max(start);
        let ballot = c.ballot;
        self.role = Role::Leader(Leader {
            ballot,
            promise_at: c.promise_at,
            next_slot: end,
            term_start: end,
            recover_next: start,
            reports: c.reports,
            in_flight: BTreeMap::new(),
            // The promisers answered just now.
            last_heard_from: c.promised_by.iter().map(|&n| (n, self.now)).collect(),
            acked_sent_at: HashMap::new(),
            elected_at: self.now,
            last_heartbeat: self.now,
            announced_commit: self.commit,
            owed: BTreeMap::new(),
            forwarded_at: HashMap::new(),
            decided: HashMap::new(),
            decisions: 0,
        });
        self.leader = None;
        self.backoff_ms = 0;
        tracing::debug!(node = self.cfg.id, %ballot, start, end, "elected leader");
        self.reclaimed_for = self.reclaimed_for.max(ballot);
        self.reclaim_sent();
        // `pump` re-proposes the slots of `start..end`, a window at a time.
        self.heartbeat(out);
    }

    /// A leader's next proposal, if the pipeline window has room: the next
    /// slot phase 1 left open (P2c: the value of the highest-numbered
    /// proposal reported, or a no-op for a gap), else a batch of queued
    /// commands in the next free slot.
    pub(super) fn next_proposal(&mut self) -> Option<(Slot, Entry)> {
        let Role::Leader(l) = &mut self.role else {
            return None;
        };
        if l.in_flight.len() >= self.cfg.pipeline {
            return None;
        }
        while l.recover_next < l.term_start {
            let s = l.recover_next;
            l.recover_next += 1;
            if s < self.commit || self.chosen.contains_key(&s) {
                continue;
            }
            let entry = match l.reports.remove(&s) {
                Some(_) if self.cfg.bug_ignore_promised_values => Entry::Noop,
                Some((_, e)) => e,
                None => Entry::Noop,
            };
            return Some((s, entry));
        }
        if self.queue.is_empty() {
            return None;
        }
        let n = self.queue.len().min(self.cfg.batch_size);
        let batch: Vec<Command> = self.queue.drain(..n).collect();
        let slot = l.next_slot;
        l.next_slot += 1;
        self.mark_sent(&batch);
        Some((slot, Entry::batch(batch)))
    }

    /// Phase 2a for one slot: the leader proposes `entry` to every acceptor,
    /// itself included (through the inbox).
    pub(super) fn propose(&mut self, slot: Slot, entry: Entry, out: &mut Outputs) {
        let commit = self.commit;
        let Role::Leader(l) = &mut self.role else {
            unreachable!("only a leader proposes");
        };
        let ballot = l.ballot;
        // Every follower hears the commit point from this accept, so the
        // announcement `announce_commit` would send is not needed for it:
        // under load, new slots go out with every commit and followers
        // learn it for free (one heartbeat and ack fewer per slot).
        l.announced_commit = l.announced_commit.max(commit);
        l.owed = l.owed.split_off(&commit);
        l.in_flight.insert(
            slot,
            InFlight {
                entry: entry.clone(),
                votes: BTreeSet::new(),
            },
        );
        let to = self.thrifty_recipients(origins(&entry));
        let m = Message::Accept {
            ballot,
            slot,
            entry,
            commit,
        };
        match to {
            Some(to) => {
                let me = self.cfg.id;
                self.fan_out(m, |n| n == me || to.contains(&n), out);
            }
            None => self.broadcast(m, out),
        }
    }

    /// With `thrifty` (and `learn=leader`): the followers a new slot's
    /// accept goes to at once. Enough of them for a phase 2 quorum with
    /// the leader's own vote, taking those whose votes last completed a
    /// quorum (the ones that answer first; a follower asked only at the
    /// heartbeat's re-send takes over when it beats the one asked), then
    /// those heard from last, ties to the lower id; and every follower
    /// with clients:
    /// one whose client's command the slot carries, or that forwarded
    /// commands within the last request deadline. Such a follower answers
    /// its clients once it has applied every slot up to theirs, so it
    /// must hold every value rather than catch up on them (which waits
    /// for a heartbeat). A follower left out gets the accept at the next
    /// heartbeat if the slot is still unchosen (`retransmit`), so a
    /// silent pick costs at most one heartbeat; and chosen values through
    /// catch-up. `None`: every member.
    fn thrifty_recipients(&self, origins: BTreeSet<NodeId>) -> Option<BTreeSet<NodeId>> {
        let Role::Leader(l) = &self.role else {
            return None;
        };
        if !self.cfg.thrifty || self.cfg.learn != Learn::Leader {
            return None;
        }
        let me = self.cfg.id;
        let mut followers: Vec<NodeId> = self
            .cfg
            .members
            .iter()
            .copied()
            .filter(|&m| m != me)
            .collect();
        let decided = |n: &NodeId| l.decided.get(n).copied();
        let heard = |n: &NodeId| l.last_heard_from.get(n).copied().unwrap_or(0);
        followers.sort_by(|a, b| {
            (decided(b), heard(b))
                .cmp(&(decided(a), heard(a)))
                .then(a.cmp(b))
        });
        let need = self.cfg.phase2_quorum().saturating_sub(1);
        let mut to: BTreeSet<NodeId> = followers.into_iter().take(need).collect();
        to.extend(origins.into_iter().filter(|&n| n != me));
        let recent = self.now.saturating_sub(self.cfg.request_timeout_ms);
        to.extend(
            l.forwarded_at
                .iter()
                .filter(|&(_, &at)| at >= recent)
                .map(|(&n, _)| n),
        );
        Some(to)
    }

    /// Re-sends accepts that have not gathered a majority (messages get
    /// lost), to the acceptors that have not answered.
    pub(super) fn retransmit(&mut self, out: &mut Outputs) {
        let commit = self.commit;
        let Role::Leader(l) = &self.role else { return };
        let resend: Vec<(Message, BTreeSet<NodeId>)> = l
            .in_flight
            .iter()
            .map(|(&slot, f)| {
                let m = Message::Accept {
                    ballot: l.ballot,
                    slot,
                    entry: f.entry.clone(),
                    commit,
                };
                (m, f.votes.clone())
            })
            .collect();
        let me = self.cfg.id;
        for (m, votes) in resend {
            self.fan_out(m, |to| to != me && !votes.contains(&to), out);
        }
    }

    /// A prepare or accept of ours was refused.
    pub(super) fn on_nack(&mut self, ballot: Ballot, promised: Ballot, out: &mut Outputs) {
        if self.current_ballot() == Some(ballot) && promised > ballot {
            // Remember the round so the next ballot is higher.
            if promised > self.acceptor.promised {
                self.acceptor.promised = promised;
                self.persist(Record::Promise { ballot: promised }, out);
            }
            let was_leader = matches!(self.role, Role::Leader(_));
            self.step_down(out);
            // With leases, followers ignore every candidate but their
            // leader, so a candidate that cannot win (it is behind, or cut
            // off) would keep preempting leaders with ever higher ballots
            // and never hear why. The preempted leader re-runs phase 1 at
            // once, above that ballot; its followers let it through, and
            // the candidate's promise yields to it.
            if was_leader && self.lease_mode() {
                self.campaign(out);
            }
        }
    }

    /// Moves work on. A leader first re-proposes what phase 1 left open,
    /// then proposes queued commands (batched), all within the pipeline
    /// window; a follower forwards queued commands to its leader; with
    /// `proposers=any` a node with work campaigns once its backoff ends.
    pub(super) fn pump(&mut self, out: &mut Outputs) {
        match &self.role {
            Role::Leader(_) => {
                while let Some((slot, entry)) = self.next_proposal() {
                    self.propose(slot, entry, out);
                }
            }
            Role::Candidate(_) => {}
            Role::Follower if self.queue.is_empty() => {}
            Role::Follower => match self.cfg.proposers {
                Proposers::Leader => {
                    let Some((leader, _)) = self.leader else {
                        return;
                    };
                    let mut commands: Vec<Command> = self.queue.drain(..).collect();
                    // A command queued again may have been answered since.
                    commands.retain(|c| self.waiting.contains_key(&c.id));
                    if commands.is_empty() {
                        return;
                    }
                    self.mark_sent(&commands);
                    self.send(leader, Message::Forward { commands }, out);
                }
                Proposers::Any => {
                    if self.now >= self.backoff_until && self.rejoin_floor.is_none() {
                        self.campaign(out);
                    }
                }
            },
        }
    }
}

/// The nodes whose clients' commands `entry` carries.
fn origins(entry: &Entry) -> BTreeSet<NodeId> {
    entry.commands().iter().map(|c| c.id.node).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::replica::tests::{msg, replica};
    use crate::replica::Input;
    use crate::storage::Recovered;
    use crate::types::{CmdId, KvOp, Value};

    #[test]
    fn a_restarted_node_never_reuses_a_ballot() {
        let mut r = replica(1);
        let out = r.handle(Input::Tick { now: 10_000 });
        let first = out.messages().find_map(|(_, m)| match m {
            Message::Prepare { ballot, .. } => Some(*ballot),
            _ => None,
        });
        let first = first.expect("the election timer fired");
        // The promise to its own ballot is in the same output's persist.
        assert!(out.persist.contains(&Record::Promise { ballot: first }));
        let disk = Recovered {
            snapshot: None,
            records: out.persist,
        };
        let mut again = Replica::recover(Config::new(1, vec![1, 2, 3]), 99, disk, 0);
        let out = again.handle(Input::Tick { now: 10_000 });
        let second = out.messages().find_map(|(_, m)| match m {
            Message::Prepare { ballot, .. } => Some(*ballot),
            _ => None,
        });
        assert!(second.expect("campaigns again") > first);
    }

    #[test]
    fn p2c_a_new_leader_adopts_the_highest_ballot_value_reported_per_slot() {
        let cmd = |req| Command {
            id: CmdId {
                node: 9,
                boot: 0,
                request: req,
            },
            dedup: None,
            op: KvOp::Write {
                key: "x".into(),
                value: Value::Int(req as i64),
            },
        };
        let (older, newer, third) = (
            Entry::batch(vec![cmd(1)]),
            Entry::batch(vec![cmd(2)]),
            Entry::batch(vec![cmd(3)]),
        );
        // A window wide enough for the three slots phase 1 leaves open, so
        // all of them are re-proposed at once.
        let mut cfg = crate::config::Config::new(1, vec![1, 2, 3]);
        cfg.pipeline = 3;
        let mut r = crate::replica::Replica::new(cfg, 1, 0);
        // This node accepted `newer` in slot 0 at ballot 2.3.
        let b23 = Ballot::new(2, 3);
        msg(
            &mut r,
            3,
            Message::Accept {
                ballot: b23,
                slot: 0,
                entry: newer.clone(),
                commit: 0,
            },
        );
        // The first tick after hearing a leader restarts the election
        // timer; the next, much later, finds it expired.
        r.handle(Input::Tick { now: 1 });
        let out = r.handle(Input::Tick { now: 10_000 });
        let Some(Message::Prepare { ballot, .. }) = out.messages().next().map(|(_, m)| m.clone())
        else {
            panic!("no prepare: {:?}", out.send);
        };
        // Node 2 reports an older proposal for slot 0 and one for slot 2;
        // nobody reports slot 1: a gap.
        let b12 = Ballot::new(1, 2);
        let out = msg(
            &mut r,
            2,
            Message::Promise {
                ballot,
                from_slot: 0,
                log_start: 0,
                accepted: vec![(0, b12, older), (2, b12, third.clone())],
                chosen: vec![],
            },
        );
        assert!(r.is_leader());
        let proposed: BTreeMap<Slot, Entry> = out
            .messages()
            .filter_map(|(to, m)| match m {
                Message::Accept {
                    slot,
                    entry,
                    ballot: b,
                    ..
                } if to == 2 && *b == ballot => Some((*slot, entry.clone())),
                _ => None,
            })
            .collect();
        let expected: BTreeMap<Slot, Entry> = [(0, newer), (1, Entry::Noop), (2, third)]
            .into_iter()
            .collect();
        assert_eq!(proposed, expected);
    }
}
