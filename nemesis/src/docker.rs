//! The `docker` backend: each node a container from the top-level
//! `docker-compose.yml`, on a private bridge network with its own address;
//! faults done by the operating system, not by the code under test.
//!
//! - **Up**: builds the image with `docker/build-image.sh` if it is missing
//!   (offline: a static binary in a `FROM scratch` image), brings the
//!   compose file up under a unique project name (`synod-<unique>`), with
//!   the run's node settings in a generated override file in the run
//!   directory, and waits for every node's `/health`.
//! - **Process faults**: `docker kill` and `docker start` (the container
//!   keeps its volume and address), `docker pause` and `docker unpause`.
//! - **Network faults**: iptables rules in a chain of our own, `SYNOD`,
//!   inside each container's network namespace (`nsenter -t PID -n`),
//!   jumped to first from `INPUT` and `OUTPUT`. A directed link `a -> b`
//!   (what `a` sends to `b`) is matched as TCP to `b`'s port 7000 from `a`
//!   and its replies, on both ends, so a one-way fault stays one-way.
//!   `DROP` applies to every packet, those of established connections too:
//!   the namespace's filter chains hold no `ESTABLISHED` accept before our
//!   jump, so conntrack lets nothing through. Resets are `REJECT
//!   --reject-with tcp-reset`; packet loss is the `statistic` match.
//!   Delay needs `tc netem`, which this backend does not do: it is refused
//!   with a message saying so. Healing deletes our chain and its jumps;
//!   Docker's own chains are never touched.
//! - **Clock and power loss** go through the node's admin API like on the
//!   local backend (see [`crate::admin`]).
//! - **Down, always**: [`Backend::teardown`] copies every container's log
//!   into `nodes/nK.log` of the run directory, then `docker-compose down
//!   --volumes --remove-orphans`; `Drop` does the same synchronously if
//!   teardown never ran (an early return, a panic).
//!
//! A container's network namespace lives as long as its process: a killed
//! and restarted node comes back with empty chains, so the rules are kept
//! as data and re-applied after every restart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::Command;

use crate::backend::{Backend, Link, NodeId};
use crate::error::{NemesisError, Result};
use crate::proxy::LinkFault;

/// The port every node listens on inside its container.
pub const NODE_PORT: u16 = 7000;

/// The image `docker-compose.yml` runs unless `SYNOD_IMAGE` says otherwise.
pub const DEFAULT_IMAGE: &str = "synod-node:latest";

/// Prefix of every compose project this backend creates; tests look for
/// leftovers by it.
pub const PROJECT_PREFIX: &str = "synod-";

/// Our iptables chain in every container's namespace.
pub const CHAIN: &str = "SYNOD";

/// How to bring up a cluster of containers.
#[derive(Clone, Debug)]
pub struct DockerConfig {
    /// Cluster size: 3 (`docker-compose.yml`) or 5 (with
    /// `docker-compose.five.yml`).
    pub nodes: u32,
    /// The run directory: the compose override and node logs go here.
    pub dir: PathBuf,
    /// The cluster token, in every node's environment and admin calls.
    pub token: String,
    /// Node settings as `--flag value` (or `--flag=value`) pairs, passed
    /// to every node as `SYNOD_FLAG=value`.
    pub node_args: Vec<String>,
    /// The repository holding `docker-compose.yml` and
    /// `docker/build-image.sh`; `None` finds it with [`find_workspace`].
    pub workspace: Option<PathBuf>,
    /// The image to run; built if missing.
    pub image: String,
    /// The compose project name; `None` makes a unique `synod-...` one.
    pub project: Option<String>,
    /// How long a node may take to answer `/health` after a (re)start.
    pub ready_timeout: Duration,
}

