//! The docker backend against the real engine: containers from
//! `docker-compose.yml`, partitions as iptables rules in their namespaces.
//!
//! One test function runs every scenario in sequence, one of them two
//! runs at once (each on a subnet of its own, every object labelled with
//! its run). Without a Docker engine (`docker info` fails) it prints
//! `SKIPPED: no docker engine` and passes. The image is built by the
//! backend if missing.

// SKIPPED lines go straight to stderr, which the test harness does not
// capture, so a skip shows in `cargo test`'s output.
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_nemesis::docker::{self, DockerBackend, DockerConfig, CHAIN, PROJECT_PREFIX, RUN_LABEL};
use synod_nemesis::{Backend, Link, LinkFault, NodeName};

fn synod_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_synod"))
}

fn store(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synod-docker-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sh(cmd: &mut Command) -> (bool, String) {
    let out = match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) => return (false, format!("cannot run {cmd:?}: {e}")),
    };
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Containers, networks and volumes of any `synod-` compose project, and
/// whether the host itself has a SYNOD chain.
fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    for (what, args) in [
        ("container", vec!["ps", "-a", "--format", "{{.Names}}"]),
        ("network", vec!["network", "ls", "--format", "{{.Name}}"]),
        ("volume", vec!["volume", "ls", "--format", "{{.Name}}"]),
    ] {
        let (_, out) = sh(Command::new("docker").args(&args));
        for name in out.lines().filter(|n| n.starts_with(PROJECT_PREFIX)) {
            found.push(format!("{what} {name}"));
        }
        // Whatever its name, nothing may keep a run's label.
        let (_, out) = sh(Command::new("docker")
            .args(&args)
            .args(["--filter", &format!("label={RUN_LABEL}")]));
        for name in out.lines().filter(|n| !n.starts_with(PROJECT_PREFIX)) {
            found.push(format!("{what} {name} (labelled {RUN_LABEL})"));
        }
    }
    let (host_chain, _) = sh(Command::new("iptables").args(["-S", CHAIN]));
    if host_chain {
        found.push("a SYNOD chain on the host".into());
    }
    found
}

/// `synod-healthcheck URL` from inside `pid`'s network namespace: the
/// static binary copied out of the image, run by the host.
fn probe_from(pid: u32, helper: &Path, url: &str) -> bool {
    sh(Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "--"])
        .arg(helper)
        .arg(url))
    .0
}

