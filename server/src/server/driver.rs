//! The replica task: the one owner of the protocol state.
//!
//! HTTP handlers, the tick timer and admin hooks send [`Event`]s down one
//! channel; this task feeds them to [`Replica::handle_into`] and, after
//! each batch of events, ships what came out as one [`Group`](synod_node::durability::Group) to the disk
//! side, which persists it and then releases its messages and replies (the
//! disk thread, or this task itself when nothing is ahead of the group:
//! see [`Inline`]).
//! No lock guards protocol state: only this task touches the replica.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use synod_node::replica::RoleName;
use synod_node::{
    Ballot, ClientRequest, ClientSeq, Input, KvOp, Message, NodeId, Outputs, Replica, RequestId,
    RequestOutcome, Status,
};
use tokio::sync::{mpsc, oneshot};

use synod_node::durability;

use super::clock::NodeClock;
use super::disk::{deliver, Durable, Group, Inline};
use super::metrics::Metrics;
use super::peers::Peers;

/// How often the core hears the time. Timers (heartbeats every 50 ms,
/// elections after 300+ ms, request deadlines) are multiples of this.
pub const TICK: Duration = Duration::from_millis(5);

/// Most events handled before their outputs are shipped: bounds the
/// latency one busy batch adds to the first event in it.
const MAX_EVENTS_PER_GROUP: usize = 1024;

/// Something for the replica task to do.
pub enum Event {
    Peer {
        from: NodeId,
        messages: Vec<Message>,
    },
    Client {
        op: KvOp,
        dedup: Option<ClientSeq>,
        reply: oneshot::Sender<RequestOutcome>,
    },
    Status(oneshot::Sender<StatusView>),
    SetClock {
        offset_ms: i64,
        rate: f64,
        reply: oneshot::Sender<u64>,
    },
}

/// `GET /admin/status`: the core's status plus what the shell knows.
#[derive(Debug, Serialize)]
pub struct StatusView {
    #[serde(flatten)]
    pub status: Status,
    /// Bytes of records in the log file (not its preallocated zeros).
    pub log_bytes: u64,
    /// Running hash of everything applied: equal on replicas with equal
    /// applied prefixes.
    pub digest: u64,
    /// Keys in the state machine.
    pub keys: usize,
    /// The node's clock (ms) and its skew.
    pub clock_ms: u64,
    pub clock_offset_ms: i64,
    pub clock_rate: f64,
}

pub struct Driver {
    pub replica: Replica,
    pub clock: NodeClock,
    pub disk: Inline,
    pub metrics: Arc<Metrics>,
    peers: Peers,
    /// The disk thread's durable point: outputs it covers leave from here.
    durable: Durable,
    /// Clients waiting for the core's answer, by the id the core knows.
    waiters: HashMap<RequestId, oneshot::Sender<RequestOutcome>>,
    next_request: RequestId,
    /// Reused between batches (the core appends to it).
    out: Outputs,
    last_role: RoleName,
    last_leader: Option<NodeId>,
    last_ballot: Ballot,
    /// Whether the last [`Driver::ship`] sent anything at once.
    released_now: bool,
    /// Test-only (`--test-core-panic-after-ms`): panic this long after
    /// starting, to prove the process exits rather than lingers.
    pub panic_after: Option<Duration>,
}

impl Driver {
    pub fn new(
        replica: Replica,
        clock: NodeClock,
        disk: Inline,
        metrics: Arc<Metrics>,
        peers: Peers,
        durable: Durable,
    ) -> Self {
        let s = replica.status();
        Driver {
            replica,
            clock,
            disk,
            metrics,
            peers,
            durable,
            waiters: HashMap::new(),
            next_request: 1,
            out: Outputs::default(),
            last_role: s.role,
            last_leader: s.leader,
            last_ballot: s.ballot,
            released_now: false,
            panic_after: None,
        }
    }

