//! Simulated histories: a real (linearizable) register per key, driven by
//! concurrent processes, for property tests and benchmarks.
//!
//! Each operation takes effect at one instant between its invocation and
//! its completion (the simulation picks the instant), so every history
//! produced is linearizable by construction; with `info_rate`, some
//! operations complete as `info` and then take effect later, or never,
//! exactly the ambiguity the checker must allow. A seeded generator makes a
//! failing case reproducible from its seed.

use serde_json::{json, Value};

use crate::history::{Event, EventType, Fun, History, Process};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub seed: u64,
    pub keys: usize,
    /// Concurrent processes per key.
    pub processes_per_key: usize,
    /// Operations invoked in total.
    pub ops: usize,
    /// Share of operations that complete as `info`.
    pub info_rate: f64,
    /// Share of reads and of cas among the operations (the rest: writes).
    pub read_rate: f64,
    pub cas_rate: f64,
    /// Values written are drawn from `0..values`.
    pub values: i64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 1,
            keys: 1,
            processes_per_key: 5,
            ops: 100,
            info_rate: 0.05,
            read_rate: 0.5,
            cas_rate: 0.2,
            values: 5,
        }
    }
}

/// A small, fast, seedable generator (splitmix64); no dependency needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Read,
    Write(i64),
    Cas(i64, i64),
}

#[derive(Clone, Copy)]
enum Slot {
    Idle,
    /// Invoked, not yet taken effect.
    Invoked(Kind),
    /// Took effect: the result to report (read value, or cas success).
    Applied(Kind, Option<i64>, bool),
}

struct KeyState {
    value: Option<i64>,
    slots: Vec<(u64, Slot)>,
    /// `info` ops that may still take effect later.
    ghosts: Vec<Kind>,
}

fn apply(value: &mut Option<i64>, kind: Kind) -> (Option<i64>, bool) {
    match kind {
        Kind::Read => (*value, true),
        Kind::Write(v) => {
            *value = Some(v);
            (Some(v), true)
        }
        Kind::Cas(a, b) => {
            if *value == Some(a) {
                *value = Some(b);
                (None, true)
            } else {
                (None, false)
            }
        }
    }
}

/// Simulates a history (see the module doc).
pub fn simulate(cfg: &GenConfig) -> History {
    let mut events = Vec::with_capacity(cfg.ops * 2 + 16);
    simulate_each(cfg, |e| events.push(e));
    History::new(events)
}

/// Simulates a history, handing each event to `emit` as it happens, so a
/// history of any size can be written without being held.
pub fn simulate_each(cfg: &GenConfig, mut emit: impl FnMut(Event)) {
    let mut rng = Rng::new(cfg.seed);
    let keys = cfg.keys.max(1);
    let per = cfg.processes_per_key.max(1);
    let mut next_process = (keys * per) as u64;
    let mut state: Vec<KeyState> = (0..keys)
        .map(|k| KeyState {
            value: None,
            slots: (0..per)
                .map(|p| ((k * per + p) as u64, Slot::Idle))
                .collect(),
            ghosts: Vec::new(),
        })
        .collect();
    let key_names: Vec<String> = (0..keys).map(|k| format!("k{k}")).collect();
    let mut index = 0u64;
    let mut time = 0u64;
    let mut invoked = 0usize;
    let values = cfg.values.max(1) as u64;
    let mut push = |time: u64, process: u64, kind: EventType, f: Fun, key: usize, value: Value| {
        // The simulated register compared: a failed cas is a mismatch.
        let mismatch = kind == EventType::Fail && f == Fun::Cas;
        emit(Event {
            index,
            time,
            process: Process::Client(process),
            kind,
            f,
            key: Some(key_names[key].clone()),
            value,
            error: None,
            node: None,
            mismatch,
            not_proposed: false,
        });
        index += 1;
    };
    let fun = |k: Kind| match k {
        Kind::Read => Fun::Read,
        Kind::Write(_) => Fun::Write,
        Kind::Cas(..) => Fun::Cas,
    };
    let arg = |k: Kind| match k {
        Kind::Read => Value::Null,
        Kind::Write(v) => json!(v),
        Kind::Cas(a, b) => json!([a, b]),
    };
    loop {
        let busy = state
            .iter()
            .any(|s| s.slots.iter().any(|(_, sl)| !matches!(sl, Slot::Idle)));
        if invoked >= cfg.ops && !busy {
            break;
        }
        time += 1 + rng.below(1000);
        let k = rng.below(keys as u64) as usize;
        let ks = &mut state[k];
        // Now and then a ghost (an op that completed as info) takes effect.
        if !ks.ghosts.is_empty() && rng.chance(0.05) {
            let g = ks
                .ghosts
                .swap_remove(rng.below(ks.ghosts.len() as u64) as usize);
            if rng.chance(0.5) {
                apply(&mut ks.value, g);
            }
            continue;
        }
        let s = rng.below(per as u64) as usize;
        let (process, slot) = ks.slots[s];
        match slot {
            Slot::Idle => {
                if invoked >= cfg.ops {
                    continue;
                }
                let kind = if rng.chance(cfg.read_rate) {
                    Kind::Read
                } else if rng.chance(cfg.cas_rate / (1.0 - cfg.read_rate).max(1e-9)) {
                    Kind::Cas(rng.below(values) as i64, rng.below(values) as i64)
                } else {
                    Kind::Write(rng.below(values) as i64)
                };
                invoked += 1;
                ks.slots[s].1 = Slot::Invoked(kind);
                push(time, process, EventType::Invoke, fun(kind), k, arg(kind));
            }
            Slot::Invoked(kind) => {
                if kind != Kind::Read && rng.chance(cfg.info_rate) {
                    // The client gives up; the op may still happen later.
                    ks.ghosts.push(kind);
                    push(time, process, EventType::Info, fun(kind), k, arg(kind));
                    ks.slots[s] = (next_process, Slot::Idle);
                    next_process += 1;
                } else {
                    let (read, ok) = apply(&mut ks.value, kind);
                    ks.slots[s].1 = Slot::Applied(kind, read, ok);
                }
            }
            Slot::Applied(kind, read, ok) => {
                let (outcome, value) = match kind {
                    Kind::Read => (EventType::Ok, json!(read)),
                    _ if ok => (EventType::Ok, arg(kind)),
                    _ => (EventType::Fail, arg(kind)),
                };
                push(time, process, outcome, fun(kind), k, value);
                ks.slots[s].1 = Slot::Idle;
            }
        }
    }
}
