//! Headless Chromium for the tests that check a page renders: Debian's
//! `/usr/bin/chromium`, or SKIPPED (the browser part only) without it.

#![allow(dead_code)] // each test crate uses part of it

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

fn run(what: &[String], profile: &Path) -> Option<(String, String)> {
    let bin = Path::new("/usr/bin/chromium");
    if !bin.exists() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (browser part): /usr/bin/chromium is not installed"
        );
        return None;
    }
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(what)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    Some((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Loads `url` and screenshots it into `png`; returns Chromium's log so
/// the caller can look for script errors (`Uncaught`).
pub fn screenshot(url: &str, png: &Path, profile: &Path) -> Option<String> {
    let (out, err) = run(
        &[format!("--screenshot={}", png.display()), url.to_string()],
        profile,
    )?;
    Some(out + &err)
}

/// Loads `url` and returns the DOM after its scripts ran, and the log.
pub fn dom(url: &str, profile: &Path) -> Option<(String, String)> {
    run(&["--dump-dom".to_string(), url.to_string()], profile)
}
