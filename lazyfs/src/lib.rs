//! synod-lazyfs: a passthrough FUSE filesystem that forgets what was not
//! synced, so any process (a Synod node, etcd, anything else) can lose
//! power on one machine, without VMs and without its cooperation.
//!
//! It plays the part Jepsen's LazyFS plays: every operation a process does
//! is visible at once, as on a real machine with a page cache, but only
//! what was made durable survives [`Mount::power_loss`]. The nemesis' power
//! loss is: SIGKILL the process, `power_loss()`, start the process again on
//! what was durable.
//!
//! # The model
//!
//! A mount keeps two trees under its state directory:
//!
//! - `cache/`, what processes see: every write, truncate, create, rename
//!   and unlink lands here at once (the page cache and dentry cache of a
//!   real machine). Nothing reads it after a power loss.
//! - `disk/`, what is durable: written only when a process syncs.
//!
//! - **Data** becomes durable per file: `fsync` or `fdatasync` of a file
//!   copies the byte ranges written since its last sync (and any
//!   truncation) to its durable copy. Unsynced writes of other files stay
//!   volatile.
//! - **Names** (create, mkdir, symlink, rename, unlink, rmdir) become
//!   durable with a sync, as on a journaling filesystem. With
//!   [`Metadata::Ordered`] (the default, ext4's `data=ordered` journal)
//!   any fsync, of a file or a directory, commits every name change made
//!   before it; with [`Metadata::Strict`] (what POSIX promises and no more)
//!   only an fsync of the directory commits that directory's entries. A
//!   created file whose name became durable but whose data was never
//!   synced comes back empty; a rename that no sync followed is undone.
//! - **Power loss** throws `cache/` away and copies `disk/` back into it;
//!   every inode and file handle from before is stale (`ESTALE`), so
//!   writes a dead process left in the kernel's page cache cannot leak
//!   into the new state.
//! - **Lying fsync** ([`Fsync::Lie`]) acknowledges every sync without
//!   making anything durable: a disk with a volatile write cache that a
//!   power loss empties. No correct database survives that.
//!
//! Covered: read, write and pwrite, truncate and ftruncate, fallocate,
//! create, mknod of regular files, mkdir, symlink, rename (with
//! `RENAME_NOREPLACE`), unlink, rmdir, fsync, fdatasync and fsync of
//! directories, and mmap: a shared mapping's dirty pages reach the
//! filesystem as writes when the kernel writes them back (at `msync` or
//! `fsync`), so they are synced like any other write. Not modelled: hard
//! links (`link` fails with `EPERM`), extended attributes (`ENOTSUP`),
//! `RENAME_EXCHANGE` (`EINVAL`), and the durability of timestamps and
//! ownership (they are whatever the cache had; modes are synced with the
//! file). Torn writes are not injected: a write is durable whole or not
//! at all.
//!
//! # Layout
//!
//! - [`volume`]: the model: inodes, their visible and durable places,
//!   dirty ranges, syncs, power loss. Plain file operations on the two
//!   trees; it knows nothing of FUSE.
//! - [`fuse`]: the FUSE adapter (the `fuser` crate, mounted through the
//!   kernel directly as root, or `fusermount3`; no libfuse headers).
//! - [`Mount`] here: mount, power loss, unmount.

pub mod fuse;
pub mod volume;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use volume::{Dropped, Fsync, Metadata};

/// Why a mount or a power loss failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel has no FUSE device (or we may not open it).
    #[error(
        "FUSE is not available: {reason}. The lose-unsynced-writes filesystem needs /dev/fuse \
         (`modprobe fuse`; in a container, `--device /dev/fuse --cap-add SYS_ADMIN`) and, \
         unless running as root, fusermount3 (`apt-get install fuse3`)"
    )]
    Unavailable { reason: String },
    /// A file operation on the state directory failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Checks that this machine can mount a FUSE filesystem: `/dev/fuse`
/// exists and opens, and either we are root or `fusermount3` is on `PATH`.
pub fn available() -> Result<(), Error> {
    available_at(Path::new("/dev/fuse"))
}

fn available_at(dev: &Path) -> Result<(), Error> {
    if !dev.exists() {
        return Err(Error::Unavailable {
            reason: format!("{} does not exist", dev.display()),
        });
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        return Err(Error::Unavailable {
            reason: format!("cannot open {}: {e}", dev.display()),
        });
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && !on_path("fusermount3") {
        return Err(Error::Unavailable {
            reason: "not root, and no fusermount3 on PATH".into(),
        });
    }
    Ok(())
}

/// Whether `bin` is a file in a directory of `PATH`.
pub(crate) fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// How to mount.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where processes see the filesystem (an empty directory, created if
    /// missing).
    pub mountpoint: PathBuf,
    /// Holds `disk/` (durable), `cache/` (visible) and `orphans/`
    /// (durable data of files whose name is not durable yet). An existing
    /// `disk/` is the starting state.
    pub state: PathBuf,
    /// Honest syncs, or a lying disk.
    pub fsync: Fsync,
    /// When names become durable.
    pub metadata: Metadata,
}

/// A mounted filesystem. Dropping it unmounts.
pub struct Mount {
    mountpoint: PathBuf,
    volume: Arc<Mutex<volume::Volume>>,
    session: Option<::fuser::BackgroundSession>,
}

impl Mount {
    /// Mounts `config.state`'s durable tree at `config.mountpoint`.
    pub fn new(config: &Config) -> Result<Mount, Error> {
        available()?;
        std::fs::create_dir_all(&config.mountpoint).map_err(|e| {
            Error::io(
                format!(
                    "cannot create the mountpoint {}",
                    config.mountpoint.display()
                ),
                e,
            )
        })?;
        let volume = volume::Volume::open(&config.state, config.fsync, config.metadata)?;
        let volume = Arc::new(Mutex::new(volume));
        let session = fuse::mount(volume.clone(), &config.mountpoint)?;
        Ok(Mount {
            mountpoint: config.mountpoint.clone(),
            volume,
            session: Some(session),
        })
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Drops every change not made durable and goes back to what was:
    /// call it once every process using the mount has been killed. Returns
    /// what was thrown away.
    pub fn power_loss(&self) -> Result<Dropped, Error> {
        lock(&self.volume).power_loss()
    }

    /// What a power loss now would throw away.
    pub fn unsynced(&self) -> Dropped {
        lock(&self.volume).unsynced()
    }

    /// Unmounts (the state directory stays, `disk/` holding what was
    /// durable).
    pub fn unmount(mut self) -> Result<(), Error> {
        self.unmount_now()
    }

    fn unmount_now(&mut self) -> Result<(), Error> {
        match self.session.take() {
            Some(s) => s
                .umount_and_join()
                .map_err(|e| Error::io(format!("cannot unmount {}", self.mountpoint.display()), e)),
            None => Ok(()),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_now() {
            tracing::warn!(error = %e, "unmounting the lazy filesystem");
        }
    }
}

/// Locks the volume, recovering it if a panicking FUSE thread poisoned the
/// lock (a power loss rebuilds it anyway).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_fuse_device_is_refused_with_what_to_do() {
        let e = available_at(Path::new("/nonexistent/fuse")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/fuse does not exist"), "{msg}");
        assert!(msg.contains("modprobe fuse"), "{msg}");
        assert!(msg.contains("--device /dev/fuse"), "{msg}");
    }
}
