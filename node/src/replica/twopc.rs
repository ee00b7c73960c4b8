//! Two-phase commit: the baseline Paxos is compared with
//! (`--protocol two-phase-commit`).
//!
//! # The protocol
//!
//! The member with the lowest id is the fixed *coordinator*; every other
//! member is a *participant*. For each write or cas the coordinator starts
//! a transaction ([`TxnId`]) and sends `TpcPrepare` to every participant.
//! A participant records its vote (`Record::TpcVote`), which holds the
//! command's key until it learns the outcome, and only once that record is
//! durable does its yes (`TpcVote`) leave. On a yes from every participant
//! the coordinator records the commit (`Record::TpcCommit`), applies the
//! command to its state, and once that record is durable tells every
//! participant (`TpcDecision`) and answers the client. A vote that does
//! not arrive by the vote deadline aborts the transaction: the client is
//! told `NotProposed` (it definitely did not happen).
//!
//! *Presumed abort.* Only commits are recorded. A coordinator that
//! restarts rebuilds its state from its commit records and starts a new
//! epoch (`Record::TpcEpoch`, its first record, durable before any output
//! leaves: so is whatever it recovered that a kill left unsynced), so it
//! never commits a transaction of an earlier incarnation: any it has no
//! commit record for is aborted, and that is what it answers an in-doubt
//! participant's `TpcQuery`.
//!
//! *Holding keys.* The coordinator runs at most one transaction per key at
//! a time, in order (others wait in `pending`). A participant holds a key
//! from its yes vote until it hears the outcome, from a `TpcDecision`, the
//! answer to its periodic `TpcQuery`, or the next `TpcPrepare` on the key:
//! that one carries the coordinator's last commit on the key, and the
//! transaction held is committed iff it is that one (a later commit on the
//! key would have needed this participant's vote, which it cannot give
//! while it holds the key). A prepare older than one already voted on is
//! stale and refused.
//!
//! *Clients.* Reads are answered by the coordinator from its committed
//! state (standing on its commit records). A participant forwards its
//! clients' commands to the coordinator (`Forward`, as a Paxos follower
//! does to its leader), which answers with `TpcResult`.
//!
//! No election and no recovery but the coordinator's restart: while the
//! coordinator is down or cut off nothing completes, and while any
//! participant is, no write commits. That is the point of the baseline.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use crate::config::Config;
use crate::kv::Kv;
use crate::message::Message;
use crate::storage::Record;
use crate::types::{ClientRequest, CmdId, Command, NodeId, RequestOutcome, TxnId};

use super::clients::Waiting;
use super::{Outputs, Replica};
use crate::replica::Input;

/// A transaction the coordinator runs.
#[derive(Debug)]
struct Active {
    command: Command,
    /// Participants that voted yes.
    votes: BTreeSet<NodeId>,
    /// Aborted unless every vote is in by then.
    deadline: u64,
    /// When to send the prepare again to those that have not voted.
    resend_at: u64,
}

/// A transaction a participant voted yes on and has no outcome for.
#[derive(Debug)]
struct Held {
    command: Command,
    /// When to ask the coordinator for the outcome next.
    query_at: u64,
}

/// The two-phase-commit state of one node (coordinator or participant).
#[derive(Debug)]
pub(super) struct TwoPc {
    coordinator: NodeId,

    // Coordinator.
    /// This incarnation's epoch: above every epoch recorded before.
    epoch: u64,
    /// `Record::TpcEpoch` of this incarnation is recorded.
    epoch_recorded: bool,
    next_seq: u64,
    /// Every transaction committed, ever (rebuilt from the records).
    committed: HashSet<TxnId>,
    /// The last transaction committed on each key.
    last_commit: HashMap<String, TxnId>,
    active: BTreeMap<TxnId, Active>,
    /// Keys with a transaction in `active`.
    busy: HashMap<String, TxnId>,
    /// Writes and cas waiting for their key, with their deadline.
    pending: VecDeque<(Command, u64)>,
    /// Forwarded commands seen, so a duplicated `Forward` runs once.
    forwarded: HashSet<CmdId>,
    commits: u64,

