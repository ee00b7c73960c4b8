//! The disk thread: group commit, and the gate that releases messages and
//! replies only once what they depend on is durable.
//!
//! The replica task hands over one [`Group`] per batch of inputs it
//! handled. This thread takes every group waiting (so groups that arrived
//! during the previous fsync share the next one), appends their records,
//! fdatasyncs once, and only then releases their messages and replies, in
//! order. Groups are processed strictly in order, so the core's rule
//! "persist before sending, for this call and every later one" holds.
//!
//! Refinements keep fsyncs off the critical path without weakening that
//! rule, because what they release early does not depend on the group's
//! own records (the argument is at [`is_early`]):
//!
//! * **Early messages.** A leader's `Accept`s and `Heartbeat`s, forwarded
//!   client commands and catch-up requests leave before the group's fsync,
//!   overlapping the leader's disk write with the followers'.
//! * **Early replies** (with `--learn leader`): a client's answer reports
//!   a value chosen by a majority of durable votes.
//! * **Direct release.** When every earlier group is durable (the
//!   [`Settled`] mark has caught up), the replica task releases a new
//!   group's early messages and replies itself instead of handing them to
//!   this thread: the same rule, one thread hop fewer on a write's path.
//! * **Lazy chosen marks.** `Chosen` records are never waited for; they
//!   are synced with the next group that needs a sync, or within
//!   [`LAZY_SYNC`].
//!
//! With `--fsync never` (unsafe on purpose) records stay in this process's
//! buffer and reach the file only every [`WRITEBACK`], never fsynced: a
//! power-loss crash (`/admin/crash`) or a kill loses them, acknowledged or
//! not.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_node::storage::{Compaction, FileStorage};
use synod_node::{Fsync, Learn, Message, NodeId, Outcome, Record, Storage};
use tokio::sync::oneshot;

use super::metrics::Metrics;
use super::peers::Peers;

/// How long `--fsync never` keeps records in the process before writing
/// them (unsynced) to the file: the window a power loss can erase.
pub const WRITEBACK: Duration = Duration::from_millis(500);

/// With `--fsync always`, how long appended `Chosen` marks may wait for a
/// sync when no group needs one.
pub const LAZY_SYNC: Duration = Duration::from_millis(50);

/// What one batch of inputs to the core produced.
#[derive(Default)]
pub struct Group {
    /// Position in the replica task's sequence of groups (from 1).
    pub seq: u64,
    pub records: Vec<Record>,
    /// Released before this group's fsync (see [`is_early`]).
    pub early: Vec<(NodeId, Message)>,
    /// Released after it.
    pub late: Vec<(NodeId, Message)>,
    pub replies: Vec<(oneshot::Sender<Outcome>, Outcome)>,
    /// Replies may leave before the fsync (see [`replies_early`]).
    pub replies_early: bool,
    pub compact: Option<Compaction>,
}

impl Group {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.early.is_empty()
            && self.late.is_empty()
            && self.replies.is_empty()
            && self.compact.is_none()
    }
}

/// The highest group sequence number such that this group and every
/// earlier one are settled: records appended and, where they need it,
/// synced; messages and replies released; compaction done.
///
/// Written by the disk thread, read by the replica task: when it equals
/// the last group the replica task shipped, nothing is in flight and the
/// next group's early outputs may leave at once (see [`is_early`]: the
/// only unsynced records they could depend on are their own group's).
#[derive(Clone, Default)]
pub struct Settled(Arc<AtomicU64>);

impl Settled {
    pub fn get(&self) -> u64 {
        self.0.load(Acquire)
    }

    fn set(&self, seq: u64) {
        self.0.store(seq, Release);
    }
}

/// Commands to the disk thread.
pub enum DiskCmd {
    Group(Group),
    /// `/admin/crash` with `lose_unsynced: false`: make everything
    /// appended durable, then exit at once.
    CrashAfterSync,
}

