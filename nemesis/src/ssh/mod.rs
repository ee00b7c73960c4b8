//! The `ssh` backend: one node on each of the hosts named with `--hosts`,
//! reached over SSH, faults done by the hosts' own kernels. A node is a
//! `synod-node`, or (`--target etcd`) an etcd member.
//!
//! **Why OpenSSH's `ssh`, multiplexed.** Every host is driven through the
//! system's `ssh` with one ControlMaster connection per host
//! ([`session`]): a command is then a round trip over an open channel.
//! The user's `~/.ssh/config` (aliases, `ProxyJump`, keys) and agent work
//! as they do for them; host keys are checked by OpenSSH itself with
//! `StrictHostKeyChecking=yes` against known_hosts (`--known-hosts FILE`
//! makes it the only file consulted): there is no trust on first use,
//! and no SSH protocol or crypto code of our own to get wrong. A Rust SSH
//! crate would have added a second implementation of host-key checking
//! and config parsing, and a crypto stack to build, for nothing a user
//! would notice.
//!
//! - **Pre-flight** ([`preflight`]), on every host before any node starts,
//!   so before any fault: connect (an unreachable host, an unknown host
//!   key, a refused key each stop the run with the host's name and what
//!   to fix), then probe what it has: its architecture against the node
//!   binary's, iptables (when the run has network faults), FUSE (power
//!   loss through the filesystem), libfaketime (`--clock-fault
//!   faketime`), no SYNOD chain of another run, a writable `--ssh-dir`.
//! - **Install** (`launch.rs`): `synod-node` (and `synod-lazyfs` with
//!   power loss) is uploaded to a directory per node, `ROOT/<run>-nK`
//!   (see [`remote`]), with the token in a private file, never on a
//!   command line. An etcd member runs the host's own `etcd` (found on
//!   the PATH of a session by the pre-flight), or the binary given
//!   with `--etcd-bin`, uploaded the same way.
//! - **Start**: each node under a supervisor that outlives the session: a
//!   transient systemd unit where systemd runs (as root), else `nohup
//!   setsid`; its pid in a file; it listens on port [`NODE_PORT`] of every
//!   address, its peers at the others' addresses. An etcd member is
//!   started the same way, with its client URL on port
//!   [`ETCD_CLIENT_PORT`] and its peer URL on [`ETCD_PEER_PORT`] of the
//!   host's address, every host in its `--initial-cluster` (the command
//!   line is [`crate::etcd`]'s, as the local backend's), and who leads
//!   is asked of its v3 gateway.
//! - **Faults**: partitions are iptables rules in a `SYNOD` chain on each
//!   host, jumped to first from INPUT and OUTPUT, written on both ends of
//!   a link and matching only that direction (the rules are the docker
//!   backend's, on etcd's peer port for etcd), each host's rules written once per change of the fault
//!   state ([`Backend::commit_links`]), all hosts at once; healing removes
//!   the chain. Pause and kill are
//!   SIGSTOP/SIGCONT and SIGKILL by pid. Power loss goes through the
//!   lose-unsynced-writes filesystem mounted over the node's data
//!   directory by the uploaded `synod-lazyfs` (where the host has FUSE;
//!   else the run is refused unless `--admin-crash`). Clocks go through
//!   the admin API, or libfaketime's control file on the host (neither
//!   reaches etcd: refused). Delay is refused: it would need `tc netem`.
//! - **Finish, always**: every node's log is fetched into `nodes/nK.log`
//!   of the run directory, then on every host the node is killed, the
//!   chain removed, the filesystem unmounted and the directory deleted,
//!   and the master connections closed; `Drop` does the same if teardown
//!   never ran.
//!
//! One run per host at a time: the chain's name is fixed, and a host that
//! already has one is refused.
//!
//! This file is the backend's state and its [`Backend`] impl, one concern
//! (about 600 lines); the pre-flight, a node's install and launch, the
//! remote scripts and the sessions are in their own files.

