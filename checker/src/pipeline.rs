//! The whole judging of one history, as `synod check` and the bench runner
//! both need it: check, report, and write the files of a run directory.
//!
//! Files written into `out_dir`:
//! - `results.json`: verdict, per-key results, explanations, report figures;
//! - `report.html`: the self-contained report with inline SVG plots;
//! - `explanation.html`: only when some key is not linearizable;
//! - `latency-<f>-<outcome>.hgrm`: HdrHistogram percentile spectra (ms).

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::check::{check, CheckError, Checked, Options, Verdict};
use crate::history::History;
use crate::html::{self, Section};
use crate::report::{self, Report};

/// What judging a history produced.
#[derive(Debug)]
pub struct Outcome {
    pub checked: Checked,
    pub report: Report,
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
}

impl Outcome {
    pub fn verdict(&self) -> Verdict {
        self.checked.verdict
    }

    /// The exit status every Synod command shares: 0 valid, 1 invalid,
    /// 2 unknown.
    pub fn exit_code(&self) -> u8 {
        match self.checked.verdict {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }

    /// A few lines for a terminal: the verdict, why, and the main figures.
    pub fn summary(&self) -> String {
        let c = &self.checked;
        let r = &self.report;
        let mut s = format!(
            "{}: {} keys, {} operations, model {}, checked in {:.1} ms\n",
            c.verdict.as_str(),
            c.keys.len(),
            r.operations,
            c.model,
            c.millis
        );
        for e in &c.explanations {
            s += &e.to_text();
        }
        if !c.unknown_keys.is_empty() {
            let reasons: Vec<String> = c
                .keys
                .iter()
                .filter(|k| k.verdict == Verdict::Unknown)
                .take(10)
                .map(|k| format!("{:?} ({})", k.key, k.reason.as_deref().unwrap_or("?")))
                .collect();
            s += &format!(
                "undecided keys ({}): {}{}\n",
                c.unknown_keys.len(),
                reasons.join(", "),
                if c.unknown_keys.len() > 10 {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        for l in &r.latency {
            s += &format!(
                "  {:<7} {:<5} n={:<8} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
                l.f, l.outcome, l.count, l.p50, l.p99, l.max
            );
        }
        if let Some(a) = r.availability {
            s += &format!("  availability {:.2}%", a * 100.0);
            if let Some(o) = &r.longest_without_ok {
                s += &format!(", longest stretch without ok {:.3} s", o.seconds);
            }
            s += "\n";
        }
        s
    }
}

/// Why a history could not be judged.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn write(path: PathBuf, text: &str, files: &mut Vec<PathBuf>) -> Result<(), PipelineError> {
    std::fs::write(&path, text).map_err(|e| PipelineError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    files.push(path);
    Ok(())
}

/// Checks `history`, computes its report and writes them into `out_dir`
/// (created if missing). See the module doc for the files.
pub fn check_and_report(
    history: &History,
    options: &Options,
    out_dir: &Path,
) -> Result<Outcome, PipelineError> {
    check_and_report_with(history, options, out_dir, &[])
}

/// [`check_and_report`], with `sections` the caller measured beyond the
/// history added to `report.html` (the bench runner's peer messages).
pub fn check_and_report_with(
    history: &History,
    options: &Options,
    out_dir: &Path,
    sections: &[Section],
) -> Result<Outcome, PipelineError> {
    let checked = check(history, options)?;
    let report = report::report(history);
    std::fs::create_dir_all(out_dir).map_err(|e| PipelineError::Io {
        path: out_dir.display().to_string(),
        source: e,
    })?;
    let title = out_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "history".into());
    let mut files = Vec::new();
    let explanations: Vec<_> = checked
        .explanations
        .iter()
        .map(|e| {
            json!({
                "key": e.key,
                "failing": e.failing,
                "text": e.to_text(),
                "prefix": e.prefix,
                "state_after_prefix": e.state_after_prefix,
                "window": e.window.iter().map(|&i| &e.ops[i]).collect::<Vec<_>>(),
            })
        })
        .collect();
    let results = json!({
        "verdict": checked.verdict,
        "model": checked.model,
        "operations": report.operations,
        "options": {
            "time_limit_s": options.time_limit.map(|d| d.as_secs_f64()),
            "memory_limit_bytes": options.memory_limit,
        },
        "check": checked,
        "explanations": explanations,
        "report": report,
    });
    let text = serde_json::to_string_pretty(&results)
        .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()));
    write(out_dir.join("results.json"), &text, &mut files)?;
    write(
        out_dir.join("report.html"),
        &html::report_page_with(&title, &checked, &report, sections),
        &mut files,
    )?;
    if !checked.explanations.is_empty() {
        write(
            out_dir.join("explanation.html"),
            &html::explanation_page(&title, &checked.explanations),
            &mut files,
        )?;
    }
    for ((f, outcome), h) in &report.histograms {
        let safe = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        };
        write(
            out_dir.join(format!("latency-{}-{}.hgrm", safe(f), safe(outcome))),
            &report::hgrm(h),
            &mut files,
        )?;
    }
    Ok(Outcome {
        checked,
        report,
        files,
    })
}
