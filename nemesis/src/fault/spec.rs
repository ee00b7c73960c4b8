//! The `--nemesis` language: what can be broken ([`FaultKind`]), how
//! precisely ([`Shape`], named per kind: [`PartitionShape`],
//! [`ClockShape`], [`PowerLossShape`], [`KillShape`]), a kind with an optional shape
//! ([`FaultSpec`], `partition:isolate-leader`), and the faults that start
//! together ([`Step`], `clock:slow-leader+partition:isolate-leader`).
//! Parsing and printing only: drawing a step's targets is
//! [`super::schedule`]'s job. The names printed are the names parsed, so a
//! run's config and history read back as the same steps.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::error::NemesisError;

/// A kind of fault a schedule can pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// A network partition: isolate one node, the leader, random halves,
    /// majorities ring or bridge, or (named only) one of the partial
    /// connectivity shapes: quorum-loss, constrained, chained
    /// ([`PartitionShape`]).
    Partition,
    /// One node cannot send (or cannot hear) while the others can.
    OneWay,
    /// SIGSTOP, later SIGCONT.
    Pause,
    /// SIGKILL, later a restart: a minority, or (named) the leader or
    /// one follower ([`KillShape`]).
    Kill,
    /// Power lost: SIGKILL and the filesystem forgetting unsynced writes
    /// (or the node's admin crash), later a restart: a minority, or every
    /// node at once.
    PowerLoss,
    /// Clock offsets and rates on every node: the leader slow and the
    /// others fast, or random ([`ClockShape`]).
    Clock,
    /// Delay with jitter on every peer link.
    Delay,
    /// TCP resets on every link of one node.
    Reset,
    /// One link (the leader's to a follower, where a leader is known)
    /// drops and heals, both ways, every 100-500 ms for the whole fault
    /// window, healed at its end. A kind of its own rather than a
    /// partition shape: it changes while it holds (a partition is one
    /// cut held still), so it can be started together with a partition
    /// (`partition:isolate-one+flap`), and plain `partition` keeps drawing
    /// exactly the shapes it drew before.
    Flap,
}

impl FaultKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Pause,
        FaultKind::Kill,
        FaultKind::PowerLoss,
        FaultKind::Clock,
        FaultKind::Delay,
        FaultKind::Reset,
        FaultKind::Flap,
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
            FaultKind::Flap => "flap",
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

/// Defines a kind's shapes: an enum whose variants print and parse as the
/// given names, and `ALL` in the order `--help` and error messages list
/// them.
macro_rules! shapes {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every shape, in the order `--help` and error messages list them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name after `KIND:` on the command line and in the
            /// history's `"shape"`.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

shapes! {
    /// The shapes `partition:SHAPE` can ask for.
    PartitionShape {
        /// One random node cut off from every other.
        IsolateOne => "isolate-one",
        /// The leader (a random node if none leads) cut off.
        IsolateLeader => "isolate-leader",
        /// Two halves that cannot reach each other.
        Halves => "halves",
        /// Every node hears a majority, no two nodes the same one.
        MajoritiesRing => "majorities-ring",
        /// Two halves that only one node connects.
        Bridge => "bridge",
        /// (OmniPaxos' quorum-loss, 4+ nodes) The leader keeps only one
        /// link, to a node that reaches everyone; every other node reaches
        /// every node but the leader. The leader has lost its quorum while
        /// that one node still hears it.
        QuorumLoss => "quorum-loss",
        /// (OmniPaxos' constrained election, 4+ nodes) First one follower
        /// is cut off for half the window, so it falls behind; then the
        /// leader is cut off from everyone, and the others keep only their
        /// links to that follower: the one node that reaches a quorum is
        /// the one behind in its log.
        Constrained => "constrained",
        /// (OmniPaxos' chained, 3+ nodes) One link cut: the leader's to one
        /// follower; every other node reaches both ends.
        Chained => "chained",
    }
}

shapes! {
    /// The shapes `kill:SHAPE` can ask for: the node that leads (a random
    /// one if none says it does), or one node that does not.
    KillShape {
        Leader => "leader",
        Follower => "follower",
    }
}

shapes! {
    /// The shapes `clock:SHAPE` can ask for: the leader slow and every other
    /// node fast (the worst case for leases), or random rates everywhere.
    ClockShape {
        SlowLeader => "slow-leader",
        Random => "random",
    }
}

shapes! {
    /// The shapes `power-loss:SHAPE` can ask for: every node at once (what
    /// `--fsync never` cannot survive) or a minority (what it can).
    PowerLossShape {
        All => "all",
        Minority => "minority",
    }
}

/// The shape a [`FaultSpec`] names, one of its kind's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    Partition(PartitionShape),
    Clock(ClockShape),
    PowerLoss(PowerLossShape),
    Kill(KillShape),
}

