//! The whole judging of one history, as `synod check` and the bench runner
//! both need it: check, report, and write the files of a run directory.
//!
//! [`check_and_report_input`] streams a history file once: each event goes
//! to the [`Partitioner`] (which keeps it only as its key's compact op)
//! and to the [`ReportBuilder`] (which keeps only aggregates), so a history
//! is never held whole, let alone twice. [`check_and_report`] does the same
//! for a history already in memory.
//!
//! Files written into `out_dir`:
//! - `results.json`: verdict, per-key results, explanations, report
//!   figures, and the caller's own section ([`crate::results::Results`],
//!   written once);
//! - `report.html`: the self-contained report with inline SVG plots;
//! - `explanation.html`: only when some key is not linearizable;
//! - `timeline.html`: a stretch of the history as lanes of bars
//!   ([`crate::timeline`]), around the first violation by default; drawn
//!   from a second pass over the events, which keeps only that stretch;
//! - `latency-<f>-<outcome>.hgrm`: HdrHistogram percentile spectra (ms).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::check::{check_partition, CheckError, Checked, Options, Verdict};
use crate::history::{Event, History, HistoryError, ReadNotes};
use crate::html::{self, Section};
use crate::import::Input;
use crate::model::Partitioner;
use crate::report::{self, ms_and_elections, Report, ReportBuilder};
use crate::results::{CheckOptions, Judgement, Results};
use crate::timeline::{Span, TimelineBuilder, Window};

/// What judging a history produced.
#[derive(Debug)]
pub struct JudgedHistory {
    pub checked: Checked,
    pub report: Report,
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
    /// What reading noticed that is not an error (a truncated last line).
    pub warnings: Vec<String>,
    /// The search's time limit, which the summary states.
    pub time_limit: Option<Duration>,
}

impl JudgedHistory {
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
        let mut s = String::new();
        for w in &self.warnings {
            s += &format!("warning: {w}\n");
        }
        let limit = match self.time_limit {
            Some(d) => format!("time limit {}", seconds(d)),
            None => "no time limit".into(),
        };
        s += &format!(
            "{}: {} keys, {} operations, model {}, checked in {:.1} ms ({limit})\n",
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
            if let Some(ok) = r.ok_share {
                s += &format!(" (ok share {:.2}%)", ok * 100.0);
            }
            if let Some(o) = &r.longest_without_ok {
                s += &format!(", longest stretch without ok {:.3} s", o.seconds);
            }
            s += "\n";
        }
        s += &downtime_lines(r);
        s
    }
}

/// The most fault windows the summary lists one by one.
const MAX_WINDOW_LINES: usize = 20;

/// One line per fault window: its down-time from the start, the longest
/// gap inside it and its recovery after the stop; then the worst.
fn downtime_lines(r: &Report) -> String {
    let mut s = String::new();
    let at = |t: u64| t.saturating_sub(r.start) as f64 / 1e9;
    for (i, w) in r.faults.iter().enumerate() {
        let Some(d) = &w.downtime else { continue };
        if i == MAX_WINDOW_LINES {
            s += &format!("  ... and {} more fault windows\n", r.faults.len() - i);
            break;
        }
        let down = match d.ms {
            Some(ms) => format!("down {}", ms_and_elections(ms, d.elections)),
            None => "no ok after its start before the history ended".into(),
        };
        let recovery = match (w.stop, w.recovery) {
            (None, _) => "never stopped".into(),
            (Some(_), Some(r)) => format!("recovery {:.1} ms after stop", r as f64 / 1e6),
            (Some(_), None) => "no ok after stop".into(),
        };
        s += &format!(
            "  fault {} at {:.3} s: {down}, longest gap {}, {recovery}\n",
            w.name,
            at(w.start),
            ms_and_elections(d.longest_gap_ms, d.longest_gap_elections)
        );
    }
    let downs: Vec<_> = r
        .faults
        .iter()
        .filter_map(|w| w.downtime.as_ref())
        .collect();
    if downs.is_empty() {
        return s;
    }
    let never = downs.iter().filter(|d| !d.resumed).count();
    let worst = downs
        .iter()
        .filter_map(|d| Some((d.worst_ms()?, d.worst_elections())))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    s += "  worst down-time (start to first ok, or longest gap): ";
    s += &match worst {
        Some((ms, e)) => ms_and_elections(ms, e),
        None => "-".into(),
    };
    if never > 0 {
        s += &format!("; {never} windows with no ok after their start");
    }
    s += "\n";
    s
}

/// `600 s`, `1.5 s`.
pub fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// Why a history could not be judged.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The history is not one (bad input).
    #[error(transparent)]
    History(#[from] HistoryError),
    /// It cannot be judged by the model (bad input).
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
) -> Result<JudgedHistory, PipelineError> {
    check_and_report_with(history, options, out_dir, &[])
}

/// [`check_and_report`], with `sections` the caller measured beyond the
/// history added to `report.html` (the bench runner's peer messages).
pub fn check_and_report_with(
    history: &History,
    options: &Options,
    out_dir: &Path,
    sections: &[Section],
) -> Result<JudgedHistory, PipelineError> {
    judge(
        options,
        Some((out_dir, sections, None::<&()>, None)),
        |sink| {
            for e in &history.events {
                sink(e).map_err(|reason| HistoryError::Invalid {
                    line: e.index as usize + 1,
                    reason,
                })?;
            }
            Ok(ReadNotes::default())
        },
    )
}

