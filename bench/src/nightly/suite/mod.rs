//! `synod suite FILE.toml`: a matrix of runs, one after another.
//!
//! A suite file has a `name`, a `[defaults]` table and `[[config]]`
//! tables; every key is a `synod run` flag with dashes as underscores
//! (`time_limit`, `proposers`, `nodes`, ...), plus `faults` (the
//! `--nemesis` list) and `seeds`. A config inherits the defaults; an array
//! value is an axis of the matrix, so
//!
//! ```toml
//! [[config]]
//! proposers = ["leader", "any"]
//! faults = ["partition", "kill"]
//! ```
//!
//! is four runs. Every run is checked with clap before the first one
//! starts, so a typo in a nightly suite fails in a second, not after an
//! hour.
//!
//! Each run is a child `synod run` (the same executable): a run that
//! panics or hangs cannot take the suite down, and the child's own
//! teardown guarantees hold per run. The suite makes each run's directory
//! and hands it over (`--run-dir`); the child's output goes to a log
//! beside the suite's `summary.json` (a [`Summary`]), for people only:
//! the run's figures, and why it failed if it did, are read back from
//! its directory. The suite's exit status is the worst of its runs' in the
//! order valid (0) < unknown (2) < invalid (1) < error (3).
//!
//! A config may say `expect = "invalid"`: a teeth run, a configuration
//! known to be unsafe under its faults (`reads = "local"` under
//! partitions). There an invalid verdict passes, and a valid one fails the
//! suite like an invalid run would: the bench lost its teeth.
//!
//! A config may bound how long a fault keeps the clients down:
//! `expect_downtime_ms = N` and `expect_downtime_elections = K` (see
//! `downtime`). A run with a fault window over the bound fails like an
//! invalid run, whatever its verdict.
//!
//! Every run also adds a line to the store's trend file
//! (`STORE/_trends.jsonl`, see `nightly::trends`), which `synod serve`
//! draws over the nights at `/trends`.
//!
//! # Layout
//!
//! - `matrix`: the suite file expanded into its runs, every one checked.
//! - `runner`: one child `synod run`, bounded, read back.
//! - `downtime`: the down-time bound and the window that breaks it.
//! - `outputs`: the exit status, `summary.json`, the table, JUnit XML and
//!   the comparison.

mod downtime;
mod matrix;
mod outputs;
mod runner;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};

pub use matrix::{plan, Expect, PlannedRun};
pub use outputs::{report, RunResult, Summary};

use super::figures;
use matrix::sanitize;
use runner::run_one;

/// Arguments of `synod suite`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SuiteArgs {
    #[command(subcommand)]
    pub command: Option<SuiteCommand>,
    /// The suite file (TOML); see suites/smoke.toml.
    #[arg(required = true)]
    pub file: Option<PathBuf>,
    /// Run only the K-th of N deterministic slices of the suite, balanced
    /// by each run's expected time (for CI workers in parallel; merge
    /// their outputs with `synod suite merge`).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<super::shard::Shard>,
    /// Write summary.json, junit.xml, compare.html and the run logs here
    /// (default: STORE/_suites/NAME-TIMESTAMP).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write JUnit XML here, one test case per run.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// The store directory the runs go to.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// List the runs the suite would make, then stop.
    #[arg(long)]
    pub dry_run: bool,
}

/// What `synod suite` does besides running a file.
#[derive(clap::Subcommand, Debug)]
pub enum SuiteCommand {
    /// Merge the outputs of a suite's shards (their --out directories)
    /// into one table, summary.json, junit.xml and compare.html; the exit
    /// status is the worst run's.
    Merge(super::merge::MergeArgs),
}

