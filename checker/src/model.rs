//! Models: what a correct single-copy object does, à la Porcupine.
//!
//! A [`Model`] is a handful of small functions: an initial state, a `step`
//! that says whether an operation with its observed result is legal in a
//! state (and the state after it), and `describe` functions for
//! explanations. [`partition`] is the model's other half: it splits a
//! history into independent keys (P-compositionality: a history is
//! linearizable iff each key's sub-history is) and turns each key's events
//! into compact [`Op`]s whose values are interned to small integers, so the
//! search copies and hashes `u32`s instead of JSON.
//!
//! Both models share one register per key: `cas-register` accepts read,
//! write and cas; `kv` also accepts append (string concatenation, the
//! Porcupine kv corpus), and may start keys at `""` instead of `null`.

use std::cell::RefCell;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;

use serde_json::Value;

use crate::fxhash::FxHashMap;
use crate::history::{Event, EventType, Fun, History, Process};

/// An interned value: an index into a key's [`Values`].
pub type Val = u32;

/// A value as the models compare it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Atom {
    Null,
    Int(i64),
    Str(Box<str>),
    /// Anything else (floats, arrays, maps), compared by its JSON text.
    Json(Box<str>),
}

impl Atom {
    pub fn from_json(v: &Value) -> Atom {
        match v {
            Value::Null => Atom::Null,
            Value::String(s) => Atom::Str(s.as_str().into()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Atom::Int(i),
                None => Atom::Json(n.to_string().into()),
            },
            other => Atom::Json(other.to_string().into()),
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Null => f.write_str("null"),
            Atom::Int(i) => write!(f, "{i}"),
            Atom::Str(s) => write!(f, "{s:?}"),
            Atom::Json(j) => f.write_str(j),
        }
    }
}

/// A key's value table: interning makes states `u32` and equality cheap.
#[derive(Clone, Debug, Default)]
pub struct Values {
    atoms: Vec<Atom>,
    ids: FxHashMap<Atom, Val>,
}

impl Values {
    pub fn intern(&mut self, atom: Atom) -> Val {
        if let Some(&id) = self.ids.get(&atom) {
            return id;
        }
        let id = self.atoms.len() as Val;
        self.atoms.push(atom.clone());
        self.ids.insert(atom, id);
        id
    }

    pub fn get(&self, id: Val) -> &Atom {
        &self.atoms[id as usize]
    }

    pub fn len(&self) -> usize {
        self.atoms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.atoms.is_empty()
    }
}

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
pub struct Op {
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
    pub ops: Vec<Op>,
    /// Interior mutability because `append` creates values while searching;
    /// one key is searched by one thread, so a `RefCell` suffices.
    pub values: RefCell<Values>,
    pub initial: Val,
    pub allow_append: bool,
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
            Call::Append(suffix) => {
                let mut values = self.key.values.borrow_mut();
                let joined = match (values.get(state), values.get(suffix)) {
                    (Atom::Null, Atom::Str(s)) => Atom::Str(s.clone()),
                    (Atom::Str(a), Atom::Str(b)) => Atom::Str(format!("{a}{b}").into()),
                    _ => return None,
                };
                Some(values.intern(joined))
            }
        }
    }

    fn describe_call(&self, call: &Call) -> String {
        let values = self.key.values.borrow();
        let v = |id: Val| values.get(id).to_string();
        match *call {
            Call::Read(x) => format!("read -> {}", v(x)),
            Call::Write(x) => format!("write {}", v(x)),
            Call::Cas(a, b) => format!("cas {} -> {}", v(a), v(b)),
            Call::CasFailed(a) => format!("cas {} failed (value was not {})", v(a), v(a)),
            Call::Append(x) => format!("append {}", v(x)),
        }
    }

    fn describe_state(&self, &state: &Val) -> String {
        self.key.values.borrow().get(state).to_string()
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

/// Why a history cannot be judged by a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// An operation's value does not fit it (`index` of the event).
    #[error("event {index}: {reason}")]
    BadOp { index: u64, reason: String },
}

impl ModelError {
    /// The 1-based line of the event, for `file:line: reason`.
    pub fn line(&self) -> usize {
        match self {
            ModelError::BadOp { index, .. } => *index as usize + 1,
        }
    }
    pub fn reason(&self) -> &str {
        match self {
            ModelError::BadOp { reason, .. } => reason,
        }
    }
}

