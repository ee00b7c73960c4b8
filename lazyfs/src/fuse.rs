//! The FUSE adapter: each request locks the [`Volume`] and does one
//! operation on it. Entries and attributes are never cached by the kernel
//! (a zero TTL): after a power loss every name must be looked up again,
//! and the old inode numbers answer `ESTALE`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, SessionACL, TimeOrNow, WriteFlags,
};

use crate::volume::{errno, Kind, Owner, Volume};
use crate::{lock, Error};

/// Nothing is cached in the kernel: see the module doc.
const TTL: Duration = Duration::ZERO;

/// Inode numbers are never reused, so every generation is 0.
const GEN: Generation = Generation(0);

struct LazyFs {
    volume: Arc<Mutex<Volume>>,
}

/// Mounts `volume` at `mountpoint` in a background thread.
pub fn mount(
    volume: Arc<Mutex<Volume>>,
    mountpoint: &Path,
) -> Result<fuser::BackgroundSession, Error> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("synod-lazyfs".into()),
        MountOption::Subtype("synod-lazyfs".into()),
        MountOption::DefaultPermissions,
    ];
    // Containers and the processes a bench starts may run as other users.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        config.acl = SessionACL::All;
    }
    fuser::spawn_mount(LazyFs { volume }, mountpoint, &config).map_err(|e| {
        Error::io(
            format!(
                "cannot mount the lazy filesystem at {}",
                mountpoint.display()
            ),
            e,
        )
    })
}

/// The user a request comes from.
fn owner(req: &Request) -> Owner {
    Owner {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn no(e: std::io::Error) -> Errno {
    Errno::from_i32(errno(&e))
}

/// Answers an open or opendir with the handle, or the error.
fn opened(reply: ReplyOpen, r: std::io::Result<u64>) {
    match r {
        Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
        Err(e) => reply.error(no(e)),
    }
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

fn attr(ino: u64, k: Kind, m: &fs::Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.len(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(k),
        perm: (m.permissions().mode() & 0o7777) as u16,
        nlink: if k == Kind::Dir { 2 } else { 1 },
        uid: m.uid(),
        gid: m.gid(),
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl LazyFs {
    fn attr_of(&self, v: &Volume, ino: u64) -> Result<FileAttr, Errno> {
        let k = v.kind(ino).map_err(no)?;
        let m = v.stat(ino).map_err(no)?;
        Ok(attr(ino, k, &m))
    }

    fn entry(&self, reply: ReplyEntry, f: impl FnOnce(&mut Volume) -> std::io::Result<u64>) {
        let mut v = lock(&self.volume);
        match f(&mut v).map_err(no).and_then(|ino| self.attr_of(&v, ino)) {
            Ok(a) => reply.entry(&TTL, &a, GEN),
            Err(e) => reply.error(e),
        }
    }

    fn empty(&self, reply: ReplyEmpty, f: impl FnOnce(&mut Volume) -> std::io::Result<()>) {
        match f(&mut lock(&self.volume)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(no(e)),
        }
    }
}

fn set_time(
    path: &Path,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
) -> std::io::Result<()> {
    let ts = |t: Option<TimeOrNow>| match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            }
        }
    };
    let times = [ts(atime), ts(mtime)];
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a NUL-terminated path and two timespecs that outlive the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry(reply, |v| v.lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let v = lock(&self.volume);
        match self.attr_of(&v, ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut v = lock(&self.volume);
        let r = (|| {
            let ino = ino.0;
            if let Some(size) = size {
                v.truncate(ino, fh.map(|f| f.0), size)?;
            }
            let path = v.path(ino);
            if let Some(mode) = mode {
                fs::set_permissions(
                    path.as_ref().map_err(clone_err)?,
                    fs::Permissions::from_mode(mode),
                )?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(path.as_ref().map_err(clone_err)?, uid, gid)?;
            }
            if mode.is_some() || uid.is_some() || gid.is_some() {
                v.attrs_changed(ino)?;
            }
            if atime.is_some() || mtime.is_some() {
                set_time(path.as_ref().map_err(clone_err)?, atime, mtime)?;
            }
            Ok(())
        })();
        match r.map_err(no).and_then(|()| self.attr_of(&v, ino.0)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match lock(&self.volume).readlink(ino.0) {
            Ok(p) => reply.data(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())),
            Err(e) => reply.error(no(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        self.entry(reply, |v| {
            v.mknod(parent.0, name, mode & !umask, owner(req))
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.entry(reply, |v| {
            v.mkdir(parent.0, name, mode & !umask, owner(req))
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, |v| v.unlink(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, |v| v.unlink(parent.0, name, true));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.entry(reply, |v| {
            v.symlink(parent.0, link_name, target, owner(req))
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        self.empty(reply, |v| {
            v.rename(parent.0, name, newparent.0, newname, noreplace)
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // Hard links are not modelled (see the crate doc).
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        opened(reply, lock(&self.volume).open_file(ino.0, flags.0));
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match lock(&self.volume).read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(no(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match lock(&self.volume).write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(no(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.volume).release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, |v| v.fsync_file(ino.0, Some(fh.0)));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        opened(reply, lock(&self.volume).opendir(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let v = lock(&self.volume);
        let entries = match v.dir_entries(fh.0) {
            Ok(e) => e,
            Err(e) => return reply.error(no(e)),
        };
        for (i, (ino, k, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, kind(*k), name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.volume).release(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, |v| v.fsync_dir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let dir = lock(&self.volume).cache_dir().to_path_buf();
        let c =
            match std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str())) {
                Ok(c) => c,
                Err(_) => return reply.error(Errno::EINVAL),
            };
        // SAFETY: statvfs fills the struct we pass; the path is NUL-terminated.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return reply.error(no(std::io::Error::last_os_error()));
        }
        reply.statfs(
            s.f_blocks,
            s.f_bfree,
            s.f_bavail,
            s.f_files,
            s.f_ffree,
            s.f_bsize as u32,
            s.f_namemax as u32,
            s.f_frsize as u32,
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut v = lock(&self.volume);
        let r = v
            .create(parent.0, name, mode & !umask & 0o7777, flags, owner(req))
            .map_err(no)
            .and_then(|(ino, fh)| Ok((self.attr_of(&v, ino)?, fh)));
        match r {
            Ok((a, fh)) => reply.created(&TTL, &a, GEN, FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    // Extended attributes are not modelled: ENOSYS, which the kernel
    // remembers, so it stops asking (for security.capability at every
    // write, among others).
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel checks modes itself.
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, |v| v.fallocate(fh.0, offset, length, mode));
    }
}

fn clone_err(e: &std::io::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno(e))
}
