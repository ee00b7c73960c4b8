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
//! teardown guarantees hold per run. Its output goes to a log beside the
//! suite's `summary.json`; its figures are read back from its run
//! directory. The suite's exit status is the worst of its runs' in the
//! order valid (0) < unknown (2) < invalid (1) < error (3).
//!
//! A config may say `expect = "invalid"`: a teeth run, a configuration
//! known to be unsafe under its faults (`reads = "local"` under
//! partitions). There an invalid verdict passes, and a valid one fails the
//! suite like an invalid run would: the bench lost its teeth.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde::Serialize;
use serde_json::json;

use super::figures::{self, fmt_opt, RunFigures};
use crate::run::RunArgs;
use crate::EXIT_ERROR;

/// Arguments of `synod suite`.
#[derive(clap::Args, Debug)]
pub struct SuiteArgs {
    /// The suite file (TOML); see suites/smoke.toml.
    pub file: PathBuf,
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

/// The verdict a run must reach to pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The default: the configuration is meant to be linearizable.
    #[default]
    Valid,
    /// A teeth run: an unsafe configuration the checker must catch.
    Invalid,
}

impl Expect {
    fn parse(v: &toml::Value) -> anyhow::Result<Expect> {
        match v.as_str() {
            Some("valid") => Ok(Expect::Valid),
            Some("invalid") => Ok(Expect::Invalid),
            _ => bail!("expect must be \"valid\" or \"invalid\", not {v:?}"),
        }
    }
}

/// One run of the matrix: its name and its `synod run` flags.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedRun {
    pub name: String,
    pub args: Vec<String>,
    pub expect: Expect,
    /// Seconds the child may take before it is stopped.
    #[serde(skip)]
    pub deadline: Duration,
}

/// Wraps [`RunArgs`] so the suite can validate a run's flags with clap.
#[derive(Parser)]
#[command(name = "synod run", no_binary_name = true)]
struct RunOnly {
    #[command(flatten)]
    args: RunArgs,
}

/// Keys whose array value is one flag's list, not an axis.
const LIST_KEYS: [&str; 1] = ["node_args"];

