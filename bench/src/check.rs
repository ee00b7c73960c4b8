//! `synod check`: judge stored or imported histories.
//!
//! Reads each history (any format `synod_checker::import` knows, guessed by
//! default, streamed so a history of any size fits), checks it, and prints
//! the verdict. With one history it prints a short summary and writes
//! `results.json`, `report.html`, `timeline.html` (`--from/--to` choose its
//! stretch) (and `explanation.html` when a key is not
//! linearizable) next to the history or into `--out`; with several it
//! prints a table (file, format, verdict, ops, ms) and writes files only
//! with `--out DIR`, one folder per history. Bad input is exit 3 with
//! `file:line: reason` and the format read; otherwise the verdict is the
//! exit status, the worst of all the histories (bad input, then invalid,
//! then unknown, then valid).
//!
//! One file though over 600 lines: it is one concern, the `synod check`
//! command (about 320 lines), and the rest is its tests, which pin the
//! exit status and the `file:line` message for each kind of bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;
use synod_checker::check::CheckError;
use synod_checker::import::{self, format_note, Format, Input};
use synod_checker::model::ModelError;
use synod_checker::pipeline::seconds;
use synod_checker::timeline::Span;
use synod_checker::{
    check_and_report_input, check_input, FailedCas, JudgedHistory, ModelKind, Options,
    PipelineError,
};

/// The search's time limit when none is given: long enough for any
/// history a run produces, short enough that a hard key says so.
pub const DEFAULT_TIME_LIMIT: &str = "600";

/// Arguments of `synod check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The histories to check: one, or many (a table, and the worst exit
    /// status of them all).
    #[arg(required = true, value_name = "HISTORY")]
    pub histories: Vec<PathBuf>,
    /// The model: cas-register, kv, or auto (kv if the history appends).
    #[arg(long, default_value = "auto")]
    pub model: ModelKind,
    /// The history's format: auto, jsonl, jepsen-log, edn, jepsen-edn.
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// The value every key holds before its first write, as JSON (`0`,
    /// `"x"`, `null`). Default: the format's (`null`; `""` for Porcupine's
    /// get/put EDN).
    #[arg(long, value_name = "JSON")]
    pub initial_value: Option<String>,
    /// What a failed cas tells: `drop` (only that it did not happen, as
    /// Jepsen and Knossos read it), `mismatch` (also that the key held
    /// another value: the stronger reading), `marked` (that, for a cas
    /// marked as a mismatch). Default: `marked` for Synod's JSON Lines,
    /// `drop` for the imported formats.
    #[arg(long, value_name = "HOW")]
    pub failed_cas: Option<FailedCas>,
    /// Where to write results.json and report.html (default: next to the
    /// history). With several histories: one folder per history in DIR,
    /// and no files without it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Give up after this many seconds of search, or `none`: the verdict
    /// is then `unknown`, naming the keys that ran out.
    #[arg(long, value_name = "SECS", default_value = DEFAULT_TIME_LIMIT)]
    pub time_limit: String,
    /// Memory budget for the search in MB: past it, `unknown`.
    #[arg(long, value_name = "MB")]
    pub memory_limit: Option<u64>,
    /// Decide every key even after one is found not linearizable.
    #[arg(long)]
    pub exhaustive: bool,
    /// Where timeline.html starts, in seconds after the history's first
    /// event. Default: a little before the first violation of an invalid
    /// history; before the first fault of a valid one.
    #[arg(long, value_name = "S", value_parser = parse_offset)]
    pub from: Option<f64>,
    /// Where timeline.html ends, in seconds after the history's first
    /// event (default: with --from, the end of the history).
    #[arg(long, value_name = "S", value_parser = parse_offset)]
    pub to: Option<f64>,
}

/// A `--from`/`--to` offset: a finite number of seconds, not negative.
fn parse_offset(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!(
            "must be a number of seconds after the history's first event (0, 2.5), got {text:?}"
        )),
    }
}

