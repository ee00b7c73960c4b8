//! `synod`: the command line of the Synod test bench.
//!
//! # Layout
//!
//! - `check`: `synod check`, judge a stored or imported history.
//! - `run`: `synod run`, a cluster, a workload, a nemesis, a verdict.
//! - `client`: the [`client::Client`] trait and its targets (Synod's HTTP
//!   API, etcd's JSON gateway, an in-process null target).
//! - `workload`: client processes, keys, mix, open and closed loops.
//! - `recorder`: the one task that streams the history to disk.
//! - `peer_messages`: scrapes every node's peer-message counters during a
//!   run, for peer messages per client operation.
//! - `store`: run directories and `store/latest`.
//! - `nightly`: `synod suite`, `synod compare`, `synod serve`.
//!
//! `main` parses the command line, runs one subcommand and turns its result
//! into the exit status every subcommand shares: 0 valid, 1 invalid,
//! 2 unknown, 3 bad input or the run itself failed.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod client;
mod nightly;
mod peer_messages;
mod recorder;
mod run;
mod store;
mod workload;

/// Synod: a Jepsen-style fault-injection test bench for Paxos.
#[derive(Parser)]
#[command(name = "synod", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a history for linearizability and write its report.
    Check(check::CheckArgs),
    /// Run a chaos test: a cluster, clients, faults, then a verdict.
    Run(Box<run::RunArgs>),
    /// Run a matrix of chaos tests from a TOML file; summary, JUnit XML.
    Suite(nightly::suite::SuiteArgs),
    /// Compare runs side by side: figures, overlaid plots, differences.
    Compare(nightly::compare::CompareArgs),
    /// Serve the store as a web page (runs, reports, compare, archives).
    Serve(nightly::serve::ServeArgs),
    /// Measure the workload and recorder against the in-process null
    /// target (what `cargo bench -p synod-bench` runs).
    #[command(hide = true)]
    BenchWorkload(BenchWorkloadArgs),
}

#[derive(clap::Args)]
struct BenchWorkloadArgs {
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent workers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop at this many ops/s; closed loop if absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Where to stream the history (a temporary file if absent).
    #[arg(long)]
    history: Option<std::path::PathBuf>,
}

fn bench_workload(args: BenchWorkloadArgs) -> anyhow::Result<ExitCode> {
    let keep = args.history.is_some();
    let path = args.history.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("synod-bench-{}.jsonl", std::process::id()))
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let figures = rt.block_on(workload::bench_null(
        &path,
        std::time::Duration::from_secs_f64(args.seconds),
        args.concurrency.max(1),
        args.rate,
    ))?;
    println!("{}", serde_json::to_string(&figures)?);
    println!(
        "null target: {} ops in {:.2} s = {:.0} ops/s, {} events, history {:.1} MB at {}",
        figures.ops,
        figures.seconds,
        figures.ops_per_sec,
        figures.events,
        figures.history_bytes as f64 / 1e6,
        if keep {
            path.display().to_string()
        } else {
            "a temporary file, now removed".to_string()
        }
    );
    if !keep {
        let _ = std::fs::remove_file(&path);
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit status for "the run or its input was bad".
pub const EXIT_ERROR: u8 = 3;

fn main() -> ExitCode {
    init_tracing();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Run(args) => run::run(*args),
        Command::Suite(args) => nightly::suite::run(args),
        Command::Compare(args) => nightly::compare::run(args),
        Command::Serve(args) => nightly::serve::run(args),
        Command::BenchWorkload(args) => bench_workload(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("synod: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SYNOD_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
