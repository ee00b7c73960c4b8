//! Shared support for the replica's unit tests, and the tests that drive
//! a whole cluster of replicas. Each role's tests live next to it.

use super::*;
use crate::types::{ClientReply, ClientRequest, KvOp, RequestOutcome, Value};

/// Delivers messages among replicas until quiet (no loss, in order).
fn settle(nodes: &mut [Replica], mut pending: Vec<(NodeId, NodeId, Message)>) -> Vec<ClientReply> {
    let mut replies = Vec::new();
    while let Some((from, to, msg)) = pending.pop() {
        let r = &mut nodes[(to - 1) as usize];
        let out = r.handle(Input::Message { from, msg });
        replies.extend(out.replies);
        pending.extend(out.send.into_iter().map(|o| (to, o.to, o.msg)));
    }
    replies
}

#[test]
fn three_replicas_elect_a_leader_and_apply_a_write() {
    let members = vec![1, 2, 3];
    let mut nodes: Vec<Replica> = members
        .iter()
        .map(|&id| Replica::new(Config::new(id, members.clone()), id, 0))
        .collect();
    // Node 1's election timer fires first.
    let out = nodes[0].handle(Input::Tick { now: 10_000 });
    let msgs = out.send.into_iter().map(|o| (1, o.to, o.msg)).collect();
    settle(&mut nodes, msgs);
    assert!(nodes[0].is_leader());
    let out = nodes[1].handle(Input::Client(ClientRequest {
        id: 7,
        dedup: None,
        op: KvOp::Write {
            key: "x".into(),
            value: Value::Int(1),
        },
    }));
    let msgs = out.send.into_iter().map(|o| (2, o.to, o.msg)).collect();
    let replies = settle(&mut nodes, msgs);
    assert_eq!(
        replies.into_iter().map(|r| r.outcome).collect::<Vec<_>>(),
        vec![RequestOutcome::Ok {
            value: Some(Value::Int(1))
        }]
    );
    for n in &nodes {
        assert_eq!(
            n.state().map.get("x"),
            Some(&Value::Int(1)),
            "node {}",
            n.id()
        );
    }
}

pub(super) fn replica(id: NodeId) -> Replica {
    Replica::new(Config::new(id, vec![1, 2, 3]), id, 0)
}

pub(super) fn msgs(out: &Outputs) -> Vec<(NodeId, &Message)> {
    out.messages().collect()
}

pub(super) fn msg(r: &mut Replica, from: NodeId, m: Message) -> Outputs {
    r.handle(Input::Message { from, msg: m })
}
