//! Shared support for the replica's unit tests, and the tests that drive
//! a whole cluster of replicas. Each role's tests live next to it.

use super::*;
use crate::types::{
    ClientReply, ClientRequest, ClientSeq, Command, KvOp, RequestId, RequestOutcome, Value,
};

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
    let mut nodes = elected_cluster();
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
    // Node 3 waits for nothing: it hears the commit point with the
    // leader's next heartbeat.
    assert_eq!(nodes[2].state().map.get("x"), None);
    let out = nodes[0].handle(Input::Tick { now: 10_100 });
    let msgs = out.send.into_iter().map(|o| (1, o.to, o.msg)).collect();
    settle(&mut nodes, msgs);
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

#[test]
fn a_commit_carried_by_new_accepts_is_not_announced_again() {
    let members = vec![1, 2, 3];
    let mut nodes: Vec<Replica> = members
        .iter()
        .map(|&id| {
            let mut cfg = Config::new(id, members.clone());
            // One slot in flight: the second write waits for the first.
            cfg.pipeline = 1;
            // Every accept goes to both followers.
            cfg.thrifty = false;
            Replica::new(cfg, id, 0)
        })
        .collect();
    let out = nodes[0].handle(Input::Tick { now: 10_000 });
    let election = out.send.into_iter().map(|o| (1, o.to, o.msg)).collect();
    settle(&mut nodes, election);
    assert!(nodes[0].is_leader());
    let write = |id, key: &str| {
        Input::Client(ClientRequest {
            id,
            dedup: None,
            op: KvOp::Write {
                key: key.into(),
                value: Value::Int(1),
            },
        })
    };
    let accept_of = |out: &Outputs, to: NodeId| {
        out.messages()
            .find(|(t, m)| *t == to && matches!(m, Message::Accept { .. }))
            .map(|(_, m)| m.clone())
            .expect("an accept")
    };
    let first = nodes[0].handle(write(1, "a"));
    let Message::Accept { slot, .. } = accept_of(&first, 2) else {
        unreachable!()
    };
    // The second write queues behind the first.
    let queued = nodes[0].handle(write(2, "b"));
    assert!(!queued
        .messages()
        .any(|(_, m)| matches!(m, Message::Accept { .. })));
    // Node 2's vote chooses the first slot; the second goes out at once,
    // carrying the new commit point, and no heartbeat repeats it.
    let vote = nodes[1].handle(Input::Message {
        from: 1,
        msg: accept_of(&first, 2),
    });
    let accepted = vote.send.into_iter().find(|o| o.to == 1).expect("a vote");
    let out = nodes[0].handle(Input::Message {
        from: 2,
        msg: accepted.msg,
    });
    let next = accept_of(&out, 3);
    assert!(
        matches!(next, Message::Accept { slot: s, commit, .. } if s == slot + 1 && commit == slot + 1),
        "{next:?}"
    );
    assert!(
        !out.messages()
            .any(|(_, m)| matches!(m, Message::Heartbeat { .. })),
        "the commit point went out twice: {:?}",
        msgs(&out)
    );
    // Node 3 learns the first write from that accept alone.
    nodes[2].handle(Input::Message {
        from: 1,
        msg: accept_of(&first, 3),
    });
    nodes[2].handle(Input::Message { from: 1, msg: next });
    assert_eq!(nodes[2].state().map.get("a"), Some(&Value::Int(1)));

    // With nothing left to propose, the next commit point waits for the
    // next heartbeat: no follower has a client waiting for it.
    let vote = nodes[1].handle(Input::Message {
        from: 1,
        msg: accept_of(&out, 2),
    });
    let accepted = vote.send.into_iter().find(|o| o.to == 1).expect("a vote");
    let out = nodes[0].handle(Input::Message {
        from: 2,
        msg: accepted.msg,
    });
    assert_eq!(out.replies.len(), 1, "the leader's client is answered");
    assert!(
        !out.messages()
            .any(|(_, m)| matches!(m, Message::Heartbeat { .. })),
        "announced to followers nobody waits on: {:?}",
        msgs(&out)
    );
    let out = nodes[0].handle(Input::Tick { now: 10_100 });
    assert!(out
        .messages()
        .any(|(to, m)| to == 3
            && matches!(m, Message::Heartbeat { commit, .. } if *commit == slot + 2)));
}

/// Elects node 1 among three replicas with default settings (its
/// election timer fires first).
fn elected_cluster() -> Vec<Replica> {
    elected_cluster_with(|_| {})
}

/// Elects node 1 among three replicas whose settings `tweak` changes.
fn elected_cluster_with(tweak: impl Fn(&mut Config)) -> Vec<Replica> {
    let members = vec![1, 2, 3];
    let mut nodes: Vec<Replica> = members
        .iter()
        .map(|&id| {
            let mut cfg = Config::new(id, members.clone());
            tweak(&mut cfg);
            Replica::new(cfg, id, 0)
        })
        .collect();
    let out = nodes[0].handle(Input::Tick { now: 10_000 });
    let election = out.send.into_iter().map(|o| (1, o.to, o.msg)).collect();
    settle(&mut nodes, election);
    assert!(nodes[0].is_leader());
    nodes
}

