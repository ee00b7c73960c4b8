//! The deterministic simulation over thousands of seeds: every run must
//! keep the invariants, be linearizable, and (with a stable leader) serve
//! every request once faults heal.
//!
//! `SYNOD_SIM_SEEDS=N` runs N seeds in total across the matrix instead of
//! the default. A failing seed prints the one command that replays it.

mod common;

use synod_node::sim::{self, replay_command, SimConfig};
use synod_node::{Learn, Proposers, QuorumSize, Reads};

use common::{check_result, run_seeds, seeds_per_config};

/// The matrix: (name, config, default seeds): 2,700 seeds in total, 450
/// of them two-phase commit.
fn matrix() -> Vec<(&'static str, SimConfig, u64)> {
    use Learn as L;
    use Proposers as P;
    use QuorumSize as Q;
    use Reads as R;
    vec![
        (
            "n3-leader-leader-log",
            SimConfig::standard(3, P::Leader, L::Leader, R::Log),
            300,
        ),
        (
            "n3-leader-all-log",
            SimConfig::standard(3, P::Leader, L::All, R::Log),
            250,
        ),
        (
            "n3-leader-leader-lease",
            SimConfig::standard(3, P::Leader, L::Leader, R::Lease),
            300,
        ),
        (
            "n3-leader-all-lease",
            SimConfig::standard(3, P::Leader, L::All, R::Lease),
            200,
        ),
        (
            "n5-leader-leader-log",
            SimConfig::standard(5, P::Leader, L::Leader, R::Log),
            250,
        ),
        (
            "n5-leader-all-lease",
            SimConfig::standard(5, P::Leader, L::All, R::Lease),
            200,
        ),
        (
            "n3-any-leader-log",
            SimConfig::standard(3, P::Any, L::Leader, R::Log),
            250,
        ),
        (
            "n5-any-all-log",
            SimConfig::standard(5, P::Any, L::All, R::Log),
            200,
        ),
        (
            "n7-leader-leader-log",
            SimConfig::standard(7, P::Leader, L::Leader, R::Log),
            60,
        ),
        // Flexible Paxos: quorums that intersect without being majorities.
        (
            "n5-q1-4-q2-2-lease",
            flexible(5, Q::Nodes(4), Q::Nodes(2), R::Lease),
            120,
        ),
        (
            "n3-q1-all-q2-1-log",
            flexible(3, Q::All, Q::Nodes(1), R::Log),
            120,
        ),
        // The two-phase-commit baseline (issue 15): blocking, but safe.
        ("n3-two-phase-commit", SimConfig::two_phase_commit(3), 300),
        ("n5-two-phase-commit", SimConfig::two_phase_commit(5), 150),
    ]
}

fn flexible(n: usize, q1: QuorumSize, q2: QuorumSize, reads: Reads) -> SimConfig {
    let mut cfg = SimConfig::standard(n, Proposers::Leader, Learn::Leader, reads);
    cfg.q1 = q1;
    cfg.q2 = q2;
    assert!(!cfg.unsafe_quorums());
    cfg
}

fn run_named(name: &str) {
    let m = matrix();
    let total: u64 = m.iter().map(|(_, _, s)| s).sum();
    let (_, cfg, default) = m
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .expect("a configuration of the matrix");
    let seeds = match std::env::var("SYNOD_SIM_SEEDS") {
        Ok(_) => seeds_per_config(default, 1) * default / total,
        Err(_) => default,
    };
    run_seeds(&cfg, 1, seeds.max(1));
}

#[test]
fn matrix_has_at_least_2000_seeds() {
    let total: u64 = matrix().iter().map(|(_, _, s)| s).sum();
    assert!(total >= 2000, "{total}");
}

#[test]
fn n3_leader_leader_log() {
    run_named("n3-leader-leader-log");
}

#[test]
fn n3_leader_all_log() {
    run_named("n3-leader-all-log");
}

#[test]
fn n3_leader_leader_lease() {
    run_named("n3-leader-leader-lease");
}

#[test]
fn n3_leader_all_lease() {
    run_named("n3-leader-all-lease");
}

#[test]
fn n5_leader_leader_log() {
    run_named("n5-leader-leader-log");
}

#[test]
fn n5_leader_all_lease() {
    run_named("n5-leader-all-lease");
}

#[test]
fn n3_any_leader_log() {
    run_named("n3-any-leader-log");
}

#[test]
fn n5_any_all_log() {
    run_named("n5-any-all-log");
}

#[test]
fn n7_leader_leader_log() {
    run_named("n7-leader-leader-log");
}

#[test]
fn n5_q1_4_q2_2_lease() {
    run_named("n5-q1-4-q2-2-lease");
}

#[test]
fn n3_q1_all_q2_1_log() {
    run_named("n3-q1-all-q2-1-log");
}

#[test]
fn n3_two_phase_commit() {
    run_named("n3-two-phase-commit");
}

#[test]
fn n5_two_phase_commit() {
    run_named("n5-two-phase-commit");
}

/// Replays one seed: `SYNOD_SIM_SEED=.. SYNOD_SIM_CONFIG='..'`. Without
/// them it replays seed 1 of the default configuration.
#[test]
fn replay() {
    let seed = std::env::var("SYNOD_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let cfg: SimConfig = match std::env::var("SYNOD_SIM_CONFIG") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|e| panic!("SYNOD_SIM_CONFIG: {e}")),
        Err(_) => SimConfig::standard(3, Proposers::Leader, Learn::Leader, Reads::Log),
    };
    let result = sim::run(&cfg, seed);
    let path = common::save_history(&result);
    eprintln!(
        "seed {seed} {cfg}\n  {:?}\n  history: {}",
        result.stats,
        path.display()
    );
    for v in &result.violations {
        eprintln!("  violation: {v}");
    }
    if let Some(problem) = check_result(&result) {
        panic!("{problem}\n  replay: {}", replay_command(seed, &cfg));
    }
    // The same seed gives the same run.
    let again = sim::run(&cfg, seed);
    assert_eq!(
        again.history, result.history,
        "the simulation is not deterministic"
    );
}

/// The real checker and the fallback search agree on valid histories too.
#[test]
fn checker_and_fallback_agree_on_simulated_histories() {
    let cfg = SimConfig::standard(3, Proposers::Leader, Learn::All, Reads::Lease);
    for seed in 1..=20 {
        let result = sim::run(&cfg, seed);
        assert_eq!(
            common::judge(&result),
            common::judge_fallback(&result),
            "seed {seed}"
        );
    }
}
