//! The protocol messages nodes exchange. One-way and idempotent: any of
//! them may be lost, duplicated, delayed or reordered, and Paxos stays
//! safe. The server sends them as JSON batches on a peer stream (or
//! `POST /peer/v1/messages`; see `docs/api.md`).

use serde::{Deserialize, Serialize};
use synod_wire::MessageKind;

use crate::storage::Snapshot;
use crate::types::{Ballot, CmdId, Command, Entry, NodeId, RequestOutcome, Slot, TxnId};

/// No real ballot's round gets near this: a round grows by one per
/// election, and 2^48 elections is millennia. A peer that claims more is
/// broken or hostile; its message is refused (see [`Message::implausible`]),
/// so `round + 1` can never overflow.
pub const MAX_ROUND: u64 = 1 << 48;

/// The same bound for slots and commit points: 2^48 slots is years at a
/// million slots a second.
pub const MAX_SLOT: Slot = 1 << 48;

/// A protocol message. Field names follow "Paxos Made Simple".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Message {
    /// Phase 1a, once for every slot from `from_slot` on.
    Prepare { ballot: Ballot, from_slot: Slot },
    /// Phase 1b: the acceptor promises `ballot` and reports, for every slot
    /// from `from_slot`, the highest-numbered proposal it accepted, and the
    /// entries it knows chosen. `log_start` is the first slot it still has
    /// in its log (earlier ones live only in its snapshot).
    Promise {
        ballot: Ballot,
        from_slot: Slot,
        log_start: Slot,
        accepted: Vec<(Slot, Ballot, Entry)>,
        chosen: Vec<(Slot, Entry)>,
    },
    /// Phase 2a. `commit` is the leader's commit point: every slot below it
    /// is chosen (learn=leader piggybacks it here).
    Accept {
        ballot: Ballot,
        slot: Slot,
        entry: Entry,
        commit: Slot,
    },
    /// Phase 2b. Sent to the leader (learn=leader) or to everyone with the
    /// entry attached (learn=all).
    Accepted {
        ballot: Ballot,
        slot: Slot,
        entry: Option<Entry>,
    },
    /// A prepare or accept refused: the acceptor promised `promised`.
    Nack { ballot: Ballot, promised: Ballot },
    /// The leader's commit point moved (learn=leader) or it is still alive
    /// (heartbeat). `sent_at` is the leader's clock, echoed in the ack to
    /// renew its lease. `term_start` is the first slot the leader proposed
    /// new commands in: every slot below was chosen before it or is
    /// re-proposed by its phase 1 (a rejoining node waits for that).
    Heartbeat {
        ballot: Ballot,
        commit: Slot,
        sent_at: u64,
        #[serde(default)]
        term_start: Slot,
    },
    /// The answer to a heartbeat, carrying the follower's own commit point
    /// so the leader sees who lags.
    HeartbeatAck {
        ballot: Ballot,
        sent_at: u64,
        commit: Slot,
    },
    /// A client command a follower passes to the leader.
    Forward { commands: Vec<Command> },
    /// "Send me chosen entries from `from` on."
    CatchUp { from: Slot },
    /// Chosen entries, preceded by a snapshot when the asker is behind the
    /// sender's log start.
    CatchUpReply {
        snapshot: Option<Box<Snapshot>>,
        entries: Vec<(Slot, Entry)>,
        commit: Slot,
    },
    /// Two-phase commit, phase 1: the coordinator asks a participant to
    /// vote on `command`. `last_commit` is the last transaction the
    /// coordinator committed on the command's key: a participant still
    /// holding the key for an earlier transaction learns its outcome from
    /// it (committed iff it is `last_commit`: any later commit on the key
    /// would have needed this participant's vote).
    TpcPrepare {
        txn: TxnId,
        command: Command,
        last_commit: Option<TxnId>,
    },
    /// A participant's vote, sent once the vote is durable.
    TpcVote { txn: TxnId, yes: bool },
    /// The coordinator's decision (a commit once its record is durable).
    TpcDecision { txn: TxnId, commit: bool },
    /// An in-doubt participant asks the coordinator for the outcome.
    TpcQuery { txn: TxnId },
    /// The coordinator's answer to a command a participant forwarded.
    TpcResult { id: CmdId, outcome: RequestOutcome },
}

