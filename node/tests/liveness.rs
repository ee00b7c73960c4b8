//! Liveness: once every fault heals, a stable leader serves every request;
//! with every node proposing (the dueling proposers), commands are still
//! chosen under contention.

mod common;

use synod_node::sim::{self, replay_command, SimConfig};
use synod_node::{Learn, Proposers, Reads};

use common::check_result;

#[test]
fn every_request_after_faults_heal_succeeds_with_a_stable_leader() {
    for (n, learn) in [(3, Learn::Leader), (5, Learn::All)] {
        let cfg = SimConfig::standard(n, Proposers::Leader, learn, Reads::Log);
        let mut late_ok = 0;
        for seed in 1..=40 {
            let r = sim::run(&cfg, seed);
            assert!(
                r.late_failures.is_empty(),
                "seed {seed}: {:?}\n  replay: {}",
                r.late_failures,
                replay_command(seed, &cfg)
            );
            if let Some(p) = check_result(&r) {
                panic!("seed {seed}: {p}\n  replay: {}", replay_command(seed, &cfg));
            }
            assert!(
                r.stats.late_ok > 0,
                "seed {seed}: nothing ran after healing"
            );
            late_ok += r.stats.late_ok;
        }
        eprintln!("n={n}: {late_ok} operations after healing, all ok");
    }
}

#[test]
fn dueling_proposers_still_choose_commands_under_contention() {
    // No faults: every node proposes for its own clients at once, so
    // proposers preempt each other; randomized backoff lets them through.
    let mut cfg = SimConfig::standard(3, Proposers::Any, Learn::Leader, Reads::Log);
    cfg.loss = 0;
    cfg.dup = 0;
    cfg.partitions = false;
    cfg.one_way = false;
    cfg.crashes = false;
    cfg.power_loss = false;
    cfg.pauses = false;
    cfg.clock = false;
    cfg.clients = 9;
    for seed in 1..=20 {
        let r = sim::run(&cfg, seed);
        if let Some(p) = check_result(&r) {
            panic!("seed {seed}: {p}\n  replay: {}", replay_command(seed, &cfg));
        }
        assert!(
            r.stats.ok > 100 && r.stats.chosen_slots > 100,
            "seed {seed}: too little progress under contention: {:?}",
            r.stats
        );
    }
}
