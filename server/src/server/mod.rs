//! The HTTP server around the pure core: a thin async shell.
//!
//! # Layout
//!
//! - [`cli`]: flags and `SYNOD_*` variables, turned into the core's config.
//! - [`bootstrap`]: joining the cluster; what an empty data directory
//!   means (new member, or one that lost its disk), asked of the peers.
//! - [`clock`]: the node's skewable clock; the core's only time source.
//! - [`driver`]: the replica task, sole owner of the [`Replica`]; events in
//!   (client requests, peer messages, ticks), groups of outputs out.
//! - [`disk`]: the disk thread; group commit, then release of messages
//!   and replies (persist before send).
//! - [`peers`]: one link task per peer, batching messages onto a peer
//!   stream; [`peer_stream`]: its format and the receiving side.
//! - [`api`]: the client, peer and admin routers and the JSON errors.
//! - [`listen`]: the accept loop: timeouts, the connection limit and the
//!   capacity reserved for peers.
//! - [`metrics`]: atomics rendered in the Prometheus text format.
//!
//! Data flow of a write: handler → `Event::Client` → replica task →
//! `Group` → disk thread (append, fdatasync) → peer links / the handler's
//! oneshot → HTTP reply. Each output says which records it stands on;
//! those the disk thread's durable point already covers leave from the
//! replica task directly (`synod_node::durability`, simulated as shipped).

pub mod api;
pub mod bootstrap;
pub mod cli;
pub mod clock;
pub mod disk;
pub mod driver;
pub mod listen;
pub mod metrics;
pub mod peer_stream;
pub mod peers;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use synod_node::storage::FileStorage;
use synod_node::{Replica, StorageError};
use tokio::sync::mpsc;

use self::cli::{Args, LogFormat};

/// Events waiting for the replica task before handlers get "overloaded".
const EVENT_QUEUE: usize = 65_536;

/// Exit status when the data directory is held by another process.
const EXIT_LOCKED: u8 = 3;

/// Exit status when this node lost its durable state and must rejoin.
const EXIT_LOST_STATE: u8 = 4;

/// Exit status after a panic anywhere: an invariant broke, and a node
/// that lingers (answering health checks with a dead core) is worse than
/// one that stops.
const EXIT_PANIC: i32 = 70;

