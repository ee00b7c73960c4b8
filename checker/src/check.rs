//! The linearizability check of a whole history: partition by key, search
//! every key in parallel under shared time and memory budgets, and explain
//! each key that is not linearizable.
//!
//! The verdict is honest: `valid` only if every key was found
//! linearizable, `invalid` if any key was proven not to be, and `unknown`
//! (naming the keys) if a budget ran out before a key was decided and no
//! other key is invalid.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::history::{EventType, History};
use crate::model::{
    self, KeyHistory, KeyOp, Model, ModelError, ModelKind, Register, Semantics, Val, INFINITY,
};
use crate::search::{Limits, Search, SearchOutcome};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// What to check and with which budgets.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub model: ModelKind,
    /// What the history's events mean: Synod's own by default; an
    /// imported history brings its format's ([`crate::import::Input::semantics`]).
    pub semantics: Semantics,
    /// Wall-clock budget for the whole search; a limit too large for the
    /// clock is no limit.
    pub time_limit: Option<Duration>,
    /// Budget in bytes for the memo caches of all keys together.
    pub memory_limit: Option<usize>,
    /// Decide every key even after one is found not linearizable (by
    /// default the check stops there, as Porcupine does: the verdict is
    /// settled, and a hard valid key could take much longer).
    pub exhaustive: bool,
    /// The election timeout of the nodes that made the history, when
    /// known: the report gives each fault window's down-time in its units
    /// too. It has no bearing on the check.
    pub election_timeout: Option<Duration>,
}

/// The checker's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Invalid,
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One key's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyResult {
    pub key: String,
    pub ops: usize,
    pub verdict: Verdict,
    /// Why the verdict is `unknown` (`time limit`, `memory limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Distinct (linearized set, state) pairs the search explored.
    pub explored: usize,
    pub millis: f64,
}

/// One operation as an explanation shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShownOp {
    /// Index of the op within its key.
    pub id: usize,
    pub process: u64,
    /// Invocation and completion time (ns); `None`: never completed/info.
    pub call: u64,
    pub ret: Option<u64>,
    pub outcome: String,
    pub description: String,
    /// The invoking event's index (its line - 1 in a JSONL history).
    pub invoke_index: u64,
    /// Position in the longest linearizable prefix, if in it.
    pub order: Option<usize>,
    pub state_before: Option<String>,
    pub state_after: Option<String>,
}

/// Why one key is not linearizable.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub key: String,
    /// The op that cannot be linearized after the longest prefix: the
    /// earliest-completing definite op outside it.
    pub failing: ShownOp,
    /// The longest linearizable prefix, in linearization order.
    pub prefix: Vec<usize>,
    /// The model state after the prefix.
    pub state_after_prefix: String,
    /// Ops concurrent with the failing one (their windows overlap it).
    pub window: Vec<usize>,
    /// Every op of the key, by id (the HTML draws them all).
    pub ops: Vec<ShownOp>,
}

/// The result of checking a history (`check` in `results.json`; the
/// explanations are written beside it, see [`crate::results`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checked {
    pub verdict: Verdict,
    /// The model the keys were checked under (`cas-register`, `kv`).
    pub model: String,
    pub keys: Vec<KeyResult>,
    /// Keys whose budget ran out (with `unknown`).
    pub unknown_keys: Vec<String>,
    pub invalid_keys: Vec<String>,
    #[serde(skip)]
    pub explanations: Vec<Explanation>,
    pub millis: f64,
}

/// Why a history could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Checks a history in memory for linearizability.
pub fn check(history: &History, options: &Options) -> Result<Checked, CheckError> {
    let partition = model::partition(history, options.model, &options.semantics)?;
    Ok(check_partition(partition, options))
}