/// Expands a suite file into its runs, every one validated.
pub fn plan(text: &str, origin: &str) -> anyhow::Result<(String, Vec<PlannedRun>)> {
    let doc: toml::Table = toml::from_str(text).with_context(|| format!("{origin}: not TOML"))?;
    let suite = doc
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("suite")
        .to_string();
    let clean = sanitize(&suite);
    for key in doc.keys() {
        if !matches!(key.as_str(), "name" | "description" | "defaults" | "config") {
            bail!("{origin}: unknown top-level key {key:?} (expected name, description, defaults, config)");
        }
    }
    let defaults = match doc.get("defaults") {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => bail!("{origin}: [defaults] must be a table"),
        None => toml::Table::new(),
    };
    let configs = match doc.get("config") {
        Some(toml::Value::Array(a)) => a.clone(),
        Some(_) => bail!("{origin}: config must be [[config]] tables"),
        None => vec![toml::Value::Table(toml::Table::new())],
    };
    let mut runs = Vec::new();
    for (ci, config) in configs.iter().enumerate() {
        let toml::Value::Table(config) = config else {
            bail!("{origin}: config #{} is not a table", ci + 1);
        };
        let mut merged = defaults.clone();
        for (k, v) in config {
            merged.insert(k.clone(), v.clone());
        }
        let label = merged
            .remove("name")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("c{}", ci + 1));
        let expect = match merged.remove("expect") {
            Some(v) => Expect::parse(&v).with_context(|| format!("{origin}: config {label:?}"))?,
            None => Expect::Valid,
        };
        // Axes: every array except list-valued flags, in key order.
        let axes: Vec<(String, Vec<toml::Value>)> = merged
            .iter()
            .map(|(k, v)| match v {
                toml::Value::Array(a) if !LIST_KEYS.contains(&k.as_str()) => (k.clone(), a.clone()),
                other => (k.clone(), vec![other.clone()]),
            })
            .collect();
        if let Some((k, _)) = axes.iter().find(|(_, vs)| vs.is_empty()) {
            bail!("{origin}: config {label:?}: {k} is an empty list");
        }
        let mut index = vec![0usize; axes.len()];
        loop {
            let mut name = format!("{clean}-{}", sanitize(&label));
            let mut flags = Vec::new();
            for (i, (k, vs)) in axes.iter().enumerate() {
                let v = &vs[index[i]];
                if vs.len() > 1 {
                    // Faults and seeds read well bare; settings need
                    // their key (`nodes=3`, not `3`).
                    let value = sanitize(&scalar(v)?);
                    name.push('-');
                    match k.as_str() {
                        "faults" | "fault" => name.push_str(&value),
                        "seeds" => name.push_str(&format!("s{value}")),
                        _ => name.push_str(&format!("{k}={value}")),
                    }
                }
                push_flag(&mut flags, k, v)
                    .with_context(|| format!("{origin}: config {label:?}"))?;
            }
            let parsed = RunOnly::try_parse_from(&flags).map_err(|e| {
                anyhow::anyhow!("{origin}: run {name} has bad settings: {}", e.render())
            })?;
            let a = &parsed.args;
            let deadline = Duration::from_secs_f64(
                a.time_limit
                    + a.recovery
                    + if a.check_time_limit > 0.0 {
                        a.check_time_limit
                    } else {
                        3600.0
                    }
                    + a.ready_timeout
                    + 120.0,
            );
            runs.push(PlannedRun {
                name,
                args: flags,
                expect,
                deadline,
            });
            let lens: Vec<usize> = axes.iter().map(|(_, vs)| vs.len()).collect();
            if !advance(&mut index, &lens) {
                break;
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for r in &runs {
        if !seen.insert(r.name.clone()) {
            bail!(
                "{origin}: two runs are both named {:?}: give the configs distinct names",
                r.name
            );
        }
    }
    Ok((suite, runs))
}

/// The next combination of axis indices, last axis fastest; false once
/// every combination has been made.
fn advance(index: &mut [usize], lens: &[usize]) -> bool {
    for i in (0..index.len()).rev() {
        index[i] += 1;
        if index[i] < lens[i] {
            return true;
        }
        index[i] = 0;
    }
    false
}

/// A scalar as text (for run names and flag values).
fn scalar(v: &toml::Value) -> anyhow::Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!("expected a string, number or boolean, got {other:?}"),
    })
}

fn push_flag(flags: &mut Vec<String>, key: &str, v: &toml::Value) -> anyhow::Result<()> {
    let flag = match key {
        "faults" | "fault" => "--nemesis".to_string(),
        "seeds" => "--seed".to_string(),
        "node_args" => "--node-arg".to_string(),
        "store" | "name" => bail!("{key} is set by the suite, not per run"),
        k => format!("--{}", k.replace('_', "-")),
    };
    match v {
        toml::Value::Boolean(true) => flags.push(flag),
        toml::Value::Boolean(false) => {}
        toml::Value::Array(items) => {
            for item in items {
                flags.push(format!("{flag}={}", scalar(item)?));
            }
        }
        other => flags.push(format!("{flag}={}", scalar(other)?)),
    }
    Ok(())
}

/// Keeps a run name a plain directory name.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' | '=' => c,
            ',' => '+',
            _ => '-',
        })
        .collect()
}

/// How bad an exit status is: valid < unknown < invalid < error.
pub fn severity(code: u8) -> u8 {
    match code {
        0 => 0,
        2 => 1,
        1 => 2,
        _ => 3,
    }
}

/// The worst of several exit statuses.
pub fn worst(codes: impl IntoIterator<Item = u8>) -> u8 {
    codes.into_iter().max_by_key(|&c| severity(c)).unwrap_or(0)
}

