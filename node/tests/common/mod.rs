//! Test helpers for the simulation: run seeds, judge histories, print the
//! replay command of a failure.
#![allow(dead_code)]

pub mod fallback_linearizability;

use std::path::PathBuf;
use std::time::Duration;

use synod_checker::history::History;
use synod_checker::{Options, Verdict};

use synod_node::sim::{self, replay_command, SimConfig, SimResult};

/// How a history was judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    Linearizable,
    NotLinearizable(String),
    Unknown(String),
}

/// Judges a simulated history with the real checker
/// (`synod_checker::check`, cas-register model per key).
pub fn judge(result: &SimResult) -> Judgement {
    // The simulation records the checker's own events: no conversion.
    let history = History::new(result.history.clone());
    let options = Options {
        time_limit: Some(Duration::from_secs(20)),
        ..Options::default()
    };
    match synod_checker::check(&history, &options) {
        Ok(c) => match c.verdict {
            Verdict::Valid => Judgement::Linearizable,
            Verdict::Invalid => {
                let why = c
                    .explanations
                    .first()
                    .map(|e| {
                        format!(
                            "key {}: {} (invoked at history index {}, state after the longest linearizable prefix: {})",
                            e.key, e.failing.description, e.failing.invoke_index, e.state_after_prefix
                        )
                    })
                    .unwrap_or_default();
                Judgement::NotLinearizable(format!("keys {:?} {why}", c.invalid_keys))
            }
            Verdict::Unknown => Judgement::Unknown(format!("keys {:?}", c.unknown_keys)),
        },
        Err(e) => Judgement::Unknown(format!("the checker refused the history: {e}")),
    }
}

/// Judges with the small fallback search in this directory (kept to
/// cross-check the real checker on simulation histories).
pub fn judge_fallback(result: &SimResult) -> Judgement {
    let lines: Vec<serde_json::Value> = result
        .history
        .iter()
        .map(|l| serde_json::to_value(l).expect("history lines serialize"))
        .collect();
    fallback_linearizability::check(&lines)
}

/// Where a failing run's history goes.
pub fn save_history(result: &SimResult) -> PathBuf {
    let dir = std::env::temp_dir().join("synod-sim");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("history-{}.jsonl", result.seed));
    let _ = std::fs::write(&path, result.history_jsonl());
    path
}

/// Seeds to run per configuration: `default`, or `SYNOD_SIM_SEEDS` split
/// evenly when set (it is the total across the matrix of `configs`).
pub fn seeds_per_config(default: u64, configs: u64) -> u64 {
    match std::env::var("SYNOD_SIM_SEEDS") {
        Ok(s) => s
            .parse::<u64>()
            .map(|t| (t / configs).max(1))
            .unwrap_or(default),
        Err(_) => default,
    }
}

/// Runs `seeds` seeds of `cfg` (from `first`), asserting every invariant,
/// linearizability and (for leader mode) liveness after healing. Panics
/// with the replay command of the first failing seed.
pub fn run_seeds(cfg: &SimConfig, first: u64, seeds: u64) {
    let mut stats = sim::SimStats::default();
    for seed in first..first + seeds {
        let result = sim::run(cfg, seed);
        let problem = check_result(&result);
        if let Some(problem) = problem {
            let path = save_history(&result);
            panic!(
                "seed {seed} failed: {problem}\n  history: {}\n  replay: {}",
                path.display(),
                replay_command(seed, cfg)
            );
        }
        stats.ok += result.stats.ok;
        stats.fail += result.stats.fail;
        stats.info += result.stats.info;
        stats.crashes += result.stats.crashes;
        stats.messages += result.stats.messages;
        stats.events += result.stats.events;
        stats.late_ok += result.stats.late_ok;
        stats.chosen_slots += result.stats.chosen_slots;
    }
    eprintln!("{cfg}: {seeds} seeds linearizable; {stats:?}");
    assert!(
        stats.ok > seeds * 20,
        "too few operations succeeded: {stats:?}"
    );
}

/// What is wrong with a run, if anything.
pub fn check_result(result: &SimResult) -> Option<String> {
    if let Some(problem) = safety_problem(result) {
        return Some(problem);
    }
    if !result.late_failures.is_empty() {
        return Some(format!(
            "liveness: {} operations invoked after healing did not succeed, first: {}",
            result.late_failures.len(),
            result.late_failures[0]
        ));
    }
    None
}

/// A broken safety property of a simulated run: an invariant violated, a
/// history the checker calls not linearizable, or one it gave up on.
/// Liveness (ops after healing that did not succeed) is not safety: teeth
/// for safety bugs count only this.
pub fn safety_problem(result: &SimResult) -> Option<String> {
    if !result.violations.is_empty() {
        return Some(format!(
            "invariant violated: {}",
            result.violations.join("; ")
        ));
    }
    match judge(result) {
        Judgement::Linearizable => None,
        Judgement::NotLinearizable(why) => Some(format!("not linearizable: {why}")),
        Judgement::Unknown(why) => Some(format!("checker gave up: {why}")),
    }
}
