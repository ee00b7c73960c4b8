//! Clusters of real processes under kills: a restarted node catches up and
//! every replica converges; five nodes serve with two down; every
//! acknowledged write survives SIGKILL of the whole cluster; SIGTERM stops
//! a node cleanly. Tests take a shared lock so they do not compete for the
//! two cores.

mod server_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use server_support::Cluster;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_catches_up_and_all_replicas_converge() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(3, &[]).await;
    for i in 0..100 {
        c.put_eventually(&format!("a{i}"), json!(i), Duration::from_secs(5))
            .await;
    }
    // Kill a follower, write more, and kill the leader too for a while.
    let leader = c.wait_leader(Duration::from_secs(5)).await.expect("leader");
    let follower = c
        .ids()
        .into_iter()
        .find(|&i| i != leader)
        .expect("follower");
    c.kill(follower);
    for i in 0..200 {
        c.put_eventually(&format!("b{i}"), json!(i), Duration::from_secs(5))
            .await;
    }
    let t = Instant::now();
    c.spawn(follower);
    c.wait_healthy(follower, Duration::from_secs(10))
        .await
        .expect("restarted");
    let all = c
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("the restarted node catches up");
    eprintln!("caught up in {:?}: {all:?}", t.elapsed());
    for i in (0..200).step_by(17) {
        assert_eq!(
            c.get(follower, &format!("b{i}")).await.1,
            json!({"value": i})
        );
    }
    // A new leader, a lagging node, and after healing equal state again.
    c.kill(leader);
    for i in 0..50 {
        c.put_eventually(&format!("c{i}"), json!(i), Duration::from_secs(5))
            .await;
    }
    c.spawn(leader);
    c.wait_healthy(leader, Duration::from_secs(10))
        .await
        .expect("restarted");
    let all = c
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("converged after healing");
    assert!(all.iter().all(|s| s["keys"] == json!(350)), "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_keep_serving_with_two_down() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(5, &[]).await;
    c.put_eventually("x", json!(1), Duration::from_secs(5))
        .await;
    let leader = c.wait_leader(Duration::from_secs(5)).await.expect("leader");
    let other = c.ids().into_iter().find(|&i| i != leader).expect("other");
    c.kill(leader);
    c.kill(other);
    let t = Instant::now();
    c.put_eventually("y", json!(2), Duration::from_secs(5))
        .await;
    eprintln!("5 nodes, 2 down: serving again after {:?}", t.elapsed());
    for id in c.running() {
        for i in 0..10 {
            let key = format!("n{id}-{i}");
            assert_eq!(c.put(id, &key, json!(i)).await, (200, json!({"value": i})));
        }
        assert_eq!(c.get(id, "x").await, (200, json!({"value": 1})));
        assert_eq!(c.cas(id, "y", json!(2), json!(2)).await.0, 200);
    }
    c.wait_converged(Duration::from_secs(5))
        .await
        .expect("the three survivors agree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_killing_every_node() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(3, &["--fsync", "always"]).await;
    let acked: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let urls: Vec<String> = c.ids().iter().map(|&i| c.url(i)).collect();
        let http = c.http.clone();
        let acked = acked.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("w{w}-{n}");
                let url = format!("{}/v1/kv/{key}", urls[(n as usize + w as usize) % 3]);
                let r = http.put(url).json(&json!({"value": n})).send().await;
                if r.is_ok_and(|r| r.status() == 200) {
                    acked.lock().expect("acked").insert(key, n);
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Kill everyone while writes are in flight.
    for id in c.ids() {
        c.kill(id);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().expect("acked").clone();
    assert!(
        acked.len() > 50,
        "too few writes acknowledged: {}",
        acked.len()
    );
    for id in c.ids() {
        c.spawn(id);
    }
    for id in c.ids() {
        c.wait_healthy(id, Duration::from_secs(10))
            .await
            .expect("restarted");
    }
    c.wait_leader(Duration::from_secs(10))
        .await
        .expect("leader after restart");
    let mut lost = Vec::new();
    for (i, (key, v)) in acked.iter().enumerate() {
        let id = i as u64 % 3 + 1;
        let mut got = c.get(id, key).await;
        if got.0 != 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            got = c.get(id % 3 + 1, key).await;
        }
        if got != (200, json!({ "value": v })) {
            lost.push(format!("{key}={v}: {got:?}"));
        }
    }
    eprintln!(
        "{} acknowledged writes checked after killing every node",
        acked.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_cleanly_and_a_locked_data_dir_refuses_a_second_process() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(3, &[]).await;
    c.put_eventually("t", json!(1), Duration::from_secs(5))
        .await;
    // A second process on node 1's data directory must refuse to start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_synod-node"))
        .args([
            "--id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--peers",
            "",
            "--token",
            server_support::TOKEN,
        ])
        .arg("--data-dir")
        .arg(c.dir.join("n1"))
        .output()
        .expect("run a second node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("locked"), "{stderr}");
    // A power-loss crash exits at once; acknowledged writes survive it.
    let r = c
        .http
        .post(format!("{}/admin/crash", c.url(3)))
        .bearer_auth(server_support::TOKEN)
        .json(&json!({"lose_unsynced": true}))
        .send()
        .await;
    assert!(r.is_err(), "a power-loss crash answers nothing: {r:?}");
    let st = c.nodes[2]
        .child
        .as_mut()
        .expect("node 3")
        .wait()
        .expect("wait");
    assert_eq!(st.code(), Some(137), "{st}");
    c.nodes[2].child = None;
    c.spawn(3);
    c.wait_healthy(3, Duration::from_secs(10))
        .await
        .expect("back");
    assert_eq!(c.get(3, "t").await, (200, json!({"value": 1})));
    let st = c.terminate(2).expect("exit status");
    assert!(st.success(), "SIGTERM exit: {st}");
    c.spawn(2);
    c.wait_healthy(2, Duration::from_secs(10))
        .await
        .expect("back");
    assert_eq!(c.get(2, "t").await, (200, json!({"value": 1})));
}
