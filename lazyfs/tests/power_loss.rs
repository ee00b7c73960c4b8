//! The filesystem through a real FUSE mount: what survives a power loss
//! and what does not. Each test mounts its own filesystem in a fresh
//! directory; where the kernel lacks FUSE they say SKIPPED and pass.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use synod_lazyfs::{Config, Fsync, Metadata, Mount};

struct Fs {
    /// `None` once unmounted.
    mount: Option<Mount>,
    root: PathBuf,
}

impl Fs {
    fn mount(&self) -> &Mount {
        self.mount.as_ref().expect("mounted")
    }

    fn at(&self, name: &str) -> PathBuf {
        self.mount().mountpoint().join(name)
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        drop(self.mount.take());
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Mounts a fresh filesystem, or says SKIPPED where FUSE is missing.
fn mount(test: &str, fsync: Fsync, metadata: Metadata) -> Option<Fs> {
    if let Err(e) = synod_lazyfs::available() {
        let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {e}");
        return None;
    }
    let root = std::env::temp_dir().join(format!("synod-lazyfs-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let config = Config {
        mountpoint: root.join("mnt"),
        state: root.join("state"),
        fsync,
        metadata,
    };
    let mount = Mount::new(&config).expect("mount");
    Some(Fs {
        mount: Some(mount),
        root,
    })
}

fn honest(test: &str) -> Option<Fs> {
    mount(test, Fsync::Honest, Metadata::Ordered)
}

fn write_synced(path: &Path, bytes: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

fn fsync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn read(path: &Path) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

#[test]
fn unsynced_writes_vanish_at_power_loss() {
    let Some(fs) = honest("unsynced") else { return };
    let p = fs.at("log");
    write_synced(&p, b"durable ");
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"volatile").unwrap();
    drop(f);
    // Visible before the power loss, as a page cache would show it.
    assert_eq!(read(&p).unwrap(), b"durable volatile");
    let dropped = fs.mount().power_loss().unwrap();
    assert_eq!(dropped.files, 1, "{dropped:?}");
    assert_eq!(dropped.bytes, 8, "{dropped:?}");
    assert_eq!(read(&p).unwrap(), b"durable ");
}

#[test]
fn a_file_never_synced_vanishes_whole() {
    let Some(fs) = honest("never-synced") else {
        return;
    };
    let mut f = File::create(fs.at("new")).unwrap();
    f.write_all(b"never synced").unwrap();
    drop(f);
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("new")), None);
}

#[test]
fn synced_writes_survive_power_loss() {
    let Some(fs) = honest("synced") else { return };
    fs::create_dir(fs.at("dir")).unwrap();
    write_synced(&fs.at("dir/a"), b"first");
    // fdatasync counts as much as fsync; pwrite in the middle too.
    let f = OpenOptions::new().write(true).open(fs.at("dir/a")).unwrap();
    f.write_all_at(b"FIRST", 0).unwrap();
    f.sync_data().unwrap();
    drop(f);
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("dir/a")).unwrap(), b"FIRST");
    // And again after a second power loss: durable state is durable.
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("dir/a")).unwrap(), b"FIRST");
}

#[test]
fn a_rename_without_a_directory_fsync_vanishes() {
    let Some(fs) = mount("rename-strict", Fsync::Honest, Metadata::Strict) else {
        return;
    };
    write_synced(&fs.at("current"), b"old");
    fsync_dir(fs.mount().mountpoint());
    // The atomic-replace idiom without its last step.
    write_synced(&fs.at("current.tmp"), b"new");
    fs::rename(fs.at("current.tmp"), fs.at("current")).unwrap();
    assert_eq!(read(&fs.at("current")).unwrap(), b"new");
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("current")).unwrap(), b"old");
    assert_eq!(read(&fs.at("current.tmp")), None);

    // With the directory fsync, the rename is durable.
    write_synced(&fs.at("current.tmp"), b"new");
    fs::rename(fs.at("current.tmp"), fs.at("current")).unwrap();
    fsync_dir(fs.mount().mountpoint());
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("current")).unwrap(), b"new");
    assert_eq!(read(&fs.at("current.tmp")), None);
}

#[test]
fn a_rename_no_sync_followed_vanishes_with_ordered_metadata_too() {
    let Some(fs) = honest("rename-ordered") else {
        return;
    };
    write_synced(&fs.at("a"), b"a");
    fs::rename(fs.at("a"), fs.at("b")).unwrap();
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("a")).unwrap(), b"a");
    assert_eq!(read(&fs.at("b")), None);
}

#[test]
fn ordered_metadata_commits_every_earlier_name_change_at_any_fsync() {
    let Some(fs) = honest("ordered") else { return };
    write_synced(&fs.at("a"), b"a");
    fs::create_dir(fs.at("sub")).unwrap();
    fs::rename(fs.at("a"), fs.at("sub/moved")).unwrap();
    // An fsync of an unrelated file commits the journal, as on ext4.
    write_synced(&fs.at("other"), b"o");
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("sub/moved")).unwrap(), b"a");
    assert_eq!(read(&fs.at("a")), None);
    assert_eq!(read(&fs.at("other")).unwrap(), b"o");
}

