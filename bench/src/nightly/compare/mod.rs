//! `synod compare RUN...`: runs side by side.
//!
//! The same figures per run in one table, overlaid plots (latency
//! quantiles, throughput and availability over time, each run's fault
//! windows shaded in its colour), and every difference from the first run
//! (the baseline) that is beyond noise marked. "Beyond noise" is two
//! tests at once: the change is over [`THRESHOLD`](changes::THRESHOLD)
//! of the baseline, and it is more than twice the spread the two runs
//! show second by second (the standard error of the difference of their
//! per-second means). A 25% swing in a run whose throughput already
//! swings 40% from one second to the next is not a finding. Peer messages per op is one
//! figure per run with no per-second spread, so only the threshold
//! applies to it; runs without it (etcd) show `n/a`.
//!
//! A series directory (`store/NAME`) stands for every run in it, oldest
//! first; `--last N` keeps its last N, so a configuration is compared with
//! its own last N nights.
//!
//! Written into the output directory: `compare.html` (self-contained,
//! plots inline), `compare.md` (for a pull request) and the plots as
//! `compare-*.svg`. Runs of one configuration at several loads (clients
//! or offered rates, the perf suite's) also get the throughput-latency
//! curve, `compare-throughput-latency.svg`, and its table of points.
//!
//! # Layout
//!
//! - this file: the command, and the files it writes.
//! - `changes`: the table's rows and what is beyond noise.
//! - `pages`: `compare.md` and `compare.html`.
//! - `plots`: the overlaid SVG plots.
//! - `curve`: for runs of a configuration at several loads (the perf
//!   suite's), p50 and p99 against achieved throughput, a line per
//!   configuration and loop, and the table of its points.
//! - `versus`: for runs that cross configurations with faults (a suite's),
//!   availability in the fault windows and down-time, a bar per
//!   configuration grouped by fault.

mod changes;
mod curve;
mod pages;
mod plots;
mod versus;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

pub use pages::markdown;

use super::figures::{self, RunFigures};
use pages::html;
use plots::{availability_plot, latency_plot, throughput_plot};

/// Arguments of `synod compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Run directories (store/NAME/TIMESTAMP), or series directories
    /// (store/NAME: every run in it); the first run is the baseline. Runs
    /// of one configuration at several loads (`--concurrency` or
    /// `--rate`, e.g. the runs of suites/perf.toml) also get the
    /// throughput-latency curve: p50 and p99 against achieved ok ops/s.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Where to write compare.html, compare.md and the plots.
    #[arg(long, default_value = "compare")]
    pub out: PathBuf,
    /// Of each series directory, only its last N runs: `synod compare
    /// --last 7 store/nightly-log-partition` is the last seven nights of
    /// that configuration, the oldest the baseline.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub last: Option<u32>,
}

/// Runs `synod compare`.
pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let mut runs = Vec::new();
    for path in &args.runs {
        if path.join("config.json").is_file() {
            runs.push(figures::read_run(path)?);
        } else {
            let mut series: Vec<RunFigures> = std::fs::read_dir(path)
                .with_context(|| format!("{} is neither a run nor a series", path.display()))?
                .flatten()
                .filter(|e| e.path().join("config.json").is_file())
                .filter_map(|e| figures::read_run(&e.path()).ok())
                .collect();
            anyhow::ensure!(!series.is_empty(), "{}: no runs in it", path.display());
            series.sort_by(|a, b| a.stamp.cmp(&b.stamp));
            if let Some(n) = args.last {
                let keep = series.len().saturating_sub(n as usize);
                series.drain(..keep);
            }
            runs.extend(series);
        }
    }
    let files = write(&runs, &args.out)?;
    figures::out(&markdown(&runs));
    for f in files {
        figures::out(&format!("wrote {}\n", f.display()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the comparison of `runs` into `out`; returns the files written.
pub fn write(runs: &[RunFigures], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let plots = all_plots(runs);
    let mut files = Vec::new();
    for (name, svg) in &plots {
        let p = out.join(format!("compare-{name}.svg"));
        std::fs::write(&p, svg).with_context(|| format!("cannot write {}", p.display()))?;
        files.push(p);
    }
    let html_path = out.join("compare.html");
    let link = |r: &RunFigures| {
        let dir = r.dir.canonicalize().unwrap_or_else(|_| r.dir.clone());
        format!("file://{}", dir.join("report.html").display())
    };
    std::fs::write(&html_path, html(runs, &plots, &link))
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    let md_path = out.join("compare.md");
    std::fs::write(&md_path, markdown(runs))
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    files.insert(0, md_path);
    files.insert(0, html_path);
    Ok(files)
}

/// The comparison as one self-contained page; `link` gives each run's
/// report URL.
pub fn page(runs: &[RunFigures], link: &dyn Fn(&RunFigures) -> String) -> String {
    html(runs, &all_plots(runs), link)
}

/// Every plot of a comparison: the throughput-latency curve where a
/// configuration ran at several loads, the by-fault bars where the runs
/// cross configurations with faults, then the overlays.
fn all_plots(runs: &[RunFigures]) -> Vec<(&'static str, String)> {
    let mut plots: Vec<(&'static str, String)> = Vec::new();
    if let Some(curves) = curve::curves(runs) {
        plots.push((pages::CURVE_PLOT, curve::plot(&curves)));
    }
    plots.extend(versus::by_fault(runs).map(Vec::from).unwrap_or_default());
    plots.extend([
        ("latency", latency_plot(runs)),
        ("throughput", throughput_plot(runs)),
        ("availability", availability_plot(runs)),
    ]);
    plots
}
