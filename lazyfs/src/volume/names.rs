//! The namespace operations: creating, linking, unlinking and renaming
//! entries. Each is applied to `cache/` at once and marks its directory
//! dirty; nothing here touches `disk/` (a commit does, in `durability`).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::handles::open_with;
use super::{err, Handle, Inode, Kind, Owner, Volume, ROOT};

impl Volume {
    /// Adds a new visible entry after it was created in the cache, owned
    /// by the user who asked for it.
    fn link_new(&mut self, parent: u64, name: &OsStr, kind: Kind, who: Owner) -> io::Result<u64> {
        let path = self.path(parent)?.join(name);
        std::os::unix::fs::lchown(&path, Some(who.uid), Some(who.gid))?;
        let ino = self.alloc_ino();
        self.inodes
            .insert(ino, Inode::new(kind, Some((parent, name.to_os_string()))));
        self.inode_mut(parent)?
            .children
            .insert(name.to_os_string(), ino);
        self.dirty_dirs.insert(parent);
        Ok(ino)
    }

    fn child_path(&self, parent: u64, name: &OsStr) -> io::Result<PathBuf> {
        if self.inode(parent)?.children.contains_key(name) {
            return Err(err(libc::EEXIST));
        }
        Ok(self.path(parent)?.join(name))
    }

    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32, who: Owner) -> io::Result<u64> {
        let p = self.child_path(parent, name)?;
        fs::DirBuilder::new().mode(mode).create(&p)?;
        self.link_new(parent, name, Kind::Dir, who)
    }

    pub fn symlink(
        &mut self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        who: Owner,
    ) -> io::Result<u64> {
        let p = self.child_path(parent, name)?;
        std::os::unix::fs::symlink(target, &p)?;
        self.link_new(parent, name, Kind::Symlink, who)
    }

    /// Creates a regular file and opens it; returns (inode, handle).
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        who: Owner,
    ) -> io::Result<(u64, u64)> {
        let p = self.child_path(parent, name)?;
        let file = open_with(&p, flags | libc::O_CREAT | libc::O_EXCL, mode)?;
        let ino = self.link_new(parent, name, Kind::File, who)?;
        Ok((ino, self.add_handle(Handle::File { ino, file })))
    }

    /// mknod of a regular file (nothing else is modelled).
    pub fn mknod(&mut self, parent: u64, name: &OsStr, mode: u32, who: Owner) -> io::Result<u64> {
        if mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
            return Err(err(libc::EPERM));
        }
        let p = self.child_path(parent, name)?;
        open_with(
            &p,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            mode & 0o7777,
        )?;
        self.link_new(parent, name, Kind::File, who)
    }

    /// Removes the entry `name` from `parent` (a file or symlink, or with
    /// `dir` an empty directory).
    pub fn unlink(&mut self, parent: u64, name: &OsStr, dir: bool) -> io::Result<()> {
        let ino = self.lookup(parent, name)?;
        let p = self.path(parent)?.join(name);
        let kind = self.inode(ino)?.kind;
        match (dir, kind) {
            (true, Kind::Dir) => fs::remove_dir(&p)?,
            (true, _) => return Err(err(libc::ENOTDIR)),
            (false, Kind::Dir) => return Err(err(libc::EISDIR)),
            (false, _) => fs::remove_file(&p)?,
        }
        self.inode_mut(parent)?.children.remove(name);
        self.inode_mut(ino)?.seen = None;
        self.dirty_dirs.insert(parent);
        Ok(())
    }

    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        noreplace: bool,
    ) -> io::Result<()> {
        let ino = self.lookup(parent, name)?;
        let from = self.path(parent)?.join(name);
        let to = self.path(newparent)?.join(newname);
        if self.inode(newparent)?.kind != Kind::Dir {
            return Err(err(libc::ENOTDIR));
        }
        // The inode being moved must not become its own ancestor.
        let mut at = newparent;
        while at != ROOT {
            if at == ino {
                return Err(err(libc::EINVAL));
            }
            at = self.inode(at)?.seen.as_ref().map_or(ROOT, |(p, _)| *p);
        }
        let replaced = self.inode(newparent)?.children.get(newname).copied();
        if noreplace && replaced.is_some() {
            return Err(err(libc::EEXIST));
        }
        if replaced == Some(ino) {
            return Ok(());
        }
        fs::rename(&from, &to)?;
        if let Some(old) = replaced {
            self.inode_mut(old)?.seen = None;
        }
        self.inode_mut(parent)?.children.remove(name);
        self.inode_mut(newparent)?
            .children
            .insert(newname.to_os_string(), ino);
        self.inode_mut(ino)?.seen = Some((newparent, newname.to_os_string()));
        self.dirty_dirs.insert(parent);
        self.dirty_dirs.insert(newparent);
        Ok(())
    }

    pub fn readlink(&self, ino: u64) -> io::Result<PathBuf> {
        fs::read_link(self.path(ino)?)
    }
}
