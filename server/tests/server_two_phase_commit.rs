//! `synod-node --protocol two-phase-commit` (issue 15) over HTTP: a
//! three-node cluster serves writes, cas and reads on every node (the
//! participants forward to node 1, the coordinator); with a participant
//! down writes fail definitely, with the coordinator down nothing
//! completes, and both come back. Flags that make no sense with 2PC, and
//! a bad `--protocol`, are refused at start with a message.

mod server_support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use server_support::{Cluster, TOKEN};

const TPC: &[&str] = &["--protocol", "two-phase-commit"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_phase_commit_cluster_serves_and_blocks_as_it_should() {
    let mut c = Cluster::start(3, TPC).await;
    assert_eq!(c.leader().await, Some(1), "node 1 coordinates");
    let s2 = c.status(2).await.expect("status");
    assert_eq!(
        (s2["role"].clone(), s2["leader"].clone()),
        (json!("follower"), json!(1))
    );

    assert_eq!(c.put(1, "a", json!(1)).await, (200, json!({"value": 1})));
    assert_eq!(
        c.put(2, "b", json!("two")).await,
        (200, json!({"value": "two"}))
    );
    assert_eq!(
        c.cas(3, "a", json!(1), json!(5)).await,
        (200, json!({"value": 5}))
    );
    let (status, body) = c.cas(2, "a", json!(1), json!(6)).await;
    assert_eq!(
        (status, body["error"].clone(), body["value"].clone()),
        (409, json!("cas-mismatch"), json!(5)),
        "{body}"
    );
    for id in 1..=3 {
        assert_eq!(
            c.get(id, "a").await,
            (200, json!({"value": 5})),
            "node {id}"
        );
        assert_eq!(
            c.get(id, "b").await,
            (200, json!({"value": "two"})),
            "node {id}"
        );
        assert_eq!(
            c.get(id, "none").await,
            (200, json!({"value": null})),
            "node {id}"
        );
    }

    // A participant down: no write commits (the coordinator aborts, a
    // definite 503); reads of committed state still work.
    c.kill(3);
    let (status, body) = c.put(1, "a", json!(7)).await;
    assert_eq!(
        (status, body["error"].clone()),
        (503, json!("not-proposed")),
        "{body}"
    );
    assert_eq!(c.get(2, "a").await, (200, json!({"value": 5})));
    c.spawn(3);
    c.wait_healthy(3, Duration::from_secs(10))
        .await
        .expect("node 3 back");
    c.put_eventually("a", json!(8), Duration::from_secs(5))
        .await;
    assert_eq!(c.get(3, "a").await, (200, json!({"value": 8})));

    // The coordinator down: nothing completes at the participants.
    c.kill(1);
    let (status, _) = c.put(2, "a", json!(9)).await;
    assert!(status == 504 || status == 503 || status == 0, "{status}");
    let (status, _) = c.get(3, "a").await;
    assert!(status == 504 || status == 503 || status == 0, "{status}");
    c.spawn(1);
    c.wait_healthy(1, Duration::from_secs(10))
        .await
        .expect("node 1 back");
    c.put_eventually("c", json!(3), Duration::from_secs(5))
        .await;
    assert_eq!(
        c.get(2, "a").await,
        (200, json!({"value": 8})),
        "the commit survived the restart"
    );
    assert_eq!(c.get(3, "c").await, (200, json!({"value": 3})));
}

/// Runs a node that must refuse to start; its stderr.
fn refused(extra: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("synod-2pc-flags-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_synod-node"))
        .args([
            "--id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--peers",
            "2=http://127.0.0.1:1",
        ])
        .args(["--token", TOKEN])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .env_remove("SYNOD_PROTOCOL")
        .output()
        .expect("run synod-node");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "{extra:?} started: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn flags_that_make_no_sense_with_two_phase_commit_are_refused() {
    let e = refused(&["--protocol", "3pc"]);
    assert!(
        e.contains("--protocol") && e.contains("paxos") && e.contains("two-phase-commit"),
        "{e}"
    );
    for (flag, value, says) in [
        ("--proposers", "any", "proposers=any"),
        ("--reads", "lease", "reads other than log"),
        ("--learn", "all", "learn=all"),
        ("--phase1-quorum", "all", "quorum sizes"),
        ("--phase2-quorum", "2", "quorum sizes"),
    ] {
        let e = refused(&["--protocol", "two-phase-commit", flag, value]);
        assert!(
            e.contains("two-phase-commit does not take") && e.contains(says),
            "{flag} {value}: {e}"
        );
    }
    let e = refused(&["--protocol", "two-phase-commit", "--rejoin"]);
    assert!(
        e.contains("--rejoin") && e.contains("two-phase-commit"),
        "{e}"
    );
}
