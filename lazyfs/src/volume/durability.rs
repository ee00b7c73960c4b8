//! What a sync makes durable: a file's dirty ranges copied to its durable
//! copy, and the two-pass metadata commit that makes `disk/`'s entries
//! match the visible ones (see the parent module's doc).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

use super::{err, same_owner, Dirty, Fsync, Handle, Kind, Loc, Metadata, Volume};

impl Volume {
    /// `fsync`/`fdatasync` of a file: its data durable, and with ordered
    /// metadata every name change so far.
    pub fn fsync_file(&mut self, ino: u64, fh: Option<u64>) -> io::Result<()> {
        if self.fsync == Fsync::Lie {
            return Ok(());
        }
        if self.metadata == Metadata::Ordered {
            self.commit(None)?;
        }
        if self.inode(ino)?.kind == Kind::File {
            self.sync_data(ino, fh)?;
        }
        Ok(())
    }

    /// `fsync` of a directory: its entries durable (all of them with
    /// ordered metadata).
    pub fn fsync_dir(&mut self, ino: u64) -> io::Result<()> {
        if self.fsync == Fsync::Lie {
            return Ok(());
        }
        match self.metadata {
            Metadata::Ordered => self.commit(None),
            Metadata::Strict => self.commit(Some(ino)),
        }
    }

    /// Copies a file's unsynced data to its durable copy.
    fn sync_data(&mut self, ino: u64, fh: Option<u64>) -> io::Result<()> {
        if self.inode(ino)?.durable.is_none() {
            File::create(self.orphans.join(ino.to_string()))?;
            let i = self.inode_mut(ino)?;
            i.durable = Some(Loc::Orphan);
            i.dirty.all = true;
        }
        if self.inode(ino)?.dirty.is_clean() {
            return Ok(());
        }
        let dst_path = self.disk_path(ino)?.ok_or_else(|| err(libc::EIO))?;
        // Read through a descriptor of our own: the handle may be
        // write-only, and an unlinked file has no path but its handle's.
        let src = match (self.path(ino), fh.and_then(|fh| self.file(fh).ok())) {
            (Ok(p), _) => File::open(p)?,
            (Err(_), Some((_, f))) => {
                use std::os::unix::io::AsRawFd;
                File::open(format!("/proc/self/fd/{}", f.as_raw_fd()))?
            }
            (Err(e), None) => return Err(e),
        };
        let meta = src.metadata()?;
        let size = meta.len();
        let dst = OpenOptions::new().write(true).open(&dst_path)?;
        let dirty = self.inode(ino)?.dirty.clone();
        let ranges = if dirty.all {
            dst.set_len(0)?;
            vec![(0, size)]
        } else {
            if let Some(m) = dirty.min_size {
                let len = dst.metadata()?.len();
                dst.set_len(m.min(len))?;
            }
            dirty.ranges
        };
        dst.set_len(size)?;
        let mut buf = vec![0u8; 1 << 20];
        for (a, b) in ranges {
            let mut at = a;
            let end = b.min(size);
            while at < end {
                let n = ((end - at) as usize).min(buf.len());
                let got = src.read_at(&mut buf[..n], at)?;
                if got == 0 {
                    break;
                }
                dst.write_all_at(&buf[..got], at)?;
                at += got as u64;
            }
        }
        dst.set_permissions(meta.permissions())?;
        same_owner(&meta, &dst_path)?;
        self.inode_mut(ino)?.dirty = Dirty::default();
        Ok(())
    }

    /// Makes durable entries match visible ones: of one directory, or of
    /// every directory changed since the last commit.
    fn commit(&mut self, only: Option<u64>) -> io::Result<()> {
        let dirs: Vec<u64> = match only {
            Some(d) => vec![d],
            None => self.dirty_dirs.iter().copied().collect(),
        };
        for &d in &dirs {
            self.dirty_dirs.remove(&d);
            if !self.inodes.contains_key(&d) {
                continue;
            }
            if self.inode(d)?.durable.is_none() {
                fs::create_dir(self.orphans.join(d.to_string()))?;
                self.inode_mut(d)?.durable = Some(Loc::Orphan);
            }
        }
        // Pass 1: durable entries that no longer match move out of the way.
        for &d in &dirs {
            let Some(i) = self.inodes.get(&d) else {
                continue;
            };
            for (_, c) in unmatched(&i.durable_children, &i.children) {
                self.evict(c)?;
            }
        }
        // Pass 2: visible entries take their place.
        for &d in &dirs {
            let Some(i) = self.inodes.get(&d) else {
                continue;
            };
            for (name, c) in unmatched(&i.children, &i.durable_children) {
                self.place(c, d, name)?;
            }
        }
        Ok(())
    }

