//! Jepsen's log lines (`INFO  jepsen.util - 3 :invoke :cas [1 2]` and
//! today's layout) into [`RawEvent`]s: finding operation lines among other
//! log output, and refusing a log cut off mid-line.

use serde_json::Value;

use super::invalid;
use super::raw::{kind_of, RawEvent, RawProcess};
use crate::edn::{Edn, EdnReader};
use crate::history::{EventType, HistoryError};

/// The two markers of a Jepsen log's operation lines: the old log layout
/// (`INFO  jepsen.util - 3 ...`) and today's (`jepsen.util: 3 ...`).
pub(super) const JEPSEN_MARKERS: [&str; 2] = ["jepsen.util - ", "jepsen.util: "];

/// Parses Jepsen's log lines: `INFO  jepsen.util - 3 :invoke :cas [1 2]`,
/// today's `2021-02-26 23:39:01,200{GMT} INFO [jepsen worker 1]
/// jepsen.util: 3 :invoke :cas [1 2]`, or bare `3 :invoke :cas [1 2]`.
/// Separators may be tabs or spaces; the log's timestamps are not used
/// (the lines' order is the order Jepsen logged them in). Lines without a
/// marker are other log output and are skipped, and so are marker lines
/// that are not operations (`jepsen.util: Waiting...`); a line that looks
/// like an operation must be well formed. A file with no operation line
/// is not a Jepsen log, and a last line without a newline is refused: the
/// log was cut mid-line (`12` may have been cut to `1`, or a line to
/// something that no longer looks like one).
pub fn parse_jepsen_log(text: &str) -> Result<Vec<RawEvent>, HistoryError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let marked = JEPSEN_MARKERS
            .iter()
            .find_map(|m| line.find(m).map(|at| &line[at + m.len()..]));
        let body = match marked {
            Some(body) => body,
            None => line,
        };
        let mut w = body.split_whitespace();
        match (w.next(), w.next()) {
            (Some(_), Some(k)) if k.starts_with(':') => {}
            // Other output, with or without the marker.
            _ => continue,
        }
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
    if out.is_empty() {
        return Err(invalid(
            1,
            "no operation line (`jepsen.util - 3 :invoke :read nil`, `jepsen.util: 3 :invoke :read nil` or `3 :invoke :read nil`): not a Jepsen log",
        ));
    }
    if !text.ends_with('\n') && text.lines().last().is_some_and(|l| !l.trim().is_empty()) {
        return Err(invalid(
            text.lines().count(),
            "the last line has no newline: the log was cut off mid-line",
        ));
    }
    Ok(out)
}
