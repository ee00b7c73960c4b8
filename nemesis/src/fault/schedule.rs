//! The draw: a [`Step`] or a [`FaultSpec`] made into faults in force,
//! their targets taken from the schedule's seeded generator, so the same
//! seed draws the same faults. Each fault carries its [`Effect`] and the
//! targets the history records.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::spec::{
    ClockShape, FaultKind, FaultSpec, KillShape, PartitionShape, PowerLossShape, Shape, Step,
};
use super::{Effect, Fault, Motion, Skew, FLAP_MS};
use crate::backend::{Delay, Link, NodeName};

/// The clock shape that slows the leader, as a spec names it.
const SLOW_LEADER: Shape = Shape::Clock(ClockShape::SlowLeader);

impl Step {
    /// Draws this step's faults over `nodes`, all against the same
    /// `leader` (the node that says it leads, if any); `skewed` says a
    /// clock skew is already in force. Faults started together aim at one
    /// node even when none leads (`clock:slow-leader+partition:isolate-leader`
    /// cuts off the node whose clock it slows), and under a clock skew (in
    /// force, or in this step) a partition of no named shape cuts off the
    /// leader: the one case where a lease that trusts the clock goes wrong.
    pub fn draw<R: Rng>(
        &self,
        nodes: &[NodeName],
        mut leader: Option<NodeName>,
        skewed: bool,
        rng: &mut R,
    ) -> Vec<Fault> {
        if leader.is_none() && self.faults().len() > 1 {
            leader = nodes.choose(rng).copied();
        }
        let skewed = skewed || self.has(FaultKind::Clock);
        self.faults()
            .iter()
            .map(|&spec| match leader {
                Some(l)
                    if spec.kind == FaultKind::Partition
                        && spec.shape.is_none()
                        && skewed
                        && nodes.len() > 2 =>
                {
                    isolate(l, nodes, PartitionShape::IsolateLeader)
                }
                _ => Fault::generate_spec(spec, nodes, leader, rng),
            })
            .collect()
    }
}

fn names(nodes: &BTreeSet<NodeName>) -> Vec<String> {
    nodes.iter().map(NodeName::to_string).collect()
}

/// Every directed link between `a` and `b`, both ways.
fn between(a: &BTreeSet<NodeName>, b: &BTreeSet<NodeName>) -> BTreeSet<Link> {
    let mut links = BTreeSet::new();
    for &x in a {
        for &y in b {
            if x != y {
                links.insert(Link { from: x, to: y });
                links.insert(Link { from: y, to: x });
            }
        }
    }
    links
}

/// At most a minority, at least one.
fn minority(n: usize) -> usize {
    ((n.saturating_sub(1)) / 2).max(1)
}

impl Fault {
    /// Draws a fault of `kind` over `nodes`, of any shape, targets from
    /// `rng`; `leader` is the node that says it leads, if any (a favourite
    /// target).
    pub fn generate<R: Rng>(
        kind: FaultKind,
        nodes: &[NodeName],
        leader: Option<NodeName>,
        rng: &mut R,
    ) -> Fault {
        Fault::generate_spec(FaultSpec::any(kind), nodes, leader, rng)
    }

