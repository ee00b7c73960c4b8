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
//! - [`fxhash`]: the fast hash the search's tables use.
pub mod check;
pub mod edn;
pub mod fxhash;
pub mod history;
pub mod import;
pub mod model;
pub mod search;

pub use check::{check, Checked, Explanation, Options, Verdict};
pub use history::History;
