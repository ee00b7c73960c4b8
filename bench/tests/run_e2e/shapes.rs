//! The partial-connectivity partitions, `flap` and the kill shapes on
//! real clusters: Synod (5 nodes: quorum-loss and constrained; 3 nodes:
//! chained and flap) and a local etcd, each run valid, and its history
//! showing each fault with its shape and the links it cut.

use serde_json::Value;

use super::support::*;

/// The history's nemesis events, parsed.
pub fn nemesis_events(history: &str) -> Vec<Value> {
    history
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["process"] == "nemesis")
        .collect()
}

/// The events `f` whose value's shape is `shape`.
pub fn with_shape<'a>(events: &'a [Value], f: &str, shape: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["f"] == f && e["value"]["shape"] == shape)
        .collect()
}

/// The nodes `node` hears in a history's per-node `components`.
fn heard(components: &Value, node: &str) -> Vec<String> {
    components[node]
        .as_array()
        .unwrap_or_else(|| panic!("no view of {node} in {components}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn run_valid(tag: &str, extra: &[&str]) -> Option<String> {
    let (code, out, s) = real_run_kept(tag, extra)?;
    assert_eq!(code, Some(0), "not valid: {out}");
    assert!(out.contains("valid:"), "{out}");
    let h = history(&s.join("latest"));
    std::fs::remove_dir_all(&s).ok();
    Some(h)
}

/// Five Synod nodes under quorum-loss and constrained: the leader keeps
/// one peer (the hub, who hears everyone), or is cut off after one
/// follower was made to fall behind; linearizable either way.
#[test]
fn synod_five_nodes_under_quorum_loss_and_constrained_is_valid() {
    let Some(h) = run_valid(
        "shapes-five",
        &[
            "--nodes",
            "5",
            "--nemesis",
            "partition:quorum-loss,partition:constrained",
            "--nemesis-interval",
            "1",
            "--time-limit",
            "12",
            // Draws constrained, then quorum-loss, then both again.
            "--seed",
            "7",
        ],
    ) else {
        return;
    };
    let events = nemesis_events(&h);
    let lost = with_shape(&events, "start-partition", "quorum-loss");
    assert!(!lost.is_empty(), "no quorum-loss drawn: {events:?}");
    for e in &lost {
        let v = &e["value"];
        let leader = v["leader"].as_str().unwrap();
        let hub = v["hub"].as_str().unwrap();
        let mut want = vec![leader.to_string(), hub.to_string()];
        want.sort();
        assert_eq!(heard(&v["components"], leader), want, "{v}");
        assert_eq!(heard(&v["components"], hub).len(), 5, "{v}");
        assert_eq!(v["cut"].as_array().unwrap().len(), 3, "{v}");
    }
    let constrained = with_shape(&events, "start-partition", "constrained");
    assert!(!constrained.is_empty(), "no constrained drawn: {events:?}");
    let cuts = with_shape(&events, "change-partition", "constrained");
    assert!(!cuts.is_empty(), "constrained never cut the leader off");
    for e in &cuts {
        let v = &e["value"];
        assert_eq!(v["phase"], "constrained");
        let leader = v["leader"].as_str().unwrap();
        let behind = v["behind"].as_str().unwrap();
        assert_eq!(heard(&v["components"], leader), [leader], "{v}");
        assert_eq!(heard(&v["components"], behind).len(), 4, "{v}");
        for n in (1..=5).map(|i| format!("n{i}")) {
            if n != leader && n != behind {
                assert_eq!(heard(&v["components"], &n).len(), 2, "{v}");
            }
        }
    }
}

/// Three Synod nodes under chained (one leader link cut, the third node
/// reaching both ends) and flap (one leader link cut and healed every
/// 100-500 ms): linearizable, and the flap recorded as it moved.
#[test]
fn synod_three_nodes_under_chained_and_flap_is_valid() {
    let Some(h) = run_valid(
        "shapes-three",
        &[
            "--nodes",
            "3",
            "--nemesis",
            "partition:chained,flap",
            "--nemesis-interval",
            "1",
            "--time-limit",
            "12",
            // Draws chained, flap, chained, flap.
            "--seed",
            "7",
        ],
    ) else {
        return;
    };
    let events = nemesis_events(&h);
    check_chained_and_flap(&events);
}

/// What chained and flap must have left in a history.
pub fn check_chained_and_flap(events: &[Value]) {
    let chained = with_shape(events, "start-partition", "chained");
    assert!(!chained.is_empty(), "no chained drawn: {events:?}");
    for e in &chained {
        let v = &e["value"];
        assert_eq!(v["cut"].as_array().unwrap().len(), 1, "{v}");
        let cut = &v["cut"][0];
        let ends = [cut[0].as_str().unwrap(), cut[1].as_str().unwrap()];
        assert!(ends.contains(&v["leader"].as_str().unwrap()), "{v}");
        let middle: Vec<String> = (1..=3)
            .map(|i| format!("n{i}"))
            .filter(|n| !ends.contains(&n.as_str()))
            .collect();
        assert_eq!(heard(&v["components"], &middle[0]).len(), 3, "{v}");
    }
    let flaps: Vec<&Value> = events.iter().filter(|e| e["f"] == "start-flap").collect();
    assert!(!flaps.is_empty(), "no flap drawn: {events:?}");
    assert_eq!(
        events.iter().filter(|e| e["f"] == "stop-flap").count(),
        flaps.len(),
        "every flap healed"
    );
    let moves: Vec<&Value> = events.iter().filter(|e| e["f"] == "change-flap").collect();
    // A window of 1 s holds at least two moves of at most 500 ms (the
    // last window may be cut short by the time limit).
    assert!(moves.len() >= 2, "{moves:?}");
    assert!(moves.iter().any(|e| e["value"]["cut"] == false));
    assert!(moves.iter().any(|e| e["value"]["cut"] == true));
    for e in &moves {
        assert_eq!(e["value"]["link"].as_array().unwrap().len(), 2);
    }
}
