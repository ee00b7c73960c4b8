//! The shell's side of the replica: what goes in ([`Input`]), what comes
//! out ([`Outputs`]), and the one place that decides what each output
//! stands on before it may leave ([`Replica::depends_on`]).

use crate::config::Protocol;
use crate::durability::{Lsn, Outgoing};
use crate::message::Message;
use crate::storage::{Compaction, Record};
use crate::types::{ClientReply, ClientRequest, NodeId, RequestId, RequestOutcome, Slot};

use super::{Replica, Role};

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

/// What the shell must do after one or more inputs (see the module doc and
/// [`crate::durability`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outputs {
    /// Records to append, in order; `persist[i]` has LSN `first_lsn + i`.
    pub persist: Vec<Record>,
    /// The LSN of `persist[0]` (meaningless while `persist` is empty).
    pub first_lsn: Lsn,
    /// Messages to peers, each with the LSN it waits for.
    pub send: Vec<Outgoing>,
    /// Answers to client requests, each with the LSN it waits for.
    pub replies: Vec<ClientReply>,
    /// Write this snapshot and replace the log, at its LSN (`at`): after
    /// the records below it, before the ones from it on.
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

    /// The messages alone, for tests and traces.
    pub fn messages(&self) -> impl Iterator<Item = (NodeId, &Message)> {
        self.send.iter().map(|o| (o.to, &o.msg))
    }
}

impl Replica {
    /// Sends `msg` to `to` once what it stands on is durable; a message to
    /// this node itself goes through the inbox, before `handle` returns.
    pub(super) fn send(&mut self, to: NodeId, msg: Message, out: &mut Outputs) {
        if to == self.cfg.id {
            self.inbox.push_back(msg);
        } else {
            let after = self.depends_on(&msg);
            out.send.push(Outgoing { to, msg, after });
        }
    }

    /// Sends `msg` to every member that `pick` names: this node through the
    /// inbox, the others once what `msg` stands on is durable. Every
    /// fan-out (prepares, accepts and their re-sends, heartbeats, votes
    /// with `learn=all`) goes through here.
    pub(super) fn fan_out(
        &mut self,
        msg: Message,
        pick: impl Fn(NodeId) -> bool,
        out: &mut Outputs,
    ) {
        let after = self.depends_on(&msg);
        let me = self.cfg.id;
        for &to in self.cfg.members.iter().filter(|&&to| to != me && pick(to)) {
            out.send.push(Outgoing {
                to,
                msg: msg.clone(),
                after,
            });
        }
        if pick(me) {
            self.inbox.push_back(msg);
        }
    }

    /// Sends `msg` to every member but this node.
    pub(super) fn send_to_others(&mut self, msg: Message, out: &mut Outputs) {
        let me = self.cfg.id;
        self.fan_out(msg, |to| to != me, out);
    }

    /// Sends `msg` to every member, this node included.
    pub(super) fn broadcast(&mut self, msg: Message, out: &mut Outputs) {
        self.fan_out(msg, |_| true, out);
    }

    /// The release policy: the LSN a message waits for before it may
    /// leave, that is, the records it stands on (see crate::durability).
    ///
    /// * An acceptor's answers (`Promise`, `Accepted`, `Nack`) and a
    ///   proposer's `Prepare` report or rely on its promise and votes:
    ///   every record so far (`barrier`). A `Prepare`'s own promise is
    ///   recorded before it is sent (see `campaign`).
    /// * A leader's `Accept` and `Heartbeat` stand on its promise of its
    ///   ballot and on the commit point they carry: a follower applies the
    ///   slots below it and answers its clients. A slot counts chosen on a
    ///   majority of votes; the leader's own is one of its records
    ///   (`chosen_need`), every other voter recorded its vote before its
    ///   `Accepted` left. So they wait for the own votes behind the commit
    ///   point, usually durable long before, and not for the rest of the
    ///   leader's records: its disk write overlaps its followers'.
    /// * A `CatchUpReply` hands over chosen entries and applied state:
    ///   `chosen_need` too.
    /// * `HeartbeatAck` (no promise in it: the lease guard is volatile and
    ///   restarts conservatively after a crash), `Forward` and `CatchUp`
    ///   carry nothing durable.
    pub(super) fn depends_on(&self, msg: &Message) -> Lsn {
        match msg {
            Message::Prepare { .. }
            | Message::Promise { .. }
            | Message::Accepted { .. }
            | Message::Nack { .. } => self.barrier,
            Message::Accept { .. } | Message::Heartbeat { .. } => {
                let promise_at = match &self.role {
                    Role::Leader(l) => l.promise_at,
                    Role::Candidate(c) => c.promise_at,
                    Role::Follower => self.barrier,
                };
                self.chosen_need.max(promise_at)
            }
            Message::CatchUpReply { .. } => self.chosen_need,
            Message::HeartbeatAck { .. } | Message::Forward { .. } | Message::CatchUp { .. } => 0,
            // Two-phase commit. A vote stands on its vote record, a
            // prepare on the coordinator's epoch record and the last
            // commit it names; a decision and a forwarded command's result
            // on the coordinator's commit records (nothing is recorded for
            // an abort, and waiting for more is harmless). A query reveals
            // nothing.
            Message::TpcPrepare { .. } | Message::TpcVote { .. } => self.barrier,
            Message::TpcDecision { .. } | Message::TpcResult { .. } => {
                if self.cfg.bug_tpc_early_commit {
                    0
                } else {
                    self.barrier
                }
            }
            Message::TpcQuery { .. } => 0,
        }
    }

    /// Appends `rec` to this call's records; returns one past its LSN.
    pub(super) fn persist(&mut self, rec: Record, out: &mut Outputs) -> Lsn {
        if out.persist.is_empty() {
            out.first_lsn = self.lsn;
        }
        debug_assert_eq!(
            out.first_lsn + out.persist.len() as Lsn,
            self.lsn,
            "one Outputs collects one replica's records, in order"
        );
        if !matches!(rec, Record::Chosen { .. }) {
            self.barrier = self.lsn + 1;
        }
        self.lsn += 1;
        out.persist.push(rec);
        self.lsn
    }

    /// Answers a client. A definite answer from the state machine reveals
    /// applied state, so it stands on what the chosen slots stand on;
    /// "not proposed" and "indeterminate" stand on nothing.
    ///
    /// Under two-phase commit a definite answer reveals committed state,
    /// which stands on the coordinator's commit records: every record so
    /// far (`barrier`).
    pub(super) fn reply(&mut self, id: RequestId, outcome: RequestOutcome, out: &mut Outputs) {
        let stands_on = match self.cfg.protocol {
            Protocol::Paxos => self.chosen_need,
            Protocol::TwoPhaseCommit if self.cfg.bug_tpc_early_commit => 0,
            Protocol::TwoPhaseCommit => self.barrier,
        };
        let after = match outcome {
            RequestOutcome::Ok { .. } | RequestOutcome::CasMismatch { .. } => stands_on,
            RequestOutcome::NotProposed { .. } | RequestOutcome::Indeterminate { .. } => 0,
        };
        out.replies.push(ClientReply { id, outcome, after });
    }
}
