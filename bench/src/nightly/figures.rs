//! The figures of one run directory, read back from the files the runner
//! and the checker wrote: one typed read each of `config.json`
//! ([`RunConfig`]) and `results.json` ([`RunResults`], whose `run`
//! section has the runner's own: ops, seconds, peer messages). Suites,
//! comparisons and the store's web page all read runs through here, so
//! they agree on what "throughput" or "recovery" means. A figure the files
//! do not have is `None` (shown as `-`), never a made-up zero; a judged
//! `results.json` that lacks a field the schema requires is an error run.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use crate::artifacts::open_regular;
use crate::artifacts::{read_config, read_results, RunConfig, RunResults};
use crate::run::Target;
pub use synod_checker::report::Downtime;

/// Latency of the successful ops of one kind, in milliseconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpLatency {
    pub f: String,
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
}

/// One second of the run, as the checker's report buckets it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Second {
    pub t: f64,
    pub ok: u64,
    pub completed: u64,
    pub availability: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// A fault window, in seconds since the run started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Window {
    pub name: String,
    pub start: f64,
    pub stop: Option<f64>,
    /// Seconds from the heal to the first ok op after it; `None` if no op
    /// succeeded after the heal.
    pub recovery: Option<f64>,
    /// The checker's down-time of the window (from its start); `None` in
    /// runs judged before it was measured.
    pub downtime: Option<Downtime>,
    /// Ops completed inside the window, how many of them ok, and how many
    /// cas ops the state machine answered with a mismatch.
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub ok: u64,
    #[serde(default)]
    pub mismatch: u64,
}

impl Window {
    /// `partition at 3.210 s`, naming the window for people.
    pub fn label(&self) -> String {
        format!("{} at {:.3} s", self.name, self.start)
    }
}

/// The down-time of one fault (by name) in a run: the worst of its
/// windows, the larger of start-to-first-ok and the longest gap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultDowntime {
    pub fault: String,
    pub windows: usize,
    /// Worst down-time of the windows after which clients succeeded
    /// again (ms); `None` if none did.
    pub worst_ms: Option<f64>,
    /// `worst_ms` in election timeouts, where the run's is known.
    pub worst_elections: Option<f64>,
    /// Windows with no ok after their start before the run ended.
    pub never_resumed: usize,
}

/// What a run directory says (also each run's `figures` in a suite's
/// `summary.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunFigures {
    pub dir: PathBuf,
    /// The run series (`store/<name>/`).
    pub name: String,
    /// The run's own directory name, a UTC timestamp.
    pub stamp: String,
    /// `valid`, `invalid`, `unknown`, or `error` (no verdict: the run
    /// failed or was interrupted).
    pub verdict: String,
    /// Why it is not valid: the checker's explanation or the runner's note.
    pub explanation: Option<String>,
    pub target: String,
    pub nodes: u64,
    /// The node settings and faults, e.g. `proposers=any learn=all faults=kill`.
    pub settings: String,
    pub seed: u64,
    /// `None` (like every figure below) when the run left no judged
    /// results.
    pub operations: Option<u64>,
    pub ok: Option<u64>,
    pub seconds: Option<f64>,
    /// ok ops per second of the run.
    pub throughput: Option<f64>,
    pub latency: Vec<OpLatency>,
    /// Share of completed ops the system answered: ok, or a cas the
    /// state machine answered with a mismatch.
    pub availability: Option<f64>,
    /// Share of completed ops that are ok.
    #[serde(default)]
    pub ok_share: Option<f64>,
    /// The longest recovery after a heal, in seconds.
    pub recovery: Option<f64>,
    /// Heals after which no op succeeded before the run ended.
    pub unrecovered: usize,
    /// The nodes' election timeout (ms) the down-times are measured in,
    /// where known.
    #[serde(default)]
    pub election_timeout_ms: Option<f64>,
    /// Down-time per fault, in the order the faults first started
    /// (summaries before down-time have none).
    #[serde(default)]
    pub downtime: Vec<FaultDowntime>,
    /// Peer messages sent by all nodes per client operation completed
    /// (`run.peer_messages.per_op`); `None` where not available (etcd,
    /// runs from before the runner counted them).
    pub peer_messages_per_op: Option<f64>,
    /// Peer messages sent by all nodes over the run.
    pub peer_messages: Option<u64>,
    /// The load: client workers, and the offered rate (ops/s) of an open
    /// loop (`None`: a closed loop). `None` concurrency in summaries
    /// written before it was kept.
    #[serde(default)]
    pub concurrency: Option<u64>,
    #[serde(default)]
    pub rate: Option<f64>,
    /// µs of all nodes' CPU per client operation completed
    /// (`run.node_cpu.per_op_us`); `None` where not available (ssh,
    /// external clusters, runs before it was measured).
    #[serde(default)]
    pub node_cpu_us_per_op: Option<f64>,
    /// µs of the bench process's own CPU per op (`run.client_cpu`).
    #[serde(default)]
    pub client_cpu_us_per_op: Option<f64>,
    /// An open loop's latency of ok ops from when each was due
    /// (`run.open_loop_latency`), per f; empty for a closed loop.
    #[serde(default)]
    pub open_loop_latency: Vec<OpLatency>,
    #[serde(skip)]
    pub series: Vec<Second>,
    #[serde(skip)]
    pub windows: Vec<Window>,
}

