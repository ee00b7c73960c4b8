//! The figures of one run directory, read back from the files the runner
//! and the checker wrote (`config.json`, `results.json`, whose `run`
//! section has the runner's own: ops, seconds, peer messages). Suites, comparisons
//! and the store's web page all read runs through here, so they agree on
//! what "throughput" or "recovery" means.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

/// Latency of the successful ops of one kind, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct OpLatency {
    pub f: String,
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
}

/// One second of the run, as the checker's report buckets it.
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    pub t: f64,
    pub ok: u64,
    pub completed: u64,
    pub availability: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// A fault window, in seconds since the run started.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub name: String,
    pub start: f64,
    pub stop: Option<f64>,
    /// Seconds from the heal to the first ok op after it; `None` if no op
    /// succeeded after the heal.
    pub recovery: Option<f64>,
}

/// What a run directory says.
#[derive(Clone, Debug, Serialize)]
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
    pub seed: Option<u64>,
    pub operations: u64,
    pub ok: u64,
    pub seconds: f64,
    /// ok ops per second of the run.
    pub throughput: f64,
    pub latency: Vec<OpLatency>,
    /// Share of completed ops that are ok.
    pub availability: Option<f64>,
    /// The longest recovery after a heal, in seconds.
    pub recovery: Option<f64>,
    /// Heals after which no op succeeded before the run ended.
    pub unrecovered: usize,
    /// Peer messages sent by all nodes per client operation completed
    /// (`run.peer_messages.per_op`); `None` where not available (etcd,
    /// runs from before the runner counted them).
    pub peer_messages_per_op: Option<f64>,
    /// Peer messages sent by all nodes over the run.
    pub peer_messages: Option<u64>,
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

    /// A short label for tables and plot legends: `name/stamp`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.name, self.stamp)
    }
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn f64_of(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

/// Reads a run directory. A directory without `config.json` is not a run;
/// a run without (readable) `results.json` is reported as an `error` run,
/// since that is what a run that died before judging leaves behind.
pub fn read_run(dir: &Path) -> anyhow::Result<RunFigures> {
    let config = read_json(&dir.join("config.json"))
        .ok_or_else(|| anyhow::anyhow!("{}: no readable config.json", dir.display()))?;
    let results = read_json(&dir.join("results.json")).unwrap_or(Value::Null);
    let args = &config["args"];
    let stamp = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = args["name"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            dir.parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let mut settings = Vec::new();
    for key in [
        "proposers",
        "learn",
        "reads",
        "fsync",
        "batch_size",
        "pipeline",
    ] {
        match &args[key] {
            Value::String(s) => settings.push(format!("{key}={s}")),
            Value::Number(n) => settings.push(format!("{key}={n}")),
            _ => {}
        }
    }
    if let Some(n) = args["nemesis"].as_str() {
        settings.push(format!("faults={n}"));
    }
    let verdict = results["verdict"].as_str().unwrap_or("error").to_string();
    let explanation = results["explanations"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|e| e["text"].as_str())
        .map(|s| s.trim().to_string())
        .or_else(|| results["note"].as_str().map(str::to_string))
        .or_else(|| (results.is_null()).then(|| "the run left no results.json".to_string()));
    let report = &results["report"];
    let run = &results["run"];
    let start = report["start"].as_u64().unwrap_or(0);
    let ns = |v: &Value| v.as_u64().map(|t| t.saturating_sub(start) as f64 / 1e9);
    let latency = report["latency"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter(|r| r["outcome"] == "ok")
                .map(|r| OpLatency {
                    f: r["f"].as_str().unwrap_or("?").to_string(),
                    count: r["count"].as_u64().unwrap_or(0),
                    p50: f64_of(&r["p50"]).unwrap_or(0.0),
                    p99: f64_of(&r["p99"]).unwrap_or(0.0),
                })
                .collect()
        })
        .unwrap_or_default();
    let series: Vec<Second> = report["seconds"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|b| {
                    let ok = b["ok"].as_u64().unwrap_or(0);
                    Second {
                        t: f64_of(&b["t"]).unwrap_or(0.0),
                        ok,
                        completed: ok
                            + b["fail"].as_u64().unwrap_or(0)
                            + b["info"].as_u64().unwrap_or(0),
                        availability: f64_of(&b["availability"]),
                        p50: f64_of(&b["p50"]),
                        p99: f64_of(&b["p99"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let windows: Vec<Window> = report["faults"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|w| Window {
                    name: w["name"].as_str().unwrap_or("?").to_string(),
                    start: ns(&w["start"]).unwrap_or(0.0),
                    stop: ns(&w["stop"]),
                    recovery: w["recovery"].as_u64().map(|r| r as f64 / 1e9),
                })
                .collect()
        })
        .unwrap_or_default();
    let ok = run["ops"]["ok"]
        .as_u64()
        .unwrap_or_else(|| series.iter().map(|s| s.ok).sum());
    let seconds = f64_of(&run["seconds"])
        .or_else(|| {
            let end = report["end"].as_u64()?;
            Some(end.saturating_sub(start) as f64 / 1e9)
        })
        .unwrap_or(0.0);
    let healed: Vec<&Window> = windows.iter().filter(|w| w.stop.is_some()).collect();
    Ok(RunFigures {
        dir: dir.to_path_buf(),
        name,
        stamp,
        verdict,
        explanation,
        target: args["target"].as_str().unwrap_or("synod").to_string(),
        nodes: args["nodes"].as_u64().unwrap_or(0),
        settings: settings.join(" "),
        seed: config["seed"].as_u64(),
        operations: report["operations"].as_u64().unwrap_or(0),
        ok,
        seconds,
        throughput: if seconds > 0.0 {
            ok as f64 / seconds
        } else {
            0.0
        },
        latency,
        availability: f64_of(&report["availability"]),
        recovery: healed.iter().filter_map(|w| w.recovery).reduce(f64::max),
        unrecovered: healed.iter().filter(|w| w.recovery.is_none()).count(),
        peer_messages_per_op: f64_of(&run["peer_messages"]["per_op"]),
        peer_messages: run["peer_messages"]["sent"].as_u64(),
        series,
        windows,
    })
}

/// Every run directory under a store (`root/<name>/<stamp>/config.json`),
/// newest first. Unreadable entries are skipped: a store being written to
/// by a running suite must still list.
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

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Writes to stdout, ignoring a closed pipe (`synod compare ... | head`
/// must not panic); the files written are the real output.
pub fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}
