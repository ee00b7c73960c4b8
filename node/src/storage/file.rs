//! The real disk: `log` (frames written one after another) and `snapshot`
//! in a data directory, locked with `flock` so a second process refuses
//! to start.
//!
//! Group commit is the caller's: many `append`s, then one `sync`
//! (`fdatasync`, skipped with `fsync=never`).
//!
//! The log file is preallocated: it grows by [`PREALLOCATE`] bytes of
//! zeros at a time, and frames overwrite those zeros. An fdatasync after a
//! write that does not change the file's size has no inode to write (on
//! ext4, one device write of three; measured in `docs/api.md`, "Data
//! directory"). Its logical end is where the zero tail starts: a frame
//! never ends in a zero byte (its payload is JSON) and never begins with
//! twelve (its header has a checksum), so the last non-zero byte ends the
//! last frame, or a torn write. A torn write over zeros may also have
//! lost a sector in its middle; the codec tells that hole from damage
//! ([`codec`]). Snapshots and compacted logs
//! are written to a temporary file, fsynced, renamed over the old one, and
//! the directory fsynced, so a crash leaves the old or the new file whole.
//! A sync mark ([`super::watermark`]) lets recovery tell a torn last write
//! from a log cut back into synced records; `IDENTITY`
//! ([`super::identity`]) says whose directory this is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::codec::{self, Frame};
use super::watermark::{self, Marker};
use super::{Compaction, Record, Recovered, Snapshot, Storage, StorageError};
use crate::config::Fsync;

/// File-backed storage of one node.
pub struct FileStorage {
    dir: PathBuf,
    fsync: Fsync,
    /// Open for appending once `load` has checked (and maybe truncated) it.
    log: Option<File>,
    /// Frames encoded since the last write, so one `sync` writes them all
    /// with a single syscall.
    pending: Vec<u8>,
    /// The log file's inode and the bytes of frames written to it (its
    /// logical end): what the sync mark vouches for after a sync.
    log_inode: u64,
    log_len: u64,
    /// The log file's size: `log_len` and the zeros after it.
    log_alloc: u64,
    /// Keeps the sync mark (none with `fsync=never`).
    marker: Option<Marker>,
    /// Held for the life of the storage: the `flock` on `LOCK`.
    _lock: File,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl FileStorage {
    /// Opens (creating) the data directory and locks it.
    pub fn open(dir: impl Into<PathBuf>, fsync: Fsync) -> Result<Self, StorageError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        // SAFETY: flock on a file descriptor we own; no memory is touched.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(StorageError::Locked {
                path: dir.display().to_string(),
            });
        }
        let marker = match fsync {
            Fsync::Always => Some(Marker::new(&dir)),
            Fsync::Never => {
                watermark::remove(&dir)?;
                None
            }
        };
        Ok(FileStorage {
            dir,
            fsync,
            log: None,
            pending: Vec::new(),
            log_inode: 0,
            log_len: 0,
            log_alloc: 0,
            marker,
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory holds no log records and no snapshot.
    pub fn is_empty(&self) -> Result<bool, StorageError> {
        let snap = self.snapshot_path();
        match fs::metadata(&snap) {
            Ok(m) if m.len() > 0 => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&snap)(e)),
        }
        // A log of nothing but preallocated zeros holds no records.
        let log = self.log_path();
        match File::open(&log) {
            Ok(f) => Ok(logical_len(&f).map_err(io_err(&log))? == 0),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(io_err(&log)(e)),
        }
    }

    /// Bytes of frames in the log (its logical end; the file is longer by
    /// the preallocated zeros).
    pub fn log_len(&self) -> u64 {
        self.log_len
    }

    /// Moves a damaged log and snapshot aside (`log.damaged-<unix time>`),
    /// for a node that rejoins without them.
    pub fn set_aside(&mut self) -> Result<Vec<PathBuf>, StorageError> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut moved = Vec::new();
        self.log = None;
        for path in [
            self.log_path(),
            self.snapshot_path(),
            self.dir.join(watermark::FILE),
        ] {
            if path.exists() {
                let to = path.with_extension(format!("damaged-{stamp}"));
                fs::rename(&path, &to).map_err(io_err(&to))?;
                moved.push(to);
            }
        }
        self.sync_dir()?;
        Ok(moved)
    }

    /// Brings the sync mark up to date now (a clean shutdown).
    pub fn mark_synced(&mut self) -> Result<(), StorageError> {
        self.note_synced(true)
    }

    fn note_synced(&mut self, force: bool) -> Result<(), StorageError> {
        let mark = watermark::Mark {
            inode: self.log_inode,
            bytes: self.log_len,
        };
        match &mut self.marker {
            Some(m) if self.log_inode != 0 => m.note(mark, force),
            _ => Ok(()),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    pub fn snapshot_path(&self) -> PathBuf {
        self.dir.join("snapshot")
    }

    fn open_log(&mut self) -> Result<&mut File, StorageError> {
        if self.log.is_none() {
            let path = self.log_path();
            let existed = path.exists();
            let f = retry_out_of_descriptors(|| {
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&path)
            })
            .map_err(io_err(&path))?;
            // A new file's name is durable once its directory is synced:
            // ext4's journal does that with the first fdatasync, a
            // filesystem that keeps only what POSIX promises does not, and
            // would lose the whole log at the first power loss.
            if !existed && self.fsync == Fsync::Always {
                self.sync_dir()?;
            }
            self.log_inode = watermark::inode(&f, &path)?;
            self.log_alloc = f.metadata().map_err(io_err(&path))?.len();
            self.log_len = logical_len(&f).map_err(io_err(&path))?;
            self.log = Some(f);
        }
        Ok(self.log.as_mut().expect("opened just above"))
    }

    fn sync_dir(&self) -> Result<(), StorageError> {
        let d = retry_out_of_descriptors(|| File::open(&self.dir)).map_err(io_err(&self.dir))?;
        d.sync_all().map_err(io_err(&self.dir))
    }

    /// Writes `bytes` to `name` atomically: temp file, fsync, rename, fsync
    /// of the directory.
    fn replace_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let dst = self.dir.join(name);
        let mut f = retry_out_of_descriptors(|| File::create(&tmp)).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        self.sync_dir()
    }
}

