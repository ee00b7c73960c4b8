//! The replica: Multi-Paxos as a pure state machine.
//!
//! # The algorithm
//!
//! Each log slot is one instance of Paxos. A value is *chosen* in a slot
//! when a majority of acceptors accept it at the same ballot. Ballots are
//! `(round, node)`: unique per proposer, totally ordered.
//!
//! *Phase 1.* A node that wants to lead picks a ballot above every round
//! it has ever promised, persists its own promise to it, and sends
//! `Prepare(b, from_slot)` once for every slot from its first unchosen one.
//! An acceptor promises only a ballot higher than any it promised (P1a);
//! its `Promise` reports, for every slot from `from_slot`, the
//! highest-numbered proposal it accepted. With promises from a majority the
//! candidate is leader; for each slot it proposes the value of the
//! highest-numbered proposal reported (P2c: this is what makes a chosen
//! value stick), and a no-op where nothing was reported, filling gaps.
//!
//! *Phase 2.* The leader sends `Accept(b, slot, entry)`; an acceptor
//! accepts unless it promised a higher ballot (P2a/P1a). Up to `pipeline`
//! slots are in flight at once, each carrying a batch of up to
//! `batch_size` client commands. A stable leader skips phase 1 for every
//! later slot: its one prepare covered them all.
//!
//! *Learning.* With `learn=leader` acceptors answer the leader, which
//! counts, and announces its commit point (every slot below is chosen) in
//! accepts and heartbeats; a follower marks a slot chosen when the entry
//! it accepted there carries the leader's ballot (one ballot proposes one
//! value per slot). With `learn=all` every acceptor tells every node, and
//! each counts for itself. A node that lacks chosen entries asks a peer
//! (`CatchUp`) and gets them, or a snapshot when the peer compacted them.
//!
//! *Leadership.* The leader heartbeats; a follower that hears nothing for
//! a random time in `[T, 2T]` campaigns; a leader that has not heard from
//! a majority for `T` steps down. With `proposers=any` there is no
//! election: every node campaigns for its own clients and, preempted,
//! backs off for a random, exponentially growing time.
//!
//! *Reads* go through the log (`log`), are answered by a leader holding a
//! lease (`lease`: a majority acked a heartbeat sent at `t`, and each of
//! them refuses other candidates' prepares for `T` after hearing it, so
//! the leader may answer until `t + T - drift`), or from any replica's
//! state (`local`, unsafe on purpose).
//!
//! # Driving it (the shell's contract)
//!
//! The replica does no I/O and reads no clock. A shell (the HTTP server,
//! or the simulation) feeds it [`Input`]s one at a time and acts on the
//! [`Outputs`]:
//!
//! 1. Call [`Replica::handle`] for each input: a peer message, a client
//!    request, or a `Tick` carrying the node's clock in milliseconds (tick
//!    every few milliseconds; timers, heartbeats, elections and request
//!    deadlines all run off ticks).
//! 2. **Persist before send.** Append `outputs.persist` to storage and
//!    make it durable ([`crate::storage::Storage::sync`]) before releasing
//!    `outputs.send` and `outputs.replies` of the same call *and of every
//!    later call*. Group commit: handle many inputs, append all their
//!    records, sync once, then release all their messages and replies in
//!    order. Then apply `outputs.compact`, if any.
//! 3. Send each `(to, message)` (lost messages are fine), and answer each
//!    client reply by its [`RequestId`].
//!
//! Every client request gets exactly one reply, at the latest when its
//! deadline (`request_timeout_ms`) passes on a tick: `NotProposed` if it
//! never left this node, `Indeterminate` if it was proposed or forwarded.
//! A follower forwards client commands to the leader it knows (a `Forward`
//! message); the command carries this node's id, and this node replies
//! when it learns the command was chosen and applies it.
//!
//! On restart, build the replica with [`Replica::recover`] from what
//! [`crate::storage::Storage::load`] returned.
//!
//! Details a shell may rely on:
//!
//! - There is no "storage done" input: the ordering above (records of a
//!   call durable before the messages and replies of that call or any
//!   later one leave) is the whole contract, and group commit satisfies
//!   it by construction.
//! - Messages to the node itself never appear in `send`: the core handles
//!   them before `handle` returns (its own promise and accept are
//!   persisted in the same `persist`).
//! - A message from a node that is not a member is ignored.
//! - A forwarded command that reaches a node which is no longer leader is
//!   dropped; the origin answers `Indeterminate` at the deadline. A read
//!   forwarded from a follower goes through the log even with
//!   `reads=lease` (only the leader's own clients get lease reads).
//! - With `proposers=any` there is no stable leader, so `reads=lease`
//!   serves reads through the log.
//! - The core's clock is the last tick's. Lease reads are therefore
//!   answered on the next tick (a process resumed after a pause may handle
//!   requests before its first tick, with a stale clock that would extend
//!   the lease), and a follower's lease guard restarts at the first tick
//!   after it hears its leader. Tick often (every few ms) and, after a
//!   stall, tick before anything else if you can.
//! - `Status` (for `GET /admin/status`) comes from [`Replica::status`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::{Config, Fsync, Learn, Proposers, Reads};
use crate::kv::{FxBuild, Kv};
use crate::message::Message;
use crate::storage::{Compaction, Record, Recovered, Snapshot};
use crate::types::{
    Ballot, ClientReply, ClientRequest, CmdId, Command, Entry, NodeId, Op, Outcome, RequestId, Slot,
};

/// One thing that happened to the node.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A protocol message from a peer.
    Message { from: NodeId, msg: Message },
    /// Time passed: `now` is the node's clock in milliseconds (any origin,
    /// must not go backwards).
    Tick { now: u64 },
    /// A client request arrived at this node.
    Client(ClientRequest),
}

/// What the shell must do after one input, in this order: persist, sync,
/// then send and reply (see the module doc), then compact.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outputs {
    /// Records that must be durable before any message or reply below (or
    /// of a later call) is released.
    pub persist: Vec<Record>,
    /// Messages to peers.
    pub send: Vec<(NodeId, Message)>,
    /// Answers to client requests.
    pub replies: Vec<ClientReply>,
    /// Write this snapshot and replace the log (after `persist`).
    pub compact: Option<Compaction>,
    /// Slots this input taught the node are chosen (metrics, simulation).
    pub chosen: Vec<Slot>,
}

impl Outputs {
    pub fn clear(&mut self) {
        self.persist.clear();
        self.send.clear();
        self.replies.clear();
        self.compact = None;
        self.chosen.clear();
    }
}

/// A node's role, for status pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Leader,
    Candidate,
    Follower,
}

