//! The etcd target: a local etcd cluster under faults (linearizable reads
//! valid, serializable reads caught stale), power losses on a lying and an
//! honest disk, and a single member through the JSON gateway.

// SKIPPED lines go straight to stderr, which the test harness does not
// capture, so a skip shows in `cargo test`'s output.
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::*;

fn etcd_on_path() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("etcd").is_file()));
    if !found {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no etcd binary on PATH (apt-get install etcd-server)"
        );
    }
    found
}

/// A three-member etcd started by the local backend under `nemesis`, a
/// fault every 1.5 s for `seconds`; returns the exit status, the output and
/// the history.
fn local_etcd_run(
    tag: &str,
    nemesis: &str,
    seconds: u32,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let s = store(tag);
    let out = Command::new(synod_bin())
        .args(["run", "--store", s.to_str().unwrap(), "--target", "etcd"])
        .args(["--nemesis", nemesis, "--nemesis-interval", "1.5"])
        .args(["--time-limit", &seconds.to_string(), "--recovery", "3"])
        .args(extra)
        .output()
        .unwrap();
    let h = history(&s.join("latest"));
    assert!(h.contains("\"f\":\"start-"), "no fault started");
    assert!(
        processes_mentioning(s.to_str().unwrap()).is_empty(),
        "etcd left behind"
    );
    std::fs::remove_dir_all(&s).ok();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text, h)
}

/// How stale the stalest ok read of `history` was, in ms. A read of `v`
/// invoked at `t` is stale by `t - c` when an ok write or cas of another
/// value on its key, invoked after the op that wrote `v` had completed,
/// itself completed at `c < t`: values are unique per key, so no
/// linearization lets such a read see `v`. A healthy etcd member's
/// serializable reads lag by milliseconds; one cut off by a partition lags
/// by as long as the cut lasts.
fn stalest_read_ms(history: &str) -> f64 {
    use serde_json::Value;
    struct Op {
        key: String,
        f: String,
        /// What a write or cas wrote, or what a read returned.
        value: Value,
        invoked: i64,
        completed: Option<i64>,
    }
    let mut open: std::collections::HashMap<String, Op> = Default::default();
    let mut done = Vec::new();
    for line in history.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if e["process"] == "nemesis" {
            continue;
        }
        let process = e["process"].to_string();
        let time = e["time"].as_i64().unwrap_or(0);
        match e["type"].as_str() {
            Some("invoke") => {
                let value = match e["f"].as_str() {
                    Some("cas") => e["value"][1].clone(),
                    _ => e["value"].clone(),
                };
                open.insert(
                    process,
                    Op {
                        key: e["key"].as_str().unwrap_or_default().to_string(),
                        f: e["f"].as_str().unwrap_or_default().to_string(),
                        value,
                        invoked: time,
                        completed: None,
                    },
                );
            }
            Some("ok") => {
                if let Some(mut op) = open.remove(&process) {
                    op.completed = Some(time);
                    if op.f == "read" {
                        op.value = e["value"].clone();
                    }
                    done.push(op);
                }
            }
            // A failed op wrote nothing; an info op may have written at any
            // later time, so reads of its value prove nothing.
            _ => {
                if let Some(op) = open.remove(&process) {
                    if e["type"] == "info" && op.f != "read" {
                        done.push(op);
                    }
                }
            }
        }
    }
    let writes: Vec<&Op> = done.iter().filter(|o| o.f != "read").collect();
    let mut stalest = 0i64;
    for r in done.iter().filter(|o| o.f == "read") {
        // When the value read was known written: 0 for the initial null.
        let written = if r.value.is_null() {
            Some(0)
        } else {
            writes
                .iter()
                .find(|w| w.key == r.key && w.value == r.value)
                .and_then(|w| w.completed)
        };
        let Some(written) = written else { continue };
        for w in &writes {
            if let Some(c) = w.completed {
                if w.key == r.key && w.value != r.value && w.invoked > written && c < r.invoked {
                    stalest = stalest.max(r.invoked - c);
                }
            }
        }
    }
    stalest as f64 / 1e6
}

