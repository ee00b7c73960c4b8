//! What a bench killed outright (SIGKILL) leaves behind, and its removal
//! (`synod clean`).
//!
//! A bench tears its cluster down on every path it lives through; a
//! SIGKILL is the one it cannot. So every cluster is marked with its
//! *owner*, the bench process, named by pid and start time (from
//! `/proc/PID/stat`, so a pid reused by another process is never taken
//! for it):
//!
//! - **docker**: the label [`OWNER_LABEL`] `=PID:START` (and [`RUN_LABEL`],
//!   the run directory) on every container, network and volume of the
//!   compose project (`docker-compose.yml` takes them from variables the
//!   backend sets; a cluster started by hand has them empty);
//! - **local**: the environment variable [`OWNER_ENV`] `=PID:START` in
//!   every node process (and every etcd member).
//!
//! [`clean`] finds those marks, and only those (never a match on a
//! name), and removes what belongs to an owner that is no longer alive:
//! containers (unpaused first, the [`crate::docker::CHAIN`] chain deleted
//! from their network namespace), then networks and volumes, then node
//! processes (SIGKILL). What a live bench owns is left alone and listed
//! as such. Running it twice removes nothing the second time.

use std::path::Path;
use std::process::{Command, Stdio};

/// The docker label naming the bench that owns a container, network or
/// volume.
pub const OWNER_LABEL: &str = "io.synod.owner";
/// The docker label naming the run directory of the owner's run.
pub const RUN_LABEL: &str = "io.synod.run";
/// The environment variable naming the bench that owns a node process.
pub const OWNER_ENV: &str = "SYNOD_BENCH_OWNER";

/// A process, told apart from any later one that gets the same pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start: u64,
}

impl ProcessId {
    /// The process `pid` as it is now; `None` if there is none (or it is
    /// a zombie).
    pub fn of(pid: u32) -> Option<ProcessId> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may hold anything; the
        // fields after its last `)` start with the state (field 3).
        let (_, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if matches!(fields.first(), Some(&"Z") | Some(&"X") | None) {
            return None;
        }
        let start = fields.get(19)?.parse().ok()?;
        Some(ProcessId { pid, start })
    }

    /// This process.
    pub fn this() -> Option<ProcessId> {
        ProcessId::of(std::process::id())
    }

    pub fn is_alive(&self) -> bool {
        ProcessId::of(self.pid) == Some(*self)
    }

    /// `PID:START`, the form labels and the environment carry.
    pub fn mark(&self) -> String {
        format!("{}:{}", self.pid, self.start)
    }

    pub fn parse_mark(s: &str) -> Option<ProcessId> {
        let (pid, start) = s.trim().split_once(':')?;
        Some(ProcessId {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }
}

/// The mark of this process, as owner of what it starts; `"unknown"` if
/// `/proc` cannot say (then nothing it starts is ever cleaned as a
/// leftover, which is the safe way round).
pub fn owner_mark() -> String {
    ProcessId::this().map_or_else(|| "unknown".to_string(), |p| p.mark())
}

/// What a mark says about the thing that carries it.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    /// A bench that still runs: keep it.
    Alive,
    /// A bench that is gone: a leftover.
    Dead,
    /// No bench's (empty: a cluster started by hand), or unreadable:
    /// never touched.
    Unmarked,
}

fn owner_of(mark: &str) -> Owner {
    match ProcessId::parse_mark(mark) {
        None => Owner::Unmarked,
        Some(p) if p.is_alive() => Owner::Alive,
        Some(_) => Owner::Dead,
    }
}

/// What [`clean`] did.
#[derive(Debug, Default)]
pub struct CleanReport {
    /// One line per thing removed, e.g. `container synod-1a2b_n1_1`.
    pub removed: Vec<String>,
    /// Marked things left alone because their owner still runs.
    pub kept: Vec<String>,
    /// What could not be looked at or removed, and why.
    pub problems: Vec<String>,
}

/// Removes every leftover of a dead bench: docker objects by label, node
/// processes by their environment.
pub fn clean() -> CleanReport {
    let mut report = CleanReport::default();
    clean_docker(&mut report);
    clean_processes(&mut report);
    report
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `docker KIND ls` of everything carrying the owner label, as
/// `(id, name, owner mark)`.
fn labelled(kind: &str) -> Result<Vec<(String, String, String)>, String> {
    let filter = format!("label={OWNER_LABEL}");
    let format = format!("{{{{.ID}}}}\t{{{{.Names}}}}\t{{{{.Label \"{OWNER_LABEL}\"}}}}");
    let format = match kind {
        "container" => format,
        // Networks and volumes are listed by name; volumes have no id.
        "network" => format.replace(".Names", ".Name"),
        _ => format!("{{{{.Name}}}}\t{{{{.Name}}}}\t{{{{.Label \"{OWNER_LABEL}\"}}}}"),
    };
    let list = if kind == "container" {
        run(&[
            "docker", "ps", "-a", "--filter", &filter, "--format", &format,
        ])?
    } else {
        run(&[
            "docker", kind, "ls", "--filter", &filter, "--format", &format,
        ])?
    };
    Ok(list
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((
                f.next()?.to_string(),
                f.next()?.to_string(),
                f.next()?.to_string(),
            ))
        })
        .collect())
}

