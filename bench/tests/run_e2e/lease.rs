//! The lease trap: lease reads under clock skew beyond the drift bound
//! (admin clock and libfaketime) are caught, and the same runs with true
//! clocks stay valid.

use std::path::Path;

use super::support::*;

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
    lease_trap("teeth-lease", &[]);
}

/// The same trap with the clocks skewed by libfaketime preloaded into
/// every node instead of the node's admin clock: the mechanism any
/// libc-reading target gets catches the same bug.
#[test]
fn lease_reads_with_clock_skew_through_libfaketime_are_caught() {
    lease_trap("teeth-lease-faketime", &["--clock-fault", "faketime"]);
}

/// Runs the lease trap with `extra` flags and checks it was caught.
fn lease_trap(tag: &str, extra: &[&str]) {
    let mut args = LEASE_TRAP.to_vec();
    args.extend(["--nemesis", "clock:slow-leader+partition:isolate-leader"]);
    args.extend(extra);
    let Some((code, out, s)) = real_run_kept(tag, &args) else {
        return;
    };
    assert_ne!(code, Some(3), "the run itself failed:\n{out}");
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
    // The report's explanation involves a read the cut-off leader answered
    // from its lease while it was cut off. Which side of a stale read the
    // search names as "failing" is arbitrary (the stale read, or a later
    // read of the new value that cannot follow it), so the blamed read may
    // be the failing op or one of the ops concurrent with it. (Seen: the
    // failing op was a read of the new value, the stale reads of the
    // cut-off leader stood in its window.)
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let answered_by_cut_off_leader = |op: &serde_json::Value| {
        let invoke = op["invoke_index"].as_u64().unwrap();
        let invoked = events.iter().find(|e| e["index"] == invoke).unwrap();
        op["outcome"] == "ok"
            && op["description"]
                .as_str()
                .is_some_and(|d| d.starts_with("read"))
            && answered_while_cut_off(
                &cuts,
                &invoked["node"],
                op["call"].as_u64().unwrap(),
                op["ret"].as_u64().unwrap_or(u64::MAX),
            )
    };
    let stale_reads = results["explanations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| {
            std::iter::once(&x["failing"])
                .chain(x["window"].as_array().unwrap())
                .any(answered_by_cut_off_leader)
        })
        .count();
    assert!(
        stale_reads >= 1,
        "no explanation involves a read the cut-off leader answered:\n{out}"
    );
    if extra.contains(&"faketime") {
        // The skews went through libfaketime's control files.
        for k in 1..=3 {
            let control = run.join(format!("nodes/n{k}/faketime"));
            assert!(control.is_file(), "no {}", control.display());
        }
    }
    std::fs::remove_dir_all(&s).ok();
}

/// The control: the same workload and the same cut-off leader with true
/// clocks. The cut-off leader still answers reads from its lease, and they
/// are right, because its lease runs out before the majority elects a
/// successor.
#[test]
fn lease_reads_with_true_clocks_survive_a_cut_off_leader() {
    lease_control("lease-control", &[]);
}

/// The control with libfaketime preloaded into every node: the preload
/// alone breaks nothing, so the trap above is the skew's doing.
#[test]
fn lease_reads_under_libfaketime_with_true_clocks_survive() {
    lease_control("lease-control-faketime", &["--clock-fault", "faketime"]);
}

/// Runs the lease control with `extra` flags and checks it stayed valid
/// while the cut-off leader answered reads.
fn lease_control(tag: &str, extra: &[&str]) {
    let mut args = LEASE_TRAP.to_vec();
    args.extend(["--nemesis", "partition:isolate-leader"]);
    args.extend(extra);
    let Some((code, out, s)) = real_run_kept(tag, &args) else {
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
