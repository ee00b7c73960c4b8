//! `synod run` end to end, through the built binary.
//!
//! Against the fake node (`examples/fake_node.rs`, built by `cargo test`)
//! these exercise the runner itself: cluster up behind proxies, faults in
//! the history, the store layout, and teardown on SIGTERM in the middle of
//! a fault. Against the real `synod-node` (when it has been built next to
//! `synod`), a short default chaos run. Against a local etcd cluster (when
//! Debian's `etcd` is on PATH), linearizable reads stay valid under every
//! network fault and serializable reads are caught stale under partitions.
//! A test whose binary is missing says so and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn synod_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_synod"))
}

fn fake_node() -> Option<PathBuf> {
    let p = synod_bin().parent()?.join("examples").join("fake_node");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: the fake node is not built at {} (run `cargo test -p synod-bench` without a --test filter)",
            p.display()
        );
        None
    }
}

fn real_node() -> Option<PathBuf> {
    let p = synod_bin().parent()?.join("synod-node");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: synod-node is not built at {} (cargo build --workspace); the real-node run waits for it",
            p.display()
        );
        None
    }
}

fn store(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synod-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Processes (not zombies) whose command line mentions `needle`, with
/// their state letter from /proc (`T` = stopped).
fn processes_mentioning(needle: &str) -> Vec<(u32, char)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(needle) {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim().chars().next())
            .unwrap_or('?');
        if state != 'Z' {
            found.push((pid, state));
        }
    }
    found
}

fn history(run: &Path) -> String {
    std::fs::read_to_string(run.join("history.jsonl")).unwrap_or_default()
}

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
    std::fs::remove_dir_all(&s).ok();
}

/// Runs the real node with `extra` flags and returns the exit status and
/// stdout; `None` (skipped) if the node is not built.
fn real_run(tag: &str, extra: &[&str]) -> Option<(Option<i32>, String)> {
    let (code, out, s) = real_run_kept(tag, extra)?;
    std::fs::remove_dir_all(&s).ok();
    Some((code, out))
}

/// Like [`real_run`], but keeps the store (returned last) for the test to
/// read the run directory, `STORE/latest`, and remove it.
fn real_run_kept(tag: &str, extra: &[&str]) -> Option<(Option<i32>, String, PathBuf)> {
    let node = real_node()?;
    let s = store(tag);
    let out = Command::new(synod_bin())
        .args(["run", "--store", s.to_str().unwrap(), "--recovery", "3"])
        .args(extra)
        .env("SYNOD_NODE_BIN", &node)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        processes_mentioning(s.to_str().unwrap()).is_empty(),
        "nodes left behind"
    );
    Some((out.status.code(), stdout + &stderr, s))
}

