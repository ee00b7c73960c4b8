//! The phases of a run once its cluster exists: bring it up, drive the
//! workload and the nemesis for `--time-limit`, heal (bounded), recover
//! for `--recovery`, stop the clients and close the history. SIGINT and
//! SIGTERM cut any phase short; the teardown happens whatever the way out.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use synod_nemesis::admin::Admin;
use synod_nemesis::{Backend, Nemesis, NemesisEvent, Program, Schedule};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use super::any_backend::AnyBackend;
use super::args::RunArgs;
use super::plan::Plan;
use super::progress::spawn_progress;
use crate::client::etcd::EtcdClient;
use crate::client::synod::SynodClient;
use crate::client::Client;
use crate::cpu::{ClientCpu, ClientCpuClock, NodeCpu, NodeCpuSampler};
use crate::due_latency::{DueLatency, OpDueLatency};
use crate::peer_messages::{PeerMessages, Scraper};
use crate::recorder::{self, OpCounts, RunClock};
use crate::workload::{self, WorkloadConfig};

/// SIGINT and SIGTERM, registered before anything starts so neither kills
/// us before we have healed and torn down.
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    /// Waits for either; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

/// Brings `backend` up, runs the workload and nemesis on it, and tears it
/// down whatever happened (an error, SIGINT or SIGTERM included).
#[allow(clippy::too_many_arguments)]
pub async fn on_backend(
    args: &RunArgs,
    plan: &Plan,
    dir: &Path,
    backend: Arc<AnyBackend>,
    program: Program,
    workload: WorkloadConfig,
    timeout: Duration,
    signals: &mut Signals,
) -> anyhow::Result<Observed> {
    let result = async {
        tokio::select! {
            r = bring_up(&backend, program) => r?,
            sig = signals.recv() => bail!("interrupted by {sig} while the cluster started"),
        }
        let nodes = backend
            .nodes()
            .into_iter()
            .map(|n| Ok((n.to_string(), backend.url(n)?)))
            .collect::<synod_nemesis::Result<Vec<_>>>()?;
        let b = Some(backend.clone());
        // Started after the bring-up, so the nodes' start is not counted.
        let cpu = match backend.node_cpu_access() {
            Ok(comm) => {
                let pids = backend.clone();
                Ok(NodeCpuSampler::start(
                    Box::new(move || pids.node_pids()),
                    comm,
                ))
            }
            Err(why) => Err(why),
        };
        let mut observed = if program == Program::Etcd {
            let client = Arc::new(EtcdClient::new(nodes, timeout, args.serializable)?);
            execute(args, plan, dir, client, b, workload, signals).await?
        } else {
            let client = Arc::new(SynodClient::new(nodes.clone(), timeout)?);
            // The baseline right before the workload starts; the last
            // sample once its clients have stopped, before the teardown.
            let scraper = Scraper::start(nodes, backend.token().to_string()).await?;
            let mut observed = execute(args, plan, dir, client, b, workload, signals).await?;
            observed.peer_messages = scraper
                .finish(observed.counts.completed())
                .await?
                .ok_or("no node's /admin/metrics had peer-message counters");
            observed
        };
        observed.client_cpu.with_link_proxies = matches!(*backend, AnyBackend::Local(_));
        observed.node_cpu = match cpu {
            Ok(sampler) => sampler
                .finish(observed.counts.completed())
                .await
                .ok_or_else(|| "no node's process could be read".to_string()),
            Err(why) => Err(why.to_string()),
        };
        Ok(observed)
    }
    .await;
    backend.teardown().await;
    result
}

