//! The disk thread: group commit through the shared durability pipeline.
//!
//! The replica task ships one [`Group`] per batch of inputs it handled,
//! keeping back nothing but the outputs that stand on records not yet
//! durable (see [`synod_node::durability`], which the simulation runs
//! too). This thread takes every group waiting as one set (so groups that
//! arrived during the previous fsync share the next one), appends their
//! records, applying compactions at their place in the stream, fdatasyncs
//! once if any output waits for it, and releases what became durable. It
//! publishes the durable point ([`Durable`]) so the replica task can send
//! what needs no sync of its own without a hop through this thread.
//!
//! `Chosen` marks are never waited for; a set that holds nothing else is
//! synced with the next set that needs a sync, or within [`LAZY_SYNC`].
//!
//! With `--fsync never` (unsafe on purpose) records stay in this process's
//! buffer and reach the file only every [`WRITEBACK`], never fsynced: a
//! power-loss crash (`/admin/crash`) or a kill loses them, acknowledged or
//! not.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release as Rel};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_node::durability::{self, Lsn, Pipeline, Release};
use synod_node::storage::FileStorage;
use synod_node::{Fsync, RequestOutcome, StorageError};
use tokio::sync::oneshot;

use super::metrics::Metrics;
use super::peers::Peers;

/// How long `--fsync never` keeps records in the process before writing
/// them (unsynced) to the file: the window a power loss can erase.
pub const WRITEBACK: Duration = Duration::from_millis(500);

/// With `--fsync always`, how long appended `Chosen` marks may wait for a
/// sync when no output needs one.
pub const LAZY_SYNC: Duration = Duration::from_millis(50);

/// How often, at most, a sync refreshes the log size gauge (a compaction
/// always does).
const LOG_BYTES_EVERY: Duration = Duration::from_millis(200);

/// Most groups taken as one set (bounds the work between two releases).
const MAX_SET: usize = 4096;

/// A client's reply in the server's form: where to send it, and what.
pub type ServerReply = (oneshot::Sender<RequestOutcome>, RequestOutcome);

/// One batch of the replica task's outputs, for this thread.
pub type Group = durability::Group<ServerReply>;

/// The durable point, written by this thread and read by the replica task:
/// every record below it is durable, so an output that stands on nothing
/// above it may leave at once.
#[derive(Clone, Default)]
pub struct Durable(Arc<AtomicU64>);

impl Durable {
    pub fn get(&self) -> Lsn {
        self.0.load(Acquire)
    }

    fn set(&self, lsn: Lsn) {
        self.0.store(lsn, Rel);
    }
}

/// Commands to the disk thread.
pub enum DiskCmd {
    Group(Group),
    /// `/admin/crash` with `lose_unsynced: false`: make everything
    /// appended durable, then exit at once.
    CrashAfterSync,
}

/// Sends what the pipeline releases: messages to the peer links, replies
/// to the waiting handlers.
pub fn deliver(peers: &Peers, r: Release<ServerReply>) {
    match r {
        Release::Message(to, m) => peers.send(to, m),
        Release::Reply((tx, outcome)) => {
            // The client may have gone away: nothing to do.
            let _ = tx.send(outcome);
        }
    }
}

pub struct DiskThread {
    pub pipeline: Pipeline<FileStorage, ServerReply>,
    pub fsync: Fsync,
    pub peers: Peers,
    pub metrics: Arc<Metrics>,
    pub durable: Durable,
    /// When `synod_log_bytes` was last read off the file.
    pub log_bytes_at: Instant,
    /// Test-only: the thread panics at this instant (to prove the process
    /// then exits instead of lingering without a disk).
    pub panic_at: Option<Instant>,
}

impl DiskThread {
    /// Runs until every sender is dropped (after a last sync).
    pub fn run(mut self, rx: Receiver<DiskCmd>) {
        self.refresh_log_bytes();
        // When the pipeline last became dirty (appended, not synced).
        let mut dirty_since = Instant::now();
        let mut set = Vec::new();
        loop {
            let mut wait = match (self.pipeline.dirty(), self.fsync) {
                (true, Fsync::Never) => WRITEBACK.saturating_sub(dirty_since.elapsed()),
                (true, Fsync::Always) => LAZY_SYNC.saturating_sub(dirty_since.elapsed()),
                _ => Duration::from_secs(3600),
            };
            if let Some(at) = self.panic_at {
                let left = at.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "test-only panic of the disk thread");
                wait = wait.min(left);
            }
            let first = match rx.recv_timeout(wait) {
                Ok(cmd) => cmd,
                Err(RecvTimeoutError::Timeout) => {
                    self.sync_or_die();
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
            while set.len() < MAX_SET {
                match rx.try_recv() {
                    Ok(cmd) => push(cmd, &mut set),
                    Err(_) => break,
                }
            }
            let was_dirty = self.pipeline.dirty();
            let t = Instant::now();
            let peers = &self.peers;
            let taken = self
                .pipeline
                .take(set.drain(..), &mut |r, _| deliver(peers, r))
                .unwrap_or_else(|e| die(&e));
            self.metrics
                .records_appended
                .fetch_add(taken.records as u64, Relaxed);
            if taken.compactions > 0 {
                self.metrics
                    .compactions
                    .fetch_add(taken.compactions as u64, Relaxed);
                tracing::info!(
                    compactions = taken.compactions,
                    took_ms = t.elapsed().as_millis() as u64,
                    "log compacted into a snapshot"
                );
                self.refresh_log_bytes();
            }
            self.durable.set(self.pipeline.durable());
            if !was_dirty && self.pipeline.dirty() {
                dirty_since = Instant::now();
            }
            if self.pipeline.must_sync() {
                self.sync_or_die();
            }
            if crash {
                self.sync_or_die();
                tracing::warn!("crash requested (lose_unsynced=false): synced, exiting now");
                // SAFETY: _exit ends the process without running any Rust
                // or libc cleanup: a crash, on purpose.
                unsafe { libc::_exit(137) };
            }
        }
        // Shutdown: everything appended reaches the disk, and the sync mark
        // vouches for all of it.
        self.sync_or_die();
        if let Err(e) = self.pipeline.storage_mut().mark_synced() {
            die(&e);
        }
        tracing::info!("disk thread: final sync done");
    }

    fn sync_or_die(&mut self) {
        let t = Instant::now();
        let peers = &self.peers;
        if let Err(e) = self.pipeline.sync(&mut |r, _| deliver(peers, r)) {
            die(&e);
        }
        self.durable.set(self.pipeline.durable());
        if self.fsync == Fsync::Always {
            self.metrics.fsyncs.fetch_add(1, Relaxed);
            self.metrics.fsync_seconds.observe(t.elapsed());
        }
        // A gauge for people and tests, not worth a system call per sync.
        if self.log_bytes_at.elapsed() >= LOG_BYTES_EVERY {
            self.refresh_log_bytes();
        }
    }

    fn refresh_log_bytes(&mut self) {
        self.log_bytes_at = Instant::now();
        if let Ok(m) = std::fs::metadata(self.pipeline.storage().log_path()) {
            self.metrics.log_bytes.store(m.len(), Relaxed);
        }
    }
}

/// A node must not run on top of a failed disk: a write that may or may
/// not have happened leaves the acceptor's promises unknowable.
fn die(e: &StorageError) -> ! {
    tracing::error!(error = %e, "storage failed; stopping the node (its promises can no longer be kept)");
    eprintln!("synod-node: fatal storage error: {e}");
    // SAFETY: exit without cleanup; nothing may be sent after this.
    unsafe { libc::_exit(74) }
}