/// One finished run of the suite.
#[derive(Debug, Serialize)]
pub struct RunResult {
    pub name: String,
    pub args: Vec<String>,
    pub expect: Expect,
    /// The child's exit status (0 valid, 1 invalid, 2 unknown, 3 error).
    pub exit: u8,
    pub wall_seconds: f64,
    pub log: PathBuf,
    /// `None` if the run left no directory we could read.
    pub figures: Option<RunFigures>,
    /// Why the run failed before judging, if it did.
    pub error: Option<String>,
}

impl RunResult {
    pub fn verdict(&self) -> &str {
        match (&self.figures, self.exit) {
            (Some(f), _) if f.verdict != "error" => &f.verdict,
            _ => "error",
        }
    }

    /// What the run counts as in the suite's exit status: its own exit
    /// status, except that a teeth run passes when invalid and fails (as
    /// invalid) when valid.
    pub fn status(&self) -> u8 {
        match (self.expect, self.exit) {
            (Expect::Invalid, 1) => 0,
            (Expect::Invalid, 0) => 1,
            (_, code) => code,
        }
    }

    /// The verdict as the table shows it: a teeth run's is marked.
    fn verdict_shown(&self) -> String {
        match self.expect {
            Expect::Valid => self.verdict().to_string(),
            Expect::Invalid => format!("{}!", self.verdict()),
        }
    }

    /// Why the run is not valid: the runner's own error first (a run dir
    /// without results says less than the error that stopped it), then
    /// the checker's explanation.
    pub fn explanation(&self) -> Option<String> {
        if self.expect == Expect::Invalid && self.exit == 0 {
            return Some(
                "expected invalid (an unsafe configuration under its faults), but the run \
                 was valid: the faults did not expose it, or the checker missed it"
                    .into(),
            );
        }
        self.error
            .clone()
            .or_else(|| self.figures.as_ref().and_then(|f| f.explanation.clone()))
    }
}

/// Runs `synod suite`.
pub fn run(args: SuiteArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let (suite, runs) = plan(&text, &args.file.display().to_string())?;
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
    let out = args
        .store
        .join("_suites")
        .join(format!("{}-{stamp}", sanitize(&suite)));
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
        results.push(result);
    }
    let exit = worst(results.iter().map(RunResult::status));
    figures::out(&table(&results));
    let summary = json!({
        "suite": suite,
        "file": args.file,
        "started": stamp,
        "seconds": started.elapsed().as_secs_f64(),
        "exit": exit,
        "runs": results,
    });
    let summary_path = out.join("summary.json");
    std::fs::write(
        &summary_path,
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .with_context(|| format!("cannot write {}", summary_path.display()))?;
    let junit = junit(&suite, &results, started.elapsed().as_secs_f64());
    std::fs::write(out.join("junit.xml"), &junit)?;
    if let Some(path) = &args.junit {
        std::fs::write(path, &junit).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let dirs: Vec<RunFigures> = results.iter().filter_map(|r| r.figures.clone()).collect();
    if !dirs.is_empty() {
        if let Err(e) = super::compare::write(&dirs, &out) {
            eprintln!("synod suite: cannot write the comparison: {e:#}");
        }
    }
    figures::out(&format!("summary: {}\n", summary_path.display()));
    if !dirs.is_empty() {
        figures::out(&format!(
            "compare: {}\n",
            out.join("compare.html").display()
        ));
    }
    Ok(ExitCode::from(exit))
}

/// Runs one child `synod run`, bounded by the run's deadline.
fn run_one(exe: &Path, store: &Path, out: &Path, r: &PlannedRun) -> RunResult {
    let started = Instant::now();
    let log = out.join(format!("{}.log", r.name));
    let fail = |error: String, started: Instant| RunResult {
        name: r.name.clone(),
        args: r.args.clone(),
        expect: r.expect,
        exit: EXIT_ERROR,
        wall_seconds: started.elapsed().as_secs_f64(),
        log: log.clone(),
        figures: None,
        error: Some(error),
    };
    let (stdout, stderr) = match std::fs::File::create(&log).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(pair) => pair,
        Err(e) => return fail(format!("cannot create {}: {e}", log.display()), started),
    };
    let child = Command::new(exe)
        .arg("run")
        .arg("--store")
        .arg(store)
        .arg("--name")
        .arg(&r.name)
        .args(&r.args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start {}: {e}", exe.display()), started),
    };
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => return fail(format!("cannot wait for the run: {e}"), started),
        }
        if started.elapsed() > r.deadline && !timed_out {
            // SIGTERM first: the runner heals and tears down on it.
            timed_out = true;
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        if timed_out && started.elapsed() > r.deadline + Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let exit = status
        .and_then(|s| s.code())
        .map(|c| u8::try_from(c).unwrap_or(EXIT_ERROR))
        .unwrap_or(EXIT_ERROR);
    let exit = if timed_out { EXIT_ERROR } else { exit };
    let dir = run_dir_from_log(&log).or_else(|| newest_dir(&store.join(&r.name)));
    let figures = dir.as_deref().and_then(|d| figures::read_run(d).ok());
    let error = if timed_out {
        Some(format!(
            "the run took longer than {:.0} s and was stopped; see {}",
            r.deadline.as_secs_f64(),
            log.display()
        ))
    } else if exit == EXIT_ERROR {
        Some(format!("the run failed: {}", last_error(&log)))
    } else {
        None
    };
    RunResult {
        name: r.name.clone(),
        args: r.args.clone(),
        expect: r.expect,
        exit,
        wall_seconds: started.elapsed().as_secs_f64(),
        log,
        figures,
        error,
    }
}

