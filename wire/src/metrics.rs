//! The metric names of `GET /admin/metrics` that other programs read.

/// Protocol messages, by `direction` (`sent`, `received`) and `type`
/// ([`crate::MessageKind`], or `other`); a message counts once the peer
/// acknowledged its batch.
pub const PEER_MESSAGES_TOTAL: &str = "synod_peer_messages_total";
