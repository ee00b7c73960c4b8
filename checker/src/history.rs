//! The history: Synod's JSON Lines record of what a run observed.
//!
//! `docs/history.md` is the contract; this module is its code. [`Event`] is
//! one line (defined in `synod-wire`, so the node's simulation shares it),
//! [`HistoryWriter`] streams events to a file as they happen (so a
//! crashed run keeps everything up to its last line), and [`read_events`]
//! streams them back, validating the invoke/complete rules as it goes and
//! naming the line and the rule that a bad history breaks. It runs over
//! 600 lines only with its tests: one concern, the format's rules as
//! they are read and written.

use std::io::{self, Read, Write};
use std::path::Path;

use crate::fxhash::{FxHashMap, FxHashSet};

/// One line of a history and its parts, defined once in the leaf
/// `synod-wire` crate so the node's simulation writes the same type
/// without building the checker.
pub use synod_wire::history::{Event, EventType, Fun, Process, CAS_MISMATCH, NOT_PROPOSED};

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

    /// Reads and validates a history file (see [`read_events`]).
    pub fn read_path(path: &Path) -> Result<Self, HistoryError> {
        let file = std::fs::File::open(path).map_err(|e| HistoryError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::read_from(file)
    }

    /// Reads and validates a history (see [`read_events`]).
    pub fn read_from<R: Read>(input: R) -> Result<Self, HistoryError> {
        let mut events = Vec::new();
        read_events(input, |e| {
            events.push(e);
            Ok(())
        })?;
        Ok(History { events })
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
    /// Process -> the `f` and key (as its number in `keys`) of its open
    /// invocation.
    busy: FxHashMap<u64, (Fun, u32)>,
    /// Processes that completed with `info` and must never invoke again.
    retired: FxHashSet<u64>,
    /// Every key seen, numbered: a number is cheaper to keep and compare
    /// than a copy of the key, once per event.
    key_ids: FxHashMap<Box<str>, u32>,
    keys: Vec<Box<str>>,
    last_time: u64,
    next_index: u64,
}

/// The number of an absent key, which is not the key `""`.
const NO_KEY: u32 = u32::MAX;

impl Validator {
    fn key_id(&mut self, key: Option<&str>) -> u32 {
        let Some(key) = key else {
            return NO_KEY;
        };
        if let Some(&id) = self.key_ids.get(key) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.keys.push(key.into());
        self.key_ids.insert(key.into(), id);
        id
    }

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
        if e.mismatch && !(e.kind == EventType::Fail && e.f == Fun::Cas) {
            return Err(format!(
                "`mismatch` marks a failed cas only, not a {} {}",
                e.kind, e.f
            ));
        }
        if e.not_proposed && (e.kind != EventType::Fail || e.mismatch) {
            return Err(format!(
                "`not_proposed` marks a failure that compared nothing, not a {} {}{}",
                e.kind,
                e.f,
                if e.mismatch { " marked `mismatch`" } else { "" }
            ));
        }
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
                let key = self.key_id(e.key.as_deref());
                self.busy.insert(p, (e.f.clone(), key));
            }
            kind => {
                let Some((f, key)) = self.busy.remove(&p) else {
                    return Err(format!(
                        "{kind} completion by process {p} without an invoke"
                    ));
                };
                let same_key = match e.key.as_deref() {
                    None => key == NO_KEY,
                    Some(k) => self.key_ids.get(k) == Some(&key),
                };
                if f != e.f || !same_key {
                    let invoked = self.keys.get(key as usize).map_or("", |k| k);
                    return Err(format!(
                        "{kind} completion of {} {:?} by process {p} does not match its invoke of {f} {invoked:?}",
                        e.f,
                        e.key.as_deref().unwrap_or(""),
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

/// Bytes read per chunk; the lines of a chunk parse on all cores.
const CHUNK_BYTES: usize = 4 << 20;

/// A line longer than this is not an event: refuse it without reading on
/// (a garbage file with no newline would otherwise be read whole).
pub const MAX_LINE: usize = 64 << 20;

const BOM: &[u8] = "\u{feff}".as_bytes();

/// What reading a history noticed that is not an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadNotes {
    /// Lines read, blank ones included.
    pub lines: usize,
    /// The 1-based line of a last JSON object cut off by a crashed
    /// writer, which was ignored.
    pub truncated_line: Option<usize>,
}

impl ReadNotes {
    /// A warning for the user, if there is one.
    pub fn warning(&self) -> Option<String> {
        self.truncated_line.map(|line| {
            format!("line {line}: ignored a truncated last line (the writer stopped mid-line)")
        })
    }
}

/// Reads up to `more` bytes onto the end of `buf`; true at the end of input.
fn read_more<R: Read>(input: &mut R, buf: &mut Vec<u8>, more: usize) -> io::Result<bool> {
    let old = buf.len();
    buf.resize(old + more, 0);
    let n = loop {
        match input.read(&mut buf[old..]) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(old);
                return Err(e);
            }
        }
    };
    buf.truncate(old + n);
    Ok(n == 0)
}

fn cannot_read(line: usize, e: io::Error) -> HistoryError {
    HistoryError::Invalid {
        line,
        reason: format!("cannot read: {e}"),
    }
}

/// Whether an unparseable line is the tail of a crashed writer: the last
/// line, with no newline, and a JSON object that the end of the file cut
/// off (parsing ran out of input, it did not meet a wrong byte).
fn is_torn_tail(line: &[u8], err: &serde_json::Error) -> bool {
    line.trim_ascii_start().starts_with(b"{") && err.is_eof()
}

/// Streams the events of a JSON Lines history into `sink`, validating each
/// against the rules of `docs/history.md` before it is handed on.
///
/// The file is read in chunks of about 4 MiB whose lines parse on all
/// cores (JSON parsing dominates reading a million-operation history);
/// validation and the sink see the events one by one, in order, so nothing
/// but the chunk in hand is held. A leading UTF-8 byte-order mark is
/// skipped. A last line without a newline that is a JSON object cut off
/// by the end of the file is the tail of a crashed writer: it is ignored,
/// and said so in the returned notes; any other unparseable line is an
/// error naming its line. A `sink` error is reported at the event's line.
pub fn read_events<R: Read>(
    input: R,
    sink: impl FnMut(Event) -> Result<(), String>,
) -> Result<ReadNotes, HistoryError> {
    read_events_in(input, CHUNK_BYTES, sink)
}

/// [`read_events`] with chunks of `chunk` bytes (tests use tiny ones, so
/// that every line meets a chunk boundary).
fn read_events_in<R: Read>(
    mut input: R,
    chunk: usize,
    mut sink: impl FnMut(Event) -> Result<(), String>,
) -> Result<ReadNotes, HistoryError> {
    use rayon::prelude::*;
    let chunk_bytes = chunk.max(1);
    let mut validator = Validator::default();
    let mut notes = ReadNotes::default();
    let mut buf: Vec<u8> = Vec::with_capacity(chunk_bytes + 64 * 1024);
    let mut eof = false;
    let mut at_start = true;
    // Where the search for a newline resumes (bytes before it have none).
    let mut scanned = 0usize;
    loop {
        // Fill the buffer up to a chunk, then on to the chunk's last newline.
        let end = loop {
            let want = if at_start {
                chunk_bytes.max(BOM.len())
            } else {
                chunk_bytes
            };
            if !eof && buf.len() < want {
                eof = read_more(&mut input, &mut buf, chunk_bytes.min(256 * 1024))
                    .map_err(|e| cannot_read(notes.lines + 1, e))?;
                continue;
            }
            if at_start {
                at_start = false;
                if buf.starts_with(BOM) {
                    buf.drain(..BOM.len());
                }
            }
            if eof {
                break buf.len();
            }
            match buf[scanned..].iter().rposition(|&b| b == b'\n') {
                Some(i) => break scanned + i + 1,
                None if buf.len() > MAX_LINE => {
                    return Err(HistoryError::Invalid {
                        line: notes.lines + 1,
                        reason: format!(
                            "not a history event: a line of more than {} MiB",
                            MAX_LINE >> 20
                        ),
                    })
                }
                None => {
                    // A line longer than a chunk: read on until it ends.
                    scanned = buf.len();
                    eof = read_more(&mut input, &mut buf, chunk_bytes)
                        .map_err(|e| cannot_read(notes.lines + 1, e))?;
                }
            }
        };
        scanned = 0;
        let text = &buf[..end];
        let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        // The piece after a final newline is not a line.
        let last_has_newline = text.ends_with(b"\n");
        if last_has_newline || text.is_empty() {
            lines.pop();
        }
        let parsed: Vec<Option<Result<Event, serde_json::Error>>> = lines
            .par_iter()
            .map(|l| {
                let t = l.trim_ascii();
                (!t.is_empty()).then(|| serde_json::from_slice::<Event>(t))
            })
            .collect();
        let count = lines.len();
        for (i, p) in parsed.into_iter().enumerate() {
            notes.lines += 1;
            let line = notes.lines;
            let event = match p {
                None => continue,
                Some(Ok(e)) => e,
                Some(Err(e)) if eof && i + 1 == count && !last_has_newline => {
                    if is_torn_tail(lines[i], &e) {
                        tracing::warn!(line, "ignoring a truncated last line");
                        notes.truncated_line = Some(line);
                        return Ok(notes);
                    }
                    return Err(HistoryError::Invalid {
                        line,
                        reason: format!("not a history event: {e}"),
                    });
                }
                Some(Err(e)) => {
                    return Err(HistoryError::Invalid {
                        line,
                        reason: format!("not a history event: {e}"),
                    })
                }
            };
            validator
                .check(&event)
                .and_then(|()| sink(event))
                .map_err(|reason| HistoryError::Invalid { line, reason })?;
        }
        if eof {
            return Ok(notes);
        }
        buf.drain(..end);
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
    use serde_json::Value;

    fn parse(text: &str) -> Result<Vec<Event>, HistoryError> {
        History::read_from(text.as_bytes()).map(|h| h.events)
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

    /// Regression: a truncated last line that fell exactly on a chunk
    /// boundary (32,768 lines) was an error instead of the warning.
    #[test]
    fn chunk_boundaries_change_nothing() {
        let good = concat!(
            "\u{feff}{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n",
            "\n",
            "{\"index\":1,\"time\":2,\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"value\":3}\r\n",
            "{\"index\":2,\"time\":2,\"proc",
        );
        let bad = good.replace("\"time\":2,\"process\":1", "\"time\":0,\"process\":1");
        for text in [
            good.to_string(),
            bad,
            "{nope\n".to_string(),
            "{\"index\":0}".into(),
        ] {
            let read = |chunk: usize| {
                let mut events = Vec::new();
                read_events_in(text.as_bytes(), chunk, |e| {
                    events.push(e);
                    Ok(())
                })
                .map(|notes| (events, notes))
                .map_err(|e| e.to_string())
            };
            let whole = read(1 << 20);
            for chunk in 1..text.len() + 2 {
                assert_eq!(read(chunk), whole, "chunk {chunk} of {text:?}");
            }
        }
        let (events, notes) = {
            let mut events = Vec::new();
            let notes = read_events_in(good.as_bytes(), 7, |e| {
                events.push(e);
                Ok(())
            })
            .unwrap();
            (events, notes)
        };
        assert_eq!(events.len(), 2);
        assert_eq!(notes.truncated_line, Some(4));
        assert!(notes.warning().unwrap().contains("line 4"));
    }

    #[test]
    fn only_a_cut_off_json_object_is_a_truncated_tail() {
        let first = "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n";
        // Garbage, or a whole object that breaks a rule, is an error even
        // as an unterminated last line.
        for tail in [
            "hello world",
            "\u{1}\u{2}base64+/=",
            "{\"index\":1}",
            "{\"index\":1,]",
            "[1,",
        ] {
            let err = parse(&format!("{first}{tail}")).unwrap_err();
            assert!(err.to_string().starts_with("line 2: "), "{tail:?}: {err}");
        }
        assert!(parse("hello world").is_err());
        let (line, reason) = line_err(&format!("{first}{}", "x".repeat(MAX_LINE + 10)));
        assert_eq!(line, 2);
        assert!(reason.contains("more than 64 MiB"), "{reason}");
    }

    #[test]
    fn mismatch_marks_only_a_failed_cas() {
        let (line, reason) = line_err(concat!(
            "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"write\",\"value\":1}\n",
            "{\"index\":1,\"time\":2,\"process\":1,\"type\":\"fail\",\"f\":\"write\",\"value\":1,\"mismatch\":true}\n",
        ));
        assert_eq!(line, 2);
        assert!(reason.contains("failed cas only"), "{reason}");
        let events = parse(concat!(
            "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"cas\",\"value\":[1,2]}\n",
            "{\"index\":1,\"time\":2,\"process\":1,\"type\":\"fail\",\"f\":\"cas\",\"value\":[1,2],\"mismatch\":true}\n",
        ))
        .unwrap();
        assert!(events[1].mismatch && events[1].says_mismatch());
        let mut out = Vec::new();
        History::new(events.clone()).write_to(&mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\"mismatch\":true"));
        assert!(!serde_json::to_string(&events[0])
            .unwrap()
            .contains("mismatch"));
    }

    #[test]
    fn not_proposed_marks_only_a_failure_that_compared_nothing() {
        let invoke =
            "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"cas\",\"value\":[1,2]}\n";
        for (done, why) in [
            (
                r#""type":"info","f":"cas","value":[1,2],"not_proposed":true"#,
                "not a info cas",
            ),
            (
                r#""type":"fail","f":"cas","value":[1,2],"mismatch":true,"not_proposed":true"#,
                "marked `mismatch`",
            ),
        ] {
            let text = format!("{invoke}{{\"index\":1,\"time\":2,\"process\":1,{done}}}\n");
            let (line, reason) = line_err(&text);
            assert_eq!(line, 2);
            assert!(reason.contains(why), "{reason}");
        }
        let events = parse(&format!(
            "{invoke}{}\n",
            r#"{"index":1,"time":2,"process":1,"type":"fail","f":"cas","value":[1,2],"error":"not-proposed: no leader","not_proposed":true}"#
        ))
        .unwrap();
        assert!(events[1].not_proposed && events[1].says_not_proposed());
        assert!(!events[1].says_mismatch());
        let mut out = Vec::new();
        History::new(events.clone()).write_to(&mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("\"not_proposed\":true}\n"));
        assert!(!serde_json::to_string(&events[0])
            .unwrap()
            .contains("not_proposed"));
    }

    /// A history of the previous release said "never proposed" only in
    /// the `error`: it still reads, and still says so.
    #[test]
    fn an_error_prefix_says_not_proposed_in_older_histories() {
        let events = parse(concat!(
            "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"write\",\"value\":1}\n",
            "{\"index\":1,\"time\":2,\"process\":1,\"type\":\"fail\",\"f\":\"write\",\"value\":1,\"error\":\"not-proposed: 503 not-proposed no leader\"}\n",
        ))
        .unwrap();
        assert!(!events[1].not_proposed);
        assert!(events[1].says_not_proposed());
        assert!(!events[0].says_not_proposed());
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
            mismatch: false,
            not_proposed: false,
        };
        assert!(w.write_event(&e).is_err());
    }
}
