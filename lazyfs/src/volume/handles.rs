//! Open files and directories, and what goes through them: reads,
//! writes, fallocate and truncation, each recorded in the file's dirty
//! ranges so a later sync knows what to copy.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::{err, Handle, Kind, Volume, ROOT};

impl Volume {
    pub(super) fn add_handle(&mut self, h: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, h);
        fh
    }

    pub fn open_file(&mut self, ino: u64, flags: i32) -> io::Result<u64> {
        if self.inode(ino)?.kind != Kind::File {
            return Err(err(libc::EISDIR));
        }
        let file = open_with(&self.path(ino)?, flags & !libc::O_CREAT, 0)?;
        if flags & libc::O_TRUNC != 0 {
            self.truncated(ino, 0)?;
        }
        Ok(self.add_handle(Handle::File { ino, file }))
    }

    pub fn opendir(&mut self, ino: u64) -> io::Result<u64> {
        let i = self.inode(ino)?;
        if i.kind != Kind::Dir {
            return Err(err(libc::ENOTDIR));
        }
        let parent = i.seen.as_ref().map(|(p, _)| *p).unwrap_or(ROOT);
        let mut entries = vec![
            (ino, Kind::Dir, OsString::from(".")),
            (parent, Kind::Dir, OsString::from("..")),
        ];
        for (name, &c) in &i.children {
            entries.push((c, self.inode(c)?.kind, name.clone()));
        }
        Ok(self.add_handle(Handle::Dir { ino, entries }))
    }

    pub fn dir_entries(&self, fh: u64) -> io::Result<&[(u64, Kind, OsString)]> {
        match self.handles.get(&fh) {
            Some(Handle::Dir { entries, .. }) => Ok(entries),
            _ => Err(err(libc::EBADF)),
        }
    }

    pub fn release(&mut self, fh: u64) {
        self.handles.remove(&fh);
    }

    pub(super) fn file(&self, fh: u64) -> io::Result<(u64, &File)> {
        match self.handles.get(&fh) {
            Some(Handle::File { ino, file }) => Ok((*ino, file)),
            _ => Err(err(libc::EBADF)),
        }
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let (_, file) = self.file(fh)?;
        let mut buf = vec![0; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    pub fn write(&mut self, fh: u64, offset: u64, data: &[u8]) -> io::Result<u32> {
        let (ino, file) = self.file(fh)?;
        file.write_all_at(data, offset)?;
        self.inode_mut(ino)?
            .dirty
            .add(offset, offset + data.len() as u64);
        Ok(data.len() as u32)
    }

    pub fn fallocate(&mut self, fh: u64, offset: u64, len: u64, mode: i32) -> io::Result<()> {
        let (ino, file) = self.file(fh)?;
        use std::os::unix::io::AsRawFd;
        // SAFETY: fallocate on a descriptor we own; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                mode,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.inode_mut(ino)?.dirty.add(offset, offset + len);
        Ok(())
    }

    /// Truncates the visible file to `size` (through `fh` if given).
    pub fn truncate(&mut self, ino: u64, fh: Option<u64>, size: u64) -> io::Result<()> {
        match fh.and_then(|fh| self.file(fh).ok()) {
            Some((_, f)) => f.set_len(size)?,
            None => OpenOptions::new()
                .write(true)
                .open(self.path(ino)?)?
                .set_len(size)?,
        }
        self.truncated(ino, size)
    }

    fn truncated(&mut self, ino: u64, size: u64) -> io::Result<()> {
        let d = &mut self.inode_mut(ino)?.dirty;
        d.min_size = Some(d.min_size.map_or(size, |m| m.min(size)));
        d.ranges.retain_mut(|r| {
            r.1 = r.1.min(size);
            r.0 < r.1
        });
        Ok(())
    }

    /// Notes a chmod or chown of `ino`: synced with its data.
    pub fn attrs_changed(&mut self, ino: u64) -> io::Result<()> {
        self.inode_mut(ino)?.dirty.attrs = true;
        Ok(())
    }
}

/// Opens `path` with open(2) flags as FUSE passes them, minus those that
/// would change what an offset means (`O_APPEND`: the kernel gives every
/// write its offset) or that the cache cannot honour (`O_DIRECT`).
pub(super) fn open_with(path: &Path, flags: i32, mode: u32) -> io::Result<File> {
    let mut o = OpenOptions::new();
    match flags & libc::O_ACCMODE {
        libc::O_RDONLY => o.read(true),
        libc::O_WRONLY => o.write(true),
        _ => o.read(true).write(true),
    };
    if flags & libc::O_CREAT != 0 {
        o.mode(mode);
    }
    let keep = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOFOLLOW;
    o.custom_flags(flags & keep);
    o.open(path)
}
