//! Helpers every group of the end-to-end runs shares: where the binaries
//! are, a fresh store, the processes left behind, the history of a run,
//! real-node runs, the export cross-check and the power-loss checks.

// SKIPPED lines go straight to stderr, which the test harness does not
// capture, so a skip shows in `cargo test`'s output.
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn synod_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_synod"))
}

pub fn fake_node() -> Option<PathBuf> {
    let p = synod_bin().parent()?.join("examples").join("fake_node");
    if p.is_file() {
        Some(p)
    } else {
        // A build step missing is not a facility the machine lacks: fail.
        panic!(
            "the fake node is not built at {} (run `cargo test -p synod-bench` without a --test filter)",
            p.display()
        )
    }
}

pub fn real_node() -> Option<PathBuf> {
    let p = synod_bin().parent()?.join("synod-node");
    if p.is_file() {
        Some(p)
    } else {
        panic!(
            "synod-node is not built at {} (cargo build --release --workspace, or run the tests with --workspace)",
            p.display()
        )
    }
}

pub fn store(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synod-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Processes (not zombies) whose command line mentions `needle`, with
/// their state letter from /proc (`T` = stopped).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, char)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(needle) {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim().chars().next())
            .unwrap_or('?');
        if state != 'Z' {
            found.push((pid, state));
        }
    }
    found
}

pub fn history(run: &Path) -> String {
    std::fs::read_to_string(run.join("history.jsonl")).unwrap_or_default()
}

/// `synod export` of the run, then `synod check` of the export (read with
/// Jepsen's meaning), gives the verdict `synod check` gives the run's own
/// history; the export is one EDN vector of op maps with the documented
/// keys, keys as `[key value]` tuples. Returns the verdict's exit status.
pub fn exported_verdict_matches(run: &Path) -> i32 {
    let edn = run.join("history.edn");
    let out = Command::new(synod_bin())
        .args(["export", "--format", "jepsen-edn"])
        .arg(run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&edn).unwrap();
    let forms = synod_checker::edn::parse_all(&text).expect("the export parses as EDN");
    let [(_, synod_checker::edn::Edn::Vector(ops))] = &forms[..] else {
        panic!("the export is not one vector");
    };
    assert!(!ops.is_empty());
    for op in ops {
        for field in ["type", "f", "value", "process", "time", "index"] {
            assert!(op.get(field).is_some(), "an op lacks :{field}: {op}");
        }
        if op
            .get("process")
            .is_some_and(|p| p.to_string() != ":nemesis")
        {
            assert!(
                matches!(op.get("value"), Some(synod_checker::edn::Edn::Vector(t)) if t.len() == 2),
                "a client op's value is not a [key value] tuple: {op}"
            );
        }
    }
    let check = |path: &Path| {
        let out = Command::new(synod_bin())
            .arg("check")
            .arg(path)
            .arg("--out")
            .arg(run.join(format!(
                "check-{}",
                path.extension().unwrap().to_string_lossy()
            )))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code().unwrap_or(-1), stdout)
    };
    let (own, own_out) = check(&run.join("history.jsonl"));
    let (exported, exported_out) = check(&edn);
    assert_eq!(exported, own, "own: {own_out}\nexported: {exported_out}");
    own
}

/// Runs the real node with `extra` flags and returns the exit status and
/// stdout; `None` (skipped) if the node is not built.
pub fn real_run(tag: &str, extra: &[&str]) -> Option<(Option<i32>, String)> {
    let (code, out, s) = real_run_kept(tag, extra)?;
    std::fs::remove_dir_all(&s).ok();
    Some((code, out))
}

/// Like [`real_run`], but keeps the store (returned last) for the test to
/// read the run directory, `STORE/latest`, and remove it.
pub fn real_run_kept(tag: &str, extra: &[&str]) -> Option<(Option<i32>, String, PathBuf)> {
    let node = real_node()?;
    let s = store(tag);
    let out = Command::new(synod_bin())
        .args(["run", "--store", s.to_str().unwrap(), "--recovery", "3"])
        .args(extra)
        .env("SYNOD_NODE_BIN", &node)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        processes_mentioning(s.to_str().unwrap()).is_empty(),
        "nodes left behind"
    );
    Some((out.status.code(), stdout + &stderr, s))
}

/// Whether this machine can mount the lose-unsynced-writes filesystem,
/// which power losses on the local backend go through; says SKIPPED if not.
pub fn fuse_or_skip() -> bool {
    match synod_lazyfs::available() {
        Ok(()) => true,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED: {e}");
            false
        }
    }
}

/// The `start-power-loss` events of a history; each must say the power
/// was cut through the filesystem (SIGKILL, unsynced writes dropped), not
/// through the node's admin crash.
pub fn power_losses_through_the_filesystem(history: &str) -> usize {
    let starts: Vec<&str> = history
        .lines()
        .filter(|l| l.contains("\"f\":\"start-power-loss\""))
        .collect();
    for l in &starts {
        assert!(
            l.contains("\"via\":\"filesystem\""),
            "not through the filesystem: {l}"
        );
    }
    starts.len()
}
