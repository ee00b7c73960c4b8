//! Deterministic simulation: a whole cluster of
//! [`Replica`](crate::replica::Replica)s in one thread, driven from a seed.
//!
//! Everything random (message loss, duplication and delay, partitions,
//! crashes, power losses, pauses, clock rates, the workload, the replicas'
//! own timers) comes from one seeded RNG, and all state is iterated in a
//! fixed order, so a seed replays the same run bit for bit.
//!
//! Each node runs the server's own I/O order, not an idealised core: a
//! replica task that handles every input waiting for it as one batch and
//! ships the outputs through [`crate::durability::split`], and a disk
//! thread that takes every waiting group as one set through the same
//! [`Pipeline`](crate::durability::Pipeline) the server runs, idle or
//! busy, with fsyncs that take time.
//! So messages and replies leave exactly when the server would let them:
//! some before the sync of their own batch, some released by the replica
//! task while the disk is busy with an earlier one.
//!
//! The network loses, duplicates, delays (hence reorders) messages and
//! cuts links in one or both directions. A crash is a kill: the node's
//! volatile state goes, with whatever its [`MemStorage`] had appended but
//! not yet flushed; a power loss also drops what was flushed but not
//! synced. A paused node runs nothing, neither its replica task nor its
//! disk thread; messages wait for it. Each node's clock runs at its own
//! rate.
//!
//! Clients (one operation at a time, a fresh process id after an unknown
//! outcome) record a history in the checker's JSON Lines format, as the
//! checker's own [`history::Event`]s. After every step the invariants are checked: at most one
//! value chosen per slot across all replicas and all time, equal applied
//! prefixes, promises that never decrease below one a released message
//! revealed (across restarts too), no ballot proposed by two incarnations
//! of a node, and durability: after every crash, what survived on the disk
//! still holds every record a released message or reply stood on, and
//! after every compaction the log still holds every record appended.
//!
//! # Layout
//!
//! This file holds the run itself: the results, the event queue and the
//! step that dispatches each event. The rest is one file per concern,
//! each an `impl Sim` block:
//!
//! - `node`: the node driver (replica task, disk thread, clock, restarts).
//! - `network`: loss, duplication and delay of released messages.
//! - `clients`: the workload and the history it records.
//! - `faults`: the nemesis and the heal.
//! - `invariants`: the checks run after every step.
//! - [`config`] and [`script`]: what a run is configured with, and
//!   scripted scenarios for regression tests.

mod clients;
pub mod config;
mod faults;
mod invariants;
mod network;
mod node;
pub mod script;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value as Json};
use synod_wire::history::{self, EventType};

use clients::SimClient;
pub use config::{SimBug, SimConfig};
use node::{Queued, SimNode};

use crate::message::Message;
use crate::replica::Input;
use crate::storage::MemStorage;
use crate::types::{Ballot, ClientRequest, Entry, RequestId, Slot, TxnId};

/// Counts for reports and sanity checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub messages: u64,
    pub chosen_slots: u64,
    pub crashes: u64,
    pub events: u64,
    /// Operations invoked after every fault healed (plus a grace period
    /// for a new election) that succeeded.
    pub late_ok: u64,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct SimResult {
    pub seed: u64,
    pub config: SimConfig,
    pub history: Vec<history::Event>,
    /// Broken invariants, with the time and node.
    pub violations: Vec<String>,
    /// Operations invoked well after every fault healed that still did not
    /// succeed (liveness, `proposers=leader`).
    pub late_failures: Vec<String>,
    pub stats: SimStats,
}

impl SimResult {
    /// The history as JSON Lines.
    pub fn history_jsonl(&self) -> String {
        let mut s = String::new();
        for l in &self.history {
            s.push_str(&serde_json::to_string(l).expect("history lines serialize"));
            s.push('\n');
        }
        s
    }
}

/// The command that replays a run exactly.
pub fn replay_command(seed: u64, config: &SimConfig) -> String {
    format!(
        "SYNOD_SIM_SEED={seed} SYNOD_SIM_CONFIG='{config}' cargo test -p synod-node --release --test sim replay -- --nocapture"
    )
}