/// What `GET /admin/status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    pub id: NodeId,
    pub role: RoleName,
    /// The highest ballot promised.
    pub ballot: Ballot,
    pub leader: Option<NodeId>,
    /// Every slot below is known chosen.
    pub commit_index: Slot,
    /// Every slot below is applied.
    pub applied_index: Slot,
    /// First slot still in the log (earlier ones are in the snapshot).
    pub log_start: Slot,
    /// Client commands queued here, not yet proposed or forwarded.
    pub queued: usize,
    /// Slots in phase 2 (leader only).
    pub in_flight: usize,
}

/// A candidate collecting promises.
#[derive(Debug)]
struct Candidate {
    ballot: Ballot,
    promised_by: BTreeSet<NodeId>,
    /// Per slot, the highest-ballot accepted proposal reported so far.
    reports: BTreeMap<Slot, (Ballot, Entry)>,
    /// Give up and retry (or back off) at this time.
    deadline: u64,
}

/// A slot in phase 2.
#[derive(Debug)]
struct InFlight {
    entry: Entry,
    votes: BTreeSet<NodeId>,
}

/// A leader running phase 2.
#[derive(Debug)]
struct Leader {
    ballot: Ballot,
    /// The next free slot.
    next_slot: Slot,
    /// `next_slot` at election: every slot below was chosen by an earlier
    /// leader or recovered by this one's phase 1.
    term_start: Slot,
    in_flight: BTreeMap<Slot, InFlight>,
    /// Last time (own clock) each node answered this ballot.
    last_heard_from: HashMap<NodeId, u64>,
    /// Per node, the latest heartbeat `sent_at` it acked (lease).
    acked_sent_at: HashMap<NodeId, u64>,
    elected_at: u64,
    last_heartbeat: u64,
    /// Commit point last announced, so a move is announced at once.
    announced_commit: Slot,
}

#[derive(Debug)]
enum Role {
    Follower,
    Candidate(Candidate),
    Leader(Leader),
}

/// A client request this node owns until it replies.
#[derive(Debug)]
struct Waiting {
    request: RequestId,
    deadline: u64,
    /// Left this node (proposed or forwarded): past the deadline the
    /// outcome is unknown rather than "not proposed".
    sent: bool,
}

/// A lease read waiting for the leader to apply up to `read_index`.
#[derive(Debug)]
struct LeaseRead {
    request: RequestId,
    key: String,
    read_index: Slot,
    deadline: u64,
}

/// One Multi-Paxos replica: acceptor, learner, proposer and state machine.
pub struct Replica {
    cfg: Config,
    rng: ChaCha8Rng,
    /// Drawn at start: distinguishes this incarnation's commands from a
    /// previous one's (request ids restart at every boot).
    boot: u64,
    now: u64,

    // Acceptor (durable).
    /// The highest ballot promised; never decreases.
    promised: Ballot,
    /// Accepted proposals of slots not yet known chosen.
    accepted: BTreeMap<Slot, (Ballot, Entry)>,

    // Learner.
    /// Chosen entries from `log_start` on.
    chosen: BTreeMap<Slot, Entry>,
    /// Every slot below is chosen (and known here).
    commit: Slot,
    /// Slots below are only in the snapshot.
    log_start: Slot,
    /// The slot of the latest snapshot (its state covers every slot below).
    snapshot_at: Slot,
    kv: Kv,
    /// learn=all: votes per (slot, ballot).
    votes: HashMap<(Slot, Ballot), BTreeSet<NodeId>>,
    /// The highest commit point heard and from whom, to catch up.
    known_commit: Slot,
    known_commit_from: NodeId,
    next_catch_up: u64,

    // Proposer.
    role: Role,
    /// The leader this node follows, and its ballot.
    leader: Option<(NodeId, Ballot)>,
    /// When this node last heard its leader (lease guard, elections).
    last_heard_leader: u64,
    /// A leader was heard since the last tick. The core's clock is only as
    /// fresh as the last tick (a paused process may handle messages before
    /// its first tick after resuming), so the lease guard restarts at the
    /// next tick: later than the real receipt, never earlier.
    heard_since_tick: bool,
    election_deadline: u64,
    /// proposers=any: current backoff and the time it ends.
    backoff_ms: u64,
    backoff_until: u64,
    /// The highest ballot this incarnation proposed, to assert it grows.
    last_ballot: Ballot,

    // Clients.
    /// Commands waiting to be proposed (leader) or forwarded.
    queue: VecDeque<Command>,
    waiting: HashMap<CmdId, Waiting, FxBuild>,
    lease_reads: Vec<LeaseRead>,

    /// Messages to this node itself, handled before `handle` returns.
    inbox: VecDeque<Message>,
}

impl Replica {
    /// A brand-new replica with empty storage.
    pub fn new(cfg: Config, seed: u64, now: u64) -> Self {
        Self::recover(cfg, seed, Recovered::default(), now)
    }

    /// Rebuilds a replica from its storage after a (re)start.
    pub fn recover(cfg: Config, seed: u64, disk: Recovered, now: u64) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("invalid configuration: {e}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let boot = rng.gen();
        let kv = disk.snapshot.map(|s| s.state).unwrap_or_default();
        let log_start = kv.applied;
        let mut r = Replica {
            cfg,
            rng,
            boot,
            now,
            promised: Ballot::ZERO,
            accepted: BTreeMap::new(),
            chosen: BTreeMap::new(),
            commit: log_start,
            log_start,
            snapshot_at: log_start,
            kv,
            votes: HashMap::new(),
            known_commit: log_start,
            known_commit_from: 0,
            next_catch_up: 0,
            role: Role::Follower,
            leader: None,
            // After a restart this node does not know when it last heard a
            // leader: assume "just now", so it never cuts a lease short.
            last_heard_leader: now,
            heard_since_tick: false,
            election_deadline: now,
            backoff_ms: 0,
            backoff_until: now,
            last_ballot: Ballot::ZERO,
            queue: VecDeque::new(),
            waiting: HashMap::default(),
            lease_reads: Vec::new(),
            inbox: VecDeque::new(),
        };
        for rec in disk.records {
            match rec {
                Record::Promise { ballot } => r.promised = r.promised.max(ballot),
                Record::Accept {
                    slot,
                    ballot,
                    entry,
                } => {
                    // An accept implies a promise of its ballot.
                    r.promised = r.promised.max(ballot);
                    if slot >= r.log_start {
                        let newer = r.accepted.get(&slot).is_none_or(|(b, _)| *b <= ballot);
                        if newer {
                            r.accepted.insert(slot, (ballot, entry));
                        }
                    }
                }
                Record::Chosen { slot, entry } => {
                    if slot >= r.log_start {
                        r.chosen.insert(slot, entry);
                    }
                }
            }
        }
        let chosen: Vec<Slot> = r.chosen.keys().copied().collect();
        for s in chosen {
            r.accepted.remove(&s);
        }
        while r.chosen.contains_key(&r.commit) {
            r.commit += 1;
        }
        r.known_commit = r.commit;
        let mut scratch = Outputs::default();
        r.apply_chosen(&mut scratch);
        r.election_deadline = now + r.election_timeout();
        r
    }

