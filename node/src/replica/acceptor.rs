//! The acceptor: its durable state and its two rules.
//!
//! [`Acceptor`] holds what an acceptor must never forget (its promise and
//! its votes) and answers the two requests of "Paxos Made Simple" as pure
//! functions of that state: a phase-1a prepare gets a promise or a nack
//! (phase 1b), a phase-2a accept gets a vote or a nack (phase 2b, by the
//! paper's P1a). The replica's handlers here wrap those rules with what
//! the rules do not decide: the records to persist before an answer
//! leaves, the lease guard, rejoining after a lost disk, and hearing the
//! leader.

use std::collections::BTreeMap;

use crate::config::Learn;
use crate::durability::Lsn;
use crate::message::Message;
use crate::storage::Record;
use crate::types::{Ballot, Entry, NodeId, Slot};

use super::{Outputs, Replica};

/// An acceptor's durable state. Its two rules are pure: they decide an
/// answer and update this state, and the replica records what changed
/// before the answer leaves.
#[derive(Debug, Default)]
pub(super) struct Acceptor {
    /// The highest ballot promised; never decreases.
    pub(super) promised: Ballot,
    /// Accepted proposals of slots not yet known chosen.
    pub(super) accepted: BTreeMap<Slot, Vote>,
}

/// A proposal this acceptor accepted, and the record that holds it.
#[derive(Clone, Debug)]
pub(super) struct Vote {
    pub(super) ballot: Ballot,
    pub(super) entry: Entry,
    /// One past the LSN of its `Accept` record (0: recovered, durable).
    pub(super) durable_at: Lsn,
}

/// Whether a rule raised the promise: a raised promise must be on disk
/// before any answer that reveals it leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Promised {
    Raised,
    Held,
}

/// The acceptor's phase-1b answer to a prepare numbered n: the promise
/// never again to accept a proposal numbered less than n, with the
/// highest-numbered proposal it accepted in each slot asked about.
#[derive(Debug)]
pub(super) struct Promise {
    pub(super) promised: Promised,
    /// `(slot, ballot, entry)` for every slot from the prepare's first.
    pub(super) accepted: Vec<(Slot, Ballot, Entry)>,
}

/// The acceptor's refusal: it promised `promised`, a higher ballot than
/// the one it was asked about, and says so, so that the proposer's next
/// ballot can be higher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Nack {
    pub(super) promised: Ballot,
}

impl Acceptor {
    /// Phase 1b: a prepare numbered `ballot` gets a promise if no higher
    /// ballot was promised (an equal one: a duplicate of the prepare
    /// already promised), reporting what was accepted in the slots from
    /// `from_slot`; otherwise a nack.
    pub(super) fn on_prepare(&mut self, ballot: Ballot, from_slot: Slot) -> Result<Promise, Nack> {
        let promised = self.promise(ballot)?;
        let accepted = self
            .accepted
            .range(from_slot..)
            .map(|(s, v)| (*s, v.ballot, v.entry.clone()))
            .collect();
        Ok(Promise { promised, accepted })
    }

    /// Phase 2b, the paper's P1a: an acceptor can accept a proposal
    /// numbered `ballot` iff it has not responded to a prepare request
    /// numbered higher. Accepting promises `ballot` too. The vote itself
    /// is stored by [`Acceptor::vote`] once its record has its place in
    /// the log.
    pub(super) fn on_accept(&mut self, ballot: Ballot) -> Result<Promised, Nack> {
        self.promise(ballot)
    }

    /// Stores a vote whose `Accept` record is on its way to disk.
    pub(super) fn vote(&mut self, slot: Slot, vote: Vote) {
        self.accepted.insert(slot, vote);
    }

    /// The refusal of a ballot below the promise.
    pub(super) fn nack(&self) -> Nack {
        Nack {
            promised: self.promised,
        }
    }

    /// Both rules' guard: promise `ballot` unless a higher one was
    /// promised.
    fn promise(&mut self, ballot: Ballot) -> Result<Promised, Nack> {
        if ballot < self.promised {
            return Err(self.nack());
        }
        let promised = if ballot > self.promised {
            Promised::Raised
        } else {
            Promised::Held
        };
        self.promised = ballot;
        Ok(promised)
    }
}

