//! `synod run`: bring a cluster up, drive the workload under a nemesis
//! schedule, heal, let the cluster recover, then judge the history.
//!
//! The phases, each bounded in time:
//!
//! 1. **setup**: a run directory with `config.json`; the local backend
//!    starts the nodes behind their link proxies and waits for `/health`
//!    and a leader.
//! 2. **chaos** (`--time-limit`): clients run while the nemesis starts,
//!    holds and heals faults every `--nemesis-interval`.
//! 3. **heal and recover** (`--recovery`): every fault is healed and the
//!    clients keep going, so the history shows whether the cluster came
//!    back.
//! 4. **check**: the history is closed, the cluster torn down, the checker
//!    judges and writes `results.json` (with the run's own figures under
//!    `"run"`), `report.html` and its plots.
//!
//! On Synod targets a [`Scraper`] reads every node's peer-message counters
//! from just before the workload to just after it, so the run also reports
//! peer messages per client operation (`run.peer_messages` in
//! `results.json`, a section of `report.html`, a line of the summary); on
//! etcd it is reported as not available.
//!
//! Whatever happens (an error, a panic, Ctrl-C, SIGTERM) the faults are
//! healed and the cluster torn down: by `finish` on every return path, by
//! the backend's `Drop` on a panic, and by the kernel (`PR_SET_PDEATHSIG`)
//! if we are killed outright.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::json;
use synod_checker::{check_and_report_with, History, Options, Section};
use synod_nemesis::admin::Admin;
use synod_nemesis::external::EXTERNAL_FAULTS;
use synod_nemesis::{
    Backend, DockerBackend, DockerConfig, ExternalBackend, FaultKind, LocalBackend, LocalConfig,
    Nemesis, NemesisEvent, Program, Schedule, Step,
};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use crate::client::etcd::EtcdClient;
use crate::client::synod::SynodClient;
use crate::client::Client;
use crate::peer_messages::{PeerMessages, Scraper};
use crate::recorder::{self, Counts, RunClock};
use crate::workload::{self, Mix, WorkloadConfig};
use crate::EXIT_ERROR;

/// Where the cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Child processes on loopback behind link proxies (no root, no Docker).
    Local,
    /// Containers from docker-compose.yml (3 or 5 nodes), faults by the
    /// OS: iptables in each container's namespace, docker pause and kill.
    Docker,
    /// A cluster someone else started, at --node-urls with --token: the
    /// workload and the admin-API faults (clock, power-loss) only.
    External,
}

/// What the clients talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Synod nodes started by the backend.
    Synod,
    /// An etcd cluster through its v3 JSON gateway: a local one started
    /// from the `etcd` binary (network faults, pause and kill), or an
    /// external one at `--etcd-endpoints` (no faults).
    Etcd,
}

