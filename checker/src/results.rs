//! `results.json`: the one definition of the file the checker writes into
//! a run directory, and that every reader (`synod suite`, `compare`,
//! `serve`) reads back. The schema is documented in `docs/results.md`.
//!
//! The file is written once, by [`crate::pipeline`]: a caller that has
//! figures of its own (the bench runner's `run` section) hands them to
//! the writer instead of patching the file afterwards. The section's type
//! belongs to that caller, so [`Results`] is generic over it; a reader
//! that does not care reads it as [`serde_json::Value`].
//!
//! A history that was never judged (a run interrupted before its check)
//! has a `null` verdict, a `note` saying why, and no [`Judgement`].

use serde::{Deserialize, Serialize};

use crate::check::{Checked, Explanation, Options, ShownOp, Verdict};
use crate::model::FailedCas;
use crate::report::Report;

/// The contents of `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results<R = serde_json::Value> {
    /// `None` (`null`): the history was not judged; [`Results::note`] says
    /// why.
    pub verdict: Option<Verdict>,
    /// Why there is no verdict (an interrupted or failed run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Present whenever `verdict` is (see [`Results::from_json`]).
    #[serde(flatten)]
    pub judgement: Option<Judgement>,
    /// The writer's own figures (the bench runner's run section). A
    /// missing `Option` field reads as `None` without `serde(default)`,
    /// which would ask `R: Default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<R>,
}

/// What the checker found: the fields of a judged `results.json` besides
/// the verdict.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Judgement {
    /// The model the history was checked under.
    pub model: String,
    /// Client operations in the history.
    pub operations: u64,
    pub options: CheckOptions,
    pub check: Checked,
    /// One per key that is not linearizable.
    pub explanations: Vec<ExplanationRecord>,
    pub report: Report,
}

/// The options the check ran with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckOptions {
    /// `None`: no time limit.
    pub time_limit_s: Option<f64>,
    pub memory_limit_bytes: Option<usize>,
    /// The value of every key before its first write.
    pub initial_value: serde_json::Value,
    pub failed_cas: FailedCas,
}

impl CheckOptions {
    pub fn of(options: &Options) -> CheckOptions {
        CheckOptions {
            time_limit_s: options.time_limit.map(|d| d.as_secs_f64()),
            memory_limit_bytes: options.memory_limit,
            initial_value: options.semantics.initial.clone(),
            failed_cas: options.semantics.failed_cas,
        }
    }
}

/// An [`Explanation`] as the file stores it: the text a person reads, and
/// the ops of the failing window (all the ops are drawn in
/// `explanation.html`, not repeated here).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExplanationRecord {
    pub key: String,
    pub failing: ShownOp,
    /// [`Explanation::to_text`].
    pub text: String,
    /// The longest linearizable prefix, by op id, in linearization order.
    pub prefix: Vec<usize>,
    pub state_after_prefix: String,
    /// The ops concurrent with the failing one.
    pub window: Vec<ShownOp>,
}

impl From<&Explanation> for ExplanationRecord {
    fn from(e: &Explanation) -> ExplanationRecord {
        ExplanationRecord {
            key: e.key.clone(),
            failing: e.failing.clone(),
            text: e.to_text(),
            prefix: e.prefix.clone(),
            state_after_prefix: e.state_after_prefix.clone(),
            window: e.window.iter().map(|&i| e.ops[i].clone()).collect(),
        }
    }
}

/// Why a `results.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("not a results.json: {0}")]
    Json(#[from] serde_json::Error),
    /// A verdict without the judgement behind it: a field renamed or
    /// missing, named here rather than read as zero.
    #[error("results.json has a verdict but its judgement does not read: {0}")]
    Judgement(String),
}

impl<R> Results<R> {
    /// The results of a history never judged, with the reason.
    pub fn unjudged(note: String, run: Option<R>) -> Results<R> {
        Results {
            verdict: None,
            note: Some(note),
            judgement: None,
            run,
        }
    }
}

impl<R: serde::de::DeserializeOwned> Results<R> {
    /// Reads `results.json` text. Every field the schema requires must be
    /// there: a verdict whose judgement is missing or misspelt is an
    /// error, not a report of zeros.
    pub fn from_json(text: &str) -> Result<Results<R>, ResultsError> {
        let results: Results<R> = serde_json::from_str(text)?;
        if results.verdict.is_some() && results.judgement.is_none() {
            // A flattened `Option` reads as `None` when its fields do not
            // deserialize; read them alone for the reason.
            let why = match serde_json::from_str::<Judgement>(text) {
                Err(e) => e.to_string(),
                Ok(_) => "it is missing".to_string(),
            };
            return Err(ResultsError::Judgement(why));
        }
        Ok(results)
    }
}