/// Exit status for bad input (shared with `main`'s error path).
const EXIT_BAD_INPUT: u8 = 3;

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let settings = match Settings::from_args(&args) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("{msg}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    use std::io::Write as _;
    // A closed pipe (`synod check ... | head`) must not panic, and must
    // not change the verdict's exit status either.
    let mut out = std::io::stdout().lock();
    if let [history] = args.histories.as_slice() {
        let out_dir = args.out.clone().unwrap_or_else(|| beside(history));
        return Ok(match judge(history, &settings, Some(&out_dir))? {
            Judged::BadInput(msg) => {
                eprintln!("{msg}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
            Judged::Done { outcome, .. } => {
                let _ = write!(out, "{}", outcome.summary());
                for f in &outcome.files {
                    if f.extension().is_some_and(|e| e != "hgrm") {
                        let _ = writeln!(out, "wrote {}", f.display());
                    }
                }
                ExitCode::from(outcome.exit_code())
            }
        });
    }
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut worst = 0u8;
    for (i, history) in args.histories.iter().enumerate() {
        let out_dir = args.out.as_ref().map(|d| d.join(folder_name(history, i)));
        let t = Instant::now();
        let judged = judge(history, &settings, out_dir.as_deref())?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let file = history.display().to_string();
        let (format, verdict, ops, code) = match judged {
            Judged::BadInput(msg) => {
                problems.push(msg);
                (
                    "-".to_string(),
                    "error".to_string(),
                    "-".to_string(),
                    EXIT_BAD_INPUT,
                )
            }
            Judged::Done { outcome, format } => {
                for w in &outcome.warnings {
                    problems.push(format!("{file}: warning: {w}"));
                }
                for e in &outcome.checked.explanations {
                    problems.push(format!("{file}: {}", e.to_text().trim_end()));
                }
                (
                    format.to_string(),
                    outcome.verdict().as_str().to_string(),
                    outcome.report.operations.to_string(),
                    outcome.exit_code(),
                )
            }
        };
        if severity(code) > severity(worst) {
            worst = code;
        }
        rows.push([file, format, verdict, ops, format!("{ms:.1}")]);
    }
    let _ = write!(out, "{}", table(&rows));
    let _ = writeln!(out, "{} histories, {}", rows.len(), settings.limit_text());
    for p in &problems {
        let _ = writeln!(out, "{p}");
    }
    Ok(ExitCode::from(worst))
}

/// How bad an exit status is, for the worst of many: bad input, then a
/// proven violation, then undecided, then valid.
fn severity(code: u8) -> u8 {
    match code {
        EXIT_BAD_INPUT => 3,
        1 => 2,
        2 => 1,
        _ => 0,
    }
}

/// The default output folder: the history's own.
fn beside(history: &Path) -> PathBuf {
    match history.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A folder per history under `--out`: its file name, numbered so that
/// two histories of one name do not share it.
fn folder_name(history: &Path, i: usize) -> String {
    let name = history
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "history".into());
    format!("{:03}-{name}", i + 1)
}

/// A plain text table with a header, columns padded to their widest cell.
fn table(rows: &[[String; 5]]) -> String {
    let header = ["file", "format", "verdict", "ops", "ms"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                // Numbers right-aligned, words left.
                if i >= 3 {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        s += cells.join("  ").trim_end();
        s += "\n";
    }
    s
}

/// The flags that apply to every history, parsed once.
struct Settings {
    model: ModelKind,
    format: Format,
    initial: Option<Value>,
    failed_cas: Option<FailedCas>,
    time_limit: Option<Duration>,
    memory_limit: Option<usize>,
    exhaustive: bool,
    timeline: Option<Span>,
}

impl Settings {
    fn from_args(args: &CheckArgs) -> Result<Settings, String> {
        let initial = match &args.initial_value {
            None => None,
            Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                format!("--initial-value must be JSON (0, \"\", null), got {text:?}: {e}")
            })?),
        };
        Ok(Settings {
            model: args.model,
            format: args.format,
            initial,
            failed_cas: args.failed_cas,
            time_limit: parse_time_limit(&args.time_limit)?,
            memory_limit: args
                .memory_limit
                .map(|mb| (mb as usize).saturating_mul(1 << 20)),
            exhaustive: args.exhaustive,
            timeline: match (args.from, args.to) {
                (None, None) => None,
                (from, to) if to.is_some_and(|t| t <= from.unwrap_or(0.0)) => {
                    return Err(format!(
                        "--to ({}) must be after --from ({})",
                        to.unwrap_or(0.0),
                        from.unwrap_or(0.0)
                    ))
                }
                (from, to) => Some(Span {
                    from_s: from.unwrap_or(0.0),
                    to_s: to,
                }),
            },
        })
    }

    fn limit_text(&self) -> String {
        match self.time_limit {
            Some(d) => format!("time limit {} per history", seconds(d)),
            None => "no time limit".into(),
        }
    }

    /// The options for one history: the flags, over its format's meaning.
    fn options(&self, input: &Input) -> Options {
        let mut semantics = input.semantics();
        if let Some(v) = &self.initial {
            semantics.initial = v.clone();
        }
        if let Some(f) = self.failed_cas {
            semantics.failed_cas = f;
        }
        Options {
            model: self.model,
            semantics,
            time_limit: self.time_limit,
            memory_limit: self.memory_limit,
            exhaustive: self.exhaustive,
            election_timeout: None,
        }
    }
}

