//! The faults, as data: what can be broken ([`FaultKind`], the names of
//! `--nemesis`), how precisely ([`FaultSpec`], a kind with an optional
//! shape such as `partition:isolate-leader`), which faults start together
//! ([`Step`], e.g. `clock:slow-leader+partition:isolate-leader`), one fault
//! in force with its targets ([`Fault`]), and the whole state they add up
//! to ([`Desired`]), which the nemesis re-applies idempotently after every
//! change.

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
    /// majorities ring or bridge ([`PARTITION_SHAPES`]).
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
    /// Clock offsets and rates on every node: the leader slow and the
    /// others fast, or random ([`CLOCK_SHAPES`]).
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

/// The shapes `partition:SHAPE` can ask for.
pub const PARTITION_SHAPES: [&str; 5] = [
    "isolate-one",
    "isolate-leader",
    "halves",
    "majorities-ring",
    "bridge",
];

/// The shapes `clock:SHAPE` can ask for: the leader slow and every other
/// node fast (the worst case for leases), or random rates everywhere.
pub const CLOCK_SHAPES: [&str; 2] = ["slow-leader", "random"];

/// The shapes `power-loss:SHAPE` can ask for: every node at once (what
/// `--fsync never` cannot survive) or a minority (what it can).
pub const POWER_LOSS_SHAPES: [&str; 2] = ["all", "minority"];

impl FaultKind {
    /// The shapes `KIND:SHAPE` may name; without one the kind draws its
    /// shape at random (the only choice for kinds with no shapes).
    pub fn shapes(self) -> &'static [&'static str] {
        match self {
            FaultKind::Partition => &PARTITION_SHAPES,
            FaultKind::Clock => &CLOCK_SHAPES,
            FaultKind::PowerLoss => &POWER_LOSS_SHAPES,
            _ => &[],
        }
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

/// A fault kind, and the shape to draw if the user named one
/// (`partition:isolate-leader`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// One of `kind.shapes()`; `None` draws one at random.
    pub shape: Option<&'static str>,
}

impl FaultSpec {
    /// Any shape of `kind`, drawn at random.
    pub fn any(kind: FaultKind) -> FaultSpec {
        FaultSpec { kind, shape: None }
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shape {
            Some(shape) => write!(f, "{}:{shape}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl FromStr for FaultSpec {
    type Err = NemesisError;

    /// `KIND` or `KIND:SHAPE`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, shape) = match s.split_once(':') {
            Some((name, shape)) => (name.trim(), Some(shape.trim())),
            None => (s.trim(), None),
        };
        let kind: FaultKind = name.parse()?;
        let Some(shape) = shape else {
            return Ok(FaultSpec::any(kind));
        };
        let shapes = kind.shapes();
        match shapes.iter().find(|&&known| known == shape) {
            Some(&known) => Ok(FaultSpec {
                kind,
                shape: Some(known),
            }),
            None if shapes.is_empty() => Err(NemesisError::BadFaultSpec {
                spec: s.to_string(),
                reason: format!("{kind} has no shapes to choose from; write just {kind:?}"),
            }),
            None => Err(NemesisError::BadFaultSpec {
                spec: s.to_string(),
                reason: format!(
                    "{kind} has no shape {shape:?}: expected one of {}",
                    shapes.join(", ")
                ),
            }),
        }
    }
}

/// One entry of `--nemesis`: the faults a schedule starts together, drawn
/// against the same leader, held together and healed together. Most steps
/// are one fault (`partition`); `clock:slow-leader+partition:isolate-leader`
/// slows the leader's clock and cuts it off at the same moment, the one
/// schedule that reliably catches a lease trusting its clock.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Step {
    /// Sorted by kind, no kind twice.
    faults: Vec<FaultSpec>,
}

impl Step {
    /// A step of one fault.
    pub fn one(spec: FaultSpec) -> Step {
        Step { faults: vec![spec] }
    }

    /// The faults of this step, sorted by kind.
    pub fn faults(&self) -> &[FaultSpec] {
        &self.faults
    }

    /// Whether any fault of this step is of `kind`.
    pub fn has(&self, kind: FaultKind) -> bool {
        self.faults.iter().any(|f| f.kind == kind)
    }

