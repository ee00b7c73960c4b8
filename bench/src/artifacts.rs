//! The bench's own files in a run directory, one type each, written and
//! read through these types only (`docs/results.md` has the schema):
//!
//! - `config.json`: [`RunConfig`], written by `synod run` before anything
//!   starts;
//! - `results.json`: the checker's [`Results`], whose `run` section is the
//!   runner's [`RunSection`], handed to the checker's writer so the file is
//!   written once;
//! - `summary.json` of a suite: [`crate::nightly::suite::Summary`].
//!
//! A run directory is read back with [`read_config`] and [`read_results`],
//! bounded in size and never through a symlink or a FIFO.

use std::path::Path;

use serde::{Deserialize, Serialize};
use synod_checker::Results;

use crate::cpu::{ClientCpu, NodeCpu};
use crate::due_latency::OpDueLatency;
use crate::peer_messages::PeerMessages;
use crate::recorder::OpCounts;
use crate::run::RunArgs;

/// `config.json`: how the run was asked for.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunConfig {
    /// The flags of `synod run` (the token left out). A flag newer than
    /// the run reads as its default, which is what that run used.
    pub args: RunArgs,
    pub seed: u64,
    /// The fault steps the nemesis picked from, e.g. `kill`,
    /// `clock:slow-leader+partition:isolate-leader`.
    pub faults: Vec<String>,
    /// The bench's version.
    pub version: String,
}

/// `run` in `results.json`: what the runner itself observed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSection {
    pub seed: u64,
    /// Seconds from the first client op to the history's close.
    pub seconds: f64,
    /// Events in the history.
    pub events: u64,
    pub ops: OpCounts,
    /// The signal that stopped the run early, if one did.
    pub interrupted: Option<String>,
    /// The history's file name within the run directory.
    pub history: String,
    /// `None` on runs before the runner counted them, and where not
    /// available (`peer_messages_unavailable` says why).
    pub peer_messages: Option<PeerMessages>,
    pub peer_messages_unavailable: Option<String>,
    /// All nodes' CPU over the workload, per op (docs/results.md); `None`
    /// on runs before the runner measured it, and where not available
    /// (`node_cpu_unavailable` says why). The figures added since the
    /// release are left out when `None`, so its files read back as they
    /// were written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_cpu: Option<NodeCpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_cpu_unavailable: Option<String>,
    /// The bench process's own CPU over the workload, per op; `None` on
    /// runs before the runner measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu: Option<ClientCpu>,
    /// An open loop's latency of ok ops from when each was due, by
    /// operation kind; `None` for a closed loop and runs before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_loop_latency: Option<Vec<OpDueLatency>>,
}

/// `results.json` as the bench writes and reads it.
pub type RunResults = Results<RunSection>;

/// Largest JSON file of a run read back (results.json of a long run is a
/// few MB).
const MAX_JSON_BYTES: u64 = 256 << 20;

/// Opens a regular file for reading, with its length: never through a
/// symlink as the last component (a run's files are the bench's own, not
/// links out of the store), and never waiting (a FIFO or a device is
/// refused, not opened for a read that blocks until someone writes).
pub fn open_regular(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok((file, meta.len()))
}