/// Checks a history already split by key (see [`model::Partitioner`],
/// which the streaming readers feed).
pub fn check_partition(partition: model::Partition, options: &Options) -> Checked {
    let start = Instant::now();
    let kind = partition.kind;
    let deadline = options.time_limit.and_then(|d| start.checked_add(d));
    let limits = Limits::new(deadline, options.memory_limit);
    let mut jobs: Vec<Job> = partition
        .keys
        .into_iter()
        .map(|key| Job {
            key,
            search: None,
            millis: 0.0,
        })
        .collect();
    // Rounds with a doubling step budget: every key gets its share of the
    // cores before any key gets more, so one hard key cannot delay the
    // easy key whose failure settles the verdict. The first budget is
    // large enough that a typical key (a thousand ops, ten processes)
    // finishes in it: a key left pending keeps its memo, and a thousand
    // pending memos at once took 700 MB on the 1M-op bench. A search is
    // built when its key first runs, and frees all but its verdict when
    // it ends, so only the keys in hand hold memory.
    let mut budget = 1u64 << 20;
    loop {
        let pending: Vec<&mut Job> = jobs
            .iter_mut()
            .filter(|j| j.search.as_ref().is_none_or(|s| s.outcome().is_none()))
            .collect();
        if pending.is_empty() {
            break;
        }
        pending.into_par_iter().for_each(|job| {
            let t = Instant::now();
            let model = Register { key: &job.key };
            let key = &job.key;
            // Tracking the longest prefix is nearly free (it copies only
            // when backtracking from a new peak), and saves searching an
            // invalid key twice to explain it.
            let search = job
                .search
                .get_or_insert_with(|| Search::new(&model, &key.ops, key.ordered, true));
            let outcome = search.run(&model, &key.ops, &limits, budget);
            if outcome == Some(SearchOutcome::NotLinearizable) && !options.exhaustive {
                limits.cancel.store(true, Ordering::Relaxed);
            }
            job.millis += t.elapsed().as_secs_f64() * 1e3;
        });
        budget = budget.saturating_mul(2);
    }
    let mut results: Vec<(KeyResult, Option<Explanation>)> =
        jobs.into_par_iter().map(finish_key).collect();
    results.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    let mut keys = Vec::with_capacity(results.len());
    let mut explanations = Vec::new();
    for (r, e) in results {
        keys.push(r);
        explanations.extend(e);
    }
    let pick = |v: Verdict| -> Vec<String> {
        keys.iter()
            .filter(|k| k.verdict == v)
            .map(|k| k.key.clone())
            .collect()
    };
    let invalid_keys = pick(Verdict::Invalid);
    let unknown_keys = pick(Verdict::Unknown);
    let verdict = if !invalid_keys.is_empty() {
        Verdict::Invalid
    } else if !unknown_keys.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    Checked {
        verdict,
        model: kind.as_str().to_string(),
        keys,
        unknown_keys,
        invalid_keys,
        explanations,
        millis: start.elapsed().as_secs_f64() * 1e3,
    }
}

/// One key being searched.
struct Job {
    key: KeyHistory,
    /// Built when the key first runs.
    search: Option<Search<Val>>,
    millis: f64,
}

fn finish_key(job: Job) -> (KeyResult, Option<Explanation>) {
    let key = &job.key;
    let (verdict, reason) = match job.search.as_ref().and_then(Search::outcome) {
        Some(SearchOutcome::Linearizable) => (Verdict::Valid, None),
        Some(SearchOutcome::NotLinearizable) => (Verdict::Invalid, None),
        Some(SearchOutcome::OutOfTime) => (Verdict::Unknown, Some("time limit".to_string())),
        Some(SearchOutcome::OutOfMemory) => (Verdict::Unknown, Some("memory limit".to_string())),
        Some(SearchOutcome::Cancelled) | None => (
            Verdict::Unknown,
            Some("not decided: another key is not linearizable".to_string()),
        ),
    };
    let longest = job.search.as_ref().map(Search::longest).unwrap_or_default();
    let explanation =
        (verdict == Verdict::Invalid).then(|| explain(key, &Register { key }, longest));
    (
        KeyResult {
            key: key.key.clone(),
            ops: key.ops.len(),
            verdict,
            reason,
            explored: job.search.as_ref().map_or(0, Search::explored),
            millis: job.millis,
        },
        explanation,
    )
}