    // Participant.
    held: BTreeMap<TxnId, Held>,
    /// Key -> the transaction holding it.
    locks: HashMap<String, TxnId>,
    /// Key -> the newest transaction voted on: older prepares are stale.
    seen: HashMap<String, TxnId>,
    decided: u64,
}

impl TwoPc {
    /// Rebuilds the state, and the state machine, from the records.
    pub(super) fn recover(cfg: &Config, records: &[Record]) -> (TwoPc, Kv) {
        let mut t = TwoPc {
            coordinator: cfg.coordinator(),
            epoch: 0,
            epoch_recorded: false,
            next_seq: 0,
            committed: HashSet::new(),
            last_commit: HashMap::new(),
            active: BTreeMap::new(),
            busy: HashMap::new(),
            pending: VecDeque::new(),
            forwarded: HashSet::new(),
            commits: 0,
            held: BTreeMap::new(),
            locks: HashMap::new(),
            seen: HashMap::new(),
            decided: 0,
        };
        let mut kv = Kv::default();
        let mut votes: BTreeMap<TxnId, Command> = BTreeMap::new();
        let mut highest = 0;
        for rec in records {
            match rec {
                Record::TpcEpoch { epoch } => highest = highest.max(*epoch),
                Record::TpcCommit { txn, command } => {
                    highest = highest.max(txn.epoch);
                    if t.committed.insert(*txn) {
                        kv.apply(command);
                        t.commits += 1;
                        t.last_commit.insert(command.op.key().to_string(), *txn);
                    }
                }
                Record::TpcVote { txn, command } => {
                    let seen = t.seen.entry(command.op.key().to_string()).or_default();
                    *seen = (*seen).max(*txn);
                    votes.insert(*txn, command.clone());
                }
                Record::TpcDecided { txn, commit } => {
                    if let Some(c) = votes.remove(txn) {
                        t.decided += 1;
                        if *commit {
                            kv.apply(&c);
                        }
                    }
                }
                // Paxos records: not this protocol's.
                _ => {}
            }
        }
        t.epoch = highest + 1;
        for (txn, command) in votes {
            // At most one undecided vote per key (a vote is cast only on a
            // free key); keep the newest if the log says otherwise.
            let key = command.op.key().to_string();
            if let Some(old) = t.locks.insert(key, txn) {
                t.held.remove(&old);
            }
            t.held.insert(
                txn,
                Held {
                    command,
                    query_at: 0,
                },
            );
        }
        (t, kv)
    }

    pub(super) fn coordinator(&self) -> NodeId {
        self.coordinator
    }

    fn is_coordinator(&self, r: &Replica) -> bool {
        self.coordinator == r.cfg.id
    }

    /// (commits or outcomes learned, queued, in flight or held) for status.
    pub(super) fn counts(&self, me: NodeId) -> (u64, usize, usize) {
        if me == self.coordinator {
            (self.commits, self.pending.len(), self.active.len())
        } else {
            (self.decided, 0, self.held.len())
        }
    }

    fn query_every(r: &Replica) -> u64 {
        2 * r.cfg.heartbeat_ms
    }

    fn participants(r: &Replica) -> Vec<NodeId> {
        let me = r.cfg.id;
        r.cfg.members.iter().copied().filter(|&m| m != me).collect()
    }

    /// Handles one input (see the replica's module doc for the contract).
    pub(super) fn handle(&mut self, r: &mut Replica, input: Input, out: &mut Outputs) {
        if !self.epoch_recorded {
            // The first record of every incarnation, before any output.
            // What recovery read may have been flushed but never synced
            // (a kill keeps what the OS has): the sync this record needs
            // makes it durable too, and every output that reveals
            // recovered state (a read, a decision, a vote) stands on it.
            r.persist(Record::TpcEpoch { epoch: self.epoch }, out);
            self.epoch_recorded = true;
        }
        match input {
            Input::Message { from, msg } => {
                if from == r.cfg.id || !r.cfg.members.contains(&from) {
                    return;
                }
                match msg.implausible(&r.cfg.members) {
                    None => self.on_message(r, from, msg, out),
                    Some(why) => r.refuse(from, msg.kind(), &why),
                }
            }
            Input::Tick { now } => {
                r.now = r.now.max(now);
                self.on_tick(r, out);
            }
            Input::Client(req) => self.on_client(r, req, out),
        }
        if self.is_coordinator(r) {
            self.pump(r, out);
        }
    }

