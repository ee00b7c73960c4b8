//! Scripted runs: a cluster driven one step at a time through the same
//! durability pipeline as the server and the simulation, so a regression
//! test can pin one interleaving exactly (which inputs form a batch, when
//! the disk thread takes a set, when its fsync returns, when a node dies)
//! and assert that the interleaving really happened.
//!
//! Nothing is random and nothing moves by itself: messages wait in
//! [`Script::net`] until a test delivers them, and time is whatever the
//! test's ticks say.

use std::collections::BTreeSet;

use crate::config::Config;
use crate::durability::{self, Group, Lsn, Pipeline, PipelineBugs, Release};
use crate::message::Message;
use crate::replica::{Input, Outputs, Replica};
use crate::storage::{MemStorage, Record, Recovered, Storage};
use crate::types::{Ballot, ClientReply, ClientRequest, KvOp, NodeId, RequestId, RequestOutcome};

/// A message on the wire: from, to, what.
pub type Wire = (NodeId, NodeId, Message);

/// One node of a scripted cluster.
pub struct ScriptNode {
    pub replica: Option<Replica>,
    cfg: Config,
    /// What the replica task has handled since its last ship.
    out: Outputs,
    /// Groups shipped, not yet taken by the disk thread.
    pub queued: Vec<Group<ClientReply>>,
    pub pipeline: Pipeline<MemStorage, ClientReply>,
    bugs: PipelineBugs,
    /// Sizes of the sets its disk thread took, in groups.
    pub sets: Vec<usize>,
}

/// A cluster under a test's control.
pub struct Script {
    pub nodes: Vec<ScriptNode>,
    /// Paused nodes: not ticked, and their messages wait on the wire.
    pub paused: BTreeSet<NodeId>,
    /// The time [`Self::advance`] has reached.
    pub now: u64,
    /// Messages released and not yet delivered (or dropped).
    pub net: Vec<Wire>,
    /// Client replies released, by node.
    pub replies: Vec<(NodeId, ClientReply)>,
    next_request: RequestId,
    seed: u64,
}

impl Script {
    /// A cluster of `n` nodes; `tune` adjusts each node's configuration.
    pub fn new(n: usize, tune: impl Fn(&mut Config), bugs: PipelineBugs) -> Script {
        Self::with_seed(n, 0, tune, bugs)
    }

    /// The same with the replicas' own randomness (election timeouts)
    /// drawn from `seed`.
    pub fn with_seed(
        n: usize,
        seed: u64,
        tune: impl Fn(&mut Config),
        bugs: PipelineBugs,
    ) -> Script {
        let members: Vec<NodeId> = (1..=n as NodeId).collect();
        let nodes = members
            .iter()
            .map(|&id| {
                let mut cfg = Config::new(id, members.clone());
                tune(&mut cfg);
                let disk = MemStorage::new(cfg.fsync);
                ScriptNode {
                    replica: Some(Replica::recover(
                        cfg.clone(),
                        seed * 100 + id,
                        Recovered::default(),
                        0,
                    )),
                    pipeline: Pipeline::new(disk, cfg.fsync).with_bugs(bugs),
                    cfg,
                    out: Outputs::default(),
                    queued: Vec::new(),
                    bugs,
                    sets: Vec::new(),
                }
            })
            .collect();
        Script {
            nodes,
            paused: BTreeSet::new(),
            now: 0,
            net: Vec::new(),
            replies: Vec::new(),
            next_request: 1,
            seed: seed * 100 + 1000,
        }
    }

