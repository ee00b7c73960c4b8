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

/// `partition:chained` (OmniPaxos's name): the link between the leader
/// and one follower is cut, and the third node hears both. The follower
/// that cannot hear the leader must not take over through the middle
/// node, and the leader must keep choosing through it: one leader, one
/// ballot, for the whole cut. (Without the leader guard for every read
/// mode, the leadership ping-ponged every election timeout.)
#[test]
fn a_cut_link_between_the_leader_and_a_follower_keeps_one_leader() {
    use std::collections::BTreeSet;
    use synod_node::durability::PipelineBugs;
    use synod_node::sim::script::{Pick, Script, Wire};
    use synod_node::{KvOp, RequestOutcome, Value};

    for reads in [Reads::Log, Reads::Lease] {
        let mut s = Script::new(3, |c| c.reads = reads, PipelineBugs::default());
        s.advance(3_000, |_| Pick::Deliver);
        let leader = s.leader().expect("a leader within 3 s");
        let cut_off = if leader == 1 { 2 } else { 1 };
        let middle = 6 - leader - cut_off;
        // The cut-off follower's campaigns, counted as they reach the
        // middle node.
        let prepares = std::cell::Cell::new(0);
        let chained = |w: &Wire| {
            if (w.0, w.1) == (leader, cut_off) || (w.0, w.1) == (cut_off, leader) {
                return Pick::Drop;
            }
            if (w.0, w.1) == (cut_off, middle) && w.2.kind() == "prepare" {
                prepares.set(prepares.get() + 1);
            }
            Pick::Deliver
        };
        let mut leaders = BTreeSet::new();
        let mut writes = Vec::new();
        // 30 election timeouts of 300 ms.
        for step in 1..=180 {
            s.advance(3_000 + step * 50, &chained);
            if let Some(l) = s.leader() {
                leaders.insert((l, s.replica(l).leader_ballot()));
            }
            if step % 10 == 0 {
                let value = Value::Int(step as i64);
                writes.push(s.client(
                    leader,
                    KvOp::Write {
                        key: "x".into(),
                        value,
                    },
                ));
            }
        }
        s.advance(3_000 + 9_500, &chained);
        assert!(
            prepares.get() > 0,
            "{reads:?}: the cut-off node never tried to take over"
        );
        assert_eq!(
            leaders.len(),
            1,
            "{reads:?}: leadership changed under one cut link: {leaders:?}"
        );
        let ok = writes
            .iter()
            .filter(|&&rid| matches!(s.reply(leader, rid), Some(RequestOutcome::Ok { .. })))
            .count();
        assert_eq!(ok, writes.len(), "{reads:?}: the leader stopped choosing");
    }
}