/// Finds the repository with `docker-compose.yml` and
/// `docker/build-image.sh`: `$SYNOD_WORKSPACE`, else the source tree this
/// crate was built from, else the current directory or one above it.
pub fn find_workspace() -> Result<PathBuf> {
    let ok = |d: &Path| d.join("docker-compose.yml").is_file() && build_script(d).is_file();
    if let Some(p) = std::env::var_os("SYNOD_WORKSPACE") {
        let p = PathBuf::from(p);
        return if ok(&p) {
            Ok(p)
        } else {
            Err(other(format!(
                "SYNOD_WORKSPACE={} holds no docker-compose.yml and docker/build-image.sh",
                p.display()
            )))
        };
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if ok(&built_from) {
        return Ok(built_from);
    }
    let cwd = std::env::current_dir().map_err(|e| NemesisError::io("no current directory", e))?;
    cwd.ancestors()
        .find(|d| ok(d))
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            other(
                "cannot find docker-compose.yml and docker/build-image.sh: run from the Synod \
             repository or set SYNOD_WORKSPACE to it"
                    .to_string(),
            )
        })
}

fn build_script(workspace: &Path) -> PathBuf {
    workspace.join("docker").join("build-image.sh")
}

/// An error with only a message.
fn other(msg: String) -> NemesisError {
    NemesisError::io("docker backend", std::io::Error::other(msg))
}

/// `--reads local` and `--reads=local` as `("SYNOD_READS", "local")`.
pub fn flags_to_env(args: &[String]) -> Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(flag) = a.strip_prefix("--") else {
            return Err(NemesisError::Unsupported(format!(
                "node argument {a:?} on docker: pass node settings as --flag value"
            )));
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => match it.next() {
                Some(v) => (flag.to_string(), v.clone()),
                None => {
                    return Err(NemesisError::Unsupported(format!(
                        "node flag {a} has no value (on docker every flag is an environment \
                         variable with a value)"
                    )))
                }
            },
        };
        let var = format!("SYNOD_{}", name.to_uppercase().replace('-', "_"));
        if matches!(
            var.as_str(),
            "SYNOD_ID" | "SYNOD_PEERS" | "SYNOD_LISTEN" | "SYNOD_DATA_DIR" | "SYNOD_TOKEN"
        ) {
            return Err(NemesisError::Unsupported(format!(
                "--{name} is set by docker-compose.yml on docker"
            )));
        }
        env.push((var, value));
    }
    Ok(env)
}

/// One container's state as we know it.
struct Container {
    id: NodeId,
    /// Docker's container id, fixed across kill and start.
    cid: String,
    /// Its address on the compose network, fixed by `docker-compose.yml`.
    addr: String,
    /// The process whose network namespace we enter; `None` while down.
    pid: Mutex<Option<u32>>,
    /// Whether we paused it: a kill must unpause first.
    paused: Mutex<bool>,
    /// Whether our chain and its jumps exist in the current namespace.
    chained: Mutex<bool>,
    log_path: PathBuf,
}

/// A cluster of `synod-node` containers under one compose project.
pub struct DockerBackend {
    project: String,
    /// `-f` arguments: the compose file(s) and our override.
    files: Vec<PathBuf>,
    token: String,
    image: String,
    ready_timeout: Duration,
    http: reqwest::Client,
    /// Empty until [`Backend::start`] has found the containers.
    containers: Mutex<Vec<std::sync::Arc<Container>>>,
    /// The link faults in force, as data: re-applied after a restart.
    links: Mutex<BTreeMap<Link, LinkFault>>,
    /// Random packet loss per link ([`DockerBackend::set_loss`]).
    loss: Mutex<BTreeMap<Link, f64>>,
    /// Set by teardown, so `Drop` does not bring the project down twice.
    down: Mutex<bool>,
    dir: PathBuf,
    nodes: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a command to completion; its stdout on success, a message with its
/// stderr otherwise.
fn run_sync(cmd: &mut StdCommand, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NemesisError::io(format!("cannot run {what}"), e))?;
    stdout_of(out, what)
}

async fn run_async(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| NemesisError::io(format!("cannot run {what}"), e))?;
    stdout_of(out, what)
}

