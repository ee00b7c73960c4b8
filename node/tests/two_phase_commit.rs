//! Two-phase commit blocks, and shows it (issue 15): with the coordinator
//! down or cut off nothing completes until it returns; with one
//! participant down no write commits; after the coordinator restarts,
//! in-doubt participants learn the outcome and the cluster goes on. Each
//! scenario is scripted step by step through the server's durability
//! pipeline ([`synod_node::sim::script`]).

use synod_node::durability::PipelineBugs;
use synod_node::sim::script::{Pick, Script};
use synod_node::{KvOp, NodeId, Protocol, RequestId, RequestOutcome, Value};

fn cluster(n: usize) -> Script {
    Script::new(
        n,
        |c| c.protocol = Protocol::TwoPhaseCommit,
        PipelineBugs::default(),
    )
}

fn write(s: &mut Script, node: NodeId, key: &str, v: i64) -> RequestId {
    s.client(
        node,
        KvOp::Write {
            key: key.into(),
            value: Value::Int(v),
        },
    )
}

fn read(s: &mut Script, node: NodeId, key: &str) -> RequestId {
    s.client(node, KvOp::Read { key: key.into() })
}

fn ok(v: i64) -> RequestOutcome {
    RequestOutcome::Ok {
        value: Some(Value::Int(v)),
    }
}

/// Lets time pass with no loss, settling every node.
fn pass(s: &mut Script, ms: u64) {
    let until = s.now + ms;
    s.advance(until, |_| Pick::Deliver);
}

fn held(s: &Script, id: NodeId) -> usize {
    s.replica(id).status().in_flight
}

fn value_at(s: &Script, id: NodeId, key: &str) -> Option<Value> {
    s.replica(id).state().map.get(key).cloned()
}

#[test]
fn writes_cas_and_reads_commit_on_every_node() {
    let mut s = cluster(3);
    let w = write(&mut s, 1, "k", 1);
    let w2 = write(&mut s, 2, "j", 7);
    pass(&mut s, 100);
    assert_eq!(s.reply(1, w), Some(&ok(1)));
    assert_eq!(s.reply(2, w2), Some(&ok(7)));
    let c = s.client(
        3,
        KvOp::Cas {
            key: "k".into(),
            expected: Value::Int(1),
            new: Value::Int(2),
        },
    );
    let bad = s.client(
        2,
        KvOp::Cas {
            key: "j".into(),
            expected: Value::Int(1),
            new: Value::Int(2),
        },
    );
    pass(&mut s, 100);
    assert_eq!(s.reply(3, c), Some(&ok(2)));
    assert!(
        matches!(
            s.reply(2, bad),
            Some(RequestOutcome::CasMismatch {
                found: Some(Value::Int(7))
            })
        ),
        "{:?}",
        s.reply(2, bad)
    );
    let r = read(&mut s, 3, "k");
    pass(&mut s, 50);
    assert_eq!(s.reply(3, r), Some(&ok(2)));
    for id in 1..=3 {
        assert_eq!(value_at(&s, id, "k"), Some(Value::Int(2)), "node {id}");
        assert_eq!(held(&s, id), 0, "node {id} holds nothing");
    }
    assert!(s.replica(1).is_leader(), "node 1 coordinates");
}

