//! The one shape every foreign reader produces, [`RawEvent`], and
//! [`normalise`], which turns those events into a history that obeys
//! `docs/history.md` (the parent module's doc lists what it does). Kept
//! apart from the readers so each format only has to say what its lines
//! state.

use std::collections::HashMap;

use serde_json::Value;

use super::invalid;
use crate::history::{Event, EventType, Fun, History, HistoryError, Process};

/// Who issued a foreign event, before relabelling.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RawProcess {
    Client(i64),
    Nemesis,
}

/// One event as a foreign format states it.
#[derive(Clone, Debug)]
pub struct RawEvent {
    /// 1-based line in the source, for errors.
    pub line: usize,
    pub time: Option<u64>,
    pub process: RawProcess,
    pub kind: EventType,
    /// The operation name, already mapped to Synod's (`get` -> `read`).
    pub f: String,
    pub key: Option<String>,
    pub value: Value,
    pub error: Option<String>,
}

pub(super) fn kind_of(word: &str) -> Option<EventType> {
    Some(match word {
        "invoke" => EventType::Invoke,
        "ok" => EventType::Ok,
        "fail" => EventType::Fail,
        "info" => EventType::Info,
        _ => return None,
    })
}

/// Maps a foreign operation name to Synod's (Porcupine's kv says get/put).
fn client_f(name: &str) -> Option<&'static str> {
    Some(match name {
        "read" | "get" => "read",
        "write" | "put" => "write",
        "cas" => "cas",
        "append" => "append",
        _ => return None,
    })
}

/// Per foreign process: its current Synod id and open invocation.
struct Lane {
    id: u64,
    /// The open invocation: its f, key, value.
    open: Option<(String, Option<String>, Value)>,
    /// Completed with `info`: the next invocation needs a fresh id.
    retired: bool,
}

/// How [`normalise`] treats what some formats need.
#[derive(Clone, Copy, Debug, Default)]
pub struct Normalise {
    /// Look for `jepsen.independent` tuples (see [`is_independent`]).
    pub tuples: bool,
    /// Times that go backwards are clamped (the source's order is the
    /// order of observation); otherwise they are an error.
    pub clamp_times: bool,
}

/// Whether a history is `jepsen.independent`'s: every client invocation's
/// value is a `[key value]` tuple (a read's `[k nil]`, a cas' `[k [old
/// new]]`). A plain register's reads invoke with `nil`, and its cas values'
/// second element is no pair, so plain histories never look like this.
pub fn is_independent(raw: &[RawEvent]) -> bool {
    let mut invokes = raw
        .iter()
        .filter(|e| e.kind == EventType::Invoke && matches!(e.process, RawProcess::Client(_)))
        .peekable();
    invokes.peek().is_some()
        && invokes.all(|e| {
            e.key.is_none()
                && match e.value.as_array().map(Vec::as_slice) {
                    Some([_, v]) => {
                        client_f(&e.f) != Some("cas") || v.as_array().is_some_and(|p| p.len() == 2)
                    }
                    _ => false,
                }
        })
}