/// `600`, `0.5` or `none`; a limit beyond what the clock can hold is none.
fn parse_time_limit(text: &str) -> Result<Option<Duration>, String> {
    if text == "none" {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(Duration::try_from_secs_f64(s).ok()),
        _ => Err(format!(
            "--time-limit must be a positive number of seconds or `none`, got {text:?}"
        )),
    }
}

/// What `synod check` concluded of one history, before it is printed.
enum Judged {
    /// `file:line: reason (read as ...)`, or another one-line reason: exit 3.
    BadInput(String),
    Done {
        outcome: Box<JudgedHistory>,
        format: Format,
    },
}

fn judge(history: &Path, settings: &Settings, out: Option<&Path>) -> anyhow::Result<Judged> {
    let file = history.display().to_string();
    let input = match import::open(history, settings.format) {
        Ok(i) => i,
        Err(e) => return Ok(Judged::BadInput(e.in_file(&file))),
    };
    let (format, guessed) = (input.format, input.guessed);
    let options = settings.options(&input);
    let result = match out {
        Some(dir) => check_and_report_input(input, &options, dir, &[], settings.timeline),
        None => check_input(input, &options),
    };
    let note = || format_note(format, guessed);
    match result {
        Ok(o) => Ok(Judged::Done {
            outcome: Box::new(o),
            format,
        }),
        Err(PipelineError::History(e)) => Ok(Judged::BadInput(e.in_file(&file))),
        Err(PipelineError::Check(CheckError::Model(e))) => Ok(Judged::BadInput(match &e {
            ModelError::BadOp { .. } => format!(
                "{file}:{}: {} ({})",
                e.line().unwrap_or(0),
                e.reason(),
                note()
            ),
            ModelError::NoOperations => format!("{file}: {e} ({})", note()),
        })),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(name: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("synod-check-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        check: CheckArgs,
    }

    impl Cli {
        fn try_parse_from_words(words: &[&str]) -> Result<Cli, clap::Error> {
            use clap::Parser as _;
            Cli::try_parse_from(std::iter::once("check").chain(words.iter().copied()))
        }
    }

    /// `synod check WORDS...`, parsed as the real command line is.
    fn args(words: &[&str]) -> CheckArgs {
        Cli::try_parse_from_words(words).unwrap().check
    }

    fn settings(words: &[&str]) -> Settings {
        Settings::from_args(&args(words)).unwrap()
    }

    fn path_str(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    /// Runs `synod check` on `text`; the bad-input message if any.
    fn bad_input(name: &str, text: &str) -> String {
        let dir = tmp(name);
        let path = dir.0.join("history.jsonl");
        std::fs::write(&path, text).unwrap();
        assert_eq!(run(args(&[path_str(&path)])).unwrap(), ExitCode::from(3));
        match judge(&path, &settings(&[path_str(&path)]), None).unwrap() {
            Judged::BadInput(msg) => msg,
            Judged::Done { outcome, .. } => {
                panic!("expected bad input, got {:?}", outcome.verdict())
            }
        }
    }

    const INVOKE: &str =
        r#"{"index":0,"time":1,"process":1,"type":"invoke","f":"write","value":1}"#;

    fn ok_history() -> String {
        format!(
            "{INVOKE}\n{}\n",
            INVOKE
                .replace("\"index\":0", "\"index\":1")
                .replace("invoke", "ok")
        )
    }

    #[test]
    fn malformed_json_is_exit_3_with_file_line_and_format() {
        let msg = bad_input("json", &format!("{INVOKE}\n{{not json\n"));
        assert!(
            msg.contains(":2: not a history event: key must be a string at line 1 column 2 (read as jsonl, guessed from the content"),
            "{msg}"
        );
        assert!(msg.contains("history.jsonl:2: "), "{msg}");
    }

    #[test]
    fn unknown_f_is_exit_3() {
        let msg = bad_input(
            "f",
            "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"frob\"}\n",
        );
        assert!(
            msg.contains("history.jsonl:1: unknown client operation"),
            "{msg}"
        );
    }

    #[test]
    fn missing_field_is_exit_3() {
        let msg = bad_input(
            "missing",
            "{\"index\":0,\"time\":1,\"type\":\"invoke\",\"f\":\"read\"}\n",
        );
        assert!(
            msg.contains("history.jsonl:1: ") && msg.contains("missing field `process`"),
            "{msg}"
        );
    }

    #[test]
    fn completion_without_invoke_is_exit_3() {
        let msg = bad_input(
            "orphan",
            "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"ok\",\"f\":\"read\"}\n",
        );
        assert!(
            msg.contains("history.jsonl:1: ") && msg.contains("without an invoke"),
            "{msg}"
        );
    }

    #[test]
    fn a_bad_cas_value_names_its_line() {
        let msg = bad_input(
            "cas",
            concat!(
                "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"cas\",\"value\":3}\n",
                "{\"index\":1,\"time\":2,\"process\":1,\"type\":\"ok\",\"f\":\"cas\",\"value\":3}\n",
            ),
        );
        assert!(
            msg.contains("history.jsonl:2: cas needs [expected, new]"),
            "{msg}"
        );
    }

    /// Regression: text that is no history at all came out valid, exit 0.
    #[test]
    fn garbage_and_empty_files_are_exit_3_never_a_verdict() {
        for (name, text) in [
            ("hello", "hello world".to_string()),
            ("noise", "aGVsbG8gd29ybGQ=\u{1}\u{2}\u{3}".to_string()),
            ("junk-after", format!("{}junk", ok_history())),
            ("empty", String::new()),
            ("blank", "\n\n".to_string()),
        ] {
            bad_input(name, &text);
        }
        let msg = bad_input(
            "nemesis-only",
            "{\"index\":0,\"time\":1,\"process\":\"nemesis\",\"type\":\"info\",\"f\":\"start\"}\n",
        );
        assert!(msg.contains("no client operations"), "{msg}");
    }

    /// Regression: `--time-limit 1e20` panicked (exit 101).
    #[test]
    fn time_limits_parse_without_panicking() {
        assert_eq!(settings(&["h"]).time_limit, Some(Duration::from_secs(600)));
        assert_eq!(settings(&["h", "--time-limit", "none"]).time_limit, None);
        assert_eq!(settings(&["h", "--time-limit", "1e20"]).time_limit, None);
        assert_eq!(
            settings(&["h", "--time-limit", "0.5"]).time_limit,
            Some(Duration::from_millis(500))
        );
        for bad in ["0", "-1", "nan", "inf", "soon"] {
            let flag = format!("--time-limit={bad}");
            assert!(Settings::from_args(&args(&["h", &flag])).is_err(), "{bad}");
        }
        let dir = tmp("limit");
        let path = dir.0.join("h.jsonl");
        std::fs::write(&path, ok_history()).unwrap();
        let p = path_str(&path);
        assert_eq!(
            run(args(&[p, "--time-limit", "1e20"])).unwrap(),
            ExitCode::SUCCESS
        );
    }

    #[test]
    fn the_default_time_limit_is_printed() {
        let dir = tmp("printed");
        let path = dir.0.join("h.jsonl");
        std::fs::write(&path, ok_history()).unwrap();
        let Judged::Done { outcome, .. } =
            judge(&path, &settings(&[path_str(&path)]), None).unwrap()
        else {
            panic!("bad input")
        };
        assert!(
            outcome.summary().contains("(time limit 600 s)"),
            "{}",
            outcome.summary()
        );
    }

    #[test]
    fn initial_value_and_failed_cas_flags_reach_the_check() {
        // A cas from 0 first: only valid if keys start at 0.
        let dir = tmp("initial");
        let path = dir.0.join("h.log");
        std::fs::write(
            &path,
            "INFO  jepsen.util - 0\t:invoke\t:cas\t[0 1]\nINFO  jepsen.util - 0\t:ok\t:cas\t[0 1]\n\
             INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]\nINFO  jepsen.util - 1\t:fail\t:cas\t[1 2]\n",
        )
        .unwrap();
        let p = path_str(&path);
        let out = dir.0.join("out");
        let o = path_str(&out);
        assert_eq!(run(args(&[p, "--out", o])).unwrap(), ExitCode::from(1));
        assert_eq!(
            run(args(&[p, "--out", o, "--initial-value", "0"])).unwrap(),
            ExitCode::SUCCESS
        );
        // The failed cas [1 2] right after the register became 1: a
        // mismatch only under the stronger reading.
        assert_eq!(
            run(args(&[
                p,
                "--out",
                o,
                "--initial-value",
                "0",
                "--failed-cas",
                "mismatch"
            ]))
            .unwrap(),
            ExitCode::from(1)
        );
        assert!(Settings::from_args(&args(&[p, "--initial-value", "{nope"])).is_err());
        assert!(Cli::try_parse_from_words(&[p, "--failed-cas", "maybe"]).is_err());
    }

    #[test]
    fn many_histories_give_a_table_and_the_worst_status() {
        let dir = tmp("many");
        let ok = dir.0.join("ok.jsonl");
        std::fs::write(&ok, ok_history()).unwrap();
        let bad = dir.0.join("bad.log");
        std::fs::write(
            &bad,
            "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t1\n\
             INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\t2\n",
        )
        .unwrap();
        let junk = dir.0.join("junk.txt");
        std::fs::write(&junk, "hello").unwrap();
        let (ok, bad, junk) = (path_str(&ok), path_str(&bad), path_str(&junk));
        assert_eq!(run(args(&[ok, ok])).unwrap(), ExitCode::SUCCESS);
        assert_eq!(run(args(&[ok, bad, ok])).unwrap(), ExitCode::from(1));
        assert_eq!(run(args(&[bad, junk, ok])).unwrap(), ExitCode::from(3));
        // Without --out, nothing is written; with it, a folder each.
        assert!(!dir.0.join("results.json").exists());
        let out = dir.0.join("out");
        run(args(&[ok, bad, "--out", path_str(&out)])).unwrap();
        assert!(out.join("001-ok.jsonl/results.json").exists());
        assert!(out.join("002-bad.log/explanation.html").exists());
        let rows = [
            ["a.jsonl", "jsonl", "valid", "2", "1.0"].map(String::from),
            ["long/name.log", "jepsen-log", "invalid", "10", "12.5"].map(String::from),
        ];
        assert_eq!(
            table(&rows),
            "file           format      verdict  ops    ms\n\
             a.jsonl        jsonl       valid      2   1.0\n\
             long/name.log  jepsen-log  invalid   10  12.5\n"
        );
        assert!(
            severity(3) > severity(1) && severity(1) > severity(2) && severity(2) > severity(0)
        );
    }

    #[test]
    fn valid_and_invalid_histories_set_the_exit_status_and_write_files() {
        let dir = tmp("verdicts");
        let ok = dir.0.join("ok.jsonl");
        std::fs::write(&ok, ok_history()).unwrap();
        assert_eq!(run(args(&[path_str(&ok)])).unwrap(), ExitCode::SUCCESS);
        assert!(dir.0.join("results.json").exists());
        assert!(dir.0.join("report.html").exists());
        let bad = dir.0.join("bad.log");
        std::fs::write(
            &bad,
            "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t1\n\
             INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\t2\n",
        )
        .unwrap();
        let out = dir.0.join("out");
        assert_eq!(
            run(args(&[path_str(&bad), "--out", path_str(&out)])).unwrap(),
            ExitCode::from(1)
        );
        assert!(dir.0.join("out/explanation.html").exists());
    }

    #[test]
    fn the_timeline_shows_the_failing_op_and_takes_a_stretch() {
        let dir = tmp("timeline");
        let bad = dir.0.join("bad.log");
        // A read of 2 that no write explains, by process 1, after a write
        // of 1 by process 0; process 2 writes 3 a second later.
        std::fs::write(
            &bad,
            "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t1\n\
             INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\t2\n\
             INFO  jepsen.util - 2\t:invoke\t:write\t3\nINFO  jepsen.util - 2\t:ok\t:write\t3\n",
        )
        .unwrap();
        let out = dir.0.join("out");
        assert_eq!(
            run(args(&[path_str(&bad), "--out", path_str(&out)])).unwrap(),
            ExitCode::from(1)
        );
        let page = std::fs::read_to_string(out.join("timeline.html")).unwrap();
        assert!(page.contains("cannot be linearized"), "{page}");
        assert!(page.contains("process 1: read"), "{page}");
        assert!(
            page.contains("stroke=\"#000\""),
            "the failing op is outlined"
        );
        let report = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(report.contains("href=\"timeline.html\""));
        // A stretch: only the ops that overlap it.
        let ops = |page: &str| page.matches("<g class=\"op\">").count();
        assert_eq!(ops(&page), 3);
        run(args(&[
            path_str(&bad),
            "--out",
            path_str(&out),
            "--from",
            "0",
            "--to",
            "0.0000000001",
        ]))
        .unwrap();
        let page = std::fs::read_to_string(out.join("timeline.html")).unwrap();
        assert!(ops(&page) < 3, "{page}");
        // Bad stretches are bad input, with a reason.
        assert_eq!(
            run(args(&[path_str(&bad), "--from", "2", "--to", "1"])).unwrap(),
            ExitCode::from(3)
        );
        assert!(Cli::try_parse_from_words(&["h", "--from", "-1"]).is_err());
        assert!(Cli::try_parse_from_words(&["h", "--to", "soon"]).is_err());
    }
}
