//! The history: Synod's JSON Lines record of what a run observed.
//!
//! `docs/history.md` is the contract; this module is its code. [`Event`] is
//! one line, [`HistoryWriter`] streams events to a file as they happen (so a
//! crashed run keeps everything up to its last line), and [`HistoryReader`]
//! streams them back, validating the invoke/complete rules as it goes and
//! naming the line and the rule that a bad history breaks.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// How the `error` of a definite failure begins when the operation never
/// reached the state machine (refused, never proposed, never sent). A
/// failed `cas` with it carries no information and is dropped; without it
/// a failed `cas` means the key held another value (docs/history.md, rule 3).
pub const NOT_PROPOSED: &str = "not-proposed";

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
        match Value::deserialize(d)? {
            Value::Number(n) => n.as_u64().map(Process::Client).ok_or_else(|| {
                serde::de::Error::custom(format!("process must be a non-negative integer, got {n}"))
            }),
            Value::String(s) if s == "nemesis" => Ok(Process::Nemesis),
            other => Err(serde::de::Error::custom(format!(
                "process must be an integer or \"nemesis\", got {other}"
            ))),
        }
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
    pub fn as_str(&self) -> &str {
        match self {
            Fun::Read => "read",
            Fun::Write => "write",
            Fun::Cas => "cas",
            Fun::Append => "append",
            Fun::Nemesis(s) => s,
        }
    }

    /// Parses a client operation name; `None` for anything else.
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
        let s = String::deserialize(d)?;
        Ok(Fun::client_op(&s).unwrap_or(Fun::Nemesis(s)))
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
}

impl Event {
    /// The key this event touches; the single register is `""`.
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("")
    }
}

/// A whole history in memory, in the order it was observed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub events: Vec<Event>,
}

impl History {
    pub fn new(events: Vec<Event>) -> Self {
        History { events }
    }

    /// Validates `events` against the rules of `docs/history.md`.
    pub fn validated(events: Vec<Event>) -> Result<Self, HistoryError> {
        let mut v = Validator::default();
        for (i, e) in events.iter().enumerate() {
            v.check(e).map_err(|reason| HistoryError::Invalid {
                line: i + 1,
                reason,
            })?;
        }
        Ok(History { events })
    }

