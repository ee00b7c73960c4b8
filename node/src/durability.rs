//! The durability pipeline: which message or reply may leave before which
//! sync. One implementation, run by the server's disk thread and by the
//! simulation alike, so the simulation exercises the I/O order that ships.
//!
//! # The contract
//!
//! The core numbers every record it asks to persist: the *log sequence
//! number* ([`Lsn`]) of a record is its position in the stream of records
//! of this incarnation of the node (from 0 at every start). Every message
//! ([`Outgoing`]) and client reply ([`crate::ClientReply`]) carries
//! `after`: it may leave once every record with an LSN below `after` is
//! durable. The core computes `after` from what the output stands on (see
//! `Replica::depends_on`): an acceptor's promise and votes stand on every
//! record so far; a leader's commit point and a client's answer stand only
//! on the own votes counted towards the slots chosen so far, which are
//! usually durable already; a forwarded command stands on nothing. Outputs
//! that stand on nothing unsynced leave at once, so a leader's disk write
//! overlaps its followers' without a rule per message kind to get wrong.
//!
//! A compaction ([`Compaction`]) sits at an LSN of the stream (`at`): its
//! snapshot and retained records are the node's state after every record
//! below `at`, so records from `at` on are appended after it, never before
//! (a compaction applied after a later record would erase it). Writing the
//! compaction makes everything below `at` durable.
//!
//! # The pipeline
//!
//! A shell hands the core's outputs over in [`Group`]s, one per batch of
//! inputs, in order. [`split`] releases at once what the durable point
//! already covers and packs the rest with the group's records. The disk
//! side, [`Pipeline`], takes every waiting group as one *set*, appends its
//! records (applying compactions at their place), then syncs once for the
//! whole set (group commit) and releases what that sync covers. `Chosen`
//! marks are never waited for: "chosen" is a fact a majority of durable
//! votes already makes; the mark only spares re-learning it, so groups that
//! hold nothing else are synced lazily ([`Pipeline::dirty`]).
//!
//! Storage has three levels and the pipeline says which one each step
//! reaches: `append` keeps records in this process (lost on a kill),
//! `flush` hands them to the operating system (lost on a power loss), and
//! `sync` makes them durable. With `--fsync never` (unsafe on purpose) the
//! pipeline treats appended records as durable without syncing: outputs
//! leave at once and records reach the file only on [`Pipeline::sync`],
//! which the shell calls every few hundred milliseconds.

use crate::config::Fsync;
use crate::message::Message;
use crate::replica::Outputs;
use crate::storage::{Compaction, Record, Storage, StorageError};
use crate::types::{ClientReply, NodeId};

/// A record's position in the record stream of one incarnation of a node.
pub type Lsn = u64;

/// A message to a peer and what it stands on.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub to: NodeId,
    pub msg: Message,
    /// May leave once every record with an LSN below this is durable.
    pub after: Lsn,
}

/// Something the pipeline lets go: a message to a peer, or a client's
/// reply in the shell's own form `R` (the server's reply channel, the
/// simulation's client reply).
#[derive(Debug)]
pub enum Release<R> {
    Message(NodeId, Message),
    Reply(R),
}

/// An output waiting for its records to become durable.
#[derive(Debug)]
pub struct Held<R> {
    pub after: Lsn,
    pub release: Release<R>,
}

/// What one batch of inputs to the core left for the disk side.
#[derive(Debug)]
pub struct Group<R> {
    /// The LSN of `records[0]`.
    pub first_lsn: Lsn,
    pub records: Vec<Record>,
    pub compact: Option<Compaction>,
    /// Outputs the durable point did not cover when the group was shipped.
    pub held: Vec<Held<R>>,
}

impl<R> Group<R> {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.compact.is_none() && self.held.is_empty()
    }
}

/// Takes what the core produced since the last call out of `out`: outputs
/// that every record below `durable` covers go to `now` at once (with the
/// LSN they waited for); the rest, with the records and any compaction,
/// come back as the next [`Group`] (`None` when there is nothing for the
/// disk side). `reply` turns the core's reply into the shell's form
/// (`None` drops it, e.g. a client that has gone).
pub fn split<R>(
    out: &mut Outputs,
    durable: Lsn,
    mut reply: impl FnMut(ClientReply) -> Option<R>,
    mut now: impl FnMut(Release<R>, Lsn),
) -> Option<Group<R>> {
    let mut group = Group {
        first_lsn: out.first_lsn,
        records: std::mem::take(&mut out.persist),
        compact: out.compact.take(),
        held: Vec::new(),
    };
    for o in out.send.drain(..) {
        let release = Release::Message(o.to, o.msg);
        if o.after <= durable {
            now(release, o.after);
        } else {
            group.held.push(Held {
                after: o.after,
                release,
            });
        }
    }
    for r in out.replies.drain(..) {
        let after = r.after;
        let Some(r) = reply(r) else { continue };
        if after <= durable {
            now(Release::Reply(r), after);
        } else {
            group.held.push(Held {
                after,
                release: Release::Reply(r),
            });
        }
    }
    out.chosen.clear();
    (!group.is_empty()).then_some(group)
}