/// A finished command's trimmed stdout, or an error quoting its stderr.
fn stdout_of(out: std::process::Output, what: &str) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(other(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether the Docker engine answers (`docker info`).
pub fn engine_available() -> bool {
    StdCommand::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds `image` with `docker/build-image.sh` unless it exists.
pub fn ensure_image(workspace: &Path, image: &str) -> Result<()> {
    let exists = StdCommand::new("docker")
        .args(["image", "inspect", image])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| NemesisError::io("cannot run docker (is it installed?)", e))?;
    if exists.success() {
        return Ok(());
    }
    let script = build_script(workspace);
    tracing::info!(%image, "image missing; building it with {}", script.display());
    eprintln!("synod: building {image} with {} ...", script.display());
    let status = StdCommand::new("bash")
        .arg(&script)
        .arg(image)
        .current_dir(workspace)
        .stdin(Stdio::null())
        // Build output to our stderr: the user sees cargo's progress.
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| NemesisError::io(format!("cannot run {}", script.display()), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(other(format!(
            "building the image with {} failed ({status})",
            script.display()
        )))
    }
}

/// The iptables rules a node's chain holds for the links in force, in
/// `iptables-restore` form (`-A SYNOD ...` lines).
fn chain_rules(
    me: NodeId,
    addrs: &BTreeMap<NodeId, String>,
    links: &BTreeMap<Link, LinkFault>,
) -> String {
    let mut rules = String::new();
    for (link, fault) in links {
        // What `from` sends to `to` is TCP to `to`'s port, and its replies.
        let (out_match, in_match) = if link.to == me {
            let Some(peer) = addrs.get(&link.from) else {
                continue;
            };
            (
                format!("-d {peer}/32 -p tcp --sport {NODE_PORT}"),
                format!("-s {peer}/32 -p tcp --dport {NODE_PORT}"),
            )
        } else if link.from == me {
            let Some(peer) = addrs.get(&link.to) else {
                continue;
            };
            (
                format!("-d {peer}/32 -p tcp --dport {NODE_PORT}"),
                format!("-s {peer}/32 -p tcp --sport {NODE_PORT}"),
            )
        } else {
            continue;
        };
        let action = if fault.blackhole {
            "-j DROP".to_string()
        } else if fault.reset {
            "-j REJECT --reject-with tcp-reset".to_string()
        } else {
            continue;
        };
        for m in [out_match, in_match] {
            let _ = writeln!(rules, "-A {CHAIN} {m} {action}");
        }
    }
    rules
}

/// Random packet loss rules for `(link, probability)` pairs, for
/// [`DockerBackend::set_loss`].
fn loss_rules(me: NodeId, addrs: &BTreeMap<NodeId, String>, loss: &BTreeMap<Link, f64>) -> String {
    let mut rules = String::new();
    for (link, p) in loss {
        if link.to != me && link.from != me {
            continue;
        }
        let peer_id = if link.to == me { link.from } else { link.to };
        let Some(peer) = addrs.get(&peer_id) else {
            continue;
        };
        let (o, i) = if link.to == me {
            ("--sport", "--dport")
        } else {
            ("--dport", "--sport")
        };
        let stat = format!("-m statistic --mode random --probability {p:.4} -j DROP");
        let _ = writeln!(
            rules,
            "-A {CHAIN} -d {peer}/32 -p tcp {o} {NODE_PORT} {stat}"
        );
        let _ = writeln!(
            rules,
            "-A {CHAIN} -s {peer}/32 -p tcp {i} {NODE_PORT} {stat}"
        );
    }
    rules
}

/// Runs iptables in the network namespace of `pid`.
fn iptables(pid: u32, args: &[&str]) -> Result<String> {
    run_sync(
        StdCommand::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "iptables", "-w", "5"])
            .args(args),
        &format!("nsenter -t {pid} -n iptables {}", args.join(" ")),
    )
}