/// Arguments of `synod run`; all of them land in the run's `config.json`.
#[derive(clap::Args, Debug, Serialize)]
pub struct RunArgs {
    /// Name of the run series: runs go to STORE/NAME/TIMESTAMP/.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// The store directory.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=15))]
    pub nodes: u32,
    /// Where the cluster runs.
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    pub backend: BackendKind,
    /// What the clients talk to.
    #[arg(long, value_enum, default_value_t = Target::Synod)]
    pub target: Target,
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 60.0, value_parser = parse_secs)]
    pub time_limit: f64,
    /// Seconds of workload after every fault is healed.
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub recovery: f64,
    /// Seeds faults, targets and the workload; printed, so a run can be
    /// replayed. Random if not given.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Faults to mix, comma-separated: partition, one-way, pause, kill,
    /// power-loss, clock, delay, reset; `all`; `none`. KIND:SHAPE asks for
    /// one shape (partition: isolate-one, isolate-leader, halves,
    /// majorities-ring, bridge; clock: slow-leader, random; power-loss:
    /// all, minority). Faults joined
    /// by `+` start together against the same leader and heal together,
    /// e.g. clock:slow-leader+partition:isolate-leader, the trap for
    /// leases that trust the clock.
    #[arg(long, default_value = DEFAULT_NEMESIS)]
    pub nemesis: String,
    /// Seconds of quiet before each fault, and how long each fault holds.
    #[arg(long, default_value_t = 5.0, value_parser = parse_secs)]
    pub nemesis_interval: f64,
    /// Concurrent client workers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Total ops/s, open loop (intended start times are recorded); without
    /// it, a closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Keys live at once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub keys: u32,
    /// Ops on a key before clients move to a fresh one.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub ops_per_key: u64,
    /// Operation weights, e.g. read=2,write=1,cas=1.
    #[arg(long, default_value = "read=2,write=1,cas=1")]
    pub mix: String,
    /// Client request timeout in ms; a timed-out op is recorded as info.
    #[arg(long, default_value_t = 2000)]
    pub client_timeout_ms: u64,

    /// Node setting: stable leader, or every node proposes.
    #[arg(long, value_parser = ["leader", "any"])]
    pub proposers: Option<String>,
    /// Node setting: distinguished learner, or broadcast.
    #[arg(long, value_parser = ["leader", "all"])]
    pub learn: Option<String>,
    /// Node setting: how reads are served (`local` is unsafe on purpose).
    #[arg(long, value_parser = ["log", "lease", "local"])]
    pub reads: Option<String>,
    /// Node setting: `never` is unsafe on purpose.
    #[arg(long, value_parser = ["always", "never"])]
    pub fsync: Option<String>,
    /// Node setting: client commands per log slot.
    #[arg(long)]
    pub batch_size: Option<u64>,
    /// Node setting: slots in phase 2 at once.
    #[arg(long)]
    pub pipeline: Option<u64>,
    /// Node setting: leader heartbeat interval.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Node setting: election timeout.
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// Node setting: clock-drift bound subtracted from the lease.
    #[arg(long)]
    pub lease_drift_ms: Option<u64>,
    /// Node setting: deadline of a client request inside the node.
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Any other node flag, passed through as is (repeatable).
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    pub node_args: Vec<String>,
    /// Node K listens on BASE_PORT+K-1; free ports if not given.
    #[arg(long)]
    pub base_port: Option<u16>,
    /// External backend: the nodes' base URLs, comma-separated, e.g.
    /// http://172.28.5.11:7000,http://172.28.5.12:7000.
    #[arg(long)]
    pub node_urls: Option<String>,
    /// External backend: the cluster token (for the admin-API faults).
    #[arg(long, env = "SYNOD_TOKEN", hide_env_values = true)]
    #[serde(skip)]
    pub token: Option<String>,
    /// Seconds a node may take to answer /health after a (re)start.
    #[arg(long, default_value_t = 30.0, value_parser = parse_secs)]
    pub ready_timeout: f64,

    /// Seconds the checker may search before its verdict is unknown
    /// (0: no limit).
    #[arg(long, default_value_t = 300.0, value_parser = parse_secs)]
    pub check_time_limit: f64,

    /// etcd target: comma-separated client URLs, e.g.
    /// http://127.0.0.1:2379,http://127.0.0.1:22379.
    #[arg(long)]
    pub etcd_endpoints: Option<String>,
    /// etcd target: serializable (member-local) reads instead of
    /// linearizable ones.
    #[arg(long)]
    pub serializable: bool,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number of seconds ≥ 0, got {s:?}")),
    }
}

impl RunArgs {
    /// The node flags to pass through, in `--flag value` form.
    fn node_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        let mut push = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                flags.push(format!("--{name}"));
                flags.push(v);
            }
        };
        push("proposers", self.proposers.clone());
        push("learn", self.learn.clone());
        push("reads", self.reads.clone());
        push("fsync", self.fsync.clone());
        push("batch-size", self.batch_size.map(|v| v.to_string()));
        push("pipeline", self.pipeline.map(|v| v.to_string()));
        push("heartbeat-ms", self.heartbeat_ms.map(|v| v.to_string()));
        push(
            "election-timeout-ms",
            self.election_timeout_ms.map(|v| v.to_string()),
        );
        push("lease-drift-ms", self.lease_drift_ms.map(|v| v.to_string()));
        push(
            "request-timeout-ms",
            self.request_timeout_ms.map(|v| v.to_string()),
        );
        flags.extend(self.node_args.iter().cloned());
        flags
    }
}

