//! Importers: Jepsen logs, EDN lines and Jepsen's `history.edn` into a
//! [`History`], and [`open`], which reads any history file the way
//! `synod check` does.
//!
//! Every importer first reads the foreign text into [`RawEvent`]s, then one
//! shared [`normalise`] turns them into events that obey the rules of
//! `docs/history.md`: it pairs completions with invocations (naming the
//! line when one has none), copies the invocation's value onto `fail` and
//! `info` completions, gives times to formats that have none, splits
//! `jepsen.independent` tuples into keys, and relabels processes. The
//! relabelling matters because Jepsen logs do not always retire a process
//! after an `info`: where the same process id invokes again, that
//! (process, generation) pair becomes a fresh id, so the checker still sees
//! one operation at a time per process and knows the `info` op may take
//! effect long after its process moved on.
//!
//! What a format's events mean beyond those rules (a failed cas, a `nil`
//! read, the initial value, equal times) is its [`Semantics`]
//! ([`Format::semantics`], `docs/checker.md`).
//!
//! Layout: this file holds the formats, the guess and the whole-text
//! readers; `input` opens a file for `synod check`; `jepsen_log` and `edn`
//! read the foreign formats into [`RawEvent`]s; `raw` holds that shape and
//! [`normalise`].

mod edn;
mod input;
mod jepsen_log;
mod raw;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::str::FromStr;

use serde_json::Value;

use crate::history::{read_events, History, HistoryError, ReadNotes};
use crate::model::{FailedCas, NilRead, Semantics, Ties};

pub use edn::parse_edn;
pub use input::{format_note, open, with_format, Input};
pub use jepsen_log::parse_jepsen_log;
pub use raw::{is_independent, normalise, Normalise, RawEvent, RawProcess};

use jepsen_log::JEPSEN_MARKERS;

/// The formats `synod check --format` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Guess from the content.
    Auto,
    /// Synod's own JSON Lines (`docs/history.md`).
    Jsonl,
    /// Jepsen's log lines: `INFO  jepsen.util - 3 :invoke :cas [1 2]`, or
    /// today's `... [jepsen worker 1] jepsen.util: 3 :invoke :cas [1 2]`.
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

    /// What the format's events mean (`docs/checker.md` has the table):
    /// Synod's JSON Lines have typed mismatches, `null` reads of unwritten
    /// keys and lines in the order one recorder observed them; Jepsen's
    /// formats follow Knossos (a fail only says it did not happen, a `nil`
    /// read matches any state) in the order Jepsen observed; Porcupine's
    /// EDN lines compare reads as they are, and equal times, if any, are
    /// concurrent. Every key starts at `null` (the EDN importer makes it
    /// `""` for Porcupine's get/put vocabulary).
    pub fn semantics(self) -> Semantics {
        let jepsen = Semantics {
            failed_cas: FailedCas::Drop,
            nil_read: NilRead::Any,
            ..Semantics::default()
        };
        match self {
            Format::Auto | Format::Jsonl => Semantics::default(),
            Format::JepsenLog | Format::JepsenEdn => jepsen,
            Format::Edn => Semantics {
                failed_cas: FailedCas::Drop,
                ties: Ties::Concurrent,
                ..Semantics::default()
            },
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// What its events mean: the format's, with the initial value the
    /// content implies (`""` for Porcupine's kv vocabulary).
    pub semantics: Semantics,
    pub notes: ReadNotes,
    /// The source line of each event (empty: event `i` is line `i + 1`).
    pub lines: Vec<usize>,
}

impl Imported {
    /// The source line of event `i`.
    pub fn line_of(&self, i: usize) -> usize {
        self.lines.get(i).copied().unwrap_or(i + 1)
    }
}

/// Reads a whole file in the given format (`Auto` guesses).
pub fn read_file(path: &Path, format: Format) -> Result<Imported, HistoryError> {
    let text = read_text(path)?;
    read_str(&text, format)
}

fn io_error(path: &Path, e: std::io::Error) -> HistoryError {
    HistoryError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

fn read_text(path: &Path) -> Result<String, HistoryError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    match String::from_utf8(bytes) {
        Ok(t) => Ok(t),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            Err(invalid(line, "not UTF-8 text"))
        }
    }
}

/// Reads a history from text in the given format (`Auto` guesses).
pub fn read_str(text: &str, format: Format) -> Result<Imported, HistoryError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let format = match format {
        Format::Auto => guess_format(text),
        f => f,
    };
    let mut semantics = format.semantics();
    let mut notes = ReadNotes::default();
    let (history, lines) = match format {
        Format::Auto | Format::Jsonl => {
            let mut events = Vec::new();
            notes = read_events(text.as_bytes(), |e| {
                events.push(e);
                Ok(())
            })?;
            (History::new(events), Vec::new())
        }
        Format::JepsenLog => {
            let how = Normalise {
                tuples: true,
                clamp_times: true,
            };
            normalise(parse_jepsen_log(text)?, how)?
        }
        Format::Edn | Format::JepsenEdn => {
            let (raw, porcupine_kv) = parse_edn(text)?;
            if porcupine_kv {
                semantics.initial = Value::String(String::new());
            }
            let how = Normalise {
                tuples: format == Format::JepsenEdn,
                clamp_times: semantics.ties == Ties::Ordered,
            };
            normalise(raw, how)?
        }
    };
    Ok(Imported {
        history,
        format,
        semantics,
        notes,
        lines,
    })
}

/// Guesses the format: a Jepsen log if any of the first lines has a
/// Jepsen marker (other log output may come first); else from the first
/// meaningful line.
pub fn guess_format(text: &str) -> Format {
    if text
        .lines()
        .take(1000)
        .any(|l| JEPSEN_MARKERS.iter().any(|m| l.contains(m)))
    {
        return Format::JepsenLog;
    }
    for line in text.lines().take(50) {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with(';') {
            continue;
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

fn invalid(line: usize, reason: impl Into<String>) -> HistoryError {
    HistoryError::Invalid {
        line,
        reason: reason.into(),
    }
}