/// Streams a history file into the check and the report (see the module
/// doc), then writes the files into `out_dir`. `options.semantics` should
/// be the input's ([`Input::semantics`]) or what the caller chose instead.
/// `timeline` is the stretch `timeline.html` draws (default: around the
/// first violation).
pub fn check_and_report_input(
    input: Input,
    options: &Options,
    out_dir: &Path,
    sections: &[Section],
    timeline: Option<Span>,
) -> Result<JudgedHistory, PipelineError> {
    judge(
        options,
        Some((out_dir, sections, None::<&()>, timeline)),
        replay(input),
    )
}

/// The events of `input`, as often as asked: the first pass reads the
/// input, a later one opens its file again.
fn replay(input: Input) -> impl FnMut(&mut Sink<'_>) -> Result<ReadNotes, HistoryError> {
    let (path, format) = (input.path.clone(), input.format);
    let mut first = Some(input);
    move |sink| {
        let input = match first.take() {
            Some(input) => input,
            None => crate::import::open(&path, format)?,
        };
        input.events(|e| sink(&e))
    }
}

/// [`check_and_report_input`] for a caller with figures of its own: `run`
/// becomes `results.json`'s `run` section, in the one write of the file.
pub fn check_and_report_run<R: Serialize>(
    input: Input,
    options: &Options,
    out_dir: &Path,
    sections: &[Section],
    run: &R,
) -> Result<JudgedHistory, PipelineError> {
    judge(
        options,
        Some((out_dir, sections, Some(run), None)),
        replay(input),
    )
}

/// [`check_and_report_input`] without the files: the verdict and the
/// report only (`synod check` of many histories).
pub fn check_input(input: Input, options: &Options) -> Result<JudgedHistory, PipelineError> {
    judge(options, None::<Files<'_, ()>>, replay(input))
}

type Sink<'a> = dyn FnMut(&Event) -> Result<(), String> + 'a;

/// Where the files go: the directory, the caller's sections, its `run`
/// section of results.json, and the timeline's stretch.
type Files<'a, R> = (&'a Path, &'a [Section], Option<&'a R>, Option<Span>);

/// One pass over the events that `feed` hands out, then the check and, if
/// asked, the files (and a second pass for the timeline).
fn judge<R: Serialize>(
    options: &Options,
    files_into: Option<Files<'_, R>>,
    mut feed: impl FnMut(&mut Sink<'_>) -> Result<ReadNotes, HistoryError>,
) -> Result<JudgedHistory, PipelineError> {
    let mut keys = Partitioner::new(options.model, &options.semantics);
    let mut builder = ReportBuilder::new()
        .with_election_timeout_ms(options.election_timeout.map(|d| d.as_secs_f64() * 1e3));
    let notes = feed(&mut |e: &Event| {
        builder.push(e);
        keys.push(e).map_err(|m| m.reason())
    })?;
    let partition = keys.finish().map_err(CheckError::from)?;
    let checked = check_partition(partition, options);
    let report = builder.finish();
    let (checked, report, files) = match files_into {
        Some((out_dir, sections, run, span)) => {
            let results = Results {
                verdict: Some(checked.verdict),
                note: None,
                judgement: Some(Judgement {
                    model: checked.model.clone(),
                    operations: report.operations,
                    options: CheckOptions::of(options),
                    explanations: checked.explanations.iter().map(Into::into).collect(),
                    check: checked,
                    report,
                }),
                run,
            };
            let mut files = write_files(&results, out_dir, sections)?;
            let Some(Judgement { check, report, .. }) = results.judgement else {
                unreachable!("the results just built have a judgement")
            };
            let window = match span {
                Some(span) => Window::of_span(span, report.start, report.end),
                None => Window::default_for(&check, &report),
            };
            let mut timeline = TimelineBuilder::new(window);
            feed(&mut |e: &Event| {
                timeline.push(e);
                Ok(())
            })?;
            write(
                out_dir.join("timeline.html"),
                &timeline.finish().page(&title(out_dir), &check, &report),
                &mut files,
            )?;
            (check, report, files)
        }
        None => (checked, report, Vec::new()),
    };
    Ok(JudgedHistory {
        checked,
        report,
        files,
        warnings: notes.warning().into_iter().collect(),
        time_limit: options.time_limit,
    })
}

/// A page's title: the run directory's name.
fn title(out_dir: &Path) -> String {
    out_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "history".into())
}

/// Writes the files of the module doc but the timeline; returns their
/// paths.
fn write_files<R: Serialize>(
    results: &Results<&R>,
    out_dir: &Path,
    sections: &[Section],
) -> Result<Vec<PathBuf>, PipelineError> {
    let Some(Judgement {
        check: checked,
        report,
        ..
    }) = &results.judgement
    else {
        unreachable!("only judged results are written here")
    };
    std::fs::create_dir_all(out_dir).map_err(|e| PipelineError::Io {
        path: out_dir.display().to_string(),
        source: e,
    })?;
    let title = title(out_dir);
    let mut files = Vec::new();
    let text = serde_json::to_string_pretty(results)
        .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()));
    write(out_dir.join("results.json"), &text, &mut files)?;
    write(
        out_dir.join("report.html"),
        &html::report_page_with(&title, checked, report, sections),
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
    Ok(files)
}