    /// Reads and validates a history file.
    pub fn read_path(path: &Path) -> Result<Self, HistoryError> {
        let file = std::fs::File::open(path).map_err(|e| HistoryError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        read_chunked(io::BufReader::new(file))
    }

    /// Serialises to JSON Lines.
    pub fn write_to<W: Write>(&self, w: W) -> io::Result<()> {
        let mut writer = HistoryWriter::new(w);
        for e in &self.events {
            writer.write_event(e)?;
        }
        writer.flush()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// Line numbers are 1-based, as editors show them.
    #[error("line {line}: {reason}")]
    Invalid { line: usize, reason: String },
}

impl HistoryError {
    /// The error as `file:line: reason`, the form `synod check` prints.
    pub fn in_file(&self, file: &str) -> String {
        match self {
            HistoryError::Io { .. } => self.to_string(),
            HistoryError::Invalid { line, reason } => format!("{file}:{line}: {reason}"),
        }
    }
}

/// Tracks the per-process rules while a history is read or written.
#[derive(Default)]
struct Validator {
    /// Process -> the `f` and key of its open invocation.
    busy: HashMap<u64, (Fun, Option<String>)>,
    /// Processes that completed with `info` and must never invoke again.
    retired: HashSet<u64>,
    last_time: u64,
    next_index: u64,
}

impl Validator {
    fn check(&mut self, e: &Event) -> Result<(), String> {
        if e.time < self.last_time {
            return Err(format!(
                "time goes backwards: {} after {}",
                e.time, self.last_time
            ));
        }
        if e.index != self.next_index {
            return Err(format!(
                "index {} out of order: expected {}",
                e.index, self.next_index
            ));
        }
        self.last_time = e.time;
        self.next_index += 1;
        let p = match e.process {
            Process::Nemesis => {
                if e.kind != EventType::Info {
                    return Err(format!("nemesis events must be info, got {}", e.kind));
                }
                return Ok(());
            }
            Process::Client(p) => p,
        };
        if let Fun::Nemesis(name) = &e.f {
            return Err(format!("unknown client operation f={name:?}"));
        }
        match e.kind {
            EventType::Invoke => {
                if self.retired.contains(&p) {
                    return Err(format!(
                        "process {p} invokes after an info completion; a process with an unknown outcome must not invoke again"
                    ));
                }
                if let Some((f, _)) = self.busy.get(&p) {
                    return Err(format!(
                        "process {p} invokes {} while its {f} is still open",
                        e.f
                    ));
                }
                self.busy.insert(p, (e.f.clone(), e.key.clone()));
            }
            kind => {
                let Some((f, key)) = self.busy.remove(&p) else {
                    return Err(format!(
                        "{kind} completion by process {p} without an invoke"
                    ));
                };
                if f != e.f || key != e.key {
                    return Err(format!(
                        "{kind} completion of {} {:?} by process {p} does not match its invoke of {f} {:?}",
                        e.f,
                        e.key.as_deref().unwrap_or(""),
                        key.as_deref().unwrap_or("")
                    ));
                }
                if kind == EventType::Info {
                    self.retired.insert(p);
                }
            }
        }
        Ok(())
    }
}

/// Lines parsed in parallel per chunk; validation stays sequential.
const CHUNK_LINES: usize = 1 << 15;

/// Reads a whole history like [`HistoryReader`] (same errors, same
/// truncated-tail rule), but parses each chunk of lines on all cores: JSON
/// parsing dominates reading a million-operation history, and the
/// validation that must see lines in order is cheap.
pub(crate) fn read_chunked<R: BufRead>(mut input: R) -> Result<History, HistoryError> {
    use rayon::prelude::*;
    let mut events = Vec::new();
    let mut validator = Validator::default();
    let mut line_no = 0usize;
    let mut chunk: Vec<String> = Vec::with_capacity(CHUNK_LINES);
    loop {
        chunk.clear();
        let mut eof = false;
        while chunk.len() < CHUNK_LINES {
            let mut buf = String::new();
            match input.read_line(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => chunk.push(buf),
                Err(e) => {
                    return Err(HistoryError::Invalid {
                        line: line_no + chunk.len() + 1,
                        reason: format!("cannot read: {e}"),
                    })
                }
            }
        }
        let parsed: Vec<Option<Result<Event, String>>> = chunk
            .par_iter()
            .map(|l| {
                let t = l.trim();
                (!t.is_empty()).then(|| serde_json::from_str::<Event>(t).map_err(|e| e.to_string()))
            })
            .collect();
        let last = chunk.len();
        for (i, p) in parsed.into_iter().enumerate() {
            line_no += 1;
            let event = match p {
                None => continue,
                Some(Ok(e)) => e,
                Some(Err(_)) if eof && i + 1 == last && !chunk[i].ends_with('\n') => {
                    tracing::warn!(
                        line = line_no,
                        "ignoring a truncated last line (the run stopped mid-write)"
                    );
                    return Ok(History { events });
                }
                Some(Err(e)) => {
                    return Err(HistoryError::Invalid {
                        line: line_no,
                        reason: format!("not a history event: {e}"),
                    })
                }
            };
            validator
                .check(&event)
                .map_err(|reason| HistoryError::Invalid {
                    line: line_no,
                    reason,
                })?;
            events.push(event);
        }
        if eof {
            return Ok(History { events });
        }
    }
}

/// Streams events from JSON Lines, validating each.
///
/// A last line that does not end in a newline and does not parse is the
/// tail of a crashed writer: it is dropped with a warning, not an error.
pub struct HistoryReader<R> {
    input: R,
    line_no: usize,
    buf: String,
    validator: Validator,
    done: bool,
}

impl<R: BufRead> HistoryReader<R> {
    pub fn new(input: R) -> Self {
        HistoryReader {
            input,
            line_no: 0,
            buf: String::new(),
            validator: Validator::default(),
            done: false,
        }
    }

    fn invalid(&mut self, reason: String) -> Option<Result<Event, HistoryError>> {
        self.done = true;
        Some(Err(HistoryError::Invalid {
            line: self.line_no,
            reason,
        }))
    }
}

impl<R: BufRead> Iterator for HistoryReader<R> {
    type Item = Result<Event, HistoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            self.line_no += 1;
            match self.input.read_line(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    let reason = format!("cannot read: {e}");
                    return self.invalid(reason);
                }
            }
            let complete = self.buf.ends_with('\n');
            let line = self.buf.trim();
            if line.is_empty() {
                continue;
            }
            let event: Event = match serde_json::from_str(line) {
                Ok(e) => e,
                Err(_) if !complete => {
                    tracing::warn!(
                        line = self.line_no,
                        "ignoring a truncated last line (the run stopped mid-write)"
                    );
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    let reason = format!("not a history event: {e}");
                    return self.invalid(reason);
                }
            };
            if let Err(reason) = self.validator.check(&event) {
                return self.invalid(reason);
            }
            return Some(Ok(event));
        }
    }
}

/// Streams events to JSON Lines as they happen.
///
/// Assigns `index` itself and validates each event, so a bug in the bench
/// that would write an unreadable history fails loudly at the source.
pub struct HistoryWriter<W: Write> {
    out: io::BufWriter<W>,
    validator: Validator,
    next_index: u64,
}

impl<W: Write> HistoryWriter<W> {
    pub fn new(out: W) -> Self {
        HistoryWriter {
            out: io::BufWriter::new(out),
            validator: Validator::default(),
            next_index: 0,
        }
    }