/// Starts the nodes and waits (a bounded while) for one to lead.
async fn bring_up<B: Backend>(backend: &Arc<B>, program: Program) -> anyhow::Result<()> {
    backend.start().await?;
    if program == Program::Etcd {
        // etcd answers /health only once it has a leader.
        return Ok(());
    }
    let admin = Admin::new(backend.token())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if let Some(leader) = admin.find_leader(&**backend).await {
            tracing::info!(%leader, "cluster is up");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!("no node claims leadership after 10 s; starting the workload anyway");
    Ok(())
}

/// What the run observed, before judging.
pub struct Observed {
    pub events: u64,
    pub counts: OpCounts,
    pub interrupted: Option<&'static str>,
    pub seconds: f64,
    pub seed: u64,
    /// Or why they are not available (etcd does not count them).
    pub peer_messages: Result<PeerMessages, &'static str>,
    /// All nodes' CPU over the workload, or why it is not available.
    pub node_cpu: Result<NodeCpu, String>,
    /// This process's CPU over the workload.
    pub client_cpu: ClientCpu,
    /// An open loop's latency from each op's due time (`None`: closed).
    pub open_loop_latency: Option<Vec<OpDueLatency>>,
}

pub async fn execute<C: Client, B: Backend>(
    args: &RunArgs,
    plan: &Plan,
    dir: &Path,
    client: Arc<C>,
    backend: Option<Arc<B>>,
    workload: WorkloadConfig,
    signals: &mut Signals,
) -> anyhow::Result<Observed> {
    let clock = RunClock::start();
    let rec = recorder::spawn(&dir.join("history.jsonl"), clock)?;
    let counts = rec.counts.clone();
    let (stop_nemesis, stop_nemesis_rx) = watch::channel(false);
    let (stop_clients, stop_clients_rx) = watch::channel(false);

    let cpu = ClientCpuClock::start();
    let due = DueLatency::default();
    let open_loop = workload.rate.is_some();
    let drive = tokio::spawn({
        let recorder = rec.clients.clone();
        let due = due.clone();
        async move { workload::drive(client, &workload, recorder, clock, stop_clients_rx, due).await }
    });
    drop(rec.clients);

    let (in_force_tx, in_force) = watch::channel(Vec::<String>::new());
    let nemesis = match backend {
        Some(backend) => {
            let sink_rec = rec.nemesis.clone();
            let sink = Box::new(move |e: NemesisEvent| sink_rec.record(&e.f, e.value));
            let mut nemesis = Nemesis::new(backend, plan.seed, sink)?;
            if args.admin_crash {
                nemesis.use_admin_crash();
            }
            let schedule = Schedule {
                steps: plan.steps.clone(),
                interval: Duration::from_secs_f64(args.nemesis_interval.max(0.001)),
                seed: plan.seed,
            };
            let mut watch_in_force = nemesis.watch_in_force();
            tokio::spawn(async move {
                while watch_in_force.changed().await.is_ok() {
                    let names = watch_in_force.borrow_and_update().clone();
                    in_force_tx.send_replace(names);
                }
            });
            Some(tokio::spawn(async move {
                nemesis.run(&schedule, stop_nemesis_rx).await;
                nemesis.heal_all().await;
            }))
        }
        None => None,
    };
    drop(rec.nemesis);

    let total = args.time_limit + args.recovery;
    let progress = spawn_progress(total, counts.clone(), in_force);

    let mut interrupted = None;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs_f64(args.time_limit)) => {}
        sig = signals.recv() => interrupted = Some(sig),
    }
    // Heal, bounded: a node that will not restart must not hang the run.
    stop_nemesis.send_replace(true);
    if let Some(task) = nemesis {
        let heal = tokio::time::timeout(Duration::from_secs(60), task);
        tokio::select! {
            r = heal => match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "the nemesis task failed"),
                Err(_) => tracing::error!("healing took over 60 s; tearing down"),
            },
            sig = signals.recv() => interrupted = Some(sig),
        }
    }
    if interrupted.is_none() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(args.recovery)) => {}
            sig = signals.recv() => interrupted = Some(sig),
        }
    }
    stop_clients.send_replace(true);
    // Ops in flight get their timeout and a little more; anything still
    // open after that stays an invocation without completion, which the
    // history format reads as unknown.
    let grace = Duration::from_millis(args.client_timeout_ms) + Duration::from_secs(2);
    let abort = drive.abort_handle();
    if tokio::time::timeout(grace, drive).await.is_err() {
        abort.abort();
    }
    let client_cpu = cpu.seconds();
    let events = rec.done.await.context("the recorder panicked")??;
    progress.finish();
    let counts = counts.snapshot();
    Ok(Observed {
        events,
        counts,
        client_cpu: ClientCpu::new(client_cpu, counts.completed()),
        open_loop_latency: open_loop.then(|| due.figures()),
        node_cpu: Err(
            "an etcd cluster Synod did not start: its processes are not ours to read".into(),
        ),
        interrupted,
        seconds: clock.now_ns() as f64 / 1e9,
        seed: plan.seed,
        peer_messages: Err("the target does not export Synod's peer-message counters"),
    })
}
