//! The faults, as data: what can be broken ([`FaultKind`], the names of
//! `--nemesis`), one fault in force with its targets ([`Fault`]), and the
//! whole state they add up to ([`Desired`]), which the nemesis re-applies
//! idempotently after every change.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use crate::backend::{Link, NodeId};
use crate::error::NemesisError;
use crate::proxy::{Delay, LinkFault};

/// A kind of fault a schedule can pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// A network partition: isolate one node, the leader, random halves,
    /// majorities ring or bridge.
    Partition,
    /// One node cannot send (or cannot hear) while the others can.
    OneWay,
    /// SIGSTOP, later SIGCONT.
    Pause,
    /// SIGKILL, later a restart.
    Kill,
    /// The node's admin crash dropping unsynced writes, later a restart:
    /// a minority, or every node at once.
    PowerLoss,
    /// Random clock offsets and rates on every node.
    Clock,
    /// Delay with jitter on every peer link.
    Delay,
    /// TCP resets on every link of one node.
    Reset,
}

impl FaultKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Pause,
        FaultKind::Kill,
        FaultKind::PowerLoss,
        FaultKind::Clock,
        FaultKind::Delay,
        FaultKind::Reset,
    ];

    /// The mix a default run uses: every fault the safe configuration must
    /// survive.
    pub const DEFAULT_MIX: [FaultKind; 6] = [
        FaultKind::Partition,
        FaultKind::Pause,
        FaultKind::Kill,
        FaultKind::PowerLoss,
        FaultKind::Clock,
        FaultKind::Delay,
    ];

    /// The name on the command line and in history events
    /// (`start-partition`).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one-way",
            FaultKind::Pause => "pause",
            FaultKind::Kill => "kill",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::Clock => "clock",
            FaultKind::Delay => "delay",
            FaultKind::Reset => "reset",
        }
    }

    /// Parses a comma-separated list such as `partition,pause,kill`;
    /// `all` means every kind, `none` or the empty string no faults.
    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>, NemesisError> {
        let mut kinds = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => kinds.extend(FaultKind::ALL),
                "none" => {}
                _ => kinds.push(name.parse()?),
            }
        }
        kinds.sort();
        kinds.dedup();
        Ok(kinds)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = NemesisError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let alias = match s {
            "crash" => "power-loss",
            "partition-one-way" => "one-way",
            "clock-skew" => "clock",
            other => other,
        };
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == alias)
            .ok_or_else(|| NemesisError::UnknownFault {
                name: s.to_string(),
                known: FaultKind::ALL.map(FaultKind::name).join(", ") + ", all, none",
            })
    }
}

/// What a fault does, precisely enough to apply and to heal it.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// These directed links are blackholed.
    Blocked(BTreeSet<Link>),
    /// These links are slow.
    Slow(BTreeSet<Link>, Delay),
    /// These links reset their connections.
    Reset(BTreeSet<Link>),
    /// These nodes are SIGSTOPped.
    Paused(BTreeSet<NodeId>),
    /// These nodes are down; `power_loss` says how they were brought down
    /// (admin crash losing unsynced writes, or SIGKILL).
    Down {
        nodes: BTreeSet<NodeId>,
        power_loss: bool,
    },
    /// These nodes' clocks run at `now * rate + offset_ms`.
    Clock(BTreeMap<NodeId, Skew>),
}

/// A clock skew: `now = real_now * rate + offset_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Skew {
    pub offset_ms: i64,
    pub rate: f64,
}

impl Skew {
    /// A correct clock.
    pub const NONE: Skew = Skew {
        offset_ms: 0,
        rate: 1.0,
    };
}

/// One fault in force.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub effect: Effect,
    /// The targets as recorded in the history's `start-X`/`stop-X` events.
    pub value: Value,
}

fn names(nodes: &BTreeSet<NodeId>) -> Vec<String> {
    nodes.iter().map(NodeId::to_string).collect()
}

