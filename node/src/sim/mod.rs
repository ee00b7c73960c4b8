//! Deterministic simulation: a whole cluster of [`Replica`]s in one thread,
//! driven from a seed.
//!
//! Everything random (message loss, duplication and delay, partitions,
//! crashes, power losses, pauses, clock rates, the workload, the replicas'
//! own timers) comes from one seeded RNG, and all state is iterated in a
//! fixed order, so a seed replays the same run bit for bit.
//!
//! The network loses, duplicates, delays (hence reorders) messages and
//! cuts links in one or both directions. A crash drops a node's volatile
//! state; its [`MemStorage`] keeps what was written, or only what was
//! synced on a power loss. A paused node runs nothing; messages wait for
//! it. Each node's clock runs at its own rate.
//!
//! Clients (one operation at a time, a fresh process id after an unknown
//! outcome) record a history in the checker's JSON Lines format
//! ([`HistLine`]). After every step the invariants are checked: at most one
//! value chosen per slot across all replicas and all time, equal applied
//! prefixes, promises that never decrease (across restarts too), and no
//! ballot proposed by two incarnations of a node.

pub mod config;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value as Json};

pub use config::SimConfig;

use crate::config::{Config, Proposers};
use crate::message::Message;
use crate::replica::{Input, Outputs, Replica};
use crate::storage::{MemStorage, Record, Storage};
use crate::types::{Ballot, ClientRequest, ClientSeq, Entry, Op, Outcome, RequestId, Slot, Value};

/// One history line, serialized exactly as `docs/history.md` says.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistLine {
    pub index: u64,
    /// Nanoseconds since the run started.
    pub time: u64,
    /// A client number, or `"nemesis"`.
    pub process: Json,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub f: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

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
    pub history: Vec<HistLine>,
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

struct SimNode {
    replica: Option<Replica>,
    disk: MemStorage,
    incarnation: u32,
    /// Nothing runs before this time.
    paused_until: u64,
    /// The clock reads `base_local + (now - base_real) * rate`.
    rate: f64,
    base_local: u64,
    base_real: u64,
}

struct Pending {
    f: &'static str,
    key: String,
    value: Json,
    node: usize,
    request: RequestId,
    invoked_at: u64,
}

struct SimClient {
    process: u64,
    seq: u64,
    pending: Option<Pending>,
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
    history: Vec<HistLine>,
    faulty: bool,
    /// `SYNOD_SIM_TRACE=1`: print every step (for replays).
    trace: bool,
    healed_at: Option<u64>,
    end: u64,
    // Invariant state.
    chosen: HashMap<Slot, Entry>,
    digests: HashMap<Slot, u64>,
    max_promised: Vec<Ballot>,
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
                disk: MemStorage::new(cfg.fsync),
                incarnation: 0,
                paused_until: 0,
                rate,
                base_local: rng.gen_range(0..1_000_000),
                base_real: 0,
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
            digests: HashMap::new(),
            max_promised: vec![Ballot::ZERO; n],
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

    /// The protocol configuration of node `i`, tuned for simulation: small
    /// batches and windows, frequent snapshots, so every path is exercised.
    pub fn node_config(cfg: &SimConfig, i: usize) -> Config {
        let members = (1..=cfg.nodes as u64).collect();
        let mut c = Config::new(i as u64 + 1, members);
        c.proposers = cfg.proposers;
        c.learn = cfg.learn;
        c.reads = cfg.reads;
        c.fsync = cfg.fsync;
        c.batch_size = 4;
        c.pipeline = 4;
        c.snapshot_every = 40;
        c.catch_up_batch = 16;
        c.bug_ignore_promised_values = cfg.bug;
        c
    }

