//! Opening a history file for `synod check`: [`Input`] streams Synod's JSON
//! Lines from the file however long it is, and parses the small foreign
//! formats whole when the file is opened; its errors name the format read
//! and whether it was guessed.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{guess_format, invalid, io_error, read_str, read_text, Format, Imported};
use crate::history::{read_events, Event, HistoryError, ReadNotes};
use crate::model::Semantics;

/// A history file opened for reading, its format known or guessed.
///
/// Synod's JSON Lines stream from the file ([`read_events`]): a history of
/// any size is read without being held. The foreign formats are small and
/// are parsed whole when the file is opened.
pub struct Input {
    pub path: PathBuf,
    /// The format read (never `Auto`).
    pub format: Format,
    /// Whether `format` was guessed from the content.
    pub guessed: bool,
    source: Source,
}

enum Source {
    /// The first bytes, already read for the guess, then the rest.
    Stream(Vec<u8>, std::fs::File),
    Parsed(Imported),
}

/// How many bytes the guess looks at.
const GUESS_BYTES: usize = 64 * 1024;

/// Opens a history file in the given format (`Auto` guesses from its
/// first 64 KiB). Errors name the format read, and say when it was a
/// guess.
pub fn open(path: &Path, format: Format) -> Result<Input, HistoryError> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut head = Vec::with_capacity(GUESS_BYTES);
    (&mut file)
        .take(GUESS_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| io_error(path, e))?;
    let guessed = format == Format::Auto;
    let format = match format {
        Format::Auto => {
            let text = String::from_utf8_lossy(&head);
            guess_format(text.strip_prefix('\u{feff}').unwrap_or(&text))
        }
        f => f,
    };
    let source = match format {
        Format::Auto | Format::Jsonl => Source::Stream(head, file),
        f => {
            drop(file);
            let imported = read_text(path)
                .and_then(|t| read_str(&t, f))
                .map_err(|e| with_format(e, f, guessed))?;
            Source::Parsed(imported)
        }
    };
    Ok(Input {
        path: path.to_path_buf(),
        format,
        guessed,
        source,
    })
}

/// Adds the format read to an error about the content.
pub fn with_format(e: HistoryError, format: Format, guessed: bool) -> HistoryError {
    match e {
        HistoryError::Invalid { line, reason } => HistoryError::Invalid {
            line,
            reason: format!("{reason} ({})", format_note(format, guessed)),
        },
        other => other,
    }
}

/// `read as jsonl`, and whether that was a guess.
pub fn format_note(format: Format, guessed: bool) -> String {
    if guessed {
        format!("read as {format}, guessed from the content; --format chooses another")
    } else {
        format!("read as {format}")
    }
}

impl Input {
    /// What the history's events mean: its format's [`Semantics`], with
    /// the initial value its content implies.
    pub fn semantics(&self) -> Semantics {
        match &self.source {
            Source::Parsed(i) => i.semantics.clone(),
            Source::Stream(..) => self.format.semantics(),
        }
    }

    /// Hands every event, validated and in order, to `sink`; errors name
    /// the line (and the format read).
    pub fn events(
        self,
        mut sink: impl FnMut(Event) -> Result<(), String>,
    ) -> Result<ReadNotes, HistoryError> {
        let (format, guessed) = (self.format, self.guessed);
        let result = match self.source {
            Source::Stream(head, file) => read_events(std::io::Cursor::new(head).chain(file), sink),
            Source::Parsed(imported) => feed(imported, &mut sink),
        };
        result.map_err(|e| with_format(e, format, guessed))
    }
}

/// Hands an imported history's events to `sink`, naming source lines.
fn feed(
    imported: Imported,
    sink: &mut impl FnMut(Event) -> Result<(), String>,
) -> Result<ReadNotes, HistoryError> {
    let Imported {
        history,
        notes,
        lines,
        ..
    } = imported;
    for (i, e) in history.events.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(i + 1);
        sink(e).map_err(|reason| invalid(line, reason))?;
    }
    Ok(notes)
}