    /// Parses a comma-separated `--nemesis` list such as
    /// `partition:isolate-leader,pause,clock+partition`: each entry a step
    /// of faults joined by `+`, each fault `KIND` or `KIND:SHAPE`; `all`
    /// means one step per kind, `none` or the empty string no faults.
    /// Sorted and deduplicated, so a list of plain kinds gives the steps in
    /// the order of [`FaultKind::ALL`].
    pub fn parse_list(s: &str) -> Result<Vec<Step>, NemesisError> {
        let mut steps = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry {
                "all" => steps.extend(FaultKind::ALL.map(|k| Step::one(FaultSpec::any(k)))),
                "none" => {}
                _ => steps.push(entry.parse()?),
            }
        }
        steps.sort();
        steps.dedup();
        Ok(steps)
    }

    /// Draws this step's faults over `nodes`, all against the same
    /// `leader` (the node that says it leads, if any); `skewed` says a
    /// clock skew is already in force. Faults started together aim at one
    /// node even when none leads (`clock:slow-leader+partition:isolate-leader`
    /// cuts off the node whose clock it slows), and under a clock skew (in
    /// force, or in this step) a partition of no named shape cuts off the
    /// leader: the one case where a lease that trusts the clock goes wrong.
    pub fn draw<R: Rng>(
        &self,
        nodes: &[NodeId],
        mut leader: Option<NodeId>,
        skewed: bool,
        rng: &mut R,
    ) -> Vec<Fault> {
        if leader.is_none() && self.faults.len() > 1 {
            leader = nodes.choose(rng).copied();
        }
        let skewed = skewed || self.has(FaultKind::Clock);
        self.faults
            .iter()
            .map(|&spec| match leader {
                Some(l)
                    if spec.kind == FaultKind::Partition
                        && spec.shape.is_none()
                        && skewed
                        && nodes.len() > 2 =>
                {
                    isolate(l, nodes, "isolate-leader")
                }
                _ => Fault::generate_spec(spec, nodes, leader, rng),
            })
            .collect()
    }

    /// Every kind the steps use, sorted, once each.
    pub fn kinds(steps: &[Step]) -> Vec<FaultKind> {
        let mut kinds: Vec<FaultKind> = steps
            .iter()
            .flat_map(|s| s.faults.iter().map(|f| f.kind))
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, spec) in self.faults.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            write!(f, "{spec}")?;
        }
        Ok(())
    }
}

impl FromStr for Step {
    type Err = NemesisError;

