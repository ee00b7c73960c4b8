//! The domain's nouns: ballots, slots, values, commands, log entries, and
//! what a client asks and is told.
//!
//! Everything here is plain data, serde-serializable, because the server
//! sends protocol messages between nodes as JSON and stores log records.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A node's id: a positive integer unique in the cluster.
pub type NodeId = u64;

/// A position in the replicated log; each slot is one Paxos instance.
pub type Slot = u64;

/// A proposal number, `(round, node)`, ordered by round then node.
///
/// Unique per proposer because the node id is part of it; never reused
/// after a restart because a proposer persists its own promise to a ballot
/// before the prepare carrying it leaves the node, and always picks a round
/// above the highest one it has ever promised.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    /// The ballot below every real one (round 0 is never proposed).
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };

    pub fn new(round: u64, node: NodeId) -> Self {
        Ballot { round, node }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round, self.node)
    }
}

/// A two-phase-commit transaction: the coordinator's epoch (one more
/// than the highest it recorded, persisted before its first prepare of an
/// incarnation) and a sequence number within it. Ordered: a coordinator
/// starts the transactions on one key in increasing order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct TxnId {
    pub epoch: u64,
    pub seq: u64,
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}.{}", self.epoch, self.seq)
    }
}

/// A register value: a JSON integer or string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Str(String),
}

impl Value {
    /// The value as JSON, for histories and HTTP replies.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Str(s) => serde_json::Value::from(s.as_str()),
        }
    }

    /// Accepts exactly a JSON integer or string.
    pub fn from_json(v: &serde_json::Value) -> Option<Value> {
        match v {
            serde_json::Value::Number(n) => n.as_i64().map(Value::Int),
            serde_json::Value::String(s) => Some(Value::Str(s.clone())),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// A key-value operation: a command of the replicated state machine
/// ([`crate::kv`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum KvOp {
    Read {
        key: String,
    },
    Write {
        key: String,
        value: Value,
    },
    Cas {
        key: String,
        expected: Value,
        new: Value,
    },
}

impl KvOp {
    pub fn key(&self) -> &str {
        match self {
            KvOp::Read { key } | KvOp::Write { key, .. } | KvOp::Cas { key, .. } => key,
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self, KvOp::Read { .. })
    }
}

/// A client's identity for deduplication: the client id and its
/// per-client sequence number (increasing, one request at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientSeq {
    pub client: u64,
    pub seq: u64,
}

/// Who is waiting for a command's result: the node the client spoke to,
/// that node's boot (a random number drawn at start, so a restarted node
/// never mistakes an old command for one of its new requests) and the
/// request id the shell gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CmdId {
    pub node: NodeId,
    pub boot: u64,
    pub request: RequestId,
}

/// One client command as it travels through the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    pub id: CmdId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<ClientSeq>,
    pub op: KvOp,
}

/// What a log slot holds: a gap-filling no-op or a batch of commands.
///
/// The batch is shared (`Arc`): one entry sits in the log, in accept
/// messages to every acceptor and in log records at once, and copying it
/// would dominate the core's cost.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "entry", content = "commands", rename_all = "lowercase")]
pub enum Entry {
    Noop,
    Batch(Arc<Vec<Command>>),
}

impl Entry {
    /// A batch of commands.
    pub fn batch(commands: Vec<Command>) -> Self {
        Entry::Batch(Arc::new(commands))
    }
}

impl Entry {
    pub fn commands(&self) -> &[Command] {
        match self {
            Entry::Noop => &[],
            Entry::Batch(c) => c,
        }
    }
}

/// The shell's name for one client request, unique per node process.
pub type RequestId = u64;

/// A client request as the shell hands it to the core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest {
    /// Chosen by the shell; the reply names it.
    pub id: RequestId,
    /// Present when the client asked for deduplication.
    pub dedup: Option<ClientSeq>,
    pub op: KvOp,
}

/// How a client request ended. Definite outcomes (`Ok`, `CasMismatch`,
/// `NotProposed`) are facts; `Indeterminate` means the command may still
/// be chosen and applied later, so a client must record it as `info`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum RequestOutcome {
    /// Done. For a read, the value read (`None`: never written); for a
    /// write or cas, the value the key now holds.
    Ok { value: Option<Value> },
    /// The cas compared and found another value; nothing changed.
    CasMismatch { found: Option<Value> },
    /// Never proposed (no leader known, not enough time): definitely not
    /// applied.
    NotProposed { reason: String },
    /// Proposed (or forwarded) but not known to be chosen by the deadline.
    Indeterminate { reason: String },
}

impl RequestOutcome {
    /// Whether the client may record this as a definite `ok`/`fail`.
    pub fn is_definite(&self) -> bool {
        !matches!(self, RequestOutcome::Indeterminate { .. })
    }
}

/// The core's answer to one [`ClientRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientReply {
    pub id: RequestId,
    pub outcome: RequestOutcome,
    /// May leave once every record with an LSN below this is durable (see
    /// [`crate::durability`]).
    #[serde(default)]
    pub after: crate::durability::Lsn,
}
