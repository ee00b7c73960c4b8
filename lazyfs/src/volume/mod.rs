//! The model behind the mount: every inode with where it is visible (in
//! `cache/`) and where its durable copy is (in `disk/`, or in `orphans/`
//! while its name is not durable), the byte ranges written since its last
//! sync, and the directories whose entries changed since the last commit.
//!
//! Every operation is applied to `cache/` at once. A file sync copies its
//! dirty ranges to the durable copy; a metadata commit makes the durable
//! entries of a directory match its visible ones, in two passes (durable
//! entries that no longer match move to `orphans/` or are deleted, then
//! visible entries are moved or created in place), so any mix of renames,
//! creates and unlinks commits to the same tree as replaying them would.
//! A power loss copies `disk/` over `cache/` and starts a new inode
//! generation.
//!
//! Layout: this file holds the state (inodes, where each is visible and
//! durable) with the power loss that rebuilds it and the lookups;
//! `names` has the namespace operations, `handles` the open files and
//! their data, `durability` the syncs and the metadata commit.

mod durability;
mod handles;
mod names;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::Error;

/// The root directory's inode number, as FUSE wants it.
pub const ROOT: u64 = 1;

/// Whether a sync makes anything durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fsync {
    /// fsync and fdatasync make data (and names) durable.
    #[default]
    Honest,
    /// Every sync is acknowledged and nothing becomes durable: a volatile
    /// write cache that a power loss empties. Unsafe on purpose.
    Lie,
}

/// When name changes (create, rename, unlink, ...) become durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Metadata {
    /// Any fsync commits every name change before it, as ext4's journal
    /// does.
    #[default]
    Ordered,
    /// Only an fsync of a directory commits that directory's entries.
    Strict,
}

/// What a power loss throws away, or would: counts of unsynced changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Files with data written since their last sync.
    pub files: u64,
    /// Bytes in their dirty ranges (a truncation counts as 0).
    pub bytes: u64,
    /// Directories with entries changed since the last commit.
    pub dirs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// Where an inode's durable copy lives.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Loc {
    /// `disk/` itself.
    Root,
    /// An entry of a durable directory.
    In(u64, OsString),
    /// `orphans/<ino>`: durable data whose name is not durable yet; lost
    /// at a power loss.
    Orphan,
}

/// Unsynced changes to a file's data.
#[derive(Clone, Debug, Default)]
struct Dirty {
    /// The durable copy does not exist or is empty: copy the whole file.
    all: bool,
    /// Written since the last sync, `[start, end)`, sorted, disjoint.
    ranges: Vec<(u64, u64)>,
    /// The smallest size a truncation left since the last sync.
    min_size: Option<u64>,
    /// The mode or owner changed since the last sync.
    attrs: bool,
}

impl Dirty {
    fn is_clean(&self) -> bool {
        !self.all && self.ranges.is_empty() && self.min_size.is_none() && !self.attrs
    }

    fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // Appends are the common case: extend the last range in place.
        if let Some(last) = self.ranges.last_mut() {
            if last.0 <= start && start <= last.1 {
                last.1 = last.1.max(end);
                return;
            }
        }
        self.ranges.push((start, end));
        self.ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ranges.len());
        for &(a, b) in &self.ranges {
            match merged.last_mut() {
                Some(m) if a <= m.1 => m.1 = m.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.ranges = merged;
    }

    fn bytes(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| b - a).sum()
    }
}

struct Inode {
    kind: Kind,
    /// Where it is visible: (parent, name); `None` for the root and for
    /// an unlinked inode (still reachable through open handles).
    seen: Option<(u64, OsString)>,
    /// Directories: the visible entries.
    children: BTreeMap<OsString, u64>,
    /// Where its durable copy is; `None` if it has none.
    durable: Option<Loc>,
    /// Directories: the durable entries (what `disk/` holds).
    durable_children: BTreeMap<OsString, u64>,
    dirty: Dirty,
}

