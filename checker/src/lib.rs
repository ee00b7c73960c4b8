//! synod-checker: the judge of every Synod run.
//!
//! # Layout
//!
//! - [`history`]: the JSON Lines history format (`docs/history.md`), its
//!   types, a streaming writer and a validating streaming reader.
//! - [`import`]: readers for Jepsen logs, EDN lines (Porcupine's kv corpus)
//!   and Jepsen's `history.edn`, normalised into a [`History`].
//! - [`edn`]: the small EDN reader the importers use.
//! - [`model`]: the Porcupine-style [`Model`](model::Model) interface, the
//!   register models (`cas-register`, `kv`) and the partition by key.
//! - [`search`]: the per-key Wing-Gong search with Lowe's memoisation.
//! - [`check`]: the whole-history check (keys in parallel, budgets,
//!   verdicts) and the explanation of a key that is not linearizable.
//! - [`report`]: counts, latency histograms, throughput, availability,
//!   fault windows and recovery, from any history.
//! - [`plots`]: the report's SVG plots (plotters), fault windows shaded.
//! - [`html`]: the self-contained `report.html` and `explanation.html`.
//! - [`pipeline`]: [`check_and_report`], the one call the CLI and the bench
//!   runner make: check, report, write the files ([`check_and_report_with`]
//!   adds the caller's own [`Section`]s to the report, e.g. the runner's
//!   peer messages).
//! - [`gen`]: simulated linearizable histories for tests and benchmarks.
//! - [`fxhash`]: the fast hash the search's tables use.
//!
//! # Use
//!
//! ```no_run
//! use std::path::Path;
//! use synod_checker::{check_and_report, History, Options};
//!
//! let history = History::read_path(Path::new("run/history.jsonl"))?;
//! let outcome = check_and_report(&history, &Options::default(), Path::new("run"))?;
//! println!("{}", outcome.summary());
//! std::process::exit(outcome.exit_code() as i32);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! To read Jepsen or Porcupine histories, use [`import::read_file`], and pass
//! its `initial` value in [`Options::initial`].
pub mod check;
pub mod edn;
pub mod fxhash;
pub mod gen;
pub mod history;
pub mod html;
pub mod import;
pub mod model;
pub mod pipeline;
pub mod plots;
pub mod report;
pub mod search;

pub use check::{check, Checked, Explanation, Options, Verdict};
pub use history::History;
pub use html::Section;
pub use model::ModelKind;
pub use pipeline::{check_and_report, check_and_report_with, Outcome, PipelineError};
