//! The clients a workload drives: one [`Client`] trait, three targets.
//!
//! A client turns an [`Op`] into an [`Outcome`] whose type is the history's:
//! `ok` (it happened), `fail` (it definitely did not), `info` (unknown). A
//! target must never report an indeterminate failure as `fail`, and a cas
//! is `fail` only when it compared and found another value (the history
//! format draws that conclusion from a failed cas).
//!
//! - [`synod`]: Synod's HTTP client API (`docs/api.md`).
//! - [`etcd`]: etcd's v3 JSON gateway (put, range, txn).
//! - [`null`]: an in-process register map, to measure the bench itself.

use std::future::Future;

use serde_json::Value;
use synod_checker::history::{EventType, Fun};

pub mod etcd;
pub mod null;
pub mod synod;

/// One operation a client process invokes.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// The logical process invoking it; also the client id a node
    /// deduplicates retries by.
    pub process: u64,
    /// Increases per process, for the node's deduplication.
    pub seq: u64,
    /// `read`, `write` or `cas`.
    pub f: Fun,
    pub key: String,
    /// As in the history: `null` for a read, the value for a write,
    /// `[expected, new]` for a cas.
    pub value: Value,
}

/// How an operation completed.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// `Ok`, `Fail` or `Info`; never `Invoke`.
    pub kind: EventType,
    /// The completion's value: what a read saw, else the op's own value.
    pub value: Value,
    /// Why it failed or is unknown.
    pub error: Option<String>,
}

impl Outcome {
    pub fn ok(value: Value) -> Outcome {
        Outcome {
            kind: EventType::Ok,
            value,
            error: None,
        }
    }

    pub fn fail(op: &Op, error: impl Into<String>) -> Outcome {
        Outcome {
            kind: EventType::Fail,
            value: op.value.clone(),
            error: Some(error.into()),
        }
    }

    pub fn info(op: &Op, error: impl Into<String>) -> Outcome {
        Outcome {
            kind: EventType::Info,
            value: op.value.clone(),
            error: Some(error.into()),
        }
    }
}

/// A system under test, as the workload sees it.
pub trait Client: Send + Sync + 'static {
    /// Performs `op` and says how it ended. Must return within the
    /// client's request timeout (as `info` if the outcome is unknown).
    fn invoke(&self, op: &Op) -> impl Future<Output = Outcome> + Send;

    /// The node `process` talks to, named for the history's `node` field.
    fn node_of(&self, process: u64) -> Option<&str>;
}

/// Splits a cas value `[expected, new]`; `None` if it is not one.
pub fn cas_parts(value: &Value) -> Option<(&Value, &Value)> {
    match value.as_array().map(Vec::as_slice) {
        Some([e, n]) => Some((e, n)),
        _ => None,
    }
}
