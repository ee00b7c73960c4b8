//! The local backend's etcd cluster under real link faults: the member
//! proxies must cut raft traffic for real, so cutting etcd's leader off (or
//! muting it one way) makes the others elect a new one, and healing brings
//! the old one back. Runs where Debian's `etcd` binary is on PATH (or at
//! `SYNOD_ETCD_BIN`); says SKIPPED otherwise.

// SKIPPED lines go straight to stderr, which the test harness does not
// capture, so a skip shows in `cargo test`'s output.
use std::io::Write as _;
use std::time::{Duration, Instant};

use synod_nemesis::local::find_etcd_binary;
use synod_nemesis::{
    Backend, LeaderReport, Link, LinkFault, LocalBackend, LocalConfig, NodeName, Program,
};

fn blackhole() -> LinkFault {
    LinkFault {
        blackhole: true,
        ..LinkFault::default()
    }
}

/// Waits (at most `within`) until etcd reports a leader `ok` accepts.
async fn leader_where(
    backend: &LocalBackend,
    within: Duration,
    ok: impl Fn(NodeName) -> bool,
) -> Option<NodeName> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let LeaderReport::Reported(Some(l)) = backend.report_leader().await {
            if ok(l) {
                return Some(l);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Puts `fault` on every link from `from` to the others (and, with
/// `both_ways`, back).
fn cut(backend: &LocalBackend, x: NodeName, fault: LinkFault, both_ways: bool) {
    for other in backend.nodes() {
        if other != x {
            backend
                .set_link(Link { from: x, to: other }, fault)
                .unwrap();
            if both_ways {
                backend
                    .set_link(Link { from: other, to: x }, fault)
                    .unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolating_or_muting_the_etcd_leader_elects_another() {
    if find_etcd_binary().is_err() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no etcd binary on PATH (apt-get install etcd-server)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("synod-local-etcd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let backend = LocalBackend::new(LocalConfig {
        program: Program::Etcd,
        nodes: 3,
        node_bin: None,
        dir: dir.clone(),
        token: "local-etcd-test-0123456789".into(),
        node_args: Vec::new(),
        base_port: None,
        ready_timeout: Duration::from_secs(30),
        disk: synod_nemesis::Disk::Plain,
        clock: synod_nemesis::Clock::Admin,
    })
    .await
    .unwrap();
    let result = async {
        backend.start().await.map_err(|e| e.to_string())?;
        let first = leader_where(&backend, Duration::from_secs(10), |_| true)
            .await
            .ok_or("etcd reports no leader after start")?;
        // Isolate the leader both ways: the majority elects another.
        cut(&backend, first, blackhole(), true);
        let second = leader_where(&backend, Duration::from_secs(15), |l| l != first)
            .await
            .ok_or(format!("no new leader while {first} was isolated"))?;
        cut(&backend, first, LinkFault::default(), true);
        // Mute the new leader one way (it hears, nobody hears it): its
        // followers time out and elect a third.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let settled = leader_where(&backend, Duration::from_secs(10), |_| true)
            .await
            .ok_or("no leader after healing")?;
        cut(&backend, settled, blackhole(), false);
        leader_where(&backend, Duration::from_secs(15), |l| l != settled)
            .await
            .ok_or(format!("no new leader while {settled} was muted"))?;
        eprintln!("leaders: {first}, then {second}; muted {settled}");
        Ok::<_, String>(())
    }
    .await;
    backend.teardown().await;
    let logs: String = backend
        .nodes()
        .into_iter()
        .filter_map(|n| backend.log_path(n))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::remove_dir_all(&dir).ok();
    if let Err(e) = result {
        let tail: Vec<&str> = logs.lines().rev().take(40).collect();
        panic!(
            "{e}; last log lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}