impl Replica {
    /// Acceptor, phase 1b: a phase-1a prepare gets a promise or a nack.
    pub(super) fn on_prepare(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        from_slot: Slot,
        out: &mut Outputs,
    ) {
        // The guard (`in_lease_guard`): a node that heard its leader less
        // than an election timeout ago promises no one else, so the
        // leader's lease holds and a cut link cannot make leaders ping-pong.
        // Lease reads keep it as they always have (safety); a stable
        // leader with other reads only for a leader it knows (liveness).
        let leader = self.leader.map(|(l, _)| l);
        let guarded = from != self.cfg.id
            && leader != Some(from)
            && (self.lease_mode() || (self.leader_guard() && leader.is_some()))
            && self.now < self.last_heard_leader + self.cfg.election_timeout_ms;
        // Rejoining: no promise to anyone yet (refusals are fine).
        let rejoining = self.rejoin_floor.is_some() && ballot > self.acceptor.promised;
        if guarded || rejoining {
            return;
        }
        match self.acceptor.on_prepare(ballot, from_slot) {
            Ok(promise) => {
                if promise.promised == Promised::Raised {
                    self.persist(Record::Promise { ballot }, out);
                }
                self.yield_to(ballot, out);
                let chosen = self
                    .chosen
                    .range(from_slot..)
                    .map(|(s, e)| (*s, e.clone()))
                    .collect();
                let promise = Message::Promise {
                    ballot,
                    from_slot,
                    log_start: self.log_start,
                    accepted: promise.accepted,
                    chosen,
                };
                self.send(from, promise, out);
            }
            Err(refusal) => self.nack(from, ballot, refusal, out),
        }
    }

