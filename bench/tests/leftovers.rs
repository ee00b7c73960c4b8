//! What a bench leaves on the machine and what it publishes (issue 13):
//! the local backend's nodes get a random token through their
//! environment (not `synod-{seed}`, not on the command line, in no file
//! of the run directory) and carry their bench's owner mark; and `synod
//! clean` kills a node process whose bench is dead, leaves alone one
//! whose bench runs, and finds nothing the second time.
//!
//! The docker half of `synod clean` (containers, networks, volumes,
//! chains after a SIGKILL) is in `docker_e2e.rs`, which owns the engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use synod_nemesis::leftovers::{ProcessId, OWNER_ENV};

fn synod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_synod"))
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("synod-leftovers-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn environ(pid: u32) -> Vec<(String, String)> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter_map(|v| {
            let v = String::from_utf8_lossy(v);
            let (k, val) = v.split_once('=')?;
            Some((k.to_string(), val.to_string()))
        })
        .collect()
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            files_under(&e.path(), out);
        } else if ty.is_file() {
            out.push(e.path());
        }
    }
}

/// Starts a local run, reads its nodes' environment and command line,
/// lets it finish; the tokens seen and the run directory.
fn local_run(store: &Path) -> (String, PathBuf) {
    let mut child = synod()
        .args([
            "run",
            "--nemesis",
            "none",
            "--time-limit",
            "3",
            "--recovery",
            "0",
        ])
        .args(["--seed", "7", "--store"])
        .arg(store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let owner = ProcessId::of(child.id()).expect("the bench runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let nodes = loop {
        let nodes: Vec<u32> = children_of(child.id())
            .into_iter()
            .filter(|&p| environ(p).iter().any(|(k, _)| k == "SYNOD_TOKEN"))
            .collect();
        if nodes.len() == 3 {
            break nodes;
        }
        assert!(Instant::now() < deadline, "the nodes never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut token = String::new();
    for pid in nodes {
        let env = environ(pid);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get(OWNER_ENV),
            Some(owner.mark()),
            "node {pid}'s owner mark"
        );
        token = get("SYNOD_TOKEN").unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !cmdline.contains(&token) && !cmdline.contains("--token"),
            "the token is on the command line: {cmdline}"
        );
    }
    assert!(child.wait().unwrap().success());
    let run = std::fs::read_link(store.join("latest")).unwrap();
    (token, store.join(run))
}

#[test]
fn local_nodes_get_a_random_token_that_no_run_file_holds() {
    let store = temp("token");
    let (first, run) = local_run(&store);
    assert_eq!(first.len(), 32, "{first}");
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
    assert_ne!(first, "synod-7");
    let mut files = Vec::new();
    files_under(&run, &mut files);
    assert!(files.iter().any(|f| f.ends_with("config.json")));
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&first),
            "{} holds the cluster token",
            f.display()
        );
    }
    // The same seed, another token.
    let (second, _) = local_run(&store);
    assert_ne!(first, second, "two runs of seed 7 share a token");
    let _ = std::fs::remove_dir_all(&store);
}

fn sleeper(owner: &str) -> std::process::Child {
    Command::new("sleep")
        .arg("600")
        .env(OWNER_ENV, owner)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn clean_kills_the_processes_of_a_dead_bench_only() {
    let me = ProcessId::this().unwrap();
    // Our pid with another start time: a bench that died (its pid reused
    // by us, which must not save its leftovers).
    let dead = ProcessId {
        start: me.start + 1,
        ..me
    };
    let mut orphan = sleeper(&dead.mark());
    let mut kept = sleeper(&me.mark());
    let out = synod().arg("clean").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("removed process sleep (pid {})", orphan.id())),
        "{text}"
    );
    assert!(
        text.contains(&format!("kept process sleep (pid {})", kept.id())),
        "{text}"
    );
    let status = orphan.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert!(
        kept.try_wait().unwrap().is_none(),
        "a live bench's node was killed"
    );
    let again = synod().arg("clean").output().unwrap();
    let again = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(
        !again.contains(&format!("pid {})", orphan.id())) && again.contains("nothing to clean"),
        "{again}"
    );
    let _ = kept.kill();
    let _ = kept.wait();
}
