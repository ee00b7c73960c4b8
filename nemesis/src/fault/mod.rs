//! The faults, as data, in three steps: the `--nemesis` language
//! ([`spec`]: what can be broken, in which shape, which faults start
//! together), the schedule's draw of one fault in force with its targets
//! ([`schedule`]), and the fold of every fault in force into the one state
//! the nemesis re-applies idempotently after every change ([`fold`]). What
//! a fault does ([`Effect`]) is defined here, between the draw that makes
//! it and the fold that sums it, and so is how a fault that moves while it
//! holds (`flap`, `partition:constrained`) changes its effect ([`Motion`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::backend::{Delay, Link, NodeName};

pub mod fold;
pub mod schedule;
pub mod spec;

pub use fold::Desired;
pub use schedule::isolate;
pub use spec::{
    ClockShape, FaultKind, FaultSpec, KillShape, PartitionShape, PowerLossShape, Shape, Step,
};

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
    /// How `effect` changes while the fault holds; `None` for a fault
    /// that holds still (every kind but `flap` and
    /// `partition:constrained`).
    pub motion: Option<Motion>,
}

/// How a fault's [`Effect`] changes while it holds. The nemesis moves it
/// ([`Fault::advance`]) at the times it asks for, re-applies the fold
/// after each change and records a `change-KIND` event; healing at the
/// end of the window is the same as for any fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Motion {
    /// `links` are cut, then healed, then cut, ...; each state lasts
    /// 100-500 ms drawn from `rng`, a generator of the fault's own (seeded
    /// from the schedule's when drawn), so the schedule's later draws do
    /// not depend on how many flaps fit in a window.
    Flap {
        links: BTreeSet<Link>,
        cut: bool,
        rng: Box<ChaCha8Rng>,
    },
    /// For the first half of the window the effect is a preparation (a
    /// follower cut off so it falls behind); then it becomes `then`, and
    /// stays.
    Then { then: Effect, value: Value },
}

/// The shortest and longest time a flapping link stays cut, or healed.
pub const FLAP_MS: (u64, u64) = (100, 500);

impl Fault {
    /// When the fault first changes, after it started and for a window of
    /// `hold`; `None` if it holds still.
    pub fn first_change(&mut self, hold: Duration) -> Option<Duration> {
        match &mut self.motion {
            None => None,
            Some(Motion::Flap { rng, .. }) => {
                Some(Duration::from_millis(rng.gen_range(FLAP_MS.0..=FLAP_MS.1)))
            }
            Some(Motion::Then { .. }) => Some(hold / 2),
        }
    }

    /// Moves the fault to its next state: its new effect, and what the
    /// history's `change-KIND` event records. Returns when it changes
    /// again (from now), if ever.
    pub fn advance(&mut self) -> (Value, Option<Duration>) {
        match self.motion.take() {
            None => (Value::Null, None),
            Some(Motion::Flap {
                links,
                cut,
                mut rng,
            }) => {
                let cut = !cut;
                self.effect = Effect::Blocked(if cut { links.clone() } else { BTreeSet::new() });
                let next = Duration::from_millis(rng.gen_range(FLAP_MS.0..=FLAP_MS.1));
                let mut value = self.value.clone();
                if let Value::Object(m) = &mut value {
                    m.insert("cut".into(), json!(cut));
                }
                self.motion = Some(Motion::Flap { links, cut, rng });
                (value, Some(next))
            }
            Some(Motion::Then { then, value }) => {
                self.effect = then;
                (value, None)
            }
        }
    }
}
