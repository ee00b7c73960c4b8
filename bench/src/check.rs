//! `synod check`: judge a history (placeholder until the checker lands).

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `synod check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The history to check.
    pub history: PathBuf,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("synod check is not built yet ({})", args.history.display())
}
