//! The workload: concurrent client processes invoking reads, writes and
//! cas operations on a rotating set of keys, recorded as they go.
//!
//! - Each of `concurrency` workers acts as one process at a time. After an
//!   `info` (the outcome is unknown) the process never invokes again: the
//!   worker carries on under a fresh process id.
//! - Closed loop (no `rate`): a worker invokes its next op as soon as the
//!   previous one completes. Open loop (`rate` ops/s in total): worker `w`'s
//!   `k`-th op is due at `(k * concurrency + w) / rate`, and the op is
//!   recorded as invoked at that *intended* time even if the worker was
//!   late, unless the recorder has written later events already (the
//!   history is in time order): then about when it was sent. So the
//!   workload also measures each ok op's latency from its due time itself
//!   ([`crate::due_latency`]), which includes queueing (no coordinated
//!   omission) however late the workers fall.
//! - `keys` keys are live at a time; after `ops_per_key` ops a key retires
//!   and a fresh one takes its place, which keeps each key's history small
//!   enough to check.
//! - Every value written to a key is unique for that key, so a read names
//!   the write it saw.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};
use synod_checker::history::{Event, EventType, Fun, Process};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{Client, ClientOp};
use crate::due_latency::DueLatency;
use crate::recorder::{Recorder, RunClock};

/// How long a worker waits after an op failed for want of a working node.
const FAILURE_BACKOFF: Duration = Duration::from_millis(50);

/// Relative weights of reads, writes and cas operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub read: u32,
    pub write: u32,
    pub cas: u32,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            read: 2,
            write: 1,
            cas: 1,
        }
    }
}

impl FromStr for Mix {
    type Err = anyhow::Error;

    /// `read=2,write=1,cas=1`; an operation left out has weight 0.
    fn from_str(s: &str) -> anyhow::Result<Mix> {
        let mut mix = Mix {
            read: 0,
            write: 0,
            cas: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').with_context(|| {
                format!("bad mix entry {part:?}: expected NAME=WEIGHT, e.g. read=2")
            })?;
            let weight: u32 = weight.trim().parse().with_context(|| {
                format!("bad weight in mix entry {part:?}: expected a whole number")
            })?;
            match name.trim() {
                "read" => mix.read = weight,
                "write" => mix.write = weight,
                "cas" => mix.cas = weight,
                other => {
                    bail!("unknown operation {other:?} in the mix: expected read, write or cas")
                }
            }
        }
        if mix.read + mix.write + mix.cas == 0 {
            bail!("the mix {s:?} has no operation with a positive weight");
        }
        Ok(mix)
    }
}

/// How the clients behave.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadConfig {
    /// Workers, each one client process at a time.
    pub concurrency: usize,
    /// Total ops/s for an open loop; `None` for a closed loop.
    pub rate: Option<f64>,
    /// Keys live at once.
    pub keys: usize,
    /// Ops on a key before it retires for a fresh one.
    pub ops_per_key: u64,
    pub mix: Mix,
    /// Seeds every worker's choices.
    pub seed: u64,
}

/// One live key.
struct KeySlot {
    key: String,
    /// Ops handed out on this key.
    ops: u64,
    /// The next value to write: values are unique per key.
    next_value: i64,
    /// The last value handed to a write or cas, the likeliest current
    /// value: a cas expecting it has a fair chance to succeed.
    last_written: Option<i64>,
}

/// The live keys, shared by every worker.
struct Keys {
    slots: Vec<KeySlot>,
    /// Names fresh keys `k0`, `k1`, ...
    next_key: u64,
    ops_per_key: u64,
}

impl Keys {
    fn new(n: usize, ops_per_key: u64) -> Keys {
        let mut keys = Keys {
            slots: Vec::with_capacity(n),
            next_key: 0,
            ops_per_key,
        };
        for _ in 0..n.max(1) {
            let slot = keys.fresh();
            keys.slots.push(slot);
        }
        keys
    }

    fn fresh(&mut self) -> KeySlot {
        let key = format!("k{}", self.next_key);
        self.next_key += 1;
        KeySlot {
            key,
            ops: 0,
            next_value: 1,
            last_written: None,
        }
    }

