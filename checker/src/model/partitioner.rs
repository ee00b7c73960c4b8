//! Building each key's operations from the events: the [`Partitioner`]
//! splits a history by key as it streams past, pairs completions with
//! invocations, drops what constrains nothing and interns the values.

use std::cell::RefCell;

use serde_json::Value;

use super::{
    Atom, Call, FailedCas, KeyHistory, KeyOp, ModelError, ModelKind, NilRead, Semantics, Ties, Val,
    Values, INFINITY,
};
use crate::fxhash::FxHashMap;
use crate::history::{Event, EventType, Fun, History, Process};

/// A history split by key, ready for the search.
#[derive(Debug)]
pub struct Partition {
    /// The model that judges it (never `Auto`).
    pub kind: ModelKind,
    /// Keys sorted by name; keys whose every op was dropped are absent.
    pub keys: Vec<KeyHistory>,
    /// Client operations invoked, dropped ones included.
    pub client_ops: u64,
}

/// What an open invocation needs kept until its completion.
struct Invocation {
    /// The key's slot in `keys`.
    slot: u32,
    f: Fun,
    time: u64,
    index: u64,
    value: Value,
}

/// One key's ops while they are collected.
struct KeyBuilder {
    key: Box<str>,
    ops: Vec<KeyOp>,
    values: Values,
    initial: Val,
}

/// Splits a history into per-key operations as its events stream past
/// (P-compositionality: a history is linearizable iff each key's
/// sub-history is), so a history is never held whole: each event is turned
/// into its key's compact [`KeyOp`] (values interned) as soon as its
/// completion arrives.
///
/// What is dropped, because it constrains nothing: failed reads, writes
/// and appends; failed cas ops unless [`Semantics::failed_cas`] reads them
/// as mismatches; `info` reads; and, with [`NilRead::Any`], `ok` reads of
/// `null`. Events must obey the rules of `docs/history.md` (the readers
/// validate them before they get here).
pub struct Partitioner {
    kind: ModelKind,
    semantics: Semantics,
    initial: Atom,
    keys: Vec<KeyBuilder>,
    key_ids: FxHashMap<Box<str>, u32>,
    /// Process -> its open invocation.
    open: FxHashMap<u64, Invocation>,
    client_ops: u64,
    /// The index of the first append that counts: whether `Auto` means
    /// `kv` is known only at the end.
    first_append: Option<u64>,
}

impl Partitioner {
    pub fn new(kind: ModelKind, semantics: &Semantics) -> Self {
        Partitioner {
            kind,
            initial: Atom::from_json(&semantics.initial),
            semantics: semantics.clone(),
            keys: Vec::new(),
            key_ids: FxHashMap::default(),
            open: FxHashMap::default(),
            client_ops: 0,
            first_append: None,
        }
    }

    /// Takes the next event of the history.
    pub fn push(&mut self, e: &Event) -> Result<(), ModelError> {
        let Process::Client(p) = e.process else {
            return Ok(());
        };
        if e.kind == EventType::Invoke {
            self.client_ops += 1;
            let inv = Invocation {
                slot: self.key_slot(e.key()),
                f: e.f.clone(),
                time: e.time,
                index: e.index,
                value: e.value.clone(),
            };
            self.open.insert(p, inv);
            return Ok(());
        }
        match self.open.remove(&p) {
            Some(inv) => self.add(p, inv, Some(e)),
            // The readers reject such a history; an unvalidated one loses
            // only the orphan.
            None => Ok(()),
        }
    }