    /// Acceptor, phase 2b: a phase-2a accept gets a vote (P1a) or a nack.
    pub(super) fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        entry: Entry,
        commit: Slot,
        out: &mut Outputs,
    ) {
        if self.rejoin_floor.is_some() && ballot >= self.acceptor.promised {
            // Rejoining: learn from the leader, vote for nothing yet.
            self.follow(from, ballot);
            self.learn_commit(from, ballot, commit, out);
            return;
        }
        let promised = match self.acceptor.on_accept(ballot) {
            Ok(promised) => promised,
            Err(refusal) => return self.nack(from, ballot, refusal, out),
        };
        self.hear_leader(from, ballot, out);
        let known = slot < self.log_start || self.chosen.contains_key(&slot);
        if known && promised == Promised::Raised {
            // No accept record to carry the higher promise.
            self.persist(Record::Promise { ballot }, out);
        }
        if !known {
            let rec = Record::Accept {
                slot,
                ballot,
                entry: entry.clone(),
            };
            let durable_at = self.persist(rec, out);
            let vote = Vote {
                ballot,
                entry: entry.clone(),
                durable_at,
            };
            self.acceptor.vote(slot, vote);
        }
        match self.cfg.learn {
            Learn::Leader => {
                let m = Message::Accepted {
                    ballot,
                    slot,
                    entry: None,
                };
                self.send(from, m, out);
            }
            Learn::All => self.broadcast(
                Message::Accepted {
                    ballot,
                    slot,
                    entry: Some(entry),
                },
                out,
            ),
        }
        self.learn_commit(from, ballot, commit, out);
    }

    /// Refuses `from`'s message at `ballot`, telling it the promise that
    /// refuses it so its next ballot can be higher.
    pub(super) fn nack(&mut self, from: NodeId, ballot: Ballot, refusal: Nack, out: &mut Outputs) {
        let nack = Message::Nack {
            ballot,
            promised: refusal.promised,
        };
        self.send(from, nack, out);
    }

    /// Rejoining ends once this node has learned as chosen every slot below
    /// the term start of a leader elected above the floor (see "Rejoining"
    /// in the module doc). The end is recorded after the chosen entries it
    /// rests on, so a crash before it is durable resumes the rejoin.
    pub(super) fn maybe_end_rejoin(&mut self, ballot: Ballot, term_start: Slot, out: &mut Outputs) {
        let Some(floor) = self.rejoin_floor else {
            return;
        };
        if ballot > floor && self.commit >= term_start {
            tracing::info!(node = self.cfg.id, %floor, %ballot, commit = self.commit, "rejoined: an acceptor again");
            self.rejoin_floor = None;
            self.acceptor.promised = self.acceptor.promised.max(ballot);
            self.persist(Record::Rejoined, out);
            self.persist(
                Record::Promise {
                    ballot: self.acceptor.promised,
                },
                out,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::tests::{msg, msgs, replica};

    #[test]
    fn the_rules_promise_and_accept_only_at_or_above_the_promise() {
        let mut a = Acceptor::default();
        let (b4, b5) = (Ballot::new(4, 3), Ballot::new(5, 2));
        let promise = a.on_prepare(b5, 0).expect("nothing promised yet");
        assert_eq!(promise.promised, Promised::Raised);
        let again = a.on_prepare(b5, 0).expect("a duplicate prepare");
        assert_eq!(again.promised, Promised::Held);
        assert_eq!(a.on_prepare(b4, 0).unwrap_err(), Nack { promised: b5 });
        assert_eq!(a.on_accept(b4), Err(Nack { promised: b5 }));
        assert_eq!(a.on_accept(b5), Ok(Promised::Held));
        assert_eq!(a.on_accept(Ballot::new(6, 1)), Ok(Promised::Raised));
        assert_eq!(a.promised, Ballot::new(6, 1));
    }

    #[test]
    fn phase_1b_an_acceptor_promises_only_a_higher_ballot_and_persists_it_first() {
        let mut r = replica(1);
        let b5 = Ballot::new(5, 2);
        let out = msg(
            &mut r,
            2,
            Message::Prepare {
                ballot: b5,
                from_slot: 0,
            },
        );
        assert_eq!(out.persist, vec![Record::Promise { ballot: b5 }]);
        assert!(matches!(msgs(&out)[..], [(2, Message::Promise { ballot, .. })] if *ballot == b5));
        let out = msg(
            &mut r,
            3,
            Message::Prepare {
                ballot: Ballot::new(4, 3),
                from_slot: 0,
            },
        );
        assert!(out.persist.is_empty());
        assert!(matches!(msgs(&out)[..], [(3, Message::Nack { promised, .. })] if *promised == b5));
    }

    #[test]
    fn p1a_an_acceptor_refuses_an_accept_below_its_promise() {
        let mut r = replica(1);
        msg(
            &mut r,
            2,
            Message::Prepare {
                ballot: Ballot::new(5, 2),
                from_slot: 0,
            },
        );
        let out = msg(
            &mut r,
            3,
            Message::Accept {
                ballot: Ballot::new(4, 3),
                slot: 0,
                entry: Entry::Noop,
                commit: 0,
            },
        );
        assert!(out.persist.is_empty());
        assert!(matches!(msgs(&out)[..], [(3, Message::Nack { .. })]));
    }

    /// Regression: an accept at a higher ballot for a slot the acceptor
    /// already knew chosen raised its promise without any record carrying
    /// it, so a restart forgot the promise (found by the simulation's
    /// "promises never decrease" invariant).
    #[test]
    fn an_accept_for_a_chosen_slot_still_persists_the_higher_promise() {
        let mut r = replica(1);
        let b1 = Ballot::new(1, 2);
        msg(
            &mut r,
            2,
            Message::Accept {
                ballot: b1,
                slot: 0,
                entry: Entry::Noop,
                commit: 1,
            },
        );
        assert_eq!(r.status().commit_index, 1, "slot 0 is known chosen");
        let b2 = Ballot::new(2, 3);
        let out = msg(
            &mut r,
            3,
            Message::Accept {
                ballot: b2,
                slot: 0,
                entry: Entry::Noop,
                commit: 0,
            },
        );
        assert!(
            out.persist.contains(&Record::Promise { ballot: b2 }),
            "{:?}",
            out.persist
        );
    }
}
