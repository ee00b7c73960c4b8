//! Short chaos runs of the real `synod-node`: the default mix, and the
//! teeth runs (local reads, quorums that need not intersect, unsynced
//! writes lost to a power loss) with the control that fsyncs.

use std::process::Command;

use super::support::*;

#[test]
fn real_node_short_chaos_run() {
    let Some(node) = real_node() else { return };
    let s = store("real");
    let out = Command::new(synod_bin())
        .args([
            "run",
            "--store",
            s.to_str().unwrap(),
            "--time-limit",
            "10",
            "--recovery",
            "5",
        ])
        .args(["--nemesis-interval", "2", "--seed", "1"])
        .env("SYNOD_NODE_BIN", &node)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{:?}\n{stderr}",
        out.status
    );
    assert!(
        processes_mentioning(s.to_str().unwrap()).is_empty(),
        "nodes left behind"
    );
    exported_verdict_matches(&s.join("latest"));
    std::fs::remove_dir_all(&s).ok();
}

/// CPU per op (issue 19): a fault-free local run reports every node's CPU
/// and the bench's own, per op completed, both positive: the nodes did
/// the work, and a figure of 0 would be a measurement that read nothing.
#[test]
fn a_local_run_reports_node_and_client_cpu_per_op() {
    let Some(node) = real_node() else { return };
    let s = store("cpu");
    let out = Command::new(synod_bin())
        .args(["run", "--store", s.to_str().unwrap()])
        .args(["--time-limit", "3", "--recovery", "0", "--nemesis", "none"])
        .args(["--concurrency", "8", "--seed", "1"])
        .env("SYNOD_NODE_BIN", &node)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("CPU per op: nodes "), "{stdout}");
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.join("latest").join("results.json")).unwrap(),
    )
    .unwrap();
    let run = &results["run"];
    let node_us = run["node_cpu"]["per_op_us"].as_f64().unwrap_or(0.0);
    assert!(node_us > 0.0, "{run:#}");
    for n in ["n1", "n2", "n3"] {
        assert!(run["node_cpu"]["by_node"][n].as_f64().is_some(), "{run:#}");
    }
    assert!(run["node_cpu_unavailable"].is_null());
    let client_us = run["client_cpu"]["per_op_us"].as_f64().unwrap_or(0.0);
    assert!(client_us > 0.0, "{run:#}");
    assert_eq!(run["client_cpu"]["with_link_proxies"], true);
    std::fs::remove_dir_all(&s).ok();
}

/// Teeth: `--reads local` answers from any replica's own state, which a
/// partition (or plain lag) makes stale; the run must say invalid, and so
/// must its export read back with Jepsen's meaning.
#[test]
fn local_reads_under_partitions_are_caught() {
    let Some((code, out, s)) = real_run_kept(
        "teeth-local",
        &[
            "--reads",
            "local",
            "--nemesis",
            "partition",
            "--nemesis-interval",
            "1.5",
            "--time-limit",
            "8",
            "--seed",
            "1",
        ],
    ) else {
        return;
    };
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not linearizable"), "{out}");
    let run = s.join("latest");
    assert_eq!(exported_verdict_matches(&run), 1);
    // The timeline, in a real browser, draws the op that cannot be
    // linearized, named, and the partitions around it.
    let timeline = run.join("timeline.html").canonicalize().unwrap();
    if let Some((dom, log)) = crate::browser::dom(
        &format!("file://{}", timeline.display()),
        &s.join("chromium"),
    ) {
        assert!(!log.contains("Uncaught"), "script error:\n{log}");
        assert!(dom.contains("cannot be linearized</text>"), "{dom}");
        assert!(dom.contains("stroke=\"#000\""), "no failing op outlined");
        assert!(
            dom.contains("<g class=\"fault\"><title>partition"),
            "no partition shaded"
        );
    }
    std::fs::remove_dir_all(&s).ok();
}

/// Teeth for Flexible Paxos: with `--phase2-quorum 1` of 3 (Q1 + Q2 = N,
/// allowed only by `--unsafe-quorums`) a leader cut off from the rest
/// still chooses alone while the others elect and choose too.
#[test]
fn quorums_that_need_not_intersect_are_caught() {
    let Some((code, out)) = real_run(
        "teeth-quorums",
        &[
            "--node-arg=--phase2-quorum",
            "--node-arg=1",
            "--node-arg=--unsafe-quorums",
            "--nemesis",
            "partition:isolate-leader",
            "--nemesis-interval",
            "2",
            "--time-limit",
            "10",
            "--seed",
            "1",
        ],
    ) else {
        return;
    };
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not linearizable"), "{out}");
}

/// Teeth: with `--fsync never` a power loss of the whole cluster loses
/// acknowledged writes; the run must say invalid. The power is cut by
/// SIGKILL and the filesystem forgetting unsynced writes, not by the
/// node's own crash endpoint. (Seed 2 draws whole-cluster power losses
/// within the time limit.)
#[test]
fn unsynced_writes_lost_on_power_loss_are_caught() {
    if !fuse_or_skip() {
        return;
    }
    let Some((code, out, s)) = real_run_kept(
        "teeth-fsync",
        &[
            "--fsync",
            "never",
            // The whole cluster at once, and keys that outlive the outage,
            // so reads after the restart look at the writes it lost.
            "--nemesis",
            "power-loss:all",
            "--ops-per-key",
            "1000",
            "--nemesis-interval",
            "1.5",
            "--time-limit",
            "12",
            "--seed",
            "2",
        ],
    ) else {
        return;
    };
    assert_eq!(code, Some(1), "{out}");
    assert!(power_losses_through_the_filesystem(&history(&s.join("latest"))) > 0);
    std::fs::remove_dir_all(&s).ok();
}

/// With `--fsync always` the node's log loses no acknowledged write over
/// many whole-cluster power losses through the filesystem: every write
/// it acknowledged was fsynced, and only unsynced writes are forgotten.
#[test]
fn fsync_always_survives_many_power_losses_through_the_filesystem() {
    if !fuse_or_skip() {
        return;
    }
    let Some((code, out, s)) = real_run_kept(
        "power-loss-always",
        &[
            "--nemesis",
            "power-loss:all",
            "--ops-per-key",
            "1000",
            "--nemesis-interval",
            "1",
            "--time-limit",
            "12",
            "--seed",
            "3",
        ],
    ) else {
        return;
    };
    assert_eq!(code, Some(0), "{out}");
    let losses = power_losses_through_the_filesystem(&history(&s.join("latest")));
    assert!(losses >= 5, "only {losses} power losses");
    std::fs::remove_dir_all(&s).ok();
}
