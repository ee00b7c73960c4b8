//! The nemesis: keeps the faults in force as data, re-applies their sum to
//! the cluster idempotently after every change, runs a schedule of faults
//! drawn from a seed (one [`Step`] at a time: a fault, or several started
//! together), moves the faults that move while they hold
//! ([`Nemesis::hold`]), and records every start, change and stop as an
//! event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::admin::Admin;
use crate::backend::{Backend, Link, NodeName};
use crate::error::Result;
use crate::fault::{Desired, Fault, FaultKind, Skew, Step};

/// A fault started or stopped, for the history (`"process":"nemesis"`,
/// `"type":"info"`).
#[derive(Clone, Debug, PartialEq)]
pub struct NemesisEvent {
    /// `start-partition`, `stop-kill`, ...
    pub f: String,
    /// The targets, e.g. `{"killed":["n2"]}`.
    pub value: Value,
}

/// Where the nemesis reports its events; the bench stamps and records them.
pub type EventSink = Box<dyn Fn(NemesisEvent) + Send + Sync>;

/// When and what to break.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The steps to choose from, uniformly; empty means no faults.
    pub steps: Vec<Step>,
    /// Quiet time before each fault, and how long each fault holds.
    pub interval: Duration,
    /// Seeds the choice of faults and targets.
    pub seed: u64,
}

/// Fault injection over a [`Backend`].
pub struct Nemesis<B: Backend> {
    backend: Arc<B>,
    admin: Admin,
    /// Targets and kinds come from here, so a seed replays a run's faults.
    rng: ChaCha8Rng,
    /// The faults in force, in the order they started.
    active: Vec<Fault>,
    /// The clocks as last set on each node, so only changes are sent.
    clocks: BTreeMap<NodeName, Skew>,
    /// Set by `heal_all`: tell every node its clock again, whatever we
    /// believe it is.
    resend_clocks: bool,
    sink: EventSink,
    /// The names of the faults in force, for a progress display.
    in_force: watch::Sender<Vec<String>>,
    /// How a power loss is done.
    power_loss: PowerLossVia,
}

/// How the nemesis cuts a node's power.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerLossVia {
    /// SIGKILL, and the backend's filesystem forgets what was not synced:
    /// works for any process (the default where the backend has one).
    Filesystem,
    /// The node's own `POST /admin/crash`: Synod nodes only, and only as
    /// honest as the node's idea of what it synced; a fast path.
    AdminCrash,
}

impl<B: Backend> Nemesis<B> {
    pub fn new(backend: Arc<B>, seed: u64, sink: EventSink) -> Result<Nemesis<B>> {
        let admin = Admin::new(backend.token())?;
        let backend_loses_writes = backend.loses_unsynced_writes();
        Ok(Nemesis {
            backend,
            admin,
            rng: ChaCha8Rng::seed_from_u64(seed),
            active: Vec::new(),
            clocks: BTreeMap::new(),
            resend_clocks: false,
            sink,
            in_force: watch::channel(Vec::new()).0,
            power_loss: if backend_loses_writes {
                PowerLossVia::Filesystem
            } else {
                PowerLossVia::AdminCrash
            },
        })
    }

    /// Cuts power through the nodes' admin crash instead of the backend's
    /// filesystem.
    pub fn use_admin_crash(&mut self) {
        self.power_loss = PowerLossVia::AdminCrash;
    }

    /// How this nemesis cuts power.
    pub fn power_loss_via(&self) -> PowerLossVia {
        self.power_loss
    }

    /// Follows the names of the faults in force.
    pub fn watch_in_force(&self) -> watch::Receiver<Vec<String>> {
        self.in_force.subscribe()
    }

    /// The faults in force.
    pub fn active(&self) -> &[Fault] {
        &self.active
    }

    /// Draws the faults of `step` for this cluster, all against the leader
    /// of this moment (see [`Step::draw`]).
    pub async fn draw(&mut self, step: &Step) -> Vec<Fault> {
        let leader = self.admin.find_leader(&*self.backend).await;
        let skewed = self.active.iter().any(|f| f.kind == FaultKind::Clock);
        step.draw(&self.backend.nodes(), leader, skewed, &mut self.rng)
    }

    /// Puts `fault` in force, recording `start-<kind>` first.
    pub async fn start(&mut self, fault: Fault) {
        self.start_together(vec![fault]).await;
    }

    /// Puts `faults` in force at once (one reconcile), recording a
    /// `start-<kind>` for each first.
    pub async fn start_together(&mut self, faults: Vec<Fault>) {
        for mut fault in faults {
            if fault.kind == FaultKind::PowerLoss {
                // Say in the history how the power was cut.
                if let Value::Object(m) = &mut fault.value {
                    let via = match self.power_loss {
                        PowerLossVia::Filesystem => "filesystem",
                        PowerLossVia::AdminCrash => "admin-crash",
                    };
                    m.insert("via".into(), via.into());
                }
            }
            (self.sink)(NemesisEvent {
                f: format!("start-{}", fault.kind),
                value: fault.value.clone(),
            });
            self.active.push(fault);
        }
        self.publish();
        let errors = self.reconcile().await;
        for e in errors {
            tracing::warn!(error = %e, "applying a fault");
        }
    }