fn outcome_name(op: &KeyOp) -> String {
    match (op.outcome, op.complete_index) {
        (EventType::Info, None) => "open".into(),
        (k, _) => k.to_string(),
    }
}

/// Builds the explanation of a key from its longest linearizable prefix.
pub fn explain(key: &KeyHistory, model: &Register<'_>, prefix: &[usize]) -> Explanation {
    let mut ops: Vec<ShownOp> = key
        .ops
        .iter()
        .enumerate()
        .map(|(id, op)| ShownOp {
            id,
            process: op.process,
            call: op.call,
            ret: (op.ret != INFINITY).then_some(op.ret),
            outcome: outcome_name(op),
            description: model.describe_call(&op.what),
            invoke_index: op.invoke_index,
            order: None,
            state_before: None,
            state_after: None,
        })
        .collect();
    let mut state = model.init();
    for (pos, &i) in prefix.iter().enumerate() {
        let before = model.describe_state(&state);
        // The prefix is a linearization the search accepted, so every step
        // is legal; a `None` here would be a bug in the search.
        if let Some(next) = model.step(&state, &key.ops[i].what) {
            state = next;
        }
        ops[i].order = Some(pos);
        ops[i].state_before = Some(before);
        ops[i].state_after = Some(model.describe_state(&state));
    }
    let failing = key
        .ops
        .iter()
        .enumerate()
        .filter(|(i, op)| op.definite && ops[*i].order.is_none())
        .min_by_key(|(_, op)| (op.ret, op.call))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let f = &key.ops[failing];
    let window = key
        .ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.call <= f.ret && op.ret >= f.call)
        .map(|(i, _)| i)
        .collect();
    Explanation {
        key: key.key.clone(),
        failing: ops[failing].clone(),
        prefix: prefix.to_vec(),
        state_after_prefix: model.describe_state(&state),
        window,
        ops,
    }
}

fn ms(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

fn describe_op(op: &ShownOp) -> String {
    let ret = op.ret.map(ms).unwrap_or_else(|| "never".into());
    format!(
        "process {} {} ({}) from {} to {} [event {}]",
        op.process,
        op.description,
        op.outcome,
        ms(op.call),
        ret,
        op.invoke_index
    )
}

impl Explanation {
    /// The explanation as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = format!("key {:?} is not linearizable\n", self.key);
        s += &format!("  cannot linearize: {}\n", describe_op(&self.failing));
        s += &format!(
            "  longest linearizable prefix: {} of {} ops, ending in state {}\n",
            self.prefix.len(),
            self.ops.len(),
            self.state_after_prefix
        );
        let tail = self.prefix.len().saturating_sub(5);
        for &i in &self.prefix[tail..] {
            let op = &self.ops[i];
            s += &format!(
                "    #{:<4} {}  [{} -> {}]\n",
                op.order.unwrap_or(0) + 1,
                describe_op(op),
                op.state_before.as_deref().unwrap_or("?"),
                op.state_after.as_deref().unwrap_or("?")
            );
        }
        s += &format!("  concurrent window ({} ops):\n", self.window.len());
        for &i in self.window.iter().take(20) {
            let op = &self.ops[i];
            let mark = if i == self.failing.id { "!" } else { " " };
            let lin = op
                .order
                .map(|o| format!("linearized #{}", o + 1))
                .unwrap_or_else(|| "not linearized".into());
            s += &format!("   {mark} {}  {}\n", describe_op(op), lin);
        }
        if self.window.len() > 20 {
            s += &format!("    ... and {} more\n", self.window.len() - 20);
        }
        s
    }
}