/// Every directed link between `a` and `b`, both ways.
fn between(a: &BTreeSet<NodeId>, b: &BTreeSet<NodeId>) -> BTreeSet<Link> {
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
    /// Draws a fault of `kind` over `nodes`, targets from `rng`; `leader`
    /// is the node that says it leads, if any (a favourite target).
    pub fn generate<R: Rng>(
        kind: FaultKind,
        nodes: &[NodeId],
        leader: Option<NodeId>,
        rng: &mut R,
    ) -> Fault {
        let all: BTreeSet<NodeId> = nodes.iter().copied().collect();
        let mut shuffled = nodes.to_vec();
        shuffled.shuffle(rng);
        let random_one = shuffled.first().copied().unwrap_or(NodeId(1));
        // Half the time aim at the leader: that is where faults hurt.
        let one = match leader {
            Some(l) if rng.gen_bool(0.5) => l,
            _ => random_one,
        };
        let pick_some = |rng: &mut R| -> BTreeSet<NodeId> {
            let k = rng.gen_range(1..=minority(nodes.len()));
            let mut set: BTreeSet<NodeId> = shuffled.iter().copied().take(k).collect();
            if k == 1 {
                set = BTreeSet::from([one]);
            }
            set
        };
        match kind {
            FaultKind::Partition => partition(nodes, &shuffled, leader, rng),
            FaultKind::OneWay => {
                let x = BTreeSet::from([one]);
                let rest: BTreeSet<NodeId> = all.difference(&x).copied().collect();
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
                let set = if power_loss && rng.gen_bool(0.5) {
                    all.clone()
                } else {
                    pick_some(rng)
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
                // Half the time the worst case for leases: the leader's
                // clock runs slow (its lease seems to last longer) while
                // the others' run fast (they stop deferring to it sooner).
                let slow_leader = leader.filter(|_| rng.gen_bool(0.5));
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
                        offset_ms: rng.gen_range(-5000..=5000),
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
                let rest: BTreeSet<NodeId> = all.difference(&x).copied().collect();
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
pub fn isolate(x: NodeId, nodes: &[NodeId], shape: &str) -> Fault {
    let all: BTreeSet<NodeId> = nodes.iter().copied().collect();
    let xs = BTreeSet::from([x]);
    let rest: BTreeSet<NodeId> = all.difference(&xs).copied().collect();
    Fault {
        kind: FaultKind::Partition,
        value: json!({"shape": shape, "components": [names(&xs), names(&rest)]}),
        effect: Effect::Blocked(between(&xs, &rest)),
    }
}

/// A partition of one of the classic shapes.
fn partition<R: Rng>(
    nodes: &[NodeId],
    shuffled: &[NodeId],
    leader: Option<NodeId>,
    rng: &mut R,
) -> Fault {
    let n = nodes.len();
    let all: BTreeSet<NodeId> = nodes.iter().copied().collect();
    let mut shapes = vec!["isolate-one", "halves"];
    if leader.is_some() {
        shapes.push("isolate-leader");
    }
    if n >= 3 {
        shapes.push("majorities-ring");
        shapes.push("bridge");
    }
    let shape = *shapes.choose(rng).unwrap_or(&"isolate-one");
    let isolate = |x: NodeId| -> (BTreeSet<Link>, Value) {
        let xs = BTreeSet::from([x]);
        let rest: BTreeSet<NodeId> = all.difference(&xs).copied().collect();
        (between(&xs, &rest), json!([names(&xs), names(&rest)]))
    };
    let (blocked, components) = match shape {
        "isolate-leader" => isolate(leader.unwrap_or(shuffled[0])),
        "halves" => {
            let a: BTreeSet<NodeId> = shuffled[..n / 2].iter().copied().collect();
            let b: BTreeSet<NodeId> = shuffled[n / 2..].iter().copied().collect();
            (between(&a, &b), json!([names(&a), names(&b)]))
        }
        "majorities-ring" => {
            // Every node hears a majority, centred on itself in a random
            // ring, so no two nodes hear the same majority.
            let m = n / 2 + 1;
            let mut blocked = BTreeSet::new();
            let mut views = serde_json::Map::new();
            for (i, &x) in shuffled.iter().enumerate() {
                let back = (m - 1) / 2;
                let visible: BTreeSet<NodeId> =
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
        "bridge" => {
            // Two halves that only the bridge node connects.
            let bridge = shuffled[0];
            let rest = &shuffled[1..];
            let a: BTreeSet<NodeId> = rest[..rest.len() / 2].iter().copied().collect();
            let b: BTreeSet<NodeId> = rest[rest.len() / 2..].iter().copied().collect();
            (
                between(&a, &b),
                json!({"bridge": bridge.to_string(), "sides": [names(&a), names(&b)]}),
            )
        }
        _ => isolate(shuffled[0]),
    };
    Fault {
        kind: FaultKind::Partition,
        value: json!({"shape": shape, "components": components}),
        effect: Effect::Blocked(blocked),
    }
}

/// The state every fault in force adds up to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// Links with a fault; every other link is healthy.
    pub links: BTreeMap<Link, LinkFault>,
    pub paused: BTreeSet<NodeId>,
    /// Down nodes, and whether by power loss.
    pub down: BTreeMap<NodeId, bool>,
    pub clocks: BTreeMap<NodeId, Skew>,
}

impl Desired {
    /// Folds the faults in force into one state. Later faults win where two
    /// set the same thing (two clock skews on a node).
    pub fn of(faults: &[Fault]) -> Desired {
        let mut d = Desired::default();
        for f in faults {
            match &f.effect {
                Effect::Blocked(links) => {
                    for l in links {
                        d.links.entry(*l).or_default().blackhole = true;
                    }
                }
                Effect::Slow(links, delay) => {
                    for l in links {
                        d.links.entry(*l).or_default().delay = Some(*delay);
                    }
                }
                Effect::Reset(links) => {
                    for l in links {
                        d.links.entry(*l).or_default().reset = true;
                    }
                }
                Effect::Paused(nodes) => d.paused.extend(nodes),
                Effect::Down { nodes, power_loss } => {
                    for n in nodes {
                        d.down.insert(*n, *power_loss);
                    }
                }
                Effect::Clock(skews) => d.clocks.extend(skews),
            }
        }
        d
    }

    /// The fault on `link` (healthy if none).
    pub fn link(&self, link: Link) -> LinkFault {
        self.links.get(&link).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn nodes(n: u32) -> Vec<NodeId> {
        (1..=n).map(NodeId).collect()
    }

    #[test]
    fn parses_lists_and_rejects_unknown_names() {
        assert_eq!(
            FaultKind::parse_list("pause, partition,pause").unwrap(),
            vec![FaultKind::Partition, FaultKind::Pause]
        );
        assert_eq!(
            FaultKind::parse_list("all").unwrap().len(),
            FaultKind::ALL.len()
        );
        assert!(FaultKind::parse_list("none").unwrap().is_empty());
        let e = FaultKind::parse_list("partition,frobnicate")
            .unwrap_err()
            .to_string();
        assert!(e.contains("frobnicate") && e.contains("partition"), "{e}");
    }

    #[test]
    fn same_seed_same_faults() {
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20)
                .map(|i| {
                    Fault::generate(FaultKind::ALL[i % 8], &nodes(5), Some(NodeId(2)), &mut rng)
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
                let hears: BTreeSet<NodeId> = nodes(5)
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
    fn isolating_a_node_cuts_exactly_its_links() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let f = Fault::generate(FaultKind::Partition, &nodes(3), Some(NodeId(3)), &mut rng);
            if f.value["shape"] == "isolate-leader" {
                let d = Desired::of(&[f]);
                assert_eq!(d.links.len(), 4);
                for (l, lf) in &d.links {
                    assert!(l.from == NodeId(3) || l.to == NodeId(3));
                    assert!(lf.blackhole);
                }
                return;
            }
        }
        panic!("no isolate-leader drawn in 50 tries");
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

    #[test]
    fn power_loss_sometimes_takes_every_node() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let sizes: BTreeSet<usize> = (0..100)
            .map(|_| {
                let f = Fault::generate(FaultKind::PowerLoss, &nodes(3), None, &mut rng);
                let Effect::Down {
                    nodes: down,
                    power_loss,
                } = f.effect
                else {
                    panic!("a power loss must bring nodes down")
                };
                assert!(power_loss);
                down.len()
            })
            .collect();
        assert_eq!(sizes, BTreeSet::from([1, 3]));
    }

    #[test]
    fn healing_is_the_empty_state() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let faults: Vec<Fault> = FaultKind::ALL
            .iter()
            .map(|&k| Fault::generate(k, &nodes(3), None, &mut rng))
            .collect();
        assert_ne!(Desired::of(&faults), Desired::default());
        assert_eq!(Desired::of(&[]), Desired::default());
    }
}