    /// Heals the oldest fault in force, recording `stop-<kind>` once healed.
    pub async fn stop_oldest(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let fault = self.active.remove(0);
        self.finish(vec![fault]).await;
    }

    /// Heals every fault, recording a `stop-` event for each. Idempotent:
    /// with nothing in force it still re-applies the healthy state (every
    /// link healthy, every node continued and running, every clock we ever
    /// skewed set true again).
    pub async fn heal_all(&mut self) {
        let faults = std::mem::take(&mut self.active);
        // Only nodes whose clock we ever set can be off; a cluster that
        // never had a clock fault (or has no clock API, like etcd) is not
        // asked.
        self.resend_clocks = !self.clocks.is_empty();
        self.finish(faults).await;
    }

    async fn finish(&mut self, faults: Vec<Fault>) {
        self.publish();
        let errors = self.reconcile().await;
        for fault in faults {
            let mut value = fault.value.clone();
            if !errors.is_empty() {
                value = json!({"targets": value, "errors": errors});
            }
            (self.sink)(NemesisEvent {
                f: format!("stop-{}", fault.kind),
                value,
            });
        }
    }

    fn publish(&self) {
        let names = self.active.iter().map(|f| f.kind.to_string()).collect();
        self.in_force.send_replace(names);
    }

    /// Makes the cluster match the sum of the faults in force. Safe to call
    /// at any time: every step is idempotent. Returns what could not be
    /// done, which is reported and never stops the run.
    pub async fn reconcile(&mut self) -> Vec<String> {
        let desired = Desired::of(&self.active);
        let backend = self.backend.clone();
        let nodes = backend.nodes();
        let mut errors = Vec::new();
        for &from in &nodes {
            for &to in &nodes {
                if from != to {
                    let link = Link { from, to };
                    if let Err(e) = backend.set_link(link, desired.link(link)) {
                        errors.push(e.to_string());
                    }
                }
            }
        }
        if let Err(e) = backend.commit_links() {
            errors.push(e.to_string());
        }
        // Clocks before kills: a node that is about to go down still hears.
        for &n in &nodes {
            let want = desired.clocks.get(&n).copied().unwrap_or(Skew::NONE);
            let known = self.clocks.get(&n).copied().unwrap_or(Skew::NONE);
            if (self.resend_clocks || known != want) && backend.is_running(n) {
                match self.set_clock(n, want).await {
                    Ok(()) => {
                        self.clocks.insert(n, want);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        let mut restarts = Vec::new();
        for &n in &nodes {
            match desired.down.get(&n) {
                Some(&power_loss) => {
                    if backend.is_running(n) {
                        let via = self.power_loss;
                        let r = if power_loss && via == PowerLossVia::Filesystem {
                            backend.power_off(n).await
                        } else if power_loss && !desired.paused.contains(&n) {
                            match self.admin.crash(&*backend, n).await {
                                Ok(()) => backend.reap(n, Duration::from_secs(3)).await,
                                Err(e) => {
                                    errors.push(e.to_string());
                                    backend.kill(n).await
                                }
                            }
                        } else {
                            backend.kill(n).await
                        };
                        if let Err(e) = r {
                            errors.push(e.to_string());
                        }
                        // A restarted node's clock starts true.
                        self.clocks.remove(&n);
                    }
                }
                None => {
                    if !backend.is_running(n) {
                        self.clocks.remove(&n);
                        restarts.push(n);
                    }
                }
            }
        }
        // Every node that comes back starts at once: a cluster that lost
        // power whole (etcd) answers its health checks only once a
        // majority runs.
        let waits: Vec<_> = restarts
            .into_iter()
            .map(|n| {
                let b = backend.clone();
                tokio::spawn(async move { b.restart(n).await })
            })
            .collect();
        for w in waits {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(e) => errors.push(format!("a restart panicked: {e}")),
            }
        }
        for &n in &nodes {
            let r = if desired.paused.contains(&n) && !desired.down.contains_key(&n) {
                backend.pause(n)
            } else {
                backend.resume(n)
            };
            if let Err(e) = r {
                errors.push(e.to_string());
            }
        }
        self.resend_clocks = false;
        // A node restarted above may need its skew (if a clock fault
        // outlived its kill).
        for &n in &nodes {
            if let Some(&want) = desired.clocks.get(&n) {
                if self.clocks.get(&n) != Some(&want) && backend.is_running(n) {
                    if let Ok(()) = self.set_clock(n, want).await {
                        self.clocks.insert(n, want);
                    }
                }
            }
        }
        errors
    }

    /// Sets a node's clock: through the backend if it has a way of its
    /// own (libfaketime), else through the node's admin clock.
    async fn set_clock(&self, n: NodeName, want: Skew) -> Result<()> {
        if self.backend.skews_clocks() {
            self.backend.skew_clock(n, want.offset_ms, want.rate)
        } else {
            self.admin
                .set_clock(&*self.backend, n, want.offset_ms, want.rate)
                .await
        }
    }

    /// Runs `schedule` until `stop` turns true: quiet for an interval, a
    /// step's faults for an interval, and again; a clock skew alone stays
    /// in force until the next step ends. Faults in force when it stops
    /// stay in force: call [`Nemesis::heal_all`] next.
    pub async fn run(&mut self, schedule: &Schedule, mut stop: watch::Receiver<bool>) {
        if schedule.steps.is_empty() {
            return;
        }
        loop {
            if wait_or_stop(schedule.interval, &mut stop).await {
                return;
            }
            let Some(step) = schedule.steps.choose(&mut self.rng).cloned() else {
                return;
            };
            if step.faults().iter().any(|f| f.names_the_leader())
                && self.await_leader(&mut stop).await
            {
                return;
            }
            let faults = self.draw(&step).await;
            self.start_together(faults).await;
            if self.hold(schedule.interval, &mut stop).await {
                return;
            }
            // A skewed clock hurts most when something else goes wrong
            // meanwhile (a leader cut off while its lease clock runs
            // slow), so a clock skew alone holds through the next step.
            // (A step that combines them has both in force already.)
            let clock_alone = step.faults().iter().all(|f| f.kind == FaultKind::Clock);
            if clock_alone && schedule.steps.len() > 1 {
                continue;
            }
            while !self.active.is_empty() {
                self.stop_oldest().await;
            }
        }
    }
}

impl<B: Backend> Nemesis<B> {
    /// Before a step that names a shape drawn around the leader
    /// (`kill:leader`, `partition:isolate-leader`, ...): waits, up to
    /// [`LEADER_WAIT`], for the cluster to report one. The previous fault
    /// may have left it electing, and the user asked for the leader, not
    /// the random node a leaderless draw falls back to. True if the run
    /// stopped meanwhile.
    async fn await_leader(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let until = tokio::time::Instant::now() + LEADER_WAIT;
        while self.admin.find_leader(&*self.backend).await.is_none() {
            if tokio::time::Instant::now() >= until {
                tracing::info!("no leader reported; drawing without one");
                return false;
            }
            if wait_or_stop(Duration::from_millis(100), stop).await {
                return true;
            }
        }
        false
    }

    /// Holds the faults in force for `hold`, moving those that move
    /// ([`crate::fault::Motion`]: a flapping link, a partition that
    /// prepares before it cuts) when they ask, re-applying the fold and
    /// recording a `change-KIND` event after each move. True if `stop`
    /// turned true first.
    pub async fn hold(&mut self, hold: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        let start = tokio::time::Instant::now();
        let end = start + hold;
        // (index into `active`, when it moves next)
        let mut timers: Vec<(usize, tokio::time::Instant)> = self
            .active
            .iter_mut()
            .enumerate()
            .filter_map(|(i, f)| f.first_change(hold).map(|d| (i, start + d)))
            .collect();
        loop {
            let next = timers.iter().map(|t| t.1).min().unwrap_or(end).min(end);
            let now = tokio::time::Instant::now();
            if wait_or_stop(next.saturating_duration_since(now), stop).await {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= end {
                return false;
            }
            let mut changes = Vec::new();
            timers.retain_mut(|(i, at)| {
                if *at > now {
                    return true;
                }
                let fault = &mut self.active[*i];
                let (value, again) = fault.advance();
                changes.push(NemesisEvent {
                    f: format!("change-{}", fault.kind),
                    value,
                });
                match again {
                    Some(d) => {
                        *at = now + d;
                        true
                    }
                    None => false,
                }
            });
            if changes.is_empty() {
                continue;
            }
            // Recorded first, as a start is: the change is in force by the
            // time anything after the event completes.
            for change in changes {
                (self.sink)(change);
            }
            let errors = self.reconcile().await;
            for e in errors {
                tracing::warn!(error = %e, "moving a fault");
            }
        }
    }
}

/// Sleeps for `d`; true if `stop` turned true first.
/// The longest a step aimed at the leader waits for one: a few election
/// timeouts of either target (Synod's 300-600 ms by default, etcd's
/// 1-2 s).
const LEADER_WAIT: Duration = Duration::from_secs(3);

async fn wait_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow_and_update() {
        return true;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        r = stop.wait_for(|s| *s) => { let _ = r; true }
    };
    stopped || *stop.borrow()
}
