//! `synod`: the command line of the Synod test bench.
//!
//! # Layout
//!
//! - `bench_workload`: the hidden `synod bench-workload`, the workload and
//!   recorder measured against the null target.
//! - `check`: `synod check`, judge stored or imported histories, one or many.
//! - `clean`: `synod clean`, remove what a killed bench left running.
//! - `export`: `synod export`, a run's history as Jepsen's history.edn.
//! - `run`: `synod run`, a cluster, a workload, a nemesis, a verdict.
//! - `client`: the [`client::Client`] trait and its targets (Synod's HTTP
//!   API, etcd's JSON gateway, an in-process null target).
//! - `workload`: client processes, keys, mix, open and closed loops.
//! - `recorder`: the one task that streams the history to disk.
//! - `cpu`: node and client CPU per operation, read from `/proc` and
//!   `getrusage` during a run.
//! - `due_latency`: an open loop's latency from when each op was due.
//! - `peer_messages`: scrapes every node's peer-message counters during a
//!   run, for peer messages per client operation.
//! - `ssh`: the flags of `synod run --backend ssh` and its backend.
//! - `store`: run directories and `store/latest`.
//! - `artifacts`: the bench's files in a run directory as types
//!   (`config.json`, `results.json`'s run section), written and read
//!   through them only (`docs/results.md`).
//! - `nightly`: `synod suite`, `synod compare`, `synod serve`.
//!
//! `main` parses the command line, runs one subcommand and turns its result
//! into the exit status every subcommand shares: 0 valid, 1 invalid,
//! 2 unknown, 3 bad input or the run itself failed.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod artifacts;
mod bench_workload;
mod check;
mod clean;
mod client;
mod cpu;
mod due_latency;
mod export;
mod nightly;
mod peer_messages;
mod recorder;
mod run;
mod ssh;
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
    /// Check histories for linearizability (one: a summary and its report;
    /// many: a table and the worst exit status).
    Check(check::CheckArgs),
    /// Run a chaos test: a cluster, clients, faults, then a verdict.
    Run(Box<run::RunArgs>),
    /// Run a matrix of chaos tests from a TOML file; summary, JUnit XML.
    Suite(nightly::suite::SuiteArgs),
    /// Compare runs side by side: figures, overlaid plots, differences;
    /// runs at several loads also get the throughput-latency curve.
    Compare(nightly::compare::CompareArgs),
    /// Serve the store as a web page (runs, reports, compare, archives).
    Serve(nightly::serve::ServeArgs),
    /// Write a run's history for another tool: Jepsen's history.edn.
    Export(export::ExportArgs),
    /// Remove what a bench killed outright left behind: containers,
    /// networks, volumes, SYNOD iptables chains, node processes.
    Clean(clean::CleanArgs),
    /// Measure the workload and recorder against the in-process null
    /// target: ops/s and client CPU per op (what `cargo bench -p
    /// synod-bench` runs).
    #[command(hide = true)]
    BenchWorkload(bench_workload::BenchWorkloadArgs),
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
        Command::Clean(args) => clean::run(args),
        Command::Export(args) => export::run(args),
        Command::BenchWorkload(args) => bench_workload::run(args),
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
