//! The faults, as data, in three steps: the `--nemesis` language
//! ([`spec`]: what can be broken, in which shape, which faults start
//! together), the schedule's draw of one fault in force with its targets
//! ([`schedule`]), and the fold of every fault in force into the one state
//! the nemesis re-applies idempotently after every change ([`fold`]). What
//! a fault does ([`Effect`]) is defined here, between the draw that makes
//! it and the fold that sums it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::backend::{Delay, Link, NodeName};

pub mod fold;
pub mod schedule;
pub mod spec;

pub use fold::Desired;
pub use schedule::isolate;
pub use spec::{ClockShape, FaultKind, FaultSpec, PartitionShape, PowerLossShape, Shape, Step};

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
    Paused(BTreeSet<NodeName>),
    /// These nodes are down; `power_loss` says how they were brought down
    /// (admin crash losing unsynced writes, or SIGKILL).
    Down {
        nodes: BTreeSet<NodeName>,
        power_loss: bool,
    },
    /// These nodes' clocks run at `now * rate + offset_ms`.
    Clock(BTreeMap<NodeName, Skew>),
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