/// Everything checked before anything starts.
struct Plan {
    /// What the nemesis picks from.
    steps: Vec<Step>,
    mix: Mix,
    seed: u64,
    etcd: Vec<(String, String)>,
}

fn plan(args: &RunArgs) -> anyhow::Result<Plan> {
    let mut steps = Step::parse_list(&args.nemesis)?;
    backend_faults(args, &mut steps)?;
    let faults = Step::kinds(&steps);
    let mix: Mix = args.mix.parse()?;
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of ops/s, got {rate}");
        }
    }
    if args.nemesis_interval <= 0.0 && !faults.is_empty() {
        bail!("--nemesis-interval must be positive");
    }
    let etcd = match (&args.target, &args.etcd_endpoints) {
        (Target::Etcd, None) => {
            // A local etcd cluster: its peer traffic runs through member
            // proxies, but it has no admin API for clocks and crashes.
            let unsupported: Vec<&str> = faults
                .iter()
                .filter(|k| matches!(k, FaultKind::Clock | FaultKind::PowerLoss))
                .map(|k| k.name())
                .collect();
            if !unsupported.is_empty() {
                bail!(
                    "a local etcd cluster takes partition, one-way, pause, kill, delay and \
                     reset faults, not {} (they need Synod's admin API): \
                     pass e.g. --nemesis partition,pause,kill",
                    unsupported.join(", ")
                );
            }
            Vec::new()
        }
        (Target::Etcd, Some(list)) => {
            let urls: Vec<(String, String)> = list
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .enumerate()
                .map(|(i, u)| (format!("e{}", i + 1), u.trim_end_matches('/').to_string()))
                .collect();
            for (_, u) in &urls {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    bail!("etcd endpoint {u:?} is not an http:// URL");
                }
            }
            if urls.is_empty() {
                bail!("--etcd-endpoints is empty");
            }
            if !faults.is_empty() {
                bail!(
                    "synod cannot inject faults into an etcd cluster it did not start: \
                     pass --nemesis none with --etcd-endpoints, or leave the endpoints out \
                     to run a local etcd cluster"
                );
            }
            urls
        }
        (Target::Synod, _) => Vec::new(),
    };
    let seed = args.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ u64::from(std::process::id()).rotate_left(32)
    });
    Ok(Plan {
        steps,
        mix,
        seed,
        etcd,
    })
}

