//! Writes a history as Jepsen's `history.edn`, so Jepsen's own checkers
//! (Knossos's `cas-register` under `jepsen.independent`, for one) can
//! judge a Synod run and a user can cross-check Synod's verdict.
//!
//! One map per operation, in a vector, in history order:
//!
//! ```edn
//! [{:type :invoke, :f :write, :value ["k3" 7], :process 4, :time 1200345, :index 0}
//!  {:type :ok, :f :write, :value ["k3" 7], :process 4, :time 1900211, :index 1}
//!  {:type :info, :f :start-partition, :value {:shape "halves"}, :process :nemesis, :time 5000000, :index 2}]
//! ```
//!
//! - `:type` is `:invoke`, `:ok`, `:fail` or `:info`; `:f` is `:read`,
//!   `:write`, `:cas` (value `[expected new]`) or `:append`; `:time` is
//!   nanoseconds since the run started; `:index` counts from 0.
//! - Keys become `jepsen.independent` tuples: `:value [key value]` (a
//!   history without keys, a single register, keeps plain values).
//! - Processes are Synod's: a client that timed out (`info`) never invokes
//!   again, as in Jepsen, and the fault injector is `:process :nemesis`,
//!   its events `:info` ops with `:f` the fault's name.
//! - A fail or info keeps its reason as `:error`.
//!
//! What Jepsen cannot say: Knossos reads a `:fail` only as "did not
//! happen" and a `nil` read as "matches any state". A Synod cas that
//! compared and found another value, and a read of a key never written,
//! carry more than that; exported, they weaken to Jepsen's meaning, and
//! [`Exported`] counts them, so a verdict that rests on them alone can
//! differ in Jepsen (docs/checker.md, "Exporting to Jepsen").

use std::fmt::Write as _;
use std::io::{self, Write};

use serde_json::Value;

use crate::history::{Event, EventType, Fun, History, Process};

/// What an export wrote, and what Jepsen will read more weakly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    /// Client events (invocations and completions).
    pub client_events: u64,
    /// Fault injector events.
    pub nemesis_events: u64,
    /// `ok` reads of `null` (a key never written): `nil` in Jepsen, which
    /// Knossos matches to any state.
    pub null_reads: u64,
    /// Failed cas ops that compared and found another value: plain
    /// `:fail` in Jepsen ("did not happen").
    pub mismatch_fails: u64,
}

/// Writes `history` as one EDN vector of op maps, one map per line.
pub fn write_jepsen_edn<W: Write>(history: &History, mut w: W) -> io::Result<Exported> {
    let keyed = history
        .events
        .iter()
        .any(|e| e.process != Process::Nemesis && e.key.is_some());
    let mut stats = Exported::default();
    let mut line = String::new();
    for (i, e) in history.events.iter().enumerate() {
        line.clear();
        line.push_str(if i == 0 { "[" } else { " " });
        op(&mut line, e, i, keyed, &mut stats);
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
    }
    if history.events.is_empty() {
        w.write_all(b"[")?;
    }
    w.write_all(b"]\n")?;
    w.flush()?;
    Ok(stats)
}

fn op(out: &mut String, e: &Event, index: usize, keyed: bool, stats: &mut Exported) {
    let kind = match e.kind {
        EventType::Invoke => "invoke",
        EventType::Ok => "ok",
        EventType::Fail => "fail",
        EventType::Info => "info",
    };
    out.push_str("{:type :");
    out.push_str(kind);
    out.push_str(", :f ");
    keyword(out, e.f.as_str());
    out.push_str(", :value ");
    match (&e.process, &e.f) {
        (Process::Nemesis, _) | (_, Fun::Nemesis(_)) => {
            stats.nemesis_events += 1;
            value(out, &e.value);
        }
        (Process::Client(_), _) => {
            stats.client_events += 1;
            if e.kind == EventType::Ok && e.f == Fun::Read && e.value.is_null() {
                stats.null_reads += 1;
            }
            if e.kind == EventType::Fail && e.mismatch {
                stats.mismatch_fails += 1;
            }
            if keyed {
                out.push('[');
                string(out, e.key());
                out.push(' ');
                value(out, &e.value);
                out.push(']');
            } else {
                value(out, &e.value);
            }
        }
    }
    out.push_str(", :process ");
    match e.process {
        Process::Client(p) => {
            let _ = write!(out, "{p}");
        }
        Process::Nemesis => out.push_str(":nemesis"),
    }
    let _ = write!(out, ", :time {}, :index {index}", e.time);
    if let Some(error) = &e.error {
        out.push_str(", :error ");
        string(out, error);
    }
    out.push('}');
}