fn clean_docker(report: &mut CleanReport) {
    if !crate::docker::engine_available() {
        return;
    }
    // Containers first: a network or volume in use cannot go.
    for kind in ["container", "network", "volume"] {
        let list = match labelled(kind) {
            Ok(list) => list,
            Err(e) => {
                report.problems.push(e);
                continue;
            }
        };
        for (id, name, owner) in list {
            let state = owner_of(&owner);
            if state == Owner::Alive {
                report
                    .kept
                    .push(format!("{kind} {name}: its bench ({owner}) still runs"));
            }
            if state != Owner::Dead {
                continue;
            }
            if kind == "container" {
                remove_container(report, &id, &name);
            } else {
                match run(&["docker", kind, "rm", &id]) {
                    Ok(_) => report.removed.push(format!("{kind} {name}")),
                    Err(e) => report.problems.push(e),
                }
            }
        }
    }
}

fn remove_container(report: &mut CleanReport, id: &str, name: &str) {
    let state = run(&[
        "docker",
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Pid}}",
        id,
    ])
    .unwrap_or_default();
    let mut parts = state.split_whitespace();
    let status = parts.next().unwrap_or("");
    let pid: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if status == "paused" {
        if let Err(e) = run(&["docker", "unpause", id]) {
            report.problems.push(e);
        }
    }
    // The chain dies with the namespace, but say so and leave nothing to
    // chance: a container that will not go keeps no rule either.
    if pid > 0 && crate::docker::chain_exists(pid) {
        match crate::docker::remove_chain(pid) {
            Ok(()) => report.removed.push(format!(
                "iptables chain {} in container {name}",
                crate::docker::CHAIN
            )),
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    match run(&["docker", "rm", "--force", "--volumes", id]) {
        Ok(_) => report.removed.push(format!("container {name}")),
        Err(e) => report.problems.push(e),
    }
}

/// The owner mark in a process's environment, if it has one we can read.
fn process_owner(pid: u32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let key = format!("{OWNER_ENV}=");
    env.split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(key.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn clean_processes(report: &mut CleanReport) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        report.problems.push("cannot list /proc".into());
        return;
    };
    let me = std::process::id();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Some(owner) = process_owner(pid) else {
            continue;
        };
        // Taken before the owner check, so the pid we signal is the
        // process whose environment we read.
        let Some(target) = ProcessId::of(pid) else {
            continue;
        };
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|p| {
                Path::new(&p)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "?".into());
        match owner_of(&owner) {
            Owner::Dead => {}
            Owner::Alive => {
                report.kept.push(format!(
                    "process {exe} (pid {pid}): its bench ({owner}) still runs"
                ));
                continue;
            }
            Owner::Unmarked => continue,
        }
        if !target.is_alive() {
            continue;
        }
        // SAFETY: kill(2) on a pid whose identity (start time) we checked
        // just above; SIGCONT first so a paused node dies too.
        let rc = unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGCONT);
            libc::kill(pid as libc::pid_t, libc::SIGKILL)
        };
        if rc == 0 {
            report.removed.push(format!("process {exe} (pid {pid})"));
        } else {
            report.problems.push(format!(
                "cannot kill process {exe} (pid {pid}): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_known_by_pid_and_start_time() {
        let me = ProcessId::this().expect("/proc/self/stat");
        assert!(me.is_alive());
        assert_eq!(ProcessId::parse_mark(&me.mark()), Some(me));
        let reused = ProcessId {
            start: me.start + 1,
            ..me
        };
        assert!(!reused.is_alive(), "same pid, other start: another process");
        assert_eq!(owner_of(&me.mark()), Owner::Alive);
        assert_eq!(owner_of(&reused.mark()), Owner::Dead);
        assert_eq!(owner_of(""), Owner::Unmarked, "a cluster started by hand");
        assert_eq!(owner_of("garbage"), Owner::Unmarked);
    }
}