    /// Draws a fault as `spec` asks: of its shape if it names one (a shape
    /// aimed at the leader falls back to a random node when none leads),
    /// else as [`Fault::generate`] does, drawing the same from the same
    /// `rng`.
    pub fn generate_spec<R: Rng>(
        spec: FaultSpec,
        nodes: &[NodeName],
        leader: Option<NodeName>,
        rng: &mut R,
    ) -> Fault {
        let kind = spec.kind;
        let all: BTreeSet<NodeName> = nodes.iter().copied().collect();
        let mut shuffled = nodes.to_vec();
        shuffled.shuffle(rng);
        let random_one = shuffled.first().copied().unwrap_or(NodeName(1));
        // Half the time aim at the leader: that is where faults hurt. The
        // coin is tossed whether or not a leader is known, so a draw takes
        // as much randomness either way and the steps a seed draws next do
        // not depend on when a leader happened to be known.
        let coin = rng.gen_bool(0.5);
        let one = match leader {
            Some(l) if coin => l,
            _ => random_one,
        };
        let pick_some = |rng: &mut R| -> BTreeSet<NodeName> {
            let k = rng.gen_range(1..=minority(nodes.len()));
            let mut set: BTreeSet<NodeName> = shuffled.iter().copied().take(k).collect();
            if k == 1 {
                set = BTreeSet::from([one]);
            }
            set
        };
        match kind {
            FaultKind::Partition => {
                let shape = match spec.shape {
                    Some(Shape::Partition(shape)) => Some(shape),
                    _ => None,
                };
                partition(nodes, &shuffled, leader, shape, rng)
            }
            FaultKind::OneWay => {
                let x = BTreeSet::from([one]);
                let rest: BTreeSet<NodeName> = all.difference(&x).copied().collect();
                let mute = rng.gen_bool(0.5);
                let mut blocked = BTreeSet::new();
                for &o in &rest {
                    blocked.insert(if mute {
                        Link { from: one, to: o }
                    } else {
                        Link { from: o, to: one }
                    });
                }
                let (from, to) = if mute { (x, rest) } else { (rest, x) };
                Fault {
                    kind,
                    value: json!({"shape": "one-way", "from": names(&from), "to": names(&to)}),
                    effect: Effect::Blocked(blocked),
                    motion: None,
                }
            }
            FaultKind::Pause => {
                let set = pick_some(rng);
                Fault {
                    kind,
                    value: json!({"paused": names(&set)}),
                    effect: Effect::Paused(set),
                    motion: None,
                }
            }
            FaultKind::Kill | FaultKind::PowerLoss => {
                let power_loss = kind == FaultKind::PowerLoss;
                // Losing unsynced writes on a minority loses nothing a
                // majority acknowledged; only a power loss of (nearly)
                // every node at once shows what `--fsync never` costs. So
                // half the power losses take the whole cluster down.
                let set = match spec.shape {
                    Some(Shape::PowerLoss(PowerLossShape::All)) => all.clone(),
                    Some(Shape::Kill(KillShape::Leader)) => {
                        BTreeSet::from([leader.unwrap_or(random_one)])
                    }
                    Some(Shape::Kill(KillShape::Follower)) => {
                        BTreeSet::from([follower(&shuffled, leader)])
                    }
                    Some(_) => pick_some(rng),
                    None if power_loss && rng.gen_bool(0.5) => all.clone(),
                    None => pick_some(rng),
                };
                let mut value = if power_loss {
                    json!({"crashed": names(&set), "lose_unsynced": true})
                } else {
                    json!({"killed": names(&set)})
                };
                if let (Some(Shape::Kill(shape)), Value::Object(m)) = (spec.shape, &mut value) {
                    // Who led when the target was drawn: a `kill:leader`
                    // with nobody leading kills a random node, and says so.
                    m.insert("shape".into(), json!(shape.name()));
                    m.insert("leader".into(), json!(leader.map(|l| l.to_string())));
                }
                Fault {
                    kind,
                    value,
                    effect: Effect::Down {
                        nodes: set,
                        power_loss,
                    },
                    motion: None,
                }
            }
            FaultKind::Clock => {
                let mut skews = BTreeMap::new();
                let mut value = serde_json::Map::new();
                // Half the time (always with `slow-leader`) the worst case
                // for leases: the leader's clock runs slow (its lease seems
                // to last longer) while the others' run fast (they stop
                // deferring to it sooner).
                let slow_leader = match spec.shape {
                    Some(SLOW_LEADER) => Some(leader.unwrap_or(random_one)),
                    Some(_) => None,
                    None => {
                        // Tossed either way, as above.
                        let coin = rng.gen_bool(0.5);
                        leader.filter(|_| coin)
                    }
                };
                for &n in nodes {
                    // Rates far beyond any lease drift bound, so lease
                    // reads that trust the clock get caught: a slow leader
                    // at a quarter speed holds a 250 ms lease for about a
                    // second of real time, while followers at 2-3x speed
                    // elect a successor within a few hundred ms. Clocks up
                    // to 10x apart, as in the node's simulation.
                    let rate = match slow_leader {
                        Some(l) if l == n => rng.gen_range(0.2..0.35f64),
                        Some(_) => rng.gen_range(2.0..3.0f64),
                        None => rng.gen_range(0.3..3.0f64),
                    };
                    let skew = Skew {
                        // `slow-leader` is drift alone, no steps: the
                        // rates by themselves break the lease bound.
                        offset_ms: if spec.shape == Some(SLOW_LEADER) {
                            0
                        } else {
                            rng.gen_range(-5000..=5000)
                        },
                        rate: (rate * 1000.0).round() / 1000.0,
                    };
                    value.insert(
                        n.to_string(),
                        json!({"offset_ms": skew.offset_ms, "rate": skew.rate}),
                    );
                    skews.insert(n, skew);
                }
                Fault {
                    kind,
                    value: Value::Object(value),
                    effect: Effect::Clock(skews),
                    motion: None,
                }
            }
            FaultKind::Delay => {
                let base = rng.gen_range(20..=250u64);
                let jitter = base / 2;
                Fault {
                    kind,
                    value: json!({"links": "all", "base_ms": base, "jitter_ms": jitter}),
                    effect: Effect::Slow(
                        between(&all, &all),
                        Delay {
                            base: Duration::from_millis(base),
                            jitter: Duration::from_millis(jitter),
                        },
                    ),
                    motion: None,
                }
            }
            FaultKind::Flap => {
                // The leader's link to a follower, where a leader is known:
                // the link whose loss costs something.
                let a = leader.unwrap_or(random_one);
                let b = follower(&shuffled, Some(a));
                let links = between(&BTreeSet::from([a]), &BTreeSet::from([b]));
                let flap_rng = Box::new(ChaCha8Rng::seed_from_u64(rng.gen()));
                Fault {
                    kind,
                    value: json!({
                        "link": [a.to_string(), b.to_string()],
                        "leader": leader.map(|l| l.to_string()),
                        "period_ms": [FLAP_MS.0, FLAP_MS.1],
                        "cut": true,
                    }),
                    effect: Effect::Blocked(links.clone()),
                    motion: Some(Motion::Flap {
                        links,
                        cut: true,
                        rng: flap_rng,
                    }),
                }
            }
            FaultKind::Reset => {
                let x = BTreeSet::from([one]);
                let rest: BTreeSet<NodeName> = all.difference(&x).copied().collect();
                Fault {
                    kind,
                    value: json!({"reset": names(&x)}),
                    effect: Effect::Reset(between(&x, &rest)),
                    motion: None,
                }
            }
        }
    }
}