    /// Runs until every event sender is gone; then the disk thread gets
    /// the last group and finishes.
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_tick = self.clock.now_ms();
        let panic_at = self.panic_after.map(|d| tokio::time::Instant::now() + d);
        loop {
            tokio::select! {
                _ = async { tokio::time::sleep_until(panic_at.unwrap_or_else(tokio::time::Instant::now)).await }, if panic_at.is_some() => {
                    panic!("test-only panic of the replica task (--test-core-panic-after-ms)");
                }
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_event(ev);
                    let mut n = 1;
                    while n < MAX_EVENTS_PER_GROUP {
                        match events.try_recv() {
                            Ok(ev) => self.on_event(ev),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                    // Under a steady stream of events the timer branch may
                    // lose the race; time must still advance.
                    let now = self.clock.now_ms();
                    if now >= last_tick + TICK.as_millis() as u64 {
                        last_tick = now;
                        self.replica.handle_into(Input::Tick { now }, &mut self.out);
                    }
                }
                _ = tick.tick() => {
                    let now = self.clock.now_ms();
                    last_tick = now;
                    self.replica.handle_into(Input::Tick { now }, &mut self.out);
                }
            }
            if let Some(group) = self.ship() {
                if self.released_now {
                    // Let the peer links and HTTP connections write what
                    // just left before the disk thread wakes: woken first,
                    // it can take this thread's core and hold a leader's
                    // accepts (or a reply) back for the length of its own
                    // wake-up. What waits in the group waits for the disk
                    // anyway, and the leader's own fsync runs in parallel
                    // with the followers' round trip.
                    tokio::task::yield_now().await;
                }
                self.disk.hand_on(group);
            }
        }
        if let Some(group) = self.ship() {
            self.disk.hand_on(group);
        }
        tracing::info!("replica task stopped");
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Peer { from, messages } => {
                for msg in messages {
                    self.replica
                        .handle_into(Input::Message { from, msg }, &mut self.out);
                }
            }
            Event::Client { op, dedup, reply } => {
                let id = self.next_request;
                self.next_request += 1;
                self.waiters.insert(id, reply);
                self.replica.handle_into(
                    Input::Client(ClientRequest { id, dedup, op }),
                    &mut self.out,
                );
            }
            Event::Status(reply) => {
                let (offset, rate) = self.clock.skew();
                let kv = self.replica.state();
                let _ = reply.send(StatusView {
                    status: self.replica.status(),
                    log_bytes: self.metrics.log_bytes.load(Relaxed),
                    digest: kv.digest,
                    keys: kv.map.len(),
                    clock_ms: self.clock.now_ms(),
                    clock_offset_ms: offset,
                    clock_rate: rate,
                });
            }
            Event::SetClock {
                offset_ms,
                rate,
                reply,
            } => {
                self.clock.set(offset_ms, rate);
                let now = self.clock.now_ms();
                tracing::info!(offset_ms, rate, now, "clock skew set");
                self.replica.handle_into(Input::Tick { now }, &mut self.out);
                let _ = reply.send(now);
            }
        }
    }

    /// Hands the outputs gathered since the last call on: what the disk
    /// thread's durable point already covers leaves from here at once (a
    /// write's path loses a thread hop), the rest comes back with the
    /// records as the group for the disk thread. The rule is
    /// `durability::split`'s, which the simulation runs too.
    fn ship(&mut self) -> Option<Group> {
        self.observe();
        self.released_now = false;
        self.metrics
            .slots_chosen
            .fetch_add(self.out.chosen.len() as u64, Relaxed);
        let waiters = &mut self.waiters;
        let peers = &self.peers;
        let released_now = &mut self.released_now;
        durability::split(
            &mut self.out,
            self.durable.get(),
            |r| match waiters.remove(&r.id) {
                Some(tx) => Some((tx, r.outcome)),
                None => {
                    tracing::warn!(request = r.id, "the core answered an unknown request");
                    None
                }
            },
            |r, _| {
                *released_now = true;
                deliver(peers, r)
            },
        )
    }

    /// Elections and leader changes, seen from outside the core.
    fn observe(&mut self) {
        let s = self.replica.status();
        // A campaign is a new own ballot while a candidate (a candidate
        // that retries campaigns again with a higher one).
        let campaigning = s.role == RoleName::Candidate
            && s.ballot.node == s.id
            && (self.last_role != RoleName::Candidate || s.ballot != self.last_ballot);
        if campaigning {
            self.metrics.elections.fetch_add(1, Relaxed);
        }
        self.last_ballot = s.ballot;
        if s.role != self.last_role {
            match s.role {
                RoleName::Candidate => {}
                RoleName::Leader => {
                    self.metrics.elections_won.fetch_add(1, Relaxed);
                    tracing::info!(ballot = %s.ballot, "elected leader");
                }
                RoleName::Follower => {}
            }
            if self.last_role == RoleName::Leader {
                tracing::info!(ballot = %s.ballot, "no longer leader");
            }
            self.last_role = s.role;
        }
        if s.leader != self.last_leader {
            if s.leader.is_some() {
                self.metrics.leader_changes.fetch_add(1, Relaxed);
                tracing::info!(leader = ?s.leader, "leader changed");
            }
            self.last_leader = s.leader;
        }
        self.metrics.role.store(
            match s.role {
                RoleName::Follower => 0,
                RoleName::Candidate => 1,
                RoleName::Leader => 2,
            },
            Relaxed,
        );
        self.metrics.commit_index.store(s.commit_index, Relaxed);
        self.metrics.applied_index.store(s.applied_index, Relaxed);
        self.metrics.ballot_round.store(s.ballot.round, Relaxed);
    }
}
