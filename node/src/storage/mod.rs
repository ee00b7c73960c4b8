//! Durable acceptor state: what the core asks to persist, and the
//! [`Storage`] trait the shell (real files) and the simulation (an
//! in-memory disk that models power loss) implement.
//!
//! The log is append-only: [`Record::Promise`], [`Record::Accept`] and
//! [`Record::Chosen`], plus the two marks of a node that rejoins after
//! losing its disk ([`Record::Rejoin`], [`Record::Rejoined`]). Recovery
//! replays it on top of the latest [`Snapshot`]; later records win, and
//! the promise is the maximum seen, so replay is order-tolerant and
//! idempotent.

pub mod codec;
pub mod file;
pub mod identity;
pub mod mem;
pub mod watermark;

use std::io;

use serde::{Deserialize, Serialize};

use crate::durability::Lsn;
use crate::kv::Kv;
use crate::types::{Ballot, Command, Entry, Slot, TxnId};

pub use file::FileStorage;
pub use identity::Identity;
pub use mem::MemStorage;

/// One durable fact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "lowercase")]
pub enum Record {
    /// The acceptor promised not to accept below `ballot` (and, as a
    /// proposer, will never propose at or below its round again).
    Promise { ballot: Ballot },
    /// The acceptor accepted `entry` in `slot` at `ballot`.
    Accept {
        slot: Slot,
        ballot: Ballot,
        entry: Entry,
    },
    /// `entry` is chosen in `slot`.
    Chosen { slot: Slot, entry: Entry },
    /// This node lost its durable state and rejoins (`--rejoin`): it
    /// promises and accepts nothing, and refuses every ballot up to
    /// `floor`, until a leader elected above the floor has re-chosen every
    /// slot its lost votes could have counted in (see the replica's
    /// "Rejoining" section).
    Rejoin { floor: Ballot },
    /// The rejoin is over: this node is an acceptor again.
    Rejoined,
    /// Two-phase commit: the first record of every incarnation (its sync
    /// makes what recovery read durable); on the coordinator, this
    /// incarnation's transactions are numbered in `epoch` (above every
    /// earlier incarnation's).
    TpcEpoch { epoch: u64 },
    /// Two-phase commit, coordinator: the decision to commit `txn`, which
    /// applies `command` (presumed abort: aborts are not recorded).
    TpcCommit { txn: TxnId, command: Command },
    /// Two-phase commit, participant: it voted yes on `txn` and holds the
    /// command's key until it learns the outcome.
    TpcVote { txn: TxnId, command: Command },
    /// Two-phase commit, participant: the outcome of a transaction it
    /// voted yes on (it applied the command if `commit`).
    TpcDecided { txn: TxnId, commit: bool },
}

impl Record {
    /// The slot a record is about, if any.
    pub fn slot(&self) -> Option<Slot> {
        match self {
            Record::Promise { .. }
            | Record::Rejoin { .. }
            | Record::Rejoined
            | Record::TpcEpoch { .. }
            | Record::TpcCommit { .. }
            | Record::TpcVote { .. }
            | Record::TpcDecided { .. } => None,
            Record::Accept { slot, .. } | Record::Chosen { slot, .. } => Some(*slot),
        }
    }
}

/// The state machine as of a slot: everything below `state.applied` is in
/// it, so the log before that slot can be dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub state: Kv,
}

impl Snapshot {
    /// The first slot not contained in the snapshot.
    pub fn next_slot(&self) -> Slot {
        self.state.applied
    }
}

/// A request to write a snapshot and replace the log by `retained`
/// (everything the node still needs: its promise and the records of slots
/// from the snapshot on). Done atomically: a crash leaves either the old
/// snapshot and log or the new ones, or the new snapshot with the old log,
/// which recovery handles by skipping records the snapshot covers.
///
/// The compaction is the node's state after every record below `at`:
/// records from `at` on must be appended after it (see
/// [`crate::durability`]), and writing it makes every record below `at`
/// durable.
#[derive(Clone, Debug, PartialEq)]
pub struct Compaction {
    pub snapshot: Snapshot,
    pub retained: Vec<Record>,
    pub at: Lsn,
}

/// What recovery found on disk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovered {
    pub snapshot: Option<Snapshot>,
    pub records: Vec<Record>,
}

/// Why storage failed. A node must not run on top of a failed storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A damaged record before the tail: the node refuses to start.
    #[error("{file}: damaged record at byte offset {offset}: {reason}; refusing to start (the log is corrupt, not merely torn)")]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("{path}: data directory is locked by another process")]
    Locked { path: String },
    /// The log is shorter than it was when last known durable: records
    /// that were synced (and maybe answered for) are gone.
    #[error("{file}: the log is {length} bytes long, but {durable} bytes of it were durable: synced records are gone (the file was cut back, not torn by a crash); refusing to start. Restore the data directory from a backup, or move it aside and start this node with --rejoin")]
    Truncated {
        file: String,
        length: u64,
        durable: u64,
    },
}

/// Durable storage of one node, in three levels: appended (in this
/// process), flushed (in the operating system: survives a kill) and synced
/// (on the disk: survives a power loss).
///
/// [`crate::durability::Pipeline`] drives it: it appends the records of a
/// set of groups, syncs once (group commit), and only then releases the
/// messages and replies that stand on them.
pub trait Storage {
    /// Reads back the snapshot and the log (truncating a torn tail).
    fn load(&mut self) -> Result<Recovered, StorageError>;
    /// Appends records; they sit in this process until `flush` or `sync`.
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError>;
    /// Hands everything appended to the operating system (no fsync).
    fn flush(&mut self) -> Result<(), StorageError>;
    /// Flushes and makes everything durable (with `fsync=never`: flushes
    /// only).
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Writes a snapshot and replaces the log, atomically.
    fn compact(&mut self, compaction: &Compaction) -> Result<(), StorageError>;
}
