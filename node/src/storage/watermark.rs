//! How much of the log was durable, so a log cut back into records that
//! were synced is told apart from a torn last write.
//!
//! A crash tears at most the write in flight; every byte before the last
//! fdatasync is on the disk. So the file storage notes, now and then, the
//! log's length after a sync in `SYNCED` (with the log file's inode, since
//! a compaction replaces the file), and recovery refuses a log shorter than
//! that: it lost records a released message or reply may have stood on.
//!
//! The mark is written at most every [`EVERY`] (one small fdatasync), so a
//! cut into the last moments of synced writes can go unnoticed; a cut
//! further back cannot. With `--fsync never` nothing is durable and no mark
//! is kept.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::StorageError;

/// The file's name in the data directory.
pub const FILE: &str = "SYNCED";

/// How often the mark is brought up to date.
pub const EVERY: Duration = Duration::from_millis(100);

/// What the mark says: the log file (by inode) was at least `bytes` long
/// and durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub inode: u64,
    pub bytes: u64,
}

const LEN: usize = 20;

impl Mark {
    fn encode(self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..8].copy_from_slice(&self.inode.to_le_bytes());
        b[8..16].copy_from_slice(&self.bytes.to_le_bytes());
        let crc = crc32fast::hash(&b[0..16]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Mark> {
        if b.len() != LEN {
            return None;
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let crc = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
        (crc32fast::hash(&b[0..16]) == crc).then(|| Mark {
            inode: word(0),
            bytes: word(8),
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The inode of a file.
pub fn inode(file: &File, path: &Path) -> Result<u64, StorageError> {
    Ok(file.metadata().map_err(io_err(path))?.ino())
}

/// Reads the mark of `dir`, if there is a readable one (a damaged mark is
/// ignored with a warning: it only ever makes recovery stricter).
pub fn read(dir: &Path) -> Result<Option<Mark>, StorageError> {
    let path = dir.join(FILE);
    let mut buf = Vec::new();
    match File::open(&path) {
        Ok(mut f) => {
            f.read_to_end(&mut buf).map_err(io_err(&path))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    }
    let mark = Mark::decode(&buf);
    if mark.is_none() {
        tracing::warn!(file = %path.display(), "unreadable sync mark: ignored");
    }
    Ok(mark)
}

/// Removes the mark (`--fsync never`: nothing is durable to vouch for).
pub fn remove(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Keeps the mark of one data directory up to date.
pub struct Marker {
    path: PathBuf,
    file: Option<File>,
    last: Option<(Mark, Instant)>,
}

impl Marker {
    pub fn new(dir: &Path) -> Self {
        Marker {
            path: dir.join(FILE),
            file: None,
            last: None,
        }
    }

    /// Notes that the log is durable up to `mark`: writes it if the log
    /// file changed or [`EVERY`] has passed since the last write.
    pub fn note(&mut self, mark: Mark, force: bool) -> Result<(), StorageError> {
        let due = match self.last {
            None => true,
            Some((m, at)) => m.inode != mark.inode || (m != mark && at.elapsed() >= EVERY),
        };
        if !(due || force) {
            return Ok(());
        }
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&self.path)
                .map_err(io_err(&self.path))?;
            self.file = Some(f);
        }
        let f = self.file.as_ref().expect("opened just above");
        f.write_all_at(&mark.encode(), 0)
            .and_then(|()| f.set_len(LEN as u64))
            .and_then(|()| f.sync_data())
            .map_err(io_err(&self.path))?;
        self.last = Some((mark, Instant::now()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_and_a_damaged_one_reads_as_none() {
        let m = Mark {
            inode: 42,
            bytes: 1 << 33,
        };
        let mut b = m.encode();
        assert_eq!(Mark::decode(&b), Some(m));
        b[3] ^= 1;
        assert_eq!(Mark::decode(&b), None);
        assert_eq!(Mark::decode(&b[..10]), None);
    }
}
