//! `synod serve` under a store that fights back (issue 13): files and
//! archives far larger than the memory the server may use are streamed;
//! archives built at once are bounded; a FIFO named `results.json` hangs
//! nothing; and a run directory reached through a symlink is not listed.

mod serve_support;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use serve_support::{get, request, Server};

/// The status and the number of body bytes (chunked framing included,
/// which is a few bytes per 64 KiB piece).
fn get_counting(addr: &str, path: &str) -> (u16, u64) {
    let (status, mut r) = request(addr, path);
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) => panic!("reading {path}: {e}"),
        }
    }
    (status, n)
}

fn get_text(addr: &str, path: &str) -> (u16, String) {
    let (status, body) = get(addr, path);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The server's peak resident set (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024.0
}

fn write_run(dir: &Path, name: &str, settings: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"args":{{"name":"{name}","target":"synod","nodes":3,"proposers":"{settings}"}},"seed":1,"faults":[],"version":"0.1.0"}}"#
        ),
    )
    .unwrap();
}

const BIG: u64 = 300 << 20;

#[test]
fn serve_streams_bounds_archives_and_never_blocks_or_leaves_the_store() {
    let tmp = std::env::temp_dir().join(format!("synod-serve-hard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let store = tmp.join("store");
    // A run with a 300 MiB log (sparse: no disk, all the bytes).
    let big_run = store.join("big/20260101T000000Z");
    write_run(&big_run, "big", "leader");
    std::fs::write(big_run.join("results.json"), r#"{"verdict":"valid"}"#).unwrap();
    std::fs::File::create(big_run.join("huge.log"))
        .unwrap()
        .set_len(BIG)
        .unwrap();
    // A run whose results.json is a FIFO nobody writes to.
    let fifo_run = store.join("fifo/20260101T000001Z");
    write_run(&fifo_run, "fifo", "leader");
    let fifo = std::ffi::CString::new(fifo_run.join("results.json").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    // A run directory that is a symlink to one outside the store.
    let outside = tmp.join("outside/20260101T000002Z");
    write_run(&outside, "linked", "OUTSIDE-THE-STORE");
    std::fs::create_dir_all(store.join("linked")).unwrap();
    std::os::unix::fs::symlink(&outside, store.join("linked/20260101T000002Z")).unwrap();

    let server = Server::start(&store);
    let (pid, addr) = (server.pid(), server.addr.clone());
    let baseline = peak_rss_mib(pid);

    // 8. The index lists what is in the store, not what a symlink reaches.
    let (status, index) = get_text(&addr, "/");
    assert_eq!(status, 200);
    assert!(index.contains("big") && index.contains("fifo"), "{index}");
    assert!(
        !index.contains("OUTSIDE-THE-STORE") && !index.contains("linked"),
        "the index shows a run reached through a symlink:\n{index}"
    );

    // 7. A FIFO named results.json: two comparisons and a file request
    // on it, then every route still answers at once.
    let started = Instant::now();
    let hangs: Vec<_> = [
        "/compare?runs=fifo/20260101T000001Z",
        "/compare?runs=fifo/20260101T000001Z",
        "/runs/fifo/20260101T000001Z/results.json",
    ]
    .into_iter()
    .map(|p| {
        let addr = addr.clone();
        std::thread::spawn(move || get_text(&addr, p).0)
    })
    .collect();
    let (status, _) = get_text(&addr, "/");
    assert_eq!(status, 200);
    let statuses: Vec<u16> = hangs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the FIFO stalled the server for {:?}",
        started.elapsed()
    );
    assert_eq!(statuses[2], 404, "a FIFO is not served as a file");
    assert!(statuses[..2].iter().all(|&s| s == 200), "{statuses:?}");

    // 6. A file and an archive ten times the memory the server may use.
    let (status, n) = get_counting(&addr, "/runs/big/20260101T000000Z/huge.log");
    assert_eq!(status, 200);
    assert!(n >= BIG, "{n} bytes of {BIG}");
    let (status, n) = get_counting(&addr, "/archive/big/20260101T000000Z");
    assert_eq!(status, 200);
    assert!(n >= BIG + 2048, "an archive of {n} bytes");
    let peak = peak_rss_mib(pid);
    println!(
        "synod serve sent a {} MiB file and its archive; peak RSS {peak:.1} MiB (at start {baseline:.1} MiB)",
        BIG >> 20
    );
    assert!(
        peak < baseline + 64.0,
        "peak RSS {peak:.1} MiB for a {} MiB file: not streamed",
        BIG >> 20
    );

    // 6. Archives at once are bounded: two readers that stall hold both
    // places, a third is refused, and the places come back when they go.
    let stalled: Vec<_> = (0..2)
        .map(|_| request(&addr, "/archive/big/20260101T000000Z"))
        .collect();
    assert!(stalled.iter().all(|(s, _)| *s == 200));
    let (status, body) = get_text(&addr, "/archive/big/20260101T000000Z");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("archives are being built"), "{body}");
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = request(&addr, "/archive/big/20260101T000000Z");
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the archive places never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
