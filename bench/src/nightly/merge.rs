//! `synod suite merge DIR...`: the outputs of a suite's shards (each a
//! `synod suite FILE --shard K/N --out DIR`) as the one suite's: one
//! table, `summary.json`, `junit.xml` and `compare.html`, the runs in the
//! suite's own order, and the exit status of the worst run.
//!
//! A run's figures are read again from its run directory where that
//! exists here (the plots need its per-second series), else taken from
//! the shard's `summary.json`. Shards of different suites, a run in two
//! shards, or a planned run in none are refused: a merge that quietly
//! dropped a run would report a nightly greener than it was.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::figures;
use super::suite::{report, RunResult, Summary};

/// Arguments of `synod suite merge`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// The shards' output directories (each with its summary.json).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged outputs go.
    #[arg(long, default_value = "merged")]
    pub out: PathBuf,
    /// Also write the merged JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

/// One shard's summary, as far as a merge needs it.
struct ShardSummary {
    dir: PathBuf,
    suite: String,
    file: PathBuf,
    planned: Vec<String>,
    seconds: f64,
    runs: Vec<RunResult>,
}

fn read(dir: &Path) -> anyhow::Result<ShardSummary> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let summary: Summary = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a suite's summary.json", path.display()))?;
    let planned = if summary.planned.is_empty() {
        // An unsharded suite's summary: its runs are the plan.
        summary.runs.iter().map(|r| r.name.clone()).collect()
    } else {
        summary.planned
    };
    Ok(ShardSummary {
        dir: dir.to_path_buf(),
        suite: summary.suite,
        file: summary.file,
        planned,
        seconds: summary.seconds,
        runs: summary.runs,
    })
}

/// The shards' runs as one suite's, in the suite's order; refuses
/// mismatched shards, duplicates and missing runs.
fn combine(shards: Vec<ShardSummary>) -> anyhow::Result<(String, Vec<String>, Vec<RunResult>)> {
    let Some(first) = shards.first() else {
        bail!("synod suite merge needs at least one shard directory");
    };
    let (suite, planned) = (first.suite.clone(), first.planned.clone());
    let mut runs: Vec<(PathBuf, RunResult)> = Vec::new();
    for s in shards {
        if s.suite != suite || s.planned != planned {
            bail!(
                "{} is a shard of suite {:?} ({} runs), not of {suite:?} ({} runs): merge the \
                 shards of one suite file",
                s.dir.display(),
                s.suite,
                s.planned.len(),
                planned.len()
            );
        }
        for r in s.runs {
            if let Some((other, _)) = runs.iter().find(|(_, o)| o.name == r.name) {
                bail!(
                    "run {} is in both {} and {}: each run belongs to one shard",
                    r.name,
                    other.display(),
                    s.dir.display()
                );
            }
            runs.push((s.dir.clone(), r));
        }
    }
    let missing: Vec<&String> = planned
        .iter()
        .filter(|n| !runs.iter().any(|(_, r)| &r.name == *n))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} of the suite's {} runs are in no shard given: {}",
            missing.len(),
            planned.len(),
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let position = |name: &str| planned.iter().position(|n| n == name).unwrap_or(usize::MAX);
    runs.sort_by_key(|(_, r)| position(&r.name));
    Ok((suite, planned, runs.into_iter().map(|(_, r)| r).collect()))
}

/// Runs `synod suite merge`.
pub fn run(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let shards = args
        .dirs
        .iter()
        .map(|d| read(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let seconds = shards.iter().map(|s| s.seconds).fold(0.0, f64::max);
    let count = shards.len();
    let file = shards.first().map(|s| s.file.clone()).unwrap_or_default();
    let (suite, planned, mut results) = combine(shards)?;
    for r in &mut results {
        // Fresh from the run directory where it is here: with its series.
        if let Some(dir) = r.figures.as_ref().map(|f| f.dir.clone()) {
            if let Ok(f) = figures::read_run(&dir) {
                r.figures = Some(f);
            }
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    eprintln!(
        "synod suite merge: {} runs of {suite} from {count} shards into {}",
        results.len(),
        args.out.display()
    );
    let summary = Summary {
        suite,
        file,
        started: crate::store::timestamp(std::time::SystemTime::now()),
        // The wall time of the slowest shard: what the fan-out took.
        seconds,
        exit: 0,
        shard: None,
        planned,
        merged_from: args.dirs.clone(),
        runs: results,
    };
    report(&args.out, summary, args.junit.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nightly::suite::Expect;
    use serde_json::json;

    fn result(name: &str, exit: u8) -> RunResult {
        RunResult {
            name: name.into(),
            args: vec![],
            expect: Expect::Valid,
            exit,
            wall_seconds: 1.0,
            log: PathBuf::from(format!("{name}.log")),
            figures: None,
            error: None,
            expect_downtime: None,
            downtime_breach: None,
        }
    }

    fn shard(dir: &str, planned: &[&str], runs: &[&str]) -> ShardSummary {
        ShardSummary {
            dir: PathBuf::from(dir),
            suite: "s".into(),
            file: PathBuf::from("s.toml"),
            planned: planned.iter().map(|s| s.to_string()).collect(),
            seconds: 1.0,
            runs: runs.iter().map(|n| result(n, 0)).collect(),
        }
    }

    #[test]
    fn shards_merge_in_the_suite_order() {
        let plan = ["a", "b", "c"];
        let (_, _, runs) = combine(vec![
            shard("1", &plan, &["b"]),
            shard("2", &plan, &["a", "c"]),
        ])
        .unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn duplicates_missing_runs_and_other_suites_are_refused() {
        let plan = ["a", "b"];
        let e = combine(vec![
            shard("1", &plan, &["a"]),
            shard("2", &plan, &["a", "b"]),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("in both 1 and 2"), "{e}");
        let e = combine(vec![shard("1", &plan, &["a"])]).unwrap_err();
        assert!(e.to_string().contains("in no shard given: b"), "{e}");
        let e = combine(vec![shard("1", &plan, &["a"]), shard("2", &["x"], &["x"])]).unwrap_err();
        assert!(
            e.to_string().contains("merge the shards of one suite"),
            "{e}"
        );
    }

    #[test]
    fn a_summary_round_trips() {
        let dir = std::env::temp_dir().join(format!("synod-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let runs = vec![result("a", 1), result("b", 0)];
        let v = json!({"suite": "s", "file": "s.toml", "started": "20261202T000000Z",
            "seconds": 3.0, "exit": 1, "planned": ["a", "b"], "runs": runs});
        std::fs::write(dir.join("summary.json"), v.to_string()).unwrap();
        let s = read(&dir).unwrap();
        assert_eq!(s.runs.len(), 2);
        assert_eq!(s.runs[0].status(), 1);
        assert_eq!(s.planned, ["a", "b"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
