//! One line of a history (`docs/history.md`): the contract between what
//! records a run (the bench's workload, the node's simulation) and what
//! judges it (the checker).
//!
//! It lives in this leaf crate, not in the checker, so the node's
//! simulation writes the very type the checker reads without the node
//! library compiling the checker (rayon, plotters, hdrhistogram). The
//! checker re-exports it as `synod_checker::history`, with the reader, the
//! writer and the rules a history must keep.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// How the `error` of a definite failure begins when the operation never
/// reached the state machine (refused, never proposed, never sent): the
/// API's code, a reason for people and reports. Programs read the
/// [`Event::not_proposed`] field; the checker drops such a failure like
/// any other.
pub use crate::api::NOT_PROPOSED;

/// How the `error` of a failed cas that compared and found another value
/// began before the `mismatch` field existed (the API's code); histories
/// of that time are still read so (docs/history.md, rule 3).
pub use crate::api::CAS_MISMATCH;

/// Who issued an event: a client process, or the nemesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    /// A logical client: one operation at a time, retired after an `info`.
    Client(u64),
    /// The fault injector; its events are always `info`.
    Nemesis,
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

impl Serialize for Process {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, not a `Value`: this runs for every line of a history.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Process;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or \"nemesis\"")
            }
            fn visit_u64<E: serde::de::Error>(self, p: u64) -> Result<Process, E> {
                Ok(Process::Client(p))
            }
            fn visit_i64<E: serde::de::Error>(self, p: i64) -> Result<Process, E> {
                Err(E::custom(format!(
                    "process must be a non-negative integer, got {p}"
                )))
            }
            fn visit_f64<E: serde::de::Error>(self, p: f64) -> Result<Process, E> {
                Err(E::custom(format!(
                    "process must be a non-negative integer, got {p}"
                )))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Process, E> {
                match s {
                    "nemesis" => Ok(Process::Nemesis),
                    other => Err(E::custom(format!(
                        "process must be an integer or \"nemesis\", got {other:?}"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// What an event says about its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The client sent the operation.
    Invoke,
    /// It happened, once, between invocation and completion.
    Ok,
    /// It definitely did not happen.
    Fail,
    /// Unknown: it may happen at any time after invocation, or never.
    Info,
}

impl EventType {
    /// Whether this event completes an invocation.
    #[inline]
    pub fn is_completion(self) -> bool {
        self != EventType::Invoke
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        })
    }
}

/// The operation an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fun {
    Read,
    Write,
    Cas,
    Append,
    /// A nemesis action such as `start-partition`; never a client op.
    Nemesis(String),
}

impl Fun {
    #[inline]
    pub fn as_str(&self) -> &str {
        match self {
            Fun::Read => "read",
            Fun::Write => "write",
            Fun::Cas => "cas",
            Fun::Append => "append",
            Fun::Nemesis(s) => s,
        }
    }

    /// The operation named `name`: a client op, else a nemesis action
    /// (how a history's `f` reads).
    pub fn named(name: &str) -> Fun {
        Fun::client_op(name).unwrap_or_else(|| Fun::Nemesis(name.to_string()))
    }

    /// Parses a client operation name; `None` for anything else.
    #[inline]
    pub fn client_op(name: &str) -> Option<Fun> {
        match name {
            "read" => Some(Fun::Read),
            "write" => Some(Fun::Write),
            "cas" => Some(Fun::Cas),
            "append" => Some(Fun::Append),
            _ => None,
        }
    }
}

impl fmt::Display for Fun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Fun {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Fun {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor that sees the text in place: no allocation for the
        // client ops, which are almost every line.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Fun;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an operation name")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Fun, E> {
                Ok(Fun::named(s))
            }
        }
        d.deserialize_str(V)
    }
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    /// Nanoseconds since the run started (monotonic).
    pub time: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub f: Fun,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node a client spoke to, for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// On a `fail` of a `cas` only: the node compared and found another
    /// value, so the key did not hold the expected one at some instant of
    /// the operation's window (docs/history.md, rule 3).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mismatch: bool,
    /// On a `fail` only: the operation never reached the state machine
    /// (refused before it was proposed, or never sent), so it compared
    /// nothing and certainly did not happen (docs/history.md, rule 3).
    /// Never together with `mismatch`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_proposed: bool,
}

impl Event {
    /// The key this event touches; the single register is `""`.
    #[inline]
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("")
    }

    /// Whether this failed cas says it compared and found another value:
    /// the `mismatch` field, or, in a history written before that field,
    /// an `error` that begins with `cas-mismatch` (the node simulation, the
    /// etcd and null clients) or with `409` (the Synod client wrote the
    /// node's status, which only a mismatch gets).
    #[inline]
    pub fn says_mismatch(&self) -> bool {
        self.mismatch
            || self
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with(CAS_MISMATCH) || e.starts_with("409"))
    }

    /// Whether this failure says the operation was never proposed: the
    /// `not_proposed` field, or, in a history written before that field,
    /// an `error` that begins with `not-proposed` (the Synod client and the
    /// node simulation wrote the node's code there).
    pub fn says_not_proposed(&self) -> bool {
        self.not_proposed
            || (self.kind == EventType::Fail
                && self
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(NOT_PROPOSED)))
    }
}
