//! Durable acceptor state: what the core asks to persist, and the
//! [`Storage`] trait the shell (real files) and the simulation (an
//! in-memory disk that models power loss) implement.
//!
//! The log is append-only: [`Record::Promise`], [`Record::Accept`] and
//! [`Record::Chosen`]. Recovery replays it on top of the latest
//! [`Snapshot`]; later records win, and the promise is the maximum seen,
//! so replay is order-tolerant and idempotent.

pub mod codec;
pub mod file;
pub mod mem;

use std::io;

use serde::{Deserialize, Serialize};

use crate::kv::Kv;
use crate::types::{Ballot, Entry, Slot};

pub use file::FileStorage;
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
}

impl Record {
    /// The slot a record is about, if any.
    pub fn slot(&self) -> Option<Slot> {
        match self {
            Record::Promise { .. } => None,
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
#[derive(Clone, Debug, PartialEq)]
pub struct Compaction {
    pub snapshot: Snapshot,
    pub retained: Vec<Record>,
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
}

/// Durable storage of one node.
///
/// The shell's contract (see `replica`): append the records of a batch of
/// outputs, `sync` once (group commit), and only then release the
/// messages and replies of that batch.
pub trait Storage {
    /// Reads back the snapshot and the log (truncating a torn tail).
    fn load(&mut self) -> Result<Recovered, StorageError>;
    /// Appends records; they may sit in a buffer until `sync`.
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError>;
    /// Makes everything appended durable (a no-op with `fsync=never`).
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Writes a snapshot and replaces the log, atomically.
    fn compact(&mut self, compaction: &Compaction) -> Result<(), StorageError>;
}