    fn schedule(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: self.now + delay,
            seq: self.seq,
            event,
        }));
    }

    fn clock(&self, i: usize) -> u64 {
        let n = &self.nodes[i];
        n.base_local + ((self.now - n.base_real) as f64 * n.rate) as u64
    }

    /// Draws a clock rate log-uniformly in `[1/(1+skew), 1+skew]`.
    fn draw_rate(&mut self) -> f64 {
        if self.cfg.skew > 0.0 {
            (1.0 + self.cfg.skew).powf(self.rng.gen_range(-1.0..=1.0))
        } else {
            1.0
        }
    }

    fn start_node(&mut self, i: usize) {
        let cfg = Self::node_config(&self.cfg, i);
        let recovered = match self.nodes[i].disk.load() {
            Ok(r) => r,
            Err(e) => unreachable!("the memory disk cannot fail: {e}"),
        };
        let seed = self.rng.gen();
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.replica = Some(Replica::recover(cfg, seed, recovered, now));
        self.check_node(i, &Outputs::default());
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
                self.complete(c, "info", Json::Null, Some("run ended".into()));
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

    fn running(&self, i: usize) -> bool {
        self.nodes[i].replica.is_some() && self.now >= self.nodes[i].paused_until
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Tick(i) => {
                self.schedule(TICK_MS, Event::Tick(i));
                if self.running(i) {
                    let now = self.clock(i);
                    self.drive(i, Input::Tick { now });
                }
            }
            Event::Deliver { from, to, msg } => {
                if self.nodes[to].replica.is_none() || self.blocked.contains(&(from, to)) {
                    return;
                }
                if !self.running(to) {
                    let wait = self.nodes[to].paused_until - self.now;
                    self.schedule(wait, Event::Deliver { from, to, msg });
                    return;
                }
                self.drive(
                    to,
                    Input::Message {
                        from: from as u64 + 1,
                        msg,
                    },
                );
            }
            Event::ClientArrive { node, req } => {
                if self.nodes[node].replica.is_none() {
                    return;
                }
                if !self.running(node) {
                    let wait = self.nodes[node].paused_until - self.now;
                    self.schedule(wait, Event::ClientArrive { node, req });
                    return;
                }
                self.drive(node, Input::Client(req));
            }
            Event::ClientInvoke(c) => self.invoke(c),
            Event::ClientTimeout { client, request } => {
                let open = self.clients[client]
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.request == request);
                if open {
                    self.complete(client, "info", Json::Null, Some("client timeout".into()));
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
            Event::Heal => self.heal(),
        }
    }

    /// Hands one input to node `i` and carries out its outputs.
    fn drive(&mut self, i: usize, input: Input) {
        let trace = self.trace;
        let out = {
            let Some(r) = self.nodes[i].replica.as_mut() else {
                return;
            };
            let before = trace.then(|| r.status());
            let what = trace.then(|| describe(&input));
            let out = r.handle(input);
            if let (Some(b), Some(what)) = (before, what) {
                let a = r.status();
                let sends: Vec<String> = out
                    .send
                    .iter()
                    .map(|(to, m)| format!("{}->n{to}", m.kind()))
                    .collect();
                eprintln!(
                    "{:>6}ms n{} {what} | {:?}/{} commit {} leader {:?} -> {:?}/{} commit {} leader {:?} | {sends:?} replies {}",
                    self.now,
                    i + 1,
                    b.role,
                    b.ballot,
                    b.commit_index,
                    b.leader,
                    a.role,
                    a.ballot,
                    a.commit_index,
                    a.leader,
                    out.replies.len()
                );
            }
            out
        };
        // Persist before send: append, sync (group commit of this step).
        let disk = &mut self.nodes[i].disk;
        if let Err(e) = disk.append(&out.persist).and_then(|()| disk.sync()) {
            unreachable!("the memory disk cannot fail: {e}");
        }
        if let Some(c) = &out.compact {
            if let Err(e) = disk.compact(c) {
                unreachable!("the memory disk cannot fail: {e}");
            }
        }
        self.check_node(i, &out);
        for (to, msg) in out.send {
            self.transmit(i, (to - 1) as usize, msg);
        }
        for reply in out.replies {
            if let Some(c) = self.requests.remove(&(i, reply.id)) {
                self.on_reply(c, reply.id, reply.outcome);
            }
        }
    }

    fn transmit(&mut self, from: usize, to: usize, msg: Message) {
        self.stats.messages += 1;
        if self.blocked.contains(&(from, to)) {
            return;
        }
        if self.faulty && self.rng.gen_range(0..100) < self.cfg.loss {
            return;
        }
        if self.faulty && self.rng.gen_range(0..100) < self.cfg.dup {
            let d = self.rng.gen_range(1..=self.cfg.delay_ms);
            self.schedule(
                d,
                Event::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
        let d = self.rng.gen_range(1..=self.cfg.delay_ms);
        self.schedule(d, Event::Deliver { from, to, msg });
    }

    // ----- invariants ---------------------------------------------------

    fn violation(&mut self, i: usize, what: String) {
        if self.violations.len() < 20 {
            self.violations
                .push(format!("t={}ms node {}: {what}", self.now, i + 1));
        }
    }

    fn check_node(&mut self, i: usize, out: &Outputs) {
        for rec in &out.persist {
            if let Record::Chosen { slot, entry } = rec {
                self.stats.chosen_slots += 1;
                match self.chosen.get(slot) {
                    Some(e) if e != entry => {
                        let msg =
                            format!("two values chosen in slot {slot}: {e:?} and now {entry:?}");
                        self.violation(i, msg);
                    }
                    Some(_) => {}
                    None => {
                        self.chosen.insert(*slot, entry.clone());
                    }
                }
            }
        }
        let incarnation = self.nodes[i].incarnation;
        for (_, msg) in &out.send {
            if let Message::Prepare { ballot, .. } = msg {
                if ballot.node != i as u64 + 1 {
                    self.violation(i, format!("prepares with another node's ballot {ballot}"));
                }
                match self.ballots.get(ballot) {
                    Some(&inc) if inc != incarnation => {
                        let msg =
                            format!("ballot {ballot} reused by incarnation {incarnation} (first used by {inc})");
                        self.violation(i, msg);
                    }
                    Some(_) => {}
                    None => {
                        self.ballots.insert(*ballot, incarnation);
                    }
                }
            }
        }
        let Some(r) = &self.nodes[i].replica else {
            return;
        };
        let promised = r.promised();
        let (applied, digest) = (r.state().applied, r.state().digest);
        if promised < self.max_promised[i] {
            let msg = format!(
                "promise went down from {} to {promised}",
                self.max_promised[i]
            );
            self.violation(i, msg);
        }
        self.max_promised[i] = self.max_promised[i].max(promised);
        if applied > 0 {
            match self.digests.get(&applied) {
                Some(&d) if d != digest => {
                    self.violation(i, format!("applied prefix up to slot {applied} differs"))
                }
                Some(_) => {}
                None => {
                    self.digests.insert(applied, digest);
                }
            }
        }
    }

    // ----- clients ------------------------------------------------------

    fn invoke(&mut self, c: usize) {
        if self.now >= self.end || self.clients[c].pending.is_some() {
            return;
        }
        let node = self.rng.gen_range(0..self.cfg.nodes);
        let key = format!("k{}", self.rng.gen_range(0..self.cfg.keys));
        let roll = self.rng.gen_range(0..100);
        let (f, op, value) = if roll < 40 {
            ("read", Op::Read { key: key.clone() }, Json::Null)
        } else if roll < 75 {
            let v = self.rng.gen_range(0..5);
            (
                "write",
                Op::Write {
                    key: key.clone(),
                    value: Value::Int(v),
                },
                json!(v),
            )
        } else {
            let (e, n) = (self.rng.gen_range(0..5), self.rng.gen_range(0..5));
            (
                "cas",
                Op::Cas {
                    key: key.clone(),
                    expected: Value::Int(e),
                    new: Value::Int(n),
                },
                json!([e, n]),
            )
        };
        let request = self.next_request;
        self.next_request += 1;
        let client = &mut self.clients[c];
        client.seq += 1;
        let req = ClientRequest {
            id: request,
            dedup: Some(ClientSeq {
                client: client.process,
                seq: client.seq,
            }),
            op,
        };
        let process = client.process;
        client.pending = Some(Pending {
            f,
            key: key.clone(),
            value: value.clone(),
            node,
            request,
            invoked_at: self.now,
        });
        self.requests.insert((node, request), c);
        self.line(
            json!(process),
            "invoke",
            f,
            Some(key),
            value,
            None,
            Some(node),
        );
        self.schedule(1, Event::ClientArrive { node, req });
        let timeout = Self::node_config(&self.cfg, 0).request_timeout_ms + 300;
        self.schedule(timeout, Event::ClientTimeout { client: c, request });
    }

    fn on_reply(&mut self, c: usize, request: RequestId, outcome: Outcome) {
        let Some(p) = &self.clients[c].pending else {
            return;
        };
        if p.request != request {
            return;
        }
        match outcome {
            Outcome::Ok { value } => {
                let v = match p.f {
                    "read" => value.map_or(Json::Null, |v| v.to_json()),
                    _ => p.value.clone(),
                };
                self.complete(c, "ok", v, None);
            }
            Outcome::CasMismatch { found } => {
                let why = format!("cas-mismatch: found {found:?}");
                let v = p.value.clone();
                self.complete(c, "fail", v, Some(why));
            }
            Outcome::NotProposed { reason } => {
                if p.f == "cas" {
                    // A failed cas tells the checker the key did not hold
                    // the expected value; a cas never proposed says
                    // nothing. It definitely did not happen, so it is
                    // dropped from the history altogether.
                    self.drop_open_invoke(c);
                } else {
                    let v = p.value.clone();
                    self.complete(c, "fail", v, Some(format!("not-proposed: {reason}")));
                }
            }
            Outcome::Indeterminate { reason } => {
                let v = p.value.clone();
                self.complete(c, "info", v, Some(format!("indeterminate: {reason}")));
            }
        }
    }

    fn drop_open_invoke(&mut self, c: usize) {
        let Some(p) = self.clients[c].pending.take() else {
            return;
        };
        let process = json!(self.clients[c].process);
        if let Some(pos) = self
            .history
            .iter()
            .rposition(|l| l.process == process && l.kind == "invoke")
        {
            self.history.remove(pos);
        }
        self.stats.fail += 1;
        self.note_liveness(&p, "fail");
        let think = self.rng.gen_range(0..=10);
        self.schedule(think, Event::ClientInvoke(c));
    }

    fn note_liveness(&mut self, p: &Pending, kind: &str) {
        let grace = 1200;
        let late = self.healed_at.is_some_and(|h| p.invoked_at >= h + grace);
        if late && kind == "ok" {
            self.stats.late_ok += 1;
        }
        if self.cfg.proposers == Proposers::Leader && kind != "ok" && late {
            self.late_failures.push(format!(
                "{} on {} at node n{} invoked t={}ms (healed at {:?}) ended {kind}",
                p.f,
                p.key,
                p.node + 1,
                p.invoked_at,
                self.healed_at
            ));
        }
    }

    fn complete(&mut self, c: usize, kind: &'static str, value: Json, error: Option<String>) {
        let Some(p) = self.clients[c].pending.take() else {
            return;
        };
        self.requests.remove(&(p.node, p.request));
        let process = self.clients[c].process;
        // A cas that compared and failed is fine for liveness.
        let live_kind = if kind == "fail"
            && error
                .as_deref()
                .is_some_and(|e| e.starts_with("cas-mismatch"))
        {
            "ok"
        } else {
            kind
        };
        self.note_liveness(&p, live_kind);
        let f = p.f;
        self.line(
            json!(process),
            kind,
            f,
            Some(p.key),
            value,
            error,
            Some(p.node),
        );
        match kind {
            "ok" => self.stats.ok += 1,
            "fail" => self.stats.fail += 1,
            _ => {
                self.stats.info += 1;
                // An unknown outcome retires the process.
                self.clients[c].process = self.next_process;
                self.next_process += 1;
                self.clients[c].seq = 0;
            }
        }
        let think = self.rng.gen_range(0..=10);
        self.schedule(think, Event::ClientInvoke(c));
    }

    #[allow(clippy::too_many_arguments)]
    fn line(
        &mut self,
        process: Json,
        kind: &'static str,
        f: &str,
        key: Option<String>,
        value: Json,
        error: Option<String>,
        node: Option<usize>,
    ) {
        let index = self.history.len() as u64;
        self.history.push(HistLine {
            index,
            time: self.now * 1_000_000,
            process,
            kind,
            f: f.to_string(),
            key,
            value,
            error,
            node: node.map(|n| format!("n{}", n + 1)),
        });
    }

    fn nemesis_line(&mut self, f: &str, value: Json) {
        self.line(json!("nemesis"), "info", f, None, value, None, None);
    }

    // ----- the nemesis --------------------------------------------------

    fn nemesis(&mut self) {
        if !self.faulty {
            return;
        }
        let next = self.rng.gen_range(100..400);
        self.schedule(next, Event::Nemesis);
        let n = self.cfg.nodes;
        let mut actions = Vec::new();
        if self.cfg.partitions {
            actions.extend(["partition", "heal"]);
        }
        if self.cfg.one_way {
            actions.extend(["one-way", "heal"]);
        }
        if self.cfg.crashes {
            actions.push("crash");
        }
        if self.cfg.pauses {
            actions.push("pause");
        }
        if self.cfg.clock {
            actions.push("clock");
        }
        if actions.is_empty() {
            return;
        }
        let action = actions[self.rng.gen_range(0..actions.len())];
        let name = |i: usize| format!("n{}", i + 1);
        match action {
            "partition" => {
                self.blocked.clear();
                let mut side: Vec<usize> = (0..n).collect();
                // Isolate one node, or split into a minority and majority.
                let k = if self.rng.gen_bool(0.5) {
                    1
                } else {
                    self.rng.gen_range(1..=n / 2)
                };
                for j in 0..n {
                    let r = self.rng.gen_range(j..n);
                    side.swap(j, r);
                }
                let mut minority: Vec<usize> = side[..k].to_vec();
                // Half the time, isolate the leader (the most telling fault).
                if self.rng.gen_bool(0.5) {
                    if let Some(l) = self.leader() {
                        minority = vec![l];
                    }
                }
                for &a in &minority {
                    for b in 0..n {
                        if !minority.contains(&b) {
                            self.blocked.insert((a, b));
                            self.blocked.insert((b, a));
                        }
                    }
                }
                let names: Vec<String> = minority.iter().map(|&i| name(i)).collect();
                self.nemesis_line("start-partition", json!({ "isolated": names }));
            }
            "one-way" => {
                self.blocked.clear();
                let a = self.rng.gen_range(0..n);
                let deaf = self.rng.gen_bool(0.5);
                let mut cut = Vec::new();
                for b in 0..n {
                    if b != a && self.rng.gen_bool(0.7) {
                        // `a` is not heard by b (or cannot hear b).
                        let link = if deaf { (b, a) } else { (a, b) };
                        self.blocked.insert(link);
                        cut.push(format!("{}->{}", name(link.0), name(link.1)));
                    }
                }
                self.nemesis_line("start-partition", json!({ "one-way": cut }));
            }
            "heal" => {
                if !self.blocked.is_empty() {
                    self.blocked.clear();
                    self.nemesis_line("stop-partition", Json::Null);
                }
            }
            "crash" => {
                let up: Vec<usize> = (0..n)
                    .filter(|&i| self.nodes[i].replica.is_some())
                    .collect();
                if up.is_empty() {
                    return;
                }
                let i = up[self.rng.gen_range(0..up.len())];
                let power = self.cfg.power_loss && self.rng.gen_bool(0.5);
                self.nodes[i].replica = None;
                self.nodes[i].paused_until = 0;
                if power {
                    self.nodes[i].disk.power_loss();
                }
                self.stats.crashes += 1;
                let lost = self.requests.keys().filter(|(node, _)| *node == i).count();
                self.nemesis_line(
                    "start-crash",
                    json!({"node": name(i), "power-loss": power, "requests-lost": lost}),
                );
                let back = self.rng.gen_range(20..400);
                self.schedule(back, Event::Restart(i));
            }
            "pause" => {
                let up: Vec<usize> = (0..n).filter(|&i| self.running(i)).collect();
                if up.is_empty() {
                    return;
                }
                let i = up[self.rng.gen_range(0..up.len())];
                let d = self.rng.gen_range(20..400);
                self.nodes[i].paused_until = self.now + d;
                self.nemesis_line("start-pause", json!({"node": name(i)}));
                self.schedule(d, Event::Resume(i));
            }
            "clock" => {
                // A node's clock changes pace (continuously: no jumps).
                let i = self.rng.gen_range(0..n);
                let local = self.clock(i);
                let rate = self.draw_rate();
                let node = &mut self.nodes[i];
                node.base_local = local;
                node.base_real = self.now;
                node.rate = rate;
                self.nemesis_line("clock-rate", json!({"node": name(i), "rate": rate}));
            }
            other => unreachable!("unknown nemesis action {other}"),
        }
    }

    /// The running node that believes it leads with the highest ballot.
    fn leader(&self) -> Option<usize> {
        (0..self.cfg.nodes)
            .filter_map(|i| {
                let r = self.nodes[i].replica.as_ref()?;
                r.is_leader().then(|| (r.promised(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Ends every fault: links healed, nodes restarted and resumed, the
    /// network reliable (still delaying).
    fn heal(&mut self) {
        self.faulty = false;
        self.healed_at = Some(self.now);
        if !self.blocked.is_empty() {
            self.blocked.clear();
            self.nemesis_line("stop-partition", Json::Null);
        }
        for i in 0..self.cfg.nodes {
            if self.nodes[i].paused_until > self.now {
                self.nodes[i].paused_until = 0;
                self.nemesis_line("stop-pause", json!({"node": format!("n{}", i + 1)}));
            }
            if self.nodes[i].replica.is_none() {
                self.start_node(i);
                self.nemesis_line("stop-crash", json!({"node": format!("n{}", i + 1)}));
            }
        }
    }
}

fn describe(input: &Input) -> String {
    match input {
        Input::Message { from, msg } => match msg {
            Message::Accept { ballot, slot, .. } => format!("accept {ballot} s{slot} from n{from}"),
            Message::Accepted { ballot, slot, .. } => {
                format!("accepted {ballot} s{slot} from n{from}")
            }
            Message::Forward { commands } => {
                let ids: Vec<u64> = commands.iter().map(|c| c.id.request).collect();
                format!("forward {ids:?} from n{from}")
            }
            m => format!("{} from n{from}", m.kind()),
        },
        Input::Tick { .. } => "tick".into(),
        Input::Client(r) => format!("client request {} {:?}", r.id, r.op),
    }
}

/// Runs one seed of one configuration.
pub fn run(cfg: &SimConfig, seed: u64) -> SimResult {
    Sim::new(cfg.clone(), seed).run()
}
