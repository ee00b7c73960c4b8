//! The learner: which slots are chosen, the applied state machine,
//! catching up from peers, and compaction.
//!
//! With `learn=leader` the leader is the distinguished learner of "Paxos
//! Made Simple": acceptors answer only it, it counts the phase-2b
//! `Accepted` votes, and it tells the other learners its commit point in
//! accepts and heartbeats. With `learn=all` every acceptor tells every
//! node and each counts for itself. A node that lacks chosen entries asks
//! a peer for them (`CatchUp`).

use crate::config::Learn;
use crate::message::Message;
use crate::storage::{Compaction, Record, Snapshot};
use std::collections::BTreeSet;

use crate::types::{Ballot, Entry, NodeId, Slot};

use super::{Outputs, Replica, Role};

/// The longest wait between two catch-up requests that bring nothing, in
/// heartbeats (400 ms at the default 50 ms): an eighth of the requests of
/// a peer that claims what it does not serve, and a follower cut off by a
/// partition asks at most that late once it heals (the simulation's heal
/// windows found 32 heartbeats too slow: seed 28 of n3_leader_leader_lease).
const CATCH_UP_MAX_WAIT: u64 = 8;

impl Replica {
    /// Learner, phase 2b: an acceptor accepted `slot` at `ballot`. The
    /// leader counts votes for its own proposals (with `learn=leader` it is
    /// the only one told: the distinguished learner); with `learn=all`
    /// every node counts.
    pub(super) fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        entry: Option<Entry>,
        out: &mut Outputs,
    ) {
        let quorum = self.cfg.phase2_quorum();
        if let Role::Leader(l) = &mut self.role {
            if l.ballot == ballot {
                l.last_heard_from.insert(from, self.now);
                if let Some(f) = l.in_flight.get_mut(&slot) {
                    f.votes.insert(from);
                    if f.votes.len() >= quorum {
                        let me = self.cfg.id;
                        for &v in f.votes.iter().filter(|&&v| v != me) {
                            l.decided.insert(v, l.decisions);
                        }
                        l.decisions += 1;
                        let f = l.in_flight.remove(&slot).expect("present just above");
                        self.choose(slot, f.entry, out);
                        return;
                    }
                }
            }
        }
        if self.cfg.learn == Learn::All {
            let Some(entry) = entry else { return };
            if slot < self.commit || self.chosen.contains_key(&slot) {
                return;
            }
            let v = self.votes.entry((slot, ballot)).or_default();
            v.insert(from);
            if v.len() >= quorum {
                self.votes.retain(|(s, _), _| *s != slot);
                self.choose(slot, entry, out);
            }
        }
    }

    /// Learner: the leader of `ballot` says every slot below `commit` is
    /// chosen. A slot we accepted at that very ballot holds the value the
    /// leader proposed there, hence the chosen one.
    pub(super) fn learn_commit(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        commit: Slot,
        out: &mut Outputs,
    ) {
        let mut s = self.commit;
        while s < commit {
            if !self.chosen.contains_key(&s) {
                match self.acceptor.accepted.get(&s) {
                    Some(v) if v.ballot == ballot => {
                        let e = v.entry.clone();
                        self.choose(s, e, out);
                    }
                    _ => break,
                }
            }
            s += 1;
        }
        self.heard_commit(from, commit);
        if self.known_commit > self.commit && self.now >= self.next_catch_up {
            self.request_catch_up(out);
        }
    }

    /// A peer says its commit point is `commit`. A higher claim is the one
    /// to catch up to; a lower one from the peer we were chasing replaces
    /// its earlier word, so a claim it no longer makes (or never could
    /// serve) is not chased forever.
    pub(super) fn heard_commit(&mut self, from: NodeId, commit: Slot) {
        if commit > self.known_commit {
            self.known_commit = commit;
            self.known_commit_from = from;
        } else if from == self.known_commit_from {
            self.known_commit = commit.max(self.commit);
        }
    }

    /// Asks the peer with the highest known commit point for what we miss.
    /// While asking brings nothing (the peer is cut off, or claims slots it
    /// does not serve), the wait doubles from one heartbeat up to
    /// [`CATCH_UP_MAX_WAIT`] heartbeats; any progress resets it.
    pub(super) fn request_catch_up(&mut self, out: &mut Outputs) {
        if self.known_commit_from == 0 || self.known_commit_from == self.cfg.id {
            return;
        }
        let beat = self.cfg.heartbeat_ms;
        self.catch_up_wait = if self.commit > self.catch_up_asked_at {
            beat
        } else {
            self.catch_up_wait
                .saturating_mul(2)
                .clamp(beat, beat.saturating_mul(CATCH_UP_MAX_WAIT))
        };
        self.catch_up_asked_at = self.commit;
        self.next_catch_up = self.now + self.catch_up_wait;
        let to = self.known_commit_from;
        let m = Message::CatchUp { from: self.commit };
        self.send(to, m, out);
    }

    pub(super) fn on_catch_up(&mut self, from: NodeId, slot: Slot, out: &mut Outputs) {
        if slot >= self.commit {
            return;
        }
        let (snapshot, start) = if slot < self.log_start {
            (
                Some(Box::new(Snapshot {
                    state: self.kv.clone(),
                })),
                self.kv.applied,
            )
        } else {
            (None, slot)
        };
        let entries = self
            .chosen
            .range(start..self.commit)
            .take(self.cfg.catch_up_batch)
            .map(|(s, e)| (*s, e.clone()))
            .collect();
        let m = Message::CatchUpReply {
            snapshot,
            entries,
            commit: self.commit,
        };
        self.send(from, m, out);
    }

    pub(super) fn on_catch_up_reply(
        &mut self,
        from: NodeId,
        snapshot: Option<Box<Snapshot>>,
        entries: Vec<(Slot, Entry)>,
        commit: Slot,
        out: &mut Outputs,
    ) {
        let before = self.commit;
        if let Some(snap) = snapshot {
            if snap.next_slot() > self.kv.applied {
                self.install_snapshot(*snap, out);
            }
        }
        for (s, e) in entries {
            self.choose(s, e, out);
        }
        self.heard_commit(from, commit);
        // Ask for the next batch at once only when this one helped: a peer
        // that answers with nothing new waits for the backed-off tick.
        if self.known_commit > self.commit && self.commit > before {
            self.next_catch_up = 0;
            self.request_catch_up(out);
        }
    }

    pub(super) fn install_snapshot(&mut self, snap: Snapshot, out: &mut Outputs) {
        let at = snap.next_slot();
        tracing::info!(
            node = self.cfg.id,
            slot = at,
            "installing a snapshot from a peer"
        );
        self.kv = snap.state;
        self.log_start = at;
        self.snapshot_at = at;
        self.commit = self.commit.max(at);
        self.chosen = self.chosen.split_off(&at);
        self.acceptor.accepted = self.acceptor.accepted.split_off(&at);
        while self.chosen.contains_key(&self.commit) {
            self.commit += 1;
        }
        out.compact = Some(self.compaction());
        self.apply_chosen(out);
    }

    /// `entry` is chosen in `slot`.
    pub(super) fn choose(&mut self, slot: Slot, entry: Entry, out: &mut Outputs) {
        if slot < self.log_start {
            return;
        }
        if let Some(prev) = self.chosen.get(&slot) {
            if *prev != entry {
                let msg = format!(
                    "node {}: two different values chosen in slot {slot}: {prev:?} then {entry:?}",
                    self.cfg.id
                );
                assert!(self.unsafe_on_purpose(), "Paxos safety broken: {msg}");
                tracing::error!("{msg} (unsafe configuration)");
            }
            return;
        }
        self.persist(
            Record::Chosen {
                slot,
                entry: entry.clone(),
            },
            out,
        );
        out.chosen.push(slot);
        // If this node's own vote may have counted, what is chosen now
        // stands on its record (see `depends_on`).
        if let Some(v) = self.acceptor.accepted.remove(&slot) {
            self.chosen_need = self.chosen_need.max(v.durable_at);
        }
        if let Role::Leader(l) = &mut self.role {
            l.in_flight.remove(&slot);
            let me = self.cfg.id;
            let owners: BTreeSet<NodeId> = entry
                .commands()
                .iter()
                .map(|c| c.id.node)
                .filter(|&node| node != me)
                .collect();
            if !owners.is_empty() {
                l.owed.insert(slot, owners);
            }
        }
        self.chosen.insert(slot, entry);
        while self.chosen.contains_key(&self.commit) {
            self.commit += 1;
        }
        self.apply_chosen(out);
    }

    /// Applies every chosen slot not applied yet, replying to waiters.
    pub(super) fn apply_chosen(&mut self, out: &mut Outputs) {
        let mut applied_any = false;
        while self.kv.applied < self.commit {
            let slot = self.kv.applied;
            // An `Arc` clone: the commands are not copied.
            let entry = self
                .chosen
                .get(&slot)
                .expect("every slot below the commit point is chosen and kept until applied")
                .clone();
            for cmd in entry.commands() {
                let outcome = self.kv.apply(cmd);
                if cmd.id.node == self.cfg.id && cmd.id.boot == self.boot {
                    if let Some(w) = self.waiting.remove(&cmd.id) {
                        self.answered(cmd.id, &w);
                        self.reply(w.request, outcome, out);
                    }
                }
            }
            self.kv.finish_slot(slot);
            applied_any = true;
        }
        if applied_any {
            self.maybe_compact(out);
        }
    }

    /// Every `snapshot_every` applied slots: snapshot the state and drop
    /// the log before it, keeping a tail of half that many chosen entries
    /// so a slightly lagging peer catches up with entries (whose clients
    /// get their replies) rather than a snapshot.
    pub(super) fn maybe_compact(&mut self, out: &mut Outputs) {
        let every = self.cfg.snapshot_every;
        if every == 0 || self.kv.applied < self.snapshot_at + every {
            return;
        }
        let at = self.kv.applied;
        self.snapshot_at = at;
        let keep = at.saturating_sub(every / 2).max(self.log_start);
        self.log_start = keep;
        self.chosen = self.chosen.split_off(&keep);
        self.acceptor.accepted = self.acceptor.accepted.split_off(&keep);
        self.votes.retain(|(s, _), _| *s >= at);
        out.compact = Some(self.compaction());
    }

    /// The snapshot of the applied state and what the log must keep.
    pub(super) fn compaction(&self) -> Compaction {
        let mut retained = vec![Record::Promise {
            ballot: self.acceptor.promised,
        }];
        if let Some(floor) = self.rejoin_floor {
            retained.push(Record::Rejoin { floor });
        }
        retained.extend(self.acceptor.accepted.iter().map(|(s, v)| Record::Accept {
            slot: *s,
            ballot: v.ballot,
            entry: v.entry.clone(),
        }));
        retained.extend(self.chosen.iter().map(|(s, e)| Record::Chosen {
            slot: *s,
            entry: e.clone(),
        }));
        Compaction {
            snapshot: Snapshot {
                state: self.kv.clone(),
            },
            retained,
            at: self.lsn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::tests::{msg, msgs, replica};
    use crate::replica::Input;

    fn catch_ups(out: &Outputs) -> usize {
        out.messages()
            .filter(|(_, m)| matches!(m, Message::CatchUp { .. }))
            .count()
    }

    fn heartbeat_claiming(commit: Slot) -> Message {
        Message::Heartbeat {
            ballot: Ballot::new(7, 1),
            commit,
            sent_at: 0,
            term_start: 0,
        }
    }

    /// Ten seconds of a leader that heartbeats every 50 ms claiming commit
    /// point 10^6 and answers every catch-up with `reply_commit` and no
    /// entries. Returns the catch-up requests sent.
    fn chase_an_empty_claim(r: &mut Replica, reply_commit: Slot) -> usize {
        let mut asked = 0;
        for now in (50..=10_000).step_by(50) {
            let mut outs = vec![
                r.handle(Input::Tick { now }),
                msg(r, 1, heartbeat_claiming(1_000_000)),
            ];
            // Each request gets its answer; a follower that re-asks on
            // every empty answer would loop here, so the loop is bounded.
            for _ in 0..100 {
                let n: usize = outs.iter().map(catch_ups).sum();
                if n == 0 {
                    break;
                }
                asked += n;
                outs = (0..n)
                    .map(|_| {
                        let reply = Message::CatchUpReply {
                            snapshot: None,
                            entries: Vec::new(),
                            commit: reply_commit,
                        };
                        msg(r, 1, reply)
                    })
                    .collect();
            }
        }
        asked
    }

    #[test]
    fn catch_up_backs_off_while_a_peer_claims_slots_it_does_not_serve() {
        let mut r = replica(2);
        let asked = chase_an_empty_claim(&mut r, 1_000_000);
        // Without backoff: one request per heartbeat (200), or an endless
        // ping-pong if an empty answer were re-asked at once.
        assert!(
            (3..=30).contains(&asked),
            "{asked} catch-up requests in 10 s"
        );
    }

    #[test]
    fn catch_up_stops_when_the_peer_answers_with_its_real_commit_point() {
        let mut r = replica(2);
        // The heartbeats keep claiming 10^6, but the catch-up answers say
        // 0: the answer is the peer's latest word and stops the chase until
        // the next heartbeat's claim, and the backoff spaces those.
        let asked = chase_an_empty_claim(&mut r, 0);
        assert!((1..=30).contains(&asked), "{asked} catch-up requests");
        // A claim that the peer withdraws altogether is not chased at all.
        let mut r = replica(2);
        let out = msg(&mut r, 1, heartbeat_claiming(1_000_000));
        assert_eq!(catch_ups(&out), 1);
        msg(&mut r, 1, heartbeat_claiming(0));
        let asked: usize = (1..=200)
            .map(|i| catch_ups(&r.handle(Input::Tick { now: i * 50 })))
            .sum();
        assert_eq!(asked, 0, "chased a claim its peer withdrew");
    }

    #[test]
    fn catch_up_asks_again_at_once_when_an_answer_helped() {
        let mut r = replica(2);
        chase_an_empty_claim(&mut r, 1_000_000);
        assert!(r.catch_up_wait > r.cfg.heartbeat_ms, "no backoff built up");
        let entry = Entry::batch(Vec::new());
        let out = msg(
            &mut r,
            1,
            Message::CatchUpReply {
                snapshot: None,
                entries: vec![(0, entry.clone()), (1, entry)],
                commit: 1_000_000,
            },
        );
        assert!(
            matches!(msgs(&out)[..], [(1, Message::CatchUp { from: 2 })]),
            "{:?}",
            out.send
        );
        assert_eq!(r.catch_up_wait, r.cfg.heartbeat_ms, "backoff not reset");
    }
}