/// The run directory the runner announced (`synod: run DIR (seed N)`).
fn run_dir_from_log(log: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("synod: run ")?;
        let end = rest.rfind(" (seed ")?;
        Some(PathBuf::from(&rest[..end]))
    })
}

fn newest_dir(series: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(series)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// The runner's error line, or the log's last line.
fn last_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| l.starts_with("synod: error:"))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("no output")
        .trim()
        .to_string()
}

/// The summary table: one row per run.
pub fn table(results: &[RunResult]) -> String {
    let mut ops: Vec<String> = Vec::new();
    for f in results.iter().filter_map(|r| r.figures.as_ref()) {
        for l in &f.latency {
            if !ops.contains(&l.f) {
                ops.push(l.f.clone());
            }
        }
    }
    let width = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut s = format!("{:<width$}  {:<8} {:>8}", "run", "verdict", "ops/s");
    for f in &ops {
        s += &format!(" {:>17}", format!("{f} p50/p99 ms"));
    }
    s += &format!(
        " {:>7} {:>10} {:>12}\n",
        "avail", "recovery", "peer msgs/op"
    );
    let teeth = results.iter().any(|r| r.expect == Expect::Invalid);
    for r in results {
        s += &format!("{:<width$}  {:<8}", r.name, r.verdict_shown());
        match &r.figures {
            Some(f) => {
                s += &format!(" {:>8.1}", f.throughput);
                for op in &ops {
                    let cell = f
                        .latency
                        .iter()
                        .find(|l| &l.f == op)
                        .map(|l| format!("{:.1}/{:.1}", l.p50, l.p99))
                        .unwrap_or_else(|| "-".into());
                    s += &format!(" {cell:>17}");
                }
                let avail = fmt_opt(f.availability.map(|a| a * 100.0), 1);
                let rec = match (f.recovery, f.unrecovered) {
                    (_, n) if n > 0 => format!("never({n})"),
                    (Some(r), _) => format!("{r:.2} s"),
                    (None, _) => "-".into(),
                };
                // Not available (etcd, older runs) is "n/a", never 0.
                let msgs = f
                    .peer_messages_per_op
                    .map(|m| format!("{m:.2}"))
                    .unwrap_or_else(|| "n/a".into());
                s += &format!(" {:>6}% {rec:>10} {msgs:>12}\n", avail);
            }
            None => s += "  (no figures)\n",
        }
    }
    if teeth {
        s += "(!: a teeth run, expected invalid)\n";
    }
    s
}