#[test]
fn strict_metadata_needs_the_directory_fsync_for_a_create() {
    let Some(fs) = mount("strict-create", Fsync::Honest, Metadata::Strict) else {
        return;
    };
    // fsync of the file alone: its data is durable, its name is not.
    write_synced(&fs.at("f"), b"data");
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("f")), None);
    // The name durable, the data never synced: it comes back empty.
    let mut f = File::create(fs.at("g")).unwrap();
    f.write_all(b"unsynced").unwrap();
    drop(f);
    fsync_dir(fs.mount().mountpoint());
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("g")).unwrap(), b"");
}

#[test]
fn an_unsynced_unlink_comes_back_and_a_synced_one_does_not() {
    let Some(fs) = honest("unlink") else { return };
    write_synced(&fs.at("x"), b"x");
    write_synced(&fs.at("y"), b"y");
    fs::remove_file(fs.at("x")).unwrap();
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("x")).unwrap(), b"x");
    fs::remove_file(fs.at("y")).unwrap();
    fsync_dir(fs.mount().mountpoint());
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("y")), None);
    assert_eq!(read(&fs.at("x")).unwrap(), b"x");
}

#[test]
fn an_unsynced_truncate_is_undone_and_a_synced_one_stays() {
    let Some(fs) = honest("truncate") else { return };
    write_synced(&fs.at("t"), b"0123456789");
    let f = OpenOptions::new().write(true).open(fs.at("t")).unwrap();
    f.set_len(4).unwrap();
    drop(f);
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("t")).unwrap(), b"0123456789");
    // Truncated, extended by a write past a hole, synced: the hole reads
    // as zeros, not as the old bytes.
    let f = OpenOptions::new().write(true).open(fs.at("t")).unwrap();
    f.set_len(2).unwrap();
    f.write_all_at(b"AB", 6).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("t")).unwrap(), b"01\0\0\0\0AB");
}

#[test]
fn a_lying_fsync_makes_nothing_durable() {
    let Some(fs) = mount("lying", Fsync::Lie, Metadata::Ordered) else {
        return;
    };
    fs::create_dir(fs.at("wal")).unwrap();
    write_synced(&fs.at("wal/0001"), b"acknowledged");
    fsync_dir(&fs.at("wal"));
    fsync_dir(fs.mount().mountpoint());
    assert_eq!(read(&fs.at("wal/0001")).unwrap(), b"acknowledged");
    fs.mount().power_loss().unwrap();
    assert_eq!(read(&fs.at("wal/0001")), None);
    assert_eq!(read(&fs.at("wal")), None);
}

#[test]
fn shared_mmap_writes_survive_only_once_msynced() {
    let Some(fs) = honest("mmap") else { return };
    let p = fs.at("db");
    write_synced(&p, &[b'.'; 8192]);
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    // SAFETY: a fresh shared mapping of 8 KiB of a file we hold open,
    // written within its bounds and unmapped before the file is closed.
    unsafe {
        let m = libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(m, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        let page = m as *mut u8;
        *page = b'S';
        assert_eq!(libc::msync(m, 8192, libc::MS_SYNC), 0);
        *page.add(4096) = b'U';
        libc::munmap(m, 8192);
    }
    drop(f);
    // munmap wrote the second page back to the cache, but never synced it.
    let seen = read(&p).unwrap();
    assert_eq!((seen[0], seen[4096]), (b'S', b'U'));
    fs.mount().power_loss().unwrap();
    let after = read(&p).unwrap();
    assert_eq!((after[0], after[4096]), (b'S', b'.'));
}

#[test]
fn handles_from_before_a_power_loss_are_stale() {
    let Some(fs) = honest("stale") else { return };
    write_synced(&fs.at("f"), b"durable");
    let old = OpenOptions::new().write(true).open(fs.at("f")).unwrap();
    fs.mount().power_loss().unwrap();
    // A write through a handle the dead process held must not leak into
    // the state after the power loss.
    assert!(old.write_all_at(b"LEAK", 0).is_err());
    assert_eq!(read(&fs.at("f")).unwrap(), b"durable");
}

#[test]
fn an_unmount_keeps_the_durable_tree() {
    let Some(fs) = honest("unmount") else { return };
    write_synced(&fs.at("kept"), b"k");
    let mut f = File::create(fs.at("lost")).unwrap();
    f.write_all(b"l").unwrap();
    drop(f);
    let mut fs = fs;
    fs.mount.take().expect("mounted").unmount().unwrap();
    assert_eq!(fs::read(fs.root.join("state/disk/kept")).unwrap(), b"k");
    assert!(!fs.root.join("state/disk/lost").exists());
}

#[test]
fn owners_and_modes_survive_a_power_loss() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(fs) = honest("owners") else { return };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: owners_and_modes_survive_a_power_loss: chown needs root"
        );
        return;
    }
    let p = fs.at("owned");
    write_synced(&p, b"x");
    std::os::unix::fs::chown(&p, Some(10001), Some(10002)).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    // The owner belongs to the data: it is synced with it.
    File::open(&p).unwrap().sync_all().unwrap();
    fs.mount().power_loss().unwrap();
    let m = fs::metadata(&p).unwrap();
    assert_eq!((m.uid(), m.gid()), (10001, 10002));
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
}
