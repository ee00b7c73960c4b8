//! `synod export`: writes a run's history in another tool's format, so
//! the tools users already trust can cross-check Synod's verdict. Today
//! one format, Jepsen's `history.edn` (`synod_checker::export` has the
//! mapping); `synod check` reads the export back with Jepsen's meaning.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use synod_checker::export::write_jepsen_edn;
use synod_checker::history::HistoryError;
use synod_checker::History;

/// The formats `synod export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Jepsen's history.edn: one op map per line in a vector, keys as
    /// jepsen.independent tuples, faults as :nemesis :info ops.
    JepsenEdn,
}

/// Arguments of `synod export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A run directory (its history.jsonl is read) or a history file in
    /// Synod's JSON Lines.
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// The format to write.
    #[arg(long, value_enum, default_value = "jepsen-edn")]
    pub format: ExportFormat,
    /// Where to write (default: history.edn in the run directory, or next
    /// to the history file); `-` is stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `synod export`: 0 when written, 3 when the input is not a history
/// or the output cannot be written.
pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let input = if args.run.is_dir() {
        args.run.join("history.jsonl")
    } else {
        args.run.clone()
    };
    let history = History::read_path(&input).map_err(|e| match e {
        // Already names the file.
        HistoryError::Io { .. } => anyhow::anyhow!("cannot read the history to export: {e}"),
        e => anyhow::anyhow!(
            "cannot read the history to export: {}: {e}",
            input.display()
        ),
    })?;
    let ExportFormat::JepsenEdn = args.format;
    let stats = match args.output.as_deref() {
        Some(p) if p.as_os_str() == "-" => {
            write_jepsen_edn(&history, std::io::stdout().lock()).context("writing to stdout")?
        }
        output => {
            let path = output.map(PathBuf::from).unwrap_or_else(|| {
                input
                    .parent()
                    .map_or_else(|| PathBuf::from("history.edn"), |d| d.join("history.edn"))
            });
            let file = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let stats = write_jepsen_edn(&history, std::io::BufWriter::new(file))
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "synod export: {} client and {} nemesis events to {}",
                stats.client_events,
                stats.nemesis_events,
                path.display()
            );
            stats
        }
    };
    if stats.null_reads + stats.mismatch_fails > 0 {
        eprintln!(
            "synod export: Jepsen reads {} null read(s) as matching any state and {} cas \
             mismatch(es) as plain fails (did not happen); a verdict that rests on them alone \
             can differ there (docs/checker.md, \"Exporting to Jepsen\")",
            stats.null_reads, stats.mismatch_fails
        );
    }
    Ok(ExitCode::SUCCESS)
}
