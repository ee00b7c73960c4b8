//! The invariants, checked after every step: at most one value chosen
//! per slot across all replicas and all time, equal applied prefixes,
//! promises that never decrease below one a released message revealed,
//! no ballot proposed by two incarnations of a node, leases that never
//! overlap a newer leader, and durability: what a released output stood
//! on survives every crash and every compaction.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::Sim;
use crate::config::Fsync;
use crate::durability::Lsn;
use crate::message::Message;
use crate::replica::Outputs;
use crate::storage::{Record, Recovered, Storage};
use crate::types::{Ballot, Slot, TxnId};

/// What a disk image (snapshot and records) says, for the durability
/// invariants.
#[derive(Debug, Default)]
struct Image {
    promised: Ballot,
    snapshot_next: Slot,
    chosen: BTreeSet<Slot>,
    accepted: HashMap<Slot, Ballot>,
    /// Two-phase commit: the highest epoch, commits and votes recorded.
    tpc_epoch: u64,
    tpc_commits: HashSet<TxnId>,
    tpc_votes: HashSet<TxnId>,
}

impl Image {
    fn of(disk: &Recovered) -> Image {
        let mut img = Image {
            snapshot_next: disk.snapshot.as_ref().map_or(0, |s| s.next_slot()),
            ..Image::default()
        };
        for r in &disk.records {
            match r {
                Record::Promise { ballot } => img.promised = img.promised.max(*ballot),
                Record::Accept { slot, ballot, .. } => {
                    img.promised = img.promised.max(*ballot);
                    let b = img.accepted.entry(*slot).or_default();
                    *b = (*b).max(*ballot);
                }
                Record::Chosen { slot, .. } => {
                    img.chosen.insert(*slot);
                }
                Record::Rejoin { floor } => img.promised = img.promised.max(*floor),
                Record::Rejoined => {}
                Record::TpcEpoch { epoch } => img.tpc_epoch = img.tpc_epoch.max(*epoch),
                Record::TpcCommit { txn, .. } => {
                    img.tpc_commits.insert(*txn);
                }
                Record::TpcVote { txn, .. } => {
                    img.tpc_votes.insert(*txn);
                }
                Record::TpcDecided { .. } => {}
            }
        }
        img
    }

    /// Whether the image still holds what `r` recorded (or more).
    fn holds(&self, r: &Record) -> bool {
        match r {
            Record::Promise { ballot } => self.promised >= *ballot,
            Record::Accept { slot, ballot, .. } => {
                *slot < self.snapshot_next
                    || self.chosen.contains(slot)
                    || self.accepted.get(slot).is_some_and(|b| b >= ballot)
            }
            Record::Rejoin { floor } => self.promised >= *floor,
            Record::TpcEpoch { epoch } => self.tpc_epoch >= *epoch,
            Record::TpcCommit { txn, .. } => self.tpc_commits.contains(txn),
            Record::TpcVote { txn, .. } => self.tpc_votes.contains(txn),
            // An outcome only spares asking again.
            Record::Chosen { .. } | Record::Rejoined | Record::TpcDecided { .. } => true,
        }
    }
}

impl Sim {
    pub(super) fn violation(&mut self, i: usize, what: String) {
        if self.violations.len() < 20 {
            self.violations
                .push(format!("t={}ms node {}: {what}", self.now, i + 1));
        }
    }

