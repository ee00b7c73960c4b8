//! `synod clean`: removes what a bench killed outright (SIGKILL) left
//! behind: its containers, networks and volumes, the `SYNOD` iptables
//! chains in those containers, and node processes. It finds them by the
//! owner marks every backend puts on what it starts (docker labels, an
//! environment variable in each process; see `synod_nemesis::leftovers`),
//! never by a match on names, and removes only what belongs to a bench
//! that is no longer running. It prints each thing it removed; a second
//! run finds nothing.

use std::process::ExitCode;

use crate::EXIT_ERROR;

/// Arguments of `synod clean` (none yet: the marks say it all).
#[derive(clap::Args, Debug)]
pub struct CleanArgs {}

/// Runs `synod clean`: 0 when every leftover is gone, 3 if any could not
/// be removed.
pub fn run(_args: CleanArgs) -> anyhow::Result<ExitCode> {
    let report = synod_nemesis::leftovers::clean();
    for line in &report.removed {
        println!("removed {line}");
    }
    for line in &report.kept {
        println!("kept {line}");
    }
    for line in &report.problems {
        eprintln!("synod clean: {line}");
    }
    if report.removed.is_empty() {
        println!("nothing to clean");
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    })
}
