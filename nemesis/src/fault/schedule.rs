//! The draw: a [`Step`] or a [`FaultSpec`] made into faults in force,
//! their targets taken from the schedule's seeded generator, so the same
//! seed draws the same faults. Each fault carries its [`Effect`] and the
//! targets the history records.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::spec::{ClockShape, FaultKind, FaultSpec, PartitionShape, PowerLossShape, Shape, Step};
use super::{Effect, Fault, Skew};
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
        // Half the time aim at the leader: that is where faults hurt.
        let one = match leader {
            Some(l) if rng.gen_bool(0.5) => l,
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
                }
            }
            FaultKind::Pause => {
                let set = pick_some(rng);
                Fault {
                    kind,
                    value: json!({"paused": names(&set)}),
                    effect: Effect::Paused(set),
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
                    Some(_) => pick_some(rng),
                    None if power_loss && rng.gen_bool(0.5) => all.clone(),
                    None => pick_some(rng),
                };
                Fault {
                    kind,
                    value: if power_loss {
                        json!({"crashed": names(&set), "lose_unsynced": true})
                    } else {
                        json!({"killed": names(&set)})
                    },
                    effect: Effect::Down {
                        nodes: set,
                        power_loss,
                    },
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
                    None => leader.filter(|_| rng.gen_bool(0.5)),
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
                }
            }
            FaultKind::Reset => {
                let x = BTreeSet::from([one]);
                let rest: BTreeSet<NodeName> = all.difference(&x).copied().collect();
                Fault {
                    kind,
                    value: json!({"reset": names(&x)}),
                    effect: Effect::Reset(between(&x, &rest)),
                }
            }
        }
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
    };
    Fault {
        kind: FaultKind::Partition,
        value: json!({"shape": shape.name(), "components": components}),
        effect: Effect::Blocked(blocked),
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
        assert_eq!(
            got,
            [
                3039520516699508262,
                8308289421416672600,
                8825544381467017320,
                2308641966091331810,
                12252751788479443612
            ]
        );
    }
}