/// The coordinator dies after the participants voted yes and before it
/// decided: they hold the key, in doubt. Nothing completes, anywhere,
/// until it is back; then the restarted coordinator (no commit record)
/// presumes abort, the participants learn it by asking, and writes go on.
#[test]
fn a_dead_coordinator_blocks_everything_until_it_restarts() {
    let mut s = cluster(3);
    let w = write(&mut s, 1, "k", 1);
    pass(&mut s, 100);
    assert_eq!(s.reply(1, w), Some(&ok(1)));

    // Prepares out, votes recorded and sent, then the coordinator dies
    // before any vote reaches it.
    let doomed = write(&mut s, 1, "k", 2);
    s.settle(1);
    s.deliver(|_| Pick::Deliver);
    s.settle(2);
    s.settle(3);
    assert_eq!(s.on_wire("2pc-vote"), [(2, 1), (3, 1)].into());
    s.crash(1, true);
    s.net.clear();
    assert_eq!((held(&s, 2), held(&s, 3)), (1, 1), "both in doubt");

    // Two seconds without a coordinator: nothing succeeds.
    let mut asked = Vec::new();
    for (node, i) in [(2, 0), (3, 1)] {
        asked.push((node, write(&mut s, node, "k", 10 + i)));
        asked.push((node, read(&mut s, node, "k")));
        asked.push((node, write(&mut s, node, "other", 20 + i)));
    }
    pass(&mut s, 2000);
    for &(node, rid) in &asked {
        let got = s.reply(node, rid);
        assert!(
            matches!(got, Some(RequestOutcome::Indeterminate { .. })),
            "request {rid} at node {node} without a coordinator: {got:?}"
        );
    }
    assert_eq!((held(&s, 2), held(&s, 3)), (1, 1), "still in doubt");
    assert!(
        s.reply(1, doomed).is_none(),
        "the dead coordinator never answered"
    );

    // The coordinator returns: the in-doubt participants ask and learn
    // the transaction aborted (no commit record: presumed abort).
    s.restart(1, s.now);
    pass(&mut s, 300);
    assert_eq!(
        (held(&s, 2), held(&s, 3)),
        (0, 0),
        "the outcome was learned"
    );
    for id in 1..=3 {
        assert_eq!(value_at(&s, id, "k"), Some(Value::Int(1)), "node {id}");
    }
    let w = write(&mut s, 2, "k", 3);
    let r = read(&mut s, 3, "other");
    pass(&mut s, 200);
    assert_eq!(s.reply(2, w), Some(&ok(3)));
    assert_eq!(
        s.reply(3, r),
        Some(&RequestOutcome::Ok { value: None }),
        "the blocked writes never happened"
    );
}

/// The coordinator dies after its commit record is durable but before any
/// participant heard the decision: after its restart the in-doubt
/// participants learn "commit" and apply the write.
#[test]
fn in_doubt_participants_learn_a_commit_from_the_restarted_coordinator() {
    let mut s = cluster(3);
    let w = write(&mut s, 1, "k", 5);
    s.settle(1);
    s.deliver(|_| Pick::Deliver);
    s.settle(2);
    s.settle(3);
    // The votes.
    s.deliver(|_| Pick::Deliver);
    s.settle(1); // the commit record is durable; decisions leave
    assert_eq!(s.reply(1, w), Some(&ok(5)));
    assert_eq!(s.on_wire("2pc-decision"), [(1, 2), (1, 3)].into());
    s.net.clear(); // the decisions are lost
    s.crash(1, true);
    assert_eq!((held(&s, 2), held(&s, 3)), (1, 1));
    assert_eq!(value_at(&s, 2, "k"), None);

    s.restart(1, s.now);
    assert_eq!(
        value_at(&s, 1, "k"),
        Some(Value::Int(5)),
        "rebuilt from its commit record"
    );
    pass(&mut s, 300);
    for id in 1..=3 {
        assert_eq!(value_at(&s, id, "k"), Some(Value::Int(5)), "node {id}");
        assert_eq!(held(&s, id), 0, "node {id}");
    }
}

/// A coordinator cut off from everyone (but up): its participants'
/// clients get nothing definite, and no write commits, until it heals.
#[test]
fn a_cut_off_coordinator_blocks_its_participants() {
    let mut s = cluster(3);
    let cut = |w: &(NodeId, NodeId, synod_node::Message)| {
        if w.0 == 1 || w.1 == 1 {
            Pick::Drop
        } else {
            Pick::Deliver
        }
    };
    let at2 = write(&mut s, 2, "k", 1);
    let at1 = write(&mut s, 1, "k", 2);
    let until = s.now + 1500;
    s.advance(until, cut);
    assert!(matches!(
        s.reply(2, at2),
        Some(RequestOutcome::Indeterminate { .. })
    ));
    assert!(
        matches!(s.reply(1, at1), Some(RequestOutcome::NotProposed { .. })),
        "the coordinator aborts what it cannot get votes for: {:?}",
        s.reply(1, at1)
    );
    pass(&mut s, 100);
    let w = write(&mut s, 2, "k", 3);
    pass(&mut s, 200);
    assert_eq!(s.reply(2, w), Some(&ok(3)));
}