    // ----- public accessors -------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn status(&self) -> Status {
        let (role, in_flight) = match &self.role {
            Role::Follower => (RoleName::Follower, 0),
            Role::Candidate(_) => (RoleName::Candidate, 0),
            Role::Leader(l) => (RoleName::Leader, l.in_flight.len()),
        };
        Status {
            id: self.cfg.id,
            role,
            ballot: self.promised,
            leader: match &self.role {
                Role::Leader(_) => Some(self.cfg.id),
                _ => self.leader.map(|(l, _)| l),
            },
            commit_index: self.commit,
            applied_index: self.kv.applied,
            log_start: self.log_start,
            queued: self.queue.len(),
            in_flight,
        }
    }

    /// The highest ballot promised.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The chosen entry of `slot`, if this node knows it and still has it.
    pub fn chosen_entry(&self, slot: Slot) -> Option<&Entry> {
        self.chosen.get(&slot)
    }

    /// The state machine (applied state).
    pub fn state(&self) -> &Kv {
        &self.kv
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    // ----- the entry point --------------------------------------------------

    /// Handles one input and returns what to do (see the module doc).
    pub fn handle(&mut self, input: Input) -> Outputs {
        let mut out = Outputs::default();
        self.handle_into(input, &mut out);
        out
    }

    /// Like [`Replica::handle`], appending to `out` (reuse its buffers).
    pub fn handle_into(&mut self, input: Input, out: &mut Outputs) {
        match input {
            Input::Message { from, msg } => {
                if from != self.cfg.id && self.cfg.members.contains(&from) {
                    self.on_message(from, msg, out);
                }
            }
            Input::Tick { now } => {
                self.now = self.now.max(now);
                self.on_tick(out);
            }
            Input::Client(req) => self.on_client(req, out),
        }
        loop {
            while let Some(msg) = self.inbox.pop_front() {
                self.on_message(self.cfg.id, msg, out);
            }
            self.pump(out);
            if self.inbox.is_empty() {
                break;
            }
        }
        self.announce_commit(out);
    }

    // ----- helpers ----------------------------------------------------------

    fn send(&mut self, to: NodeId, msg: Message, out: &mut Outputs) {
        if to == self.cfg.id {
            self.inbox.push_back(msg);
        } else {
            out.send.push((to, msg));
        }
    }

    /// Refuses `from`'s message at `ballot`, below this acceptor's promise,
    /// telling it the promise so its next ballot can be higher.
    fn nack(&mut self, from: NodeId, ballot: Ballot, out: &mut Outputs) {
        let nack = Message::Nack {
            ballot,
            promised: self.promised,
        };
        self.send(from, nack, out);
    }

    fn broadcast(&mut self, msg: Message, out: &mut Outputs) {
        for i in 0..self.cfg.members.len() {
            let to = self.cfg.members[i];
            self.send(to, msg.clone(), out);
        }
    }

    fn election_timeout(&mut self) -> u64 {
        let t = self.cfg.election_timeout_ms;
        self.rng.gen_range(t..=2 * t)
    }

    fn lease_mode(&self) -> bool {
        self.cfg.reads == Reads::Lease && self.cfg.proposers == Proposers::Leader
    }

    fn current_ballot(&self) -> Option<Ballot> {
        match &self.role {
            Role::Follower => None,
            Role::Candidate(c) => Some(c.ballot),
            Role::Leader(l) => Some(l.ballot),
        }
    }

    /// Whether safety is broken on purpose in this configuration, so a
    /// local invariant violation is reported instead of panicking.
    fn unsafe_on_purpose(&self) -> bool {
        self.cfg.fsync == Fsync::Never || self.cfg.bug_ignore_promised_values
    }

    // ----- messages ---------------------------------------------------------

    fn on_message(&mut self, from: NodeId, msg: Message, out: &mut Outputs) {
        match msg {
            Message::Prepare { ballot, from_slot } => self.on_prepare(from, ballot, from_slot, out),
            Message::Promise {
                ballot,
                from_slot: _,
                log_start,
                accepted,
                chosen,
            } => self.on_promise(from, ballot, log_start, accepted, chosen, out),
            Message::Accept {
                ballot,
                slot,
                entry,
                commit,
            } => self.on_accept(from, ballot, slot, entry, commit, out),
            Message::Accepted {
                ballot,
                slot,
                entry,
            } => self.on_accepted(from, ballot, slot, entry, out),
            Message::Nack { ballot, promised } => self.on_nack(ballot, promised, out),
            Message::Heartbeat {
                ballot,
                commit,
                sent_at,
            } => self.on_heartbeat(from, ballot, commit, sent_at, out),
            Message::HeartbeatAck {
                ballot,
                sent_at,
                commit: _,
            } => {
                if let Role::Leader(l) = &mut self.role {
                    if l.ballot == ballot {
                        l.last_heard_from.insert(from, self.now);
                        let e = l.acked_sent_at.entry(from).or_insert(0);
                        *e = (*e).max(sent_at);
                    }
                }
            }
            Message::Forward { commands } => match self.role {
                // Only a leader or a would-be leader takes them; anyone
                // else drops them and the origin answers `Indeterminate`.
                Role::Leader(_) | Role::Candidate(_) => self.queue.extend(commands),
                Role::Follower => {}
            },
            Message::CatchUp { from: slot } => self.on_catch_up(from, slot, out),
            Message::CatchUpReply {
                snapshot,
                entries,
                commit,
            } => self.on_catch_up_reply(from, snapshot, entries, commit, out),
        }
    }

    /// Acceptor, phase 1b.
    fn on_prepare(&mut self, from: NodeId, ballot: Ballot, from_slot: Slot, out: &mut Outputs) {
        // Lease guard: a node that heard its leader less than an election
        // timeout ago promises no one else, so the leader's lease holds.
        let guarded = self.lease_mode()
            && from != self.cfg.id
            && self.leader.map(|(l, _)| l) != Some(from)
            && self.now < self.last_heard_leader + self.cfg.election_timeout_ms;
        match ballot {
            _ if guarded => {}
            // P1a: promise only a ballot at least as high as any promised
            // (equal: a duplicate of the prepare we already promised).
            b if b >= self.promised => {
                if b > self.promised {
                    self.promised = b;
                    out.persist.push(Record::Promise { ballot: b });
                }
                if self.current_ballot().is_some_and(|mine| mine < b) {
                    self.step_down(out);
                }
                let accepted = self
                    .accepted
                    .range(from_slot..)
                    .map(|(s, (b, e))| (*s, *b, e.clone()))
                    .collect();
                let chosen = self
                    .chosen
                    .range(from_slot..)
                    .map(|(s, e)| (*s, e.clone()))
                    .collect();
                let promise = Message::Promise {
                    ballot: b,
                    from_slot,
                    log_start: self.log_start,
                    accepted,
                    chosen,
                };
                self.send(from, promise, out);
            }
            b => {
                self.nack(from, b, out);
            }
        }
    }

    /// Proposer, collecting phase 1b.
    fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        log_start: Slot,
        accepted: Vec<(Slot, Ballot, Entry)>,
        chosen: Vec<(Slot, Entry)>,
        out: &mut Outputs,
    ) {
        for (s, e) in chosen {
            self.choose(s, e, out);
        }
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        match ballot {
            b if b != c.ballot => {}
            // The acceptor compacted slots we do not know: its report would
            // miss their values. Learn them first; do not count it.
            _ if log_start > self.commit => {
                self.known_commit = self.known_commit.max(log_start);
                self.known_commit_from = from;
                self.next_catch_up = 0;
            }
            _ => {
                for (s, b, e) in accepted {
                    let higher = c.reports.get(&s).is_none_or(|(rb, _)| *rb < b);
                    if higher {
                        c.reports.insert(s, (b, e));
                    }
                }
                c.promised_by.insert(from);
                if c.promised_by.len() >= self.cfg.quorum() {
                    self.become_leader(out);
                }
            }
        }
    }

    /// Phase 1 done: adopt reported values, fill gaps, start phase 2.
    fn become_leader(&mut self, out: &mut Outputs) {
        let Role::Candidate(c) = std::mem::replace(&mut self.role, Role::Follower) else {
            unreachable!("become_leader is called by a candidate");
        };
        let start = self.commit;
        let end = c
            .reports
            .keys()
            .next_back()
            .map_or(start, |s| s + 1)
            .max(self.chosen.keys().next_back().map_or(start, |s| s + 1))
            .max(start);
        let mut leader = Leader {
            ballot: c.ballot,
            next_slot: end,
            term_start: end,
            in_flight: BTreeMap::new(),
            last_heard_from: HashMap::new(),
            acked_sent_at: HashMap::new(),
            elected_at: self.now,
            last_heartbeat: self.now,
            announced_commit: self.commit,
        };
        let mut proposals = Vec::new();
        for s in start..end {
            if self.chosen.contains_key(&s) {
                continue;
            }
            // P2c: the value of the highest-numbered proposal reported, or
            // a no-op for a gap.
            let entry = match c.reports.get(&s) {
                Some(_) if self.cfg.bug_ignore_promised_values => Entry::Noop,
                Some((_, e)) => e.clone(),
                None => Entry::Noop,
            };
            leader.in_flight.insert(
                s,
                InFlight {
                    entry: entry.clone(),
                    votes: BTreeSet::new(),
                },
            );
            proposals.push((s, entry));
        }
        let ballot = leader.ballot;
        self.role = Role::Leader(leader);
        self.leader = None;
        self.backoff_ms = 0;
        tracing::debug!(node = self.cfg.id, %ballot, start, end, "elected leader");
        for (slot, entry) in proposals {
            let commit = self.commit;
            self.broadcast(
                Message::Accept {
                    ballot,
                    slot,
                    entry,
                    commit,
                },
                out,
            );
        }
        self.heartbeat(out);
    }

    /// Acceptor, phase 2b.
    fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        entry: Entry,
        commit: Slot,
        out: &mut Outputs,
    ) {
        match ballot {
            // P2a: accept unless promised a higher ballot.
            b if b >= self.promised => {
                if self.current_ballot().is_some_and(|mine| mine < b) {
                    self.step_down(out);
                }
                self.follow(from, b);
                let known = slot < self.log_start || self.chosen.contains_key(&slot);
                if known && b > self.promised {
                    // No accept record to carry the higher promise.
                    out.persist.push(Record::Promise { ballot: b });
                }
                self.promised = b;
                if !known {
                    out.persist.push(Record::Accept {
                        slot,
                        ballot: b,
                        entry: entry.clone(),
                    });
                    self.accepted.insert(slot, (b, entry.clone()));
                }
                match self.cfg.learn {
                    Learn::Leader => {
                        let m = Message::Accepted {
                            ballot: b,
                            slot,
                            entry: None,
                        };
                        self.send(from, m, out);
                    }
                    Learn::All => self.broadcast(
                        Message::Accepted {
                            ballot: b,
                            slot,
                            entry: Some(entry),
                        },
                        out,
                    ),
                }
                self.learn_commit(from, b, commit, out);
            }
            b => {
                self.nack(from, b, out);
            }
        }
    }

    /// Learner: an acceptor accepted `slot` at `ballot`.
    fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        entry: Option<Entry>,
        out: &mut Outputs,
    ) {
        let quorum = self.cfg.quorum();
        if let Role::Leader(l) = &mut self.role {
            if l.ballot == ballot {
                l.last_heard_from.insert(from, self.now);
                if let Some(f) = l.in_flight.get_mut(&slot) {
                    f.votes.insert(from);
                    if f.votes.len() >= quorum {
                        let f = l.in_flight.remove(&slot).expect("present just above");
                        self.choose(slot, f.entry, out);
                        return;
                    }
                }
            }
        }
        if self.cfg.learn == Learn::All {
            let Some(entry) = entry else { return };
            if slot < self.commit || self.chosen.contains_key(&slot) {
                return;
            }
            let v = self.votes.entry((slot, ballot)).or_default();
            v.insert(from);
            if v.len() >= quorum {
                self.votes.retain(|(s, _), _| *s != slot);
                self.choose(slot, entry, out);
            }
        }
    }

    /// A prepare or accept of ours was refused.
    fn on_nack(&mut self, ballot: Ballot, promised: Ballot, out: &mut Outputs) {
        if self.current_ballot() == Some(ballot) && promised > ballot {
            // Remember the round so the next ballot is higher.
            if promised > self.promised {
                self.promised = promised;
                out.persist.push(Record::Promise { ballot: promised });
            }
            let was_leader = matches!(self.role, Role::Leader(_));
            self.step_down(out);
            // With leases, followers ignore every candidate but their
            // leader, so a candidate that cannot win (it is behind, or cut
            // off) would keep preempting leaders with ever higher ballots
            // and never hear why. The preempted leader re-runs phase 1 at
            // once, above that ballot; its followers let it through, and
            // the candidate's promise yields to it.
            if was_leader && self.lease_mode() {
                self.campaign(out);
            }
        }
    }

    fn on_heartbeat(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        commit: Slot,
        sent_at: u64,
        out: &mut Outputs,
    ) {
        match ballot {
            // A leader at least as new as our promise.
            b if b >= self.promised => {
                if self.current_ballot().is_some_and(|mine| mine < b) {
                    self.step_down(out);
                }
                self.follow(from, b);
                self.learn_commit(from, b, commit, out);
                let ack = Message::HeartbeatAck {
                    ballot: b,
                    sent_at,
                    commit: self.commit,
                };
                self.send(from, ack, out);
            }
            // A stale leader: tell it, so it steps down.
            b => {
                self.nack(from, b, out);
            }
        }
    }

    /// Records `from` at `ballot` as the leader we follow.
    fn follow(&mut self, from: NodeId, ballot: Ballot) {
        if from == self.cfg.id {
            return;
        }
        self.leader = Some((from, ballot));
        self.last_heard_leader = self.now;
        self.heard_since_tick = true;
        self.election_deadline = self.now + self.election_timeout();
    }

    /// Learner: the leader of `ballot` says every slot below `commit` is
    /// chosen. A slot we accepted at that very ballot holds the value the
    /// leader proposed there, hence the chosen one.
    fn learn_commit(&mut self, from: NodeId, ballot: Ballot, commit: Slot, out: &mut Outputs) {
        let mut s = self.commit;
        while s < commit {
            if !self.chosen.contains_key(&s) {
                match self.accepted.get(&s) {
                    Some((b, e)) if *b == ballot => {
                        let e = e.clone();
                        self.choose(s, e, out);
                    }
                    _ => break,
                }
            }
            s += 1;
        }
        if commit > self.commit && commit > self.known_commit {
            self.known_commit = commit;
            self.known_commit_from = from;
        }
        if self.known_commit > self.commit && self.now >= self.next_catch_up {
            self.request_catch_up(out);
        }
    }

    fn request_catch_up(&mut self, out: &mut Outputs) {
        if self.known_commit_from == 0 || self.known_commit_from == self.cfg.id {
            return;
        }
        self.next_catch_up = self.now + self.cfg.heartbeat_ms;
        let to = self.known_commit_from;
        let m = Message::CatchUp { from: self.commit };
        self.send(to, m, out);
    }

    fn on_catch_up(&mut self, from: NodeId, slot: Slot, out: &mut Outputs) {
        if slot >= self.commit {
            return;
        }
        let (snapshot, start) = if slot < self.log_start {
            (
                Some(Box::new(Snapshot {
                    state: self.kv.clone(),
                })),
                self.kv.applied,
            )
        } else {
            (None, slot)
        };
        let entries = self
            .chosen
            .range(start..self.commit)
            .take(self.cfg.catch_up_batch)
            .map(|(s, e)| (*s, e.clone()))
            .collect();
        let m = Message::CatchUpReply {
            snapshot,
            entries,
            commit: self.commit,
        };
        self.send(from, m, out);
    }

    fn on_catch_up_reply(
        &mut self,
        from: NodeId,
        snapshot: Option<Box<Snapshot>>,
        entries: Vec<(Slot, Entry)>,
        commit: Slot,
        out: &mut Outputs,
    ) {
        if let Some(snap) = snapshot {
            if snap.next_slot() > self.kv.applied {
                self.install_snapshot(*snap, out);
            }
        }
        for (s, e) in entries {
            self.choose(s, e, out);
        }
        if commit > self.known_commit {
            self.known_commit = commit;
            self.known_commit_from = from;
        }
        if self.known_commit > self.commit {
            self.next_catch_up = 0;
            self.request_catch_up(out);
        }
    }

    fn install_snapshot(&mut self, snap: Snapshot, out: &mut Outputs) {
        let at = snap.next_slot();
        tracing::info!(
            node = self.cfg.id,
            slot = at,
            "installing a snapshot from a peer"
        );
        self.kv = snap.state;
        self.log_start = at;
        self.snapshot_at = at;
        self.commit = self.commit.max(at);
        self.chosen = self.chosen.split_off(&at);
        self.accepted = self.accepted.split_off(&at);
        while self.chosen.contains_key(&self.commit) {
            self.commit += 1;
        }
        out.compact = Some(self.compaction());
        self.apply_chosen(out);
    }

    // ----- learning and applying --------------------------------------------

    /// `entry` is chosen in `slot`.
    fn choose(&mut self, slot: Slot, entry: Entry, out: &mut Outputs) {
        if slot < self.log_start {
            return;
        }
        if let Some(prev) = self.chosen.get(&slot) {
            if *prev != entry {
                let msg = format!(
                    "node {}: two different values chosen in slot {slot}: {prev:?} then {entry:?}",
                    self.cfg.id
                );
                assert!(self.unsafe_on_purpose(), "Paxos safety broken: {msg}");
                tracing::error!("{msg} (unsafe configuration)");
            }
            return;
        }
        out.persist.push(Record::Chosen {
            slot,
            entry: entry.clone(),
        });
        out.chosen.push(slot);
        self.accepted.remove(&slot);
        if let Role::Leader(l) = &mut self.role {
            l.in_flight.remove(&slot);
        }
        self.chosen.insert(slot, entry);
        while self.chosen.contains_key(&self.commit) {
            self.commit += 1;
        }
        self.apply_chosen(out);
    }

    /// Applies every chosen slot not applied yet, replying to waiters.
    fn apply_chosen(&mut self, out: &mut Outputs) {
        let mut applied_any = false;
        while self.kv.applied < self.commit {
            let slot = self.kv.applied;
            let entry = self
                .chosen
                .get(&slot)
                .expect("every slot below the commit point is chosen and kept until applied");
            for cmd in entry.commands() {
                let outcome = self.kv.apply(cmd);
                if cmd.id.node == self.cfg.id && cmd.id.boot == self.boot {
                    if let Some(w) = self.waiting.remove(&cmd.id) {
                        out.replies.push(ClientReply {
                            id: w.request,
                            outcome,
                        });
                    }
                }
            }
            self.kv.finish_slot(slot);
            applied_any = true;
        }
        if applied_any {
            self.maybe_compact(out);
        }
    }

    /// Every `snapshot_every` applied slots: snapshot the state and drop
    /// the log before it, keeping a tail of half that many chosen entries
    /// so a slightly lagging peer catches up with entries (whose clients
    /// get their replies) rather than a snapshot.
    fn maybe_compact(&mut self, out: &mut Outputs) {
        let every = self.cfg.snapshot_every;
        if every == 0 || self.kv.applied < self.snapshot_at + every {
            return;
        }
        let at = self.kv.applied;
        self.snapshot_at = at;
        let keep = at.saturating_sub(every / 2).max(self.log_start);
        self.log_start = keep;
        self.chosen = self.chosen.split_off(&keep);
        self.accepted = self.accepted.split_off(&keep);
        self.votes.retain(|(s, _), _| *s >= at);
        out.compact = Some(self.compaction());
    }

    /// The snapshot of the applied state and what the log must keep.
    fn compaction(&self) -> Compaction {
        let mut retained = vec![Record::Promise {
            ballot: self.promised,
        }];
        retained.extend(self.accepted.iter().map(|(s, (b, e))| Record::Accept {
            slot: *s,
            ballot: *b,
            entry: e.clone(),
        }));
        retained.extend(self.chosen.iter().map(|(s, e)| Record::Chosen {
            slot: *s,
            entry: e.clone(),
        }));
        Compaction {
            snapshot: Snapshot {
                state: self.kv.clone(),
            },
            retained,
        }
    }

    // ----- leadership -------------------------------------------------------

    /// Phase 1a: campaign with a ballot above every round ever promised.
    fn campaign(&mut self, out: &mut Outputs) {
        let ballot = Ballot::new(self.promised.round + 1, self.cfg.id);
        assert!(
            ballot > self.last_ballot,
            "ballots of one incarnation must grow: {ballot} after {}",
            self.last_ballot
        );
        self.last_ballot = ballot;
        let deadline = self.now + self.election_timeout();
        self.role = Role::Candidate(Candidate {
            ballot,
            promised_by: BTreeSet::new(),
            reports: BTreeMap::new(),
            deadline,
        });
        self.leader = None;
        tracing::debug!(node = self.cfg.id, %ballot, "campaigning");
        let from_slot = self.commit;
        // Our own prepare goes through the inbox first: the promise to
        // ourselves is persisted before the prepare leaves the node, so
        // this ballot is never proposed again after a restart.
        self.send(self.cfg.id, Message::Prepare { ballot, from_slot }, out);
        for i in 0..self.cfg.members.len() {
            let to = self.cfg.members[i];
            if to != self.cfg.id {
                out.send.push((to, Message::Prepare { ballot, from_slot }));
            }
        }
    }

    /// Back to follower: drop leader state, keep own clients' commands.
    fn step_down(&mut self, _out: &mut Outputs) {
        if let Role::Leader(l) = &self.role {
            tracing::debug!(node = self.cfg.id, ballot = %l.ballot, "stepping down");
        }
        self.role = Role::Follower;
        let (id, boot) = (self.cfg.id, self.boot);
        self.queue.retain(|c| c.id.node == id && c.id.boot == boot);
        // Lease reads fall back to the log.
        for r in std::mem::take(&mut self.lease_reads) {
            let cmd = self.own_command(r.request, None, Op::Read { key: r.key });
            self.waiting.insert(
                cmd.id,
                Waiting {
                    request: r.request,
                    deadline: r.deadline,
                    sent: false,
                },
            );
            self.queue.push_back(cmd);
        }
        self.election_deadline = self.now + self.election_timeout();
        if self.cfg.proposers == Proposers::Any {
            let t = self.cfg.heartbeat_ms;
            self.backoff_ms = (self.backoff_ms * 2).clamp(t, 8 * self.cfg.election_timeout_ms);
            self.backoff_until = self.now + self.rng.gen_range(0..=self.backoff_ms);
        }
    }

    fn heartbeat(&mut self, out: &mut Outputs) {
        let now = self.now;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        l.last_heartbeat = now;
        l.announced_commit = self.commit;
        l.acked_sent_at.insert(self.cfg.id, now);
        l.last_heard_from.insert(self.cfg.id, now);
        self.last_heard_leader = now;
        let m = Message::Heartbeat {
            ballot: l.ballot,
            commit: self.commit,
            sent_at: now,
        };
        for &to in &self.cfg.members {
            if to != self.cfg.id {
                out.send.push((to, m.clone()));
            }
        }
    }

    /// learn=leader: tell followers at once when the commit point moves.
    fn announce_commit(&mut self, out: &mut Outputs) {
        if let Role::Leader(l) = &self.role {
            if l.announced_commit < self.commit {
                self.heartbeat(out);
            }
        }
    }

    /// Until when the leader may answer reads locally (0: no lease).
    fn lease_until(&self) -> u64 {
        let Role::Leader(l) = &self.role else {
            return 0;
        };
        let mut acks: Vec<u64> = self
            .cfg
            .members
            .iter()
            .map(|m| l.acked_sent_at.get(m).copied().unwrap_or(0))
            .collect();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let t = acks[self.cfg.quorum() - 1];
        if t == 0 {
            return 0;
        }
        t + self.cfg.election_timeout_ms - self.cfg.lease_drift_ms
    }

    // ----- time -------------------------------------------------------------

    fn on_tick(&mut self, out: &mut Outputs) {
        let now = self.now;
        if self.heard_since_tick {
            self.heard_since_tick = false;
            self.last_heard_leader = self.last_heard_leader.max(now);
        }
        self.expire_requests(out);
        self.serve_lease_reads(out);
        let quorum = self.cfg.quorum();
        let t = self.cfg.election_timeout_ms;
        match &mut self.role {
            Role::Leader(l) => {
                let alive = self
                    .cfg
                    .members
                    .iter()
                    .filter(|m| l.last_heard_from.get(m).is_some_and(|&at| at + t > now))
                    .count();
                if alive < quorum && now >= l.elected_at + t {
                    tracing::debug!(node = self.cfg.id, "no majority for an election timeout");
                    self.step_down(out);
                } else if now >= l.last_heartbeat + self.cfg.heartbeat_ms {
                    self.heartbeat(out);
                    self.retransmit(out);
                }
            }
            Role::Candidate(c) => {
                if now >= c.deadline {
                    match self.cfg.proposers {
                        Proposers::Leader => self.campaign(out),
                        // Not enough promises in time: back off like a
                        // preempted proposer.
                        Proposers::Any => self.step_down(out),
                    }
                }
            }
            Role::Follower => {
                if self.cfg.proposers == Proposers::Leader && now >= self.election_deadline {
                    self.campaign(out);
                }
            }
        }
        if self.known_commit > self.commit && now >= self.next_catch_up {
            self.request_catch_up(out);
        }
    }

    /// Re-sends accepts that have not gathered a majority (messages get
    /// lost), to the acceptors that have not answered.
    fn retransmit(&mut self, out: &mut Outputs) {
        let commit = self.commit;
        let Role::Leader(l) = &self.role else { return };
        for (&slot, f) in &l.in_flight {
            for &to in &self.cfg.members {
                if !f.votes.contains(&to) && to != self.cfg.id {
                    out.send.push((
                        to,
                        Message::Accept {
                            ballot: l.ballot,
                            slot,
                            entry: f.entry.clone(),
                            commit,
                        },
                    ));
                }
            }
        }
    }

    /// Replies to requests past their deadline.
    fn expire_requests(&mut self, out: &mut Outputs) {
        let now = self.now;
        let mut expired: Vec<CmdId> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        if !expired.is_empty() {
            expired.sort_unstable_by_key(|id| id.request);
            for id in expired {
                let w = self.waiting.remove(&id).expect("collected just above");
                let outcome = if w.sent {
                    Outcome::Indeterminate {
                        reason: "proposed, but not known to be chosen before the deadline".into(),
                    }
                } else {
                    self.queue.retain(|c| c.id != id);
                    Outcome::NotProposed {
                        reason: "no leader reachable before the deadline".into(),
                    }
                };
                out.replies.push(ClientReply {
                    id: w.request,
                    outcome,
                });
            }
        }
        let reads = std::mem::take(&mut self.lease_reads);
        for r in reads {
            if r.deadline <= now {
                out.replies.push(ClientReply {
                    id: r.request,
                    outcome: Outcome::NotProposed {
                        reason: "lease read not served before the deadline".into(),
                    },
                });
            } else {
                self.lease_reads.push(r);
            }
        }
    }

    // ----- clients ----------------------------------------------------------

    fn own_command(
        &self,
        request: RequestId,
        dedup: Option<crate::types::ClientSeq>,
        op: Op,
    ) -> Command {
        Command {
            id: CmdId {
                node: self.cfg.id,
                boot: self.boot,
                request,
            },
            dedup,
            op,
        }
    }

    fn on_client(&mut self, req: ClientRequest, out: &mut Outputs) {
        if let Op::Read { key } = &req.op {
            if self.cfg.reads == Reads::Local {
                // Unsafe on purpose: whatever this replica has applied.
                out.replies.push(ClientReply {
                    id: req.id,
                    outcome: self.kv.read(key),
                });
                return;
            }
            if self.lease_mode() && self.now < self.lease_until() {
                if let Role::Leader(l) = &self.role {
                    // The read must see every write acknowledged before it.
                    // With learn=leader only this leader declares slots
                    // chosen, so its commit point (and its term's first
                    // slots) suffice; with learn=all a follower may have
                    // learned (and acknowledged) a slot this leader has not
                    // counted yet, so wait for every slot proposed so far.
                    let read_index = match self.cfg.learn {
                        Learn::Leader => self.commit.max(l.term_start),
                        Learn::All => l.next_slot,
                    };
                    self.lease_reads.push(LeaseRead {
                        request: req.id,
                        key: key.clone(),
                        read_index,
                        deadline: self.now + self.cfg.request_timeout_ms,
                    });
                    // Answered on the next tick: only a tick carries a
                    // fresh clock to check the lease against.
                    return;
                }
            }
        }
        let cmd = self.own_command(req.id, req.dedup, req.op);
        self.waiting.insert(
            cmd.id,
            Waiting {
                request: req.id,
                deadline: self.now + self.cfg.request_timeout_ms,
                sent: false,
            },
        );
        self.queue.push_back(cmd);
    }

    /// Answers lease reads whose read index is applied, while the lease
    /// holds; without a lease they go through the log. Called on ticks
    /// only, so the lease is checked against a fresh clock.
    fn serve_lease_reads(&mut self, out: &mut Outputs) {
        if self.lease_reads.is_empty() {
            return;
        }
        let valid = self.now < self.lease_until();
        let reads = std::mem::take(&mut self.lease_reads);
        for r in reads {
            if !valid {
                let cmd = self.own_command(r.request, None, Op::Read { key: r.key });
                self.waiting.insert(
                    cmd.id,
                    Waiting {
                        request: r.request,
                        deadline: r.deadline,
                        sent: false,
                    },
                );
                self.queue.push_back(cmd);
            } else if self.kv.applied >= r.read_index {
                out.replies.push(ClientReply {
                    id: r.request,
                    outcome: self.kv.read(&r.key),
                });
            } else {
                self.lease_reads.push(r);
            }
        }
    }

    /// Moves queued commands on: a leader proposes them (batched, within
    /// the pipeline window); a follower forwards them to its leader; with
    /// `proposers=any` a node with work campaigns once its backoff ends.
    fn pump(&mut self, out: &mut Outputs) {
        if self.queue.is_empty() {
            return;
        }
        let (id, boot) = (self.cfg.id, self.boot);
        match &mut self.role {
            Role::Leader(l) => {
                while !self.queue.is_empty() && l.in_flight.len() < self.cfg.pipeline {
                    let n = self.queue.len().min(self.cfg.batch_size);
                    let batch: Vec<Command> = self.queue.drain(..n).collect();
                    for c in &batch {
                        if c.id.node == id && c.id.boot == boot {
                            if let Some(w) = self.waiting.get_mut(&c.id) {
                                w.sent = true;
                            }
                        }
                    }
                    let slot = l.next_slot;
                    l.next_slot += 1;
                    let entry = Entry::batch(batch);
                    l.in_flight.insert(
                        slot,
                        InFlight {
                            entry: entry.clone(),
                            votes: BTreeSet::new(),
                        },
                    );
                    let m = Message::Accept {
                        ballot: l.ballot,
                        slot,
                        entry,
                        commit: self.commit,
                    };
                    for &to in &self.cfg.members {
                        if to == id {
                            self.inbox.push_back(m.clone());
                        } else {
                            out.send.push((to, m.clone()));
                        }
                    }
                }
            }
            Role::Candidate(_) => {}
            Role::Follower => match self.cfg.proposers {
                Proposers::Leader => {
                    let Some((leader, _)) = self.leader else {
                        return;
                    };
                    let commands: Vec<Command> = self.queue.drain(..).collect();
                    for c in &commands {
                        if let Some(w) = self.waiting.get_mut(&c.id) {
                            w.sent = true;
                        }
                    }
                    out.send.push((leader, Message::Forward { commands }));
                }
                Proposers::Any => {
                    if self.now >= self.backoff_until {
                        self.campaign(out);
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Value;

    /// Delivers messages among replicas until quiet (no loss, in order).
    fn settle(
        nodes: &mut [Replica],
        mut pending: Vec<(NodeId, NodeId, Message)>,
    ) -> Vec<ClientReply> {
        let mut replies = Vec::new();
        while let Some((from, to, msg)) = pending.pop() {
            let r = &mut nodes[(to - 1) as usize];
            let out = r.handle(Input::Message { from, msg });
            replies.extend(out.replies);
            pending.extend(out.send.into_iter().map(|(t, m)| (to, t, m)));
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
        let msgs = out.send.into_iter().map(|(t, m)| (1, t, m)).collect();
        settle(&mut nodes, msgs);
        assert!(nodes[0].is_leader());
        let out = nodes[1].handle(Input::Client(ClientRequest {
            id: 7,
            dedup: None,
            op: Op::Write {
                key: "x".into(),
                value: Value::Int(1),
            },
        }));
        let msgs = out.send.into_iter().map(|(t, m)| (2, t, m)).collect();
        let replies = settle(&mut nodes, msgs);
        assert_eq!(
            replies,
            vec![ClientReply {
                id: 7,
                outcome: Outcome::Ok {
                    value: Some(Value::Int(1))
                }
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

    fn replica(id: NodeId) -> Replica {
        Replica::new(Config::new(id, vec![1, 2, 3]), id, 0)
    }

    fn msg(r: &mut Replica, from: NodeId, m: Message) -> Outputs {
        r.handle(Input::Message { from, msg: m })
    }

    #[test]
    fn p1a_an_acceptor_promises_only_a_higher_ballot_and_persists_it_first() {
        let mut r = replica(1);
        let b5 = Ballot::new(5, 2);
        let out = msg(
            &mut r,
            2,
            Message::Prepare {
                ballot: b5,
                from_slot: 0,
            },
        );
        assert_eq!(out.persist, vec![Record::Promise { ballot: b5 }]);
        assert!(matches!(out.send[..], [(2, Message::Promise { ballot, .. })] if ballot == b5));
        let out = msg(
            &mut r,
            3,
            Message::Prepare {
                ballot: Ballot::new(4, 3),
                from_slot: 0,
            },
        );
        assert!(out.persist.is_empty());
        assert!(matches!(out.send[..], [(3, Message::Nack { promised, .. })] if promised == b5));
    }

    #[test]
    fn p2a_an_acceptor_refuses_an_accept_below_its_promise() {
        let mut r = replica(1);
        msg(
            &mut r,
            2,
            Message::Prepare {
                ballot: Ballot::new(5, 2),
                from_slot: 0,
            },
        );
        let out = msg(
            &mut r,
            3,
            Message::Accept {
                ballot: Ballot::new(4, 3),
                slot: 0,
                entry: Entry::Noop,
                commit: 0,
            },
        );
        assert!(out.persist.is_empty());
        assert!(matches!(out.send[..], [(3, Message::Nack { .. })]));
    }

    /// Regression: an accept at a higher ballot for a slot the acceptor
    /// already knew chosen raised its promise without any record carrying
    /// it, so a restart forgot the promise (found by the simulation's
    /// "promises never decrease" invariant).
    #[test]
    fn an_accept_for_a_chosen_slot_still_persists_the_higher_promise() {
        let mut r = replica(1);
        let b1 = Ballot::new(1, 2);
        msg(
            &mut r,
            2,
            Message::Accept {
                ballot: b1,
                slot: 0,
                entry: Entry::Noop,
                commit: 1,
            },
        );
        assert_eq!(r.status().commit_index, 1, "slot 0 is known chosen");
        let b2 = Ballot::new(2, 3);
        let out = msg(
            &mut r,
            3,
            Message::Accept {
                ballot: b2,
                slot: 0,
                entry: Entry::Noop,
                commit: 0,
            },
        );
        assert!(
            out.persist.contains(&Record::Promise { ballot: b2 }),
            "{:?}",
            out.persist
        );
    }

    #[test]
    fn a_restarted_node_never_reuses_a_ballot() {
        let mut r = replica(1);
        let out = r.handle(Input::Tick { now: 10_000 });
        let first = out.send.iter().find_map(|(_, m)| match m {
            Message::Prepare { ballot, .. } => Some(*ballot),
            _ => None,
        });
        let first = first.expect("the election timer fired");
        // The promise to its own ballot is in the same output's persist.
        assert!(out.persist.contains(&Record::Promise { ballot: first }));
        let disk = Recovered {
            snapshot: None,
            records: out.persist,
        };
        let mut again = Replica::recover(Config::new(1, vec![1, 2, 3]), 99, disk, 0);
        let out = again.handle(Input::Tick { now: 10_000 });
        let second = out.send.iter().find_map(|(_, m)| match m {
            Message::Prepare { ballot, .. } => Some(*ballot),
            _ => None,
        });
        assert!(second.expect("campaigns again") > first);
    }

    #[test]
    fn a_new_leader_adopts_the_highest_ballot_value_reported_per_slot() {
        let cmd = |req| Command {
            id: CmdId {
                node: 9,
                boot: 0,
                request: req,
            },
            dedup: None,
            op: Op::Write {
                key: "x".into(),
                value: Value::Int(req as i64),
            },
        };
        let (older, newer, third) = (
            Entry::batch(vec![cmd(1)]),
            Entry::batch(vec![cmd(2)]),
            Entry::batch(vec![cmd(3)]),
        );
        let mut r = replica(1);
        // This node accepted `newer` in slot 0 at ballot 2.3.
        let b23 = Ballot::new(2, 3);
        msg(
            &mut r,
            3,
            Message::Accept {
                ballot: b23,
                slot: 0,
                entry: newer.clone(),
                commit: 0,
            },
        );
        let out = r.handle(Input::Tick { now: 10_000 });
        let Some(Message::Prepare { ballot, .. }) = out.send.first().map(|(_, m)| m.clone()) else {
            panic!("no prepare: {:?}", out.send);
        };
        // Node 2 reports an older proposal for slot 0 and one for slot 2;
        // nobody reports slot 1: a gap.
        let b12 = Ballot::new(1, 2);
        let out = msg(
            &mut r,
            2,
            Message::Promise {
                ballot,
                from_slot: 0,
                log_start: 0,
                accepted: vec![(0, b12, older), (2, b12, third.clone())],
                chosen: vec![],
            },
        );
        assert!(r.is_leader());
        let proposed: BTreeMap<Slot, Entry> = out
            .send
            .iter()
            .filter_map(|(to, m)| match m {
                Message::Accept {
                    slot,
                    entry,
                    ballot: b,
                    ..
                } if *to == 2 && *b == ballot => Some((*slot, entry.clone())),
                _ => None,
            })
            .collect();
        let expected: BTreeMap<Slot, Entry> = [(0, newer), (1, Entry::Noop), (2, third)]
            .into_iter()
            .collect();
        assert_eq!(proposed, expected);
    }

    #[test]
    fn deadlines_tell_never_proposed_from_indeterminate() {
        // No leader known: the request never leaves the node.
        let mut r = replica(2);
        r.handle(Input::Client(ClientRequest {
            id: 1,
            dedup: None,
            op: Op::Read { key: "x".into() },
        }));
        let out = r.handle(Input::Tick { now: 1_000 });
        assert!(matches!(
            out.replies[..],
            [ClientReply {
                id: 1,
                outcome: Outcome::NotProposed { .. }
            }]
        ));
        // Forwarded to a leader: past the deadline the outcome is unknown.
        let b = Ballot::new(7, 1);
        msg(
            &mut r,
            1,
            Message::Heartbeat {
                ballot: b,
                commit: 0,
                sent_at: 0,
            },
        );
        let out = r.handle(Input::Client(ClientRequest {
            id: 2,
            dedup: None,
            op: Op::Write {
                key: "x".into(),
                value: Value::Int(1),
            },
        }));
        assert!(
            matches!(out.send[..], [(1, Message::Forward { .. })]),
            "{:?}",
            out.send
        );
        let out = r.handle(Input::Tick { now: 5_000 });
        assert!(out
            .replies
            .iter()
            .any(|x| x.id == 2 && matches!(x.outcome, Outcome::Indeterminate { .. })));
    }
}