impl RunFigures {
    /// The worst p99 across op kinds, in ms.
    pub fn p99(&self) -> Option<f64> {
        self.latency.iter().map(|l| l.p99).reduce(f64::max)
    }

    /// The worst (p50, p99) across op kinds a user waits for, in ms: from
    /// when each op was due in an open loop that measured it, else from
    /// its invocation (the report's).
    pub fn response_time(&self) -> Option<(f64, f64)> {
        let of = |ls: &[OpLatency]| {
            let p50 = ls.iter().map(|l| l.p50).reduce(f64::max)?;
            let p99 = ls.iter().map(|l| l.p99).reduce(f64::max)?;
            Some((p50, p99))
        };
        of(&self.open_loop_latency).or_else(|| of(&self.latency))
    }

    /// The worst down-time across every fault window of the run: (ms,
    /// election timeouts where known); `None` if no window has a figure.
    pub fn worst_downtime(&self) -> Option<(f64, Option<f64>)> {
        self.downtime
            .iter()
            .filter_map(|d| Some((d.worst_ms?, d.worst_elections)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// Fault windows of the run with no ok after their start.
    pub fn never_resumed(&self) -> usize {
        self.downtime.iter().map(|d| d.never_resumed).sum()
    }

    /// The run's worst down-time for a table cell: `812 ms (2.71 et)`,
    /// `never (N)` if some window never resumed, `-` without figures.
    pub fn downtime_cell(&self) -> String {
        match (self.worst_downtime(), self.never_resumed()) {
            (_, n) if n > 0 => format!("never ({n})"),
            (Some((ms, Some(e))), _) => format!("{ms:.0} ms ({e:.2} et)"),
            (Some((ms, None)), _) => format!("{ms:.0} ms"),
            (None, _) => "-".into(),
        }
    }

    /// A short label for tables and plot legends: `name/stamp`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.name, self.stamp)
    }
}

/// Reads a run directory. A directory without `config.json` is not a run;
/// a run without (readable) `results.json` is reported as an `error` run,
/// since that is what a run that died before judging leaves behind.
pub fn read_run(dir: &Path) -> anyhow::Result<RunFigures> {
    let config = read_config(&dir.join("config.json"))
        .with_context(|| format!("{}: no readable config.json", dir.display()))?;
    let path = dir.join("results.json");
    let results = if path.symlink_metadata().is_err() {
        Err("the run left no results.json".to_string())
    } else {
        read_results(&path).map_err(|e| format!("unreadable results.json: {e:#}"))
    };
    Ok(figures_of(dir, &config, results))
}

/// The figures of a run from its two files.
fn figures_of(dir: &Path, config: &RunConfig, results: Result<RunResults, String>) -> RunFigures {
    let args = &config.args;
    let stamp = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut settings = Vec::new();
    let strings = [
        ("proposers", &args.proposers),
        ("learn", &args.learn),
        ("reads", &args.reads),
        ("fsync", &args.fsync),
    ];
    for (key, v) in strings {
        if let Some(v) = v {
            settings.push(format!("{key}={v}"));
        }
    }
    for (key, v) in [("batch_size", args.batch_size), ("pipeline", args.pipeline)] {
        if let Some(v) = v {
            settings.push(format!("{key}={v}"));
        }
    }
    settings.push(format!("faults={}", args.nemesis));
    let (verdict, explanation, judgement, run) = match &results {
        Ok(r) => (
            r.verdict.map(|v| v.as_str()).unwrap_or("error"),
            r.judgement
                .as_ref()
                .and_then(|j| j.explanations.first())
                .map(|e| e.text.trim().to_string())
                .or_else(|| r.note.clone()),
            r.judgement.as_ref(),
            r.run.as_ref(),
        ),
        Err(why) => ("error", Some(why.clone()), None, None),
    };
    let report = judgement.map(|j| &j.report);
    let start = report.map(|r| r.start).unwrap_or(0);
    let since_start = |t: u64| t.saturating_sub(start) as f64 / 1e9;
    let latency = report
        .map(|r| {
            r.latency
                .iter()
                .filter(|l| l.outcome == "ok")
                .map(|l| OpLatency {
                    f: l.f.clone(),
                    count: l.count,
                    p50: l.p50,
                    p99: l.p99,
                })
                .collect()
        })
        .unwrap_or_default();
    let series: Vec<Second> = report
        .map(|r| {
            r.seconds
                .iter()
                .map(|b| Second {
                    t: b.t as f64,
                    ok: b.ok,
                    completed: b.ok + b.fail + b.info,
                    availability: b.availability,
                    p50: b.p50,
                    p99: b.p99,
                })
                .collect()
        })
        .unwrap_or_default();
    let windows: Vec<Window> = report
        .map(|r| {
            r.faults
                .iter()
                .map(|w| Window {
                    name: w.name.clone(),
                    start: since_start(w.start),
                    stop: w.stop.map(since_start),
                    recovery: w.recovery.map(|r| r as f64 / 1e9),
                    downtime: w.downtime.clone(),
                    completed: w.completed,
                    ok: w.ok,
                    mismatch: w.mismatch,
                })
                .collect()
        })
        .unwrap_or_default();
    let ok = run
        .map(|r| r.ops.ok)
        .or_else(|| report.map(|_| series.iter().map(|s| s.ok).sum()));
    let seconds = run
        .map(|r| r.seconds)
        .or_else(|| report.map(|r| since_start(r.end)));
    let throughput = match (ok, seconds) {
        (Some(ok), Some(s)) if s > 0.0 => Some(ok as f64 / s),
        _ => None,
    };
    let peer = run.and_then(|r| r.peer_messages.as_ref());
    let healed: Vec<&Window> = windows.iter().filter(|w| w.stop.is_some()).collect();
    RunFigures {
        dir: dir.to_path_buf(),
        name: args.name.clone(),
        stamp,
        verdict: verdict.to_string(),
        explanation,
        target: match args.target {
            Target::Synod => "synod",
            Target::Etcd => "etcd",
        }
        .to_string(),
        nodes: u64::from(args.nodes),
        settings: settings.join(" "),
        seed: config.seed,
        operations: report.map(|r| r.operations),
        ok,
        seconds,
        throughput,
        latency,
        availability: report.and_then(|r| r.availability),
        ok_share: report.and_then(|r| r.ok_share),
        recovery: healed.iter().filter_map(|w| w.recovery).reduce(f64::max),
        unrecovered: healed.iter().filter(|w| w.recovery.is_none()).count(),
        election_timeout_ms: report.and_then(|r| r.election_timeout_ms),
        downtime: downtime_by_fault(&windows),
        peer_messages_per_op: peer.and_then(|p| p.per_op),
        peer_messages: peer.map(|p| p.sent),
        concurrency: Some(u64::from(args.concurrency)),
        rate: args.rate,
        node_cpu_us_per_op: run.and_then(|r| r.node_cpu.as_ref()?.per_op_us),
        client_cpu_us_per_op: run.and_then(|r| r.client_cpu.as_ref()?.per_op_us),
        open_loop_latency: run
            .and_then(|r| r.open_loop_latency.as_ref())
            .map(|ls| {
                ls.iter()
                    .map(|l| OpLatency {
                        f: l.f.clone(),
                        count: l.count,
                        p50: l.p50,
                        p99: l.p99,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        series,
        windows,
    }
}

/// The worst down-time of each fault's windows, faults in the order they
/// first started; windows without figures (older runs) are left out.
pub fn downtime_by_fault(windows: &[Window]) -> Vec<FaultDowntime> {
    let mut out: Vec<FaultDowntime> = Vec::new();
    for w in windows {
        let Some(d) = &w.downtime else { continue };
        let i = match out.iter().position(|f| f.fault == w.name) {
            Some(i) => i,
            None => {
                out.push(FaultDowntime {
                    fault: w.name.clone(),
                    windows: 0,
                    worst_ms: None,
                    worst_elections: None,
                    never_resumed: 0,
                });
                out.len() - 1
            }
        };
        let f = &mut out[i];
        f.windows += 1;
        match d.worst_ms() {
            None => f.never_resumed += 1,
            Some(ms) if f.worst_ms.is_none_or(|w| ms > w) => {
                f.worst_ms = Some(ms);
                f.worst_elections = d.worst_elections();
            }
            Some(_) => {}
        }
    }
    out
}

/// Every run directory under a store (`root/<name>/<stamp>/config.json`),
/// newest first. Unreadable entries are skipped: a store being written to
/// by a running suite must still list. Only real directories count: a
/// series or run reached through a symlink (which may point anywhere) is
/// not listed, as `synod serve` refuses to serve its files.
pub fn list_runs(root: &Path) -> Vec<RunFigures> {
    let mut runs = Vec::new();
    let Ok(series) = std::fs::read_dir(root) else {
        return runs;
    };
    for s in series.flatten() {
        let path = s.path();
        // `latest` is a symlink to a run already listed under its series.
        if s.file_name() == "latest" || !s.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let Ok(stamps) = std::fs::read_dir(&path) else {
            continue;
        };
        for d in stamps.flatten() {
            let dir = d.path();
            if !d.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if dir.join("config.json").is_file() {
                if let Ok(r) = read_run(&dir) {
                    runs.push(r);
                }
            }
        }
    }
    runs.sort_by(|a, b| b.stamp.cmp(&a.stamp).then(a.name.cmp(&b.name)));
    runs
}

/// Fixed-point or a dash, for tables.
pub fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// Writes to stdout, ignoring a closed pipe (`synod compare ... | head`
/// must not panic); the files written are the real output.
pub fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Figures of a made-up valid run, for tests.
#[cfg(test)]
pub fn test_figures(name: &str) -> RunFigures {
    RunFigures {
        dir: PathBuf::from(name),
        name: name.into(),
        stamp: "20260101T000000Z".into(),
        verdict: "valid".into(),
        explanation: None,
        target: "synod".into(),
        nodes: 3,
        settings: String::new(),
        seed: 1,
        operations: Some(100),
        ok: Some(100),
        seconds: Some(10.0),
        throughput: Some(10.0),
        latency: vec![],
        availability: Some(1.0),
        ok_share: Some(1.0),
        recovery: None,
        unrecovered: 0,
        election_timeout_ms: None,
        downtime: vec![],
        peer_messages_per_op: None,
        peer_messages: None,
        concurrency: Some(10),
        rate: None,
        node_cpu_us_per_op: None,
        client_cpu_us_per_op: None,
        open_loop_latency: vec![],
        series: vec![],
        windows: vec![],
    }
}