#[derive(Debug)]
enum Event {
    Tick(usize),
    /// Node `.0`'s replica task wakes and handles its queued inputs (if
    /// still incarnation `.1`).
    Run(usize, u32),
    /// Its disk thread takes every group waiting.
    DiskTake(usize, u32),
    /// Its disk thread's fsync returns.
    DiskSynced(usize, u32),
    /// Its disk thread's lazy sync (or, with `fsync=never`, writeback) timer.
    LazySync(usize, u32),
    Deliver {
        from: usize,
        to: usize,
        msg: Message,
    },
    ClientArrive {
        node: usize,
        req: ClientRequest,
    },
    ClientInvoke(usize),
    ClientTimeout {
        client: usize,
        request: RequestId,
    },
    Nemesis,
    Restart(usize),
    Resume(usize),
    /// During a stall: node `.0` (the leader) stops reaching node `.1`.
    Cut(usize, usize),
    /// The end of a stall: node `.0`, the leader, is cut off entirely.
    Isolate(usize),
    Heal,
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

const TICK_MS: u64 = 5;

/// One simulated run.
pub struct Sim {
    cfg: SimConfig,
    seed: u64,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    /// Directed links cut: `(from, to)`.
    blocked: BTreeSet<(usize, usize)>,
    clients: Vec<SimClient>,
    next_process: u64,
    next_request: RequestId,
    /// Open requests: (node, request) -> client.
    requests: HashMap<(usize, RequestId), usize>,
    history: Vec<history::Event>,
    faulty: bool,
    /// `SYNOD_SIM_TRACE=1`: print every step (for replays).
    trace: bool,
    healed_at: Option<u64>,
    end: u64,
    // Invariant state.
    chosen: HashMap<Slot, Entry>,
    /// Two-phase commit: every (participant, transaction) vote recorded.
    tpc_votes: BTreeSet<(usize, TxnId)>,
    digests: HashMap<Slot, u64>,
    max_promised: Vec<Ballot>,
    /// The highest ballot any node has led with.
    newest_leader: Ballot,
    ballots: HashMap<Ballot, u32>,
    violations: Vec<String>,
    late_failures: Vec<String>,
    stats: SimStats,
}

impl Sim {
    pub fn new(cfg: SimConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = cfg.nodes;
        let mut nodes = Vec::new();
        for _ in 0..n {
            // Log-uniform in [1/(1+skew), 1+skew]: as many slow clocks as
            // fast ones.
            let rate = if cfg.skew > 0.0 {
                (1.0 + cfg.skew).powf(rng.gen_range(-1.0..=1.0))
            } else {
                1.0
            };
            nodes.push(SimNode {
                replica: None,
                incarnation: 0,
                inputs: Vec::new(),
                run_scheduled: false,
                disk_queue: Vec::new(),
                disk_busy: false,
                lazy_scheduled: false,
                pipeline: Self::pipeline(&cfg, MemStorage::new(cfg.fsync)),
                paused_until: 0,
                crash_at_fsync: None,
                rate,
                base_local: rng.gen_range(0..1_000_000),
                base_real: 0,
                emitted: Vec::new(),
                depended_upto: 0,
                claims: Vec::new(),
                beliefs: Vec::new(),
                tpc_commits: Vec::new(),
                applied_states: Vec::new(),
            });
        }
        let clients = (0..cfg.clients)
            .map(|c| SimClient {
                process: c as u64,
                seq: 0,
                pending: None,
            })
            .collect();
        let end = cfg.fault_ms + cfg.heal_ms;
        let mut sim = Sim {
            next_process: cfg.clients as u64,
            cfg,
            seed,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            blocked: BTreeSet::new(),
            clients,
            next_request: 1,
            requests: HashMap::new(),
            history: Vec::new(),
            faulty: true,
            trace: std::env::var_os("SYNOD_SIM_TRACE").is_some(),
            healed_at: None,
            end,
            chosen: HashMap::new(),
            tpc_votes: BTreeSet::new(),
            digests: HashMap::new(),
            max_promised: vec![Ballot::ZERO; n],
            newest_leader: Ballot::ZERO,
            ballots: HashMap::new(),
            violations: Vec::new(),
            late_failures: Vec::new(),
            stats: SimStats::default(),
        };
        if sim.trace {
            for (i, node) in sim.nodes.iter().enumerate() {
                eprintln!("n{} clock rate {:.3}", i + 1, node.rate);
            }
        }
        for i in 0..n {
            sim.start_node(i);
            let first = sim.rng.gen_range(0..TICK_MS);
            sim.schedule(first, Event::Tick(i));
        }
        for c in 0..sim.cfg.clients {
            let at = sim.rng.gen_range(0..50);
            sim.schedule(at, Event::ClientInvoke(c));
        }
        sim.schedule(100, Event::Nemesis);
        let heal = sim.cfg.fault_ms;
        sim.schedule(heal, Event::Heal);
        sim
    }

