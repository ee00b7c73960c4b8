//! Test helpers for the simulation: run seeds, judge histories, print the
//! replay command of a failure.
#![allow(dead_code)]

pub mod fallback_linearizability;

use std::path::PathBuf;

use synod_node::sim::{self, replay_command, SimConfig, SimResult};

/// How a history was judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    Linearizable,
    NotLinearizable(String),
    Unknown(String),
}

/// Judges a simulated history.
pub fn judge(result: &SimResult) -> Judgement {
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
    if !result.violations.is_empty() {
        return Some(format!(
            "invariant violated: {}",
            result.violations.join("; ")
        ));
    }
    match judge(result) {
        Judgement::Linearizable => {}
        Judgement::NotLinearizable(why) => return Some(format!("not linearizable: {why}")),
        Judgement::Unknown(why) => return Some(format!("checker gave up: {why}")),
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