#[test]
fn stalest_read_finds_a_read_behind_a_completed_write() {
    let h = [
        r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"write","key":"k","value":1}"#,
        r#"{"index":1,"time":10,"process":0,"type":"ok","f":"write","key":"k","value":1}"#,
        r#"{"index":2,"time":20,"process":0,"type":"invoke","f":"cas","key":"k","value":[1,2]}"#,
        r#"{"index":3,"time":1000000,"process":0,"type":"ok","f":"cas","key":"k","value":[1,2]}"#,
        r#"{"index":4,"time":2000000,"process":1,"type":"invoke","f":"read","key":"k","value":null}"#,
        r#"{"index":5,"time":2000001,"process":1,"type":"ok","f":"read","key":"k","value":1}"#,
        r#"{"index":6,"time":2000002,"process":1,"type":"invoke","f":"read","key":"k","value":null}"#,
        r#"{"index":7,"time":2000003,"process":1,"type":"ok","f":"read","key":"k","value":2}"#,
    ]
    .join("\n");
    // Read 1 a millisecond after cas 1 -> 2 completed; read 2 is fresh.
    assert_eq!(stalest_read_ms(&h), 1.0);
    // The cas began before the write ended: nothing proves read 1 stale.
    assert_eq!(
        stalest_read_ms(&h.replace(r#""time":20,"#, r#""time":5,"#)),
        0.0
    );
}

/// etcd's linearizable reads stay valid under pauses and kills.
#[test]
fn local_etcd_cluster_under_pauses_and_kills_is_valid() {
    if !etcd_on_path() {
        return;
    }
    let (code, out, _) = local_etcd_run("etcd-local", "pause,kill", 8, &["--seed", "4"]);
    assert_eq!(code, Some(0), "{out}");
}

/// etcd's linearizable reads stay valid under every network fault the
/// member proxies carry: partitions of every shape, one-way cuts, resets
/// and delays.
#[test]
fn local_etcd_linearizable_reads_under_network_faults_are_valid() {
    if !etcd_on_path() {
        return;
    }
    // Seed 378 first cuts etcd's leader off (a shape offered only when the
    // nemesis found the leader; at 1.5 s it always has), held 1.5 s: longer
    // than the client timeout, so the cut must leave ops in doubt (nothing
    // commits until the majority elects a new leader). Then a one-way cut,
    // and (if the leader was known at that draw) a reset.
    let (code, out, h) = local_etcd_run(
        "etcd-network",
        "partition,one-way,reset,delay",
        10,
        &["--seed", "378", "--client-timeout-ms", "500"],
    );
    assert_eq!(code, Some(0), "{out}");
    let first = h
        .lines()
        .find(|l| l.contains("\"f\":\"start-"))
        .unwrap_or_default();
    assert!(
        first.contains("\"shape\":\"isolate-leader\""),
        "the first fault is not an isolate-leader: {first}"
    );
    assert!(h.contains("\"f\":\"start-one-way\""), "no one-way cut");
    assert_eq!(stalest_read_ms(&h), 0.0, "a stale read in a valid run");
    assert!(
        in_doubt_during(&h, "isolate-leader") > 0,
        "cutting etcd's leader off left no op in doubt: was it cut?"
    );
}

/// How many client ops invoked while a partition of `shape` was in force
/// ended in doubt (`info`).
fn in_doubt_during(history: &str, shape: &str) -> usize {
    use serde_json::Value;
    let events: Vec<Value> = history
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut windows = Vec::new();
    let mut started = None;
    for e in events.iter().filter(|e| e["process"] == "nemesis") {
        if e["value"]["shape"] != shape {
            continue;
        }
        match e["f"].as_str() {
            Some("start-partition") => started = e["time"].as_i64(),
            Some("stop-partition") => {
                if let (Some(a), Some(b)) = (started.take(), e["time"].as_i64()) {
                    windows.push((a, b));
                }
            }
            _ => {}
        }
    }
    let mut invoked = std::collections::HashMap::new();
    let mut count = 0;
    for e in events.iter().filter(|e| e["process"] != "nemesis") {
        let process = e["process"].to_string();
        match e["type"].as_str() {
            Some("invoke") => {
                invoked.insert(process, e["time"].as_i64().unwrap_or(0));
            }
            Some("info") => {
                if let Some(t) = invoked.remove(&process) {
                    count += usize::from(windows.iter().any(|&(a, b)| a <= t && t <= b));
                }
            }
            _ => {
                invoked.remove(&process);
            }
        }
    }
    count
}

/// etcd's serializable reads are served from the contacted member's own
/// state: a member cut off by a partition keeps answering with what it had,
/// and the run must say so. The staleness shows the partition did it: a
/// healthy member lags by a heartbeat (100 ms) at most.
#[test]
fn local_etcd_serializable_reads_under_partitions_are_flagged() {
    if !etcd_on_path() {
        return;
    }
    // Seed 6 cuts a member off four times (halves, bridge, isolate-one,
    // bridge). A client whose write times out moves on under a new process
    // id, and so to another member: clients flee a cut-off member. Many
    // clients at a fixed rate, mostly reading, keep some of them reading
    // there late into each cut, when the others have long moved on.
    let (code, out, h) = local_etcd_run(
        "etcd-serializable",
        "partition",
        12,
        &[
            "--serializable",
            "--seed",
            "6",
            "--client-timeout-ms",
            "300",
            "--concurrency",
            "30",
            "--rate",
            "300",
            "--mix",
            "read=8,write=1,cas=1",
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("is not linearizable"), "{out}");
    assert!(out.contains("cannot linearize: process"), "{out}");
    let stale = stalest_read_ms(&h);
    assert!(stale >= 300.0, "stalest read only {stale} ms behind");
    eprintln!("stalest read: {stale:.0} ms behind");
}

/// A local etcd cluster under whole-cluster power losses through the
/// filesystem, with `extra` flags; returns the exit status, the output,
/// the history, the first member's log and how long the run took.
fn etcd_power_loss_run(
    tag: &str,
    extra: &[&str],
) -> (Option<i32>, String, String, String, Duration) {
    let s = store(tag);
    let started = Instant::now();
    let out = Command::new(synod_bin())
        .args(["run", "--store", s.to_str().unwrap(), "--target", "etcd"])
        .args(["--nemesis", "power-loss:all", "--nemesis-interval", "1.5"])
        .args(["--time-limit", "8", "--recovery", "3", "--seed", "1"])
        .args(["--ops-per-key", "1000"])
        .args(extra)
        .output()
        .unwrap();
    let took = started.elapsed();
    let h = history(&s.join("latest"));
    let log = std::fs::read_to_string(s.join("latest/nodes/n1.log")).unwrap_or_default();
    assert!(
        processes_mentioning(s.to_str().unwrap()).is_empty(),
        "etcd left behind"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    assert!(
        !mounts.contains(s.to_str().unwrap()),
        "a data directory is still mounted"
    );
    std::fs::remove_dir_all(&s).ok();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text, h, log, took)
}

/// Teeth for etcd: on a disk that acknowledges fsync and keeps nothing,
/// a whole-cluster power loss takes every acknowledged write with it.
#[test]
fn etcd_on_a_lying_disk_is_caught_within_60_s() {
    if !etcd_on_path() || !fuse_or_skip() {
        return;
    }
    let (code, out, h, _, took) = etcd_power_loss_run("etcd-lying", &["--lying-fsync"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("is not linearizable"), "{out}");
    assert!(power_losses_through_the_filesystem(&h) > 0);
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

/// The same run on the honest filesystem: etcd fsyncs its WAL before it
/// answers, so it loses nothing. `--etcd-arg` reaches every member.
#[test]
fn etcd_on_the_honest_filesystem_survives_power_losses() {
    if !etcd_on_path() || !fuse_or_skip() {
        return;
    }
    let (code, out, h, log, _) =
        etcd_power_loss_run("etcd-honest", &["--etcd-arg=--snapshot-count=4321"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(power_losses_through_the_filesystem(&h) > 0);
    assert!(
        log.contains("snapshot count = 4321"),
        "--etcd-arg did not reach etcd:\n{log}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The etcd target through its v3 JSON gateway, against a one-member etcd
/// started here (Debian's `etcd-server`), without faults.
#[test]
fn etcd_target_single_member_is_valid() {
    let Some(etcd) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    }) else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no etcd binary on PATH (apt-get install etcd-server)"
        );
        return;
    };
    let s = store("etcd");
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut member = Command::new(etcd)
        .args(["--name", "e1", "--data-dir"])
        .arg(s.join("etcd-data"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("e1={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = Command::new(synod_bin())
        .args(["run", "--store", s.to_str().unwrap(), "--target", "etcd"])
        .args(["--etcd-endpoints", &client_url, "--nemesis", "none"])
        .args(["--time-limit", "3", "--recovery", "0", "--concurrency", "4"])
        .output()
        .unwrap();
    let _ = member.kill();
    let _ = member.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(history(&s.join("latest")).contains("\"node\":\"e1\""));
    std::fs::remove_dir_all(&s).ok();
}

/// A local etcd under the new shapes its member proxies carry: chained
/// (one leader link cut), flap (one leader link cut and healed every
/// 100-500 ms) and a kill of the leader etcd's maintenance status names;
/// linearizable reads stay valid and the history shows each shape.
#[test]
fn local_etcd_under_chained_flap_and_kill_leader_is_valid() {
    if !etcd_on_path() {
        return;
    }
    // Seed 5 draws chained, flap, then kill:leader.
    let (code, out, h) = local_etcd_run(
        "etcd-shapes",
        "partition:chained,flap,kill:leader",
        10,
        &["--seed", "5"],
    );
    assert_eq!(code, Some(0), "{out}");
    let events = super::shapes::nemesis_events(&h);
    super::shapes::check_chained_and_flap(&events);
    let kills: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["f"] == "start-kill" && e["value"]["shape"] == "leader")
        .collect();
    assert!(!kills.is_empty(), "no kill:leader drawn: {events:?}");
    for k in kills {
        // etcd's status named a leader, and that is the node killed.
        let leader = k["value"]["leader"]
            .as_str()
            .expect("etcd reports its leader");
        assert_eq!(k["value"]["killed"], serde_json::json!([leader]), "{k}");
    }
}
