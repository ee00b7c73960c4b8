//! `synod bench-workload` (hidden): the workload and the recorder measured
//! against the in-process null target, so `cargo bench -p synod-bench`
//! times the bench's own overhead without a cluster in the way: ops/s,
//! and the process's CPU per op (what `synod run` reports as client CPU
//! per op, less the HTTP client and the link proxies).

use std::process::ExitCode;

use crate::workload;

#[derive(clap::Args)]
pub struct BenchWorkloadArgs {
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

/// Runs `synod bench-workload`: the figures as one JSON line (what
/// `benches/workload.rs` reads), then the same for a person.
pub fn run(args: BenchWorkloadArgs) -> anyhow::Result<ExitCode> {
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
        "null target: {} ops in {:.2} s = {:.0} ops/s, client CPU {} µs/op, {} events, history {:.1} MB at {}",
        figures.ops,
        figures.seconds,
        figures.ops_per_sec,
        figures
            .client_cpu_us_per_op
            .map_or("-".to_string(), |c| format!("{c:.2}")),
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