    /// The next operation: a random live key, an op drawn from the mix.
    fn next_op<R: Rng>(&mut self, rng: &mut R, mix: Mix) -> (Fun, String, Value) {
        let i = rng.gen_range(0..self.slots.len());
        if self.slots[i].ops >= self.ops_per_key {
            self.slots[i] = self.fresh();
        }
        let slot = &mut self.slots[i];
        slot.ops += 1;
        let roll = rng.gen_range(0..mix.read + mix.write + mix.cas);
        let (f, value) = if roll < mix.read {
            (Fun::Read, Value::Null)
        } else {
            let v = slot.next_value;
            slot.next_value += 1;
            let expected = slot.last_written;
            slot.last_written = Some(v);
            if roll < mix.read + mix.write {
                (Fun::Write, json!(v))
            } else {
                // A cas on a key never written expects a value nobody wrote
                // (0), which fails: a definite, checkable outcome.
                (Fun::Cas, json!([expected.unwrap_or(0), v]))
            }
        };
        (f, slot.key.clone(), value)
    }
}

/// Drives `client` until `stop` turns true, then lets each worker finish
/// its op in flight. Returns once every worker has stopped; an open loop's
/// latencies from the due times are in `due` by then (or once the task
/// is aborted).
pub async fn drive<C: Client>(
    client: Arc<C>,
    config: &WorkloadConfig,
    recorder: Recorder,
    clock: RunClock,
    stop: watch::Receiver<bool>,
    due: DueLatency,
) {
    let keys = Arc::new(Mutex::new(Keys::new(config.keys, config.ops_per_key)));
    // Processes 0..concurrency start; retired ones are replaced from here.
    let next_process = Arc::new(AtomicU64::new(config.concurrency as u64));
    let mut workers = JoinSet::new();
    for w in 0..config.concurrency {
        workers.spawn(worker(
            w,
            client.clone(),
            config.clone(),
            keys.clone(),
            next_process.clone(),
            recorder.clone(),
            clock,
            stop.clone(),
            due.clone(),
        ));
    }
    drop(recorder);
    while workers.join_next().await.is_some() {}
}

