//! The protocol messages nodes exchange. One-way and idempotent: any of
//! them may be lost, duplicated, delayed or reordered, and Paxos stays
//! safe. The server sends them as JSON (`POST /peer/v1/messages`).

use serde::{Deserialize, Serialize};

use crate::storage::Snapshot;
use crate::types::{Ballot, Command, Entry, Slot};

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
    /// renew its lease.
    Heartbeat {
        ballot: Ballot,
        commit: Slot,
        sent_at: u64,
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
}

impl Message {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "prepare",
            Message::Promise { .. } => "promise",
            Message::Accept { .. } => "accept",
            Message::Accepted { .. } => "accepted",
            Message::Nack { .. } => "nack",
            Message::Heartbeat { .. } => "heartbeat",
            Message::HeartbeatAck { .. } => "heartbeat-ack",
            Message::Forward { .. } => "forward",
            Message::CatchUp { .. } => "catch-up",
            Message::CatchUpReply { .. } => "catch-up-reply",
        }
    }
}
