//! The simulation's disk: records in memory at the three levels of
//! [`Storage`], so a crash can drop exactly what it would lose.
//!
//! `append` keeps records in the process (a kill loses them), `flush`
//! hands them to the "operating system" (a kill keeps them, a power loss
//! does not), `sync` makes them durable. With `fsync=never` nothing is
//! ever synced but compactions (those fsync regardless, as the file
//! storage's atomic rename does).

use super::{Compaction, Record, Recovered, Snapshot, Storage, StorageError};
use crate::config::Fsync;

/// An in-memory disk that models process kills and power loss.
#[derive(Clone, Debug)]
pub struct MemStorage {
    fsync: Fsync,
    records: Vec<Record>,
    /// `records[..written]` survive a kill of the process.
    written: usize,
    /// `records[..synced]` survive a power loss.
    synced: usize,
    snapshot: Option<Snapshot>,
    /// Appends count, for tests and the benchmark.
    pub appended: u64,
    /// Syncs that made something durable.
    pub syncs: u64,
}

impl MemStorage {
    pub fn new(fsync: Fsync) -> Self {
        MemStorage {
            fsync,
            records: Vec::new(),
            written: 0,
            synced: 0,
            snapshot: None,
            appended: 0,
            syncs: 0,
        }
    }

    /// The process was killed: what it had not flushed is gone.
    pub fn kill(&mut self) {
        self.records.truncate(self.written);
    }

    /// Power loss: everything not yet synced is gone.
    pub fn power_loss(&mut self) {
        self.records.truncate(self.synced);
        self.written = self.synced;
    }

    /// Records on the disk now, at any level.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records that survive a power loss.
    pub fn synced_len(&self) -> usize {
        self.synced
    }
}

impl Storage for MemStorage {
    fn load(&mut self) -> Result<Recovered, StorageError> {
        Ok(Recovered {
            snapshot: self.snapshot.clone(),
            records: self.records.clone(),
        })
    }

    fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        self.appended += records.len() as u64;
        self.records.extend_from_slice(records);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        self.written = self.records.len();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        if self.fsync == Fsync::Always && self.synced < self.records.len() {
            self.synced = self.records.len();
            self.syncs += 1;
        }
        Ok(())
    }

    fn compact(&mut self, c: &Compaction) -> Result<(), StorageError> {
        // Whatever was appended before is superseded by `retained`.
        self.snapshot = Some(c.snapshot.clone());
        self.records = c.retained.clone();
        self.written = self.records.len();
        self.synced = self.records.len();
        Ok(())
    }
}