/// Teeth: `--reads local` answers from any replica's own state, which a
/// partition (or plain lag) makes stale; the run must say invalid.
#[test]
fn local_reads_under_partitions_are_caught() {
    let Some((code, out)) = real_run(
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
}

/// Teeth: with `--fsync never` a power loss of the whole cluster loses
/// acknowledged writes; the run must say invalid. (Seed 2 draws
/// whole-cluster power losses within the time limit.)
#[test]
fn unsynced_writes_lost_on_power_loss_are_caught() {
    let Some((code, out)) = real_run(
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
}

/// The lease trap, and the workload that walks into it. Every 1.5 s the
/// leader's clock drops to 0.2-0.35x and every other clock speeds to 2-3x,
/// and at the same moment the leader is cut off: its 250 ms lease (a 300
/// ms election timeout less the 50 ms drift bound) lasts about a second of
/// real time, while the fast majority stops deferring to it within ~150 ms
/// and elects a successor that takes writes. A closed-loop client stuck on
/// a write to the cut-off leader reads nothing until its timeout, so the
/// clients time out after 300 ms (and move to another node) and mostly
/// read: some read at the old leader while its lease still looks valid.
const LEASE_TRAP: [&str; 14] = [
    "--reads",
    "lease",
    "--nemesis-interval",
    "1.5",
    "--time-limit",
    "12",
    "--client-timeout-ms",
    "300",
    "--concurrency",
    "20",
    "--mix",
    "read=6,write=1,cas=1",
    "--seed",
    "1",
];

/// A partition in force: `(start, stop)` in ns and the node cut off.
struct Cut {
    from_ns: u64,
    to_ns: u64,
    node: String,
}

/// The `isolate-leader` partitions of a history.
fn cuts(events: &[serde_json::Value]) -> Vec<Cut> {
    let mut cuts: Vec<Cut> = Vec::new();
    for e in events {
        let node = e["value"]["components"][0][0].as_str().unwrap_or_default();
        let t = e["time"].as_u64().unwrap();
        match e["f"].as_str() {
            Some("start-partition") => {
                assert_eq!(e["value"]["shape"], "isolate-leader", "{e}");
                cuts.push(Cut {
                    from_ns: t,
                    to_ns: u64::MAX,
                    node: node.to_string(),
                });
            }
            Some("stop-partition") => {
                if let Some(c) = cuts.iter_mut().rev().find(|c| c.node == node) {
                    c.to_ns = c.to_ns.min(t);
                }
            }
            _ => {}
        }
    }
    cuts
}

fn events(run: &Path) -> Vec<serde_json::Value> {
    history(run)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether `invoked_ns` and `done_ns` both fall in a cut of `node`: an op
/// that node answered while it was cut off.
fn answered_while_cut_off(
    cuts: &[Cut],
    node: &serde_json::Value,
    invoked_ns: u64,
    done_ns: u64,
) -> bool {
    cuts.iter()
        .any(|c| node.as_str() == Some(&c.node) && c.from_ns <= invoked_ns && done_ns < c.to_ns)
}

/// Teeth: `--reads lease` is linearizable only while clocks drift less
/// than the lease's drift bound. `clock:slow-leader+partition:isolate-leader`
/// breaks that bound and cuts the slow leader off at once; the run must say
/// invalid, and the report must blame a read that the cut-off leader
/// answered while a new majority took writes.
#[test]
fn lease_reads_with_clock_skew_beyond_the_bound_are_caught() {
    let mut args = LEASE_TRAP.to_vec();
    args.extend(["--nemesis", "clock:slow-leader+partition:isolate-leader"]);
    let Some((code, out, s)) = real_run_kept("teeth-lease", &args) else {
        return;
    };
    let run = s.join("latest");
    let events = events(&run);
    // The trap lined up: every cut-off node is the one whose clock was
    // slowed at the same moment, every other clock fast.
    let cuts = cuts(&events);
    assert!(cuts.len() >= 3, "{} partitions in 12 s", cuts.len());
    for c in &cuts {
        let clock = events
            .iter()
            .find(|e| {
                e["f"] == "start-clock"
                    && e["time"].as_u64().unwrap().abs_diff(c.from_ns) < 1_000_000
            })
            .unwrap_or_else(|| panic!("no clock skew started with the cut at {}", c.from_ns));
        for (node, skew) in clock["value"].as_object().unwrap() {
            let rate = skew["rate"].as_f64().unwrap();
            if *node == c.node {
                assert!(rate < 0.4, "the cut-off {node} runs at {rate}x");
            } else {
                assert!(rate >= 2.0, "{node} of the majority runs at {rate}x");
            }
        }
    }
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not linearizable"), "{out}");
    // The report's explanation names a read the cut-off leader answered
    // from its lease while it was cut off.
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let stale_reads = results["explanations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| {
            let failing = &x["failing"];
            let invoke = failing["invoke_index"].as_u64().unwrap();
            let invoked = events.iter().find(|e| e["index"] == invoke).unwrap();
            failing["description"]
                .as_str()
                .is_some_and(|d| d.starts_with("read"))
                && answered_while_cut_off(
                    &cuts,
                    &invoked["node"],
                    failing["call"].as_u64().unwrap(),
                    failing["ret"].as_u64().unwrap_or(u64::MAX),
                )
        })
        .count();
    assert!(
        stale_reads >= 1,
        "no explanation blames a read the cut-off leader answered:\n{out}"
    );
    std::fs::remove_dir_all(&s).ok();
}

/// The control: the same workload and the same cut-off leader with true
/// clocks. The cut-off leader still answers reads from its lease, and they
/// are right, because its lease runs out before the majority elects a
/// successor.
#[test]
fn lease_reads_with_true_clocks_survive_a_cut_off_leader() {
    let mut args = LEASE_TRAP.to_vec();
    args.extend(["--nemesis", "partition:isolate-leader"]);
    let Some((code, out, s)) = real_run_kept("lease-control", &args) else {
        return;
    };
    assert_eq!(code, Some(0), "{out}");
    // Not vacuous: the cut-off leader did answer reads while cut off.
    let events = events(&s.join("latest"));
    let cuts = cuts(&events);
    let mut invoked_at = std::collections::HashMap::new();
    let mut lease_reads = 0;
    for e in &events {
        let p = e["process"].as_u64();
        match e["type"].as_str() {
            Some("invoke") => {
                invoked_at.insert(p, e["time"].as_u64().unwrap());
            }
            Some("ok") if e["f"] == "read" => {
                let done = e["time"].as_u64().unwrap();
                if answered_while_cut_off(&cuts, &e["node"], invoked_at[&p], done) {
                    lease_reads += 1;
                }
            }
            _ => {}
        }
    }
    assert!(
        lease_reads > 0,
        "the cut-off leader answered no read while cut off"
    );
    std::fs::remove_dir_all(&s).ok();
}

fn etcd_on_path() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("etcd").is_file()));
    if !found {
        eprintln!("SKIPPED: no etcd binary on PATH (apt-get install etcd-server)");
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
        eprintln!("SKIPPED: no etcd binary on PATH (apt-get install etcd-server)");
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
