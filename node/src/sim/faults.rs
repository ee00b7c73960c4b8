//! The nemesis: partitions (two-way and one-way), crashes and power
//! losses (some at the next fsync), pauses, stalls that test the lease,
//! clock-rate changes, and the heal that ends them all.

use rand::Rng;
use serde_json::{json, Value as Json};

use super::{Event, Sim};
use crate::storage::MemStorage;

impl Sim {
    pub(super) fn nemesis(&mut self) {
        if !self.faulty {
            return;
        }
        let next = self.rng.gen_range(100..400);
        self.schedule(next, Event::Nemesis);
        let n = self.cfg.nodes;
        let mut actions = Vec::new();
        if self.cfg.partitions {
            actions.extend(["partition", "heal"]);
        }
        if self.cfg.one_way {
            actions.extend(["one-way", "heal"]);
        }
        if self.cfg.crashes {
            actions.push("crash");
        }
        if self.cfg.pauses {
            actions.push("pause");
        }
        if self.cfg.pauses && self.cfg.partitions {
            actions.push("stall");
        }
        if self.cfg.clock {
            actions.push("clock");
        }
        if actions.is_empty() {
            return;
        }
        let action = actions[self.rng.gen_range(0..actions.len())];
        let name = |i: usize| format!("n{}", i + 1);
        match action {
            "partition" => {
                self.blocked.clear();
                let mut side: Vec<usize> = (0..n).collect();
                // Isolate one node, or split into a minority and majority.
                let k = if self.rng.gen_bool(0.5) {
                    1
                } else {
                    self.rng.gen_range(1..=n / 2)
                };
                for j in 0..n {
                    let r = self.rng.gen_range(j..n);
                    side.swap(j, r);
                }
                let mut minority: Vec<usize> = side[..k].to_vec();
                // Half the time, isolate the leader (the most telling fault).
                if self.rng.gen_bool(0.5) {
                    if let Some(l) = self.leader() {
                        minority = vec![l];
                    }
                }
                for &a in &minority {
                    for b in 0..n {
                        if !minority.contains(&b) {
                            self.blocked.insert((a, b));
                            self.blocked.insert((b, a));
                        }
                    }
                }
                let names: Vec<String> = minority.iter().map(|&i| name(i)).collect();
                self.nemesis_line("start-partition", json!({ "isolated": names }));
            }
            "one-way" => {
                self.blocked.clear();
                let a = self.rng.gen_range(0..n);
                let deaf = self.rng.gen_bool(0.5);
                let mut cut = Vec::new();
                for b in 0..n {
                    if b != a && self.rng.gen_bool(0.7) {
                        // `a` is not heard by b (or cannot hear b).
                        let link = if deaf { (b, a) } else { (a, b) };
                        self.blocked.insert(link);
                        cut.push(format!("{}->{}", name(link.0), name(link.1)));
                    }
                }
                self.nemesis_line("start-partition", json!({ "one-way": cut }));
            }
            "heal" => {
                if !self.blocked.is_empty() {
                    self.blocked.clear();
                    self.nemesis_line("stop-partition", Json::Null);
                }
            }
            "crash" => {
                let up: Vec<usize> = (0..n)
                    .filter(|&i| self.nodes[i].replica.is_some())
                    .collect();
                if up.is_empty() {
                    return;
                }
                // Half the time the leader; and half the time not at once
                // but at the node's next fsync, once its disk thread has
                // taken a set and before the sync returns: released
                // outputs whose records are not yet durable are where
                // durability bugs hide.
                let i = match self.leader() {
                    Some(l) if self.rng.gen_bool(0.5) => l,
                    _ => up[self.rng.gen_range(0..up.len())],
                };
                let power = self.cfg.power_loss && self.rng.gen_bool(0.5);
                if self.rng.gen_bool(0.5) {
                    self.nodes[i].crash_at_fsync = Some(power);
                } else {
                    self.crash_now(i, power);
                }
            }
            "pause" => {
                let up: Vec<usize> = (0..n).filter(|&i| self.running(i)).collect();
                if up.is_empty() {
                    return;
                }
                let i = up[self.rng.gen_range(0..up.len())];
                let d = self.rng.gen_range(20..400);
                self.nodes[i].paused_until = self.now + d;
                self.nemesis_line("start-pause", json!({"node": name(i)}));
                self.schedule(d, Event::Resume(i));
            }
            "stall" => {
                // A follower stalls while the leader is cut from the other
                // followers, and the leader is cut off entirely soon after
                // the follower resumes: it wakes to stale heartbeats with a
                // stale clock, acks them (renewing the leader's lease), and
                // its lease guard must hold from then on.
                let Some(l) = self.leader() else { return };
                let followers: Vec<usize> = (0..n).filter(|&i| i != l && self.running(i)).collect();
                if followers.len() < 2 {
                    return;
                }
                let f = followers[self.rng.gen_range(0..followers.len())];
                self.blocked.clear();
                for &b in followers.iter().filter(|&&b| b != f) {
                    self.blocked.insert((l, b));
                    self.blocked.insert((b, l));
                }
                // Shorter than an election timeout, so the leader keeps
                // its majority (and its lease) through the stall.
                let t = Self::node_config(&self.cfg, 0).election_timeout_ms;
                let d = self.rng.gen_range(t / 2..t - 10);
                self.nodes[f].paused_until = self.now + d;
                let cut: Vec<String> = followers
                    .iter()
                    .filter(|&&b| b != f)
                    .map(|&b| format!("{}<->{}", name(l), name(b)))
                    .collect();
                self.nemesis_line("start-partition", json!({ "cut": cut }));
                self.nemesis_line("start-pause", json!({"node": name(f)}));
                // As the follower resumes the leader stops reaching it, and
                // a moment later (its acks of the queued heartbeats renew
                // the leader's lease) the leader is cut off entirely.
                self.schedule(d, Event::Cut(l, f));
                self.schedule(d, Event::Resume(f));
                let after = d + self.rng.gen_range(10..=30);
                self.schedule(after, Event::Isolate(l));
            }
            "clock" => {
                // A node's clock changes pace (continuously: no jumps).
                let i = self.rng.gen_range(0..n);
                let local = self.clock(i);
                let rate = self.draw_rate();
                let node = &mut self.nodes[i];
                node.base_local = local;
                node.base_real = self.now;
                node.rate = rate;
                self.nemesis_line("clock-rate", json!({"node": name(i), "rate": rate}));
            }
            other => unreachable!("unknown nemesis action {other}"),
        }
    }

