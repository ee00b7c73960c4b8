//! The replica: Multi-Paxos as a pure state machine.
//!
//! # The algorithm
//!
//! Each log slot is one instance of Paxos. A value is *chosen* in a slot
//! when a majority of acceptors accept it at the same ballot. Ballots are
//! `(round, node)`: unique per proposer, totally ordered.
//!
//! The messages are the paper's: phase 1a `Prepare`, 1b `Promise`, 2a
//! `Accept` and 2b `Accepted`; an acceptor refuses either request with a
//! `Nack` that carries its promise.
//!
//! *Phase 1.* A node that wants to lead picks a ballot above every round
//! it has ever promised, persists its own promise to it, and sends
//! `Prepare(b, from_slot)` (1a) once for every slot from its first
//! unchosen one. An acceptor that promised no higher ballot answers with
//! a `Promise` (1b): never again to accept a proposal numbered less than
//! `b`, and, for every slot from `from_slot`, the highest-numbered
//! proposal it accepted. With promises from a majority the candidate is
//! leader, the paper's distinguished proposer; for each slot it proposes
//! the value of the highest-numbered proposal reported (P2c: this is what
//! makes a chosen value stick), and a no-op where nothing was reported,
//! filling gaps.
//!
//! *Phase 2.* The leader sends `Accept(b, slot, entry)` (2a); an acceptor
//! accepts it unless it promised a higher ballot (P1a: an acceptor can
//! accept a proposal numbered n iff it has not responded to a prepare
//! request numbered greater than n) and answers `Accepted` (2b). Up to
//! `pipeline` slots are in flight at once, each carrying a batch of up to
//! `batch_size` client commands. A stable leader skips phase 1 for every
//! later slot: its one prepare covered them all. With `thrifty` (and
//! `learn=leader`) a new slot's accept goes at once only to a quorum's
//! worth of followers and to every follower with clients; the others
//! hear it at the heartbeat's re-send if it is still unchosen.
//!
//! *Learning.* With `learn=leader` acceptors answer the leader, the
//! distinguished learner, which counts and announces its commit point
//! (every slot below is chosen) in accepts and heartbeats, at once to
//! the followers whose clients wait for the slots it covers; a follower
//! marks a slot chosen when the entry it accepted there carries the
//! leader's ballot (one ballot proposes one value per slot). With
//! `learn=all` every acceptor tells every node, and each counts for
//! itself. A node that lacks chosen entries asks a peer (`CatchUp`) and
//! gets them, or a snapshot when the peer compacted them.
//! The commit point it chases is only that peer's latest word (a lower
//! answer replaces a higher claim), is at most [`crate::message::MAX_SLOT`],
//! and while asking brings nothing the requests back off.
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
//! # Rejoining after a lost disk
//!
//! An acceptor that forgets its promises and votes breaks Paxos: a value
//! chosen with its vote can be overwritten, a ballot it promised to refuse
//! can win. A node whose data directory was lost therefore never comes
//! back as a fresh acceptor (the server refuses to start it); with
//! `--rejoin` it comes back as a learner first (`Record::Rejoin`):
//!
//! 1. Before it starts, the shell asks *every* other member for its
//!    promise and sets this node's promise to the floor `(R + 1, 0)`, `R`
//!    the highest round any of them promised. Every ballot the lost state
//!    could have promised was created before, by a proposer that recorded
//!    its own promise of it first, so the floor is above all of them: no
//!    lost promise is broken, and the floor itself refuses (nacks) every
//!    ballot in use, which makes the cluster elect a leader above it.
//! 2. Until then the node promises nothing and accepts nothing; it follows
//!    heartbeats and catches up on chosen entries. A leader elected above
//!    the floor ran phase 1 with a majority that excluded this node, and
//!    any majority that chose a value with a lost vote of this node shares
//!    another, durable acceptor with it, so that leader re-proposes every
//!    such value below its term start (P2c).
//! 3. Once this node has learned every slot below that leader's term start
//!    as chosen, its lost votes count for nothing any more: every slot they
//!    could matter for is chosen and known here (and reported as chosen in
//!    its promises), and every later slot was proposed above the floor. It
//!    records `Record::Rejoined` and is an acceptor again.
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
//! 2. **Persist before send, per output.** Every record in
//!    `outputs.persist` has a log sequence number (LSN, its place in this
//!    incarnation's stream of records, from `outputs.first_lsn`), and
//!    every message and reply says `after`: it may leave once every record
//!    below that LSN is durable. Hand the outputs to
//!    [`crate::durability`], which appends, syncs (group commit over many
//!    inputs) and releases in that order, applying `outputs.compact` at
//!    its LSN, and which the simulation runs too.
//! 3. Send each message (lost messages are fine), and answer each client
//!    reply by its [`RequestId`](crate::types::RequestId).
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
//! - There is no "storage done" input: the ordering above (an output
//!   leaves only once the records it stands on are durable) is the whole
//!   contract. What each output stands on is decided in one place,
//!   `Replica::depends_on` (in `shell.rs`).
//! - Messages to the node itself never appear in `send`: the core handles
//!   them before `handle` returns (its own promise and accept are
//!   persisted in the same `persist`).
//! - A message from a node that is not a member is ignored.
//! - A forwarded command that reaches a node which is no longer leader is
//!   dropped. When the origin hears a new leader it sends again the
//!   commands it sent that a client numbered (`dedup`: the state machine
//!   applies each once); the others it answers `Indeterminate` at the
//!   deadline. A read
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
//!
//! # Layout
//!
//! One `impl Replica` spread over one file per role; this file holds the
//! state, recovery, the entry point and the dispatch of messages.
//!
//! - `shell`: [`Input`], [`Outputs`], and what each output stands on.
//! - `acceptor`: the acceptor's state and its two rules (phase 1b, and
//!   phase 2b by P1a), and rejoining after a lost disk.
//! - `proposer`: phase 1a, collecting promises and adopting values (P2c),
//!   phase 2a, and the pump that moves queued work on.
//! - `learner`: counting votes, the commit point, applying, catching up,
//!   compaction.
//! - `leadership`: following a leader, heartbeats, elections, the lease,
//!   and the tick.
//! - `clients`: this node's own clients' requests, replies and deadlines.
//! - `twopc`: the two-phase-commit baseline (`--protocol two-phase-commit`),
//!   which takes over `handle` when configured and shares everything a
//!   shell sees: records and their LSNs, `depends_on`, replies, the state
//!   machine.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::{Config, Fsync, Proposers, Protocol, Reads};
use crate::durability::Lsn;
use crate::kv::{FxBuild, Kv};
use crate::message::Message;
use crate::storage::{Record, Recovered};
use crate::types::{Ballot, CmdId, Command, Entry, NodeId, Slot};

