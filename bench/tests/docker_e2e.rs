//! The docker backend against the real engine: containers from
//! `docker-compose.yml`, partitions as iptables rules in their namespaces.
//!
//! One test function runs every scenario in sequence: they share the
//! compose network's fixed subnet, so two at once would collide. Without a
//! Docker engine (`docker info` fails) it prints `SKIP: no docker engine`
//! and passes. The image is built by the backend if missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_nemesis::docker::{self, DockerBackend, DockerConfig, CHAIN, PROJECT_PREFIX};
use synod_nemesis::{Backend, Link, LinkFault, NodeId};

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
            token: "test".into(),
            node_args: vec![],
            workspace: None,
            image: docker::DEFAULT_IMAGE.into(),
            project: None,
            ready_timeout: Duration::from_secs(30),
        })
        .expect("docker backend"),
    );
    let (b, dir) = (backend.clone(), dir.to_path_buf());
    let result = async move {
        let backend = b;
        backend.start().await.expect("cluster up");
        let (n1, n2, n3) = (NodeId(1), NodeId(2), NodeId(3));
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

fn docker_run(tag: &str, extra: &[&str]) -> (Option<i32>, String) {
    let s = store(tag);
    let out = Command::new(synod_bin())
        .args(["run", "--backend", "docker", "--store", s.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "{text}");
    std::fs::remove_dir_all(&s).ok();
    (out.status.code(), text)
}

#[test]
fn docker_backend_end_to_end() {
    if !docker::engine_available() {
        eprintln!("SKIP: no docker engine (`docker info` failed)");
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

    // (b) A bounded chaos run with partitions, pauses and kills is valid.
    let (code, out) = docker_run(
        "valid",
        &[
            "--nemesis",
            "partition,pause,kill",
            "--nemesis-interval",
            "3",
            "--time-limit",
            "20",
            "--recovery",
            "5",
            "--seed",
            "1",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("start-") || out.contains("valid"), "{out}");
    assert_eq!(leftovers(), Vec::<String>::new(), "after a run");
    eprintln!("docker: valid run done at {:?}", started.elapsed());

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
    eprintln!("docker: whole docker test took {:?}", started.elapsed());
}
