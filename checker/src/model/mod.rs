//! Models: what a correct single-copy object does, à la Porcupine.
//!
//! A [`Model`] is a handful of small functions: an initial state, a `step`
//! that says whether an operation with its observed result is legal in a
//! state (and the state after it), and `describe` functions for
//! explanations. [`Partitioner`] is the model's other half: it splits a
//! history into independent keys (P-compositionality: a history is
//! linearizable iff each key's sub-history is) as the events stream past,
//! and turns each key's events into compact [`KeyOp`]s whose values are
//! interned to small integers, so the search copies and hashes `u32`s
//! instead of JSON. [`Semantics`] says what a format's events mean (what a
//! failed cas or a `nil` read tells, the initial value, how equal times
//! order).
//!
//! Both models share one register per key, starting at the initial value
//! (`null` unless told otherwise): `cas-register` accepts read, write and
//! cas; `kv` also accepts append (string concatenation, the Porcupine kv
//! corpus).
//!
//! Layout: this file holds the operations, the [`Model`] trait, the
//! register and the [`Semantics`]; `values` interns values; `partitioner`
//! builds each key's operations from the events.

mod partitioner;
mod values;

use std::cell::RefCell;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;

use serde_json::Value;

use crate::history::EventType;

pub use partitioner::{partition, Partition, Partitioner};
pub use values::{Atom, Val, Values};

/// What an operation asks of the register, with its observed result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// A read that returned the value.
    Read(Val),
    Write(Val),
    /// `cas(expected, new)` that succeeded (or, if `info`, might have).
    Cas(Val, Val),
    /// A cas that definitely failed: at some instant in its window the
    /// register did not hold the expected value. It changes nothing.
    CasFailed(Val),
    Append(Val),
}

/// One operation of a key: its window, what it did, where it came from.
#[derive(Clone, Debug)]
pub struct KeyOp {
    /// Invocation time (ns).
    pub call: u64,
    /// Completion time (ns); [`INFINITY`] for `info` and open invocations.
    pub ret: u64,
    pub what: Call,
    /// `ok` or definite `fail`: must be linearized. An `info` op may take
    /// effect at any instant after `call`, or never.
    pub definite: bool,
    /// Index of the invoking event in the history.
    pub invoke_index: u64,
    /// Index of the completing event, if any.
    pub complete_index: Option<u64>,
    pub process: u64,
    pub outcome: EventType,
}

/// The return time of an operation whose outcome is unknown.
pub const INFINITY: u64 = u64::MAX;

/// The operations of one key, ready for the search.
#[derive(Debug)]
pub struct KeyHistory {
    pub key: String,
    pub ops: Vec<KeyOp>,
    /// Interior mutability because `append` creates values while searching;
    /// one key is searched by one thread, so a `RefCell` suffices.
    pub values: RefCell<Values>,
    pub initial: Val,
    pub allow_append: bool,
    /// Ties in time are broken by event index ([`Ties::Ordered`]).
    pub ordered: bool,
}

/// A sequential specification, as small as Porcupine's.
pub trait Model {
    type State: Clone + Eq + Hash + fmt::Debug;
    fn init(&self) -> Self::State;
    /// The state after `call` if it is legal in `state`, else `None`.
    fn step(&self, state: &Self::State, call: &Call) -> Option<Self::State>;
    fn describe_call(&self, call: &Call) -> String;
    fn describe_state(&self, state: &Self::State) -> String;
}

/// A read/write/cas(/append) register over interned values.
pub struct Register<'a> {
    pub key: &'a KeyHistory,
}