    /// After a batch: node `i`'s promise did not drop below one it
    /// revealed; what it now believes chosen, and its applied state, wait
    /// to be confirmed (`confirm`) once what they stand on is durable.
    pub(super) fn check_node(&mut self, i: usize, out: &Outputs) {
        let Some(r) = &self.nodes[i].replica else {
            return;
        };
        let promised = r.promised();
        let need = r.chosen_need();
        let (applied, digest) = (r.state().applied, r.state().digest);
        let node = &mut self.nodes[i];
        for (k, rec) in out.persist.iter().enumerate() {
            match rec {
                Record::Chosen { slot, entry } => {
                    self.stats.chosen_slots += 1;
                    node.beliefs.push((need, *slot, entry.clone()));
                }
                Record::TpcVote { txn, .. } => {
                    self.tpc_votes.insert((i, *txn));
                }
                Record::TpcCommit { txn, .. } => {
                    let lsn = out.first_lsn + k as Lsn;
                    node.tpc_commits.push((lsn + 1, *txn));
                }
                _ => {}
            }
        }
        if applied > 0 {
            node.applied_states.push((need, applied, digest));
        }
        if promised < self.max_promised[i] && self.cfg.fsync == Fsync::Always {
            let msg = format!(
                "promise {promised} is below {} that a released message revealed",
                self.max_promised[i]
            );
            self.violation(i, msg);
        }
        self.check_lease(i);
        self.confirm(i);
    }

    /// Leases: while a leader's lease holds (on its own clock, read now),
    /// no leader with a higher ballot may have been elected, for that one
    /// commits writes the lease's reads would not see.
    pub(super) fn check_lease(&mut self, i: usize) {
        let Some(r) = &self.nodes[i].replica else {
            return;
        };
        let Some(ballot) = r.leader_ballot() else {
            return;
        };
        let (lease_until, clock) = (r.lease_until(), self.clock(i));
        if ballot > self.newest_leader {
            self.newest_leader = ballot;
        } else if ballot < self.newest_leader && clock < lease_until {
            let msg = format!(
                "leader {ballot} still holds its lease (until {lease_until}, clock {clock}) after leader {} was elected",
                self.newest_leader
            );
            self.violation(i, msg);
        }
    }

    /// Node `i`'s beliefs whose records are now durable become facts that
    /// must agree with every other node's, ever: at most one value chosen
    /// per slot, equal digests of equal applied prefixes. (A belief that a
    /// crash erases before it was durable was never acted on, since every
    /// output standing on it waited too: it is not a fact.)
    pub(super) fn confirm(&mut self, i: usize) {
        let durable = self.nodes[i].pipeline.durable();
        let node = &mut self.nodes[i];
        let (facts, later): (Vec<_>, Vec<_>) = std::mem::take(&mut node.beliefs)
            .into_iter()
            .partition(|(need, _, _)| *need <= durable);
        node.beliefs = later;
        let (states, later): (Vec<_>, Vec<_>) = std::mem::take(&mut node.applied_states)
            .into_iter()
            .partition(|(need, _, _)| *need <= durable);
        node.applied_states = later;
        let (commits, later): (Vec<_>, Vec<_>) = std::mem::take(&mut node.tpc_commits)
            .into_iter()
            .partition(|(need, _)| *need <= durable);
        node.tpc_commits = later;
        for (_, slot, entry) in facts {
            match self.chosen.get(&slot) {
                Some(e) if *e != entry => {
                    let msg = format!("two values chosen in slot {slot}: {e:?} and now {entry:?}");
                    self.violation(i, msg);
                }
                Some(_) => {}
                None => {
                    self.chosen.insert(slot, entry);
                }
            }
        }
        // Two-phase commit is unanimous: a durable commit had every
        // participant's vote, recorded before it was sent.
        for (_, txn) in commits {
            for p in (0..self.cfg.nodes).filter(|&p| p != i) {
                if !self.tpc_votes.contains(&(p, txn)) {
                    let msg = format!("transaction {txn} committed without node {}'s vote", p + 1);
                    self.violation(i, msg);
                }
            }
        }
        for (_, applied, digest) in states {
            match self.digests.get(&applied) {
                Some(&d) if d != digest => {
                    self.violation(i, format!("applied prefix up to slot {applied} differs"))
                }
                Some(_) => {}
                None => {
                    self.digests.insert(applied, digest);
                }
            }
        }
    }