    fn on_message(&mut self, r: &mut Replica, from: NodeId, msg: Message, out: &mut Outputs) {
        let coord = self.is_coordinator(r);
        let from_coord = from == self.coordinator;
        match msg {
            Message::Forward { commands } if coord => {
                // Sooner than the origin's own deadline, so a definite
                // "aborted" or "never started" can still reach it in time.
                let deadline = r.now + r.cfg.request_timeout_ms * 3 / 4;
                for c in commands {
                    if c.id.node == from && self.forwarded.insert(c.id) {
                        self.submit(r, c, deadline, out);
                    }
                }
            }
            Message::TpcVote { txn, yes } if coord => self.on_vote(r, from, txn, yes, out),
            Message::TpcQuery { txn } if coord => self.on_query(r, from, txn, out),
            Message::TpcPrepare {
                txn,
                command,
                last_commit,
            } if !coord && from_coord => self.on_prepare(r, txn, command, last_commit, out),
            Message::TpcDecision { txn, commit } if !coord && from_coord => {
                self.decide(r, txn, commit, out)
            }
            Message::TpcResult { id, outcome } if !coord && from_coord => {
                if id.node == r.cfg.id && id.boot == r.boot {
                    if let Some(w) = r.waiting.remove(&id) {
                        r.reply(w.request, outcome, out);
                    }
                }
            }
            m => r.refuse(
                from,
                m.kind(),
                "not a message this node takes under two-phase commit",
            ),
        }
    }

    /// A request of this node's own client.
    fn on_client(&mut self, r: &mut Replica, req: ClientRequest, out: &mut Outputs) {
        let deadline = r.now + r.cfg.request_timeout_ms;
        let cmd = Command {
            id: CmdId {
                node: r.cfg.id,
                boot: r.boot,
                request: req.id,
            },
            dedup: req.dedup,
            op: req.op,
        };
        let coord = self.is_coordinator(r);
        r.waiting.insert(
            cmd.id,
            Waiting {
                request: req.id,
                deadline,
                sent: !coord,
                // Two-phase commit has no leader to change.
                resend: None,
                requeued: false,
            },
        );
        if coord {
            self.submit(r, cmd, deadline, out);
        } else {
            let to = self.coordinator;
            r.send(
                to,
                Message::Forward {
                    commands: vec![cmd],
                },
                out,
            );
        }
    }

    /// Coordinator: a read is answered from the committed state; a write
    /// or cas waits for its key.
    fn submit(&mut self, r: &mut Replica, cmd: Command, deadline: u64, out: &mut Outputs) {
        if cmd.op.is_read() {
            let outcome = r.kv.read(cmd.op.key());
            self.finish(r, cmd.id, outcome, out);
        } else {
            self.pending.push_back((cmd, deadline));
        }
    }

    /// Coordinator: the answer to a command, to this node's client or to
    /// the participant that forwarded it.
    fn finish(&mut self, r: &mut Replica, id: CmdId, outcome: RequestOutcome, out: &mut Outputs) {
        if id.node == r.cfg.id {
            if id.boot == r.boot {
                if let Some(w) = r.waiting.remove(&id) {
                    r.reply(w.request, outcome, out);
                }
            }
        } else {
            r.send(id.node, Message::TpcResult { id, outcome }, out);
        }
    }

    /// Coordinator: starts a transaction for every waiting command whose
    /// key is free, in arrival order per key.
    fn pump(&mut self, r: &mut Replica, out: &mut Outputs) {
        let mut blocked: HashSet<String> = HashSet::new();
        let mut i = 0;
        while i < self.pending.len() {
            let key = self.pending[i].0.op.key();
            if self.busy.contains_key(key) || blocked.contains(key) {
                blocked.insert(key.to_string());
                i += 1;
                continue;
            }
            let (cmd, deadline) = self.pending.remove(i).expect("index checked above");
            self.start(r, cmd, deadline, out);
        }
    }