/// A run file's text, bounded.
fn read_text(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let (file, len) = open_regular(path)?;
    anyhow::ensure!(
        len <= MAX_JSON_BYTES,
        "{len} bytes, more than the {MAX_JSON_BYTES} a run file may have"
    );
    let mut text = String::new();
    file.take(MAX_JSON_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

/// Reads `config.json`.
pub fn read_config(path: &Path) -> anyhow::Result<RunConfig> {
    let text = read_text(path)?;
    Ok(serde_json::from_str(&text)?)
}

/// Reads `results.json`; a judged file missing a field is an error.
pub fn read_results(path: &Path) -> anyhow::Result<RunResults> {
    let text = read_text(path)?;
    Ok(RunResults::from_json(&text)?)
}

/// Writes one of the files above, pretty-printed.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// Run directories for tests, written through the real writers.
#[cfg(test)]
pub mod fixtures {
    use std::path::Path;

    use synod_checker::import::{self, Format};
    use synod_checker::{check_and_report_run, Options};

    use super::{write_json, RunConfig, RunSection};
    use crate::peer_messages::PeerMessages;
    use crate::recorder::OpCounts;
    use crate::run::RunArgs;

    /// A run section: `ok` ops in `seconds`, and `sent` peer messages.
    pub fn run_section(ok: u64, seconds: f64, sent: Option<u64>) -> RunSection {
        RunSection {
            seed: 7,
            seconds,
            events: 2 * ok,
            ops: OpCounts {
                invoked: ok,
                ok,
                fail: 0,
                info: 0,
            },
            interrupted: None,
            history: "history.jsonl".into(),
            peer_messages: sent.map(|sent| PeerMessages {
                sent,
                completed_ops: ok,
                per_op: Some(sent as f64 / ok as f64),
                by_type: Default::default(),
                by_node: Default::default(),
                restarts: Default::default(),
                samples: 2,
                interval_s: 0.5,
                gaps: vec![],
            }),
            peer_messages_unavailable: sent.is_none().then(|| "etcd".to_string()),
            node_cpu: None,
            node_cpu_unavailable: Some("made up in a test".into()),
            client_cpu: None,
            open_loop_latency: None,
        }
    }

    /// Writes `config.json`, the JSON Lines `history` and, judged by the
    /// checker's pipeline, `results.json` with `run` into `dir`.
    pub fn judged_run(dir: &Path, name: &str, history: &str, run: &RunSection) {
        std::fs::create_dir_all(dir).unwrap();
        let config = RunConfig {
            args: RunArgs {
                name: name.into(),
                nemesis: "kill".into(),
                ..RunArgs::default()
            },
            seed: run.seed,
            faults: vec!["kill".into()],
            version: "test".into(),
        };
        write_json(&dir.join("config.json"), &config).unwrap();
        let path = dir.join("history.jsonl");
        std::fs::write(&path, history).unwrap();
        let input = import::open(&path, Format::Jsonl).unwrap();
        let options = Options {
            semantics: input.semantics(),
            ..Options::default()
        };
        check_and_report_run(input, &options, dir, &[], run).unwrap();
    }

    /// A history whose read of `k1` returns a value never written.
    pub const INVALID: &str = r#"{"index":0,"time":0,"process":1,"type":"invoke","f":"write","key":"k1","value":4}
{"index":1,"time":1000,"process":1,"type":"ok","f":"write","key":"k1","value":4}
{"index":2,"time":2000,"process":2,"type":"invoke","f":"read","key":"k1","value":null}
{"index":3,"time":2000000000,"process":2,"type":"ok","f":"read","key":"k1","value":3}
"#;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use synod_checker::Verdict;

    use super::*;

    /// A run made with the release of 2026-12-02 (before results.json
    /// had a type): three local nodes, kill faults, a few seconds.
    const RELEASE_RUN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/release-run");

    #[test]
    fn a_results_json_written_by_the_release_reads() {
        let dir = Path::new(RELEASE_RUN);
        let config = read_config(&dir.join("config.json")).unwrap();
        let results = read_results(&dir.join("results.json")).unwrap();
        assert_eq!(results.verdict, Some(Verdict::Valid));
        let judgement = results.judgement.as_ref().expect("a judged run");
        let run = results.run.as_ref().expect("a run section");
        assert_eq!(run.seed, config.seed);
        assert_eq!(config.args.nemesis, "kill");
        assert!(run.ops.ok > 0 && judgement.operations >= run.ops.ok);
        assert_eq!(judgement.check.verdict, Verdict::Valid);
        assert!(!judgement.report.latency.is_empty());
        assert!(run.peer_messages.as_ref().is_some_and(|p| p.sent > 0));
        // Every field of the file is in the type: written back, the same
        // JSON.
        let text = std::fs::read_to_string(dir.join("results.json")).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_value(&results).unwrap(), file);
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_value(&config).unwrap(), file);
    }

    #[test]
    fn a_verdict_without_its_judgement_is_an_error_not_zeros() {
        let err = RunResults::from_json(r#"{"verdict":"valid","model":"kv","operations":3}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("judgement") && err.contains("missing field"),
            "{err}"
        );
        // A run never judged has a note instead.
        let r =
            RunResults::from_json(r#"{"verdict":null,"note":"interrupted by SIGINT"}"#).unwrap();
        assert!(r.judgement.is_none() && r.run.is_none());
        assert_eq!(r.note.as_deref(), Some("interrupted by SIGINT"));
    }

    #[test]
    fn the_runner_section_is_written_once_with_the_judgement() {
        let dir = std::env::temp_dir().join(format!("synod-artifacts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = fixtures::run_section(5, 2.0, Some(25));
        fixtures::judged_run(&dir, "s", fixtures::INVALID, &run);
        let results = read_results(&dir.join("results.json")).unwrap();
        assert_eq!(results.verdict, Some(Verdict::Invalid));
        assert_eq!(results.run.unwrap().ops, run.ops);
        let judgement = results.judgement.unwrap();
        assert_eq!(judgement.operations, 2);
        assert_eq!(judgement.explanations.len(), 1);
        std::fs::remove_dir_all(&dir).ok();
    }
}