/// Whether a message may leave before the fsync of its own group.
///
/// The invariant: this thread takes a set of groups only after the
/// previous set is synced, and the replica task formed every group of the
/// set before any of its messages left. So a peer's answer to a message of
/// the set reaches the core in a later set, and the only unsynced records
/// a message can depend on are those of its own set.
///
/// * `Accept` and `Heartbeat` (a leader's) depend on (a) the leader's
///   promise of its ballot, persisted in the campaign's group, synced
///   before the `Prepare`s left, so before this leader existed; and (b)
///   their `commit` field: slots the leader counted chosen. A slot counts
///   chosen with a majority of votes. The leader's own vote is recorded in
///   the group that proposed the slot; every other vote answers an
///   `Accept` of that group, so it arrives in a later set, by when the
///   proposing group is synced. Every vote behind `commit` is durable.
/// * `Forward` and `CatchUp` carry client commands and requests: nothing
///   durable. `HeartbeatAck` carries no promise, and its `commit` is
///   informational.
/// * Not early: `Prepare` (the proposer's own promise must be durable
///   first), `Promise` and `Accepted` (the acceptor's records), `Nack`,
///   and `CatchUpReply`: with `learn=all` a follower may count a slot
///   chosen on the strength of its own vote recorded in this very group
///   (see [`replies_early`]), and catch-up is not latency-critical.
pub fn is_early(msg: &Message) -> bool {
    matches!(
        msg,
        Message::Accept { .. }
            | Message::Heartbeat { .. }
            | Message::HeartbeatAck { .. }
            | Message::Forward { .. }
            | Message::CatchUp { .. }
    )
}

/// Whether client replies may leave before their group's fsync.
///
/// With `learn=leader` a node knows a slot chosen either by counting votes
/// as a leader (durable, as argued at [`is_early`]) or from a leader's
/// commit point (durable the same way), or from catch-up (facts). With
/// `learn=all` a node counts its own vote, possibly recorded in this very
/// group, so its replies wait for the sync. So does a cluster of one: its
/// leader's own vote, recorded in this group, is the whole majority.
pub fn replies_early(learn: Learn, members: usize) -> bool {
    learn == Learn::Leader && members > 1
}

/// Whether a record must be durable before the group's messages and
/// replies leave. `Chosen` marks need not be: "chosen" is a fact made
/// durable by a majority of `Accept` records; the mark only saves
/// re-learning it after a restart.
fn needs_sync(r: &Record) -> bool {
    !matches!(r, Record::Chosen { .. })
}

pub struct DiskThread {
    pub storage: FileStorage,
    pub fsync: Fsync,
    pub peers: Peers,
    pub metrics: Arc<Metrics>,
    pub settled: Settled,
}

