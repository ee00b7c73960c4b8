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
//! When outputs wait for a group and the disk thread is idle with nothing
//! untaken, the replica task takes and syncs that group itself
//! ([`Inline`]): the same pipeline, in the same order, without the two
//! wake-ups between threads that a follower's vote would otherwise wait
//! for.
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
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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

/// The disk side proper: the pipeline and what it reports to. The disk
/// thread holds it for each set it takes and syncs; the replica task may
/// hold it to take and sync one group itself ([`Inline`]).
pub struct DiskWork {
    pub pipeline: Pipeline<FileStorage, ServerReply>,
    pub fsync: Fsync,
    pub peers: Peers,
    pub metrics: Arc<Metrics>,
    pub durable: Durable,
    /// Groups taken so far, by either side: all that were sent when it
    /// equals [`Inline::sent`].
    taken: u64,
}

impl DiskWork {
    pub fn new(
        pipeline: Pipeline<FileStorage, ServerReply>,
        fsync: Fsync,
        peers: Peers,
        metrics: Arc<Metrics>,
        durable: Durable,
    ) -> Self {
        DiskWork {
            pipeline,
            fsync,
            peers,
            metrics,
            durable,
            taken: 0,
        }
    }

    /// Takes groups in order through the pipeline (see [`Pipeline::take`]).
    fn take(&mut self, set: impl ExactSizeIterator<Item = Group>) {
        self.taken += set.len() as u64;
        let t = Instant::now();
        let peers = &self.peers;
        let taken = self
            .pipeline
            .take(set, &mut |r, _| deliver(peers, r))
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
        self.refresh_log_bytes();
    }

    fn refresh_log_bytes(&mut self) {
        // Frames, not the preallocated zeros after them.
        let bytes = self.pipeline.storage().log_len();
        self.metrics.log_bytes.store(bytes, Relaxed);
    }
}

/// Locks the disk work; a panic elsewhere while holding it (the test-only
/// disk thread panic) ends the process anyway, so the poison is ignored.
fn lock(work: &Mutex<DiskWork>) -> MutexGuard<'_, DiskWork> {
    work.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The replica task's side: sends groups to the disk thread, or takes and
/// syncs one itself when nothing sent before it is still untaken.
///
/// Why: a follower's vote waits for its record's fsync. Through the disk
/// thread that costs two wake-ups between threads on the write's path (to
/// the disk thread, and back to send the vote), each a few tens of
/// microseconds on a virtual machine whose other core is idle. Taking the
/// group here is one of the schedules the simulation already runs (its
/// disk takes a node's queue right after the node ships): the groups go
/// through the same [`Pipeline`] in the same order, only on another thread.
/// Order holds because the disk thread counts what it takes while holding
/// the work, and this side takes a group only while holding it and when
/// every group sent before has been taken.
pub struct Inline {
    work: Arc<Mutex<DiskWork>>,
    fsync: Fsync,
    tx: Sender<DiskCmd>,
    /// Groups handed on so far (sent or taken here).
    sent: u64,
}

impl Inline {
    pub fn new(work: Arc<Mutex<DiskWork>>, tx: Sender<DiskCmd>) -> Self {
        let fsync = lock(&work).fsync;
        Inline {
            work,
            fsync,
            tx,
            sent: 0,
        }
    }

    /// Hands a group on: taken here if outputs wait for it, it compacts
    /// nothing (a compaction writes a snapshot: the disk thread's work),
    /// records are synced (`--fsync never` keeps them in the process for
    /// [`WRITEBACK`], which only the disk thread does), and the disk
    /// thread is not busy and has taken all sent before; otherwise sent
    /// to the disk thread.
    pub fn hand_on(&mut self, group: Group) {
        self.sent += 1;
        if !group.held.is_empty() && group.compact.is_none() && self.fsync == Fsync::Always {
            if let Ok(mut w) = self.work.try_lock() {
                if w.taken + 1 == self.sent {
                    w.take(std::iter::once(group));
                    // Outputs wait, so it syncs; and whatever else is
                    // appended goes with it, leaving no lazy sync for a
                    // disk thread that sleeps.
                    if w.pipeline.must_sync() || w.pipeline.dirty() {
                        w.sync_or_die();
                    }
                    return;
                }
            }
        }
        if self.tx.send(DiskCmd::Group(group)).is_err() {
            // The disk thread only stops after a fatal error, which exits.
            tracing::error!("disk thread is gone; outputs dropped");
        }
    }
}