fn xml(s: &str) -> String {
    // XML 1.0 forbids most control characters even when escaped.
    figures::escape(s)
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || c >= ' ')
        .collect()
}

/// A test case's `<properties>`: the run's figures, for CI systems that
/// chart them (a figure not available is left out, not written as 0).
fn properties(r: &RunResult) -> String {
    let Some(f) = &r.figures else {
        return String::new();
    };
    let mut props = vec![
        ("verdict", f.verdict.clone()),
        ("seed", f.seed.map(|s| s.to_string()).unwrap_or_default()),
        ("operations", f.operations.to_string()),
        ("ok_ops_per_second", format!("{:.3}", f.throughput)),
    ];
    if let Some(p) = f.p99() {
        props.push(("p99_ms", format!("{p:.3}")));
    }
    if let Some(a) = f.availability {
        props.push(("availability", format!("{a:.5}")));
    }
    if let Some(m) = f.peer_messages_per_op {
        props.push(("peer_messages_per_op", format!("{m:.3}")));
    }
    let mut s = String::from("      <properties>\n");
    for (k, v) in props {
        s += &format!("        <property name=\"{k}\" value=\"{}\"/>\n", xml(&v));
    }
    s + "      </properties>\n"
}

/// JUnit XML: one test case per run; invalid and unknown are failures
/// (and so is a valid teeth run), a run that could not be judged is an
/// error.
pub fn junit(suite: &str, results: &[RunResult], seconds: f64) -> String {
    let failures = results
        .iter()
        .filter(|r| matches!(r.status(), 1 | 2))
        .count();
    let errors = results
        .iter()
        .filter(|r| !matches!(r.status(), 0..=2))
        .count();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s += &format!(
        "<testsuites name=\"synod\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{seconds:.3}\">\n",
        results.len()
    );
    s += &format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{seconds:.3}\">\n",
        xml(suite),
        results.len()
    );
    for r in results {
        s += &format!(
            "    <testcase classname=\"synod.{}\" name=\"{}\" time=\"{:.3}\">\n",
            xml(suite),
            xml(&r.name),
            r.wall_seconds
        );
        let why = r.explanation().unwrap_or_default();
        let first = why.lines().next().unwrap_or("").to_string();
        s += &properties(r);
        match r.status() {
            0 => {}
            1 | 2 => {
                s += &format!(
                    "      <failure type=\"{}\" message=\"{}: {}\">{}</failure>\n",
                    r.verdict(),
                    r.verdict(),
                    xml(&first),
                    xml(&why)
                )
            }
            _ => {
                s += &format!(
                    "      <error type=\"error\" message=\"{}\">{}</error>\n",
                    xml(&first),
                    xml(&why)
                )
            }
        }
        let dir = r
            .figures
            .as_ref()
            .map(|f| f.dir.display().to_string())
            .unwrap_or_default();
        s += &format!(
            "      <system-out>run dir: {}\nlog: {}\nsynod run {}</system-out>\n",
            xml(&dir),
            xml(&r.log.display().to_string()),
            xml(&r.args.join(" "))
        );
        s += "    </testcase>\n";
    }
    s += "  </testsuite>\n</testsuites>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_axes_and_configs_inherit_defaults() {
        let (name, runs) = plan(
            r#"
name = "t"
[defaults]
time_limit = 5
faults = ["partition", "kill"]
[[config]]
name = "a"
proposers = ["leader", "any"]
[[config]]
name = "b"
nodes = 5
faults = "pause"
node_args = ["--batch-size", "4"]
"#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(name, "t");
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "t-a-partition-proposers=leader",
                "t-a-partition-proposers=any",
                "t-a-kill-proposers=leader",
                "t-a-kill-proposers=any",
                "t-b"
            ]
        );
        assert!(runs[4].args.contains(&"--nodes=5".to_string()));
        assert!(runs[4]
            .args
            .contains(&"--node-arg=--batch-size".to_string()));
    }

    #[test]
    fn a_typo_fails_before_any_run() {
        let err = plan("[defaults]\nproposer = \"any\"\n", "x.toml").unwrap_err();
        assert!(format!("{err:#}").contains("bad settings"), "{err:#}");
        let err = plan("[defaults]\nreads = \"sometimes\"\n", "x.toml").unwrap_err();
        assert!(format!("{err:#}").contains("bad settings"), "{err:#}");
    }

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

    #[test]
    fn exit_status_is_the_worst_with_unknown_below_invalid() {
        assert_eq!(worst([0, 2, 0]), 2);
        assert_eq!(worst([2, 1]), 1);
        assert_eq!(worst([1, 3, 2]), 3);
        assert_eq!(worst([]), 0);
    }

    #[test]
    fn junit_carries_the_explanation_of_an_invalid_run_and_counts_errors() {
        let dir = std::env::temp_dir().join(format!(
            "synod-junit-{}/s/20260101T000000Z",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.json"),
            r#"{"args":{"name":"s","nodes":3,"target":"synod","nemesis":"kill"},"seed":7}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("results.json"),
            r#"{"verdict":"invalid","explanations":[{"text":"key \"k1\": read 3 <after> write 4\nmore"}],
                "report":{"operations":10,"start":0,"end":2000000000,"availability":0.5,"latency":[],"seconds":[],"faults":[]},
                "run":{"seconds":2.0,"ops":{"ok":5},"peer_messages":{"sent":25,"per_op":2.5}}}"#,
        )
        .unwrap();
        let figures = figures::read_run(&dir).unwrap();
        assert_eq!(figures.verdict, "invalid");
        assert_eq!(figures.throughput, 2.5);
        assert_eq!(figures.peer_messages_per_op, Some(2.5));
        let mut etcd = figures.clone();
        etcd.peer_messages_per_op = None;
        let results = vec![
            RunResult {
                name: "s-bad".into(),
                args: vec![],
                expect: Expect::Valid,
                exit: 1,
                wall_seconds: 1.0,
                log: "s-bad.log".into(),
                figures: Some(figures),
                error: None,
            },
            RunResult {
                name: "s-broken".into(),
                args: vec![],
                expect: Expect::Valid,
                exit: 3,
                wall_seconds: 1.0,
                log: "s-broken.log".into(),
                figures: None,
                error: Some("the run failed: no synod-node".into()),
            },
            RunResult {
                name: "s-etcd".into(),
                args: vec![],
                expect: Expect::Valid,
                exit: 0,
                wall_seconds: 1.0,
                log: "s-etcd.log".into(),
                figures: Some(etcd),
                error: None,
            },
        ];
        let xml = junit("s", &results, 2.0);
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" errors=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("message=\"invalid: key &quot;k1&quot;: read 3 &lt;after&gt; write 4\""),
            "{xml}"
        );
        assert!(
            xml.contains("<error type=\"error\" message=\"the run failed: no synod-node\""),
            "{xml}"
        );
        assert!(
            xml.contains("<property name=\"peer_messages_per_op\" value=\"2.500\"/>"),
            "{xml}"
        );
        assert_eq!(xml.matches("peer_messages_per_op").count(), 1, "{xml}");
        let t = table(&results);
        assert!(t.contains("s-broken  error"), "{t}");
        assert!(t.lines().next().unwrap().ends_with("peer msgs/op"), "{t}");
        let row = |name: &str| t.lines().find(|l| l.starts_with(name)).unwrap().to_string();
        assert!(row("s-bad").trim_end().ends_with("2.50"), "{t}");
        // Not available is said, not shown as 0.
        assert!(row("s-etcd").trim_end().ends_with("n/a"), "{t}");
        std::fs::remove_dir_all(dir.parent().unwrap().parent().unwrap()).ok();
    }
}
