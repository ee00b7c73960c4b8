//! The progress bar of a run: elapsed time, the op counts and the faults
//! in force, redrawn four times a second on a terminal and hidden
//! elsewhere.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::recorder::Counts;

/// The progress bar's driver; hidden when stderr is not a terminal.
pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

pub fn spawn_progress(
    total_secs: f64,
    counts: Arc<Counts>,
    in_force: watch::Receiver<Vec<String>>,
) -> Progress {
    let bar = ProgressBar::with_draw_target(
        Some((total_secs * 1000.0) as u64),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {eta} left  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let started = std::time::Instant::now();
    let b = bar.clone();
    let task = tokio::spawn(async move {
        loop {
            let c = counts.snapshot();
            let faults = in_force.borrow().clone();
            let faults = if faults.is_empty() {
                "none".to_string()
            } else {
                faults.join(",")
            };
            b.set_position(started.elapsed().as_millis() as u64);
            b.set_message(format!(
                "ok {}  fail {}  info {}  faults: {faults}",
                c.ok, c.fail, c.info
            ));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    Progress { bar, task }
}