fn numbered_write(id: RequestId, seq: u64) -> Input {
    Input::Client(ClientRequest {
        id,
        dedup: Some(ClientSeq { client: 40, seq }),
        op: KvOp::Write {
            key: "x".into(),
            value: Value::Int(seq as i64),
        },
    })
}

#[test]
fn a_new_commit_point_is_announced_at_once_to_the_followers_whose_clients_wait() {
    // Both followers get the accept, so either vote chooses it.
    let mut nodes = elected_cluster_with(|c| c.thrifty = false);
    let out = nodes[1].handle(numbered_write(1, 1));
    let forward = out.send.into_iter().find(|o| o.to == 1).expect("forwarded");
    let out = nodes[0].handle(Input::Message {
        from: 2,
        msg: forward.msg,
    });
    let accept_to = |to| {
        out.send
            .iter()
            .find(|o| o.to == to)
            .map(|o| o.msg.clone())
            .expect("an accept")
    };
    // Node 2 holds the value (its vote is lost); node 3's vote chooses it.
    nodes[1].handle(Input::Message {
        from: 1,
        msg: accept_to(2),
    });
    let accept = accept_to(3);
    let vote = nodes[2].handle(Input::Message {
        from: 1,
        msg: accept,
    });
    let accepted = vote.send.into_iter().find(|o| o.to == 1).expect("a vote");
    let out = nodes[0].handle(Input::Message {
        from: 3,
        msg: accepted.msg,
    });
    let heartbeats: Vec<NodeId> = out
        .messages()
        .filter(|(_, m)| matches!(m, Message::Heartbeat { .. }))
        .map(|(to, _)| to)
        .collect();
    // Node 2 answers its client on hearing it; node 3 need not hear yet.
    assert_eq!(heartbeats, vec![2], "{:?}", msgs(&out));
    let hb = out.send.into_iter().find(|o| o.to == 2).expect("heartbeat");
    let out = nodes[1].handle(Input::Message {
        from: 1,
        msg: hb.msg,
    });
    assert_eq!(out.replies.len(), 1, "node 2's client is answered");
}

#[test]
fn a_numbered_command_forwarded_to_a_leader_that_lost_it_goes_to_the_next() {
    let mut nodes = elected_cluster();
    // Node 2 forwards two writes to node 1, which never gets them (or
    // drops them: it is no longer leader). One is numbered by its client.
    nodes[1].handle(numbered_write(1, 1));
    nodes[1].handle(Input::Client(ClientRequest {
        id: 2,
        dedup: None,
        op: KvOp::Write {
            key: "y".into(),
            value: Value::Int(2),
        },
    }));
    // Node 3 takes over and node 2 hears it.
    let b = Ballot::new(9, 3);
    let out = nodes[1].handle(Input::Message {
        from: 3,
        msg: Message::Heartbeat {
            ballot: b,
            commit: 0,
            sent_at: 0,
            term_start: 0,
        },
    });
    let forwarded: Vec<&Command> = out
        .messages()
        .filter_map(|(to, m)| match m {
            Message::Forward { commands } if to == 3 => Some(commands),
            _ => None,
        })
        .flatten()
        .collect();
    // Only the numbered write goes again: the state machine applies it
    // once even if node 1 did propose it. The other may have been chosen
    // already, so it stays with the old leader and ends indeterminate.
    assert_eq!(forwarded.len(), 1, "{:?}", msgs(&out));
    assert_eq!(forwarded[0].dedup, Some(ClientSeq { client: 40, seq: 1 }));
    // The same leader heard again, or two leaders heard in turn (a
    // heartbeat raises no promise, so the old one is still heard), send
    // nothing again.
    let old = match nodes[0]
        .handle(Input::Tick { now: 10_050 })
        .messages()
        .next()
    {
        Some((_, Message::Heartbeat { ballot, .. })) => *ballot,
        other => panic!("node 1 still leads: {other:?}"),
    };
    for (from, ballot) in [(3, b), (1, old), (3, b)] {
        let out = nodes[1].handle(Input::Message {
            from,
            msg: Message::Heartbeat {
                ballot,
                commit: 0,
                sent_at: 5,
                term_start: 0,
            },
        });
        assert!(
            !out.messages()
                .any(|(_, m)| matches!(m, Message::Forward { .. })),
            "after hearing {ballot} from {from}: {:?}",
            msgs(&out)
        );
    }
}

fn accepts_to(out: &Outputs) -> Vec<NodeId> {
    out.messages()
        .filter(|(_, m)| matches!(m, Message::Accept { .. }))
        .map(|(to, _)| to)
        .collect()
}