/// The first node of `shuffled` that is not `leader` (the first node if
/// there is no other).
fn follower(shuffled: &[NodeName], leader: Option<NodeName>) -> NodeName {
    shuffled
        .iter()
        .copied()
        .find(|&n| Some(n) != leader)
        .or(shuffled.first().copied())
        .unwrap_or(NodeName(1))
}

/// Who each node hears when `blocked` is cut: node -> the nodes (itself
/// included) whose traffic reaches it, as the history's `components` for
/// shapes that are not a split into groups.
pub fn views(nodes: &[NodeName], blocked: &BTreeSet<Link>) -> Value {
    let mut views = serde_json::Map::new();
    for &x in nodes {
        let hears: Vec<String> = nodes
            .iter()
            .filter(|&&y| y == x || !blocked.contains(&Link { from: y, to: x }))
            .map(NodeName::to_string)
            .collect();
        views.insert(x.to_string(), json!(hears));
    }
    Value::Object(views)
}

/// The node pairs with a link cut (either way), each pair once, lower
/// first: what the history's `cut` lists.
fn cut_pairs(blocked: &BTreeSet<Link>) -> Value {
    let pairs: BTreeSet<(NodeName, NodeName)> = blocked
        .iter()
        .map(|l| (l.from.min(l.to), l.from.max(l.to)))
        .collect();
    json!(pairs
        .into_iter()
        .map(|(a, b)| [a.to_string(), b.to_string()])
        .collect::<Vec<_>>())
}

/// The partial-connectivity shapes of the OmniPaxos paper (Ng et al.,
/// EuroSys 2023), drawn around `leader` (a random node if none leads)
/// with `other` a follower chosen at random: the links each cuts, and
/// what the history records. Sizes are checked before a run
/// ([`FaultSpec::check_nodes`]); drawn over too few nodes a shape cuts
/// nothing and says why.
pub fn partial(
    shape: PartitionShape,
    nodes: &[NodeName],
    leader: NodeName,
    other: NodeName,
    leader_reported: bool,
) -> Fault {
    let all: BTreeSet<NodeName> = nodes.iter().copied().collect();
    let l = BTreeSet::from([leader]);
    let o = BTreeSet::from([other]);
    let spec = FaultSpec {
        kind: FaultKind::Partition,
        shape: Some(Shape::Partition(shape)),
    };
    let mut value = json!({
        "shape": shape.name(),
        "leader": leader.to_string(),
        "leader_reported": leader_reported,
    });
    let fault = |effect, value, motion| Fault {
        kind: FaultKind::Partition,
        effect,
        value,
        motion,
    };
    if let Err(e) = spec.check_nodes(nodes.len()) {
        value["error"] = json!(e.to_string());
        return fault(Effect::Blocked(BTreeSet::new()), value, None);
    }
    // Everyone but the leader and the chosen follower.
    let rest: BTreeSet<NodeName> = all
        .difference(&l)
        .filter(|&&n| n != other)
        .copied()
        .collect();
    match shape {
        PartitionShape::QuorumLoss => {
            // The leader keeps only its link to the hub, who reaches
            // everyone; every other node reaches all but the leader.
            let blocked = between(&l, &rest);
            value["hub"] = json!(other.to_string());
            value["cut"] = cut_pairs(&blocked);
            value["components"] = views(nodes, &blocked);
            fault(Effect::Blocked(blocked), value, None)
        }
        PartitionShape::Chained => {
            let blocked = between(&l, &o);
            value["cut"] = cut_pairs(&blocked);
            value["components"] = views(nodes, &blocked);
            fault(Effect::Blocked(blocked), value, None)
        }
        PartitionShape::Constrained => {
            // First the follower is cut off and falls behind; then the
            // leader is cut off, and the others keep only their links to
            // that follower, the one node that reaches a quorum.
            let prepare = between(&o, &all);
            let mut then = between(&l, &all);
            for &x in &rest {
                for &y in &rest {
                    if x != y {
                        then.insert(Link { from: x, to: y });
                    }
                }
            }
            let not_o: BTreeSet<NodeName> = all.difference(&o).copied().collect();
            let mut change = value.clone();
            change["phase"] = json!("constrained");
            change["behind"] = json!(other.to_string());
            change["cut"] = cut_pairs(&then);
            change["components"] = views(nodes, &then);
            value["phase"] = json!("prepare");
            value["behind"] = json!(other.to_string());
            value["components"] = json!([names(&o), names(&not_o)]);
            value["then"] = json!({"cut": change["cut"], "components": change["components"]});
            fault(
                Effect::Blocked(prepare),
                value,
                Some(Motion::Then {
                    then: Effect::Blocked(then),
                    value: change,
                }),
            )
        }
        _ => isolate(leader, nodes, PartitionShape::IsolateLeader),
    }
}

