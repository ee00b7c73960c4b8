//! Teeth: the simulation must catch each way of breaking Paxos on purpose,
//! within 200 seeds, with a history the checker calls not linearizable;
//! and each safety bug of issue 11, put back behind its test-only switch,
//! within 500 seeds, as a checker violation or a broken invariant.
//!
//! Without these a green matrix would prove nothing: a simulation that
//! cannot see a broken node cannot vouch for a correct one.

mod common;

use synod_node::sim::{self, replay_command, SimBug, SimConfig};
use synod_node::{Fsync, Learn, Proposers, QuorumSize, Reads};

use common::{judge, judge_fallback, safety_problem, save_history, Judgement};

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
    cfg.bug = SimBug::IgnorePromised;
    // Leader changes with slots in flight are what expose it: partitions
    // and crashes, and enough clients to keep slots in flight.
    cfg.clients = 12;
    only(&mut cfg, "partition+crash");
    must_catch("bug: new leader ignores promised values", &cfg);
}

/// Runs seeds 1..=500 of `cfg` until a run breaks an invariant or is not
/// linearizable (a safety finding: a liveness failure does not count);
/// prints and returns the first such seed, or panics.
fn must_break(what: &str, cfg: &SimConfig) -> u64 {
    for seed in 1..=500 {
        let result = sim::run(cfg, seed);
        if let Some(problem) = safety_problem(&result) {
            let path = save_history(&result);
            let problem: String = problem.chars().take(400).collect();
            eprintln!(
                "{what}: caught at seed {seed}: {problem}\n  history: {}\n  replay: {}",
                path.display(),
                replay_command(seed, cfg)
            );
            return seed;
        }
    }
    panic!("{what}: nothing broke in 500 seeds of {cfg}");
}

/// Issue 11, bug 1: a later group's reply leaves before an earlier group of
/// the same disk set (holding the leader's own vote) is durable.
#[test]
fn replies_released_before_the_leaders_vote_is_durable_are_caught() {
    let mut cfg = SimConfig::standard(3, Proposers::Leader, Learn::Leader, Reads::Log);
    cfg.bug = SimBug::EarlyRelease;
    must_break("bug 1: early release across groups of a set", &cfg);
}

/// Issue 11, bug 2: a compaction erases the records produced after it in
/// its own batch.
#[test]
fn compactions_that_erase_later_records_of_their_batch_are_caught() {
    for learn in [Learn::Leader, Learn::All] {
        let mut cfg = SimConfig::standard(3, Proposers::Leader, learn, Reads::Log);
        cfg.bug = SimBug::CompactLate;
        must_break("bug 2: compaction after the rest of its batch", &cfg);
    }
}

/// Issue 11, bug 3: a follower woken from a pause campaigns inside its own
/// lease guard.
#[test]
fn campaigns_inside_the_lease_guard_are_caught() {
    let mut cfg = SimConfig::standard(3, Proposers::Leader, Learn::Leader, Reads::Lease);
    cfg.bug = SimBug::LeaseCampaign;
    must_break("bug 3: campaign inside the lease guard", &cfg);
}

/// Flexible Paxos with quorums that need not intersect (`q1 + q2 <= n`,
/// the node's `--unsafe-quorums`): a leader elected by one promise can miss
/// every vote of a value chosen by two others. Caught both as a broken
/// invariant and by the checker (a read that misses an acknowledged write).
#[test]
fn quorums_that_need_not_intersect_are_caught() {
    let mut cfg = SimConfig::standard(3, Proposers::Leader, Learn::Leader, Reads::Log);
    cfg.q1 = QuorumSize::Nodes(1);
    cfg.q2 = QuorumSize::Nodes(2);
    assert!(cfg.unsafe_quorums());
    cfg.clients = 8;
    only(&mut cfg, "partition");
    must_break("q1=1, q2=2 of 3", &cfg);
    must_catch("q1=1, q2=2 of 3 (checker)", &cfg);
}

/// Two-phase commit (issue 15): a coordinator that answers its client, and
/// announces the commit, before its commit record is durable loses an
/// acknowledged write on a power loss (the restarted coordinator presumes
/// it aborted): a read misses it. Caught by the checker.
#[test]
fn two_phase_commit_answering_before_the_commit_record_is_durable_is_caught() {
    let mut cfg = SimConfig::two_phase_commit(3);
    cfg.bug = SimBug::TpcEarlyCommit;
    only(&mut cfg, "crash+powerloss");
    must_catch("2pc: commit answered before its record is durable", &cfg);
}

/// Two-phase commit (issue 15): a coordinator that commits on a majority
/// of yes votes rather than every participant's breaks unanimity (a
/// participant never voted for what it is told to apply). Caught by the
/// simulation's invariant.
#[test]
fn two_phase_commit_on_a_majority_of_votes_is_caught() {
    let mut cfg = SimConfig::two_phase_commit(3);
    cfg.bug = SimBug::TpcCommitOnMajority;
    must_break("2pc: commit without every participant's vote", &cfg);
}