/// A JSON value as EDN: objects become maps with keyword keys where the
/// key can be one, string keys otherwise.
fn value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => string(out, s),
        Value::Array(xs) => {
            out.push('[');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                value(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if is_keyword(k) {
                    keyword(out, k);
                } else {
                    string(out, k);
                }
                out.push(' ');
                value(out, x);
            }
            out.push('}');
        }
    }
}

/// Whether `s` can be written as `:s` and read back as the same keyword.
fn is_keyword(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "*+!_?<>=".contains(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || "*+!-_?<>=.".contains(c))
}

fn keyword(out: &mut String, name: &str) {
    if is_keyword(name) {
        out.push(':');
        out.push_str(name);
    } else {
        // Not expressible as a keyword (a fault name from an import, say).
        string(out, name);
    }
}

/// An EDN string literal: `"` and `\` escaped, control characters as
/// `\uXXXX` (EDN has no `\x` escapes).
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edn::{parse_all, Edn};
    use serde_json::json;

    fn ev(index: u64, process: Process, kind: EventType, f: Fun, key: &str, value: Value) -> Event {
        Event {
            index,
            time: index * 1000,
            process,
            kind,
            f,
            key: Some(key.into()),
            value,
            error: None,
            node: None,
            mismatch: false,
            not_proposed: false,
        }
    }

    #[test]
    fn ops_become_maps_with_tuples_and_the_nemesis_is_info() {
        let c = Process::Client(3);
        let mut fail = ev(3, c, EventType::Fail, Fun::Cas, "k\"1", json!([1, 2]));
        fail.mismatch = true;
        fail.error = Some("mismatch: found 5\n".into());
        let mut nemesis = ev(
            4,
            Process::Nemesis,
            EventType::Info,
            Fun::Nemesis("start-partition".into()),
            "",
            json!({"shape": "halves", "components": [["n1"], ["n2", "n3"]]}),
        );
        nemesis.key = None;
        let h = History::new(vec![
            ev(0, c, EventType::Invoke, Fun::Read, "k\"1", Value::Null),
            ev(1, c, EventType::Ok, Fun::Read, "k\"1", Value::Null),
            ev(2, c, EventType::Invoke, Fun::Cas, "k\"1", json!([1, 2])),
            fail,
            nemesis,
        ]);
        let mut buf = Vec::new();
        let stats = write_jepsen_edn(&h, &mut buf).unwrap();
        assert_eq!(
            stats,
            Exported {
                client_events: 4,
                nemesis_events: 1,
                null_reads: 1,
                mismatch_fails: 1
            }
        );
        let text = String::from_utf8(buf).unwrap();
        let forms = parse_all(&text).unwrap();
        let [(_, Edn::Vector(ops))] = &forms[..] else {
            panic!("one vector expected: {text}");
        };
        assert_eq!(ops.len(), 5);
        for (i, op) in ops.iter().enumerate() {
            for field in ["type", "f", "value", "process", "time", "index"] {
                assert!(op.get(field).is_some(), "op {i} lacks :{field}: {text}");
            }
            assert_eq!(op.get("index"), Some(&Edn::Int(i as i64)));
        }
        assert_eq!(ops[3].get("type"), Some(&Edn::Keyword("fail".into())));
        assert_eq!(
            ops[3].get("value"),
            Some(&Edn::Vector(vec![
                Edn::Str("k\"1".into()),
                Edn::Vector(vec![Edn::Int(1), Edn::Int(2)])
            ]))
        );
        assert_eq!(
            ops[3].get("error"),
            Some(&Edn::Str("mismatch: found 5\n".into()))
        );
        assert_eq!(ops[4].get("process"), Some(&Edn::Keyword("nemesis".into())));
        assert_eq!(ops[4].get("type"), Some(&Edn::Keyword("info".into())));
        assert_eq!(
            ops[4].get("value").and_then(|v| v.get("shape")),
            Some(&Edn::Str("halves".into()))
        );
    }

    #[test]
    fn control_characters_and_odd_names_stay_readable() {
        let mut s = String::new();
        string(&mut s, "a\u{1}b\u{7f}");
        assert_eq!(s, "\"a\\u0001b\\u007f\"");
        let mut k = String::new();
        keyword(&mut k, "has space");
        assert_eq!(k, "\"has space\"");
        assert!(is_keyword("start-partition") && !is_keyword("1x") && !is_keyword(""));
    }

    #[test]
    fn an_empty_history_is_an_empty_vector() {
        let mut buf = Vec::new();
        write_jepsen_edn(&History::new(Vec::new()), &mut buf).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "[]\n");
    }
}