pub struct DiskThread {
    pub work: Arc<Mutex<DiskWork>>,
    /// Test-only: the thread panics at this instant (to prove the process
    /// then exits instead of lingering without a disk).
    pub panic_at: Option<Instant>,
}

impl DiskThread {
    /// Runs until every sender is dropped (after a last sync).
    pub fn run(self, rx: Receiver<DiskCmd>) {
        let fsync = {
            let mut w = lock(&self.work);
            w.refresh_log_bytes();
            w.fsync
        };
        // When the pipeline last became dirty (appended, not synced).
        let mut dirty_since = Instant::now();
        let mut set = Vec::new();
        loop {
            let dirty = lock(&self.work).pipeline.dirty();
            let mut wait = match (dirty, fsync) {
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
                    let mut w = lock(&self.work);
                    // The replica task may have synced it meanwhile.
                    if w.pipeline.dirty() {
                        w.sync_or_die();
                    }
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
            // Holding the work from here: what this set takes counts before
            // the replica task can look.
            let mut w = lock(&self.work);
            while set.len() < MAX_SET {
                match rx.try_recv() {
                    Ok(cmd) => push(cmd, &mut set),
                    Err(_) => break,
                }
            }
            let was_dirty = w.pipeline.dirty();
            w.take(set.drain(..));
            if !was_dirty && w.pipeline.dirty() {
                dirty_since = Instant::now();
            }
            if w.pipeline.must_sync() {
                w.sync_or_die();
            }
            if crash {
                w.sync_or_die();
                tracing::warn!("crash requested (lose_unsynced=false): synced, exiting now");
                // SAFETY: _exit ends the process without running any Rust
                // or libc cleanup: a crash, on purpose.
                unsafe { libc::_exit(137) };
            }
        }
        // Shutdown: everything appended reaches the disk, and the sync mark
        // vouches for all of it.
        let mut w = lock(&self.work);
        w.sync_or_die();
        if let Err(e) = w.pipeline.storage_mut().mark_synced() {
            die(&e);
        }
        tracing::info!("disk thread: final sync done");
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::mpsc;

    use synod_node::durability::Held;
    use synod_node::storage::Record;
    use synod_node::Ballot;

    use super::*;

    /// The disk work over a fresh data directory, with no disk thread:
    /// what the replica task hands on either is taken at once or waits in
    /// the returned channel.
    fn setup(name: &str) -> (Arc<Mutex<DiskWork>>, Inline, Receiver<DiskCmd>) {
        setup_with(name, Fsync::Always)
    }

    fn setup_with(name: &str, fsync: Fsync) -> (Arc<Mutex<DiskWork>>, Inline, Receiver<DiskCmd>) {
        let dir = std::env::temp_dir().join(format!("synod-disk-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut storage = FileStorage::open(&dir, fsync).unwrap();
        synod_node::Storage::load(&mut storage).unwrap();
        let metrics = Arc::new(Metrics::new());
        let peers = Peers::start(1, "c", &BTreeMap::new(), "t", metrics.clone()).unwrap();
        let work = Arc::new(Mutex::new(DiskWork::new(
            Pipeline::new(storage, fsync),
            fsync,
            peers,
            metrics,
            Durable::default(),
        )));
        let (tx, rx) = mpsc::channel();
        (work.clone(), Inline::new(work, tx), rx)
    }

    /// `n` promises from `first_lsn` on, and a reply (when given) that
    /// stands on them.
    fn group(first_lsn: Lsn, n: u64, reply: Option<oneshot::Sender<RequestOutcome>>) -> Group {
        let records = (first_lsn..first_lsn + n)
            .map(|i| Record::Promise {
                ballot: Ballot::new(i + 1, 1),
            })
            .collect();
        let held = reply
            .map(|tx| Held {
                after: first_lsn + n,
                release: Release::Reply((tx, RequestOutcome::Ok { value: None })),
            })
            .into_iter()
            .collect();
        Group {
            first_lsn,
            records,
            compact: None,
            held,
        }
    }

    #[test]
    fn a_group_that_outputs_wait_for_is_synced_by_the_replica_task_when_nothing_is_ahead_of_it() {
        let (work, mut inline, rx) = setup("inline");
        let (tx, mut reply) = oneshot::channel();
        inline.hand_on(group(0, 2, Some(tx)));
        assert!(rx.try_recv().is_err(), "nothing went to the disk thread");
        let w = lock(&work);
        assert_eq!((w.pipeline.appended(), w.pipeline.durable()), (2, 2));
        assert_eq!(w.durable.get(), 2, "the durable point is published");
        assert_eq!(w.metrics.fsyncs.load(Relaxed), 1);
        assert!(reply.try_recv().is_ok(), "the reply left after the sync");
    }

    /// The order the pipeline needs: a group never overtakes one sent to
    /// the disk thread before it, even one the disk thread has received
    /// but not taken yet.
    #[test]
    fn a_group_behind_one_the_disk_thread_has_not_taken_goes_to_the_disk_thread_too() {
        let (work, mut inline, rx) = setup("order");
        // Nothing waits for the first, so it goes to the disk thread.
        inline.hand_on(group(0, 1, None));
        let (tx, mut reply) = oneshot::channel();
        inline.hand_on(group(1, 1, Some(tx)));
        assert_eq!(
            lock(&work).pipeline.appended(),
            0,
            "nothing taken out of order"
        );
        // The disk thread receives the first, then the second: in order.
        let mut set = Vec::new();
        while let Ok(DiskCmd::Group(g)) = rx.try_recv() {
            set.push(g);
        }
        assert_eq!(set.iter().map(|g| g.first_lsn).collect::<Vec<_>>(), [0, 1]);
        let mut w = lock(&work);
        w.take(set.into_iter());
        w.sync_or_die();
        assert!(reply.try_recv().is_ok());
        drop(w);
        // All taken: the next one may be synced here again.
        let (tx, mut reply) = oneshot::channel();
        inline.hand_on(group(2, 1, Some(tx)));
        assert!(rx.try_recv().is_err());
        assert!(reply.try_recv().is_ok());
    }

    /// While the disk thread holds the work (taking or syncing), the
    /// replica task does not wait for it: the group goes to the queue.
    #[test]
    fn a_busy_disk_thread_gets_the_group_instead() {
        let (work, mut inline, rx) = setup("busy");
        let held = lock(&work);
        let (tx, _reply) = oneshot::channel();
        inline.hand_on(group(0, 1, Some(tx)));
        drop(held);
        assert!(matches!(rx.try_recv(), Ok(DiskCmd::Group(_))));
        assert_eq!(lock(&work).pipeline.appended(), 0);
    }

    /// `--fsync never` keeps records in the process for `WRITEBACK`: only
    /// the disk thread does that, so every group goes to it.
    #[test]
    fn with_fsync_never_every_group_goes_to_the_disk_thread() {
        let (work, mut inline, rx) = setup_with("never", Fsync::Never);
        let (tx, _reply) = oneshot::channel();
        inline.hand_on(group(0, 1, Some(tx)));
        assert!(matches!(rx.try_recv(), Ok(DiskCmd::Group(_))));
        assert_eq!(lock(&work).pipeline.appended(), 0);
    }
}