impl DockerBackend {
    /// Checks the engine, the compose files and the image (building it if
    /// missing) and writes the override with the node settings. No
    /// container runs until [`Backend::start`].
    pub fn new(config: DockerConfig) -> Result<DockerBackend> {
        if !engine_available() {
            return Err(other(
                "the Docker engine does not answer (`docker info` failed): start it, or use \
                 --backend local"
                    .to_string(),
            ));
        }
        let workspace = match config.workspace {
            Some(w) => w,
            None => find_workspace()?,
        };
        let mut files = vec![workspace.join("docker-compose.yml")];
        match config.nodes {
            3 => {}
            5 => files.push(workspace.join("docker-compose.five.yml")),
            n => {
                return Err(NemesisError::Unsupported(format!(
                    "{n} nodes on docker: docker-compose.yml defines 3 and \
                     docker-compose.five.yml 5; pass --nodes 3 or --nodes 5"
                )))
            }
        }
        ensure_image(&workspace, &config.image)?;
        let env = flags_to_env(&config.node_args)?;
        let nodes_dir = config.dir.join("nodes");
        std::fs::create_dir_all(&nodes_dir)
            .map_err(|e| NemesisError::io(format!("cannot create {}", nodes_dir.display()), e))?;
        // The run's node settings, for every service; YAML takes JSON
        // strings, so values are quoted with serde_json.
        let mut yaml = String::from(
            "# Written by synod run: this run's node settings.\nversion: \"2.4\"\nservices:\n",
        );
        for k in 1..=config.nodes {
            let _ = writeln!(yaml, "  n{k}:\n    environment:");
            let _ = writeln!(
                yaml,
                "      SYNOD_TOKEN: {}",
                serde_json::Value::from(config.token.clone())
            );
            for (var, value) in &env {
                let _ = writeln!(
                    yaml,
                    "      {var}: {}",
                    serde_json::Value::from(value.clone())
                );
            }
        }
        let override_path = config.dir.join("docker-compose.run.yml");
        std::fs::write(&override_path, yaml).map_err(|e| {
            NemesisError::io(format!("cannot write {}", override_path.display()), e)
        })?;
        files.push(override_path);
        let project = config.project.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            format!("{PROJECT_PREFIX}{:x}{:x}", std::process::id(), nanos)
        });
        let http = crate::admin::http_client(Duration::from_millis(500))?;
        Ok(DockerBackend {
            project,
            files,
            token: config.token,
            image: config.image,
            ready_timeout: config.ready_timeout,
            http,
            containers: Mutex::new(Vec::new()),
            links: Mutex::new(BTreeMap::new()),
            loss: Mutex::new(BTreeMap::new()),
            down: Mutex::new(false),
            dir: config.dir,
            nodes: config.nodes,
        })
    }

    /// The compose project name (`synod-...`).
    pub fn project(&self) -> &str {
        &self.project
    }

    fn compose_args(&self) -> Vec<String> {
        let mut args = vec!["-p".to_string(), self.project.clone()];
        for f in &self.files {
            args.push("-f".into());
            args.push(f.display().to_string());
        }
        args
    }

    fn container(&self, node: NodeId) -> Result<std::sync::Arc<Container>> {
        lock(&self.containers)
            .iter()
            .find(|c| c.id == node)
            .cloned()
            .ok_or(NemesisError::UnknownNode(node))
    }

    /// The host PID of `node`'s container process, if it runs: what
    /// `nsenter -t PID -n` enters.
    pub fn pid(&self, node: NodeId) -> Option<u32> {
        let c = self.container(node).ok()?;
        let pid = *lock(&c.pid);
        pid.filter(|p| pid_alive(*p))
    }

    /// The container's address on the compose network.
    pub fn address(&self, node: NodeId) -> Result<String> {
        Ok(self.container(node)?.addr.clone())
    }

    /// Docker's id of `node`'s container.
    pub fn container_id(&self, node: NodeId) -> Result<String> {
        Ok(self.container(node)?.cid.clone())
    }

    /// Drops packets on `link` with `probability` (0 heals), with the
    /// `statistic` match; kept with the other link rules.
    pub fn set_loss(&self, link: Link, probability: f64) -> Result<()> {
        let mut loss = lock(&self.loss);
        if probability <= 0.0 {
            loss.remove(&link);
        } else {
            loss.insert(link, probability.min(1.0));
        }
        drop(loss);
        self.apply(link.from)?;
        self.apply(link.to)
    }

    fn addrs(&self) -> BTreeMap<NodeId, String> {
        lock(&self.containers)
            .iter()
            .map(|c| (c.id, c.addr.clone()))
            .collect()
    }

    /// Makes `node`'s chain hold exactly the rules for the links in force;
    /// with none, deletes the chain and its jumps. Does nothing while the
    /// node is down: a restart re-applies.
    fn apply(&self, node: NodeId) -> Result<()> {
        let c = self.container(node)?;
        let Some(pid) = *lock(&c.pid) else {
            return Ok(());
        };
        if !pid_alive(pid) {
            return Ok(());
        }
        let addrs = self.addrs();
        let mut rules = chain_rules(node, &addrs, &lock(&self.links));
        rules.push_str(&loss_rules(node, &addrs, &lock(&self.loss)));
        let mut chained = lock(&c.chained);
        if rules.is_empty() {
            if *chained {
                remove_chain(pid)?;
                *chained = false;
            }
            return Ok(());
        }
        if !*chained {
            // -N fails if the chain exists (a previous run of ours in this
            // namespace cannot be, but be idempotent); the jumps are
            // checked before they are inserted, so there is one of each.
            let _ = iptables(pid, &["-N", CHAIN]);
            for hook in ["INPUT", "OUTPUT"] {
                if iptables(pid, &["-C", hook, "-j", CHAIN]).is_err() {
                    iptables(pid, &["-I", hook, "1", "-j", CHAIN])?;
                }
            }
            *chained = true;
        }
        // One atomic replacement of our chain's rules: declaring the chain
        // flushes it, --noflush leaves every other chain alone.
        let input = format!("*filter\n:{CHAIN} - [0:0]\n{rules}COMMIT\n");
        let mut child = StdCommand::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-n",
                "iptables-restore",
                "-w",
                "5",
                "--noflush",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| NemesisError::io("cannot run nsenter iptables-restore", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| NemesisError::io("cannot feed iptables-restore", e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| NemesisError::io("iptables-restore", e))?;
        if !out.status.success() {
            return Err(other(format!(
                "iptables-restore in {node}'s namespace failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// The rules in `node`'s chain as `iptables -S SYNOD` prints them;
    /// `None` if the chain does not exist.
    pub fn chain(&self, node: NodeId) -> Result<Option<String>> {
        let pid = self
            .pid(node)
            .ok_or_else(|| other(format!("{node} is not running")))?;
        Ok(iptables(pid, &["-S", CHAIN]).ok())
    }

    async fn inspect(&self, cid: &str, format: &str) -> Result<String> {
        run_async(
            Command::new("docker").args(["inspect", "-f", format, cid]),
            "docker inspect",
        )
        .await
    }

    /// Re-reads the PID of a container that runs; `None` if it does not.
    async fn refresh_pid(&self, c: &Container) -> Result<Option<u32>> {
        let out = self
            .inspect(&c.cid, "{{.State.Running}} {{.State.Pid}}")
            .await?;
        let pid = match out.split_once(' ') {
            Some(("true", pid)) => pid.parse::<u32>().ok().filter(|&p| p > 0),
            _ => None,
        };
        *lock(&c.pid) = pid;
        *lock(&c.chained) = false;
        Ok(pid)
    }

    async fn wait_healthy(&self, c: &Container) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        let url = format!("http://{}:{NODE_PORT}/health", c.addr);
        loop {
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            let running = self.inspect(&c.cid, "{{.State.Running}}").await;
            if running.as_deref().ok() == Some("false") || tokio::time::Instant::now() >= deadline {
                let tail = run_async(
                    Command::new("docker").args(["logs", "--tail", "5", &c.cid]),
                    "docker logs",
                )
                .await
                .unwrap_or_default();
                return Err(NemesisError::NotHealthy {
                    node: c.id,
                    reason: format!(
                        "{} (container {}); last log lines: {tail}",
                        if running.as_deref().ok() == Some("false") {
                            "its container exited".to_string()
                        } else {
                            format!("no answer on {url} within {:?}", self.ready_timeout)
                        },
                        c.cid
                    ),
                    log: c.log_path.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the container has stopped; false if `grace` passed.
    async fn wait_exited(&self, c: &Container, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            match self.inspect(&c.cid, "{{.State.Running}}").await.as_deref() {
                Ok("false") => return true,
                Err(_) => return true,
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn docker(&self, args: &[&str]) -> Result<String> {
        run_async(
            Command::new("docker").args(args),
            &format!("docker {}", args.join(" ")),
        )
        .await
    }

    /// Copies every container's log into the run directory.
    fn copy_logs(&self) {
        for c in lock(&self.containers).iter() {
            let file = match std::fs::File::create(&c.log_path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(node = %c.id, error = %e, "cannot write the node log");
                    continue;
                }
            };
            let Ok(file2) = file.try_clone() else {
                continue;
            };
            let r = StdCommand::new("docker")
                .args(["logs", &c.cid])
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(file2)
                .status();
            if !r.is_ok_and(|s| s.success()) {
                tracing::warn!(node = %c.id, "docker logs failed");
            }
        }
    }

    /// Brings the project down with its volumes and network, synchronously.
    fn compose_down(&self) {
        let r = run_sync(
            StdCommand::new("docker-compose")
                .args(self.compose_args())
                .args(["down", "--volumes", "--remove-orphans", "--timeout", "2"])
                .env("SYNOD_IMAGE", &self.image)
                .env("SYNOD_TOKEN", &self.token),
            "docker-compose down",
        );
        if let Err(e) = r {
            tracing::warn!(project = %self.project, error = %e, "teardown: docker-compose down failed");
        }
    }

    /// Where the run directory is (node logs are under `nodes/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn remove_chain(pid: u32) -> Result<()> {
    for hook in ["INPUT", "OUTPUT"] {
        while iptables(pid, &["-D", hook, "-j", CHAIN]).is_ok() {}
    }
    let _ = iptables(pid, &["-F", CHAIN]);
    let _ = iptables(pid, &["-X", CHAIN]);
    Ok(())
}

/// Whether a host process exists and is not a zombie.
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

impl Backend for DockerBackend {
    fn nodes(&self) -> Vec<NodeId> {
        (1..=self.nodes).map(NodeId).collect()
    }

    fn url(&self, node: NodeId) -> Result<String> {
        Ok(format!("http://{}:{NODE_PORT}", self.container(node)?.addr))
    }

    fn token(&self) -> &str {
        &self.token
    }

    fn log_path(&self, node: NodeId) -> Option<PathBuf> {
        Some(self.dir.join("nodes").join(format!("{node}.log")))
    }

    fn is_running(&self, node: NodeId) -> bool {
        self.pid(node).is_some()
    }

    async fn start(&self) -> Result<()> {
        run_async(
            Command::new("docker-compose")
                .args(self.compose_args())
                .args(["up", "-d", "--no-build"])
                .env("SYNOD_IMAGE", &self.image)
                .env("SYNOD_TOKEN", &self.token),
            "docker-compose up",
        )
        .await?;
        let mut found = Vec::new();
        for id in self.nodes() {
            let project = format!("label=com.docker.compose.project={}", self.project);
            let service = format!("label=com.docker.compose.service={id}");
            let cid = self
                .docker(&[
                    "ps",
                    "-aq",
                    "--no-trunc",
                    "--filter",
                    &project,
                    "--filter",
                    &service,
                ])
                .await?;
            let cid = cid.lines().next().unwrap_or("").to_string();
            if cid.is_empty() {
                return Err(other(format!(
                    "docker-compose up left no container for {id} in project {}",
                    self.project
                )));
            }
            let addr = self
                .inspect(
                    &cid,
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                )
                .await?;
            found.push(std::sync::Arc::new(Container {
                id,
                cid,
                addr,
                pid: Mutex::new(None),
                paused: Mutex::new(false),
                chained: Mutex::new(false),
                log_path: self.log_path(id).unwrap_or_default(),
            }));
        }
        *lock(&self.containers) = found.clone();
        for c in &found {
            self.refresh_pid(c).await?;
            tracing::debug!(node = %c.id, cid = %c.cid, addr = %c.addr, pid = ?*lock(&c.pid), "container up");
        }
        for c in &found {
            self.wait_healthy(c).await?;
        }
        Ok(())
    }

    async fn stop(&self, node: NodeId) -> Result<()> {
        let c = self.container(node)?;
        if std::mem::take(&mut *lock(&c.paused)) {
            let _ = self.docker(&["unpause", &c.cid]).await;
        }
        self.docker(&["stop", "--time", "5", &c.cid]).await?;
        *lock(&c.pid) = None;
        Ok(())
    }

    async fn kill(&self, node: NodeId) -> Result<()> {
        let c = self.container(node)?;
        if std::mem::take(&mut *lock(&c.paused)) {
            let _ = self.docker(&["unpause", &c.cid]).await;
        }
        if self.is_running(node) {
            // "is not running" races are fine: the end state is the same.
            let _ = self.docker(&["kill", &c.cid]).await;
        }
        if !self.wait_exited(&c, Duration::from_secs(10)).await {
            return Err(other(format!("{node} did not stop after docker kill")));
        }
        *lock(&c.pid) = None;
        Ok(())
    }

    async fn reap(&self, node: NodeId, grace: Duration) -> Result<()> {
        let c = self.container(node)?;
        if !self.wait_exited(&c, grace).await {
            return self.kill(node).await;
        }
        *lock(&c.pid) = None;
        *lock(&c.paused) = false;
        Ok(())
    }

    async fn restart(&self, node: NodeId) -> Result<()> {
        if self.is_running(node) {
            return Ok(());
        }
        let c = self.container(node)?;
        self.docker(&["start", &c.cid]).await?;
        *lock(&c.paused) = false;
        self.refresh_pid(&c).await?;
        // A new process, a new namespace: our rules are gone with the old.
        if let Err(e) = self.apply(node) {
            tracing::warn!(%node, error = %e, "re-applying link faults after a restart");
        }
        self.wait_healthy(&c).await
    }

    fn pause(&self, node: NodeId) -> Result<()> {
        let c = self.container(node)?;
        let mut paused = lock(&c.paused);
        if *paused || !self.is_running(node) {
            return Ok(());
        }
        run_sync(
            StdCommand::new("docker").args(["pause", &c.cid]),
            "docker pause",
        )?;
        *paused = true;
        Ok(())
    }

    fn resume(&self, node: NodeId) -> Result<()> {
        let c = self.container(node)?;
        let mut paused = lock(&c.paused);
        if *paused {
            // Unpausing a container that is not paused is an error we
            // ignore: the end state is what we want.
            let _ = run_sync(
                StdCommand::new("docker").args(["unpause", &c.cid]),
                "docker unpause",
            );
            *paused = false;
        }
        Ok(())
    }

    fn set_link(&self, link: Link, fault: LinkFault) -> Result<()> {
        if lock(&self.containers).is_empty() {
            // Not started, or torn down: nothing to fault, healing done.
            return if fault.is_healthy() {
                Ok(())
            } else {
                Err(other("the cluster is not running".into()))
            };
        }
        let delay = fault.delay.is_some();
        let wanted = LinkFault {
            delay: None,
            ..fault
        };
        let changed = {
            let mut links = lock(&self.links);
            let before = links.get(&link).copied().unwrap_or_default();
            if wanted.is_healthy() {
                links.remove(&link);
            } else {
                links.insert(link, wanted);
            }
            before != wanted
        };
        if changed {
            self.apply(link.from)?;
            self.apply(link.to)?;
        }
        if delay {
            return Err(NemesisError::Unsupported(
                "delay on docker: it needs `tc netem` in the containers' namespaces, which \
                 this backend does not do (and this machine's kernel lacks); drop `delay` \
                 from --nemesis or use --backend local"
                    .into(),
            ));
        }
        Ok(())
    }

    async fn teardown(&self) {
        if std::mem::replace(&mut *lock(&self.down), true) {
            return;
        }
        lock(&self.links).clear();
        lock(&self.loss).clear();
        let containers = lock(&self.containers).clone();
        for c in &containers {
            if let Err(e) = self.apply(c.id) {
                tracing::warn!(node = %c.id, error = %e, "teardown: removing the SYNOD chain");
            }
            if std::mem::take(&mut *lock(&c.paused)) {
                let _ = self.docker(&["unpause", &c.cid]).await;
            }
        }
        self.copy_logs();
        self.compose_down();
    }
}

impl Drop for DockerBackend {
    /// The last line of defence (a panic, an early return): bring the
    /// project down synchronously if teardown never ran.
    fn drop(&mut self) {
        if !std::mem::replace(&mut *lock(&self.down), true) {
            self.copy_logs();
            self.compose_down();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> BTreeMap<NodeId, String> {
        (1..=3)
            .map(|k| (NodeId(k), format!("172.28.5.1{k}")))
            .collect()
    }

    #[test]
    fn flags_become_environment_variables() {
        let args: Vec<String> = ["--reads", "local", "--batch-size=8"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            flags_to_env(&args).unwrap(),
            vec![
                ("SYNOD_READS".to_string(), "local".to_string()),
                ("SYNOD_BATCH_SIZE".to_string(), "8".to_string())
            ]
        );
        assert!(flags_to_env(&["--peers".to_string(), "x".to_string()]).is_err());
        assert!(flags_to_env(&["--reads".to_string()]).is_err());
    }

    #[test]
    fn a_one_way_fault_matches_only_that_direction_on_both_ends() {
        let link = Link {
            from: NodeId(1),
            to: NodeId(2),
        };
        let links = BTreeMap::from([(
            link,
            LinkFault {
                blackhole: true,
                ..LinkFault::default()
            },
        )]);
        let at1 = chain_rules(NodeId(1), &addrs(), &links);
        assert_eq!(
            at1,
            "-A SYNOD -d 172.28.5.12/32 -p tcp --dport 7000 -j DROP\n\
             -A SYNOD -s 172.28.5.12/32 -p tcp --sport 7000 -j DROP\n"
        );
        let at2 = chain_rules(NodeId(2), &addrs(), &links);
        assert_eq!(
            at2,
            "-A SYNOD -d 172.28.5.11/32 -p tcp --sport 7000 -j DROP\n\
             -A SYNOD -s 172.28.5.11/32 -p tcp --dport 7000 -j DROP\n"
        );
        assert_eq!(chain_rules(NodeId(3), &addrs(), &links), "");
    }

    #[test]
    fn loss_uses_the_statistic_match() {
        let link = Link {
            from: NodeId(3),
            to: NodeId(1),
        };
        let rules = loss_rules(NodeId(1), &addrs(), &BTreeMap::from([(link, 0.25)]));
        assert!(rules.contains("-m statistic --mode random --probability 0.2500 -j DROP"));
        assert_eq!(rules.lines().count(), 2);
    }
}
