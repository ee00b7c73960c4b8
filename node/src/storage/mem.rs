//! The simulation's disk: records in memory, with a watermark of what was
//! synced, so a power loss can drop exactly the unsynced suffix.
//!
//! A process crash keeps everything written (the page cache survives); a
//! power loss keeps only what `sync` made durable, which with
//! `fsync=never` is nothing but compactions (those fsync regardless, as the
//! file storage's atomic rename does).

use super::{Compaction, Record, Recovered, Snapshot, Storage, StorageError};
use crate::config::Fsync;

/// An in-memory disk that models power loss.
#[derive(Clone, Debug)]
pub struct MemStorage {
    fsync: Fsync,
    records: Vec<Record>,
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
            synced: 0,
            snapshot: None,
            appended: 0,
            syncs: 0,
        }
    }

    /// Power loss: everything not yet synced is gone.
    pub fn power_loss(&mut self) {
        self.records.truncate(self.synced);
    }

    /// Records on the disk now (synced or not).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
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

    fn sync(&mut self) -> Result<(), StorageError> {
        if self.fsync == Fsync::Always && self.synced < self.records.len() {
            self.synced = self.records.len();
            self.syncs += 1;
        }
        Ok(())
    }

    fn compact(&mut self, c: &Compaction) -> Result<(), StorageError> {
        self.snapshot = Some(c.snapshot.clone());
        self.records = c.retained.clone();
        self.synced = self.records.len();
        Ok(())
    }
}
