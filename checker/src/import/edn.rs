//! EDN event maps into [`RawEvent`]s: Porcupine's one map per line and
//! Jepsen's `history.edn` (one vector or sequence of maps), noting when
//! the events use Porcupine's get/put vocabulary.

use serde_json::Value;

use super::invalid;
use super::raw::{kind_of, RawEvent, RawProcess};
use crate::edn::{Edn, EdnReader};
use crate::history::HistoryError;

/// Parses EDN maps, one per line or inside one top-level vector/list.
/// Returns the events and whether they use Porcupine's kv vocabulary
/// (`get`/`put`), whose missing keys read as `""`.
pub fn parse_edn(text: &str) -> Result<(Vec<RawEvent>, bool), HistoryError> {
    let mut reader = EdnReader::new(text);
    let mut out = Vec::new();
    let mut porcupine_kv = false;
    let edn_err = |e: crate::edn::EdnError| invalid(e.line, e.reason);
    while let Some((line, form)) = reader.next_form().map_err(edn_err)? {
        match form {
            Edn::Map(_) => out.push(edn_event(line, &form, &mut porcupine_kv)?),
            Edn::Vector(items) | Edn::List(items) => {
                // Inside one big vector, forms have no line of their own; we
                // count maps instead, which is what an editor shows for the
                // usual one-map-per-line layout.
                for (i, item) in items.iter().enumerate() {
                    out.push(edn_event(line + i, item, &mut porcupine_kv)?);
                }
            }
            other => {
                return Err(invalid(
                    line,
                    format!("expected an EDN map of an event, got {other}"),
                ))
            }
        }
    }
    Ok((out, porcupine_kv))
}

fn edn_event(line: usize, form: &Edn, porcupine_kv: &mut bool) -> Result<RawEvent, HistoryError> {
    if !matches!(form, Edn::Map(_)) {
        return Err(invalid(line, format!("expected an event map, got {form}")));
    }
    let word = |field: &str| -> Result<String, HistoryError> {
        match form.get(field) {
            Some(Edn::Keyword(k)) | Some(Edn::Str(k)) | Some(Edn::Symbol(k)) => Ok(k.clone()),
            Some(other) => Err(invalid(line, format!("bad :{field} {other}"))),
            None => Err(invalid(line, format!("missing field :{field}"))),
        }
    };
    let process = match form.get("process") {
        Some(Edn::Int(p)) => RawProcess::Client(*p),
        Some(Edn::Keyword(k)) | Some(Edn::Str(k)) if k == "nemesis" => RawProcess::Nemesis,
        Some(other) => return Err(invalid(line, format!("bad :process {other}"))),
        None => return Err(invalid(line, "missing field :process")),
    };
    let kind_word = word("type")?;
    let kind =
        kind_of(&kind_word).ok_or_else(|| invalid(line, format!("unknown :type {kind_word}")))?;
    let f = word("f")?;
    if matches!(f.as_str(), "get" | "put") {
        *porcupine_kv = true;
    }
    let key = match form.get("key") {
        None | Some(Edn::Nil) => None,
        Some(Edn::Str(s)) | Some(Edn::Keyword(s)) | Some(Edn::Symbol(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let time = match form.get("time") {
        None | Some(Edn::Nil) => None,
        Some(Edn::Int(t)) if *t >= 0 => Some(*t as u64),
        Some(other) => return Err(invalid(line, format!("bad :time {other}"))),
    };
    let error = form.get("error").map(|e| match e {
        Edn::Str(s) | Edn::Keyword(s) => s.clone(),
        other => other.to_string(),
    });
    Ok(RawEvent {
        line,
        time,
        process,
        kind,
        f,
        key,
        value: form.get("value").map(Edn::to_json).unwrap_or(Value::Null),
        error,
    })
}