impl Shape {
    /// The name after `KIND:`.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Partition(s) => s.name(),
            Shape::Clock(s) => s.name(),
            Shape::PowerLoss(s) => s.name(),
            Shape::Kill(s) => s.name(),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Shapes sort by name: a step's faults and a list's steps are sorted,
/// and a schedule picks steps by index, so they keep the order they had
/// when shapes were strings (the same seed draws the same faults).
impl Ord for Shape {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for Shape {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FaultKind {
    /// The shapes `KIND:SHAPE` may name; without one the kind draws its
    /// shape at random (the only choice for kinds with no shapes).
    pub fn shapes(self) -> Vec<Shape> {
        match self {
            FaultKind::Partition => PartitionShape::ALL
                .iter()
                .map(|&s| Shape::Partition(s))
                .collect(),
            FaultKind::Clock => ClockShape::ALL.iter().map(|&s| Shape::Clock(s)).collect(),
            FaultKind::PowerLoss => PowerLossShape::ALL
                .iter()
                .map(|&s| Shape::PowerLoss(s))
                .collect(),
            FaultKind::Kill => KillShape::ALL.iter().map(|&s| Shape::Kill(s)).collect(),
            _ => Vec::new(),
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
    pub shape: Option<Shape>,
}

impl FaultSpec {
    /// Any shape of `kind`, drawn at random.
    pub fn any(kind: FaultKind) -> FaultSpec {
        FaultSpec { kind, shape: None }
    }

    /// Whether the user named a shape drawn around the leader, which
    /// falls back to a random node when none leads.
    pub fn names_the_leader(self) -> bool {
        matches!(
            self.shape,
            Some(
                Shape::Kill(KillShape::Leader | KillShape::Follower)
                    | Shape::Clock(ClockShape::SlowLeader)
                    | Shape::Partition(
                        PartitionShape::IsolateLeader
                            | PartitionShape::QuorumLoss
                            | PartitionShape::Constrained
                            | PartitionShape::Chained
                    )
            )
        )
    }
}

impl FaultSpec {
    /// The fewest nodes this fault can be drawn over: the partial
    /// connectivity shapes do not exist in smaller clusters (with three
    /// nodes the leader and the one node it still hears are a quorum).
    /// Plain kinds, `flap` among them, cut nothing on one node, as a
    /// partition does, and are not refused.
    pub fn min_nodes(self) -> usize {
        match (self.kind, self.shape) {
            (_, Some(Shape::Partition(PartitionShape::QuorumLoss)))
            | (_, Some(Shape::Partition(PartitionShape::Constrained))) => 4,
            (_, Some(Shape::Partition(PartitionShape::Chained))) => 3,
            (_, Some(Shape::Kill(KillShape::Follower))) => 2,
            _ => 1,
        }
    }

    /// Refuses, in words, a fault that cannot exist in a cluster of
    /// `nodes`; a run checks its whole `--nemesis` list before it starts.
    pub fn check_nodes(self, nodes: usize) -> Result<(), NemesisError> {
        let min = self.min_nodes();
        if nodes >= min {
            return Ok(());
        }
        let why = match self.shape {
            Some(Shape::Partition(PartitionShape::QuorumLoss)) => {
                "the leader keeps one peer, and with fewer than 4 nodes that peer and the \
                 leader are still a quorum"
            }
            Some(Shape::Partition(PartitionShape::Constrained)) => {
                "the one node connected to a quorum needs two others that reach only it; \
                 with fewer than 4 nodes every node left reaches a quorum"
            }
            Some(Shape::Partition(PartitionShape::Chained)) => {
                "a chain needs a third node that reaches both ends of the cut link"
            }
            _ => "there is no other node to aim at",
        };
        Err(NemesisError::BadFaultSpec {
            spec: self.to_string(),
            reason: format!("needs at least {min} nodes, the cluster has {nodes}: {why}"),
        })
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
        match shapes.iter().find(|known| known.name() == shape) {
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
                    shapes
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
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

    /// Refuses, in words, the first fault of `steps` that cannot exist in
    /// a cluster of `nodes` ([`FaultSpec::check_nodes`]).
    pub fn check_nodes(steps: &[Step], nodes: usize) -> Result<(), NemesisError> {
        for step in steps {
            for spec in &step.faults {
                spec.check_nodes(nodes)?;
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shapes_drawn_around_the_leader_wait_for_one() {
        let named = |s: &str| Step::parse_list(s).unwrap()[0].faults()[0].names_the_leader();
        for s in [
            "kill:leader",
            "kill:follower",
            "partition:isolate-leader",
            "partition:chained",
            "clock:slow-leader",
        ] {
            assert!(named(s), "{s}");
        }
        for s in ["kill", "partition", "partition:halves", "flap", "pause"] {
            assert!(!named(s), "{s}");
        }
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
                    shape: Some(Shape::Partition(PartitionShape::IsolateLeader))
                },
                FaultSpec {
                    kind: FaultKind::Clock,
                    shape: Some(Shape::Clock(ClockShape::SlowLeader))
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
    fn parses_the_new_shapes_and_kinds() {
        for (text, kind, shape) in [
            (
                "partition:quorum-loss",
                FaultKind::Partition,
                Some(Shape::Partition(PartitionShape::QuorumLoss)),
            ),
            (
                "partition:constrained",
                FaultKind::Partition,
                Some(Shape::Partition(PartitionShape::Constrained)),
            ),
            (
                "partition:chained",
                FaultKind::Partition,
                Some(Shape::Partition(PartitionShape::Chained)),
            ),
            (
                "kill:leader",
                FaultKind::Kill,
                Some(Shape::Kill(KillShape::Leader)),
            ),
            (
                "kill:follower",
                FaultKind::Kill,
                Some(Shape::Kill(KillShape::Follower)),
            ),
            ("flap", FaultKind::Flap, None),
        ] {
            let spec: FaultSpec = text.parse().unwrap();
            assert_eq!(spec, FaultSpec { kind, shape }, "{text}");
            assert_eq!(spec.to_string(), text);
        }
        let steps = Step::parse_list("partition:quorum-loss,flap+partition:chained,kill").unwrap();
        assert_eq!(steps.len(), 3);
        assert_eq!(
            Step::kinds(&steps),
            vec![FaultKind::Partition, FaultKind::Kill, FaultKind::Flap]
        );
        assert!(Step::parse_list("all")
            .unwrap()
            .iter()
            .any(|s| s.has(FaultKind::Flap)));
    }

    #[test]
    fn shapes_that_cannot_exist_in_the_cluster_are_refused_with_reasons() {
        for (list, n, words) in [
            (
                "partition:quorum-loss",
                3,
                &["at least 4", "has 3", "quorum"][..],
            ),
            (
                "pause,partition:constrained",
                3,
                &["at least 4", "constrained"][..],
            ),
            ("partition:chained", 2, &["at least 3", "third node"][..]),
            ("kill:follower", 1, &["at least 2"][..]),
        ] {
            let steps = Step::parse_list(list).unwrap();
            let e = Step::check_nodes(&steps, n).unwrap_err().to_string();
            for w in words {
                assert!(e.contains(w), "{list} on {n}: {e}");
            }
        }
        for (list, n) in [
            ("partition:quorum-loss,partition:constrained", 5),
            ("partition:quorum-loss", 4),
            ("partition:chained,flap,kill:follower", 3),
            ("all", 1),
            ("partition,kill", 1),
        ] {
            let steps = Step::parse_list(list).unwrap();
            assert!(Step::check_nodes(&steps, n).is_ok(), "{list} on {n}");
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
            ("flap:fast", &["no shapes", "flap"][..]),
            ("kill:all", &["all", "leader, follower"][..]),
            (
                "partition:quorum",
                &["quorum-loss", "constrained", "chained"][..],
            ),
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
}
