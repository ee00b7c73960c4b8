//! Importers: Jepsen logs, EDN lines and Jepsen's `history.edn` into a
//! [`History`].
//!
//! Every importer first reads the foreign text into [`RawEvent`]s, then one
//! shared [`normalise`] turns them into events that obey the rules of
//! `docs/history.md`: it pairs completions with invocations (naming the
//! line when one has none), copies the invocation's value onto `fail` and
//! `info` completions, gives times to formats that have none, and
//! relabels processes. The relabelling matters because Jepsen logs do not
//! always retire a process after an `info`: where the same process id
//! invokes again, that (process, generation) pair becomes a fresh id, so the
//! checker still sees one operation at a time per process and knows the
//! `info` op may take effect long after its process moved on.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use serde_json::Value;

use crate::edn::{Edn, EdnReader};
use crate::history::{Event, EventType, Fun, History, HistoryError, Process};

/// The formats `synod check --format` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Guess from the content.
    Auto,
    /// Synod's own JSON Lines (`docs/history.md`).
    Jsonl,
    /// `INFO  jepsen.util - 3 :invoke :cas [1 2]` lines.
    JepsenLog,
    /// One EDN map per line, like Porcupine's `kv` corpus.
    Edn,
    /// Jepsen's `history.edn`: a vector or sequence of maps.
    JepsenEdn,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Jsonl => "jsonl",
            Format::JepsenLog => "jepsen-log",
            Format::Edn => "edn",
            Format::JepsenEdn => "jepsen-edn",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Format::Auto,
            "jsonl" | "json" => Format::Jsonl,
            "jepsen-log" => Format::JepsenLog,
            "edn" => Format::Edn,
            "jepsen-edn" => Format::JepsenEdn,
            other => {
                return Err(format!(
                    "unknown format {other:?} (auto, jsonl, jepsen-log, edn, jepsen-edn)"
                ))
            }
        })
    }
}

/// A history read from some format, with what the format implies.
#[derive(Clone, Debug)]
pub struct Imported {
    pub history: History,
    /// The format actually read (never `Auto`).
    pub format: Format,
    /// The value a never-written key holds: `null`, except for Porcupine's
    /// kv corpus whose `get` of a missing key returns `""`.
    pub initial: Value,
}

/// Reads a file in the given format (`Auto` guesses).
pub fn read_file(path: &Path, format: Format) -> Result<Imported, HistoryError> {
    let bytes = std::fs::read(path).map_err(|e| HistoryError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(HistoryError::Invalid {
                line,
                reason: "not UTF-8 text".into(),
            });
        }
    };
    read_str(&text, format)
}

/// Reads a history from text in the given format (`Auto` guesses).
pub fn read_str(text: &str, format: Format) -> Result<Imported, HistoryError> {
    let format = match format {
        Format::Auto => guess_format(text),
        f => f,
    };
    let mut initial = Value::Null;
    let history = match format {
        Format::Auto | Format::Jsonl => crate::history::read_chunked(text.as_bytes())?,
        Format::JepsenLog => normalise(parse_jepsen_log(text)?)?,
        Format::Edn | Format::JepsenEdn => {
            let (raw, porcupine_kv) = parse_edn(text)?;
            if porcupine_kv {
                initial = Value::String(String::new());
            }
            normalise(raw)?
        }
    };
    Ok(Imported {
        history,
        format,
        initial,
    })
}

/// Guesses the format from the first meaningful line.
pub fn guess_format(text: &str) -> Format {
    for line in text.lines().take(50) {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with(';') {
            continue;
        }
        if t.contains("jepsen.util") {
            return Format::JepsenLog;
        }
        if t.starts_with('[') || t.starts_with('(') {
            return Format::JepsenEdn;
        }
        if let Some(rest) = t.strip_prefix('{') {
            return if rest.trim_start().starts_with(':') {
                Format::Edn
            } else {
                Format::Jsonl
            };
        }
        let mut words = t.split_whitespace();
        if let (Some(_), Some(kind)) = (words.next(), words.next()) {
            if matches!(kind, ":invoke" | ":ok" | ":fail" | ":info") {
                return Format::JepsenLog;
            }
        }
        return Format::Jsonl;
    }
    Format::Jsonl
}

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

fn invalid(line: usize, reason: impl Into<String>) -> HistoryError {
    HistoryError::Invalid {
        line,
        reason: reason.into(),
    }
}