/// The key a tuple names, as Synod's keys are strings.
fn tuple_key(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Turns foreign events into a history that obeys `docs/history.md`, and
/// the source line of each of its events.
pub fn normalise(
    raw: Vec<RawEvent>,
    how: Normalise,
) -> Result<(History, Vec<usize>), HistoryError> {
    let independent = how.tuples && is_independent(&raw);
    // Fresh ids start above every id the source uses, so none collides.
    let mut next_fresh = raw
        .iter()
        .filter_map(|e| match e.process {
            RawProcess::Client(p) => Some(p.max(0) as u64 + 1),
            RawProcess::Nemesis => None,
        })
        .max()
        .unwrap_or(0);
    let mut lanes: HashMap<i64, Lane> = HashMap::new();
    let all_timed = !raw.is_empty() && raw.iter().all(|e| e.time.is_some());
    let mut events = Vec::with_capacity(raw.len());
    let mut lines = Vec::with_capacity(raw.len());
    let mut last_time = 0u64;
    for (i, mut e) in raw.into_iter().enumerate() {
        // Sources without times get one millisecond per event, so reports
        // still have a time axis.
        let time = if all_timed {
            let t = e.time.unwrap_or(0);
            if t < last_time && !how.clamp_times {
                return Err(invalid(
                    e.line,
                    format!("time goes backwards: {t} after {last_time}"),
                ));
            }
            t.max(last_time)
        } else {
            i as u64 * 1_000_000
        };
        last_time = time;
        lines.push(e.line);
        let p = match e.process {
            RawProcess::Nemesis => {
                events.push(Event {
                    index: events.len() as u64,
                    time,
                    process: Process::Nemesis,
                    kind: EventType::Info,
                    f: Fun::Nemesis(e.f),
                    key: e.key,
                    value: e.value,
                    error: e.error,
                    node: None,
                    mismatch: false,
                    not_proposed: false,
                });
                continue;
            }
            RawProcess::Client(p) => p,
        };
        if p < 0 {
            return Err(invalid(e.line, format!("negative process {p}")));
        }
        let f_name = client_f(&e.f)
            .ok_or_else(|| invalid(e.line, format!("unknown client operation f={:?}", e.f)))?;
        let f = Fun::client_op(f_name).ok_or_else(|| invalid(e.line, "unknown operation"))?;
        let lane = lanes.entry(p).or_insert(Lane {
            id: p as u64,
            open: None,
            retired: false,
        });
        if independent && !e.value.is_null() {
            // `[k v]`: key k, value v.
            let Value::Array(mut pair) = std::mem::take(&mut e.value) else {
                return Err(invalid(
                    e.line,
                    "expected a jepsen.independent [key value] tuple",
                ));
            };
            if pair.len() != 2 {
                return Err(invalid(
                    e.line,
                    "expected a jepsen.independent [key value] tuple",
                ));
            }
            e.value = pair.pop().unwrap_or_default();
            e.key = pair.pop().as_ref().map(tuple_key);
        }
        let value = match e.kind {
            EventType::Invoke => {
                if lane.open.is_some() {
                    return Err(invalid(
                        e.line,
                        format!("process {p} invokes while its previous operation is still open"),
                    ));
                }
                if lane.retired {
                    lane.id = next_fresh;
                    next_fresh += 1;
                    lane.retired = false;
                }
                lane.open = Some((f_name.to_string(), e.key.clone(), e.value.clone()));
                e.value
            }
            kind => {
                let Some((open_f, open_key, invoke_value)) = lane.open.take() else {
                    return Err(invalid(
                        e.line,
                        format!("{kind} completion by process {p} without an invoke"),
                    ));
                };
                // A completion without a tuple is about its invocation's key.
                if independent && e.key.is_none() {
                    e.key = open_key.clone();
                }
                if open_f != f_name || open_key != e.key {
                    return Err(invalid(
                        e.line,
                        format!("{kind} of {f_name} by process {p} does not match its invoke of {open_f}"),
                    ));
                }
                if kind == EventType::Info {
                    lane.retired = true;
                }
                match (kind, &f) {
                    (EventType::Ok, Fun::Read) => e.value,
                    (EventType::Ok, _) if !e.value.is_null() => e.value,
                    // fail/info carry the invocation's argument: a failed
                    // cas still names the value it expected.
                    _ => invoke_value,
                }
            }
        };
        events.push(Event {
            index: events.len() as u64,
            time,
            process: Process::Client(lane.id),
            kind: e.kind,
            f,
            key: e.key,
            value,
            error: e.error,
            node: None,
            mismatch: false,
            not_proposed: false,
        });
    }
    let history = History::validated(events).map_err(|e| match e {
        HistoryError::Invalid { line, reason } => invalid(
            lines.get(line.wrapping_sub(1)).copied().unwrap_or(line),
            reason,
        ),
        other => other,
    })?;
    Ok((history, lines))
}