/// Refuses, by name, the faults `--backend` cannot inject.
fn backend_faults(args: &RunArgs, steps: &mut Vec<Step>) -> anyhow::Result<()> {
    let faults = Step::kinds(steps);
    if args.backend != BackendKind::Local && args.target != Target::Synod {
        bail!("--target etcd runs on --backend local only");
    }
    if args.backend != BackendKind::External && args.node_urls.is_some() {
        bail!("--node-urls is for --backend external");
    }
    match args.backend {
        BackendKind::Local => {}
        BackendKind::Docker => {
            if !matches!(args.nodes, 3 | 5) {
                bail!(
                    "--nodes {} on docker: docker-compose.yml defines 3 nodes and \
                     docker-compose.five.yml 5; pass --nodes 3 or --nodes 5",
                    args.nodes
                );
            }
            if faults.contains(&FaultKind::Delay) {
                // The default mix has delay; only an explicit ask is an
                // error.
                if args.nemesis != DEFAULT_NEMESIS {
                    bail!(
                        "the docker backend cannot inject delay: it needs tc netem, which \
                         it does not do (and this machine's kernel lacks); drop delay from \
                         --nemesis"
                    );
                }
                steps.retain(|s| !s.has(FaultKind::Delay));
                eprintln!("synod: docker backend: delay left out of the default mix (no tc netem)");
            }
        }
        BackendKind::External => {
            if args.node_urls.is_none() {
                bail!("--backend external needs --node-urls URL,URL,...");
            }
            if args.token.is_none() {
                bail!("--backend external needs the cluster's --token (or SYNOD_TOKEN)");
            }
            let refused: Vec<&str> = faults
                .iter()
                .filter(|k| !EXTERNAL_FAULTS.contains(k))
                .map(|k| k.name())
                .collect();
            if !refused.is_empty() {
                bail!(
                    "an external cluster supports only the {} faults, not {}: pass e.g. \
                     --nemesis clock,power-loss",
                    EXTERNAL_FAULTS.map(FaultKind::name).join(" and "),
                    refused.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// The fault mix a run uses unless `--nemesis` says otherwise.
const DEFAULT_NEMESIS: &str = "partition,pause,kill,power-loss,clock,delay";

/// Runs `synod run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(args, plan))
}

/// SIGINT and SIGTERM, registered before anything starts so neither kills
/// us before we have healed and torn down.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    /// Waits for either; returns its name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

async fn run_async(args: RunArgs, plan: Plan) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new()?;
    let dir = crate::store::new_run_dir(&args.store, &args.name)?;
    let config = json!({"args": &args, "seed": plan.seed, "faults": plan.steps.iter().map(Step::to_string).collect::<Vec<_>>(),
        "version": env!("CARGO_PKG_VERSION")});
    write_json(&dir.join("config.json"), &config)?;
    eprintln!("synod: run {} (seed {})", dir.display(), plan.seed);
    let workload = WorkloadConfig {
        concurrency: args.concurrency as usize,
        rate: args.rate,
        keys: args.keys as usize,
        ops_per_key: args.ops_per_key,
        mix: plan.mix,
        seed: plan.seed,
    };
    let timeout = Duration::from_millis(args.client_timeout_ms.max(1));
    let outcome = match args.target {
        Target::Etcd if !plan.etcd.is_empty() => {
            let client = Arc::new(EtcdClient::new(
                plan.etcd.clone(),
                timeout,
                args.serializable,
            )?);
            execute::<_, LocalBackend>(&args, &plan, &dir, client, None, workload, &mut signals)
                .await
        }
        Target::Synod if args.backend == BackendKind::Docker => {
            let config = DockerConfig {
                nodes: args.nodes,
                dir: dir.clone(),
                token: format!("synod-{:x}", plan.seed),
                node_args: args.node_flags(),
                workspace: None,
                image: std::env::var("SYNOD_IMAGE")
                    .unwrap_or_else(|_| synod_nemesis::docker::DEFAULT_IMAGE.to_string()),
                project: None,
                ready_timeout: Duration::from_secs_f64(args.ready_timeout),
            };
            // May build the image: blocking, and long the first time.
            let backend = tokio::task::spawn_blocking(move || DockerBackend::new(config))
                .await
                .context("the docker backend panicked")??;
            let backend = Arc::new(backend);
            eprintln!("synod: docker project {}", backend.project());
            on_backend(
                &args,
                &plan,
                &dir,
                backend,
                Program::Synod,
                workload,
                timeout,
                &mut signals,
            )
            .await
        }
        Target::Synod if args.backend == BackendKind::External => {
            let urls = args
                .node_urls
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .filter(|u| !u.trim().is_empty())
                .map(str::to_string)
                .collect();
            let backend = Arc::new(ExternalBackend::new(
                urls,
                args.token.clone().unwrap_or_default(),
                Duration::from_secs_f64(args.ready_timeout),
            )?);
            on_backend(
                &args,
                &plan,
                &dir,
                backend,
                Program::Synod,
                workload,
                timeout,
                &mut signals,
            )
            .await
        }
        Target::Synod | Target::Etcd => {
            let program = match args.target {
                Target::Etcd => Program::Etcd,
                Target::Synod => Program::Synod,
            };
            let backend = Arc::new(
                LocalBackend::new(LocalConfig {
                    program,
                    nodes: args.nodes,
                    node_bin: None,
                    dir: dir.clone(),
                    token: format!("synod-{:x}", plan.seed),
                    node_args: args.node_flags(),
                    base_port: args.base_port,
                    ready_timeout: Duration::from_secs_f64(args.ready_timeout),
                })
                .await?,
            );
            on_backend(
                &args,
                &plan,
                &dir,
                backend,
                program,
                workload,
                timeout,
                &mut signals,
            )
            .await
        }
    }?;
    finish(&dir, outcome, args.check_time_limit)
}

/// Brings `backend` up, runs the workload and nemesis on it, and tears it
/// down whatever happened (an error, SIGINT or SIGTERM included).
#[allow(clippy::too_many_arguments)]
async fn on_backend<B: Backend>(
    args: &RunArgs,
    plan: &Plan,
    dir: &Path,
    backend: Arc<B>,
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
        if program == Program::Etcd {
            let client = Arc::new(EtcdClient::new(nodes, timeout, args.serializable)?);
            execute(args, plan, dir, client, b, workload, signals).await
        } else {
            let client = Arc::new(SynodClient::new(nodes.clone(), timeout)?);
            // The baseline right before the workload starts; the last
            // sample once its clients have stopped, before the teardown.
            let scraper = Scraper::start(nodes, backend.token().to_string()).await?;
            let mut observed = execute(args, plan, dir, client, b, workload, signals).await?;
            let (_, ok, fail, info) = observed.counts;
            observed.peer_messages = scraper
                .finish(ok + fail + info)
                .await?
                .ok_or("no node's /admin/metrics had peer-message counters");
            Ok(observed)
        }
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
struct Observed {
    events: u64,
    counts: (u64, u64, u64, u64),
    interrupted: Option<&'static str>,
    seconds: f64,
    seed: u64,
    /// Or why they are not available (etcd does not count them).
    peer_messages: Result<PeerMessages, &'static str>,
}

async fn execute<C: Client, B: Backend>(
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

    let drive = tokio::spawn({
        let recorder = rec.clients.clone();
        async move { workload::drive(client, &workload, recorder, clock, stop_clients_rx).await }
    });
    drop(rec.clients);

    let (in_force_tx, in_force) = watch::channel(Vec::<String>::new());
    let nemesis = match backend {
        Some(backend) => {
            let sink_rec = rec.nemesis.clone();
            let sink = Box::new(move |e: NemesisEvent| sink_rec.record(&e.f, e.value));
            let mut nemesis = Nemesis::new(backend, plan.seed, sink)?;
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
    let events = rec.done.await.context("the recorder panicked")??;
    progress.finish();
    Ok(Observed {
        events,
        counts: counts.snapshot(),
        interrupted,
        seconds: clock.now_ns() as f64 / 1e9,
        seed: plan.seed,
        peer_messages: Err("the target does not export Synod's peer-message counters"),
    })
}

/// The progress bar's driver; hidden when stderr is not a terminal.
struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

fn spawn_progress(
    total_secs: f64,
    counts: Arc<Counts>,
    in_force: watch::Receiver<Vec<String>>,
) -> Progress {
    let bar = ProgressBar::with_draw_target(
        Some((total_secs * 1000.0) as u64),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {eta} left  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let started = std::time::Instant::now();
    let b = bar.clone();
    let task = tokio::spawn(async move {
        loop {
            let (_, ok, fail, info) = counts.snapshot();
            let faults = in_force.borrow().clone();
            let faults = if faults.is_empty() {
                "none".to_string()
            } else {
                faults.join(",")
            };
            b.set_position(started.elapsed().as_millis() as u64);
            b.set_message(format!(
                "ok {ok}  fail {fail}  info {info}  faults: {faults}"
            ));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    Progress { bar, task }
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// Judges the history with the checker (which writes `results.json`,
/// `report.html` and plots into the run directory), adds what the run
/// itself observed under `"run"`, prints the verdict and where the report
/// is, and picks the exit status.
fn finish(dir: &Path, observed: Observed, check_time_limit: f64) -> anyhow::Result<ExitCode> {
    let (invoked, ok, fail, info) = observed.counts;
    let run = json!({
        "seed": observed.seed,
        "seconds": observed.seconds,
        "events": observed.events,
        "ops": {"invoked": invoked, "ok": ok, "fail": fail, "info": info},
        "interrupted": observed.interrupted,
        "history": "history.jsonl",
        "peer_messages": observed.peer_messages.as_ref().ok(),
        "peer_messages_unavailable": observed.peer_messages.as_ref().err(),
    });
    eprintln!(
        "synod: {} events, ok {ok}, fail {fail}, info {info} in {:.1} s",
        observed.events, observed.seconds
    );
    let peer_summary = match &observed.peer_messages {
        Ok(m) => m.summary(),
        Err(why) => format!("  peer messages per op: not available ({why})\n"),
    };
    if let Some(sig) = observed.interrupted {
        let results = json!({
            "verdict": null,
            "note": format!("interrupted by {sig}: the cluster was healed and torn down, the history kept unchecked"),
            "run": run,
        });
        write_json(&dir.join("results.json"), &results)?;
        eprintln!(
            "synod: interrupted by {sig}; history kept in {}",
            dir.display()
        );
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    let history_path = dir.join("history.jsonl");
    let history = History::read_path(&history_path)
        .map_err(|e| anyhow::anyhow!(e.in_file(&history_path.display().to_string())))?;
    let options = Options {
        time_limit: (check_time_limit > 0.0).then(|| Duration::from_secs_f64(check_time_limit)),
        ..Options::default()
    };
    let sections = [peer_section(observed.peer_messages.as_ref())];
    let outcome =
        check_and_report_with(&history, &options, dir, &sections).context("the checker failed")?;
    // The checker owns results.json; the run's own figures go beside its.
    let results_path = dir.join("results.json");
    let mut results: serde_json::Value = std::fs::read_to_string(&results_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({"verdict": outcome.verdict()}));
    results["run"] = run;
    write_json(&results_path, &results)?;
    print!("{}{peer_summary}", outcome.summary());
    println!("report: {}", dir.join("report.html").display());
    Ok(ExitCode::from(outcome.exit_code()))
}

/// The report's "Peer messages" section: per op, then by type and node.
fn peer_section(m: Result<&PeerMessages, &&'static str>) -> Section {
    let heading = "Peer messages".to_string();
    let m = match m {
        Ok(m) => m,
        Err(why) => {
            return Section {
                heading,
                text: format!("Not available: {why}."),
                ..Section::default()
            }
        }
    };
    let per_op = |v: u64| {
        if m.completed_ops > 0 {
            format!("{:.3}", v as f64 / m.completed_ops as f64)
        } else {
            "-".into()
        }
    };
    let mut text = format!(
        "{} per client operation: {} protocol messages sent by all nodes (heartbeats \
         included) over {} completed operations (ok + fail + info); {} samples of every \
         node's /admin/metrics, {:.1} s apart.",
        m.per_op
            .map(|p| format!("{p:.3}"))
            .unwrap_or_else(|| "-".into()),
        m.sent,
        m.completed_ops,
        m.samples,
        m.interval_s
    );
    if !m.restarts.is_empty() {
        let r: Vec<String> = m
            .restarts
            .iter()
            .map(|(n, k)| format!("{n} x{k}"))
            .collect();
        text += &format!(
            " Restarts seen: {} (what a node sent in the interval before it died is not counted).",
            r.join(", ")
        );
    }
    for g in &m.gaps {
        text += &format!(" {g}.");
    }
    let mut rows: Vec<Vec<String>> = m
        .by_type
        .iter()
        .map(|(k, &v)| vec![format!("type {k}"), v.to_string(), per_op(v)])
        .collect();
    rows.extend(
        m.by_node
            .iter()
            .map(|(n, &v)| vec![format!("node {n}"), v.to_string(), per_op(v)]),
    );
    rows.push(vec!["all".into(), m.sent.to_string(), per_op(m.sent)]);
    Section {
        heading,
        text,
        header: vec!["sent by".into(), "messages".into(), "per op".into()],
        rows,
    }
}
