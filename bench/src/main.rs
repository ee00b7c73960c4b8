//! `synod`: the command line of the Synod test bench.
//!
//! # Layout
//!
//! - `check`: `synod check`, judge a stored or imported history.
//!
//! `main` parses the command line, runs one subcommand and turns its result
//! into the exit status every subcommand shares: 0 valid, 1 invalid,
//! 2 unknown, 3 bad input or the run itself failed.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;

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