/// Runs `synod suite`.
pub fn run(args: SuiteArgs) -> anyhow::Result<ExitCode> {
    if let Some(SuiteCommand::Merge(m)) = args.command {
        return super::merge::run(m);
    }
    let Some(file) = args.file.clone() else {
        bail!("synod suite needs a FILE (or `synod suite merge DIR...`)");
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let (suite, runs) = plan(&text, &file.display().to_string())?;
    // The whole suite's order, so a merge of the shards can restore it.
    let planned: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
    let runs = match args.shard {
        Some(shard) => super::shard::select(runs, shard),
        None => runs,
    };
    if args.dry_run {
        for r in &runs {
            figures::out(&format!("{}  synod run {}\n", r.name, r.args.join(" ")));
        }
        figures::out(&format!("{} runs\n", runs.len()));
        return Ok(ExitCode::SUCCESS);
    }
    let stamp = crate::store::timestamp(std::time::SystemTime::now());
    // Suite results live beside the run series, under a name `synod run`
    // refuses to be given ("_" is not special, but the directory has no
    // config.json, so listings of the store skip it).
    let out = args.out.clone().unwrap_or_else(|| {
        args.store
            .join("_suites")
            .join(format!("{}-{stamp}", sanitize(&suite)))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let exe = std::env::current_exe().context("cannot find the synod executable")?;
    let started = Instant::now();
    let mut results = Vec::new();
    eprintln!(
        "synod suite {suite}: {} runs, results in {}",
        runs.len(),
        out.display()
    );
    for (i, r) in runs.iter().enumerate() {
        eprint!("[{}/{}] {} ... ", i + 1, runs.len(), r.name);
        let _ = std::io::stderr().flush();
        let result = run_one(&exe, &args.store, &out, r);
        let expected = match (result.expect, result.status()) {
            (_, _) if result.downtime_breach.is_some() => ", down-time over the bound",
            (Expect::Invalid, 0) => ", as expected",
            (Expect::Invalid, _) => ", expected invalid",
            _ => "",
        };
        eprintln!(
            "{} (exit {}{expected}, {:.0} s)",
            result.verdict(),
            result.exit,
            result.wall_seconds
        );
        // A run that could not be judged says why at once, not only in
        // summary.json: a nightly's log is often all a reader has.
        if let (3, Some(why)) = (outputs::severity(result.status()), &result.error) {
            eprintln!("    {}", why.replace('\n', "\n    "));
        }
        results.push(result);
    }
    let points: Vec<super::trends::TrendPoint> = results
        .iter()
        .map(|r| match &r.figures {
            Some(f) => super::trends::TrendPoint::of(&suite, &stamp, f, &args.store),
            None => super::trends::TrendPoint::error(&suite, &stamp, &r.name),
        })
        .collect();
    match super::trends::append(&args.store, &points) {
        Ok(path) => eprintln!(
            "synod suite: trends: {} lines added to {}",
            points.len(),
            path.display()
        ),
        Err(e) => eprintln!("synod suite: cannot add to the trends: {e:#}"),
    }
    let summary = Summary {
        suite,
        file,
        started: stamp,
        seconds: started.elapsed().as_secs_f64(),
        exit: 0,
        shard: args.shard.map(|s| s.to_string()),
        planned,
        merged_from: Vec::new(),
        runs: results,
    };
    report(&out, summary, args.junit.as_deref())
}

#[cfg(test)]
mod tests {
    use super::outputs::junit;
    use super::*;

    #[test]
    fn a_teeth_config_passes_when_invalid_and_fails_when_valid() {
        let (_, runs) = plan(
            r#"
[[config]]
name = "local-reads"
reads = "local"
faults = "partition"
expect = "invalid"
[[config]]
name = "safe"
"#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(runs[0].expect, Expect::Invalid);
        assert_eq!(runs[1].expect, Expect::Valid);
        assert!(!runs[0].args.iter().any(|a| a.contains("expect")));
        let err = plan("[defaults]\nexpect = \"maybe\"\n", "x.toml").unwrap_err();
        assert!(format!("{err:#}").contains("expect must be"), "{err:#}");

        let result = |expect, exit| RunResult {
            name: "r".into(),
            args: vec![],
            expect,
            exit,
            wall_seconds: 1.0,
            log: "r.log".into(),
            figures: None,
            error: None,
            expect_downtime: None,
            downtime_breach: None,
        };
        assert_eq!(result(Expect::Invalid, 1).status(), 0);
        assert_eq!(result(Expect::Invalid, 0).status(), 1);
        assert_eq!(result(Expect::Invalid, 2).status(), 2);
        assert_eq!(result(Expect::Invalid, 3).status(), 3);
        assert_eq!(result(Expect::Valid, 1).status(), 1);
        let caught = result(Expect::Invalid, 1);
        let missed = result(Expect::Invalid, 0);
        let xml = junit("s", &[caught, missed], 1.0);
        assert!(
            xml.contains("tests=\"2\" failures=\"1\" errors=\"0\""),
            "{xml}"
        );
        assert!(xml.contains("but the run was valid"), "{xml}");
        assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    }
}