    /// Draws a clock rate log-uniformly in `[1/(1+skew), 1+skew]`.
    pub(super) fn draw_rate(&mut self) -> f64 {
        if self.cfg.skew > 0.0 {
            (1.0 + self.cfg.skew).powf(self.rng.gen_range(-1.0..=1.0))
        } else {
            1.0
        }
    }

    /// The nemesis crashes node `i` now, and restarts it a little later.
    pub(super) fn crash_now(&mut self, i: usize, power: bool) {
        self.crash(i, power);
        let lost = self.requests.keys().filter(|(node, _)| *node == i).count();
        self.nemesis_line(
            "start-crash",
            json!({"node": format!("n{}", i + 1), "power-loss": power, "requests-lost": lost}),
        );
        let back = self.rng.gen_range(20..400);
        self.schedule(back, Event::Restart(i));
    }

    /// Kills node `i` (a power loss too, if `power`): its replica task's
    /// queue, the groups its disk thread had not taken and everything it
    /// held in memory are gone, and so is what its disk had not synced.
    pub(super) fn crash(&mut self, i: usize, power: bool) {
        let node = &mut self.nodes[i];
        node.replica = None;
        node.paused_until = 0;
        node.crash_at_fsync = None;
        node.inputs.clear();
        node.run_scheduled = false;
        node.beliefs.clear();
        node.tpc_commits.clear();
        node.applied_states.clear();
        node.disk_queue.clear();
        node.disk_busy = false;
        node.lazy_scheduled = false;
        let fresh = Self::pipeline(&self.cfg, MemStorage::new(self.cfg.fsync));
        let mut disk = std::mem::replace(&mut node.pipeline, fresh).into_storage();
        disk.kill();
        if power {
            disk.power_loss();
        }
        node.pipeline = Self::pipeline(&self.cfg, disk);
        self.stats.crashes += 1;
        self.check_survivors(i);
    }

    /// The running node that believes it leads with the highest ballot.
    pub(super) fn leader(&self) -> Option<usize> {
        (0..self.cfg.nodes)
            .filter_map(|i| {
                let r = self.nodes[i].replica.as_ref()?;
                r.is_leader().then(|| (r.promised(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Ends every fault: links healed, nodes restarted and resumed, the
    /// network reliable (still delaying).
    pub(super) fn heal(&mut self) {
        self.faulty = false;
        self.healed_at = Some(self.now);
        if !self.blocked.is_empty() {
            self.blocked.clear();
            self.nemesis_line("stop-partition", Json::Null);
        }
        for i in 0..self.cfg.nodes {
            if self.nodes[i].paused_until > self.now {
                self.nodes[i].paused_until = 0;
                self.nemesis_line("stop-pause", json!({"node": format!("n{}", i + 1)}));
            }
            if self.nodes[i].replica.is_none() {
                self.start_node(i);
                self.nemesis_line("stop-crash", json!({"node": format!("n{}", i + 1)}));
            }
        }
    }
}
