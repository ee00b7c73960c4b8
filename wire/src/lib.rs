//! synod-wire: what a Synod node and its clients agree on, defined once.
//!
//! The node (`synod-server`) writes these, the bench's client, the
//! nemesis' admin client, the fake node of the bench's tests and the
//! node's own test support read them. `docs/api.md` is the prose.
//!
//! The history's event is here too: the bench and the node's simulation
//! write it, the checker reads it (`docs/history.md` is the prose).
//!
//! # Layout
//!
//! - [`api`]: the client API's request and reply bodies and its error codes.
//! - [`Role`]: a node's role, as `GET /admin/status` reports it.
//! - [`MessageKind`]: the protocol messages by name, as metrics label them.
//! - [`metrics`]: the metric names other programs read.
//! - [`history`]: one line of a history, [`history::Event`], which the
//!   checker re-exports with its reader and writer.

use serde::{Deserialize, Serialize};

pub mod api;
pub mod history;
pub mod metrics;

/// A node's role (`role` in `GET /admin/status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The distinguished proposer: it won phase 1 and runs phase 2.
    Leader,
    /// Collecting promises (phase 1).
    Candidate,
    Follower,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Candidate => "candidate",
            Role::Follower => "follower",
        }
    }
}

/// A protocol message's kind: the `type` label of
/// `synod_peer_messages_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    /// Phase 1a.
    Prepare,
    /// Phase 1b.
    Promise,
    /// Phase 2a.
    Accept,
    /// Phase 2b.
    Accepted,
    Nack,
    Heartbeat,
    HeartbeatAck,
    Forward,
    CatchUp,
    CatchUpReply,
    /// Two-phase commit: the coordinator asks for a vote.
    TpcPrepare,
    /// Two-phase commit: a participant's vote.
    TpcVote,
    /// Two-phase commit: the coordinator's decision.
    TpcDecision,
    /// Two-phase commit: an in-doubt participant asks for the outcome.
    TpcQuery,
    /// Two-phase commit: the answer to a forwarded command.
    TpcResult,
}

impl MessageKind {
    /// Every kind, in label order.
    pub const ALL: [MessageKind; 15] = [
        MessageKind::Prepare,
        MessageKind::Promise,
        MessageKind::Accept,
        MessageKind::Accepted,
        MessageKind::Nack,
        MessageKind::Heartbeat,
        MessageKind::HeartbeatAck,
        MessageKind::Forward,
        MessageKind::CatchUp,
        MessageKind::CatchUpReply,
        MessageKind::TpcPrepare,
        MessageKind::TpcVote,
        MessageKind::TpcDecision,
        MessageKind::TpcQuery,
        MessageKind::TpcResult,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Prepare => "prepare",
            MessageKind::Promise => "promise",
            MessageKind::Accept => "accept",
            MessageKind::Accepted => "accepted",
            MessageKind::Nack => "nack",
            MessageKind::Heartbeat => "heartbeat",
            MessageKind::HeartbeatAck => "heartbeat-ack",
            MessageKind::Forward => "forward",
            MessageKind::CatchUp => "catch-up",
            MessageKind::CatchUpReply => "catch-up-reply",
            MessageKind::TpcPrepare => "2pc-prepare",
            MessageKind::TpcVote => "2pc-vote",
            MessageKind::TpcDecision => "2pc-decision",
            MessageKind::TpcQuery => "2pc-query",
            MessageKind::TpcResult => "2pc-result",
        }
    }

    /// Its position in [`MessageKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_in_index_order_and_roles_read_as_written() {
        for (i, k) in MessageKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k}");
        }
        for r in [Role::Leader, Role::Candidate, Role::Follower] {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(text, format!("\"{}\"", r.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&text).unwrap(), r);
        }
    }

    /// Regression: with `serde(default)` on its optional fields a write
    /// body read `[1]` as `{"value": 1}` and the node wrote it.
    #[test]
    fn a_json_array_is_not_a_request_body() {
        assert!(serde_json::from_str::<api::WriteRequest>("[1]").is_err());
        assert!(serde_json::from_str::<api::CasRequest>("[1, 2]").is_err());
        let w: api::WriteRequest = serde_json::from_str(r#"{"value": 1}"#).unwrap();
        assert_eq!((w.client, w.seq), (None, None));
    }
}
