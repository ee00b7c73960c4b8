//! The clients a workload drives: one [`Client`] trait, three targets.
//!
//! A client turns a [`ClientOp`] into a [`Completion`] whose type is the
//! history's: `ok` (it happened), `fail` (it definitely did not), `info`
//! (unknown). A target must never report an indeterminate failure as
//! `fail`, and marks a failed cas as a mismatch ([`Completion::mismatch`])
//! only when it compared and found another value (the history format draws
//! that conclusion from the mark, `docs/history.md` rule 3).
//!
//! - [`synod`]: Synod's HTTP client API (`docs/api.md`).
//! - [`etcd`]: etcd's v3 JSON gateway (put, range, txn).
//! - [`null`]: an in-process register map, to measure the bench itself.

use std::future::Future;

use serde_json::Value;
use synod_checker::history::{EventType, Fun, NOT_PROPOSED};

pub mod etcd;
pub mod null;
pub mod synod;

/// One operation a client process invokes.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientOp {
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

/// How a [`ClientOp`] completed: the fields of the history's completion
/// event.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// `Ok`, `Fail` or `Info`; never `Invoke`.
    pub kind: EventType,
    /// The completion's value: what a read saw, else the op's own value.
    pub value: Value,
    /// Why it failed or is unknown.
    pub error: Option<String>,
    /// A failed cas that compared and found another value (the history's
    /// `mismatch`).
    pub mismatch: bool,
    /// A failure that never reached the state machine (the history's
    /// `not_proposed`).
    pub not_proposed: bool,
}

impl Completion {
    pub fn ok(value: Value) -> Completion {
        Completion {
            kind: EventType::Ok,
            value,
            error: None,
            mismatch: false,
            not_proposed: false,
        }
    }

    pub fn fail(op: &ClientOp, error: impl Into<String>) -> Completion {
        Completion {
            kind: EventType::Fail,
            value: op.value.clone(),
            error: Some(error.into()),
            mismatch: false,
            not_proposed: false,
        }
    }

    /// A cas that compared and found another value: a `fail` marked as a
    /// mismatch.
    pub fn mismatch(op: &ClientOp, error: impl Into<String>) -> Completion {
        Completion {
            mismatch: true,
            ..Completion::fail(op, error)
        }
    }

    /// A failure that never reached the state machine (refused before it
    /// was proposed, or never sent): a `fail` marked `not_proposed`, whose
    /// `error` begins with the node's code, as histories always said it.
    pub fn not_proposed(op: &ClientOp, reason: impl std::fmt::Display) -> Completion {
        Completion {
            not_proposed: true,
            ..Completion::fail(op, format!("{NOT_PROPOSED}: {reason}"))
        }
    }

    pub fn info(op: &ClientOp, error: impl Into<String>) -> Completion {
        Completion {
            kind: EventType::Info,
            value: op.value.clone(),
            error: Some(error.into()),
            mismatch: false,
            not_proposed: false,
        }
    }
}

/// A system under test, as the workload sees it.
pub trait Client: Send + Sync + 'static {
    /// Performs `op` and says how it ended. Must return within the
    /// client's request timeout (as `info` if the outcome is unknown).
    fn invoke(&self, op: &ClientOp) -> impl Future<Output = Completion> + Send;

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