mod acceptor;
mod clients;
mod leadership;
mod learner;
mod proposer;
mod shell;
#[cfg(test)]
mod tests;
mod twopc;

use acceptor::{Acceptor, Vote};
use clients::{LeaseRead, Waiting};
use proposer::{Candidate, Leader};
pub use shell::{Input, Outputs};
use twopc::TwoPc;

/// A node's role, for status pages: the one definition every reader of
/// `GET /admin/status` shares.
pub use synod_wire::Role as RoleName;

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
    /// Rejoining after a lost disk: not yet an acceptor again.
    pub rejoining: bool,
}

// One per replica, so the leader's larger state costs nothing to inline.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Role {
    Follower,
    Candidate(Candidate),
    Leader(Leader),
}

/// One Multi-Paxos replica: acceptor, learner, proposer and state machine.
pub struct Replica {
    cfg: Config,
    rng: ChaCha8Rng,
    /// Drawn at start: distinguishes this incarnation's commands from a
    /// previous one's (request ids restart at every boot).
    boot: u64,
    now: u64,

    /// The acceptor's durable state and its two rules.
    acceptor: Acceptor,

    // Durability (see `depends_on` and crate::durability).
    /// The LSN of the next record.
    lsn: Lsn,
    /// One past the last record other than a `Chosen` mark: an acceptor's
    /// answer stands on everything it has recorded so far.
    barrier: Lsn,
    /// What the commit point and the applied state stand on: one past the
    /// latest own vote counted towards a slot this node chose.
    chosen_need: Lsn,

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
    /// The highest commit point heard and from whom, to catch up. Only a
    /// hint for liveness: what catch-up learns is checked as chosen.
    known_commit: Slot,
    known_commit_from: NodeId,
    next_catch_up: u64,
    /// The wait before asking again, doubled while catch-up makes no
    /// progress (see [`Replica::request_catch_up`]).
    catch_up_wait: u64,
    /// Our commit point when we last asked.
    catch_up_asked_at: Slot,

