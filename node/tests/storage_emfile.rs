//! A snapshot taken while the process is out of file descriptors waits
//! for one instead of failing (issue 13: a node flooded with connections
//! died with "snapshot.tmp: Too many open files" at its first
//! compaction). Its own test binary: it exhausts the descriptor table of
//! the whole process.

use std::fs::File;
use std::time::{Duration, Instant};

use synod_node::storage::{Compaction, FileStorage, Record, Snapshot, Storage};
use synod_node::{Ballot, Fsync};

#[test]
fn a_compaction_out_of_descriptors_retries_until_one_is_free() {
    let dir = std::env::temp_dir().join(format!("synod-emfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut s = FileStorage::open(&dir, Fsync::Always).unwrap();
    s.load().unwrap();
    s.append(&[Record::Promise {
        ballot: Ballot::new(1, 1),
    }])
    .unwrap();
    s.sync().unwrap();

    // Take every descriptor there is (the soft limit lowered first, so
    // this is quick), then give a few back a moment later.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit read and write only the struct on our stack.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let low = libc::rlimit {
            rlim_cur: 256.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &low), 0);
    }
    let mut hog = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
    }
    assert!(File::open("/dev/null").is_err(), "the table is full");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(hog);
    });

    let started = Instant::now();
    let compacted = s.compact(&Compaction {
        snapshot: Snapshot::default(),
        retained: vec![Record::Promise {
            ballot: Ballot::new(2, 1),
        }],
        at: 0,
    });
    release.join().unwrap();
    assert!(
        compacted.is_ok(),
        "compaction failed instead of waiting: {compacted:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the compaction did not have to wait: the test exhausted nothing"
    );
    drop(s);
    let mut s = FileStorage::open(&dir, Fsync::Always).unwrap();
    let got = s.load().unwrap();
    assert_eq!(got.snapshot, Some(Snapshot::default()));
    assert_eq!(
        got.records,
        vec![Record::Promise {
            ballot: Ballot::new(2, 1)
        }]
    );
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    let _ = std::fs::remove_dir_all(&dir);
}