impl Inode {
    fn new(kind: Kind, seen: Option<(u64, OsString)>) -> Inode {
        Inode {
            kind,
            seen,
            children: BTreeMap::new(),
            durable: None,
            durable_children: BTreeMap::new(),
            dirty: Dirty::default(),
        }
    }
}

/// Who asked for a new file: it is theirs, as on a local filesystem.
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// An open file or directory.
pub enum Handle {
    File {
        ino: u64,
        file: File,
    },
    Dir {
        ino: u64,
        entries: Vec<(u64, Kind, OsString)>,
    },
}

/// The state of one mount.
pub struct Volume {
    cache: PathBuf,
    disk: PathBuf,
    orphans: PathBuf,
    fsync: Fsync,
    metadata: Metadata,
    inodes: HashMap<u64, Inode>,
    /// Never reused, across power losses too: an inode number the kernel
    /// kept from before a power loss is unknown (stale) afterwards.
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Directories whose visible entries changed since the last commit.
    dirty_dirs: BTreeSet<u64>,
}

/// The errno of an I/O error, `EIO` if it has none.
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl Volume {
    /// Opens (creating) the state directory; the durable tree is the
    /// starting state.
    pub fn open(state: &Path, fsync: Fsync, metadata: Metadata) -> Result<Volume, Error> {
        let mut v = Volume {
            cache: state.join("cache"),
            disk: state.join("disk"),
            orphans: state.join("orphans"),
            fsync,
            metadata,
            inodes: HashMap::new(),
            next_ino: ROOT + 1,
            handles: HashMap::new(),
            next_fh: 1,
            dirty_dirs: BTreeSet::new(),
        };
        fs::create_dir_all(&v.disk)
            .map_err(|e| Error::io(format!("cannot create {}", v.disk.display()), e))?;
        v.rebuild()?;
        Ok(v)
    }

    /// Drops every unsynced change: the cache becomes a copy of the disk,
    /// every handle closes, every inode number from before goes stale.
    pub fn power_loss(&mut self) -> Result<Dropped, Error> {
        let dropped = self.unsynced();
        self.rebuild()?;
        Ok(dropped)
    }

    /// What a power loss would drop now.
    pub fn unsynced(&self) -> Dropped {
        let mut d = Dropped {
            dirs: self.dirty_dirs.len() as u64,
            ..Dropped::default()
        };
        for i in self.inodes.values() {
            if i.kind == Kind::File && !i.dirty.is_clean() {
                d.files += 1;
                d.bytes += i.dirty.bytes();
            }
        }
        d
    }

    fn rebuild(&mut self) -> Result<(), Error> {
        self.handles.clear();
        self.dirty_dirs.clear();
        for dir in [&self.cache, &self.orphans] {
            match fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("cannot clear {}", dir.display()), e)),
            }
            fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        // The root keeps the durable root's owner and mode (a node that
        // runs as another user owns its data directory).
        fs::metadata(&self.disk)
            .and_then(|m| {
                fs::set_permissions(&self.cache, m.permissions())?;
                same_owner(&m, &self.cache)
            })
            .map_err(|e| Error::io(format!("cannot set up {}", self.cache.display()), e))?;
        copy_tree(&self.disk, &self.cache).map_err(|e| {
            Error::io(
                format!(
                    "cannot copy the durable tree {} into {}",
                    self.disk.display(),
                    self.cache.display()
                ),
                e,
            )
        })?;
        self.inodes.clear();
        let mut root = Inode::new(Kind::Dir, None);
        root.durable = Some(Loc::Root);
        self.inodes.insert(ROOT, root);
        self.scan(ROOT, &self.cache.clone())
            .map_err(|e| Error::io(format!("cannot read {}", self.cache.display()), e))
    }

    /// Learns the inodes under `dir` (a copy of the durable tree: every
    /// entry durable where it is).
    fn scan(&mut self, parent: u64, dir: &Path) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            let kind = if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Symlink
            } else if ft.is_file() {
                Kind::File
            } else {
                continue;
            };
            let name = entry.file_name();
            let ino = self.alloc_ino();
            let mut inode = Inode::new(kind, Some((parent, name.clone())));
            inode.durable = Some(Loc::In(parent, name.clone()));
            self.inodes.insert(ino, inode);
            let p = self.inode_mut(parent)?;
            p.children.insert(name.clone(), ino);
            p.durable_children.insert(name, ino);
            if kind == Kind::Dir {
                self.scan(ino, &entry.path())?;
            }
        }
        Ok(())
    }

    fn alloc_ino(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    fn inode(&self, ino: u64) -> io::Result<&Inode> {
        self.inodes.get(&ino).ok_or_else(|| err(libc::ESTALE))
    }

    fn inode_mut(&mut self, ino: u64) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or_else(|| err(libc::ESTALE))
    }

    /// The visible path of `ino` in the cache.
    pub fn path(&self, ino: u64) -> io::Result<PathBuf> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            match &self.inode(at)?.seen {
                Some((parent, name)) => {
                    names.push(name.clone());
                    at = *parent;
                }
                None => return Err(err(libc::ENOENT)),
            }
        }
        let mut p = self.cache.clone();
        p.extend(names.iter().rev());
        Ok(p)
    }

    /// Where the durable copy of `ino` is, if it has one.
    fn disk_path(&self, ino: u64) -> io::Result<Option<PathBuf>> {
        let mut names = Vec::new();
        let mut at = ino;
        loop {
            match &self.inode(at)?.durable {
                None => return Ok(None),
                Some(Loc::Root) => {
                    let mut p = self.disk.clone();
                    p.extend(names.iter().rev());
                    return Ok(Some(p));
                }
                Some(Loc::Orphan) => {
                    let mut p = self.orphans.join(at.to_string());
                    p.extend(names.iter().rev());
                    return Ok(Some(p));
                }
                Some(Loc::In(parent, name)) => {
                    names.push(name.clone());
                    at = *parent;
                }
            }
        }
    }

    pub fn kind(&self, ino: u64) -> io::Result<Kind> {
        Ok(self.inode(ino)?.kind)
    }

    /// `lstat` of a visible inode, or of an unlinked one through one of
    /// its open handles.
    pub fn stat(&self, ino: u64) -> io::Result<fs::Metadata> {
        match self.path(ino) {
            Ok(p) => fs::symlink_metadata(p),
            Err(e) => {
                for h in self.handles.values() {
                    if let Handle::File { ino: i, file } = h {
                        if *i == ino {
                            return file.metadata();
                        }
                    }
                }
                Err(e)
            }
        }
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> io::Result<u64> {
        let p = self.inode(parent)?;
        if p.kind != Kind::Dir {
            return Err(err(libc::ENOTDIR));
        }
        p.children
            .get(name)
            .copied()
            .ok_or_else(|| err(libc::ENOENT))
    }

    /// For `statfs`: the cache's filesystem.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }
}

/// Gives `to` the owner of `from` (a copy made by a root filesystem
/// server belongs to root otherwise, and a node running as another user
/// could not open its own files after a power loss).
fn same_owner(from: &fs::Metadata, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::os::unix::fs::lchown(to, Some(from.uid()), Some(from.gid()))
}

/// Copies the tree `from` into the existing directory `to`.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let dst = to.join(entry.file_name());
        let meta = entry.metadata()?;
        if ft.is_dir() {
            fs::create_dir(&dst)?;
            fs::set_permissions(&dst, meta.permissions())?;
            copy_tree(&entry.path(), &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &dst)?;
        } else if ft.is_file() {
            fs::copy(entry.path(), &dst)?;
        } else {
            continue;
        }
        same_owner(&meta, &dst)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_ranges_merge_and_appends_extend() {
        let mut d = Dirty::default();
        d.add(0, 10);
        d.add(10, 20);
        assert_eq!(d.ranges, vec![(0, 20)]);
        d.add(30, 40);
        d.add(25, 31);
        assert_eq!(d.ranges, vec![(0, 20), (25, 40)]);
        d.add(5, 26);
        assert_eq!(d.ranges, vec![(0, 40)]);
        assert_eq!(d.bytes(), 40);
    }
}