    /// A message of node `i` leaves: a prepare's ballot is its own and no
    /// other incarnation's; what it reveals of the promise must last.
    pub(super) fn check_released(&mut self, i: usize, msg: &Message) {
        let revealed = match msg {
            Message::Prepare { ballot, .. }
            | Message::Promise { ballot, .. }
            | Message::Accepted { ballot, .. } => *ballot,
            Message::Nack { promised, .. } => *promised,
            _ => return,
        };
        self.max_promised[i] = self.max_promised[i].max(revealed);
        let Message::Prepare { ballot, .. } = msg else {
            return;
        };
        let incarnation = self.nodes[i].incarnation;
        if ballot.node != i as u64 + 1 {
            self.violation(i, format!("prepares with another node's ballot {ballot}"));
        }
        match self.ballots.get(ballot) {
            Some(&inc) if inc != incarnation => {
                let msg = format!(
                    "ballot {ballot} reused by incarnation {incarnation} (first used by {inc})"
                );
                self.violation(i, msg);
            }
            Some(_) => {}
            None => {
                self.ballots.insert(*ballot, incarnation);
            }
        }
    }

    /// An output of node `i` that stood on the records below `after` left:
    /// from now on the disk must hold them, whatever happens.
    pub(super) fn note_depended(&mut self, i: usize, after: Lsn) {
        let node = &mut self.nodes[i];
        if after <= node.depended_upto {
            return;
        }
        if after > node.emitted.len() as Lsn {
            let msg = format!(
                "an output stood on LSN {after}, beyond the {} records emitted",
                node.emitted.len()
            );
            self.violation(i, msg);
            return;
        }
        let from = node.depended_upto as usize;
        let new: Vec<Record> = node.emitted[from..after as usize]
            .iter()
            .filter(|r| !matches!(r, Record::Chosen { .. }))
            .cloned()
            .collect();
        node.claims.extend(new);
        node.depended_upto = after;
    }

    /// After node `i` compacted: the log still holds every record appended
    /// this incarnation and every record an output stood on.
    pub(super) fn check_compaction(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let disk = match node.pipeline.storage_mut().load() {
            Ok(d) => d,
            Err(e) => unreachable!("the memory disk cannot fail: {e}"),
        };
        let img = Image::of(&disk);
        let appended = node.pipeline.appended() as usize;
        let lost = node.emitted[..appended.min(node.emitted.len())]
            .iter()
            .chain(&node.claims)
            .find(|r| !img.holds(r))
            .cloned();
        // What the snapshot covers stays held: no need to look again.
        node.claims.retain(|r| match r {
            Record::Accept { slot, .. } => *slot >= img.snapshot_next,
            _ => true,
        });
        prune_promises(&mut node.claims);
        if let Some(r) = lost {
            self.violation(i, format!("a compaction lost {r:?}"));
        }
    }

    /// Node `i` was killed (and, on a power loss, lost what it had not
    /// synced): what survived must hold every record an output stood on.
    pub(super) fn check_survivors(&mut self, i: usize) {
        if self.cfg.fsync == Fsync::Never {
            return; // unsafe on purpose: losing acknowledged state is the point
        }
        let node = &mut self.nodes[i];
        let disk = match node.pipeline.storage_mut().load() {
            Ok(d) => d,
            Err(e) => unreachable!("the memory disk cannot fail: {e}"),
        };
        let img = Image::of(&disk);
        if let Some(r) = node.claims.iter().find(|r| !img.holds(r)).cloned() {
            self.violation(
                i,
                format!("a crash lost {r:?}, which a released output stood on"),
            );
        }
    }
}

/// Keeps only the highest promise (it holds every lower one).
fn prune_promises(records: &mut Vec<Record>) {
    let max = records
        .iter()
        .filter_map(|r| match r {
            Record::Promise { ballot } => Some(*ballot),
            _ => None,
        })
        .max();
    let mut kept = false;
    records.retain(|r| match r {
        Record::Promise { ballot } if Some(*ballot) == max && !kept => {
            kept = true;
            true
        }
        Record::Promise { .. } => false,
        _ => true,
    });
}
