//! `synod check`: judge a stored or imported history.
//!
//! Reads the history (any format `synod_checker::import` knows, guessed by
//! default), checks it, prints the verdict and a short summary, and writes
//! `results.json`, `report.html` (and `explanation.html` when a key is not
//! linearizable) next to the history or into `--out`. Bad input is exit 3
//! with `file:line: reason`; the verdict is the exit status otherwise.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use synod_checker::check::CheckError;
use synod_checker::import::{self, Format};
use synod_checker::{check_and_report, ModelKind, Options, Outcome, PipelineError};

/// Arguments of `synod check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The history to check.
    pub history: PathBuf,
    /// The model: cas-register, kv, or auto (kv if the history appends).
    #[arg(long, default_value = "auto")]
    pub model: ModelKind,
    /// The history's format: auto, jsonl, jepsen-log, edn, jepsen-edn.
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Where to write results.json and report.html (default: next to the
    /// history).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Give up after this many seconds: the verdict is then `unknown`,
    /// naming the keys that ran out.
    #[arg(long, value_name = "SECS")]
    pub time_limit: Option<f64>,
    /// Memory budget for the search in MB: past it, `unknown`.
    #[arg(long, value_name = "MB")]
    pub memory_limit: Option<u64>,
    /// Decide every key even after one is found not linearizable.
    #[arg(long)]
    pub exhaustive: bool,
}

/// Exit status for bad input (shared with `main`'s error path).
const EXIT_BAD_INPUT: u8 = 3;

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    match judge(&args)? {
        Judged::BadInput(msg) => {
            eprintln!("{msg}");
            Ok(ExitCode::from(EXIT_BAD_INPUT))
        }
        Judged::Done(outcome) => {
            // A closed pipe (`synod check ... | head`) must not panic, and
            // must not change the verdict's exit status either.
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "{}", outcome.summary());
            for f in &outcome.files {
                if f.extension().is_some_and(|e| e != "hgrm") {
                    let _ = writeln!(out, "wrote {}", f.display());
                }
            }
            Ok(ExitCode::from(outcome.exit_code()))
        }
    }
}

/// What `synod check` concluded, before it is printed.
enum Judged {
    /// `file:line: reason` (or another one-line reason): exit 3.
    BadInput(String),
    Done(Box<Outcome>),
}

fn judge(args: &CheckArgs) -> anyhow::Result<Judged> {
    let file = args.history.display().to_string();
    let imported = match import::read_file(&args.history, args.format) {
        Ok(i) => i,
        Err(e) => return Ok(Judged::BadInput(e.in_file(&file))),
    };
    let time_limit = match args.time_limit {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Ok(Judged::BadInput(format!(
                "--time-limit must be a positive number of seconds, got {s}"
            )))
        }
        s => s.map(Duration::from_secs_f64),
    };
    let options = Options {
        model: args.model,
        initial: imported.initial.clone(),
        time_limit,
        memory_limit: args
            .memory_limit
            .map(|mb| (mb as usize).saturating_mul(1 << 20)),
        exhaustive: args.exhaustive,
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| match args.history.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        });
    match check_and_report(&imported.history, &options, &out) {
        Ok(o) => Ok(Judged::Done(Box::new(o))),
        Err(PipelineError::Check(CheckError::Model(e))) => Ok(Judged::BadInput(format!(
            "{file}:{}: {}",
            e.line(),
            e.reason()
        ))),
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

    fn args(history: PathBuf) -> CheckArgs {
        CheckArgs {
            history,
            model: ModelKind::Auto,
            format: Format::Auto,
            out: None,
            time_limit: None,
            memory_limit: None,
            exhaustive: false,
        }
    }

    /// Runs `synod check` on `text`; the bad-input message if any.
    fn bad_input(name: &str, text: &str) -> String {
        let dir = tmp(name);
        let path = dir.0.join("history.jsonl");
        std::fs::write(&path, text).unwrap();
        assert_eq!(run(args(path.clone())).unwrap(), ExitCode::from(3));
        match judge(&args(path)).unwrap() {
            Judged::BadInput(msg) => msg,
            Judged::Done(o) => panic!("expected bad input, got {:?}", o.verdict()),
        }
    }

    const INVOKE: &str =
        r#"{"index":0,"time":1,"process":1,"type":"invoke","f":"write","value":1}"#;

    #[test]
    fn malformed_json_is_exit_3_with_file_and_line() {
        let msg = bad_input("json", &format!("{INVOKE}\n{{not json\n"));
        assert!(
            msg.ends_with(":2: not a history event: key must be a string at line 1 column 2"),
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

    #[test]
    fn valid_and_invalid_histories_set_the_exit_status_and_write_files() {
        let dir = tmp("verdicts");
        let ok = dir.0.join("ok.jsonl");
        std::fs::write(
            &ok,
            format!(
                "{INVOKE}\n{}\n",
                INVOKE
                    .replace("\"index\":0", "\"index\":1")
                    .replace("invoke", "ok")
            ),
        )
        .unwrap();
        assert_eq!(run(args(ok)).unwrap(), ExitCode::SUCCESS);
        assert!(dir.0.join("results.json").exists());
        assert!(dir.0.join("report.html").exists());
        let bad = dir.0.join("bad.log");
        std::fs::write(
            &bad,
            "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t1\n\
             INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\t2\n",
        )
        .unwrap();
        let mut a = args(bad);
        a.out = Some(dir.0.join("out"));
        assert_eq!(run(a).unwrap(), ExitCode::from(1));
        assert!(dir.0.join("out/explanation.html").exists());
    }
}