/// With one participant down no write commits: the coordinator aborts
/// (a definite failure) while reads of committed state still work; once
/// the participant is back, writes commit again.
#[test]
fn a_dead_participant_blocks_every_write() {
    let mut s = cluster(3);
    let w = write(&mut s, 2, "k", 1);
    pass(&mut s, 100);
    assert_eq!(s.reply(2, w), Some(&ok(1)));
    s.crash(3, false);
    let mut writes = Vec::new();
    for i in 0..3 {
        writes.push((1, write(&mut s, 1, "k", 10 + i)));
        writes.push((2, write(&mut s, 2, "j", 20 + i)));
    }
    let r = read(&mut s, 2, "k");
    pass(&mut s, 1500);
    for &(node, rid) in &writes {
        let got = s.reply(node, rid);
        // The coordinator's own clients hear "aborted"; a participant's
        // may time out first (a forwarded command's outcome is unknown at
        // its deadline). None commits.
        let definite = matches!(got, Some(RequestOutcome::NotProposed { .. }));
        let unknown = matches!(got, Some(RequestOutcome::Indeterminate { .. }));
        assert!(
            definite || (node != 1 && unknown),
            "write {rid} at node {node} with a participant down: {got:?}"
        );
    }
    assert_eq!(
        s.reply(2, r),
        Some(&ok(1)),
        "reads of committed state go on"
    );
    assert_eq!(value_at(&s, 1, "j"), None);
    s.restart(3, s.now);
    let w = write(&mut s, 2, "j", 5);
    pass(&mut s, 200);
    assert_eq!(s.reply(2, w), Some(&ok(5)));
    assert_eq!(value_at(&s, 3, "j"), Some(Value::Int(5)));
}

/// Paxos messages sent to a 2PC node (and malformed or impossible 2PC
/// messages) are dropped, never acted on, never a panic.
#[test]
fn unexpected_peer_messages_are_dropped() {
    use synod_node::{Ballot, Message, TxnId};
    let mut s = cluster(3);
    let junk = [
        Message::Prepare {
            ballot: Ballot::new(1, 2),
            from_slot: 0,
        },
        Message::TpcVote {
            txn: TxnId { epoch: 1, seq: 0 },
            yes: true,
        },
        Message::TpcQuery {
            txn: TxnId {
                epoch: u64::MAX,
                seq: 0,
            },
        },
        Message::TpcDecision {
            txn: TxnId { epoch: 9, seq: 9 },
            commit: true,
        },
    ];
    for to in 1..=3 {
        for from in 1..=3 {
            for m in &junk {
                s.input(
                    to,
                    synod_node::Input::Message {
                        from,
                        msg: m.clone(),
                    },
                );
            }
        }
    }
    // A prepare of a read, from a participant rather than the coordinator.
    let cmd: synod_node::Command = serde_json::from_value(serde_json::json!({
        "id": {"node": 2, "boot": 1, "request": 1}, "op": {"op": "read", "key": "k"}
    }))
    .unwrap();
    let bogus = Message::TpcPrepare {
        txn: TxnId { epoch: 1, seq: 0 },
        command: cmd,
        last_commit: None,
    };
    s.input(
        3,
        synod_node::Input::Message {
            from: 1,
            msg: bogus.clone(),
        },
    );
    s.input(
        3,
        synod_node::Input::Message {
            from: 2,
            msg: bogus,
        },
    );
    pass(&mut s, 50);
    assert_eq!(held(&s, 3), 0);
    let w = write(&mut s, 3, "k", 1);
    pass(&mut s, 100);
    assert_eq!(s.reply(3, w), Some(&ok(1)));
}