/// Resolves `Auto` for a history.
pub fn resolve(kind: ModelKind, history: &History) -> ModelKind {
    match kind {
        ModelKind::Auto => {
            if history.events.iter().any(|e| e.f == Fun::Append) {
                ModelKind::Kv
            } else {
                ModelKind::CasRegister
            }
        }
        k => k,
    }
}

struct Builder {
    key: String,
    ops: Vec<Op>,
    values: Values,
    initial: Val,
}

/// Splits a history into per-key operations (keys sorted by name).
///
/// `initial` is the value of a never-written key under `kv`; `cas-register`
/// always starts at `null`. `fail`ed reads, writes and appends are dropped
/// (they tell nothing); `info` reads too (they constrain nothing).
pub fn partition(
    history: &History,
    kind: ModelKind,
    initial: &Value,
) -> Result<Vec<KeyHistory>, ModelError> {
    let kind = resolve(kind, history);
    let initial = match kind {
        ModelKind::Kv => Atom::from_json(initial),
        _ => Atom::Null,
    };
    let mut keys: FxHashMap<String, Builder> = FxHashMap::default();
    // Open invocation per process: the event's position.
    let mut open: FxHashMap<u64, usize> = FxHashMap::default();
    let bad = |e: &Event, reason: String| ModelError::BadOp {
        index: e.index,
        reason,
    };
    let mut add = |inv: &Event, done: Option<&Event>| -> Result<(), ModelError> {
        let outcome = done.map(|d| d.kind).unwrap_or(EventType::Info);
        if outcome == EventType::Fail && inv.f != Fun::Cas {
            return Ok(());
        }
        if outcome == EventType::Info && inv.f == Fun::Read {
            return Ok(());
        }
        if inv.f == Fun::Append && kind != ModelKind::Kv {
            return Err(bad(inv, "append needs the kv model (--model kv)".into()));
        }
        if !keys.contains_key(inv.key()) {
            let mut values = Values::default();
            values.intern(Atom::Null);
            let initial = values.intern(initial.clone());
            let b = Builder {
                key: inv.key().to_string(),
                ops: Vec::new(),
                values,
                initial,
            };
            keys.insert(inv.key().to_string(), b);
        }
        let Some(b) = keys.get_mut(inv.key()) else {
            unreachable!("the key was inserted just above");
        };
        let value_event = match (outcome, done) {
            (EventType::Ok, Some(d)) => d,
            _ => inv,
        };
        let mut val = |v: &Value| b.values.intern(Atom::from_json(v));
        let what = match &inv.f {
            Fun::Read => Call::Read(val(&value_event.value)),
            Fun::Write => Call::Write(val(&value_event.value)),
            Fun::Append => {
                if !value_event.value.is_string() {
                    return Err(bad(value_event, "append needs a string value".into()));
                }
                Call::Append(val(&value_event.value))
            }
            Fun::Cas => {
                let pair = match &value_event.value {
                    Value::Array(xs) if xs.len() == 2 => (val(&xs[0]), val(&xs[1])),
                    other => {
                        return Err(bad(
                            value_event,
                            format!("cas needs [expected, new], got {other}"),
                        ))
                    }
                };
                if outcome == EventType::Fail {
                    Call::CasFailed(pair.0)
                } else {
                    Call::Cas(pair.0, pair.1)
                }
            }
            Fun::Nemesis(name) => return Err(bad(inv, format!("unknown client operation {name}"))),
        };
        let definite = outcome != EventType::Info;
        b.ops.push(Op {
            call: inv.time,
            ret: if definite {
                done.map(|d| d.time).unwrap_or(INFINITY)
            } else {
                INFINITY
            },
            what,
            definite,
            invoke_index: inv.index,
            complete_index: done.map(|d| d.index),
            process: match inv.process {
                Process::Client(p) => p,
                Process::Nemesis => 0,
            },
            outcome,
        });
        Ok(())
    };
    for (i, e) in history.events.iter().enumerate() {
        let Process::Client(p) = e.process else {
            continue;
        };
        if e.kind == EventType::Invoke {
            open.insert(p, i);
        } else if let Some(at) = open.remove(&p) {
            add(&history.events[at], Some(e))?;
        }
    }
    // Invocations the run never completed are `info` (rule 5).
    let mut rest: Vec<usize> = open.into_values().collect();
    rest.sort_unstable();
    for at in rest {
        add(&history.events[at], None)?;
    }
    let mut out: Vec<KeyHistory> = keys
        .into_values()
        .map(|b| KeyHistory {
            key: b.key,
            ops: b.ops,
            values: RefCell::new(b.values),
            initial: b.initial,
            allow_append: kind == ModelKind::Kv,
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}