    fn schedule(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: self.now + delay,
            seq: self.seq,
            event,
        }));
    }

    /// Runs to the end and returns what happened.
    pub fn run(mut self) -> SimResult {
        let stop = self.end + 3 * self.cfg.heal_ms.max(2000);
        while let Some(Reverse(s)) = self.queue.pop() {
            if s.at > stop {
                break;
            }
            self.now = s.at;
            self.stats.events += 1;
            self.step(s.event);
            if self.now > self.end && self.clients.iter().all(|c| c.pending.is_none()) {
                break;
            }
        }
        for c in 0..self.clients.len() {
            if self.clients[c].pending.is_some() {
                self.complete(c, EventType::Info, Json::Null, Some("run ended".into()));
            }
        }
        // Dropped invocations (never-proposed cas) leave gaps: renumber.
        for (i, l) in self.history.iter_mut().enumerate() {
            l.index = i as u64;
        }
        SimResult {
            seed: self.seed,
            config: self.cfg,
            history: self.history,
            violations: self.violations,
            late_failures: self.late_failures,
            stats: self.stats,
        }
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Tick(i) => {
                self.schedule(TICK_MS, Event::Tick(i));
                if self.running(i) {
                    self.enqueue(i, Queued::Tick);
                }
            }
            Event::Run(i, inc) => {
                if self.current(i, inc) && self.wait_for_resume(i, Event::Run(i, inc)) {
                    self.run_replica(i);
                }
            }
            Event::DiskTake(i, inc) => {
                if self.current(i, inc) && self.wait_for_resume(i, Event::DiskTake(i, inc)) {
                    self.disk_take(i);
                }
            }
            Event::DiskSynced(i, inc) => {
                if self.current(i, inc) && self.wait_for_resume(i, Event::DiskSynced(i, inc)) {
                    self.disk_synced(i);
                }
            }
            Event::LazySync(i, inc) => {
                if self.current(i, inc) && self.wait_for_resume(i, Event::LazySync(i, inc)) {
                    self.lazy_sync(i);
                }
            }
            // A paused node's socket buffers still take messages and
            // requests: they wait in its queue for the replica task, which
            // runs once the node resumes (`wait_for_resume`).
            Event::Deliver { from, to, msg } => {
                if self.nodes[to].replica.is_none() || self.blocked.contains(&(from, to)) {
                    return;
                }
                let from = from as u64 + 1;
                self.enqueue(to, Queued::Input(Input::Message { from, msg }));
            }
            Event::ClientArrive { node, req } => {
                if self.nodes[node].replica.is_none() {
                    return;
                }
                self.enqueue(node, Queued::Input(Input::Client(req)));
            }
            Event::ClientInvoke(c) => self.invoke(c),
            Event::ClientTimeout { client, request } => {
                let open = self.clients[client]
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.request == request);
                if open {
                    self.complete(
                        client,
                        EventType::Info,
                        Json::Null,
                        Some("client timeout".into()),
                    );
                }
            }
            Event::Nemesis => self.nemesis(),
            Event::Restart(i) => {
                if self.nodes[i].replica.is_none() {
                    self.start_node(i);
                    self.nemesis_line("stop-crash", json!({"node": format!("n{}", i + 1)}));
                }
            }
            Event::Resume(i) => {
                if self.nodes[i].paused_until <= self.now && self.nodes[i].paused_until > 0 {
                    self.nodes[i].paused_until = 0;
                    self.nemesis_line("stop-pause", json!({"node": format!("n{}", i + 1)}));
                }
            }
            Event::Cut(l, f) => {
                if self.faulty {
                    self.blocked.insert((l, f));
                }
            }
            Event::Isolate(l) => {
                if self.faulty {
                    self.blocked.clear();
                    for b in (0..self.cfg.nodes).filter(|&b| b != l) {
                        self.blocked.insert((l, b));
                        self.blocked.insert((b, l));
                    }
                    let isolated = [format!("n{}", l + 1)];
                    self.nemesis_line("start-partition", json!({ "isolated": isolated }));
                }
            }
            Event::Heal => self.heal(),
        }
    }
}

/// Runs one seed of one configuration.
pub fn run(cfg: &SimConfig, seed: u64) -> SimResult {
    Sim::new(cfg.clone(), seed).run()
}