mod launch;
pub mod preflight;
pub mod remote;
pub mod session;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use session::{Problem, SshOptions};

use crate::backend::{Backend, LeaderReport, Link, LinkFault, NodeName};
use crate::error::{NemesisError, Result};
use crate::lock;
use session::{quote, Session};

/// The port every node listens on, on its host.
pub const NODE_PORT: u16 = crate::docker::NODE_PORT;

/// An etcd member's client port on its host (etcd's own default; the
/// member listens on the host's address only, so a host's own etcd on
/// localhost does not collide).
pub const ETCD_CLIENT_PORT: u16 = 2379;

/// An etcd member's peer port on its host, the port partitions cut.
pub const ETCD_PEER_PORT: u16 = 2380;

/// Where the nodes' directories go on the hosts unless `--ssh-dir` says.
pub const DEFAULT_ROOT: &str = "/tmp";

/// The environment variable that overrides where `synod-lazyfs` is.
pub const LAZYFS_BIN_ENV: &str = "SYNOD_LAZYFS_BIN";

/// How to bring up a cluster on hosts.
#[derive(Clone, Debug)]
pub struct SshConfig {
    /// One node per host, node K on the K-th: an address, a name, or an
    /// alias of the user's ssh config. The nodes reach each other, and
    /// the bench reaches them, at the address it resolves to.
    pub hosts: Vec<String>,
    /// How to log in.
    pub options: SshOptions,
    /// The run directory (here): node logs go to `nodes/`.
    pub dir: PathBuf,
    /// The directory on every host under which each node gets its own.
    pub root: String,
    /// The cluster token.
    pub token: String,
    /// Extra flags for every node (`--reads local`, ...).
    pub node_args: Vec<String>,
    /// What runs on every host: a Synod node, or an etcd member.
    pub program: crate::Program,
    /// The binary to upload: for Synod, `None` finds `synod-node` as the
    /// local backend does; for etcd, `None` runs the host's own `etcd`.
    pub node_bin: Option<PathBuf>,
    /// How long a node may take to answer `/health` after a (re)start.
    pub ready_timeout: Duration,
    /// What the nodes' data directories are on.
    pub disk: crate::Disk,
    /// How clock faults reach the nodes.
    pub clock: crate::Clock,
    /// Whether the run has link faults (partitions), so the hosts need
    /// iptables.
    pub network_faults: bool,
}

/// A node's place on its host.
struct HostNode {
    id: NodeName,
    session: Session,
    /// Its address, as the bench and its peers reach it.
    addr: String,
    /// Its directory on the host.
    dir: String,
    /// What the pre-flight found.
    host: preflight::Host,
    /// The program's path on the host: uploaded into `dir`, or the
    /// host's own etcd.
    bin: String,
    /// Running (paused counts), paused, and its clock under libfaketime
    /// (kept continuous across settings).
    state: Mutex<NodeState>,
}

#[derive(Clone, Copy, Debug, Default)]
struct NodeState {
    running: bool,
    paused: bool,
    clock: Option<crate::faketime::FakeClock>,
}

/// A cluster of `synod-node`s on hosts reached over SSH.
pub struct SshBackend {
    nodes: Vec<HostNode>,
    token: String,
    ready_timeout: Duration,
    http: reqwest::Client,
    /// The run's name on the hosts (`synod-<unique>`).
    run: String,
    /// The link faults in force, as data.
    links: Mutex<BTreeMap<Link, LinkFault>>,
    /// The rules last written to each host's chain ("" for none).
    written: Mutex<BTreeMap<NodeName, String>>,
    /// The master sockets' directory (mode 0700).
    control_dir: PathBuf,
    dir: PathBuf,
    lazy: Option<synod_lazyfs::Fsync>,
    faketime: bool,
    /// Synod nodes or etcd members.
    program: crate::Program,
    /// What is uploaded as the program (`None`: the host's etcd).
    upload: Option<PathBuf>,
    lazyfs_bin: Option<PathBuf>,
    node_args: Vec<String>,
    /// Set by teardown, so `Drop` does not do it twice.
    down: Mutex<bool>,
}