/// The binary's entry point: the one place that turns errors into exit
/// codes.
pub fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format);
    exit_on_panic();
    // Tuning knob, not a protocol flag: several nodes often share a few
    // cores (tests, benches, one-machine clusters), where fewer worker
    // threads per node mean fewer context switches.
    let workers = std::env::var("SYNOD_WORKER_THREADS")
        .ok()
        .and_then(|w| w.parse::<usize>().ok())
        .filter(|&w| w > 0);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(w) = workers {
        builder.worker_threads(w);
    }
    let runtime = match builder.enable_all().thread_name("synod-node").build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("synod-node: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let locked = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<StorageError>(),
                    Some(StorageError::Locked { .. })
                )
            });
            let lost = e
                .chain()
                .any(|c| c.downcast_ref::<bootstrap::JoinError>().is_some());
            eprintln!("synod-node: error: {e:#}");
            tracing::error!("{e:#}");
            if locked {
                ExitCode::from(EXIT_LOCKED)
            } else if lost {
                ExitCode::from(EXIT_LOST_STATE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Any panic (the replica task's, the disk thread's, a handler's) ends the
/// process at once with [`EXIT_PANIC`], after the usual message.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("synod-node: a panic is a broken invariant; exiting");
        // SAFETY: _exit ends the process without unwinding or cleanup;
        // nothing of this node may go on after a broken invariant.
        unsafe { libc::_exit(EXIT_PANIC) }
    }));
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let token = args.token()?;
    let peer_urls = args.peer_urls()?;
    let cfg = args.config(&peer_urls)?;
    let id = cfg.id;

    // Lock first: a second process on this directory must stop here,
    // before it binds a port or talks to anyone.
    let mut storage = FileStorage::open(&args.data_dir, cfg.fsync).with_context(|| {
        format!(
            "cannot open the data directory {} (is another synod-node running on it?)",
            args.data_dir.display()
        )
    })?;
    let listener = listen::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    // Tests and scripts read the bound address (useful with port 0).
    println!("synod-node {id} listening on http://{bound}");
    // While it joins, the node answers its peers' questions on the same
    // socket (and nothing else).
    let listener = listener.into_std()?;
    let joined = bootstrap::join(
        &mut storage,
        &cfg,
        &peer_urls,
        &token,
        args.rejoin,
        &listener,
    )
    .await
    .context("cannot recover the log")?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let recovered = joined.recovered;
    tracing::info!(
        node = id,
        cluster = %joined.identity.cluster,
        records = recovered.records.len(),
        snapshot = recovered.snapshot.is_some(),
        "recovered durable state"
    );
    let clock = clock::NodeClock::new();
    let seed = rand::random::<u64>();
    let replica = Replica::recover(cfg.clone(), seed, recovered, clock.now_ms());

    let metrics = Arc::new(metrics::Metrics::new());
    let mut listen_config = listen::Config::new(
        &args,
        peer_urls.len(),
        token.as_str().into(),
        metrics.clone(),
    )?;
    let peers = peers::Peers::start(
        id,
        &joined.identity.cluster,
        &peer_urls,
        &token,
        metrics.clone(),
    )?;
    let (disk_tx, disk_rx) = std::sync::mpsc::channel();
    let durable = disk::Durable::default();
    let work = Arc::new(std::sync::Mutex::new(disk::DiskWork::new(
        synod_node::durability::Pipeline::new(storage, cfg.fsync),
        cfg.fsync,
        peers.clone(),
        metrics.clone(),
        durable.clone(),
    )));
    let disk = disk::DiskThread {
        work: work.clone(),
        panic_at: args
            .test_disk_panic_after_ms
            .map(|ms| std::time::Instant::now() + Duration::from_millis(ms)),
    };
    let disk_thread = std::thread::Builder::new()
        .name("synod-disk".into())
        .spawn(move || disk.run(disk_rx))
        .context("cannot start the disk thread")?;

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let mut driver = driver::Driver::new(
        replica,
        clock,
        disk::Inline::new(work, disk_tx.clone()),
        metrics.clone(),
        peers,
        durable,
    );
    driver.panic_after = args.test_core_panic_after_ms.map(Duration::from_millis);
    let mut replica_task = tokio::spawn(driver.run(events_rx));

    let shutting_down = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let state = api::AppState {
        id,
        members: cfg.members.clone().into(),
        token: listen_config.token.clone(),
        events: events_tx,
        disk: disk_tx,
        metrics,
        request_timeout: Duration::from_millis(cfg.request_timeout_ms),
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        shutting_down: shutting_down.clone(),
        in_flight: in_flight.clone(),
        identity: Arc::new(api::Heard::new(args.data_dir.clone(), joined.identity)),
    };
    listen_config.peer_streams = Some(state.clone());
    let app = api::router(state);

    tracing::info!(
        node = id,
        %bound,
        members = ?cfg.members,
        proposers = ?cfg.proposers,
        learn = ?cfg.learn,
        reads = ?cfg.reads,
        fsync = ?cfg.fsync,
        "synod-node serving"
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(listen::serve(listener, app, listen_config, async move {
        let _ = stop_rx.await;
    }));

    wait_for_signal().await?;
    tracing::info!("shutting down: refusing new client requests, draining the rest");
    shutting_down.store(true, Relaxed);
    // Peers are still served while in-flight client requests finish, so
    // their commands can still be chosen and answered.
    let drain_until =
        tokio::time::Instant::now() + Duration::from_millis(cfg.request_timeout_ms + 500);
    while in_flight.load(Relaxed) > 0 && tokio::time::Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(2), &mut server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server error during shutdown"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => {
            tracing::warn!("connections still open after 2 s; closing them");
            server.abort();
            let _ = server.await;
        }
    }
    // The server is gone and with it every event sender:
    // the replica task ends at its next wake-up. Whatever it had not
    // shipped was neither persisted nor answered, like a crash a moment
    // earlier; then the disk thread syncs what it has and ends.
    if tokio::time::timeout(Duration::from_secs(1), &mut replica_task)
        .await
        .is_err()
    {
        replica_task.abort();
    }
    let joined = tokio::task::spawn_blocking(move || disk_thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        anyhow::bail!("the disk thread failed during shutdown");
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// SIGTERM (container stop) or SIGINT (Ctrl-C).
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