fn kind_of(word: &str) -> Option<EventType> {
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

/// Parses `INFO  jepsen.util - 3 :invoke :cas [1 2]` lines. Lines
/// without the `jepsen.util -` marker (other log output) are skipped; lines
/// that have it must be well formed. Separators may be tabs or spaces.
pub fn parse_jepsen_log(text: &str) -> Result<Vec<RawEvent>, HistoryError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let body = match line.find("jepsen.util - ") {
            Some(at) => &line[at + "jepsen.util - ".len()..],
            None => {
                // Bare `3 :invoke :read nil` lines are accepted too.
                let mut w = line.split_whitespace();
                match (w.next(), w.next()) {
                    (Some(_), Some(k)) if k.starts_with(':') && kind_of(&k[1..]).is_some() => {
                        line.trim_start()
                    }
                    _ => continue,
                }
            }
        };
        let mut rest = body.trim_start();
        let mut word = || -> Option<&str> {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let (w, r) = rest.split_at(end);
            rest = r.trim_start();
            (!w.is_empty()).then_some(w)
        };
        let (Some(proc_word), Some(kind_word), Some(f_word)) = (word(), word(), word()) else {
            return Err(invalid(line_no, "expected `process :type :f value`"));
        };
        let process = match proc_word {
            ":nemesis" | "nemesis" => RawProcess::Nemesis,
            p => RawProcess::Client(
                p.parse()
                    .map_err(|_| invalid(line_no, format!("bad process {p:?}")))?,
            ),
        };
        let kind = kind_word
            .strip_prefix(':')
            .and_then(kind_of)
            .ok_or_else(|| invalid(line_no, format!("unknown type {kind_word:?}")))?;
        let f_name = f_word.strip_prefix(':').unwrap_or(f_word);
        let value_text = rest.trim();
        let value = if value_text.is_empty() {
            Edn::Nil
        } else {
            let mut r = EdnReader::new(value_text);
            match r.next_form() {
                Ok(Some((_, v))) => v,
                Ok(None) => Edn::Nil,
                Err(e) => return Err(invalid(line_no, format!("bad value: {}", e.reason))),
            }
        };
        let (value, error) = match (&value, kind) {
            // `:timed-out` and friends are reasons, not values.
            (Edn::Keyword(k), EventType::Info | EventType::Fail) => (Value::Null, Some(k.clone())),
            _ => (value.to_json(), None),
        };
        out.push(RawEvent {
            line: line_no,
            time: None,
            process,
            kind,
            f: f_name.to_string(),
            key: None,
            value,
            error,
        });
    }
    Ok(out)
}

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

/// Per foreign process: its current Synod id and open invocation.
struct Lane {
    id: u64,
    /// The open invocation: its f, key, value.
    open: Option<(String, Option<String>, Value)>,
    /// Completed with `info`: the next invocation needs a fresh id.
    retired: bool,
}

/// Turns foreign events into a history that obeys `docs/history.md`.
pub fn normalise(raw: Vec<RawEvent>) -> Result<History, HistoryError> {
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
    let mut last_time = 0u64;
    for (i, e) in raw.into_iter().enumerate() {
        // Sources without times get one millisecond per event, so reports
        // still have a time axis; timed sources are clamped monotonic.
        let time = if all_timed {
            e.time.unwrap_or(0).max(last_time)
        } else {
            i as u64 * 1_000_000
        };
        last_time = time;
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
        });
    }
    History::validated(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_each_format() {
        assert_eq!(
            guess_format("INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"),
            Format::JepsenLog
        );
        assert_eq!(guess_format("{:process 0, :type :invoke}\n"), Format::Edn);
        assert_eq!(guess_format("[{:process 0}]"), Format::JepsenEdn);
        assert_eq!(guess_format("{\"index\":0}\n"), Format::Jsonl);
        assert_eq!(guess_format("3 :invoke :read nil\n"), Format::JepsenLog);
    }

    #[test]
    fn jepsen_log_with_tabs_or_spaces_and_info_reasons() {
        let text = "INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]\n\
                    INFO  jepsen.util - 1   :info   :cas    :timed-out\n\
                    INFO  jepsen.util - 1\t:invoke\t:read\tnil\n\
                    INFO  jepsen.util - 1\t:ok\t:read\t3\n";
        let imp = read_str(text, Format::Auto).unwrap();
        let ev = &imp.history.events;
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[1].kind, EventType::Info);
        assert_eq!(ev[1].value, serde_json::json!([1, 2]));
        assert_eq!(ev[1].error.as_deref(), Some("timed-out"));
        // The process went on after its info: it must be a fresh id.
        assert_eq!(ev[0].process, Process::Client(1));
        assert_eq!(ev[2].process, Process::Client(2));
        assert_eq!(ev[3].value, serde_json::json!(3));
    }

    #[test]
    fn porcupine_kv_maps_get_put_and_reads_empty_initial() {
        let text = "{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n\
                    {:process 0, :type :ok, :f :get, :key \"1\", :value \"\"}\n";
        let imp = read_str(text, Format::Auto).unwrap();
        assert_eq!(imp.format, Format::Edn);
        assert_eq!(imp.initial, Value::String(String::new()));
        assert_eq!(imp.history.events[0].f, Fun::Read);
        assert_eq!(imp.history.events[0].key.as_deref(), Some("1"));
    }

    #[test]
    fn jepsen_edn_vector_with_times_and_nemesis() {
        let text = "[{:process 0, :type :invoke, :f :write, :value 1, :time 10}\n\
                     {:process :nemesis, :type :info, :f :start-partition, :value nil, :time 15}\n\
                     {:process 0, :type :ok, :f :write, :value 1, :time 20}]";
        let imp = read_str(text, Format::Auto).unwrap();
        assert_eq!(imp.format, Format::JepsenEdn);
        assert_eq!(imp.initial, Value::Null);
        let ev = &imp.history.events;
        assert_eq!(ev[1].process, Process::Nemesis);
        assert_eq!(ev[2].time, 20);
    }

    #[test]
    fn completion_without_invoke_names_the_line() {
        let err = read_str("INFO  jepsen.util - 1\t:ok\t:read\t3\n", Format::Auto).unwrap_err();
        assert!(err.in_file("h.log").starts_with("h.log:1: "), "{err}");
        let err = read_str("{:process 0, :type :invoke, :f :frob}\n", Format::Edn).unwrap_err();
        assert!(
            err.to_string().contains("unknown client operation"),
            "{err}"
        );
    }
}