/// (a) A partition is real: n1's namespace cannot reach n2 while it
/// holds, and can once healed; the chain is gone after healing.
async fn partition_is_real(dir: &Path) {
    let backend = Arc::new(
        DockerBackend::new(DockerConfig {
            nodes: 3,
            dir: dir.to_path_buf(),
            token: "docker-e2e-token-0123456789".into(),
            node_args: vec![],
            workspace: None,
            image: docker::DEFAULT_IMAGE.into(),
            project: None,
            ready_timeout: Duration::from_secs(30),
            disk: synod_nemesis::Disk::Plain,
        })
        .expect("docker backend"),
    );
    let (b, dir) = (backend.clone(), dir.to_path_buf());
    let result = async move {
        let backend = b;
        backend.start().await.expect("cluster up");
        let (n1, n2, n3) = (NodeName(1), NodeName(2), NodeName(3));
        let helper = dir.join("synod-healthcheck");
        let cid = backend.container_id(n1).unwrap();
        let (ok, out) = sh(Command::new("docker")
            .args(["cp", &format!("{cid}:/synod-healthcheck")])
            .arg(&helper));
        assert!(ok, "docker cp: {out}");
        let pid = backend.pid(n1).expect("n1 runs");
        let peer = format!("{}/health", backend.url(n2).unwrap());
        assert!(probe_from(pid, &helper, &peer), "n1 reaches n2 before");
        let cut = LinkFault {
            blackhole: true,
            ..LinkFault::default()
        };
        for other in [n2, n3] {
            backend
                .set_link(
                    Link {
                        from: n1,
                        to: other,
                    },
                    cut,
                )
                .unwrap();
            backend
                .set_link(
                    Link {
                        from: other,
                        to: n1,
                    },
                    cut,
                )
                .unwrap();
        }
        assert!(
            backend
                .chain(n1)
                .unwrap()
                .is_some_and(|c| c.contains("DROP")),
            "n1 has a SYNOD chain with DROP rules"
        );
        assert!(
            !probe_from(pid, &helper, &peer),
            "n1 reaches n2 while isolated"
        );
        for other in [n2, n3] {
            backend
                .set_link(
                    Link {
                        from: n1,
                        to: other,
                    },
                    LinkFault::default(),
                )
                .unwrap();
            backend
                .set_link(
                    Link {
                        from: other,
                        to: n1,
                    },
                    LinkFault::default(),
                )
                .unwrap();
        }
        assert!(
            backend.chain(n1).unwrap().is_none(),
            "healing deletes the chain"
        );
        assert!(
            probe_from(pid, &helper, &peer),
            "n1 reaches n2 after healing"
        );
        // Packet loss with the statistic match: at probability 1 nothing
        // gets through, at 0 the rules are gone again.
        let link = Link { from: n1, to: n2 };
        backend.set_loss(link, 1.0).unwrap();
        assert!(backend
            .chain(n1)
            .unwrap()
            .is_some_and(|c| c.contains("statistic")));
        assert!(
            !probe_from(pid, &helper, &peer),
            "n1 reaches n2 under total loss"
        );
        backend.set_loss(link, 0.0).unwrap();
        assert!(backend.chain(n1).unwrap().is_none(), "no loss, no chain");
        assert!(
            probe_from(pid, &helper, &peer),
            "n1 reaches n2 after the loss"
        );
    };
    // Teardown even if an assertion fails.
    let r = tokio::spawn(result).await;
    backend.teardown().await;
    if let Err(e) = r {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// What one docker run left: exit status, output, `docker.json`, history.
struct DockerRun {
    code: Option<i32>,
    out: String,
    record: serde_json::Value,
    history: String,
}

/// Several docker runs at once, each with its own `extra` flags.
fn docker_runs_at_once(runs: &[(&str, &[&str])]) -> Vec<DockerRun> {
    let children: Vec<_> = runs
        .iter()
        .map(|(tag, extra)| {
            let s = store(tag);
            let child = Command::new(synod_bin())
                .args(["run", "--backend", "docker", "--store", s.to_str().unwrap()])
                .args(*extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (s, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(s, child)| {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(!text.contains("panicked"), "{text}");
            let record = std::fs::read_to_string(s.join("latest/docker.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let history =
                std::fs::read_to_string(s.join("latest/history.jsonl")).unwrap_or_default();
            let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
            assert!(
                !mounts.contains(s.to_str().unwrap()),
                "a data directory is still mounted"
            );
            std::fs::remove_dir_all(&s).ok();
            DockerRun {
                code: out.status.code(),
                out: text,
                record,
                history,
            }
        })
        .collect()
}

fn docker_run(tag: &str, extra: &[&str]) -> (Option<i32>, String) {
    let (code, out, _) = docker_run_history(tag, extra);
    (code, out)
}

/// Like [`docker_run`], with the run's history.
fn docker_run_history(tag: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let s = store(tag);
    let out = Command::new(synod_bin())
        .args(["run", "--backend", "docker", "--store", s.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "{text}");
    let history = std::fs::read_to_string(s.join("latest/history.jsonl")).unwrap_or_default();
    std::fs::remove_dir_all(&s).ok();
    (out.status.code(), text, history)
}

#[test]
fn docker_backend_end_to_end() {
    if !docker::engine_available() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no docker engine (`docker info` failed)"
        );
        return;
    }
    let started = Instant::now();
    let before = leftovers();
    assert!(before.is_empty(), "leftovers before the test: {before:?}");

    // (a)
    let dir = store("partition");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(partition_is_real(&dir));
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "after the partition test"
    );
    eprintln!("docker: partition test done at {:?}", started.elapsed());

    // (b) Two bounded chaos runs at the same time, each on its own subnet:
    // partitions, pauses and kills in one; power losses (a minority or all) through
    // the lose-unsynced-writes filesystem (bind-mounted into the
    // containers) in the other. Both valid, nothing left after.
    let chaos = |nemesis: &'static str, seed: &'static str| -> Vec<&'static str> {
        vec![
            "--nemesis",
            nemesis,
            "--nemesis-interval",
            "3",
            "--time-limit",
            "20",
            "--recovery",
            "5",
            "--seed",
            seed,
        ]
    };
    let one = chaos("partition,pause,kill", "1");
    let two = chaos("power-loss", "2");
    let results = docker_runs_at_once(&[("valid-1", &one), ("valid-2", &two)]);
    for r in &results {
        assert_eq!(r.code, Some(0), "{}", r.out);
        assert!(r.out.contains("valid"), "{}", r.out);
        let label = r.record["label"].as_str().unwrap_or_default();
        assert!(
            label.starts_with(&format!("{RUN_LABEL}={PROJECT_PREFIX}")),
            "{}",
            r.record
        );
    }
    let subnets: Vec<&str> = results
        .iter()
        .map(|r| {
            r.record["subnet"]
                .as_str()
                .expect("docker.json records the subnet")
        })
        .collect();
    assert_ne!(subnets[0], subnets[1], "two runs on one subnet");
    let losses: Vec<&str> = results[1]
        .history
        .lines()
        .filter(|l| l.contains("\"f\":\"start-power-loss\""))
        .collect();
    assert!(!losses.is_empty(), "no power loss in the second run");
    for l in losses {
        assert!(l.contains("\"via\":\"filesystem\""), "{l}");
    }
    assert_eq!(leftovers(), Vec::<String>::new(), "after two runs at once");
    eprintln!("docker: two runs at once done at {:?}", started.elapsed());

    // (c) Local reads under partitions are caught (a few seeds at most).
    let mut caught = None;
    for seed in ["1", "2", "3"] {
        let (code, out) = docker_run(
            "teeth-local",
            &[
                "--reads",
                "local",
                "--nemesis",
                "partition",
                "--nemesis-interval",
                "1.5",
                "--time-limit",
                "10",
                "--recovery",
                "3",
                "--seed",
                seed,
            ],
        );
        assert!(matches!(code, Some(0..=2)), "{out}");
        if code == Some(1) {
            caught = Some(seed);
            break;
        }
    }
    assert!(
        caught.is_some(),
        "reads=local under partitions never invalid"
    );
    assert_eq!(leftovers(), Vec::<String>::new(), "after the teeth runs");
    eprintln!("docker: teeth run done at {:?}", started.elapsed());

    // (c2) The partial-connectivity shapes in iptables: chained (one
    // leader link cut, the third node reaching both ends) and flap (one
    // leader link cut and healed every 100-500 ms); seed 7 draws chained,
    // flap, chained, flap. Valid, and the history shows both shapes.
    let (code, out, h) = docker_run_history(
        "shapes",
        &[
            "--nemesis",
            "partition:chained,flap",
            "--nemesis-interval",
            "1",
            "--time-limit",
            "8",
            "--recovery",
            "3",
            "--seed",
            "7",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let chained: Vec<&str> = h
        .lines()
        .filter(|l| l.contains("\"f\":\"start-partition\"") && l.contains("\"shape\":\"chained\""))
        .collect();
    assert!(!chained.is_empty(), "no chained partition: {h}");
    for l in chained {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(e["value"]["cut"].as_array().unwrap().len(), 1, "{l}");
    }
    assert!(h.contains("\"f\":\"start-flap\""), "no flap");
    assert!(h.contains("\"f\":\"change-flap\""), "the flap never moved");
    assert!(h.contains("\"f\":\"stop-flap\""), "the flap never healed");
    assert_eq!(leftovers(), Vec::<String>::new(), "after the shapes run");
    eprintln!("docker: shapes run done at {:?}", started.elapsed());

    // (d) A run stopped with SIGTERM in the middle leaves nothing behind.
    let s = store("sigterm");
    let child = Command::new(synod_bin())
        .args(["run", "--backend", "docker", "--store", s.to_str().unwrap()])
        .args(["--nemesis", "partition,pause", "--nemesis-interval", "1"])
        .args(["--time-limit", "60", "--seed", "4"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the cluster to be up and a fault or two in force.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, ps) = sh(Command::new("docker").args(["ps", "--format", "{{.Names}} {{.Status}}"]));
        if ps.lines().filter(|l| l.starts_with(PROJECT_PREFIX)).count() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster never came up");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(5));
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert_eq!(leftovers(), Vec::<String>::new(), "after SIGTERM");
    let runs: Vec<PathBuf> = std::fs::read_dir(s.join("default"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert!(
        runs.iter()
            .any(|r| r.join("nodes").join("n1.log").is_file()),
        "container logs copied into the run directory"
    );
    std::fs::remove_dir_all(&s).ok();
    eprintln!("docker: SIGTERM run done at {:?}", started.elapsed());

    // (e) A run killed with SIGKILL while a partition holds leaves its
    // project up; `synod clean` removes every container, network, volume
    // and chain of it, says so, and finds nothing the second time.
    killed_run_then_clean();
    eprintln!("docker: whole docker test took {:?}", started.elapsed());
}

/// Host pids of the running containers labelled as a bench's.
fn labelled_pids() -> Vec<u32> {
    let label = format!("label={}", synod_nemesis::leftovers::OWNER_LABEL);
    let (_, ids) = sh(Command::new("docker").args(["ps", "-q", "--filter", &label]));
    ids.lines()
        .filter_map(|id| {
            let (_, pid) = sh(Command::new("docker").args(["inspect", "-f", "{{.State.Pid}}", id]));
            pid.trim().parse().ok()
        })
        .filter(|&p| p > 0)
        .collect()
}

fn killed_run_then_clean() {
    let s = store("sigkill");
    let mut child = Command::new(synod_bin())
        .args(["run", "--backend", "docker", "--store", s.to_str().unwrap()])
        .args(["--nemesis", "partition", "--nemesis-interval", "2"])
        .args(["--time-limit", "60", "--seed", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for a partition: a SYNOD chain in some container's namespace.
    let deadline = Instant::now() + Duration::from_secs(90);
    let chained = loop {
        let with_chain: Vec<u32> = labelled_pids()
            .into_iter()
            .filter(|pid| {
                sh(Command::new("nsenter").args([
                    "-t",
                    &pid.to_string(),
                    "-n",
                    "iptables",
                    "-S",
                    CHAIN,
                ]))
                .0
            })
            .collect();
        if !with_chain.is_empty() {
            break with_chain;
        }
        assert!(Instant::now() < deadline, "no partition within 90 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let left = leftovers();
    assert!(
        left.iter().any(|l| l.starts_with("container"))
            && left.iter().any(|l| l.starts_with("network"))
            && left.iter().any(|l| l.starts_with("volume")),
        "a SIGKILLed run left nothing to clean up: {left:?}"
    );
    let (ok, out) = sh(Command::new(synod_bin()).arg("clean"));
    assert!(ok, "{out}");
    eprintln!("docker: synod clean after SIGKILL:\n{out}");
    for what in ["container", "network", "volume", "iptables chain SYNOD"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("removed {what}"))),
            "synod clean did not remove a {what}:\n{out}"
        );
    }
    assert_eq!(leftovers(), Vec::<String>::new(), "after synod clean");
    assert!(
        chained.iter().all(|&pid| !sh(Command::new("nsenter").args([
            "-t",
            &pid.to_string(),
            "-n",
            "iptables",
            "-S",
            CHAIN
        ]))
        .0),
        "a SYNOD chain survived synod clean"
    );
    let (ok, again) = sh(Command::new(synod_bin()).arg("clean"));
    assert!(ok, "{again}");
    assert!(
        again.contains("nothing to clean") && !again.contains("removed"),
        "a second synod clean found more:\n{again}"
    );
    std::fs::remove_dir_all(&s).ok();
}
