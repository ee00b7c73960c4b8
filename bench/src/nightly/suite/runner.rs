//! One run of a suite: a child `synod run` in a directory the suite
//! chose, bounded by the run's deadline, and what it left there read back
//! as a [`RunResult`].

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::matrix::PlannedRun;
use super::outputs::RunResult;
use crate::nightly::figures;
use crate::EXIT_ERROR;

/// Runs one child `synod run`, bounded by the run's deadline.
pub fn run_one(exe: &Path, store: &Path, out: &Path, r: &PlannedRun) -> RunResult {
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
        expect_downtime: r.downtime_bound,
        downtime_breach: None,
    };
    let (stdout, stderr) = match std::fs::File::create(&log).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(pair) => pair,
        Err(e) => return fail(format!("cannot create {}: {e}", log.display()), started),
    };
    // The suite names the run's directory, so it never has to find it.
    let dir = match crate::store::new_run_dir(store, &r.name) {
        Ok(dir) => dir,
        Err(e) => return fail(format!("{e:#}"), started),
    };
    let child = Command::new(exe)
        .arg("run")
        .arg("--store")
        .arg(store)
        .arg("--name")
        .arg(&r.name)
        .arg("--run-dir")
        .arg(&dir)
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
    let figures = figures::read_run(&dir);
    let error = if timed_out {
        Some(format!(
            "the run took longer than {:.0} s and was stopped; see {}",
            r.deadline.as_secs_f64(),
            log.display()
        ))
    } else if !matches!(exit, 0..=2) {
        // The runner leaves the reason in its results.json (see
        // `run::run_async`); without one it died before it could (a
        // panic exits 101).
        Some(
            figures
                .as_ref()
                .ok()
                .and_then(|f| f.explanation.clone())
                .unwrap_or_else(|| {
                    format!(
                        "the run failed (exit {exit}) without saying why; see {}",
                        log.display()
                    )
                }),
        )
    } else {
        None
    };
    // A run that was judged is held to the down-time bound; one that was
    // not is an error already.
    let downtime_breach = match (&r.downtime_bound, &figures) {
        (Some(bound), Ok(f)) if f.verdict != "error" => bound.breach(f),
        _ => None,
    };
    RunResult {
        name: r.name.clone(),
        args: r.args.clone(),
        expect: r.expect,
        exit,
        wall_seconds: started.elapsed().as_secs_f64(),
        log,
        figures: figures.ok(),
        error,
        expect_downtime: r.downtime_bound,
        downtime_breach,
    }
}
