//! Teeth: the simulation must catch each way of breaking Paxos on purpose,
//! within 200 seeds, with a history the checker calls not linearizable.
//!
//! Without these a green matrix would prove nothing: a simulation that
//! cannot see a broken node cannot vouch for a correct one.

mod common;

use synod_node::sim::{self, replay_command, SimConfig};
use synod_node::{Fsync, Learn, Proposers, Reads};

use common::{judge, judge_fallback, save_history, Judgement};

/// Runs seeds 1..=200 until the checker finds a violation; returns the
/// seed and reason, or panics.
fn must_catch(what: &str, cfg: &SimConfig) -> u64 {
    for seed in 1..=200 {
        let result = sim::run(cfg, seed);
        if let Judgement::NotLinearizable(why) = judge(&result) {
            // The fallback search agrees, so neither checker is fooling us.
            assert!(
                matches!(judge_fallback(&result), Judgement::NotLinearizable(_)),
                "{what}: the checker and the fallback search disagree on seed {seed}"
            );
            let path = save_history(&result);
            eprintln!(
                "{what}: caught at seed {seed}: {why}\n  invariants: {:?}\n  history: {}\n  replay: {}",
                result.violations,
                path.display(),
                replay_command(seed, cfg)
            );
            return seed;
        }
    }
    panic!("{what}: no violation found in 200 seeds of {cfg}");
}

fn only(cfg: &mut SimConfig, faults: &str) {
    cfg.partitions = faults.contains("partition");
    cfg.one_way = faults.contains("oneway");
    cfg.crashes = faults.contains("crash");
    cfg.power_loss = faults.contains("powerloss");
    cfg.pauses = faults.contains("pause");
    cfg.clock = faults.contains("clock");
}

#[test]
fn local_reads_under_partitions_are_caught() {
    let mut cfg = SimConfig::standard(3, Proposers::Leader, Learn::Leader, Reads::Local);
    only(&mut cfg, "partition");
    must_catch("reads=local", &cfg);
}

#[test]
fn fsync_never_with_power_loss_is_caught() {
    let mut cfg = SimConfig::standard(3, Proposers::Leader, Learn::Leader, Reads::Log);
    cfg.fsync = Fsync::Never;
    only(&mut cfg, "crash+powerloss");
    must_catch("fsync=never", &cfg);
}

#[test]
fn lease_reads_with_clock_skew_beyond_the_drift_bound_are_caught() {
    let mut cfg = SimConfig::standard(3, Proposers::Leader, Learn::Leader, Reads::Lease);
    // Clock rates from 1/6 to 6x: far beyond what a 50 ms drift bound on a
    // 300 ms election timeout covers.
    cfg.skew = 5.0;
    cfg.clients = 8;
    only(&mut cfg, "partition+clock");
    must_catch("reads=lease with skew", &cfg);
}

#[test]
fn leader_ignoring_promised_values_is_caught() {
    let mut cfg = SimConfig::standard(3, Proposers::Leader, Learn::Leader, Reads::Log);
    cfg.bug = true;
    // Leader changes with slots in flight are what expose it.
    only(&mut cfg, "partition+crash");
    must_catch("bug: new leader ignores promised values", &cfg);
}
