//! The `--nemesis` language: what can be broken ([`FaultKind`]), how
//! precisely ([`Shape`], named per kind: [`PartitionShape`],
//! [`ClockShape`], [`PowerLossShape`]), a kind with an optional shape
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
    /// majorities ring or bridge ([`PartitionShape`]).
    Partition,
    /// One node cannot send (or cannot hear) while the others can.
    OneWay,
    /// SIGSTOP, later SIGCONT.
    Pause,
    /// SIGKILL, later a restart.
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
}

impl Shape {
    /// The name after `KIND:`.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Partition(s) => s.name(),
            Shape::Clock(s) => s.name(),
            Shape::PowerLoss(s) => s.name(),
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
}