/// `synod-lazyfs`: `$SYNOD_LAZYFS_BIN`, else next to `synod-node`.
pub fn find_lazyfs_binary(node_bin: &Path) -> Result<PathBuf> {
    if let Some(p) = crate::local::file_from_env(LAZYFS_BIN_ENV) {
        return p.map_err(|p| missing_lazyfs(&p));
    }
    let p = node_bin.with_file_name("synod-lazyfs");
    if p.is_file() {
        Ok(p)
    } else {
        Err(missing_lazyfs(&p))
    }
}

fn missing_lazyfs(p: &Path) -> NemesisError {
    NemesisError::Unsupported(format!(
        "power loss on ssh hosts mounts the lose-unsynced-writes filesystem there with \
         synod-lazyfs, which is not at {}: build it with `cargo build --release --workspace`, \
         point {LAZYFS_BIN_ENV} at it, or pass --admin-crash",
        p.display()
    ))
}

impl SshBackend {
    /// Checks every host (see [`preflight`]): nothing is installed, and
    /// no node starts, unless all of them pass. Blocking.
    pub fn new(config: SshConfig) -> Result<SshBackend> {
        if config.hosts.is_empty() {
            return Err(NemesisError::Unsupported(
                "the ssh backend needs --hosts HOST,HOST,...".into(),
            ));
        }
        let etcd = config.program == crate::Program::Etcd;
        if etcd && config.clock == crate::Clock::Faketime {
            return Err(NemesisError::Unsupported(format!(
                "clock faults on etcd: {}",
                crate::faketime::ETCD_UNREACHABLE
            )));
        }
        let upload = match (config.node_bin.clone(), etcd) {
            (Some(p), _) if p.is_file() => Some(p),
            (Some(p), true) => return Err(NemesisError::EtcdBinaryMissing { path: p }),
            (Some(p), false) => return Err(NemesisError::NodeBinaryMissing { path: p }),
            (None, true) => None,
            (None, false) => Some(crate::local::find_node_binary()?),
        };
        let lazy = match config.disk {
            crate::Disk::Lazy(f) => Some(f),
            crate::Disk::Plain => None,
        };
        let lazyfs_bin = match lazy {
            // Next to synod-node, wherever etcd comes from.
            Some(_) => Some(find_lazyfs_binary(
                &crate::local::find_node_binary()
                    .unwrap_or_else(|_| std::env::current_exe().unwrap_or_default()),
            )?),
            None => None,
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let run = format!("synod-{:x}{:x}", std::process::id(), nanos);
        let control_dir = std::env::temp_dir().join(format!("{run}-ssh"));
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&control_dir)
                .map_err(|e| {
                    NemesisError::io(format!("cannot create {}", control_dir.display()), e)
                })?;
        }
        let needs = preflight::Needs {
            iptables: config.network_faults,
            fuse: lazy.is_some(),
            faketime: config.clock == crate::Clock::Faketime,
            host_etcd: etcd && upload.is_none(),
            // What is uploaded from here must run there.
            arch: !etcd || lazy.is_some(),
        };
        let name = match (config.program, &upload) {
            (crate::Program::Synod, _) => Some("synod-node"),
            (crate::Program::Etcd, Some(_)) => Some("etcd"),
            (crate::Program::Etcd, None) => None,
        };
        let result = Self::check_hosts(&config, &control_dir, &run, needs, name);
        let nodes = match result {
            Ok(nodes) => nodes,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&control_dir);
                return Err(e);
            }
        };
        let nodes_dir = config.dir.join("nodes");
        std::fs::create_dir_all(&nodes_dir)
            .map_err(|e| NemesisError::io(format!("cannot create {}", nodes_dir.display()), e))?;
        let record = serde_json::json!({
            "run": run,
            "hosts": nodes.iter().map(|n| serde_json::json!({
                "node": n.id.to_string(), "host": n.session.host, "address": n.addr,
                "dir": n.dir, "supervisor": if n.host.systemd { "systemd" } else { "nohup" },
                "program": n.bin,
            })).collect::<Vec<_>>(),
        });
        let record_path = config.dir.join("ssh.json");
        std::fs::write(&record_path, format!("{record:#}\n"))
            .map_err(|e| NemesisError::io(format!("cannot write {}", record_path.display()), e))?;
        Ok(SshBackend {
            nodes,
            token: config.token,
            ready_timeout: config.ready_timeout,
            http: crate::admin::http_client(Duration::from_millis(500))?,
            run,
            links: Mutex::new(BTreeMap::new()),
            written: Mutex::new(BTreeMap::new()),
            control_dir,
            dir: config.dir,
            lazy,
            faketime: needs.faketime,
            program: config.program,
            upload,
            lazyfs_bin,
            node_args: config.node_args,
            down: Mutex::new(false),
        })
    }

    /// The run's name on the hosts; its directories are `ROOT/<run>-nK`.
    pub fn run_name(&self) -> &str {
        &self.run
    }

    /// `node`'s directory on its host.
    pub fn remote_dir(&self, node: NodeName) -> Result<String> {
        Ok(self.node(node)?.dir.clone())
    }

    /// The host `node` runs on, as named in `--hosts`.
    pub fn host(&self, node: NodeName) -> Result<String> {
        Ok(self.node(node)?.session.host.clone())
    }

    fn node(&self, id: NodeName) -> Result<&HostNode> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or(NemesisError::UnknownNode(id))
    }

    /// The port the bench's clients reach a node at.
    fn client_port(&self) -> u16 {
        match self.program {
            crate::Program::Synod => NODE_PORT,
            crate::Program::Etcd => ETCD_CLIENT_PORT,
        }
    }

    /// The port peer traffic goes to, which partitions cut: Synod's one
    /// port; etcd's peer port (its members never talk on client ports).
    fn peer_port(&self) -> u16 {
        match self.program {
            crate::Program::Synod => NODE_PORT,
            crate::Program::Etcd => ETCD_PEER_PORT,
        }
    }

    fn addrs(&self) -> BTreeMap<NodeName, String> {
        self.nodes.iter().map(|n| (n.id, n.addr.clone())).collect()
    }

    /// Makes every host hold exactly the rules for the links in force:
    /// each host whose rules changed since they were last written gets
    /// them in one script, all hosts at once.
    fn apply_all(&self) -> Result<()> {
        let addrs = self.addrs();
        let links = lock(&self.links).clone();
        let mut written = lock(&self.written);
        let changes: Vec<(&HostNode, String)> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let rules = crate::docker::chain_rules(n.id, &addrs, &links, self.peer_port());
                let before = written.get(&n.id).map(String::as_str).unwrap_or("");
                (rules != before).then_some((n, rules))
            })
            .collect();
        let results: Vec<(NodeName, String, Result<String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = changes
                .into_iter()
                .map(|(n, rules)| {
                    s.spawn(move || {
                        let script = remote::chain(&n.dir, n.host.sudo, &rules);
                        let r = n.session.run(&script, "writing the SYNOD chain");
                        (n.id, rules, r)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let mut first_error = None;
        for (id, rules, r) in results {
            match r {
                Ok(_) => {
                    written.insert(id, rules);
                }
                Err(e) => {
                    // Unknown state: written again at the next commit.
                    written.insert(id, "?".into());
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The rules of the SYNOD chain on `node`'s host as `iptables -S`
    /// prints them; `None` if there is no chain.
    pub fn chain(&self, node: NodeName) -> Result<Option<String>> {
        let n = self.node(node)?;
        let sudo = if n.host.sudo { "sudo -n " } else { "" };
        Ok(n.session
            .run(&format!("{sudo}iptables -w 5 -S SYNOD"), "iptables -S")
            .ok())
    }

    /// Fetches every node's log into the run directory.
    fn fetch_logs(&self) {
        for n in &self.nodes {
            let Some(path) = self.log_path(n.id) else {
                continue;
            };
            let file = match std::fs::File::create(&path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(node = %n.id, error = %e, "cannot write the node log");
                    continue;
                }
            };
            let script = format!("cat {}/node.log 2>/dev/null || true", quote(&n.dir));
            if let Err(e) = n
                .session
                .run_to(&script, "fetching the log", Stdio::from(file))
            {
                tracing::warn!(node = %n.id, error = %e, "cannot fetch the node log");
            }
        }
    }

    /// Removes everything on every host, in parallel; then closes the
    /// connections. Synchronous (for `Drop` too).
    fn remove_all(&self) {
        std::thread::scope(|s| {
            for n in &self.nodes {
                let unit = self.unit(n);
                s.spawn(move || {
                    let script = remote::teardown(&n.dir, n.host.sudo, unit.as_deref());
                    if let Err(e) = n.session.run(&script, "teardown") {
                        tracing::warn!(node = %n.id, error = %e, "teardown left something");
                        eprintln!("synod: teardown: {e}");
                    }
                    n.session.close();
                });
            }
        });
        let _ = std::fs::remove_dir_all(&self.control_dir);
    }

    /// Where the run directory is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Backend for SshBackend {
    fn nodes(&self) -> Vec<NodeName> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn url(&self, node: NodeName) -> Result<String> {
        Ok(format!(
            "http://{}:{}",
            self.node(node)?.addr,
            self.client_port()
        ))
    }

    fn token(&self) -> &str {
        &self.token
    }

    fn log_path(&self, node: NodeName) -> Option<PathBuf> {
        Some(self.dir.join("nodes").join(format!("{node}.log")))
    }

    fn is_running(&self, node: NodeName) -> bool {
        self.node(node).is_ok_and(|n| lock(&n.state).running)
    }

    async fn start(&self) -> Result<()> {
        std::thread::scope(|s| {
            let installs: Vec<_> = self
                .nodes
                .iter()
                .map(|n| s.spawn(move || self.install(n)))
                .collect();
            installs
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(NemesisError::Unsupported("install panicked".into()))
                    })
                })
                .collect::<Result<Vec<()>>>()
        })?;
        // Every node started, then every one waited for: a node may
        // answer its health check only once it hears its peers.
        for n in &self.nodes {
            self.launch_detached(n).await?;
        }
        for n in &self.nodes {
            self.wait_healthy(n).await?;
        }
        Ok(())
    }

    async fn stop(&self, node: NodeName) -> Result<()> {
        let n = self.node(node)?;
        n.session
            .run_async(&remote::kill(&n.dir, true), "stopping the node")
            .await?;
        lock(&n.state).running = false;
        Ok(())
    }

    async fn kill(&self, node: NodeName) -> Result<()> {
        let n = self.node(node)?;
        n.session
            .run_async(&remote::kill(&n.dir, false), "killing the node")
            .await?;
        let mut st = lock(&n.state);
        st.running = false;
        st.paused = false;
        Ok(())
    }

    async fn reap(&self, node: NodeName, grace: Duration) -> Result<()> {
        let n = self.node(node)?;
        let hundredths = (grace.as_millis() / 10).min(u128::from(u32::MAX)) as u32;
        let r = n
            .session
            .run_async(
                &remote::wait_exit(&n.dir, hundredths),
                "waiting for the node",
            )
            .await?;
        if r != "exited" {
            return self.kill(node).await;
        }
        let mut st = lock(&n.state);
        st.running = false;
        st.paused = false;
        Ok(())
    }

    async fn restart(&self, node: NodeName) -> Result<()> {
        if self.is_running(node) {
            return Ok(());
        }
        let n = self.node(node)?;
        self.launch(n).await
    }

    fn pause(&self, node: NodeName) -> Result<()> {
        let n = self.node(node)?;
        let mut st = lock(&n.state);
        if st.paused || !st.running {
            return Ok(());
        }
        n.session
            .run(&remote::signal(&n.dir, "STOP"), "pausing the node")?;
        st.paused = true;
        Ok(())
    }

    fn resume(&self, node: NodeName) -> Result<()> {
        let n = self.node(node)?;
        let mut st = lock(&n.state);
        if st.paused {
            n.session
                .run(&remote::signal(&n.dir, "CONT"), "continuing the node")?;
            st.paused = false;
        }
        Ok(())
    }

    fn set_link(&self, link: Link, fault: LinkFault) -> Result<()> {
        let delay = fault.delay.is_some();
        let wanted = LinkFault {
            delay: None,
            ..fault
        };
        {
            let mut links = lock(&self.links);
            if wanted.is_healthy() {
                links.remove(&link);
            } else {
                links.insert(link, wanted);
            }
        }
        if delay {
            return Err(NemesisError::Unsupported(
                "delay on ssh hosts: it needs `tc netem`, which this backend does not do; \
                 drop delay from --nemesis"
                    .into(),
            ));
        }
        Ok(())
    }

    fn commit_links(&self) -> Result<()> {
        self.apply_all()
    }

    fn loses_unsynced_writes(&self) -> bool {
        self.lazy.is_some()
    }

    async fn power_off(&self, node: NodeName) -> Result<()> {
        let n = self.node(node)?;
        if self.lazy.is_none() {
            return Err(crate::disk::DataDisks::not_lazy(node));
        }
        n.session
            .run_async(&remote::power_loss(&n.dir), "cutting the node's power")
            .await?;
        let mut st = lock(&n.state);
        st.running = false;
        st.paused = false;
        Ok(())
    }

    fn skews_clocks(&self) -> bool {
        self.faketime
    }

    fn skew_clock(&self, node: NodeName, offset_ms: i64, rate: f64) -> Result<()> {
        if !self.faketime {
            return Err(NemesisError::Unsupported(format!(
                "the clock of {node}: the nodes run without libfaketime; use the admin clock"
            )));
        }
        let n = self.node(node)?;
        let spec = lock(&n.state)
            .clock
            .get_or_insert_with(crate::faketime::FakeClock::started_now)
            .line(offset_ms, rate, Instant::now());
        n.session
            .run(&remote::set_clock(&n.dir, &spec), "setting the clock")
            .map(|_| ())
    }

    async fn report_leader(&self) -> LeaderReport {
        if self.program != crate::Program::Etcd {
            return LeaderReport::AskAdmin;
        }
        let urls: Vec<(NodeName, String)> = self
            .nodes
            .iter()
            .filter(|n| self.is_running(n.id))
            .filter_map(|n| Some((n.id, self.url(n.id).ok()?)))
            .collect();
        LeaderReport::Reported(crate::etcd::leader(&self.http, &urls).await)
    }

    async fn teardown(&self) {
        if std::mem::replace(&mut *lock(&self.down), true) {
            return;
        }
        lock(&self.links).clear();
        for n in &self.nodes {
            let paused = std::mem::take(&mut lock(&n.state).paused);
            if paused {
                let _ = n.session.run(&remote::signal(&n.dir, "CONT"), "continuing");
            }
        }
        // Blocking ssh calls: off the async workers.
        let this: &SshBackend = self;
        tokio::task::block_in_place(|| {
            this.fetch_logs();
            this.remove_all();
        });
    }
}

impl Drop for SshBackend {
    /// The last line of defence (a panic, an early return): everything on
    /// the hosts removed if teardown never ran.
    fn drop(&mut self) {
        if !std::mem::replace(&mut *lock(&self.down), true) {
            self.fetch_logs();
            self.remove_all();
        }
    }
}
