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
use crate::history::{Event, EventType, Fun, History, Process, NOT_PROPOSED};

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
///
/// Strings made by `append` are not built while searching: such a value is
/// stored as (parent value, suffix) with its length and a polynomial hash,
/// which compose (`H(a+b) = H(a)·P^|b| + H(b)`). Identity stays canonical
/// (equal strings, equal ids, however they were made): a new append result
/// is looked up by (length, hash) among all strings, and only a hash match
/// is confirmed by spelling both strings out. Building and hashing the
/// whole string for every append dominated the kv corpus' profile.
#[derive(Clone, Debug, Default)]
pub struct Values {
    entries: Vec<Entry>,
    /// Base values (from the history) -> id.
    ids: FxHashMap<Atom, Val>,
    /// (length, hash) of every string value -> its id.
    strings: FxHashMap<(u32, u64), Val>,
    /// Further strings whose (length, hash) was taken by another string:
    /// a 64-bit collision, so practically never used, but correct if so.
    collisions: Vec<((u32, u64), Val)>,
    /// (state, suffix) -> state after the append, so each transition is
    /// computed once.
    appends: FxHashMap<(Val, Val), Val>,
}

#[derive(Clone, Debug)]
struct Entry {
    /// `Some` for a base value; `None` for an append result.
    atom: Option<Atom>,
    /// For an append result: the value appended to and the suffix.
    parent: Val,
    suffix: Val,
    /// For strings (and null, which appends treat as ""): length, hash.
    len: u32,
    hash: u64,
}

const POLY: u64 = 0x100_0000_01b3;

fn poly_hash(s: &str) -> u64 {
    s.bytes()
        .fold(0u64, |h, b| h.wrapping_mul(POLY).wrapping_add(b as u64 + 1))
}

fn poly_pow(mut n: u32) -> u64 {
    let (mut base, mut acc) = (POLY, 1u64);
    while n > 0 {
        if n & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        n >>= 1;
    }
    acc
}

impl Values {
    pub fn intern(&mut self, atom: Atom) -> Val {
        if let Some(&id) = self.ids.get(&atom) {
            return id;
        }
        let (len, hash) = match &atom {
            Atom::Str(s) => (s.len() as u32, poly_hash(s)),
            _ => (0, 0),
        };
        let id = self.entries.len() as Val;
        if let Atom::Str(s) = &atom {
            // An append may have made this string already (only possible
            // if the history is interned after searching, but keep ids
            // canonical regardless).
            if let Some(found) = self.find_string(len, hash, s) {
                self.ids.insert(atom, found);
                return found;
            }
            self.add_string(len, hash, id);
        }
        self.entries.push(Entry {
            atom: Some(atom.clone()),
            parent: 0,
            suffix: 0,
            len,
            hash,
        });
        self.ids.insert(atom, id);
        id
    }