    /// Writes one event, renumbering its `index`; returns the index given.
    pub fn write_event(&mut self, event: &Event) -> io::Result<u64> {
        let mut e = event.clone();
        e.index = self.next_index;
        self.validator
            .check(&e)
            .map_err(|reason| io::Error::new(io::ErrorKind::InvalidInput, reason))?;
        serde_json::to_writer(&mut self.out, &e)?;
        self.out.write_all(b"\n")?;
        self.next_index += 1;
        Ok(e.index)
    }

    /// Flushes buffered lines to the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The number of events written so far.
    pub fn len(&self) -> u64 {
        self.next_index
    }

    pub fn is_empty(&self) -> bool {
        self.next_index == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Event>, HistoryError> {
        HistoryReader::new(text.as_bytes()).collect()
    }

    #[test]
    fn reads_the_documented_example() {
        let text = r#"{"index":0,"time":1200000,"process":3,"type":"invoke","f":"cas","key":"k7","value":[1,2]}
{"index":1,"time":1900000,"process":3,"type":"ok","f":"cas","key":"k7","value":[1,2]}
{"index":2,"time":2000000,"process":"nemesis","type":"info","f":"start-partition","value":{"isolated":["n3"]}}
"#;
        let events = parse(text).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].process, Process::Client(3));
        assert_eq!(events[1].kind, EventType::Ok);
        assert_eq!(events[2].f, Fun::Nemesis("start-partition".into()));
        let mut out = Vec::new();
        History::new(events.clone()).write_to(&mut out).unwrap();
        assert_eq!(parse(std::str::from_utf8(&out).unwrap()).unwrap(), events);
    }

    fn line_err(text: &str) -> (usize, String) {
        match parse(text) {
            Err(HistoryError::Invalid { line, reason }) => (line, reason),
            other => panic!("expected an invalid history, got {other:?}"),
        }
    }

    #[test]
    fn completion_without_invoke_names_the_line() {
        let (line, reason) = line_err(
            "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"value\":null}\n",
        );
        assert_eq!(line, 1);
        assert!(reason.contains("without an invoke"), "{reason}");
    }

    #[test]
    fn second_invoke_on_busy_process_is_rejected() {
        let (line, reason) = line_err(concat!(
            "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n",
            "{\"index\":1,\"time\":2,\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n",
        ));
        assert_eq!(line, 2);
        assert!(reason.contains("still open"), "{reason}");
    }

    #[test]
    fn invoke_after_info_is_rejected() {
        let (line, reason) = line_err(concat!(
            "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"write\",\"value\":1}\n",
            "{\"index\":1,\"time\":2,\"process\":1,\"type\":\"info\",\"f\":\"write\",\"value\":1}\n",
            "{\"index\":2,\"time\":3,\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n",
        ));
        assert_eq!(line, 3);
        assert!(reason.contains("after an info"), "{reason}");
    }

    #[test]
    fn time_going_backwards_is_rejected() {
        let (line, reason) = line_err(concat!(
            "{\"index\":0,\"time\":5,\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n",
            "{\"index\":1,\"time\":4,\"process\":1,\"type\":\"ok\",\"f\":\"read\"}\n",
        ));
        assert_eq!(line, 2);
        assert!(reason.contains("backwards"), "{reason}");
    }

    #[test]
    fn unknown_client_op_and_missing_fields_are_rejected() {
        let (_, reason) =
            line_err("{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"frob\"}\n");
        assert!(reason.contains("unknown client operation"), "{reason}");
        let (_, reason) = line_err("{\"index\":0,\"time\":1,\"type\":\"invoke\",\"f\":\"read\"}\n");
        assert!(reason.contains("missing field `process`"), "{reason}");
        let (_, reason) = line_err("{not json\n");
        assert!(reason.contains("not a history event"), "{reason}");
    }

    #[test]
    fn read_path_agrees_with_the_streaming_reader() {
        let good = concat!(
            "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n",
            "\n",
            "{\"index\":1,\"time\":2,\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"value\":3}\n",
            "{\"index\":2,\"time\":2,\"proc",
        );
        let bad = good.replace("\"time\":2,\"process\":1", "\"time\":0,\"process\":1");
        for text in [good.to_string(), bad, "{nope\n".to_string()] {
            let streamed = parse(&text).map_err(|e| e.to_string());
            let chunked = read_chunked(text.as_bytes())
                .map(|h| h.events)
                .map_err(|e| e.to_string());
            assert_eq!(streamed, chunked, "{text}");
        }
    }

    #[test]
    fn truncated_last_line_is_ignored() {
        let events = parse(concat!(
            "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n",
            "{\"index\":1,\"time\":2,\"proc",
        ))
        .unwrap();
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn writer_refuses_an_invalid_event() {
        let mut w = HistoryWriter::new(Vec::new());
        let e = Event {
            index: 0,
            time: 1,
            process: Process::Client(1),
            kind: EventType::Ok,
            f: Fun::Read,
            key: None,
            value: Value::Null,
            error: None,
            node: None,
        };
        assert!(w.write_event(&e).is_err());
    }
}