/// Opens a file, waiting out a shortage of descriptors (EMFILE, ENFILE):
/// a burst of connections must not turn a snapshot into a fatal storage
/// error. Backs off from 1 ms to 256 ms, about 10 s in all, then gives up
/// with the last error.
fn retry_out_of_descriptors(mut open: impl FnMut() -> io::Result<File>) -> io::Result<File> {
    let mut wait = std::time::Duration::from_millis(1);
    let mut waited = std::time::Duration::ZERO;
    loop {
        match open() {
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                    && waited < std::time::Duration::from_secs(10) =>
            {
                if waited.is_zero() {
                    tracing::warn!(error = %e, "out of file descriptors; retrying with backoff");
                }
                std::thread::sleep(wait);
                waited += wait;
                wait = (wait * 2).min(std::time::Duration::from_millis(256));
            }
            r => return r,
        }
    }
}

/// How much the log file grows by at a time, in zeros that frames then
/// overwrite.
pub const PREALLOCATE: u64 = 1 << 20;

/// Where a log file's frames end: after its last non-zero byte.
fn logical_len(f: &File) -> io::Result<u64> {
    let mut end = f.metadata()?.len();
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let n = (chunk.len() as u64).min(end);
        let buf = &mut chunk[..n as usize];
        f.read_exact_at(buf, end - n)?;
        if let Some(i) = buf.iter().rposition(|&b| b != 0) {
            return Ok(end - n + i as u64 + 1);
        }
        end -= n;
    }
    Ok(0)
}

/// Reads a whole file, `None` if it does not exist.
fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match File::open(path) {
        Ok(mut f) => {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map_err(io_err(path))?;
            Ok(Some(buf))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Parses a log image: the good records and the length of the good prefix.
/// A torn tail ends the prefix; a damaged frame is an error at its offset.
pub fn parse_log(buf: &[u8], file: &str) -> Result<(Vec<Record>, usize), StorageError> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match codec::decode::<Record>(buf, at) {
            Frame::Good(r, next) => {
                records.push(r);
                at = next;
            }
            Frame::Torn => break,
            Frame::Damaged(reason) => {
                return Err(StorageError::Corrupt {
                    file: file.to_string(),
                    offset: at as u64,
                    reason,
                })
            }
        }
    }
    Ok((records, at))
}