    // Proposer.
    role: Role,
    /// The leader this node follows, and its ballot.
    leader: Option<(NodeId, Ballot)>,
    /// The highest leader's ballot this node sent its unanswered commands
    /// again for (`reclaim_sent`): a node that hears two leaders in turn
    /// sends them once per new ballot, not at every turn.
    reclaimed_for: Ballot,
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
    /// Impossible messages from peers refused so far (logged sparsely).
    refused: u64,
    /// Rejoining after a lost disk: the floor below which this node had
    /// promised who knows what (see "Rejoining" in the module doc).
    rejoin_floor: Option<Ballot>,
    /// `--protocol two-phase-commit`: the 2PC core, which then handles
    /// every input instead of Paxos (see `twopc`). It shares this shell
    /// side: the record stream, the release policy, the state machine and
    /// the clients' bookkeeping.
    tpc: Option<Box<TwoPc>>,
    /// Set by recovery when it read a promise: the first input of this
    /// incarnation records it again (see `handle_into`).
    recovered_unsynced: bool,
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
            acceptor: Acceptor::default(),
            lsn: 0,
            barrier: 0,
            chosen_need: 0,
            chosen: BTreeMap::new(),
            commit: log_start,
            log_start,
            snapshot_at: log_start,
            kv,
            votes: HashMap::new(),
            known_commit: log_start,
            known_commit_from: 0,
            next_catch_up: 0,
            catch_up_wait: 0,
            catch_up_asked_at: log_start,
            role: Role::Follower,
            leader: None,
            reclaimed_for: Ballot::default(),
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
            refused: 0,
            rejoin_floor: None,
            tpc: None,
            recovered_unsynced: false,
        };
        if r.cfg.protocol == Protocol::TwoPhaseCommit {
            let (t, kv) = TwoPc::recover(&r.cfg, &disk.records);
            r.kv = kv;
            r.tpc = Some(Box::new(t));
            return r;
        }
        for rec in disk.records {
            match rec {
                Record::Promise { ballot } => r.acceptor.promised = r.acceptor.promised.max(ballot),
                Record::Accept {
                    slot,
                    ballot,
                    entry,
                } => {
                    // An accept implies a promise of its ballot.
                    r.acceptor.promised = r.acceptor.promised.max(ballot);
                    if slot >= r.log_start {
                        let newer = r
                            .acceptor
                            .accepted
                            .get(&slot)
                            .is_none_or(|v| v.ballot <= ballot);
                        if newer {
                            let vote = Vote {
                                ballot,
                                entry,
                                durable_at: 0,
                            };
                            r.acceptor.accepted.insert(slot, vote);
                        }
                    }
                }
                Record::Chosen { slot, entry } => {
                    if slot >= r.log_start {
                        r.chosen.insert(slot, entry);
                    }
                }
                Record::Rejoin { floor } => {
                    r.acceptor.promised = r.acceptor.promised.max(floor);
                    r.rejoin_floor = Some(floor);
                }
                Record::Rejoined => r.rejoin_floor = None,
                // Two-phase commit's: never in a Paxos node's log.
                Record::TpcEpoch { .. }
                | Record::TpcCommit { .. }
                | Record::TpcVote { .. }
                | Record::TpcDecided { .. } => {}
            }
        }
        // A rejoining node promises nothing until it has rejoined; its
        // floor was synced when it was written.
        r.recovered_unsynced = r.acceptor.promised != Ballot::ZERO && r.rejoin_floor.is_none();
        let chosen: Vec<Slot> = r.chosen.keys().copied().collect();
        for s in chosen {
            r.acceptor.accepted.remove(&s);
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

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn status(&self) -> Status {
        if let Some(t) = &self.tpc {
            let coordinator = t.coordinator();
            let (done, queued, in_flight) = t.counts(self.cfg.id);
            return Status {
                id: self.cfg.id,
                role: if coordinator == self.cfg.id {
                    RoleName::Leader
                } else {
                    RoleName::Follower
                },
                ballot: Ballot::ZERO,
                leader: Some(coordinator),
                commit_index: done,
                applied_index: done,
                log_start: 0,
                queued,
                in_flight,
                rejoining: false,
            };
        }
        let (role, in_flight) = match &self.role {
            Role::Follower => (RoleName::Follower, 0),
            Role::Candidate(_) => (RoleName::Candidate, 0),
            Role::Leader(l) => (RoleName::Leader, l.in_flight.len()),
        };
        Status {
            id: self.cfg.id,
            role,
            ballot: self.acceptor.promised,
            leader: match &self.role {
                Role::Leader(_) => Some(self.cfg.id),
                _ => self.leader.map(|(l, _)| l),
            },
            commit_index: self.commit,
            applied_index: self.kv.applied,
            log_start: self.log_start,
            queued: self.queue.len(),
            in_flight,
            rejoining: self.rejoin_floor.is_some(),
        }
    }

    /// The highest ballot promised.
    pub fn promised(&self) -> Ballot {
        self.acceptor.promised
    }

    /// What the commit point and the applied state stand on: once every
    /// record below this LSN is durable, what this node believes chosen
    /// would survive a crash (see `depends_on`).
    pub fn chosen_need(&self) -> Lsn {
        self.chosen_need
    }

    /// The chosen entry of `slot`, if this node knows it and still has it.
    pub fn chosen_entry(&self, slot: Slot) -> Option<&Entry> {
        self.chosen.get(&slot)
    }

    /// The state machine (applied state).
    pub fn state(&self) -> &Kv {
        &self.kv
    }

    /// Whether this node leads: the Paxos leader, or the two-phase-commit
    /// coordinator.
    pub fn is_leader(&self) -> bool {
        match &self.tpc {
            Some(t) => t.coordinator() == self.cfg.id,
            None => matches!(self.role, Role::Leader(_)),
        }
    }

    /// The ballot this node leads with, if it leads.
    pub fn leader_ballot(&self) -> Option<Ballot> {
        match &self.role {
            Role::Leader(l) => Some(l.ballot),
            _ => None,
        }
    }

    /// Handles one input and returns what to do (see the module doc).
    pub fn handle(&mut self, input: Input) -> Outputs {
        let mut out = Outputs::default();
        self.handle_into(input, &mut out);
        out
    }

    /// Like [`Replica::handle`], appending to `out` (reuse its buffers).
    pub fn handle_into(&mut self, input: Input, out: &mut Outputs) {
        if let Some(mut t) = self.tpc.take() {
            t.handle(self, input, out);
            self.tpc = Some(t);
            return;
        }
        if self.recovered_unsynced {
            // What recovery read may have been flushed but never synced (a
            // kill keeps what the OS has; a power loss later would not).
            // Recording the recovered promise again, before any output,
            // makes every answer that reveals the promise or a recovered
            // vote (they stand on `barrier`) wait for a sync, which makes
            // all of it durable.
            self.recovered_unsynced = false;
            let ballot = self.acceptor.promised;
            self.persist(Record::Promise { ballot }, out);
        }
        match input {
            Input::Message { from, msg } => {
                if from == self.cfg.id || !self.cfg.members.contains(&from) {
                    return;
                }
                match msg.implausible(&self.cfg.members) {
                    None => self.on_message(from, msg, out),
                    Some(why) => {
                        // Logged, never acted on: see `Message::implausible`.
                        self.refuse(from, msg.kind(), &why);
                        return;
                    }
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

    /// A peer's message that cannot be real, or does not belong here: it
    /// is counted and logged (sparsely), never acted on.
    fn refuse(&mut self, from: NodeId, kind: &str, why: &str) {
        self.refused += 1;
        if self.refused.is_power_of_two() {
            tracing::warn!(
                node = self.cfg.id,
                from,
                kind,
                refused = self.refused,
                "refused an impossible message: {why}"
            );
        }
    }

    fn election_timeout(&mut self) -> u64 {
        let t = self.cfg.election_timeout_ms;
        self.rng.gen_range(t..=2 * t)
    }

    /// Whether followers keep the guard for their leader
    /// ([`Replica::in_lease_guard`]): whenever there is a stable leader.
    fn leader_guard(&self) -> bool {
        self.cfg.proposers == Proposers::Leader
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
        self.cfg.fsync == Fsync::Never
            || self.cfg.bug_ignore_promised_values
            || self.cfg.bug_on_purpose
            || self.cfg.unsafe_quorums
    }

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
                term_start,
            } => self.on_heartbeat(from, ballot, commit, sent_at, term_start, out),
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
                // else drops them. The origin sends its clients' numbered
                // commands again when it hears the next leader
                // (`reclaim_sent`) and answers the others `Indeterminate`.
                Role::Leader(ref mut l) => {
                    l.forwarded_at.insert(from, self.now);
                    self.queue.extend(commands);
                }
                Role::Candidate(_) => self.queue.extend(commands),
                Role::Follower => {}
            },
            Message::CatchUp { from: slot } => self.on_catch_up(from, slot, out),
            Message::CatchUpReply {
                snapshot,
                entries,
                commit,
            } => self.on_catch_up_reply(from, snapshot, entries, commit, out),
            m @ (Message::TpcPrepare { .. }
            | Message::TpcVote { .. }
            | Message::TpcDecision { .. }
            | Message::TpcQuery { .. }
            | Message::TpcResult { .. }) => {
                self.refuse(from, m.kind(), "a two-phase-commit message to a Paxos node")
            }
        }
    }
}