#[test]
fn a_thrifty_leader_asks_one_follower_and_the_other_only_if_no_vote_comes_by_the_heartbeat() {
    let mut nodes = elected_cluster();
    let write = |id| {
        Input::Client(ClientRequest {
            id,
            dedup: None,
            op: KvOp::Write {
                key: "t".into(),
                value: Value::Int(id as i64),
            },
        })
    };
    // Both followers were heard from at the same moment: the lower id.
    let out = nodes[0].handle(write(1));
    assert_eq!(accepts_to(&out), vec![2], "{:?}", msgs(&out));
    // Node 2 is silent. The heartbeat re-sends the unchosen slot to every
    // follower that has not voted, and node 3's vote chooses it.
    let out = nodes[0].handle(Input::Tick { now: 10_100 });
    assert_eq!(accepts_to(&out), vec![2, 3], "{:?}", msgs(&out));
    let to_3 = out
        .send
        .iter()
        .filter(|o| o.to == 3)
        .map(|o| (1, 3, o.msg.clone()))
        .collect();
    let replies = settle(&mut nodes, to_3);
    assert_eq!(replies.len(), 1, "the write is answered");
    // Node 3's vote chose it: the next slot goes to node 3 alone, even
    // though node 2 still answers heartbeats (a follower whose disk is
    // stuck acks them and never votes).
    let ack = Message::HeartbeatAck {
        ballot: Ballot::new(1, 1),
        sent_at: 10_100,
        commit: 0,
    };
    nodes[0].handle(Input::Tick { now: 10_150 });
    msg(&mut nodes[0], 2, ack);
    let out = nodes[0].handle(write(2));
    assert_eq!(accepts_to(&out), vec![3], "{:?}", msgs(&out));
    let sent = out.send.into_iter().map(|o| (1, o.to, o.msg)).collect();
    settle(&mut nodes, sent);
    // Node 2 never accepted either slot; it learns both by catching up
    // once a heartbeat tells it the commit point.
    assert_eq!(nodes[1].state().map.get("t"), None);
    let out = nodes[0].handle(Input::Tick { now: 10_200 });
    let sent = out.send.into_iter().map(|o| (1, o.to, o.msg)).collect();
    settle(&mut nodes, sent);
    for n in &nodes {
        assert_eq!(
            n.state().map.get("t"),
            Some(&Value::Int(2)),
            "node {}",
            n.id()
        );
    }
}

#[test]
fn a_thrifty_leader_sends_every_accept_to_a_follower_with_clients() {
    let mut nodes = elected_cluster();
    let out = nodes[2].handle(numbered_write(1, 1));
    let forward = out.send.into_iter().find(|o| o.to == 1).expect("forwarded");
    let out = nodes[0].handle(Input::Message {
        from: 3,
        msg: forward.msg,
    });
    // Node 2 for the majority, node 3 because the command is its client's.
    assert_eq!(accepts_to(&out), vec![2, 3], "{:?}", msgs(&out));
    // Node 2's vote chooses the slot, so node 2 stays the one asked.
    let mut sent: Vec<_> = out.send.into_iter().map(|o| (1, o.to, o.msg)).collect();
    sent.sort_by_key(|(_, to, _)| std::cmp::Reverse(*to));
    settle(&mut nodes, sent);
    // A slot of the leader's own clients goes to node 3 as well: it must
    // hold every slot below its next client's to answer it without
    // catching up.
    let out = nodes[0].handle(Input::Client(ClientRequest {
        id: 9,
        dedup: None,
        op: KvOp::Read { key: "t".into() },
    }));
    assert_eq!(accepts_to(&out), vec![2, 3], "{:?}", msgs(&out));
    let mut sent: Vec<_> = out.send.into_iter().map(|o| (1, o.to, o.msg)).collect();
    sent.sort_by_key(|(_, to, _)| std::cmp::Reverse(*to));
    settle(&mut nodes, sent);
    // Once its clients have been quiet for a request deadline, it no
    // longer does.
    for now in (10_100..=11_100).step_by(100) {
        let beat = nodes[0].handle(Input::Tick { now });
        let sent = beat.send.into_iter().map(|o| (1, o.to, o.msg)).collect();
        settle(&mut nodes, sent);
    }
    assert!(nodes[0].is_leader());
    let out = nodes[0].handle(Input::Client(ClientRequest {
        id: 10,
        dedup: None,
        op: KvOp::Read { key: "t".into() },
    }));
    assert_eq!(accepts_to(&out), vec![2], "{:?}", msgs(&out));
}

#[test]
fn without_thrifty_every_follower_gets_every_accept() {
    let mut nodes = elected_cluster_with(|c| c.thrifty = false);
    let out = nodes[0].handle(Input::Client(ClientRequest {
        id: 1,
        dedup: None,
        op: KvOp::Read { key: "t".into() },
    }));
    assert_eq!(accepts_to(&out), vec![2, 3], "{:?}", msgs(&out));
}