    /// `FAULT` or `FAULT+FAULT+...`, each `KIND` or `KIND:SHAPE`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut faults = Vec::new();
        for part in s.split('+').map(str::trim) {
            if part.is_empty() {
                return Err(NemesisError::BadFaultSpec {
                    spec: s.to_string(),
                    reason: "an empty fault between '+' signs".to_string(),
                });
            }
            if matches!(part, "all" | "none") {
                return Err(NemesisError::BadFaultSpec {
                    spec: s.to_string(),
                    reason: format!("{part:?} is a whole list, not a fault to combine"),
                });
            }
            faults.push(part.parse::<FaultSpec>()?);
        }
        faults.sort();
        if let Some(w) = faults.windows(2).find(|w| w[0].kind == w[1].kind) {
            return Err(NemesisError::BadFaultSpec {
                spec: s.to_string(),
                reason: format!(
                    "{} twice in one step: faults started together must be of different kinds",
                    w[0].kind
                ),
            });
        }
        Ok(Step { faults })
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
    /// Draws a fault of `kind` over `nodes`, of any shape, targets from
    /// `rng`; `leader` is the node that says it leads, if any (a favourite
    /// target).
    pub fn generate<R: Rng>(
        kind: FaultKind,
        nodes: &[NodeId],
        leader: Option<NodeId>,
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
        nodes: &[NodeId],
        leader: Option<NodeId>,
        rng: &mut R,
    ) -> Fault {
        let kind = spec.kind;
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
            FaultKind::Partition => partition(nodes, &shuffled, leader, spec.shape, rng),
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
                let set = match spec.shape {
                    Some("all") => all.clone(),
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
                    Some("slow-leader") => Some(leader.unwrap_or(random_one)),
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
                        offset_ms: if spec.shape == Some("slow-leader") {
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

/// A partition of one of the classic shapes: `shape` if given, else one
/// drawn from those that make sense for this cluster.
fn partition<R: Rng>(
    nodes: &[NodeId],
    shuffled: &[NodeId],
    leader: Option<NodeId>,
    shape: Option<&'static str>,
    rng: &mut R,
) -> Fault {
    let n = nodes.len();
    let all: BTreeSet<NodeId> = nodes.iter().copied().collect();
    let shape = shape.unwrap_or_else(|| {
        let mut shapes = vec!["isolate-one", "halves"];
        if leader.is_some() {
            shapes.push("isolate-leader");
        }
        if n >= 3 {
            shapes.push("majorities-ring");
            shapes.push("bridge");
        }
        *shapes.choose(rng).unwrap_or(&"isolate-one")
    });
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
    fn parses_shapes_and_steps() {
        let steps = Step::parse_list("clock:slow-leader+partition:isolate-leader, pause").unwrap();
        assert_eq!(steps.len(), 2);
        let trap = steps.iter().find(|s| s.faults().len() == 2).unwrap();
        assert_eq!(
            trap.faults(),
            [
                FaultSpec {
                    kind: FaultKind::Partition,
                    shape: Some("isolate-leader")
                },
                FaultSpec {
                    kind: FaultKind::Clock,
                    shape: Some("slow-leader")
                },
            ]
        );
        // Printed in canonical order, and read back the same.
        assert_eq!(
            trap.to_string(),
            "partition:isolate-leader+clock:slow-leader"
        );
        assert_eq!(trap.to_string().parse::<Step>().unwrap(), *trap);
        assert!(trap.has(FaultKind::Clock) && !trap.has(FaultKind::Kill));
        assert_eq!(
            Step::kinds(&steps),
            vec![FaultKind::Partition, FaultKind::Pause, FaultKind::Clock]
        );
        // Aliases work inside steps too.
        assert_eq!(
            "clock-skew+crash".parse::<Step>().unwrap().to_string(),
            "power-loss+clock"
        );
    }

    #[test]
    fn plain_kinds_give_the_steps_in_the_order_of_the_kinds() {
        // A schedule picks steps by index, so `--nemesis partition,kill`
        // must keep drawing what it drew before steps existed.
        for list in [
            "pause, partition,pause",
            "all",
            "kill,clock,delay,partition",
        ] {
            let kinds = FaultKind::parse_list(list).unwrap();
            let steps = Step::parse_list(list).unwrap();
            let plain: Vec<Step> = kinds
                .into_iter()
                .map(|k| Step::one(FaultSpec::any(k)))
                .collect();
            assert_eq!(steps, plain, "{list}");
        }
    }

    #[test]
    fn rejects_bad_shapes_and_steps_with_reasons() {
        for (spec, words) in [
            (
                "partition:sideways",
                &["sideways", "isolate-leader", "bridge"][..],
            ),
            ("pause:leader", &["no shapes", "pause"][..]),
            ("clock:slow-leader+clock", &["clock twice"][..]),
            ("partition+", &["empty"][..]),
            ("all+pause", &["whole list"][..]),
            ("partition+frobnicate", &["frobnicate"][..]),
        ] {
            let e = Step::parse_list(spec).unwrap_err().to_string();
            for w in words {
                assert!(e.contains(w), "{spec}: {e}");
            }
        }
    }

    #[test]
    fn a_named_partition_shape_is_the_shape_drawn() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for shape in PARTITION_SHAPES {
            for n in 1..=5 {
                let spec = FaultSpec {
                    kind: FaultKind::Partition,
                    shape: Some(shape),
                };
                let f = Fault::generate_spec(spec, &nodes(n), Some(NodeId(n)), &mut rng);
                assert_eq!(f.value["shape"], shape, "{n} nodes");
            }
        }
        let spec = "partition:isolate-leader".parse().unwrap();
        let f = Fault::generate_spec(spec, &nodes(5), Some(NodeId(4)), &mut rng);
        assert_eq!(f.value["components"][0], json!(["n4"]));
    }

    fn rates(f: &Fault) -> BTreeMap<NodeId, Skew> {
        let Effect::Clock(skews) = &f.effect else {
            panic!("not a clock fault: {f:?}")
        };
        skews.clone()
    }

    #[test]
    fn slow_leader_slows_the_leader_and_speeds_every_other_node_without_steps() {
        let spec: FaultSpec = "clock:slow-leader".parse().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for leader in [Some(NodeId(2)), None] {
            for _ in 0..20 {
                let f = Fault::generate_spec(spec, &nodes(3), leader, &mut rng);
                let skews = rates(&f);
                let slow: Vec<NodeId> = skews
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
        for leader in [Some(NodeId(3)), None, None, None, None, None, None, None] {
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
            let f = &partition.draw(&nodes(5), Some(NodeId(2)), true, &mut rng)[0];
            assert_eq!(f.value["shape"], "isolate-leader");
            assert_eq!(f.value["components"][0], json!(["n2"]));
            let f = &with_clock.draw(&nodes(5), Some(NodeId(2)), false, &mut rng)[0];
            assert_eq!(f.value["components"][0], json!(["n2"]));
        }
        // A named shape wins over that preference.
        let halves: Step = "partition:halves".parse().unwrap();
        let f = &halves.draw(&nodes(5), Some(NodeId(2)), true, &mut rng)[0];
        assert_eq!(f.value["shape"], "halves");
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

    /// The nodes a power-loss fault takes down.
    fn powered_off(f: Fault) -> BTreeSet<NodeId> {
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
                        Some(NodeId(1)),
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