    /// Whether `ino` is still in use: visible, or open.
    fn alive(&self, ino: u64) -> bool {
        self.inodes.get(&ino).is_some_and(|i| i.seen.is_some())
            || self
                .handles
                .values()
                .any(|h| matches!(h, Handle::File { ino: i, .. } if *i == ino))
    }

    /// Takes `ino`'s durable copy off its durable name: to `orphans/` if
    /// the inode is still in use, else deleted (a directory's durable
    /// children first).
    fn evict(&mut self, ino: u64) -> io::Result<()> {
        let Some(from) = self.disk_path(ino)? else {
            return Ok(());
        };
        if let Some(Loc::In(p, n)) = self.inode(ino)?.durable.clone() {
            if let Some(parent) = self.inodes.get_mut(&p) {
                parent.durable_children.remove(&n);
            }
        }
        if self.alive(ino) {
            fs::rename(&from, self.orphans.join(ino.to_string()))?;
            self.inode_mut(ino)?.durable = Some(Loc::Orphan);
            return Ok(());
        }
        if self.inode(ino)?.kind == Kind::Dir {
            let kids: Vec<u64> = self
                .inode(ino)?
                .durable_children
                .values()
                .copied()
                .collect();
            // Put the directory somewhere stable while its children leave.
            let tmp = self.orphans.join(ino.to_string());
            fs::rename(&from, &tmp)?;
            self.inode_mut(ino)?.durable = Some(Loc::Orphan);
            for c in kids {
                self.evict(c)?;
            }
            fs::remove_dir_all(&tmp)?;
        } else {
            fs::remove_file(&from)?;
        }
        let i = self.inode_mut(ino)?;
        i.durable = None;
        i.durable_children.clear();
        Ok(())
    }

    /// Gives `ino` the durable name `name` in durable directory `dir`:
    /// moves its durable copy there, or creates one (an empty file whose
    /// data stays unsynced, an empty directory, the symlink).
    fn place(&mut self, ino: u64, dir: u64, name: OsString) -> io::Result<()> {
        let target = self
            .disk_path(dir)?
            .ok_or_else(|| err(libc::EIO))?
            .join(&name);
        match self.disk_path(ino)? {
            Some(from) => {
                fs::rename(&from, &target)?;
                if let Some(Loc::In(p, n)) = self.inode(ino)?.durable.clone() {
                    if let Some(parent) = self.inodes.get_mut(&p) {
                        parent.durable_children.remove(&n);
                    }
                }
            }
            None => match self.inode(ino)?.kind {
                Kind::File => {
                    File::create(&target)?;
                    self.inode_mut(ino)?.dirty.all = true;
                }
                Kind::Dir => fs::create_dir(&target)?,
                Kind::Symlink => {
                    let link = fs::read_link(self.path(ino)?)?;
                    std::os::unix::fs::symlink(link, &target)?;
                }
            },
        }
        if let Ok(m) = fs::symlink_metadata(self.path(ino)?) {
            same_owner(&m, &target)?;
        }
        self.inode_mut(ino)?.durable = Some(Loc::In(dir, name.clone()));
        self.inode_mut(dir)?.durable_children.insert(name, ino);
        Ok(())
    }
}

/// The entries of `a` that `b` does not have under the same name.
fn unmatched(a: &BTreeMap<OsString, u64>, b: &BTreeMap<OsString, u64>) -> Vec<(OsString, u64)> {
    a.iter()
        .filter(|(name, c)| b.get(*name) != Some(c))
        .map(|(n, c)| (n.clone(), *c))
        .collect()
}