    /// Ends the history: invocations never completed become `info` ops
    /// (rule 5), and the keys are handed over.
    pub fn finish(mut self) -> Result<Partition, ModelError> {
        let mut open: Vec<(u64, Invocation)> = std::mem::take(&mut self.open).into_iter().collect();
        open.sort_unstable_by_key(|(_, inv)| inv.index);
        for (p, inv) in open {
            self.add(p, inv, None)?;
        }
        if self.client_ops == 0 {
            return Err(ModelError::NoOperations);
        }
        let kind = match self.kind {
            ModelKind::Auto if self.first_append.is_some() => ModelKind::Kv,
            ModelKind::Auto => ModelKind::CasRegister,
            k => k,
        };
        let ordered = self.semantics.ties == Ties::Ordered;
        let mut keys: Vec<KeyHistory> = self
            .keys
            .into_iter()
            .filter(|b| !b.ops.is_empty())
            .map(|mut b| KeyHistory {
                key: b.key.into(),
                ops: {
                    b.ops.shrink_to_fit();
                    b.ops
                },
                values: RefCell::new(b.values),
                initial: b.initial,
                allow_append: kind == ModelKind::Kv,
                ordered,
            })
            .collect();
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Partition {
            kind,
            keys,
            client_ops: self.client_ops,
        })
    }

    fn key_slot(&mut self, key: &str) -> u32 {
        if let Some(&slot) = self.key_ids.get(key) {
            return slot;
        }
        let slot = self.keys.len() as u32;
        let mut values = Values::default();
        values.intern(Atom::Null);
        let initial = values.intern(self.initial.clone());
        self.keys.push(KeyBuilder {
            key: key.into(),
            ops: Vec::new(),
            values,
            initial,
        });
        self.key_ids.insert(key.into(), slot);
        slot
    }

    /// Adds one operation of `process`: its invocation and completion
    /// (`None`: never completed).
    fn add(
        &mut self,
        process: u64,
        inv: Invocation,
        done: Option<&Event>,
    ) -> Result<(), ModelError> {
        let bad = |index: u64, reason: String| ModelError::BadOp { index, reason };
        let outcome = done.map(|d| d.kind).unwrap_or(EventType::Info);
        match (outcome, &inv.f) {
            (EventType::Fail, Fun::Cas) => {
                let mismatch = match self.semantics.failed_cas {
                    FailedCas::Marked => done.is_some_and(Event::says_mismatch),
                    FailedCas::Drop => false,
                    FailedCas::Mismatch => true,
                };
                if !mismatch {
                    return Ok(());
                }
            }
            (EventType::Fail, _) | (EventType::Info, Fun::Read) => return Ok(()),
            _ => {}
        }
        // The value that says what happened: what a read returned; for
        // the others the invocation's, which an `ok` may repeat but not
        // contradict.
        let value = match (outcome, done) {
            (EventType::Ok, Some(d)) if inv.f == Fun::Read => {
                if d.value.is_null() && self.semantics.nil_read == NilRead::Any {
                    return Ok(());
                }
                &d.value
            }
            (EventType::Ok, Some(d)) if !d.value.is_null() && d.value != inv.value => {
                return Err(bad(
                    d.index,
                    format!(
                        "ok {} of {} does not match its invocation's {}",
                        inv.f, d.value, inv.value
                    ),
                ));
            }
            _ => &inv.value,
        };
        // The event whose value is used, for errors.
        let value_at = done
            .filter(|_| outcome == EventType::Ok)
            .map_or(inv.index, |d| d.index);
        let b = &mut self.keys[inv.slot as usize];
        let mut val = |v: &Value| b.values.intern(Atom::from_json(v));
        let what = match &inv.f {
            Fun::Read => Call::Read(val(value)),
            Fun::Write => Call::Write(val(value)),
            Fun::Append => {
                if self.kind == ModelKind::CasRegister {
                    let reason = "append needs the kv model (--model kv)".into();
                    return Err(bad(inv.index, reason));
                }
                if !value.is_string() {
                    return Err(bad(value_at, "append needs a string value".into()));
                }
                self.first_append.get_or_insert(inv.index);
                Call::Append(val(value))
            }
            Fun::Cas => {
                let pair = match value {
                    Value::Array(xs) if xs.len() == 2 => (val(&xs[0]), val(&xs[1])),
                    other => {
                        let reason = format!("cas needs [expected, new], got {other}");
                        return Err(bad(value_at, reason));
                    }
                };
                if outcome == EventType::Fail {
                    Call::CasFailed(pair.0)
                } else {
                    Call::Cas(pair.0, pair.1)
                }
            }
            Fun::Nemesis(name) => {
                let reason = format!("unknown client operation {name}");
                return Err(bad(inv.index, reason));
            }
        };
        let definite = outcome != EventType::Info;
        b.ops.push(KeyOp {
            call: inv.time,
            ret: match done {
                Some(d) if definite => d.time,
                _ => INFINITY,
            },
            what,
            definite,
            invoke_index: inv.index,
            complete_index: done.map(|d| d.index),
            process,
            outcome,
        });
        Ok(())
    }
}

/// Splits a whole history in memory (see [`Partitioner`]).
pub fn partition(
    history: &History,
    kind: ModelKind,
    semantics: &Semantics,
) -> Result<Partition, ModelError> {
    let mut p = Partitioner::new(kind, semantics);
    for e in &history.events {
        p.push(e)?;
    }
    p.finish()
}