    fn start(&mut self, r: &mut Replica, command: Command, deadline: u64, out: &mut Outputs) {
        // The epoch record is durable before the first prepare: every
        // prepare stands on every record so far.
        let txn = TxnId {
            epoch: self.epoch,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let key = command.op.key().to_string();
        let last_commit = self.last_commit.get(&key).copied();
        self.busy.insert(key, txn);
        let vote_deadline = deadline.min(r.now + (r.cfg.request_timeout_ms / 2).max(1));
        let participants = Self::participants(r);
        for &p in &participants {
            let msg = Message::TpcPrepare {
                txn,
                command: command.clone(),
                last_commit,
            };
            r.send(p, msg, out);
        }
        self.active.insert(
            txn,
            Active {
                command,
                votes: BTreeSet::new(),
                deadline: vote_deadline,
                resend_at: r.now + Self::query_every(r),
            },
        );
        if participants.is_empty() {
            self.commit(r, txn, out);
        }
    }

    fn on_vote(&mut self, r: &mut Replica, from: NodeId, txn: TxnId, yes: bool, out: &mut Outputs) {
        let Some(a) = self.active.get_mut(&txn) else {
            return; // decided already, or another incarnation's
        };
        if !yes {
            self.abort(r, txn, format!("participant {from} voted no"), out);
            return;
        }
        a.votes.insert(from);
        let everyone = if r.cfg.bug_tpc_commit_on_majority {
            // A bug put back on purpose (teeth): not unanimity.
            a.votes.len() + 1 > r.cfg.members.len() / 2
        } else {
            Self::participants(r).iter().all(|p| a.votes.contains(p))
        };
        if everyone {
            self.commit(r, txn, out);
        }
    }

    /// Coordinator: every participant voted yes.
    fn commit(&mut self, r: &mut Replica, txn: TxnId, out: &mut Outputs) {
        let Some(a) = self.active.remove(&txn) else {
            return;
        };
        let key = a.command.op.key().to_string();
        self.busy.remove(&key);
        r.persist(
            Record::TpcCommit {
                txn,
                command: a.command.clone(),
            },
            out,
        );
        let outcome = r.kv.apply(&a.command);
        self.committed.insert(txn);
        self.last_commit.insert(key, txn);
        self.commits += 1;
        for p in Self::participants(r) {
            r.send(p, Message::TpcDecision { txn, commit: true }, out);
        }
        self.finish(r, a.command.id, outcome, out);
    }

    /// Coordinator: presumed abort, nothing recorded; this incarnation
    /// never commits `txn` now, and a later one never commits it at all.
    fn abort(&mut self, r: &mut Replica, txn: TxnId, why: String, out: &mut Outputs) {
        let Some(a) = self.active.remove(&txn) else {
            return;
        };
        self.busy.remove(a.command.op.key());
        for p in Self::participants(r) {
            if a.votes.contains(&p) {
                r.send(p, Message::TpcDecision { txn, commit: false }, out);
            }
        }
        let outcome = RequestOutcome::NotProposed {
            reason: format!("two-phase commit aborted: {why}"),
        };
        self.finish(r, a.command.id, outcome, out);
    }

    /// Coordinator: an in-doubt participant asks for `txn`'s outcome.
    fn on_query(&mut self, r: &mut Replica, from: NodeId, txn: TxnId, out: &mut Outputs) {
        let commit = if self.committed.contains(&txn) {
            true
        } else if self.active.contains_key(&txn) {
            return; // still collecting votes
        } else if txn.epoch < self.epoch || (txn.epoch == self.epoch && txn.seq < self.next_seq) {
            false // presumed abort
        } else {
            return; // never started: no answer
        };
        r.send(from, Message::TpcDecision { txn, commit }, out);
    }

    /// Participant: the coordinator asks for a vote.
    fn on_prepare(
        &mut self,
        r: &mut Replica,
        txn: TxnId,
        command: Command,
        last_commit: Option<TxnId>,
        out: &mut Outputs,
    ) {
        let key = command.op.key().to_string();
        let to = self.coordinator;
        if let Some(&seen) = self.seen.get(&key) {
            if txn < seen {
                // Stale: a newer transaction on the key came first.
                r.send(to, Message::TpcVote { txn, yes: false }, out);
                return;
            }
            if txn == seen {
                // A duplicate: vote again while still holding the key.
                if self.held.contains_key(&txn) {
                    r.send(to, Message::TpcVote { txn, yes: true }, out);
                }
                return;
            }
        }
        if let Some(&h) = self.locks.get(&key) {
            // The coordinator decided `h` before preparing a newer
            // transaction on the key: committed iff it is the last commit.
            self.decide(r, h, last_commit == Some(h), out);
        }
        r.persist(
            Record::TpcVote {
                txn,
                command: command.clone(),
            },
            out,
        );
        self.locks.insert(key.clone(), txn);
        self.seen.insert(key, txn);
        let query_at = r.now + 2 * Self::query_every(r);
        self.held.insert(txn, Held { command, query_at });
        r.send(to, Message::TpcVote { txn, yes: true }, out);
    }

    /// Participant: the outcome of a transaction it may hold.
    fn decide(&mut self, r: &mut Replica, txn: TxnId, commit: bool, out: &mut Outputs) {
        let Some(h) = self.held.remove(&txn) else {
            return; // not held: decided already, or never voted yes
        };
        let key = h.command.op.key();
        if self.locks.get(key) == Some(&txn) {
            self.locks.remove(key);
        }
        if commit {
            r.kv.apply(&h.command);
        }
        self.decided += 1;
        r.persist(Record::TpcDecided { txn, commit }, out);
    }

    fn on_tick(&mut self, r: &mut Replica, out: &mut Outputs) {
        let now = r.now;
        if self.is_coordinator(r) {
            let due: Vec<TxnId> = self
                .active
                .iter()
                .filter(|(_, a)| a.deadline <= now || a.resend_at <= now)
                .map(|(t, _)| *t)
                .collect();
            for txn in due {
                let a = self.active.get_mut(&txn).expect("collected just above");
                if a.deadline <= now {
                    let why = "not every participant voted yes before the deadline".into();
                    self.abort(r, txn, why, out);
                    continue;
                }
                a.resend_at = now + Self::query_every(r);
                let missing: Vec<NodeId> = Self::participants(r)
                    .into_iter()
                    .filter(|p| !a.votes.contains(p))
                    .collect();
                let command = a.command.clone();
                let last_commit = self.last_commit.get(command.op.key()).copied();
                for p in missing {
                    let msg = Message::TpcPrepare {
                        txn,
                        command: command.clone(),
                        last_commit,
                    };
                    r.send(p, msg, out);
                }
            }
            // Commands that never got their key in time never happened.
            let mut kept = VecDeque::with_capacity(self.pending.len());
            for (cmd, deadline) in std::mem::take(&mut self.pending) {
                if deadline <= now {
                    let outcome = RequestOutcome::NotProposed {
                        reason: "the key stayed busy until the deadline".into(),
                    };
                    self.finish(r, cmd.id, outcome, out);
                } else {
                    kept.push_back((cmd, deadline));
                }
            }
            self.pending = kept;
        } else {
            let to = self.coordinator;
            let every = Self::query_every(r);
            for (&txn, h) in self.held.iter_mut() {
                if h.query_at <= now {
                    h.query_at = now + every;
                    r.send(to, Message::TpcQuery { txn }, out);
                }
            }
        }
        // A forwarded command (or anything the above missed) past its
        // deadline: the outcome is unknown here.
        let expired: Vec<CmdId> = r
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut expired = expired;
        expired.sort_unstable_by_key(|id| id.request);
        for id in expired {
            if self.active.values().any(|a| a.command.id == id) {
                continue; // aborted by its vote deadline, at the latest now
            }
            let w = r.waiting.remove(&id).expect("collected just above");
            let outcome = RequestOutcome::Indeterminate {
                reason: "forwarded to the coordinator, no outcome before the deadline".into(),
            };
            r.reply(w.request, outcome, out);
        }
    }
}