impl Model for Register<'_> {
    type State = Val;

    fn init(&self) -> Val {
        self.key.initial
    }

    fn step(&self, &state: &Val, call: &Call) -> Option<Val> {
        match *call {
            Call::Read(v) => (v == state).then_some(state),
            Call::Write(v) => Some(v),
            Call::Cas(expected, new) => (expected == state).then_some(new),
            Call::CasFailed(expected) => (expected != state).then_some(state),
            Call::Append(suffix) => self.key.values.borrow_mut().append(state, suffix),
        }
    }

    fn describe_call(&self, call: &Call) -> String {
        let values = self.key.values.borrow();
        let v = |id: Val| values.display(id);
        match *call {
            Call::Read(x) => format!("read -> {}", v(x)),
            Call::Write(x) => format!("write {}", v(x)),
            Call::Cas(a, b) => format!("cas {} -> {}", v(a), v(b)),
            Call::CasFailed(a) => format!("cas {} failed (value was not {})", v(a), v(a)),
            Call::Append(x) => format!("append {}", v(x)),
        }
    }

    fn describe_state(&self, &state: &Val) -> String {
        self.key.values.borrow().display(state)
    }
}

/// Which model judges a history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ModelKind {
    /// `kv` if the history appends, else `cas-register`.
    #[default]
    Auto,
    CasRegister,
    Kv,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Auto => "auto",
            ModelKind::CasRegister => "cas-register",
            ModelKind::Kv => "kv",
        }
    }
}

impl FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => ModelKind::Auto,
            "cas-register" | "register" => ModelKind::CasRegister,
            "kv" => ModelKind::Kv,
            other => return Err(format!("unknown model {other:?} (cas-register, kv)")),
        })
    }
}

/// What a `fail`ed cas tells the checker (every other failure says only
/// "it did not happen" and is dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailedCas {
    /// A cas marked as a mismatch
    /// ([`Event::says_mismatch`](crate::history::Event::says_mismatch))
    /// says the key did not hold the expected value at some instant of its
    /// window; any other failed cas is dropped. Synod's own histories.
    #[default]
    Marked,
    /// Every failed cas is dropped: a fail means only "it did not happen"
    /// (Jepsen's meaning; Knossos drops failed ops).
    Drop,
    /// Every failed cas says the key held another value (the stronger
    /// reading, Porcupine's etcd model).
    Mismatch,
}

impl FailedCas {
    pub fn as_str(self) -> &'static str {
        match self {
            FailedCas::Marked => "marked",
            FailedCas::Drop => "drop",
            FailedCas::Mismatch => "mismatch",
        }
    }
}

impl FromStr for FailedCas {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "marked" => FailedCas::Marked,
            "drop" => FailedCas::Drop,
            "mismatch" => FailedCas::Mismatch,
            other => {
                return Err(format!(
                    "unknown --failed-cas {other:?} (drop, mismatch, marked)"
                ))
            }
        })
    }
}

/// What an `ok` read of `null` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NilRead {
    /// It read the value `null` (a never-written key). Synod's histories.
    #[default]
    Value,
    /// It matches any state: the client did not say what it read
    /// (Knossos' register models, so Jepsen's formats).
    Any,
}

/// How events at the same `time` are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ties {
    /// The history's order is the order one recorder observed the events
    /// in: at equal times, an earlier line happened first (time, then
    /// index). Synod's histories and Jepsen's `history.edn`.
    #[default]
    Ordered,
    /// Operations whose windows touch at an equal time are concurrent.
    Concurrent,
}

/// How a history's events are to be read: what its format means, beyond
/// the rules every history obeys. Each format has its own
/// (`docs/checker.md`); the default is Synod's own.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Semantics {
    /// The value of every key before its first write (both models).
    pub initial: Value,
    pub failed_cas: FailedCas,
    pub nil_read: NilRead,
    pub ties: Ties,
}

/// Why a history cannot be judged by a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// An operation's value does not fit it (`index` of the event).
    #[error("event {index}: {reason}")]
    BadOp { index: u64, reason: String },
    /// Nothing to judge: a verdict on no operations would mean nothing.
    #[error("no client operations: nothing to check")]
    NoOperations,
}

impl ModelError {
    /// The 1-based line of the event in a JSON Lines history.
    pub fn line(&self) -> Option<usize> {
        match self {
            ModelError::BadOp { index, .. } => Some(*index as usize + 1),
            ModelError::NoOperations => None,
        }
    }
    pub fn reason(&self) -> String {
        match self {
            ModelError::BadOp { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }
}
