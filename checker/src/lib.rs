//! synod-checker: the judge of every Synod run.
//!
//! # Layout
//!
//! - [`history`]: the JSON Lines history format (`docs/history.md`), its
//!   types, a streaming writer and a validating streaming reader.
//! - [`import`]: readers for Jepsen logs, EDN lines (Porcupine's kv corpus)
//!   and Jepsen's `history.edn`, normalised into a [`History`], each with
//!   its format's [`Semantics`]; [`import::open`] opens any history file.
//! - [`edn`]: the small EDN reader the importers use.
//! - [`export`]: writes a history as Jepsen's `history.edn`, so Jepsen's
//!   own checkers can cross-check a verdict (`synod export`).
//! - [`model`]: the Porcupine-style [`Model`](model::Model) interface, the
//!   register models (`cas-register`, `kv`), what a format's events mean
//!   ([`Semantics`]) and the streaming partition by key.
//! - [`search`]: the per-key Wing-Gong search with Lowe's memoisation.
//! - [`check()`]: the whole-history check (keys in parallel, budgets,
//!   verdicts) and the explanation of a key that is not linearizable.
//! - [`report`]: counts, latency histograms, throughput, availability,
//!   fault windows and recovery, from any history.
//! - [`plots`]: the report's SVG plots (plotters), fault windows shaded.
//! - [`palette`]: the colours of the report's plots and of `synod
//!   compare`'s, in one place.
//! - [`html`]: the self-contained `report.html` and `explanation.html`.
//! - [`pipeline`]: [`check_and_report_input`], the one call the CLI and
//!   the bench runner make: stream a history file once into the check and
//!   the report, write the files (the caller's own [`Section`]s join the
//!   report, e.g. the runner's peer messages); [`check_and_report`] does the
//!   same for a history in memory.
//! - [`timeline`]: `timeline.html`, a window of the history as lanes of
//!   bars (Jepsen's timeline), around the first violation by default.
//! - [`results`]: [`Results`], the one type of `results.json`, which the
//!   pipeline writes once and every reader reads back (`docs/results.md`).
//! - [`gen`]: simulated linearizable histories for tests and benchmarks.
//! - [`fxhash`]: the fast hash the search's tables use.
//!
//! # Use
//!
//! ```no_run
//! use std::path::Path;
//! use synod_checker::import::{self, Format};
//! use synod_checker::{check_and_report_input, Options};
//!
//! // Any format; `Auto` guesses. The format brings its meaning.
//! let input = import::open(Path::new("run/history.jsonl"), Format::Auto)?;
//! let options = Options { semantics: input.semantics(), ..Options::default() };
//! let outcome = check_and_report_input(input, &options, Path::new("run"), &[], None)?;
//! println!("{}", outcome.summary());
//! std::process::exit(outcome.exit_code() as i32);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
pub mod check;
pub mod edn;
pub mod export;
pub mod fxhash;
pub mod gen;
pub mod history;
pub mod html;
pub mod import;
pub mod model;
pub mod palette;
pub mod pipeline;
pub mod plots;
pub mod report;
pub mod results;
pub mod search;
pub mod timeline;

pub use check::{check, check_partition, Checked, Explanation, Options, Verdict};
pub use history::History;
pub use html::Section;
pub use model::{FailedCas, ModelKind, NilRead, Semantics, Ties};
pub use pipeline::{
    check_and_report, check_and_report_input, check_and_report_run, check_and_report_with,
    check_input, JudgedHistory, PipelineError,
};
pub use results::{Judgement, Results, ResultsError};
