//! What a suite says about its runs: the exit status (the worst run's),
//! [`Summary`] (`summary.json`), the table printed at the end, JUnit XML,
//! and the comparison page of every run with figures.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::downtime::DowntimeBound;
use super::matrix::Expect;
use crate::nightly::figures::{self, fmt_opt, RunFigures};

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

/// `summary.json`: the suite's one file about all its runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct Summary {
    pub suite: String,
    /// The suite file.
    pub file: PathBuf,
    /// When it started (`YYYYMMDDTHHMMSSZ`).
    pub started: String,
    pub seconds: f64,
    /// The suite's exit status (see the module doc).
    pub exit: u8,
    /// `K/N` when this is one shard of the suite (`--shard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Every run of the whole suite, in its order, so a merge of the
    /// shards can restore it (absent in summaries before shards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<String>,
    /// The shard directories a `synod suite merge` read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<PathBuf>,
    pub runs: Vec<RunResult>,
}

/// One finished run of the suite.
#[derive(Debug, Serialize, Deserialize)]
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
    /// The suite's bound on the run's down-time, if it set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_downtime: Option<DowntimeBound>,
    /// Why the run is over that bound (its worst window, the down-time
    /// and the bound); such a run fails like an invalid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_breach: Option<String>,
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
    /// invalid) when valid; a run over its down-time bound fails as
    /// invalid (an error stays an error).
    pub fn status(&self) -> u8 {
        let verdict = self.verdict_status();
        match self.downtime_breach {
            Some(_) => worst([verdict, 1]),
            None => verdict,
        }
    }

    /// [`RunResult::status`] by the verdict alone.
    fn verdict_status(&self) -> u8 {
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
        let why = self.verdict_explanation();
        match (&self.downtime_breach, why) {
            (Some(b), Some(why)) if self.verdict_status() != 0 => Some(format!("{why}\n{b}")),
            (Some(b), _) => Some(b.clone()),
            (None, why) => why,
        }
    }

    /// Why the verdict is not the one expected.
    fn verdict_explanation(&self) -> Option<String> {
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

/// Writes a suite's outputs into `out` (summary.json with the exit status
/// of the worst run; junit.xml, also to `junit_path` if given;
/// compare.html) and prints the table; that exit status.
pub fn report(
    out: &Path,
    mut summary: Summary,
    junit_path: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let exit = worst(summary.runs.iter().map(RunResult::status));
    summary.exit = exit;
    figures::out(&table(&summary.runs));
    let summary_path = out.join("summary.json");
    crate::artifacts::write_json(&summary_path, &summary)?;
    let Summary {
        suite,
        runs: results,
        seconds,
        ..
    } = summary;
    let junit = junit(&suite, &results, seconds);
    std::fs::write(out.join("junit.xml"), &junit)?;
    if let Some(path) = junit_path {
        std::fs::write(path, &junit).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let dirs: Vec<RunFigures> = results.iter().filter_map(|r| r.figures.clone()).collect();
    if !dirs.is_empty() {
        if let Err(e) = crate::nightly::compare::write(&dirs, out) {
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
        " {:>7} {:>7} {:>10} {:>20} {:>12}\n",
        "avail", "ok", "recovery", "worst down-time", "peer msgs/op"
    );
    let teeth = results.iter().any(|r| r.expect == Expect::Invalid);
    for r in results {
        s += &format!("{:<width$}  {:<8}", r.name, r.verdict_shown());
        match &r.figures {
            Some(f) => {
                s += &format!(" {:>8}", fmt_opt(f.throughput, 1));
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
                let ok = fmt_opt(f.ok_share.map(|a| a * 100.0), 1);
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
                let mut down = f.downtime_cell();
                if r.downtime_breach.is_some() {
                    down.push_str(" *");
                }
                s += &format!(" {avail:>6}% {ok:>6}% {rec:>10} {down:>20} {msgs:>12}\n");
            }
            None => s += "  (no figures)\n",
        }
    }
    if teeth {
        s += "(!: a teeth run, expected invalid)\n";
    }
    s += &downtime_by_fault(results);
    let breaches: Vec<&RunResult> = results
        .iter()
        .filter(|r| r.downtime_breach.is_some())
        .collect();
    if !breaches.is_empty() {
        s += "(*: down-time over the suite's bound; these runs fail)\n";
        for r in breaches {
            s += &format!(
                "  {}: {}\n",
                r.name,
                r.downtime_breach.as_deref().unwrap_or_default()
            );
        }
    }
    let errors: Vec<&RunResult> = results
        .iter()
        .filter(|r| severity(r.status()) == 3)
        .collect();
    if !errors.is_empty() {
        s += "runs that could not be judged:\n";
        for r in errors {
            let why = r.explanation().unwrap_or_else(|| "no reason given".into());
            s += &format!("  {}: {}\n", r.name, why.replace('\n', "\n    "));
        }
    }
    s
}

/// Down-time per fault of every run with fault windows: the worst window
/// of each fault (start to first ok, or the longest gap, whichever is
/// larger), `et` in election timeouts.
fn downtime_by_fault(results: &[RunResult]) -> String {
    let mut s = String::new();
    for r in results {
        let Some(f) = &r.figures else { continue };
        if f.downtime.is_empty() {
            continue;
        }
        let cells: Vec<String> = f
            .downtime
            .iter()
            .map(|d| {
                let worst = match (d.worst_ms, d.worst_elections) {
                    (Some(ms), Some(e)) => format!("{ms:.0} ms ({e:.2} et)"),
                    (Some(ms), None) => format!("{ms:.0} ms"),
                    (None, _) => "-".into(),
                };
                let never = match d.never_resumed {
                    0 => String::new(),
                    n => format!(", {n} never resumed"),
                };
                format!("{} {worst} over {} windows{never}", d.fault, d.windows)
            })
            .collect();
        if s.is_empty() {
            s += "down-time by fault (worst window; et: election timeouts):\n";
        }
        s += &format!("  {}: {}\n", r.name, cells.join("; "));
    }
    s
}

fn xml(s: &str) -> String {
    // XML 1.0 forbids most control characters even when escaped.
    synod_checker::html::escape(s)
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
    let mut props = vec![("verdict", f.verdict.clone()), ("seed", f.seed.to_string())];
    if let Some(n) = f.operations {
        props.push(("operations", n.to_string()));
    }
    if let Some(t) = f.throughput {
        props.push(("ok_ops_per_second", format!("{t:.3}")));
    }
    if let Some(p) = f.p99() {
        props.push(("p99_ms", format!("{p:.3}")));
    }
    if let Some(a) = f.ok_share {
        props.push(("ok_share", format!("{a:.5}")));
    }
    if let Some(a) = f.availability {
        props.push(("availability", format!("{a:.5}")));
    }
    if let Some(m) = f.peer_messages_per_op {
        props.push(("peer_messages_per_op", format!("{m:.3}")));
    }
    if let Some((ms, e)) = f.worst_downtime() {
        props.push(("worst_downtime_ms", format!("{ms:.3}")));
        if let Some(e) = e {
            props.push(("worst_downtime_elections", format!("{e:.3}")));
        }
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
            1 | 2 if r.verdict_status() == 0 => {
                // Valid (or as expected), but down too long.
                s += &format!(
                    "      <failure type=\"downtime\" message=\"{}\">{}</failure>\n",
                    xml(&first),
                    xml(&why)
                )
            }
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

    // The same check `tests/suite_downtime.rs` makes of a real suite's XML.
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/xml.rs"));

    #[test]
    fn a_run_over_its_down_time_bound_fails_in_junit_and_the_table() {
        let mut figures = crate::nightly::figures::test_figures("s-slow");
        figures.downtime = vec![crate::nightly::figures::FaultDowntime {
            fault: "partition".into(),
            windows: 2,
            worst_ms: Some(812.0),
            worst_elections: Some(812.0 / 300.0),
            never_resumed: 0,
        }];
        let run = |name: &str, exit: u8, breach: Option<&str>| RunResult {
            name: name.into(),
            args: vec![],
            expect: Expect::Valid,
            exit,
            wall_seconds: 1.0,
            log: format!("{name}.log").into(),
            figures: Some(figures.clone()),
            error: None,
            expect_downtime: Some(DowntimeBound {
                ms: Some(500.0),
                elections: None,
            }),
            downtime_breach: breach.map(str::to_string),
        };
        let why = "down-time over the bound of 500 ms: <odd & \"name\"> at 3.000 s: down 812.0 ms";
        let mut unknown = run("s-unknown-slow", 2, Some(why));
        if let Some(f) = unknown.figures.as_mut() {
            f.verdict = "unknown".into();
            f.explanation = Some("key k1 undecided".into());
        }
        let results = vec![
            run("s-slow", 0, Some(why)),
            run("s-fast", 0, None),
            unknown,
            run("s-broken-slow", 3, Some(why)),
        ];
        assert_eq!(results[0].status(), 1);
        assert_eq!(results[1].status(), 0);
        assert_eq!(
            results[2].status(),
            1,
            "over the bound is worse than unknown"
        );
        assert_eq!(results[3].status(), 3, "an error stays an error");
        assert_eq!(worst(results.iter().map(RunResult::status)), 3);
        let x = junit("s", &results, 2.0);
        well_formed(&x).unwrap_or_else(|e| panic!("{e}:\n{x}"));
        assert!(x.contains("tests=\"4\" failures=\"2\" errors=\"1\""), "{x}");
        assert!(
            x.contains(
                "<failure type=\"downtime\" message=\"down-time over the bound of 500 ms: \
                 &lt;odd &amp; &quot;name&quot;&gt; at 3.000 s: down 812.0 ms\">"
            ),
            "{x}"
        );
        // Unknown and over: both reasons, the verdict's first.
        assert!(
            x.contains(
                "<failure type=\"unknown\" message=\"unknown: key k1 undecided\">key k1 \
                 undecided\ndown-time over the bound"
            ),
            "{x}"
        );
        assert!(
            x.contains("<property name=\"worst_downtime_ms\" value=\"812.000\"/>"),
            "{x}"
        );
        assert!(
            x.contains("<property name=\"worst_downtime_elections\" value=\"2.707\"/>"),
            "{x}"
        );
        let t = table(&results);
        let row = |name: &str| t.lines().find(|l| l.starts_with(name)).unwrap().to_string();
        assert!(row("s-slow ").contains("812 ms (2.71 et) *"), "{t}");
        assert!(
            row("s-fast").contains("812 ms (2.71 et)") && !row("s-fast").contains('*'),
            "{t}"
        );
        assert!(
            t.contains("(*: down-time over the suite's bound; these runs fail)"),
            "{t}"
        );
        assert!(t.contains(&format!("  s-slow: {why}")), "{t}");
        assert!(
            t.contains("down-time by fault (worst window; et: election timeouts):"),
            "{t}"
        );
        assert!(
            t.contains("  s-fast: partition 812 ms (2.71 et) over 2 windows"),
            "{t}"
        );
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
        let _ = std::fs::remove_dir_all(&dir);
        let run = crate::artifacts::fixtures::run_section(10, 4.0, Some(25));
        crate::artifacts::fixtures::judged_run(
            &dir,
            "s",
            crate::artifacts::fixtures::INVALID,
            &run,
        );
        let figures = figures::read_run(&dir).unwrap();
        assert_eq!(figures.verdict, "invalid");
        assert_eq!(figures.throughput, Some(2.5));
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
                expect_downtime: None,
                downtime_breach: None,
            },
            RunResult {
                name: "s-broken".into(),
                args: vec![],
                expect: Expect::Valid,
                exit: 3,
                wall_seconds: 1.0,
                log: "s-broken.log".into(),
                figures: None,
                error: Some("the run failed: no <synod-node>".into()),
                expect_downtime: None,
                downtime_breach: None,
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
                expect_downtime: None,
                downtime_breach: None,
            },
        ];
        let xml = junit("s", &results, 2.0);
        well_formed(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" errors=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("message=\"invalid: key &quot;k1&quot; is not linearizable\""),
            "{xml}"
        );
        assert!(
            xml.contains("<error type=\"error\" message=\"the run failed: no &lt;synod-node&gt;\""),
            "{xml}"
        );
        assert!(
            xml.contains("<property name=\"peer_messages_per_op\" value=\"2.500\"/>"),
            "{xml}"
        );
        assert_eq!(xml.matches("peer_messages_per_op").count(), 1, "{xml}");
        let t = table(&results);
        assert!(t.contains("s-broken  error"), "{t}");
        // An error says why in the table, not only in summary.json.
        assert!(
            t.contains(
                "runs that could not be judged:\n  s-broken: the run failed: no <synod-node>\n"
            ),
            "{t}"
        );
        assert!(t.lines().next().unwrap().ends_with("peer msgs/op"), "{t}");
        let row = |name: &str| t.lines().find(|l| l.starts_with(name)).unwrap().to_string();
        assert!(row("s-bad").trim_end().ends_with("2.50"), "{t}");
        // Not available is said, not shown as 0.
        assert!(row("s-etcd").trim_end().ends_with("n/a"), "{t}");
        std::fs::remove_dir_all(dir.parent().unwrap().parent().unwrap()).ok();
    }

    /// A run that died (a panic exits 101) is an error like exit 3 and is
    /// listed with its reason; a judged run is not.
    #[test]
    fn a_run_that_died_is_listed_with_its_reason() {
        let run = |name: &str, exit: u8, error: Option<&str>| RunResult {
            name: name.into(),
            args: vec![],
            expect: Expect::Valid,
            exit,
            wall_seconds: 0.1,
            log: format!("{name}.log").into(),
            figures: None,
            error: error.map(String::from),
            expect_downtime: None,
            downtime_breach: None,
        };
        let t = table(&[
            run(
                "s-died",
                101,
                Some("the run failed (exit 101) without saying why"),
            ),
            run("s-unknown", 2, None),
        ]);
        assert!(
            t.contains("runs that could not be judged:\n  s-died: the run failed (exit 101)"),
            "{t}"
        );
        assert!(!t.contains("  s-unknown:"), "{t}");
    }
}