impl Message {
    /// Why a peer's message cannot be real, if it cannot: a ballot, slot or
    /// commit point beyond [`MAX_ROUND`] or [`MAX_SLOT`], or a ballot of a
    /// node that is not a member. The core refuses such a message (and
    /// logs it) instead of acting on it: one would otherwise make every
    /// node overflow its next round, or chase a commit point forever.
    pub fn implausible(&self, members: &[NodeId]) -> Option<String> {
        let ballot = |b: &Ballot, what: &str| -> Option<String> {
            if b.round > MAX_ROUND {
                Some(format!("{what} ballot {b} has an impossible round"))
            } else if b.round > 0 && !members.contains(&b.node) {
                Some(format!(
                    "{what} ballot {b} names a node that is not a member"
                ))
            } else {
                None
            }
        };
        let slot = |s: Slot, what: &str| -> Option<String> {
            (s > MAX_SLOT).then(|| format!("{what} {s} is beyond any real log"))
        };
        let txn = |t: &TxnId| -> Option<String> {
            (t.epoch > MAX_ROUND || t.seq > MAX_SLOT)
                .then(|| format!("transaction {t} is beyond any real coordinator"))
        };
        match self {
            Message::TpcPrepare {
                txn: t,
                command,
                last_commit,
            } => txn(t)
                .or_else(|| last_commit.as_ref().and_then(txn))
                .or_else(|| {
                    command
                        .op
                        .is_read()
                        .then(|| "a prepare of a read".to_string())
                }),
            Message::TpcVote { txn: t, .. }
            | Message::TpcDecision { txn: t, .. }
            | Message::TpcQuery { txn: t } => txn(t),
            Message::TpcResult { .. } => None,
            Message::Prepare {
                ballot: b,
                from_slot,
            } => ballot(b, "prepare").or_else(|| slot(*from_slot, "from-slot")),
            Message::Promise {
                ballot: b,
                from_slot,
                log_start,
                accepted,
                chosen,
            } => ballot(b, "promise")
                .or_else(|| slot(*from_slot, "from-slot"))
                .or_else(|| slot(*log_start, "log start"))
                .or_else(|| {
                    accepted.iter().find_map(|(s, ab, _)| {
                        slot(*s, "accepted slot").or_else(|| ballot(ab, "accepted"))
                    })
                })
                .or_else(|| chosen.iter().find_map(|(s, _)| slot(*s, "chosen slot"))),
            Message::Accept {
                ballot: b,
                slot: s,
                commit,
                ..
            } => ballot(b, "accept")
                .or_else(|| slot(*s, "slot"))
                .or_else(|| slot(*commit, "commit point")),
            Message::Accepted {
                ballot: b, slot: s, ..
            } => ballot(b, "accepted").or_else(|| slot(*s, "slot")),
            // A promise may be a rejoining node's floor `(round, 0)`.
            Message::Nack {
                ballot: b,
                promised,
            } => ballot(b, "nacked").or_else(|| {
                (promised.round > MAX_ROUND)
                    .then(|| format!("promised ballot {promised} has an impossible round"))
            }),
            Message::Heartbeat {
                ballot: b,
                commit,
                term_start,
                ..
            } => ballot(b, "heartbeat")
                .or_else(|| slot(*commit, "commit point"))
                .or_else(|| slot(*term_start, "term start")),
            Message::HeartbeatAck {
                ballot: b, commit, ..
            } => ballot(b, "heartbeat ack").or_else(|| slot(*commit, "commit point")),
            Message::Forward { .. } => None,
            Message::CatchUp { from } => slot(*from, "catch-up slot"),
            Message::CatchUpReply {
                snapshot,
                entries,
                commit,
            } => slot(*commit, "commit point")
                .or_else(|| {
                    snapshot
                        .as_ref()
                        .and_then(|s| slot(s.next_slot(), "snapshot slot"))
                })
                .or_else(|| entries.iter().find_map(|(s, _)| slot(*s, "entry slot"))),
        }
    }

    /// Whether this message belongs to two-phase commit (the other kinds
    /// but `Forward` are Paxos').
    pub fn is_two_phase_commit(&self) -> bool {
        matches!(
            self,
            Message::TpcPrepare { .. }
                | Message::TpcVote { .. }
                | Message::TpcDecision { .. }
                | Message::TpcQuery { .. }
                | Message::TpcResult { .. }
        )
    }

    /// The kind's name, as logs and the metrics' `type` label spell it.
    pub fn kind(&self) -> &'static str {
        self.message_kind().as_str()
    }

    /// What kind of message this is.
    pub fn message_kind(&self) -> MessageKind {
        match self {
            Message::Prepare { .. } => MessageKind::Prepare,
            Message::Promise { .. } => MessageKind::Promise,
            Message::Accept { .. } => MessageKind::Accept,
            Message::Accepted { .. } => MessageKind::Accepted,
            Message::Nack { .. } => MessageKind::Nack,
            Message::Heartbeat { .. } => MessageKind::Heartbeat,
            Message::HeartbeatAck { .. } => MessageKind::HeartbeatAck,
            Message::Forward { .. } => MessageKind::Forward,
            Message::CatchUp { .. } => MessageKind::CatchUp,
            Message::CatchUpReply { .. } => MessageKind::CatchUpReply,
            Message::TpcPrepare { .. } => MessageKind::TpcPrepare,
            Message::TpcVote { .. } => MessageKind::TpcVote,
            Message::TpcDecision { .. } => MessageKind::TpcDecision,
            Message::TpcQuery { .. } => MessageKind::TpcQuery,
            Message::TpcResult { .. } => MessageKind::TpcResult,
        }
    }
}
