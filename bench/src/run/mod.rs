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
//! On Synod targets a [`Scraper`](crate::peer_messages::Scraper) reads
//! every node's peer-message counters from just before the workload to
//! just after it, so the run also reports
//! peer messages per client operation (`run.peer_messages` in
//! `results.json`, a section of `report.html`, a line of the summary); on
//! etcd it is reported as not available.
//!
//! Whatever happens (an error, a panic, Ctrl-C, SIGTERM) the faults are
//! healed and the cluster torn down: by `finish` on every return path, by
//! the backend's `Drop` on a panic, and by the kernel (`PR_SET_PDEATHSIG`)
//!
//! # Layout
//!
//! - `args`: the flags ([`RunArgs`]), as `config.json` records them.
//! - `plan`: everything checked before anything starts.
//! - `any_backend`: the one cluster a run drives, whichever backend it is
//!   on ([`any_backend::AnyBackend`]).
//! - `phases`: bring-up, chaos, heal and recovery, and the signals that
//!   cut them short.
//! - `progress`: the progress bar.
//! - `results`: the checker's verdict, `results.json` and the exit status.

mod any_backend;
mod args;
mod phases;
mod plan;
mod progress;
mod results;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use synod_nemesis::Step;

pub use args::{ClockFault, RunArgs, Target};

use crate::artifacts::{write_json, RunConfig, RunResults};
use crate::client::etcd::EtcdClient;
use crate::workload::WorkloadConfig;
use any_backend::AnyBackend;
use phases::{execute, on_backend, Signals};
use plan::{plan, Plan};
use results::finish;

/// Runs `synod run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(args, plan))
}

async fn run_async(args: RunArgs, plan: Plan) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new()?;
    let dir = match &args.run_dir {
        Some(dir) => crate::store::given_run_dir(dir)?,
        None => crate::store::new_run_dir(&args.store, &args.name)?,
    };
    let result = run_in(&dir, args, plan, &mut signals).await;
    if let Err(e) = &result {
        // The run directory says why it has no verdict, so whoever reads
        // it (a suite, `synod serve`) need not scrape our stderr.
        if !dir.join("results.json").exists() {
            let failed = RunResults::unjudged(format!("the run failed: {e:#}"), None);
            if let Err(w) = write_json(&dir.join("results.json"), &failed) {
                eprintln!("synod: {w:#}");
            }
        }
    }
    result
}

/// The run itself, once its directory exists.
async fn run_in(
    dir: &Path,
    args: RunArgs,
    plan: Plan,
    signals: &mut Signals,
) -> anyhow::Result<ExitCode> {
    let dir = dir.to_path_buf();
    let config = RunConfig {
        args,
        seed: plan.seed,
        faults: plan.steps.iter().map(Step::to_string).collect(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    write_json(&dir.join("config.json"), &config)?;
    let args = config.args;
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
            execute::<_, AnyBackend>(&args, &plan, &dir, client, None, workload, signals).await
        }
        Target::Synod | Target::Etcd => {
            let (backend, program) = AnyBackend::build(&args, &plan, &dir).await?;
            on_backend(
                &args,
                &plan,
                &dir,
                Arc::new(backend),
                program,
                workload,
                timeout,
                signals,
            )
            .await
        }
    }?;
    finish(
        &dir,
        outcome,
        args.check_time_limit,
        args.election_timeout_ms(),
    )
}
