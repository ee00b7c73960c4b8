//! The run's end: the history judged by the checker, `results.json`
//! written once with the run's own figures under `"run"` (or without a
//! verdict if the run was interrupted), the verdict printed and the exit
//! status picked.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use synod_checker::import::{self, Format};
use synod_checker::{check_and_report_run, Options, PipelineError};

use super::phases::Observed;
use crate::artifacts::{write_json, RunResults, RunSection};
use crate::peer_messages::peer_section;
use crate::recorder::OpCounts;
use crate::EXIT_ERROR;

/// Judges the history with the checker (which writes `results.json`,
/// `report.html` and plots into the run directory), adds what the run
/// itself observed under `"run"`, prints the verdict and where the report
/// is, and picks the exit status.
/// `election_timeout_ms` (the nodes', if known) only adds units to the
/// report's down-times.
pub fn finish(
    dir: &Path,
    observed: Observed,
    check_time_limit: f64,
    election_timeout_ms: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let OpCounts { ok, fail, info, .. } = observed.counts;
    let run = RunSection {
        seed: observed.seed,
        seconds: observed.seconds,
        events: observed.events,
        ops: observed.counts,
        interrupted: observed.interrupted.map(str::to_string),
        history: "history.jsonl".to_string(),
        peer_messages: observed.peer_messages.as_ref().ok().cloned(),
        peer_messages_unavailable: observed.peer_messages.as_ref().err().map(|s| s.to_string()),
        node_cpu: observed.node_cpu.as_ref().ok().cloned(),
        node_cpu_unavailable: observed.node_cpu.as_ref().err().cloned(),
        client_cpu: Some(observed.client_cpu.clone()),
        open_loop_latency: observed.open_loop_latency.clone(),
    };
    eprintln!(
        "synod: {} events, ok {ok}, fail {fail}, info {info} in {:.1} s",
        observed.events, observed.seconds
    );
    let peer_summary = match &observed.peer_messages {
        Ok(m) => m.summary(),
        Err(why) => format!("  peer messages per op: not available ({why})\n"),
    };
    let cpu_summary = crate::cpu::summary(
        observed.node_cpu.as_ref().map_err(String::as_str),
        &observed.client_cpu,
    );
    if let Some(sig) = observed.interrupted {
        let results = RunResults::unjudged(
            format!(
                "interrupted by {sig}: the cluster was healed and torn down, the history kept \
                 unchecked"
            ),
            Some(run),
        );
        write_json(&dir.join("results.json"), &results)?;
        eprintln!(
            "synod: interrupted by {sig}; history kept in {}",
            dir.display()
        );
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    let history_path = dir.join("history.jsonl");
    let file = history_path.display().to_string();
    // Streamed: the history is never held whole.
    let input = import::open(&history_path, Format::Jsonl)
        .map_err(|e| anyhow::anyhow!(e.in_file(&file)))?;
    let options = Options {
        semantics: input.semantics(),
        time_limit: (check_time_limit > 0.0)
            .then(|| Duration::try_from_secs_f64(check_time_limit).ok())
            .flatten(),
        election_timeout: election_timeout_ms.map(Duration::from_millis),
        ..Options::default()
    };
    let sections = [peer_section(observed.peer_messages.as_ref())];
    // The checker writes results.json once, with the run's own figures.
    let outcome = match check_and_report_run(input, &options, dir, &sections, &run) {
        Ok(o) => o,
        Err(PipelineError::History(e)) => anyhow::bail!(e.in_file(&file)),
        Err(e) => return Err(anyhow::Error::new(e).context("the checker failed")),
    };
    let due_summary =
        crate::due_latency::summary(observed.open_loop_latency.as_deref().unwrap_or_default());
    print!(
        "{}{due_summary}{peer_summary}{cpu_summary}",
        outcome.summary()
    );
    println!("report: {}", dir.join("report.html").display());
    Ok(ExitCode::from(outcome.exit_code()))
}
