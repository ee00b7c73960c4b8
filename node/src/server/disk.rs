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
//! Two refinements keep fsyncs off the critical path without weakening
//! that rule (the safety argument is at each):
//!
//! * **Early accepts.** A leader's phase-2a `Accept` messages leave before
//!   the group's own fsync, overlapping the leader's disk write with the
//!   followers' (see [`is_early`]).
//! * **Lazy chosen marks.** A group whose only records are `Chosen` marks
//!   releases its replies at once; the marks are synced with the next
//!   group or as soon as the thread is idle.
//!
//! With `--fsync never` (unsafe on purpose) records stay in this process's
//! buffer and reach the file only every [`WRITEBACK`], never fsynced: a
//! power-loss crash (`/admin/crash`) or a kill loses them, acknowledged or
//! not.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_node::storage::{Compaction, FileStorage};
use synod_node::{Fsync, Message, NodeId, Outcome, Record, Storage};
use tokio::sync::oneshot;

use super::metrics::Metrics;
use super::peers::Peers;

/// How long `--fsync never` keeps records in the process before writing
/// them (unsynced) to the file: the window a power loss can erase.
pub const WRITEBACK: Duration = Duration::from_millis(500);

/// What one batch of inputs to the core produced.
#[derive(Default)]
pub struct Group {
    pub records: Vec<Record>,
    /// Released before this group's fsync (see [`is_early`]).
    pub early: Vec<(NodeId, Message)>,
    /// Released after it.
    pub late: Vec<(NodeId, Message)>,
    pub replies: Vec<(oneshot::Sender<Outcome>, Outcome)>,
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

/// Commands to the disk thread.
pub enum DiskCmd {
    Group(Group),
    /// `/admin/crash` with `lose_unsynced: false`: make everything
    /// appended durable, then exit at once.
    CrashAfterSync,
}

/// Whether a message may leave before the fsync of its own group.
///
/// Only a leader's `Accept` (phase 2a). It depends on (a) the leader's
/// promise of its ballot, persisted in the campaign's group, which was
/// synced before that group's `Prepare`s left, so before any promise, so
/// before this leader existed; and (b) its `commit` field, i.e. slots the
/// leader counted chosen. A slot counts chosen with a majority of votes;
/// the leader's own vote for a slot is recorded in the group that proposed
/// it, and any other vote answers an `Accept` released when this thread
/// took that group, so it reaches the core in a strictly later group. By
/// the time this thread takes that later group, the earlier one is synced.
/// So every vote behind `commit` is durable before the message leaves. The
/// leader's own `Accept` record in this group is not needed by anyone
/// else: followers' votes are their own, made durable before they answer.
pub fn is_early(msg: &Message) -> bool {
    matches!(msg, Message::Accept { .. })
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
}

impl DiskThread {
    /// Runs until every sender is dropped (after a last sync).
    pub fn run(mut self, rx: Receiver<DiskCmd>) {
        // Appended but not yet synced (or, with fsync=never, not written).
        let mut dirty = false;
        let mut dirty_since = Instant::now();
        let mut set: Vec<Group> = Vec::new();
        // A command taken by the idle check, to handle first next round.
        let mut carry: Option<DiskCmd> = None;
        loop {
            let wait = match (dirty, self.fsync) {
                (true, Fsync::Never) => WRITEBACK.saturating_sub(dirty_since.elapsed()),
                _ => Duration::from_secs(3600),
            };
            let next = match carry.take() {
                Some(cmd) => Ok(cmd),
                None => rx.recv_timeout(wait),
            };
            let first = match next {
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
                for g in seg {
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
            }
            if crash {
                self.sync_or_die();
                tracing::warn!("crash requested (lose_unsynced=false): synced, exiting now");
                // SAFETY: _exit ends the process without running any Rust
                // or libc cleanup: a crash, on purpose.
                unsafe { libc::_exit(137) };
            }
            // Idle: sync lazily appended chosen marks now rather than
            // leaving them for the next group's fsync.
            if dirty && self.fsync == Fsync::Always {
                match rx.try_recv() {
                    Ok(cmd) => carry = Some(cmd),
                    Err(_) => {
                        self.sync_or_die();
                        dirty = false;
                    }
                }
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