impl Storage for FileStorage {
    fn load(&mut self) -> Result<Recovered, StorageError> {
        let snap_path = self.snapshot_path();
        let snapshot = match read_opt(&snap_path)? {
            None => None,
            Some(buf) => match codec::decode::<Snapshot>(&buf, 0) {
                Frame::Good(s, end) if end == buf.len() => Some(s),
                Frame::Good(..) => {
                    return Err(StorageError::Corrupt {
                        file: snap_path.display().to_string(),
                        offset: 0,
                        reason: "trailing bytes after the snapshot".into(),
                    })
                }
                // Snapshots are renamed into place whole: torn is damaged.
                Frame::Torn => {
                    return Err(StorageError::Corrupt {
                        file: snap_path.display().to_string(),
                        offset: 0,
                        reason: "snapshot is incomplete (shorter than its header says, or \
                                 with a hole of zeros)"
                            .into(),
                    })
                }
                Frame::Damaged(reason) => {
                    return Err(StorageError::Corrupt {
                        file: snap_path.display().to_string(),
                        offset: 0,
                        reason,
                    })
                }
            },
        };
        let log_path = self.log_path();
        let (buf, inode) = match File::open(&log_path) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).map_err(io_err(&log_path))?;
                (buf, Some(watermark::inode(&f, &log_path)?))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), None),
            Err(e) => return Err(io_err(&log_path)(e)),
        };
        // Past the last non-zero byte: preallocated zeros, not frames.
        let end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let (records, good) = parse_log(&buf[..end], &log_path.display().to_string())?;
        if self.fsync == Fsync::Always {
            if let Some(mark) = watermark::read(&self.dir)? {
                if Some(mark.inode) == inode && (good as u64) < mark.bytes {
                    return Err(StorageError::Truncated {
                        file: log_path.display().to_string(),
                        length: good as u64,
                        durable: mark.bytes,
                    });
                }
            }
        }
        if good < end {
            tracing::warn!(
                file = %log_path.display(),
                offset = good,
                dropped_bytes = end - good,
                "torn tail in the log (a crash mid-write): truncating it"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(&log_path)
                .map_err(io_err(&log_path))?;
            f.set_len(good as u64).map_err(io_err(&log_path))?;
            f.sync_all().map_err(io_err(&log_path))?;
        }
        self.log = None;
        self.open_log()?;
        Ok(Recovered { snapshot, records })
    }

    fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        for r in records {
            codec::encode(r, &mut self.pending);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // Taken and given back, so the buffer keeps its capacity.
        let mut pending = std::mem::take(&mut self.pending);
        // Opened first: opening reads where the frames end.
        self.open_log()?;
        let (at, alloc) = (self.log_len, self.log_alloc);
        let end = at + pending.len() as u64;
        let log = self.open_log()?;
        let mut written = log.write_all_at(&pending, at);
        // Past the zeros: a new stretch of them, synced with these frames
        // (the one sync in `PREALLOCATE` bytes that writes the inode).
        let grown = end.div_ceil(PREALLOCATE) * PREALLOCATE;
        if written.is_ok() && end > alloc {
            written = log.write_all_at(&vec![0; (grown - end) as usize], end);
        }
        written.map_err(io_err(&self.log_path()))?;
        self.log_len = end;
        self.log_alloc = self.log_alloc.max(grown);
        pending.clear();
        self.pending = pending;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        if self.fsync == Fsync::Always {
            let path = self.log_path();
            self.open_log()?.sync_data().map_err(io_err(&path))?;
            self.note_synced(false)?;
        }
        Ok(())
    }

    fn compact(&mut self, c: &Compaction) -> Result<(), StorageError> {
        // Whatever was appended is superseded by `retained`.
        self.pending.clear();
        let mut snap = Vec::new();
        codec::encode(&c.snapshot, &mut snap);
        self.replace_atomically("snapshot", &snap)?;
        let mut log = Vec::new();
        for r in &c.retained {
            codec::encode(r, &mut log);
        }
        self.log = None;
        self.replace_atomically("log", &log)?;
        self.open_log()?;
        // The new log (a new inode) is durable whole.
        self.note_synced(true)
    }
}