    fn node(&mut self, id: NodeId) -> &mut ScriptNode {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn replica(&self, id: NodeId) -> &Replica {
        self.nodes[(id - 1) as usize]
            .replica
            .as_ref()
            .expect("the node is up")
    }

    /// The replica task handles one input (into its current batch).
    pub fn input(&mut self, id: NodeId, input: Input) {
        let n = self.node(id);
        let r = n.replica.as_mut().expect("the node is up");
        r.handle_into(input, &mut n.out);
    }

    pub fn tick(&mut self, id: NodeId, now: u64) {
        self.input(id, Input::Tick { now });
    }

    /// A client request at node `id`; returns its request id.
    pub fn client(&mut self, id: NodeId, op: KvOp) -> RequestId {
        let rid = self.next_request;
        self.next_request += 1;
        self.input(
            id,
            Input::Client(ClientRequest {
                id: rid,
                dedup: None,
                op,
            }),
        );
        rid
    }

    /// The replica task ships its batch: what the durable point covers
    /// leaves now, the rest waits in a group for the disk thread.
    pub fn ship(&mut self, id: NodeId) {
        let n = self.node(id);
        let mut now = Vec::new();
        let group = durability::split(&mut n.out, n.pipeline.durable(), Some, |r, _| now.push(r));
        if let Some(g) = group {
            n.queued.push(g);
        }
        self.released(id, now);
    }

    /// The disk thread takes every queued group as one set (it does not
    /// sync: see [`Self::sync`]).
    pub fn take(&mut self, id: NodeId) {
        let n = self.node(id);
        let set = std::mem::take(&mut n.queued);
        n.sets.push(set.len());
        let mut out = Vec::new();
        n.pipeline
            .take(set, &mut |r, _| out.push(r))
            .expect("the memory disk cannot fail");
        self.released(id, out);
    }

    /// The disk thread's fsync returns.
    pub fn sync(&mut self, id: NodeId) {
        let n = self.node(id);
        let mut out = Vec::new();
        n.pipeline
            .sync(&mut |r, _| out.push(r))
            .expect("the memory disk cannot fail");
        self.released(id, out);
    }

    /// Ship, take and sync: node `id` settles everything it has.
    pub fn settle(&mut self, id: NodeId) {
        self.ship(id);
        self.take(id);
        self.sync(id);
    }

    fn released(&mut self, id: NodeId, out: Vec<Release<ClientReply>>) {
        for r in out {
            match r {
                Release::Message(to, m) => self.net.push((id, to, m)),
                Release::Reply(r) => self.replies.push((id, r)),
            }
        }
    }

    /// Delivers (as inputs, into the receivers' batches) every message on
    /// the wire that `pick` selects; drops those `pick` says to drop.
    pub fn deliver(&mut self, mut pick: impl FnMut(&Wire) -> Pick) {
        let net = std::mem::take(&mut self.net);
        for w in net {
            match pick(&w) {
                Pick::Deliver => {
                    let (from, to, msg) = w;
                    if self.nodes[(to - 1) as usize].replica.is_some() {
                        self.input(to, Input::Message { from, msg });
                    }
                }
                Pick::Keep => self.net.push(w),
                Pick::Drop => {}
            }
        }
    }

    /// Delivers and settles until nothing is on the wire (no loss), except
    /// what `pick` keeps or drops.
    pub fn run(&mut self, mut pick: impl FnMut(&Wire) -> Pick) {
        for _ in 0..1000 {
            let before = self.net.len();
            self.deliver(&mut pick);
            let ids: Vec<NodeId> = self.up();
            for id in ids {
                self.settle(id);
            }
            if self.net.iter().all(|w| pick(w) != Pick::Deliver) && self.net.len() <= before {
                return;
            }
        }
        panic!("the scripted cluster did not quiesce");
    }

    /// Lets time pass up to `until` as the server would: every 5 ms each
    /// node that is up and not paused ticks and settles, and the messages
    /// `pick` lets through are delivered (messages to paused nodes wait).
    pub fn advance(&mut self, until: u64, mut pick: impl FnMut(&Wire) -> Pick) {
        while self.now < until {
            self.now = (self.now + 5).min(until);
            let now = self.now;
            let awake: Vec<NodeId> = self
                .up()
                .into_iter()
                .filter(|id| !self.paused.contains(id))
                .collect();
            for &id in &awake {
                self.tick(id, now);
                self.settle(id);
            }
            let paused = self.paused.clone();
            self.deliver(|w| {
                if paused.contains(&w.1) {
                    Pick::Keep
                } else {
                    pick(w)
                }
            });
            for &id in &awake {
                self.settle(id);
            }
        }
    }

    /// The node that leads with the highest ballot, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.up()
            .into_iter()
            .filter_map(|id| self.replica(id).leader_ballot().map(|b| (b, id)))
            .max()
            .map(|(_, id)| id)
    }