/// Cuts `x` off from every other node.
pub fn isolate(x: NodeName, nodes: &[NodeName], shape: PartitionShape) -> Fault {
    let all: BTreeSet<NodeName> = nodes.iter().copied().collect();
    let xs = BTreeSet::from([x]);
    let rest: BTreeSet<NodeName> = all.difference(&xs).copied().collect();
    Fault {
        kind: FaultKind::Partition,
        value: json!({"shape": shape.name(), "components": [names(&xs), names(&rest)]}),
        effect: Effect::Blocked(between(&xs, &rest)),
        motion: None,
    }
}

/// A partition of one of the classic shapes: `shape` if given, else one
/// drawn from those that make sense for this cluster.
fn partition<R: Rng>(
    nodes: &[NodeName],
    shuffled: &[NodeName],
    leader: Option<NodeName>,
    shape: Option<PartitionShape>,
    rng: &mut R,
) -> Fault {
    let n = nodes.len();
    let all: BTreeSet<NodeName> = nodes.iter().copied().collect();
    if let Some(
        s @ (PartitionShape::QuorumLoss | PartitionShape::Constrained | PartitionShape::Chained),
    ) = shape
    {
        let l = leader.unwrap_or(shuffled[0]);
        return partial(s, nodes, l, follower(shuffled, Some(l)), leader.is_some());
    }
    let shape = shape.unwrap_or_else(|| {
        let mut shapes = vec![PartitionShape::IsolateOne, PartitionShape::Halves];
        if leader.is_some() {
            shapes.push(PartitionShape::IsolateLeader);
        }
        if n >= 3 {
            shapes.push(PartitionShape::MajoritiesRing);
            shapes.push(PartitionShape::Bridge);
        }
        *shapes.choose(rng).unwrap_or(&PartitionShape::IsolateOne)
    });
    let isolate = |x: NodeName| -> (BTreeSet<Link>, Value) {
        let xs = BTreeSet::from([x]);
        let rest: BTreeSet<NodeName> = all.difference(&xs).copied().collect();
        (between(&xs, &rest), json!([names(&xs), names(&rest)]))
    };
    let (blocked, components) = match shape {
        PartitionShape::IsolateLeader => isolate(leader.unwrap_or(shuffled[0])),
        PartitionShape::Halves => {
            let a: BTreeSet<NodeName> = shuffled[..n / 2].iter().copied().collect();
            let b: BTreeSet<NodeName> = shuffled[n / 2..].iter().copied().collect();
            (between(&a, &b), json!([names(&a), names(&b)]))
        }
        PartitionShape::MajoritiesRing => {
            // Every node hears a majority, centred on itself in a random
            // ring, so no two nodes hear the same majority.
            let m = n / 2 + 1;
            let mut blocked = BTreeSet::new();
            let mut views = serde_json::Map::new();
            for (i, &x) in shuffled.iter().enumerate() {
                let back = (m - 1) / 2;
                let visible: BTreeSet<NodeName> =
                    (0..m).map(|k| shuffled[(i + n - back + k) % n]).collect();
                for &y in nodes {
                    if !visible.contains(&y) {
                        // x drops what y sends it.
                        blocked.insert(Link { from: y, to: x });
                    }
                }
                views.insert(x.to_string(), json!(names(&visible)));
            }
            (blocked, Value::Object(views))
        }
        PartitionShape::Bridge => {
            // Two halves that only the bridge node connects.
            let bridge = shuffled[0];
            let rest = &shuffled[1..];
            let a: BTreeSet<NodeName> = rest[..rest.len() / 2].iter().copied().collect();
            let b: BTreeSet<NodeName> = rest[rest.len() / 2..].iter().copied().collect();
            (
                between(&a, &b),
                json!({"bridge": bridge.to_string(), "sides": [names(&a), names(&b)]}),
            )
        }
        PartitionShape::IsolateOne => isolate(shuffled[0]),
        PartitionShape::QuorumLoss | PartitionShape::Constrained | PartitionShape::Chained => {
            unreachable!("drawn by `partial` above")
        }
    };
    Fault {
        kind: FaultKind::Partition,
        value: json!({"shape": shape.name(), "components": components}),
        effect: Effect::Blocked(blocked),
        motion: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn nodes(n: u32) -> Vec<NodeName> {
        (1..=n).map(NodeName).collect()
    }

    #[test]
    fn a_named_partition_shape_is_the_shape_drawn() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for &shape in PartitionShape::ALL {
            for n in 1..=5 {
                let spec = FaultSpec {
                    kind: FaultKind::Partition,
                    shape: Some(Shape::Partition(shape)),
                };
                let f = Fault::generate_spec(spec, &nodes(n), Some(NodeName(n)), &mut rng);
                assert_eq!(f.value["shape"], shape.name(), "{n} nodes");
            }
        }
        let spec = "partition:isolate-leader".parse().unwrap();
        let f = Fault::generate_spec(spec, &nodes(5), Some(NodeName(4)), &mut rng);
        assert_eq!(f.value["components"][0], json!(["n4"]));
    }

    fn rates(f: &Fault) -> BTreeMap<NodeName, Skew> {
        let Effect::Clock(skews) = &f.effect else {
            panic!("not a clock fault: {f:?}")
        };
        skews.clone()
    }

    #[test]
    fn slow_leader_slows_the_leader_and_speeds_every_other_node_without_steps() {
        let spec: FaultSpec = "clock:slow-leader".parse().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for leader in [Some(NodeName(2)), None] {
            for _ in 0..20 {
                let f = Fault::generate_spec(spec, &nodes(3), leader, &mut rng);
                let skews = rates(&f);
                let slow: Vec<NodeName> = skews
                    .iter()
                    .filter(|(_, s)| s.rate < 1.0)
                    .map(|(n, _)| *n)
                    .collect();
                assert_eq!(slow.len(), 1, "{skews:?}");
                if let Some(l) = leader {
                    assert_eq!(slow, [l]);
                }
                for (n, s) in &skews {
                    assert_eq!(s.offset_ms, 0);
                    if slow.contains(n) {
                        assert!((0.2..=0.35).contains(&s.rate), "{s:?}");
                    } else {
                        assert!((2.0..=3.0).contains(&s.rate), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_single_fault_takes_as_much_randomness_with_or_without_a_leader() {
        // Otherwise the steps a seed draws after one drawn while no leader
        // was known (an election at that moment) would differ from run to
        // run, and `--seed` would not replay a schedule. (An unshaped
        // partition still differs: with a leader, isolate-leader is one
        // more shape to draw from, and each shape draws what it needs.)
        for spec in [
            "partition:chained",
            "one-way",
            "pause",
            "kill",
            "kill:leader",
            "power-loss",
            "clock",
            "delay",
            "flap",
            "reset",
        ] {
            let step: Step = spec.parse().unwrap();
            let after = |leader: Option<NodeName>| {
                let mut rng = ChaCha8Rng::seed_from_u64(23);
                step.draw(&nodes(3), leader, false, &mut rng);
                rng.gen::<u64>()
            };
            assert_eq!(after(Some(NodeName(2))), after(None), "{spec}");
        }
    }

    #[test]
    fn faults_started_together_aim_at_the_same_node() {
        let step: Step = "clock:slow-leader+partition:isolate-leader"
            .parse()
            .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let mut isolated_nodes = BTreeSet::new();
        for leader in [Some(NodeName(3)), None, None, None, None, None, None, None] {
            let faults = step.draw(&nodes(3), leader, false, &mut rng);
            assert_eq!(faults.len(), 2);
            let isolated = &faults[0].value["components"][0];
            let slow: Vec<String> = rates(&faults[1])
                .into_iter()
                .filter(|(_, s)| s.rate < 1.0)
                .map(|(n, _)| n.to_string())
                .collect();
            assert_eq!(*isolated, json!(slow), "the slow clock is the cut-off one");
            if leader.is_some() {
                assert_eq!(*isolated, json!(["n3"]));
            }
            isolated_nodes.insert(isolated.to_string());
        }
        assert!(
            isolated_nodes.len() > 1,
            "no leader: a random node each time"
        );
    }

    #[test]
    fn under_a_skew_an_unshaped_partition_cuts_off_the_leader() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let partition = Step::one(FaultSpec::any(FaultKind::Partition));
        let with_clock: Step = "clock+partition".parse().unwrap();
        for _ in 0..20 {
            let f = &partition.draw(&nodes(5), Some(NodeName(2)), true, &mut rng)[0];
            assert_eq!(f.value["shape"], "isolate-leader");
            assert_eq!(f.value["components"][0], json!(["n2"]));
            let f = &with_clock.draw(&nodes(5), Some(NodeName(2)), false, &mut rng)[0];
            assert_eq!(f.value["components"][0], json!(["n2"]));
        }
        // A named shape wins over that preference.
        let halves: Step = "partition:halves".parse().unwrap();
        let f = &halves.draw(&nodes(5), Some(NodeName(2)), true, &mut rng)[0];
        assert_eq!(f.value["shape"], "halves");
    }

    #[test]
    fn same_seed_same_faults() {
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20)
                .map(|i| {
                    Fault::generate(
                        FaultKind::ALL[i % 8],
                        &nodes(5),
                        Some(NodeName(2)),
                        &mut rng,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn majorities_ring_gives_every_node_a_different_majority() {
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let f = loop {
                let f = partition(
                    &nodes(5),
                    &{
                        let mut s = nodes(5);
                        s.shuffle(&mut rng);
                        s
                    },
                    None,
                    None,
                    &mut rng,
                );
                if f.value["shape"] == "majorities-ring" {
                    break f;
                }
            };
            let Effect::Blocked(blocked) = &f.effect else {
                panic!("not a partition")
            };
            let mut views = BTreeSet::new();
            for x in nodes(5) {
                let hears: BTreeSet<NodeName> = nodes(5)
                    .into_iter()
                    .filter(|&y| !blocked.contains(&Link { from: y, to: x }))
                    .collect();
                assert_eq!(hears.len(), 3, "node {x} hears a majority of 5");
                assert!(hears.contains(&x));
                views.insert(hears);
            }
            assert_eq!(views.len(), 5, "no two nodes hear the same majority");
        }
    }

    fn blocked(f: &Fault) -> BTreeSet<Link> {
        let Effect::Blocked(b) = &f.effect else {
            panic!("not a network cut: {f:?}")
        };
        b.clone()
    }

    /// Who `x` hears (itself included) with `cut` in force.
    fn hears(n: u32, cut: &BTreeSet<Link>, x: NodeName) -> BTreeSet<NodeName> {
        nodes(n)
            .into_iter()
            .filter(|&y| y == x || !cut.contains(&Link { from: y, to: x }))
            .collect()
    }

    /// The nodes that hear, and are heard by, a majority (themselves
    /// included): the ones that could lead.
    fn quorum_connected(n: u32, cut: &BTreeSet<Link>) -> BTreeSet<NodeName> {
        let majority = n as usize / 2 + 1;
        nodes(n)
            .into_iter()
            .filter(|&x| {
                let both: BTreeSet<NodeName> = hears(n, cut, x)
                    .into_iter()
                    .filter(|&y| y == x || !cut.contains(&Link { from: x, to: y }))
                    .collect();
                both.len() >= majority
            })
            .collect()
    }

    /// Every cut of these shapes is both ways.
    fn symmetric(cut: &BTreeSet<Link>) {
        for l in cut {
            assert!(
                cut.contains(&Link {
                    from: l.to,
                    to: l.from
                }),
                "{l:?}"
            );
        }
    }

    fn shaped(spec: &str, n: u32, leader: Option<NodeName>, seed: u64) -> Fault {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Fault::generate_spec(spec.parse().unwrap(), &nodes(n), leader, &mut rng)
    }

    #[test]
    fn quorum_loss_leaves_the_leader_without_a_quorum_while_the_hub_still_hears_it() {
        for (n, seed) in [(5, 1), (5, 2), (5, 3), (4, 4), (7, 5)] {
            let l = NodeName(2);
            let f = shaped("partition:quorum-loss", n, Some(l), seed);
            let cut = blocked(&f);
            symmetric(&cut);
            let hub = NodeName(f.value["hub"].as_str().unwrap()[1..].parse().unwrap());
            assert_ne!(hub, l);
            assert_eq!(f.value["leader"], "n2");
            assert_eq!(f.value["shape"], "quorum-loss");
            // Exactly the leader's links to everyone but the hub.
            let others: BTreeSet<NodeName> = nodes(n)
                .into_iter()
                .filter(|&x| x != l && x != hub)
                .collect();
            assert_eq!(cut, between(&BTreeSet::from([l]), &others), "{n} nodes");
            assert_eq!(hears(n, &cut, l), BTreeSet::from([l, hub]));
            assert!(hears(n, &cut, l).len() < n as usize / 2 + 1, "no quorum");
            // The hub hears the leader, and everyone.
            assert_eq!(hears(n, &cut, hub).len(), n as usize);
            // Every node but the leader hears every node but the leader.
            for x in nodes(n).into_iter().filter(|&x| x != l) {
                assert!(hears(n, &cut, x).len() >= n as usize - 1);
            }
            assert!(!quorum_connected(n, &cut).contains(&l));
            assert_eq!(
                f.value["components"]["n2"],
                json!(names(&BTreeSet::from([l, hub])))
            );
            assert_eq!(f.value["cut"].as_array().unwrap().len(), n as usize - 2);
        }
    }

    #[test]
    fn chained_cuts_exactly_one_link_that_a_third_node_bridges() {
        for (n, seed) in [(3, 1), (3, 2), (5, 3)] {
            let l = NodeName(1);
            let f = shaped("partition:chained", n, Some(l), seed);
            let cut = blocked(&f);
            symmetric(&cut);
            assert_eq!(cut.len(), 2, "one link, both ways");
            assert_eq!(f.value["cut"].as_array().unwrap().len(), 1);
            let b = cut.iter().map(|k| k.to).find(|&x| x != l).unwrap();
            assert!(cut.contains(&Link { from: l, to: b }));
            // Every other node reaches both ends.
            for x in nodes(n).into_iter().filter(|&x| x != l && x != b) {
                assert_eq!(hears(n, &cut, x).len(), n as usize);
            }
            // With three nodes: l - a - b, a chain.
            if n == 3 {
                assert_eq!(hears(3, &cut, l).len(), 2);
                assert_eq!(hears(3, &cut, b).len(), 2);
            }
        }
        // No leader known: a random node plays it, and the history says so.
        let f = shaped("partition:chained", 3, None, 9);
        assert_eq!(f.value["leader_reported"], false);
        assert_eq!(blocked(&f).len(), 2);
    }

    #[test]
    fn constrained_leaves_only_the_follower_behind_connected_to_a_quorum() {
        for (n, seed) in [(5, 1), (5, 2), (5, 7), (4, 3)] {
            let l = NodeName(3);
            let mut f = shaped("partition:constrained", n, Some(l), seed);
            let behind = NodeName(f.value["behind"].as_str().unwrap()[1..].parse().unwrap());
            assert_ne!(behind, l);
            // First the follower is cut off from everyone, so it falls
            // behind while the leader goes on with the rest.
            let prepare = blocked(&f);
            symmetric(&prepare);
            assert_eq!(hears(n, &prepare, behind), BTreeSet::from([behind]));
            assert_eq!(quorum_connected(n, &prepare).len(), n as usize - 1);
            assert_eq!(f.value["phase"], "prepare");
            let hold = Duration::from_secs(4);
            assert_eq!(f.first_change(hold), Some(Duration::from_secs(2)));
            // Then the leader is cut off and only `behind` reaches a quorum.
            let (change, again) = f.advance();
            assert_eq!(again, None, "constrained moves once");
            assert_eq!(change["phase"], "constrained");
            assert_eq!(change["components"], f.value["then"]["components"]);
            let cut = blocked(&f);
            symmetric(&cut);
            assert_eq!(hears(n, &cut, l), BTreeSet::from([l]), "leader isolated");
            assert_eq!(quorum_connected(n, &cut), BTreeSet::from([behind]));
            for x in nodes(n).into_iter().filter(|&x| x != l && x != behind) {
                assert_eq!(hears(n, &cut, x), BTreeSet::from([x, behind]));
            }
            assert_eq!(hears(n, &cut, behind).len(), n as usize - 1);
        }
    }

    #[test]
    fn partial_shapes_over_too_few_nodes_cut_nothing_and_say_why() {
        for (spec, n) in [
            ("partition:quorum-loss", 3),
            ("partition:constrained", 3),
            ("partition:chained", 2),
        ] {
            let f = shaped(spec, n, Some(NodeName(1)), 1);
            assert!(blocked(&f).is_empty(), "{spec}");
            assert!(
                f.value["error"].as_str().unwrap().contains("at least"),
                "{spec}"
            );
        }
    }

    #[test]
    fn flap_cuts_and_heals_one_leader_link_every_100_to_500_ms() {
        let l = NodeName(2);
        let mut f = shaped("flap", 3, Some(l), 5);
        let cut = blocked(&f);
        symmetric(&cut);
        assert_eq!(cut.len(), 2, "one link, both ways");
        assert!(cut.iter().all(|k| k.from == l || k.to == l));
        assert_eq!(f.value["cut"], true);
        let hold = Duration::from_secs(10);
        let first = f.first_change(hold).unwrap();
        assert!((100..=500).contains(&first.as_millis()));
        let mut times = vec![first];
        for i in 0..20 {
            let (value, again) = f.advance();
            let now_cut = i % 2 == 1;
            assert_eq!(value["cut"], now_cut);
            assert_eq!(
                blocked(&f),
                if now_cut {
                    cut.clone()
                } else {
                    BTreeSet::new()
                }
            );
            let again = again.expect("a flap moves until it is healed");
            assert!((100..=500).contains(&again.as_millis()), "{again:?}");
            times.push(again);
        }
        assert!(
            times.iter().collect::<BTreeSet<_>>().len() > 5,
            "random periods"
        );
        // The same seed flaps the same way; and a flap's own generator
        // takes one draw from the schedule's, however long it flaps.
        let mut g = shaped("flap", 3, Some(l), 5);
        assert_eq!(g.first_change(hold), Some(first));
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let _ = Fault::generate(FaultKind::Flap, &nodes(3), Some(l), &mut rng);
        let after_one = rng.gen::<u64>();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut h = Fault::generate(FaultKind::Flap, &nodes(3), Some(l), &mut rng);
        for _ in 0..50 {
            h.advance();
        }
        assert_eq!(rng.gen::<u64>(), after_one);
    }

    #[test]
    fn kill_shapes_kill_the_leader_or_one_follower() {
        for seed in 0..30 {
            let f = shaped("kill:leader", 5, Some(NodeName(4)), seed);
            assert_eq!(f.value["killed"], json!(["n4"]));
            assert_eq!(f.value["shape"], "leader");
            assert_eq!(f.value["leader"], "n4");
            let f = shaped("kill:follower", 5, Some(NodeName(4)), seed);
            let Effect::Down {
                nodes: down,
                power_loss,
            } = &f.effect
            else {
                panic!("a kill must bring nodes down")
            };
            assert!(!power_loss);
            assert_eq!(down.len(), 1);
            assert!(!down.contains(&NodeName(4)));
            assert_eq!(f.value["shape"], "follower");
        }
        // Nobody leads: a random node, and the history says no leader.
        let f = shaped("kill:leader", 3, None, 1);
        assert_eq!(f.value["killed"].as_array().unwrap().len(), 1);
        assert_eq!(f.value["leader"], Value::Null);
    }

    #[test]
    fn kills_never_take_a_majority() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..100 {
            let f = Fault::generate(FaultKind::Kill, &nodes(5), None, &mut rng);
            let Effect::Down { nodes: down, .. } = f.effect else {
                panic!("a kill must bring nodes down")
            };
            assert!((1..=2).contains(&down.len()));
        }
    }

    /// The nodes a power-loss fault takes down.
    fn powered_off(f: Fault) -> BTreeSet<NodeName> {
        let Effect::Down { nodes, power_loss } = f.effect else {
            panic!("a power loss must bring nodes down")
        };
        assert!(power_loss);
        nodes
    }

    #[test]
    fn power_loss_sometimes_takes_every_node() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let sizes: BTreeSet<usize> = (0..100)
            .map(|_| {
                powered_off(Fault::generate(
                    FaultKind::PowerLoss,
                    &nodes(3),
                    None,
                    &mut rng,
                ))
                .len()
            })
            .collect();
        assert_eq!(sizes, BTreeSet::from([1, 3]));
    }

    #[test]
    fn power_loss_shapes_take_every_node_or_a_minority() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for n in [3, 5] {
            for (spec, want_all) in [("power-loss:all", true), ("power-loss:minority", false)] {
                let spec: FaultSpec = spec.parse().unwrap();
                for _ in 0..50 {
                    let down = powered_off(Fault::generate_spec(
                        spec,
                        &nodes(n),
                        Some(NodeName(1)),
                        &mut rng,
                    ));
                    if want_all {
                        assert_eq!(down.len(), n as usize, "{spec}");
                    } else {
                        assert!(
                            !down.is_empty() && down.len() <= minority(n as usize),
                            "{spec}"
                        );
                    }
                }
            }
        }
        assert!("kill:all".parse::<FaultSpec>().is_err());
    }
}

/// The draws of plain kinds and plain lists, pinned: new shapes and kinds
/// are drawn only when named, so what a seed drew before they existed it
/// draws still (a run replays from its seed).
#[cfg(test)]
mod plain_draws_are_pinned {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// FNV-1a of what each draw recorded and did.
    fn digest(faults: &[Fault]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for f in faults {
            let text = format!("{}|{}|{:?}", f.kind, f.value, f.effect);
            for b in text.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }

    fn draws(kinds: &[&str], n: u32, leader: Option<NodeName>, seed: u64) -> u64 {
        let nodes: Vec<NodeName> = (1..=n).map(NodeName).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut faults = Vec::new();
        for i in 0..60 {
            let kind: FaultKind = kinds[i % kinds.len()].parse().unwrap();
            faults.push(Fault::generate(kind, &nodes, leader, &mut rng));
        }
        for list in [
            "kill",
            "partition",
            "kill,partition,pause",
            "partition,one-way,pause,kill,power-loss,clock,delay,reset",
        ] {
            let steps = Step::parse_list(list).unwrap();
            for _ in 0..20 {
                let step = steps.choose(&mut rng).unwrap();
                faults.extend(step.draw(&nodes, leader, false, &mut rng));
            }
        }
        digest(&faults)
    }

    #[test]
    fn plain_kinds_draw_what_they_drew_before_new_shapes() {
        let old = [
            "partition",
            "one-way",
            "pause",
            "kill",
            "power-loss",
            "clock",
            "delay",
            "reset",
        ];
        let got = [
            draws(&["kill"], 5, Some(NodeName(2)), 7),
            draws(&["kill"], 3, None, 8),
            draws(&["partition"], 5, Some(NodeName(4)), 9),
            draws(&["partition"], 3, None, 10),
            draws(&old, 5, Some(NodeName(1)), 11),
        ];
        // The two draws with no leader known changed once, on purpose:
        // since issue 19 the "aim at the leader" coin is tossed either way
        // (see `a_single_fault_takes_as_much_randomness_with_or_without_a_leader`).
        // Draws with a leader are what they always were.
        assert_eq!(
            got,
            [
                3039520516699508262,
                8259606388529854240,
                8825544381467017320,
                1649234996392907299,
                12252751788479443612
            ]
        );
    }
}