#[allow(clippy::too_many_arguments)]
async fn worker<C: Client>(
    w: usize,
    client: Arc<C>,
    config: WorkloadConfig,
    keys: Arc<Mutex<Keys>>,
    next_process: Arc<AtomicU64>,
    recorder: Recorder,
    clock: RunClock,
    mut stop: watch::Receiver<bool>,
    due: DueLatency,
) {
    let mut due_latency = due.worker();
    let mut rng =
        ChaCha8Rng::seed_from_u64(config.seed ^ (w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut process = w as u64;
    let mut seq = 0u64;
    // Open loop: this worker's share of the schedule, one op every
    // `concurrency / rate` seconds, offset by its index.
    let period_ns = config
        .rate
        .map(|r| (config.concurrency as f64 * 1e9 / r.max(1e-9)) as u64);
    let offset_ns = config
        .rate
        .map_or(0, |r| (w as f64 * 1e9 / r.max(1e-9)) as u64);
    let mut k = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut invoke_time = clock.now_ns();
        let mut due_time = None;
        if let Some(period) = period_ns {
            let due = offset_ns + k * period;
            due_time = Some(due);
            k += 1;
            if due > invoke_time {
                tokio::select! {
                    _ = tokio::time::sleep_until(clock.instant(due).into()) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            // Late or not, the op was due then: that is its invocation.
            invoke_time = due;
        }
        let (f, key, value) = {
            let mut keys = keys.lock().unwrap_or_else(|e| e.into_inner());
            keys.next_op(&mut rng, config.mix)
        };
        seq += 1;
        let op = ClientOp {
            process,
            seq,
            f,
            key,
            value,
        };
        let node = client.node_of(process).map(str::to_string);
        let invoke = Event {
            index: 0,
            time: invoke_time,
            process: Process::Client(process),
            kind: EventType::Invoke,
            f: op.f.clone(),
            key: Some(op.key.clone()),
            value: op.value.clone(),
            error: None,
            node: node.clone(),
            mismatch: false,
            not_proposed: false,
        };
        if !recorder.record(invoke).await {
            return;
        }
        let outcome = client.invoke(&op).await;
        let kind = outcome.kind;
        let op_f = op.f.clone();
        let done_time = clock.now_ns();
        if let (Some(due), EventType::Ok) = (due_time, kind) {
            due_latency.record(op_f.as_str(), done_time.saturating_sub(due) / 1000);
        }
        let done = Event {
            index: 0,
            time: done_time,
            process: Process::Client(process),
            kind,
            f: op.f,
            key: Some(op.key),
            value: outcome.value,
            error: outcome.error,
            node,
            mismatch: outcome.mismatch,
            not_proposed: outcome.not_proposed,
        };
        if !recorder.record(done).await {
            return;
        }
        // A cas that found another value is business as usual; any other
        // failure means the node is down, cut off or without a leader:
        // back off a little rather than flood the history with ops that
        // tell the checker nothing.
        if kind == EventType::Info || (kind == EventType::Fail && op_f != Fun::Cas) {
            tokio::select! {
                _ = tokio::time::sleep(FAILURE_BACKOFF) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
        if kind == EventType::Info {
            // An unknown outcome: this process may still be acting in the
            // cluster, so it never invokes again.
            process = next_process.fetch_add(1, Ordering::Relaxed);
            seq = 0;
        }
    }
}

/// Figures from a workload run against the null target.
#[derive(Debug, Serialize)]
pub struct BenchFigures {
    pub ops: u64,
    pub events: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub history_bytes: u64,
    /// This process's CPU (user + system, every thread) over the
    /// workload, in µs per op completed: what the bench's own client,
    /// generator and recorder cost, the figure `synod run` reports as
    /// client CPU per op.
    pub client_cpu_us_per_op: Option<f64>,
}

/// Runs the workload against the in-process null target for `duration`,
/// streaming the history to `path`: what the bench costs by itself.
pub async fn bench_null(
    path: &std::path::Path,
    duration: Duration,
    concurrency: usize,
    rate: Option<f64>,
) -> anyhow::Result<BenchFigures> {
    let clock = RunClock::start();
    let rec = crate::recorder::spawn(path, clock)?;
    let counts = rec.counts.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let config = WorkloadConfig {
        concurrency,
        rate,
        keys: 1000,
        ops_per_key: 1000,
        mix: Mix::default(),
        seed: 1,
    };
    let client = Arc::new(crate::client::null::NullClient::new());
    let started = std::time::Instant::now();
    let cpu = crate::cpu::ClientCpuClock::start();
    let drive = tokio::spawn({
        let recorder = rec.clients.clone();
        async move {
            drive(
                client,
                &config,
                recorder,
                clock,
                stop_rx,
                DueLatency::default(),
            )
            .await
        }
    });
    drop(rec.clients);
    drop(rec.nemesis);
    tokio::time::sleep(duration).await;
    stop_tx.send_replace(true);
    drive.await.context("the workload panicked")?;
    let events = rec.done.await.context("the recorder panicked")??;
    let cpu_seconds = cpu.seconds();
    let seconds = started.elapsed().as_secs_f64();
    let ops = counts.snapshot().completed();
    Ok(BenchFigures {
        ops,
        events,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        history_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        client_cpu_us_per_op: crate::cpu::ClientCpu::new(cpu_seconds, ops).per_op_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_checker::history::History;

    #[test]
    fn mix_parses_and_rejects_nonsense() {
        assert_eq!(
            "read=3, cas=1".parse::<Mix>().unwrap(),
            Mix {
                read: 3,
                write: 0,
                cas: 1
            }
        );
        assert!("read=x".parse::<Mix>().is_err());
        assert!("frob=1"
            .parse::<Mix>()
            .unwrap_err()
            .to_string()
            .contains("frob"));
        assert!("read=0".parse::<Mix>().is_err());
        assert!("read".parse::<Mix>().is_err());
    }

    #[test]
    fn keys_rotate_after_the_op_limit_and_values_are_unique_per_key() {
        let mut keys = Keys::new(2, 5);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut per_key: std::collections::HashMap<String, Vec<Value>> = Default::default();
        for _ in 0..100 {
            let (f, key, value) = keys.next_op(&mut rng, Mix::default());
            let written = match f {
                Fun::Write => Some(value),
                Fun::Cas => Some(value[1].clone()),
                _ => None,
            };
            let entry = per_key.entry(key).or_default();
            entry.push(written.unwrap_or(Value::Null));
        }
        for (key, ops) in &per_key {
            assert!(ops.len() <= 5, "{key} got {} ops", ops.len());
            let written: Vec<&Value> = ops.iter().filter(|v| !v.is_null()).collect();
            let unique: std::collections::HashSet<String> =
                written.iter().map(|v| v.to_string()).collect();
            assert_eq!(unique.len(), written.len(), "values repeat on {key}");
        }
        assert!(per_key.len() >= 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn null_target_history_is_valid_and_complete() {
        let dir = std::env::temp_dir().join(format!("synod-workload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let figures = bench_null(&path, Duration::from_millis(300), 8, None)
            .await
            .unwrap();
        assert!(figures.ops > 100, "{figures:?}");
        let history = History::read_path(&path).unwrap();
        assert_eq!(history.len() as u64, figures.events);
        // Every invocation completed (the null target never hangs).
        let invokes = history
            .events
            .iter()
            .filter(|e| e.kind == EventType::Invoke)
            .count() as u64;
        assert_eq!(invokes, figures.ops);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_records_intended_start_times() {
        let dir = std::env::temp_dir().join(format!("synod-openloop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let figures = bench_null(&path, Duration::from_millis(500), 4, Some(200.0))
            .await
            .unwrap();
        // 200/s for 0.5 s: about 100 ops, never a burst beyond the schedule.
        assert!((60..=140).contains(&figures.ops), "{figures:?}");
        let history = History::read_path(&path).unwrap();
        let first = history
            .events
            .iter()
            .find(|e| e.kind == EventType::Invoke)
            .unwrap();
        assert!(first.time < 10_000_000, "the first op is due at 0");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The null target, 20 ms an op: a worker cannot keep up with a
    /// schedule of one op every 5 ms.
    struct Slow(crate::client::null::NullClient);

    impl Client for Slow {
        async fn invoke(&self, op: &ClientOp) -> crate::client::Completion {
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.0.invoke(op).await
        }

        fn node_of(&self, _process: u64) -> Option<&str> {
            None
        }
    }

    /// Regression: the recorder stamps an invocation due before events it
    /// already wrote with their time, so past the knee an open loop's
    /// history hid the backlog; the latency from the due time must show it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_loop_behind_schedule_counts_latency_from_the_due_time() {
        let dir = std::env::temp_dir().join(format!("synod-due-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let clock = RunClock::start();
        let rec = crate::recorder::spawn(&dir.join("h.jsonl"), clock).unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let config = WorkloadConfig {
            concurrency: 2,
            rate: Some(400.0),
            keys: 10,
            ops_per_key: 1000,
            mix: Mix::default(),
            seed: 1,
        };
        let due = DueLatency::default();
        let task = tokio::spawn({
            let (recorder, due) = (rec.clients.clone(), due.clone());
            let client = Arc::new(Slow(crate::client::null::NullClient::new()));
            async move { drive(client, &config, recorder, clock, stop_rx, due).await }
        });
        drop(rec.clients);
        drop(rec.nemesis);
        tokio::time::sleep(Duration::from_millis(600)).await;
        stop_tx.send_replace(true);
        task.await.unwrap();
        rec.done.await.unwrap().unwrap();
        // Offered 400/s, served 100/s: by the end each op waited hundreds
        // of ms for its worker, though each took 20 ms.
        let worst = due.figures().iter().map(|l| l.max).fold(0.0, f64::max);
        assert!(worst > 250.0, "{:?}", due.figures());
        std::fs::remove_dir_all(&dir).ok();
    }
}