    /// Nodes that are up.
    pub fn up(&self) -> Vec<NodeId> {
        (1..=self.nodes.len() as NodeId)
            .filter(|&id| self.nodes[(id - 1) as usize].replica.is_some())
            .collect()
    }

    /// Kills node `id` (a power loss too, if `power`): its batch, the
    /// groups its disk thread had not taken, and what its disk had not
    /// flushed (or synced) are gone.
    pub fn crash(&mut self, id: NodeId, power: bool) {
        let n = self.node(id);
        n.replica = None;
        n.out = Outputs::default();
        n.queued.clear();
        let fresh = Pipeline::new(MemStorage::new(n.cfg.fsync), n.cfg.fsync);
        let mut disk = std::mem::replace(&mut n.pipeline, fresh).into_storage();
        disk.kill();
        if power {
            disk.power_loss();
        }
        n.pipeline = Pipeline::new(disk, n.cfg.fsync).with_bugs(n.bugs);
    }

    /// Starts node `id` again on what its disk kept, at time `now`.
    pub fn restart(&mut self, id: NodeId, now: u64) {
        self.seed += 1;
        let seed = self.seed;
        let n = self.node(id);
        let recovered = n
            .pipeline
            .storage_mut()
            .load()
            .expect("the memory disk cannot fail");
        n.replica = Some(Replica::recover(n.cfg.clone(), seed, recovered, now));
    }

    /// Node `id` lost its disk (synced records too) and starts again at
    /// `now` on an empty one: with `rejoin`, as `synod-node --rejoin`
    /// starts it (the rejoin floor its shell computed from the other
    /// members' promises, synced before anything else); without, as a
    /// fresh acceptor, which is what the server refuses since bug 4 of
    /// issue 11 and what a test shows the damage of.
    pub fn restart_on_a_lost_disk(&mut self, id: NodeId, rejoin: Option<Ballot>, now: u64) {
        self.crash(id, true);
        let n = self.node(id);
        let mut disk = MemStorage::new(n.cfg.fsync);
        if let Some(floor) = rejoin {
            disk.append(&[Record::Rejoin { floor }])
                .and_then(|()| disk.sync())
                .expect("the memory disk cannot fail");
        }
        n.pipeline = Pipeline::new(disk, n.cfg.fsync).with_bugs(n.bugs);
        self.restart(id, now);
    }

    /// What node `id`'s disk holds now, at every level.
    pub fn disk(&mut self, id: NodeId) -> Recovered {
        self.node(id)
            .pipeline
            .storage_mut()
            .load()
            .expect("the memory disk cannot fail")
    }

    /// Elects node `leader` with every node's help (ticks at `now`, no
    /// loss), settling every disk.
    pub fn elect(&mut self, leader: NodeId, now: u64) {
        self.tick(leader, now);
        self.settle(leader);
        self.run(|_| Pick::Deliver);
        assert!(
            self.replica(leader).is_leader(),
            "node {leader} was elected"
        );
    }

    /// The outcome released for request `rid` at node `id`, if any.
    pub fn reply(&self, id: NodeId, rid: RequestId) -> Option<&RequestOutcome> {
        self.replies
            .iter()
            .find(|(n, r)| *n == id && r.id == rid)
            .map(|(_, r)| &r.outcome)
    }

    /// The durable point of node `id`.
    pub fn durable(&self, id: NodeId) -> Lsn {
        self.nodes[(id - 1) as usize].pipeline.durable()
    }

    /// The nodes a message on the wire is for, of one kind.
    pub fn on_wire(&self, kind: &str) -> BTreeSet<(NodeId, NodeId)> {
        self.net
            .iter()
            .filter(|(_, _, m)| m.kind() == kind)
            .map(|(f, t, _)| (*f, *t))
            .collect()
    }
}

/// What [`Script::deliver`] does with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    Deliver,
    Keep,
    Drop,
}