/// Test-only ways to break the pipeline on purpose, so the simulation can
/// prove it would catch the bugs they bring back. Never set them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineBugs {
    /// Issue 11, bug 1: within a set, release an output as soon as it
    /// stands on nothing of its *own* group, although an earlier group of
    /// the same set is not durable yet (the old "early" rule).
    pub release_before_earlier_groups: bool,
    /// Issue 11, bug 2: apply a group's compaction after appending all of
    /// the group's records, so it erases those from its LSN on.
    pub compact_after_the_group: bool,
}

/// What one [`Pipeline::take`] did, for metrics and the simulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub records: usize,
    pub compactions: usize,
}

/// The disk side: storage, the durable point, and outputs waiting for it.
pub struct Pipeline<S, R> {
    storage: S,
    fsync: Fsync,
    /// Every record below is durable: synced, or inside a compaction.
    durable: Lsn,
    /// Every record below is appended.
    appended: Lsn,
    /// Every record below is synced or compacted (with `fsync=never`:
    /// written); above it, `Chosen` marks may wait (see [`Self::dirty`]).
    synced: Lsn,
    /// One past the last record appended that is not a `Chosen` mark: a
    /// promise or a vote, which outputs will soon stand on (a leader's
    /// reply on its own vote, say), so it is synced at once rather than
    /// when the first of them asks, overlapping the leader's fsync with
    /// its followers' round trip.
    urgent: Lsn,
    held: Vec<Held<R>>,
    bugs: PipelineBugs,
}

impl<S: Storage, R> Pipeline<S, R> {
    /// A pipeline over `storage` that has just been loaded (nothing of this
    /// incarnation appended yet).
    pub fn new(storage: S, fsync: Fsync) -> Self {
        Pipeline {
            storage,
            fsync,
            durable: 0,
            appended: 0,
            synced: 0,
            urgent: 0,
            held: Vec::new(),
            bugs: PipelineBugs::default(),
        }
    }

    #[doc(hidden)]
    pub fn with_bugs(mut self, bugs: PipelineBugs) -> Self {
        self.bugs = bugs;
        self
    }

    /// Every record below this LSN is durable.
    pub fn durable(&self) -> Lsn {
        self.durable
    }

