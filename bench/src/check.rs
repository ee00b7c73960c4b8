//! `synod check`: judge a stored or imported history.
//!
//! Reads the history (any format `synod_checker::import` knows, guessed by
//! default), checks it, prints the verdict and a short summary, and writes
//! `results.json`, `report.html` (and `explanation.html` when a key is not
//! linearizable) next to the history or into `--out`. Bad input is exit 3
//! with `file:line: reason`; the verdict is the exit status otherwise.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use synod_checker::import::{self, Format};
use synod_checker::{check_and_report, ModelKind, Options, PipelineError};

/// Arguments of `synod check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The history to check.
    pub history: PathBuf,
    /// The model: cas-register, kv, or auto (kv if the history appends).
    #[arg(long, default_value = "auto")]
    pub model: ModelKind,
    /// The history's format: auto, jsonl, jepsen-log, edn, jepsen-edn.
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Where to write results.json and report.html (default: next to the
    /// history).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Give up after this many seconds: the verdict is then `unknown`,
    /// naming the keys that ran out.
    #[arg(long, value_name = "SECS")]
    pub time_limit: Option<f64>,
    /// Memory budget for the search in MB: past it, `unknown`.
    #[arg(long, value_name = "MB")]
    pub memory_limit: Option<u64>,
    /// Decide every key even after one is found not linearizable.
    #[arg(long)]
    pub exhaustive: bool,
}

/// Exit status for bad input (shared with `main`'s error path).
const EXIT_BAD_INPUT: u8 = 3;

fn bad_input(msg: String) -> anyhow::Result<ExitCode> {
    eprintln!("{msg}");
    Ok(ExitCode::from(EXIT_BAD_INPUT))
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let file = args.history.display().to_string();
    let imported = match import::read_file(&args.history, args.format) {
        Ok(i) => i,
        Err(e) => return bad_input(e.in_file(&file)),
    };
    let time_limit = match args.time_limit {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return bad_input(format!(
                "--time-limit must be a positive number of seconds, got {s}"
            ))
        }
        s => s.map(Duration::from_secs_f64),
    };
    let options = Options {
        model: args.model,
        initial: imported.initial.clone(),
        time_limit,
        memory_limit: args
            .memory_limit
            .map(|mb| (mb as usize).saturating_mul(1 << 20)),
        exhaustive: args.exhaustive,
    };
    let out = args.out.clone().unwrap_or_else(|| {
        args.history
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let outcome = match check_and_report(&imported.history, &options, &out) {
        Ok(o) => o,
        Err(PipelineError::Check(synod_checker::check::CheckError::Model(e))) => {
            return bad_input(format!("{file}:{}: {}", e.line(), e.reason()))
        }
        Err(e) => return Err(e.into()),
    };
    print!("{}", outcome.summary());
    for f in &outcome.files {
        if f.extension().is_some_and(|e| e != "hgrm") {
            println!("wrote {}", f.display());
        }
    }
    Ok(ExitCode::from(outcome.exit_code()))
}
