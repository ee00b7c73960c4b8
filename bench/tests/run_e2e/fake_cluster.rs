//! The runner itself against the fake node: faults in the history, the
//! store layout, teeth for a node that forgets, teardown on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::*;

#[test]
fn fake_cluster_run_records_faults_and_leaves_a_complete_run_dir() {
    let Some(fake) = fake_node() else { return };
    let s = store("fake");
    let out = Command::new(synod_bin())
        .args(["run", "--store", s.to_str().unwrap(), "--name", "fake"])
        .args(["--time-limit", "4", "--recovery", "1", "--seed", "7"])
        .args([
            "--nemesis",
            "partition,pause,delay,reset",
            "--nemesis-interval",
            "0.6",
        ])
        .args(["--concurrency", "4", "--client-timeout-ms", "1000"])
        .env("SYNOD_NODE_BIN", &fake)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "{:?}\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let run = s.join("latest");
    for file in [
        "config.json",
        "history.jsonl",
        "results.json",
        "nodes/n1.log",
        "nodes/n3.log",
    ] {
        assert!(run.join(file).is_file(), "{file} missing in the run dir");
    }
    let h = history(&run);
    assert!(h.contains("\"f\":\"start-"), "no fault started:\n{h:.2000}");
    assert!(h.contains("\"f\":\"stop-"), "no fault stopped");
    assert!(h.contains("\"type\":\"ok\""), "no op succeeded");
    // Every fault that started was stopped.
    let starts = h.matches("\"f\":\"start-").count();
    let stops = h.matches("\"f\":\"stop-").count();
    assert_eq!(starts, stops, "unhealed faults");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["run"]["seed"], 7);
    assert_eq!(results["verdict"], "valid");
    assert!(
        processes_mentioning(s.to_str().unwrap()).is_empty(),
        "nodes left behind"
    );
    std::fs::remove_dir_all(&s).ok();
}

/// Teeth: the fake node keeps its registers in memory only, so killing
/// and restarting it loses acknowledged writes; the run must say invalid.
#[test]
fn a_node_that_forgets_on_restart_is_caught() {
    let Some(fake) = fake_node() else { return };
    let s = store("forget");
    let out = Command::new(synod_bin())
        .args(["run", "--store", s.to_str().unwrap(), "--nodes", "1"])
        .args(["--time-limit", "3", "--recovery", "1", "--seed", "2"])
        .args([
            "--nemesis",
            "kill",
            "--nemesis-interval",
            "0.5",
            "--concurrency",
            "4",
        ])
        .env("SYNOD_NODE_BIN", &fake)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("invalid"), "{stdout}");
    assert!(s.join("latest/report.html").is_file());
    std::fs::remove_dir_all(&s).ok();
}

#[test]
fn sigterm_mid_fault_leaves_no_node_no_paused_process_and_no_proxy() {
    let Some(fake) = fake_node() else { return };
    let s = store("sigterm");
    let mut child = Command::new(synod_bin())
        .args(["run", "--store", s.to_str().unwrap(), "--name", "term"])
        .args([
            "--time-limit",
            "60",
            "--nemesis",
            "pause",
            "--nemesis-interval",
            "0.5",
        ])
        .args(["--concurrency", "2", "--client-timeout-ms", "500"])
        .env("SYNOD_NODE_BIN", &fake)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = s.join("term");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Wait until a pause is in force.
    let mut paused = false;
    while Instant::now() < deadline && !paused {
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(mut dirs) = std::fs::read_dir(&run) {
            if let Some(Ok(d)) = dirs.next() {
                paused = history(&d.path()).contains("start-pause");
            }
        }
    }
    assert!(paused, "no pause started within 30 s");
    let ours = processes_mentioning(s.to_str().unwrap());
    assert!(!ours.is_empty(), "no node processes found while running");
    // The proxies are in synod's process; their ports must close with it.
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let waited = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "synod did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(3),
        "an interrupted run exits 3\n{stderr}"
    );
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    let left = processes_mentioning(s.to_str().unwrap());
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let latest = s.join("latest");
    let results = std::fs::read_to_string(latest.join("results.json")).unwrap();
    assert!(results.contains("SIGTERM"), "{results}");
    std::fs::remove_dir_all(&s).ok();
}