    /// Every record below this LSN is appended (at least in the process).
    pub fn appended(&self) -> Lsn {
        self.appended
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The storage, for a restart (outputs still held are dropped, as a
    /// crash drops them).
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Outputs wait for a sync, or promises and votes are not synced yet:
    /// call [`Self::sync`] now.
    pub fn must_sync(&self) -> bool {
        !self.held.is_empty() || (self.fsync == Fsync::Always && self.urgent > self.synced)
    }

    /// Records are appended but not synced (with `fsync=always`: only
    /// `Chosen` marks or records no output waits for; with `never`: not
    /// yet written). Sync them soon, lazily.
    pub fn dirty(&self) -> bool {
        self.appended > self.synced
    }

    /// Takes a set of groups, in order: releases what the durable point
    /// covers, appends the records (applying each compaction at its LSN),
    /// and releases what the compactions made durable. What is still held
    /// waits for [`Self::sync`].
    pub fn take(
        &mut self,
        set: impl IntoIterator<Item = Group<R>>,
        release: &mut impl FnMut(Release<R>, Lsn),
    ) -> Result<Taken, StorageError> {
        let mut taken = Taken::default();
        for g in set {
            debug_assert!(
                g.records.is_empty() || g.first_lsn == self.appended,
                "groups arrive in order: LSN {} after {}",
                g.first_lsn,
                self.appended
            );
            let own_start = g.first_lsn;
            if self.bugs.release_before_earlier_groups {
                for h in g.held {
                    if h.after <= own_start.max(self.durable) {
                        release(h.release, h.after);
                    } else {
                        self.held.push(h);
                    }
                }
            } else {
                self.held.extend(g.held);
            }
            taken.records += g.records.len();
            let end = g.first_lsn + g.records.len() as Lsn;
            match g.compact {
                Some(c) if !self.bugs.compact_after_the_group => {
                    let before = c.at.saturating_sub(g.first_lsn).min(g.records.len() as Lsn);
                    let (head, tail) = g.records.split_at(before as usize);
                    self.storage.append(head)?;
                    self.compact(&c)?;
                    self.storage.append(tail)?;
                    taken.compactions += 1;
                }
                Some(c) => {
                    self.storage.append(&g.records)?;
                    self.compact(&c)?;
                    taken.compactions += 1;
                }
                None => self.storage.append(&g.records)?,
            }
            self.appended = self.appended.max(end);
            if let Some(i) = g
                .records
                .iter()
                .rposition(|r| !matches!(r, Record::Chosen { .. }))
            {
                self.urgent = self.urgent.max(g.first_lsn + i as Lsn + 1);
            }
        }
        if self.fsync == Fsync::Never {
            // Unsafe on purpose: appended counts as durable.
            self.durable = self.appended;
        }
        self.release_covered(release);
        Ok(taken)
    }

    fn compact(&mut self, c: &Compaction) -> Result<(), StorageError> {
        self.storage.compact(c)?;
        self.durable = self.durable.max(c.at);
        self.synced = self.synced.max(c.at);
        Ok(())
    }

    /// Hands every appended record to the operating system (the first half
    /// of a sync: after it a kill loses nothing, a power loss still may).
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.storage.flush()
    }

    /// Makes everything appended durable, then releases what waited for it.
    pub fn sync(&mut self, release: &mut impl FnMut(Release<R>, Lsn)) -> Result<(), StorageError> {
        self.storage.sync()?;
        self.synced = self.appended;
        self.durable = self.durable.max(self.appended);
        self.release_covered(release);
        Ok(())
    }

    fn release_covered(&mut self, release: &mut impl FnMut(Release<R>, Lsn)) {
        if self.held.iter().all(|h| h.after > self.durable) {
            return;
        }
        // In order: replies and messages leave as the core produced them.
        for h in std::mem::take(&mut self.held) {
            if h.after <= self.durable {
                release(h.release, h.after);
            } else {
                self.held.push(h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use crate::types::{Ballot, Entry};

    fn group<R>(first_lsn: Lsn, records: Vec<Record>) -> Group<R> {
        Group {
            first_lsn,
            records,
            compact: None,
            held: Vec::new(),
        }
    }

    #[test]
    fn a_vote_is_synced_at_once_and_a_chosen_mark_lazily() {
        let mut p: Pipeline<MemStorage, ()> =
            Pipeline::new(MemStorage::new(Fsync::Always), Fsync::Always);
        let chosen = Record::Chosen {
            slot: 0,
            entry: Entry::Noop,
        };
        p.take([group(0, vec![chosen])], &mut |_, _| {}).unwrap();
        assert!(!p.must_sync() && p.dirty(), "a chosen mark waits");
        let vote = Record::Accept {
            slot: 1,
            ballot: Ballot::new(1, 1),
            entry: Entry::Noop,
        };
        p.take([group(1, vec![vote])], &mut |_, _| {}).unwrap();
        assert!(
            p.must_sync(),
            "a vote is synced before anything asks for it"
        );
        p.sync(&mut |_, _| {}).unwrap();
        assert!(!p.must_sync() && !p.dirty());
        assert_eq!(p.durable(), 2);
    }

    #[test]
    fn an_output_leaves_once_what_it_stands_on_is_durable_and_not_before() {
        let mut p: Pipeline<MemStorage, u32> =
            Pipeline::new(MemStorage::new(Fsync::Always), Fsync::Always);
        let vote = Record::Promise {
            ballot: Ballot::new(1, 1),
        };
        let mut g = group(0, vec![vote.clone(), vote]);
        g.held.push(Held {
            after: 2,
            release: Release::Reply(7),
        });
        let mut out = Vec::new();
        p.take([g], &mut |r, after| {
            out.push((after, matches!(r, Release::Reply(7))))
        })
        .unwrap();
        assert!(out.is_empty(), "appended is not durable");
        p.sync(&mut |r, after| out.push((after, matches!(r, Release::Reply(7)))))
            .unwrap();
        assert_eq!(out, vec![(2, true)]);
    }
}