    fn add_string(&mut self, len: u32, hash: u64, id: Val) {
        match self.strings.entry((len, hash)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.push(((len, hash), id));
            }
        }
    }

    /// Ids of strings with this signature (almost always 0 or 1).
    fn candidates(&self, len: u32, hash: u64) -> impl Iterator<Item = Val> + '_ {
        let first = self.strings.get(&(len, hash)).copied();
        let more = self
            .collisions
            .iter()
            .filter(move |(k, _)| first.is_some() && *k == (len, hash))
            .map(|&(_, id)| id);
        first.into_iter().chain(more)
    }

    fn find_string(&self, len: u32, hash: u64, s: &str) -> Option<Val> {
        self.candidates(len, hash).find(|&c| self.spells(c, s))
    }

    /// Whether value `id` spells `s`, walking its append chain from the
    /// end without building the string.
    fn spells(&self, mut id: Val, mut s: &str) -> bool {
        loop {
            let e = &self.entries[id as usize];
            match &e.atom {
                Some(Atom::Str(t)) => return t.as_ref() == s,
                Some(Atom::Null) => return s.is_empty(),
                Some(_) => return false,
                None => {
                    let Some(Atom::Str(t)) = &self.entries[e.suffix as usize].atom else {
                        return false;
                    };
                    match s.strip_suffix(t.as_ref()) {
                        Some(rest) => s = rest,
                        None => return false,
                    }
                    id = e.parent;
                }
            }
        }
    }

    /// The string a value spells (`None` for non-strings; null is "").
    pub fn text(&self, id: Val) -> Option<String> {
        let mut parts = Vec::new();
        let mut at = id;
        loop {
            let e = &self.entries[at as usize];
            match &e.atom {
                Some(Atom::Str(s)) => {
                    parts.push(s.as_ref());
                    break;
                }
                Some(Atom::Null) => break,
                Some(_) => return None,
                None => {
                    match &self.entries[e.suffix as usize].atom {
                        Some(Atom::Str(s)) => parts.push(s.as_ref()),
                        _ => return None,
                    }
                    at = e.parent;
                }
            }
        }
        let mut out = String::new();
        for p in parts.iter().rev() {
            out.push_str(p);
        }
        Some(out)
    }

    /// The value `state` + `suffix`; `None` if either is not a string.
    pub fn append(&mut self, state: Val, suffix: Val) -> Option<Val> {
        if let Some(&next) = self.appends.get(&(state, suffix)) {
            return Some(next);
        }
        let (a, b) = (
            &self.entries[state as usize],
            &self.entries[suffix as usize],
        );
        let base_ok = matches!(a.atom, None | Some(Atom::Null) | Some(Atom::Str(_)));
        if !base_ok || !matches!(b.atom, Some(Atom::Str(_))) {
            return None;
        }
        let len = a.len + b.len;
        let hash = a.hash.wrapping_mul(poly_pow(b.len)).wrapping_add(b.hash);
        // A signature match means an equal string, almost surely: confirm
        // it (this happens when the result is a value the history reads).
        let existing = self.candidates(len, hash).find(|&c| {
            let Some(Atom::Str(t)) = &self.entries[suffix as usize].atom else {
                return false;
            };
            match &self.entries[c as usize].atom {
                Some(Atom::Str(cs)) => cs
                    .strip_suffix(t.as_ref())
                    .is_some_and(|rest| self.spells(state, rest)),
                _ => self.text(c).is_some_and(|cs| {
                    cs.strip_suffix(t.as_ref())
                        .is_some_and(|rest| self.spells(state, rest))
                }),
            }
        });
        let next = match existing {
            Some(id) => id,
            None => {
                let id = self.entries.len() as Val;
                self.entries.push(Entry {
                    atom: None,
                    parent: state,
                    suffix,
                    len,
                    hash,
                });
                self.add_string(len, hash, id);
                id
            }
        };
        self.appends.insert((state, suffix), next);
        Some(next)
    }

    /// The value as the explanations show it.
    pub fn display(&self, id: Val) -> String {
        match &self.entries[id as usize].atom {
            Some(atom) => atom.to_string(),
            None => format!("{:?}", self.text(id).unwrap_or_default()),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
    use rayon::prelude::*;
    let kind = resolve(kind, history);
    let initial = match kind {
        ModelKind::Kv => Atom::from_json(initial),
        _ => Atom::Null,
    };
    // Pairing invocations with completions needs one ordered pass; building
    // each key's ops (interning its values) is independent per key, so it
    // runs in parallel: on a million ops it was the check's serial part.
    let mut open: FxHashMap<u64, usize> = FxHashMap::default();
    let mut pairs: Vec<(usize, Option<usize>)> = Vec::with_capacity(history.events.len() / 2);
    for (i, e) in history.events.iter().enumerate() {
        let Process::Client(p) = e.process else {
            continue;
        };
        if e.kind == EventType::Invoke {
            open.insert(p, i);
        } else if let Some(at) = open.remove(&p) {
            pairs.push((at, Some(i)));
        }
    }
    // Invocations the run never completed are `info` (rule 5).
    let mut rest: Vec<usize> = open.into_values().collect();
    rest.sort_unstable();
    pairs.extend(rest.into_iter().map(|at| (at, None)));
    let mut by_key: FxHashMap<&str, Vec<(usize, Option<usize>)>> = FxHashMap::default();
    for &(at, done) in &pairs {
        by_key
            .entry(history.events[at].key())
            .or_default()
            .push((at, done));
    }
    let groups: Vec<Vec<(usize, Option<usize>)>> = by_key.into_values().collect();
    let built: Vec<Result<Option<KeyHistory>, ModelError>> = groups
        .par_iter()
        .map(|pairs| build_key(history, pairs, kind, &initial))
        .collect();
    let mut out = Vec::with_capacity(built.len());
    let mut first_error: Option<ModelError> = None;
    for r in built {
        match r {
            Ok(Some(k)) => out.push(k),
            Ok(None) => {}
            // Report the earliest bad event, whichever thread found it.
            Err(e) => {
                let earlier = match (&first_error, &e) {
                    (None, _) => true,
                    (
                        Some(ModelError::BadOp { index: a, .. }),
                        ModelError::BadOp { index: b, .. },
                    ) => b < a,
                };
                if earlier {
                    first_error = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Builds one key's ops from its (invoke, completion) pairs; `None` if
/// none of them constrains the key (e.g. only failed reads).
fn build_key(
    history: &History,
    pairs: &[(usize, Option<usize>)],
    kind: ModelKind,
    initial: &Atom,
) -> Result<Option<KeyHistory>, ModelError> {
    let mut keys: FxHashMap<String, Builder> = FxHashMap::default();
    let bad = |e: &Event, reason: String| ModelError::BadOp {
        index: e.index,
        reason,
    };
    let mut add = |inv: &Event, done: Option<&Event>| -> Result<(), ModelError> {
        let outcome = done.map(|d| d.kind).unwrap_or(EventType::Info);
        // A failed cas says the key held another value, unless it never
        // reached the state machine (`docs/history.md`, rule 3); every
        // other failure says nothing and is dropped.
        let never_proposed = done
            .and_then(|d| d.error.as_deref())
            .is_some_and(|e| e.starts_with(NOT_PROPOSED));
        if outcome == EventType::Fail && (inv.f != Fun::Cas || never_proposed) {
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
    for &(at, done) in pairs {
        add(&history.events[at], done.map(|d| &history.events[d]))?;
    }
    Ok(keys.into_values().next().map(|b| KeyHistory {
        key: b.key,
        ops: b.ops,
        values: RefCell::new(b.values),
        initial: b.initial,
        allow_append: kind == ModelKind::Kv,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_strings_keep_canonical_ids() {
        let mut v = Values::default();
        let null = v.intern(Atom::Null);
        let x = v.intern(Atom::Str("x".into()));
        let y = v.intern(Atom::Str("y".into()));
        let xy = v.intern(Atom::Str("xy".into()));
        let n = v.intern(Atom::Int(3));
        let after_x = v.append(null, x).unwrap();
        assert_eq!(after_x, x, "null + \"x\" is the value \"x\"");
        assert_eq!(v.append(after_x, y), Some(xy), "\"x\" + \"y\" is \"xy\"");
        let yx = v.append(y, x).unwrap();
        assert_ne!(yx, xy);
        assert_eq!(v.display(yx), "\"yx\"");
        assert_eq!(
            v.append(yx, xy).and_then(|id| v.text(id)).as_deref(),
            Some("yxxy")
        );
        assert_eq!(v.append(n, x), None, "cannot append to an integer");
    }
}
