//! Durable state with real processes: a node that lost its disk does not
//! come back as a fresh acceptor (issue 11, bug 4) and `--rejoin` brings it
//! back without losing what was acknowledged; a log cut back into synced
//! records is refused; another cluster's node is refused; impossible
//! messages from a peer do not take a node down (bug 5); a node whose core
//! dies exits instead of lingering.

mod server_support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::{Cluster, TOKEN};
use synod_node::storage::identity;

const LONG: Duration = Duration::from_secs(10);

/// The steps: the write is acknowledged by the leader and one
/// follower only; that follower's data directory is then wiped and it
/// restarts with the other follower while the leader is down. As a fresh
/// acceptor it would form a majority that never heard of the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_refuses_to_start_and_rejoins_without_losing_a_write() {
    let mut c = Cluster::start(3, &[]).await;
    let l = c.wait_leader(LONG).await.expect("a leader");
    let others: Vec<u64> = c.ids().into_iter().filter(|&i| i != l).collect();
    let (a, b) = (others[0], others[1]);
    c.kill(a);
    let (status, _) = c.put(l, "w", json!(42)).await;
    assert_eq!(status, 200, "acknowledged by the leader and n{b} alone");
    c.kill(b);
    std::fs::remove_dir_all(c.data_dir(b)).expect("wipe the data directory");
    c.kill(l);

    // The wiped node and the one that missed the write come back. If that
    // one ever heard from the wiped node (a candidate's prepare, say), the
    // wiped node is refused at once; if not (followers talk to the leader),
    // it cannot tell it is not new until the leader answers too, so it
    // waits, serving nobody.
    c.spawn(a);
    c.spawn(b);
    let mut st = c.wait_exit(b, Duration::from_secs(2)).await;
    if st.is_none() {
        let (status, _) = c.get(b, "w").await;
        assert_eq!(status, 503, "not serving while it decides");
        assert_eq!(
            c.leader().await,
            None,
            "no majority of acceptors without the leader"
        );
    }
    c.spawn(l);
    if st.is_none() {
        st = c.wait_exit(b, LONG).await;
    }
    let st = st.expect("the wiped node stops by itself");
    assert_eq!(st.code(), Some(4), "exit status 4: lost state");
    let log = c.log(b);
    let dir = c.data_dir(b).display().to_string();
    assert!(
        log.contains(&dir) && log.contains("--rejoin") && log.contains("heard from this node"),
        "the message names the directory and what to do:\n{log}"
    );

    // With the old leader back, the write is there.
    c.wait_healthy(l, LONG).await.expect("the leader restarts");
    c.wait_healthy(a, LONG)
        .await
        .expect("the other follower runs");
    let (status, body) = c.get(a, "w").await;
    assert_eq!((status, &body["value"]), (200, &json!(42)), "{body}");

    // --rejoin recovers the wiped node: it learns first, then votes again.
    c.spawn_with(b, &["--rejoin"]);
    c.wait_healthy(b, LONG)
        .await
        .expect("the rejoining node runs");
    let t = Instant::now();
    loop {
        let s = c.status(b).await.unwrap_or(Value::Null);
        if s["rejoining"] == json!(false) {
            break;
        }
        assert!(t.elapsed() < LONG, "still rejoining after {LONG:?}: {s}");
        // Writes move the log on; the rejoin ends when a leader above its
        // floor has re-chosen everything.
        c.put_eventually("tick", json!(1), LONG).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c.log(b).contains("rejoined"), "it says so in its log");
    c.wait_converged(LONG)
        .await
        .expect("equal applied prefixes");
    // Even with the old leader gone, the rejoined node and the other one
    // keep the acknowledged write.
    c.kill(l);
    let (status, body) = read_eventually(&c, b, "w").await;
    assert_eq!((status, &body["value"]), (200, &json!(42)), "{body}");
}