impl DiskThread {
    /// Runs until every sender is dropped (after a last sync).
    pub fn run(mut self, rx: Receiver<DiskCmd>) {
        // Appended but not yet synced (or, with fsync=never, not written).
        let mut dirty = false;
        let mut dirty_since = Instant::now();
        let mut set: Vec<Group> = Vec::new();
        loop {
            let wait = match (dirty, self.fsync) {
                (true, Fsync::Never) => WRITEBACK.saturating_sub(dirty_since.elapsed()),
                (true, Fsync::Always) => LAZY_SYNC.saturating_sub(dirty_since.elapsed()),
                _ => Duration::from_secs(3600),
            };
            let first = match rx.recv_timeout(wait) {
                Ok(cmd) => cmd,
                Err(RecvTimeoutError::Timeout) => {
                    self.sync_or_die();
                    dirty = false;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut crash = false;
            let mut push = |cmd: DiskCmd, set: &mut Vec<Group>| match cmd {
                DiskCmd::Group(g) => set.push(g),
                DiskCmd::CrashAfterSync => crash = true,
            };
            push(first, &mut set);
            while set.len() < 4096 {
                match rx.try_recv() {
                    Ok(cmd) => push(cmd, &mut set),
                    Err(_) => break,
                }
            }
            // Process in segments ending at a compaction: a compaction
            // replaces the log, so records of later groups must be
            // appended after it, not before.
            let mut rest = set.drain(..).peekable();
            while rest.peek().is_some() {
                let mut seg: Vec<Group> = Vec::new();
                for g in rest.by_ref() {
                    let ends = g.compact.is_some();
                    seg.push(g);
                    if ends {
                        break;
                    }
                }
                for g in &mut seg {
                    for (to, m) in g.early.drain(..) {
                        self.peers.send(to, m);
                    }
                    if g.replies_early {
                        for (tx, outcome) in g.replies.drain(..) {
                            let _ = tx.send(outcome);
                        }
                    }
                }
                let mut must_sync = false;
                for g in &seg {
                    if !g.records.is_empty() {
                        if let Err(e) = self.storage.append(&g.records) {
                            die(&e);
                        }
                        self.metrics
                            .records_appended
                            .fetch_add(g.records.len() as u64, Relaxed);
                        if !dirty {
                            dirty = true;
                            dirty_since = Instant::now();
                        }
                        must_sync |= g.records.iter().any(needs_sync);
                    }
                }
                if must_sync && self.fsync == Fsync::Always {
                    self.sync_or_die();
                    dirty = false;
                }
                let mut compaction = None;
                let mut last_seq = 0;
                for g in seg {
                    last_seq = g.seq;
                    for (to, m) in g.late {
                        self.peers.send(to, m);
                    }
                    for (tx, outcome) in g.replies {
                        // The client may have gone away: nothing to do.
                        let _ = tx.send(outcome);
                    }
                    if g.compact.is_some() {
                        compaction = g.compact;
                    }
                }
                if let Some(c) = compaction {
                    let t = Instant::now();
                    if let Err(e) = self.storage.compact(&c) {
                        die(&e);
                    }
                    dirty = false;
                    self.metrics.compactions.fetch_add(1, Relaxed);
                    tracing::info!(
                        next_slot = c.snapshot.next_slot(),
                        retained = c.retained.len(),
                        took_ms = t.elapsed().as_millis() as u64,
                        "log compacted into a snapshot"
                    );
                    self.refresh_log_bytes();
                }
                self.settled.set(last_seq);
            }
            if crash {
                self.sync_or_die();
                tracing::warn!("crash requested (lose_unsynced=false): synced, exiting now");
                // SAFETY: _exit ends the process without running any Rust
                // or libc cleanup: a crash, on purpose.
                unsafe { libc::_exit(137) };
            }
        }
        // Shutdown: everything appended reaches the disk.
        self.sync_or_die();
        tracing::info!("disk thread: final sync done");
    }

    fn sync_or_die(&mut self) {
        let t = Instant::now();
        if let Err(e) = self.storage.sync() {
            die(&e);
        }
        if self.fsync == Fsync::Always {
            self.metrics.fsyncs.fetch_add(1, Relaxed);
            self.metrics.fsync_seconds.observe(t.elapsed());
        }
        self.refresh_log_bytes();
    }

    fn refresh_log_bytes(&self) {
        if let Ok(m) = std::fs::metadata(self.storage.log_path()) {
            self.metrics.log_bytes.store(m.len(), Relaxed);
        }
    }
}

/// A node must not run on top of a failed disk: a write that may or may
/// not have happened leaves the acceptor's promises unknowable.
fn die(e: &dyn std::fmt::Display) -> ! {
    tracing::error!(error = %e, "storage failed; stopping the node (its promises can no longer be kept)");
    eprintln!("synod-node: fatal storage error: {e}");
    // SAFETY: exit without cleanup; nothing may be sent after this.
    unsafe { libc::_exit(74) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_leader_counting_other_nodes_votes_replies_before_its_sync() {
        // learn=all counts the node's own vote, maybe from this very group.
        assert!(!replies_early(Learn::All, 3));
        // A cluster of one: the leader's own unsynced vote is the majority.
        assert!(!replies_early(Learn::Leader, 1));
        assert!(replies_early(Learn::Leader, 2));
        assert!(replies_early(Learn::Leader, 3));
    }
}
