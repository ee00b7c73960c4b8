//! The recorder: the one task that owns the [`HistoryWriter`] and streams
//! every event to `history.jsonl` as it arrives, flushing every 100 ms so
//! a crashed run keeps all but its last moments.
//!
//! Clients and the nemesis stamp their events with [`RunClock`] and send
//! them here; the recorder writes them in arrival order and clamps `time`
//! so it never decreases from one line to the next. Clamping only ever
//! moves an event later than its stamp and never past the moment it was
//! sent, so an invocation stays before its request and a completion after
//! its reply: the checker's windows stay sound.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use synod_checker::history::{Event, EventType, Fun, HistoryWriter, Process};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Nanoseconds since the run started, from a monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    pub fn start() -> RunClock {
        RunClock {
            start: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// The `Instant` `ns` nanoseconds into the run.
    pub fn instant(&self, ns: u64) -> Instant {
        self.start + Duration::from_nanos(ns)
    }
}

/// Live tallies of completions, for the progress bar and the results.
#[derive(Debug, Default)]
pub struct Counts {
    pub invoked: AtomicU64,
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
}

/// The tallies at one instant (`run.ops` in `results.json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpCounts {
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

impl OpCounts {
    /// Operations that completed: ok, fail or info.
    pub fn completed(&self) -> u64 {
        self.ok + self.fail + self.info
    }
}

impl Counts {
    pub fn snapshot(&self) -> OpCounts {
        OpCounts {
            invoked: self.invoked.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            fail: self.fail.load(Ordering::Relaxed),
            info: self.info.load(Ordering::Relaxed),
        }
    }
}

/// Where clients send their events; cheap to clone. Bounded, so clients
/// that outrun the disk slow down instead of filling memory.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
}

impl Recorder {
    /// Sends an event; `false` if the recorder has stopped.
    pub async fn record(&self, event: Event) -> bool {
        self.tx.send(event).await.is_ok()
    }
}

/// Where the nemesis sends its events: unbounded and synchronous, so a
/// fault is never held up by a busy recorder.
#[derive(Clone)]
pub struct NemesisRecorder {
    tx: mpsc::UnboundedSender<Event>,
    clock: RunClock,
}

impl NemesisRecorder {
    /// Stamps and records a nemesis event.
    pub fn record(&self, f: &str, value: Value) {
        let _ = self.tx.send(Event {
            index: 0,
            time: self.clock.now_ns(),
            process: Process::Nemesis,
            kind: EventType::Info,
            f: Fun::Nemesis(f.to_string()),
            key: None,
            value,
            error: None,
            node: None,
            mismatch: false,
            not_proposed: false,
        });
    }
}

/// A running recorder.
pub struct RecorderTask {
    pub clients: Recorder,
    pub nemesis: NemesisRecorder,
    pub counts: Arc<Counts>,
    /// Resolves to the number of events written once every sender is gone.
    pub done: JoinHandle<anyhow::Result<u64>>,
}

/// Creates `path` and starts the recorder writing to it.
pub fn spawn(path: &Path, clock: RunClock) -> anyhow::Result<RecorderTask> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let (tx, rx) = mpsc::channel(64 * 1024);
    let (ntx, nrx) = mpsc::unbounded_channel();
    let counts = Arc::new(Counts::default());
    let done = tokio::spawn(record_loop(
        HistoryWriter::new(file),
        rx,
        nrx,
        counts.clone(),
    ));
    Ok(RecorderTask {
        clients: Recorder { tx },
        nemesis: NemesisRecorder { tx: ntx, clock },
        counts,
        done,
    })
}

async fn record_loop(
    mut writer: HistoryWriter<File>,
    mut rx: mpsc::Receiver<Event>,
    mut nrx: mpsc::UnboundedReceiver<Event>,
    counts: Arc<Counts>,
) -> anyhow::Result<u64> {
    let mut last_time = 0u64;
    let mut last_flush = Instant::now();
    let mut batch = Vec::with_capacity(4096);
    let mut nemesis_open = true;
    let mut write = |writer: &mut HistoryWriter<File>, mut e: Event| -> anyhow::Result<()> {
        e.time = e.time.max(last_time);
        last_time = e.time;
        match e.kind {
            EventType::Invoke => &counts.invoked,
            EventType::Ok => &counts.ok,
            EventType::Fail => &counts.fail,
            EventType::Info => &counts.info,
        }
        .fetch_add(u64::from(e.process != Process::Nemesis), Ordering::Relaxed);
        writer
            .write_event(&e)
            .context("the bench produced an event the history format forbids (a bench bug)")?;
        Ok(())
    };
    loop {
        tokio::select! {
            biased;
            ev = nrx.recv(), if nemesis_open => match ev {
                Some(e) => write(&mut writer, e)?,
                None => nemesis_open = false,
            },
            n = rx.recv_many(&mut batch, 4096) => {
                if n == 0 {
                    break;
                }
                for e in batch.drain(..) {
                    write(&mut writer, e)?;
                }
            }
            // Wake up to flush even when nothing arrives.
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if last_flush.elapsed() >= Duration::from_millis(100) {
            writer.flush().context("cannot write the history")?;
            last_flush = Instant::now();
        }
    }
    while let Ok(e) = nrx.try_recv() {
        write(&mut writer, e)?;
    }
    writer.flush().context("cannot write the history")?;
    Ok(writer.len())
}