async fn read_eventually(c: &Cluster, id: u64, key: &str) -> (u16, Value) {
    let t = Instant::now();
    loop {
        let (s, body) = c.get(id, key).await;
        if s == 200 || t.elapsed() > LONG {
            return (s, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A crash tears only the write in flight: a log cut back into records
/// that were synced is damage, and the node says so instead of reading it
/// as a torn tail. `--rejoin` sets the damaged log aside and recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_back_into_synced_records_is_refused_and_rejoin_recovers() {
    let mut c = Cluster::start(3, &[]).await;
    for i in 0..200 {
        c.put_eventually(&format!("k{i}"), json!(i), LONG).await;
    }
    let victim = 2;
    c.terminate(victim)
        .expect("a clean stop (the sync mark is current)");
    let log = c.data_dir(victim).join("log");
    // Its frames, not the preallocated zeros after them.
    let bytes = std::fs::read(&log).expect("the log");
    let len = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) as u64;
    assert!(len > 10_000, "the log holds the writes: {len} bytes");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open the log");
    f.set_len(len / 2).expect("cut the log in half");
    drop(f);
    c.spawn(victim);
    let st = c
        .wait_exit(victim, LONG)
        .await
        .expect("it refuses to start");
    assert_ne!(st.code(), Some(0));
    let out = c.log(victim);
    assert!(
        out.contains("bytes of it were durable") && out.contains("--rejoin"),
        "the message says what is wrong and what to do:\n{out}"
    );
    c.spawn_with(victim, &["--rejoin"]);
    c.wait_healthy(victim, LONG).await.expect("it rejoins");
    let moved: Vec<String> = std::fs::read_dir(c.data_dir(victim))
        .expect("the data directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("damaged"))
        .collect();
    assert!(!moved.is_empty(), "the damaged log is kept aside");
    let t = Instant::now();
    while c.status(victim).await.map(|s| s["rejoining"].clone()) != Some(json!(false)) {
        assert!(t.elapsed() < LONG, "still rejoining");
        c.put_eventually("more", json!(1), LONG).await;
    }
    let (status, body) = read_eventually(&c, victim, "k7").await;
    assert_eq!((status, &body["value"]), (200, &json!(7)));
}

/// A data directory of another cluster cannot join this one: its peers
/// refuse its batches (409) and it says why in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused() {
    let mut c = Cluster::start(3, &[]).await;
    let l = c.wait_leader(LONG).await.expect("a leader");
    let stranger = c.ids().into_iter().find(|&i| i != l).expect("a follower");
    c.kill(stranger);
    // Give its directory another cluster's identity.
    let dir = c.data_dir(stranger);
    let mut id = identity::read(&dir)
        .expect("readable")
        .expect("an identity");
    id.cluster = "0123456789abcdef".into();
    identity::write(&dir, &id).expect("rewrite the identity");
    c.spawn(stranger);
    c.put_eventually("after", json!(1), LONG).await;
    let t = Instant::now();
    while !c.log(stranger).contains("refuses this node's cluster") {
        assert!(
            t.elapsed() < LONG,
            "no refusal logged:\n{}",
            c.log(stranger)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = c.status(stranger).await.expect("it runs");
    assert_eq!(
        s["leader"],
        Value::Null,
        "it follows no one of this cluster: {s}"
    );
    let direct = reqwest::Client::new()
        .post(format!("{}/peer/v1/messages", c.url(l)))
        .bearer_auth(TOKEN)
        .json(&json!({"from": stranger, "cluster": "0123456789abcdef", "messages": []}))
        .send()
        .await
        .expect("the leader answers");
    assert_eq!(direct.status(), 409);
}

/// Bug 5 over the wire: a prepare with round u64::MAX (and friends) from
/// a token holder is refused and logged; nobody panics, leadership and
/// writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_messages_from_a_peer_leave_every_node_running() {
    let mut c = Cluster::start(3, &[]).await;
    let l = c.wait_leader(LONG).await.expect("a leader");
    let cluster = identity::read(&c.data_dir(l))
        .expect("readable")
        .expect("an identity")
        .cluster;
    let from = c
        .ids()
        .into_iter()
        .find(|&i| i != l)
        .expect("another member");
    let max = u64::MAX;
    let batch = json!({
        "from": from,
        "cluster": cluster,
        "messages": [
            {"type": "prepare", "ballot": {"round": max, "node": from}, "from_slot": 0},
            {"type": "nack", "ballot": {"round": 1, "node": l}, "promised": {"round": max, "node": from}},
            {"type": "heartbeat", "ballot": {"round": 1, "node": from}, "commit": max, "sent_at": 0},
            {"type": "accept", "ballot": {"round": 2, "node": from}, "slot": max, "entry": {"entry": "noop"}, "commit": 0},
        ]
    });
    for id in c.ids() {
        if id == from {
            continue;
        }
        let r = reqwest::Client::new()
            .post(format!("{}/peer/v1/messages", c.url(id)))
            .bearer_auth(TOKEN)
            .json(&batch)
            .send()
            .await
            .expect("the node answers");
        assert!(
            r.status().is_success(),
            "accepted for the core to refuse: {}",
            r.status()
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in c.ids() {
        c.wait_healthy(id, LONG).await.expect("still running");
    }
    c.put_eventually("still", json!(1), LONG).await;
    assert!(
        c.ids()
            .into_iter()
            .any(|id| c.log(id).contains("refused an impossible message")),
        "the refusal is logged"
    );
    let s = c.status(l).await.expect("status");
    assert!(
        s["ballot"]["round"].as_u64().unwrap_or(max) < 1 << 48,
        "{s}"
    );
}

/// A node whose replica task panics exits (non-zero) at once instead of
/// answering health checks with a dead core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_core_or_disk_thread_panics_exits_within_a_second() {
    let mut c = Cluster::start(3, &[]).await;
    let victim = 1;
    for (flag, what) in [
        (
            "--test-core-panic-after-ms",
            "test-only panic of the replica task",
        ),
        (
            "--test-disk-panic-after-ms",
            "test-only panic of the disk thread",
        ),
    ] {
        c.kill(victim);
        c.spawn_with(victim, &[flag, "1500"]);
        c.wait_healthy(victim, LONG)
            .await
            .expect("healthy before the panic");
        let t = Instant::now();
        let st = c
            .wait_exit(victim, Duration::from_secs(5))
            .await
            .expect("it exits by itself");
        assert_eq!(st.code(), Some(70), "{flag}: exit status 70 after a panic");
        assert!(
            t.elapsed() < Duration::from_millis(1500 + 1000),
            "{flag}: within a second of the panic: {:?}",
            t.elapsed()
        );
        assert!(c.log(victim).contains(what), "{flag}: the log names it");
    }
}
