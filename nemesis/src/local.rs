//! The `local` backend: child processes on loopback with their peer traffic
//! through proxies the nemesis controls, no root and no Docker.
//!
//! It runs `synod-node`s, each peer link through its own [`LinkProxy`]
//! (every node is given a proxy's URL for every peer), or an etcd cluster
//! from Debian's `etcd` binary, each member's peer port behind a
//! [`MemberProxy`] (etcd members agree on one peer URL per member, so the
//! proxy tells the sender by its `X-Server-From` header instead). Either
//! way every network fault (partitions of any shape, one-way, delay,
//! reset) is a real TCP-level fault on one directed link; pause and kill
//! are signals. etcd has no clock or crash API, so those faults are Synod's
//! only; etcd's leader is found through its v3 gateway
//! (`/v3/maintenance/status`), member ids through `/v3/cluster/member/list`.
//!
//! Inside the run directory it keeps, per node, `nodes/nK/data/` (the
//! node's durable state, kept across kills and restarts) and `nodes/nK.log`
//! (stdout and stderr, appended across restarts). Listen ports are fixed
//! for the cluster's life, so a restarted node is found where it was.
//!
//! Children are killed whatever happens to us: explicitly in
//! [`Backend::teardown`], synchronously in `Drop` (a panic or an early
//! return), by tokio's `kill_on_drop`, and by the kernel through
//! `PR_SET_PDEATHSIG` if the bench itself is killed.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::{Child, Command};

use serde_json::{json, Value};

use crate::backend::{Backend, LeaderReport, Link, NodeId};
use crate::error::{NemesisError, Result};
use crate::member_proxy::MemberProxy;
use crate::proxy::{LinkFault, LinkProxy};

/// The environment variable that overrides where the node binary is.
pub const NODE_BIN_ENV: &str = "SYNOD_NODE_BIN";

/// What the local backend runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `synod-node`, every peer link through a [`LinkProxy`].
    Synod,
    /// Debian's `etcd` (package `etcd-server`), each member's peer port
    /// behind a [`MemberProxy`]: network faults, pause and kill apply.
    Etcd,
}

/// The environment variable that overrides where `etcd` is.
pub const ETCD_BIN_ENV: &str = "SYNOD_ETCD_BIN";

/// Finds `etcd`: `$SYNOD_ETCD_BIN`, else on `PATH`.
pub fn find_etcd_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(ETCD_BIN_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(NemesisError::EtcdBinaryMissing { path: p })
        };
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("etcd"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| NemesisError::EtcdBinaryMissing {
            path: PathBuf::from("etcd"),
        })
}

/// How to bring up a local cluster.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// What to run.
    pub program: Program,
    /// Cluster size.
    pub nodes: u32,
    /// The binary; `None` finds it with [`find_node_binary`] or
    /// [`find_etcd_binary`].
    pub node_bin: Option<PathBuf>,
    /// The run directory; node data and logs go under `nodes/`.
    pub dir: PathBuf,
    /// The cluster token, passed to every node and used for admin calls.
    pub token: String,
    /// Extra flags passed through to every node (`--reads lease`, ...).
    pub node_args: Vec<String>,
    /// Node K listens on `base_port + K - 1`; `None` picks free ports.
    pub base_port: Option<u16>,
    /// How long a node may take to answer `/health` after a (re)start.
    pub ready_timeout: Duration,
}

/// Finds `synod-node`: `$SYNOD_NODE_BIN`, else next to the running
/// executable (cargo puts every binary of the workspace in
/// `target/<profile>/`; tests run from `target/<profile>/deps/`).
pub fn find_node_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(NODE_BIN_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(NemesisError::NodeBinaryMissing { path: p })
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| NemesisError::io("cannot find the running executable", e))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let here = dir.join("synod-node");
    if here.is_file() {
        return Ok(here);
    }
    if dir.file_name().is_some_and(|n| n == "deps") {
        if let Some(up) = dir.parent().map(|d| d.join("synod-node")) {
            if up.is_file() {
                return Ok(up);
            }
        }
    }
    Err(NemesisError::NodeBinaryMissing { path: here })
}

/// One node's process state.
struct Proc {
    /// `None` while the node is down (killed, crashed, stopped).
    child: Option<Child>,
    /// Whether we sent SIGSTOP and not yet SIGCONT: teardown must continue
    /// it, and a kill of a paused node must not leave the flag behind.
    paused: bool,
}

struct LocalNode {
    id: NodeId,
    /// Fixed for the cluster's life so proxies and clients keep working
    /// across restarts.
    listen: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// The full command line after the binary, the same on every restart.
    args: Vec<String>,
    proc: Mutex<Proc>,
}

/// A cluster of local `synod-node` (or etcd) processes behind proxies.
pub struct LocalBackend {
    /// Decides the command line and which faults apply.
    program: Program,
    bin: PathBuf,
    token: String,
    ready_timeout: Duration,
    /// Health probes; short timeouts so a paused node does not stall us.
    http: reqwest::Client,
    nodes: Vec<LocalNode>,
    /// Synod: one proxy per directed link; emptied by teardown.
    links: Mutex<BTreeMap<Link, LinkProxy>>,
    /// etcd: one proxy in front of each member's peer port; emptied by
    /// teardown.
    members: Mutex<BTreeMap<NodeId, MemberProxy>>,
    /// etcd's member ids, learnt once the cluster is up (they never change:
    /// a restarted member keeps its data directory).
    etcd_ids: Mutex<BTreeMap<u64, NodeId>>,
}

impl LocalBackend {
    /// Checks the ports and the binary, creates the directories and starts
    /// the proxies. No node runs until [`Backend::start`].
    pub async fn new(config: LocalConfig) -> Result<LocalBackend> {
        let n = config.nodes;
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let mut ports = Vec::new();
        for (k, _) in ids.iter().enumerate() {
            ports.push(pick_port(config.base_port, k as u16)?);
        }
        let etcd = config.program == Program::Etcd;
        let bin = match config.node_bin.clone() {
            Some(p) if p.is_file() => p,
            Some(p) if etcd => return Err(NemesisError::EtcdBinaryMissing { path: p }),
            Some(p) => return Err(NemesisError::NodeBinaryMissing { path: p }),
            None if etcd => find_etcd_binary()?,
            None => find_node_binary()?,
        };
        // etcd also needs a peer port per member, behind its proxy.
        let mut peer_ports = Vec::new();
        let mut members = BTreeMap::new();
        if etcd {
            for &id in &ids {
                let port = pick_port(None, 0)?;
                peer_ports.push(port);
                let proxy = MemberProxy::start(id, SocketAddr::from(([127, 0, 0, 1], port)))
                    .await
                    .map_err(|e| {
                        NemesisError::io(format!("cannot start the member proxy of {id}"), e)
                    })?;
                members.insert(id, proxy);
            }
        }
        let nodes_dir = config.dir.join("nodes");
        let listen: Vec<SocketAddr> = ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        let mut links = BTreeMap::new();
        for &from in &ids {
            for &to in &ids {
                if from != to && !etcd {
                    let proxy = LinkProxy::start(listen[(to.0 - 1) as usize])
                        .await
                        .map_err(|e| {
                            NemesisError::io(format!("cannot start the link proxy {from}->{to}"), e)
                        })?;
                    links.insert(Link { from, to }, proxy);
                }
            }
        }
        let mut nodes = Vec::new();
        for &id in &ids {
            let data_dir = nodes_dir.join(id.to_string()).join("data");
            std::fs::create_dir_all(&data_dir).map_err(|e| {
                NemesisError::io(format!("cannot create {}", data_dir.display()), e)
            })?;
            let log_path = nodes_dir.join(format!("{id}.log"));
            let peers = ids
                .iter()
                .filter(|&&j| j != id)
                .filter_map(|&j| {
                    // Every link has a proxy for Synod; etcd has none and
                    // does not use this list.
                    let proxy = links.get(&Link { from: id, to: j })?;
                    Some(format!("{}=http://{}", j.0, proxy.listen_addr()))
                })
                .collect::<Vec<_>>()
                .join(",");
            let mut args = if etcd {
                let url = |port: u16| format!("http://127.0.0.1:{port}");
                // Members find each other at their proxies; each listens on
                // its own port behind its proxy.
                let advertised = |j: &NodeId| {
                    members
                        .get(j)
                        .map(|p: &MemberProxy| format!("http://{}", p.listen_addr()))
                        .unwrap_or_default()
                };
                let cluster = ids
                    .iter()
                    .map(|j| format!("{j}={}", advertised(j)))
                    .collect::<Vec<_>>()
                    .join(",");
                let client = url(ports[(id.0 - 1) as usize]);
                let peer = url(peer_ports[(id.0 - 1) as usize]);
                vec![
                    "--name".to_string(),
                    id.to_string(),
                    "--data-dir".into(),
                    data_dir.display().to_string(),
                    "--listen-client-urls".into(),
                    client.clone(),
                    "--advertise-client-urls".into(),
                    client,
                    "--listen-peer-urls".into(),
                    peer,
                    "--initial-advertise-peer-urls".into(),
                    advertised(&id),
                    "--initial-cluster".into(),
                    cluster,
                    "--initial-cluster-token".into(),
                    config.token.clone(),
                    "--initial-cluster-state".into(),
                    "new".into(),
                ]
            } else {
                vec![
                    "--id".to_string(),
                    id.0.to_string(),
                    "--listen".into(),
                    listen[(id.0 - 1) as usize].to_string(),
                    "--peers".into(),
                    peers,
                    "--data-dir".into(),
                    data_dir.display().to_string(),
                    "--token".into(),
                    config.token.clone(),
                ]
            };
            args.extend(config.node_args.iter().cloned());
            nodes.push(LocalNode {
                id,
                listen: listen[(id.0 - 1) as usize],
                data_dir,
                log_path,
                args,
                proc: Mutex::new(Proc {
                    child: None,
                    paused: false,
                }),
            });
        }
        let http = crate::admin::http_client(Duration::from_millis(500))?;
        Ok(LocalBackend {
            program: config.program,
            bin,
            token: config.token,
            ready_timeout: config.ready_timeout,
            http,
            nodes,
            links: Mutex::new(links),
            members: Mutex::new(members),
            etcd_ids: Mutex::new(BTreeMap::new()),
        })
    }

    fn node(&self, id: NodeId) -> Result<&LocalNode> {
        self.nodes
            .get((id.0 as usize).wrapping_sub(1))
            .filter(|n| n.id == id)
            .ok_or(NemesisError::UnknownNode(id))
    }

    /// The OS process id of `node`, if it runs.
    pub fn pid(&self, node: NodeId) -> Option<u32> {
        let n = self.node(node).ok()?;
        let p = lock(&n.proc);
        p.child.as_ref().and_then(|c| c.id())
    }

    /// The binary the nodes run.
    pub fn node_binary(&self) -> &Path {
        &self.bin
    }

    /// The node's data directory.
    pub fn data_dir(&self, node: NodeId) -> Option<PathBuf> {
        self.node(node).ok().map(|n| n.data_dir.clone())
    }

    fn spawn(&self, node: &LocalNode) -> Result<()> {
        let mut p = lock(&node.proc);
        if p.child.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|e| NemesisError::io(format!("cannot open {}", node.log_path.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| NemesisError::io("cannot duplicate the log file handle", e))?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&node.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no memory of ours;
        // it asks the kernel to SIGKILL the child if we die, so a killed
        // bench never leaves a node behind.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| NemesisError::Spawn {
            node: node.id,
            bin: self.bin.clone(),
            source,
        })?;
        tracing::debug!(node = %node.id, pid = ?child.id(), "node started");
        p.child = Some(child);
        p.paused = false;
        Ok(())
    }

    /// Polls `/health` until it answers 200, failing early if the process
    /// exits.
    async fn wait_healthy(&self, node: &LocalNode) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        let url = format!("http://{}/health", node.listen);
        loop {
            {
                let mut p = lock(&node.proc);
                match p.child.as_mut().map(|c| c.try_wait()) {
                    None => {
                        return Err(NemesisError::NotHealthy {
                            node: node.id,
                            reason: "it is not running".into(),
                            log: node.log_path.clone(),
                        })
                    }
                    Some(Ok(Some(status))) => {
                        p.child = None;
                        return Err(NemesisError::NotHealthy {
                            node: node.id,
                            reason: format!("it exited with {status}{}", log_tail(&node.log_path)),
                            log: node.log_path.clone(),
                        });
                    }
                    Some(_) => {}
                }
            }
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NemesisError::NotHealthy {
                    node: node.id,
                    reason: format!("no answer on {url} within {:?}", self.ready_timeout),
                    log: node.log_path.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POSTs `{}` to `path` of an etcd member's v3 JSON gateway; `None`
    /// if it does not answer 200 with JSON.
    async fn etcd_call(&self, node: &LocalNode, path: &str) -> Option<Value> {
        let url = format!("http://{}{path}", node.listen);
        let r = self.http.post(url).json(&json!({})).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Learns etcd's member ids (`/v3/cluster/member/list`, names are our
    /// node names) and hands them to every member proxy, so each
    /// connection follows its own link.
    async fn learn_etcd_ids(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        let mut last = String::from("no member answered");
        loop {
            for n in &self.nodes {
                let Some(reply) = self.etcd_call(n, "/v3/cluster/member/list").await else {
                    continue;
                };
                match etcd_member_ids(&reply, &self.nodes()) {
                    Ok(ids) => {
                        for proxy in lock(&self.members).values() {
                            proxy.learn(&ids);
                        }
                        *lock(&self.etcd_ids) = ids;
                        return Ok(());
                    }
                    Err(e) => last = e,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let first = &self.nodes[0];
                return Err(NemesisError::NotHealthy {
                    node: first.id,
                    reason: format!("cannot learn the etcd member ids: {last}"),
                    log: first.log_path.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `signal` to the node's process, if it runs.
    fn signal(&self, node: &LocalNode, signal: libc::c_int) -> Result<bool> {
        let p = lock(&node.proc);
        let Some(pid) = p.child.as_ref().and_then(|c| c.id()) else {
            return Ok(false);
        };
        // SAFETY: kill(2) with a pid we own: the child is not reaped while
        // we hold its `Child`, so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        if rc != 0 {
            return Err(NemesisError::io(
                format!("cannot signal node {} (pid {pid})", node.id),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(true)
    }

    /// Takes the child out and waits for it, killing it after `grace`.
    async fn reap_child(&self, node: &LocalNode, grace: Duration, kill_first: bool) -> Result<()> {
        let child = {
            let mut p = lock(&node.proc);
            let was_paused = std::mem::take(&mut p.paused);
            let child = p.child.take();
            if let Some(pid) = child.as_ref().and_then(|c| c.id()) {
                if was_paused || kill_first {
                    // SAFETY: as in `signal`: we still own the unreaped child.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
                }
            }
            child
        };
        let Some(mut child) = child else {
            return Ok(());
        };
        if kill_first {
            let _ = child.start_kill();
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let _ = child.start_kill();
                child
                    .wait()
                    .await
                    .map(|_| ())
                    .map_err(|e| NemesisError::io(format!("cannot reap node {}", node.id), e))
            }
        }
    }
}

/// Returns a port to listen on: `base + k` if it is free, else a free
/// ephemeral one. A port we pick is released before the node binds it;
/// another process could grab it in between, which `start` then reports.
fn pick_port(base: Option<u16>, k: u16) -> Result<u16> {
    match base {
        Some(base) => {
            let port = base.checked_add(k).ok_or_else(|| {
                NemesisError::io(
                    format!("--base-port {base} leaves no room for node {}", k + 1),
                    std::io::Error::from(std::io::ErrorKind::InvalidInput),
                )
            })?;
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(_) => Ok(port),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    Err(NemesisError::PortInUse { port })
                }
                Err(e) => Err(NemesisError::io(format!("cannot bind 127.0.0.1:{port}"), e)),
            }
        }
        None => {
            let l = TcpListener::bind(("127.0.0.1", 0))
                .map_err(|e| NemesisError::io("cannot find a free port", e))?;
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| NemesisError::io("cannot find a free port", e))
        }
    }
}

/// The last lines of a node's log, to put in an error message.
fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail: Vec<&str> = lines.into_iter().rev().collect();
    format!("; last log lines:\n  {}", tail.join("\n  "))
}

/// Reads etcd's member list (`{"members":[{"ID":"<decimal>","name":"n1"},
/// ...]}`; the gateway writes 64-bit ids as strings) into id -> node, and
/// insists that every node is a member.
fn etcd_member_ids(
    reply: &Value,
    nodes: &[NodeId],
) -> std::result::Result<BTreeMap<u64, NodeId>, String> {
    let members = reply
        .get("members")
        .and_then(Value::as_array)
        .ok_or("the member list has no members")?;
    let mut ids = BTreeMap::new();
    for m in members {
        let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
        let id = m.get("ID").and_then(etcd_id);
        let node = nodes.iter().find(|n| n.to_string() == name);
        if let (Some(id), Some(&node)) = (id, node) {
            ids.insert(id, node);
        }
    }
    for n in nodes {
        if !ids.values().any(|m| m == n) {
            return Err(format!("{n} is not (yet) in the member list {reply}"));
        }
    }
    Ok(ids)
}

/// A 64-bit id as etcd's gateway writes it: a decimal string (or a number).
fn etcd_id(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it:
/// teardown must still run after a panic.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Backend for LocalBackend {
    fn nodes(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn url(&self, node: NodeId) -> Result<String> {
        Ok(format!("http://{}", self.node(node)?.listen))
    }

    fn token(&self) -> &str {
        &self.token
    }

    fn log_path(&self, node: NodeId) -> Option<PathBuf> {
        self.node(node).ok().map(|n| n.log_path.clone())
    }

    fn is_running(&self, node: NodeId) -> bool {
        self.node(node).is_ok_and(|n| {
            let mut p = lock(&n.proc);
            match p.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(None)) => true,
                Some(_) => {
                    p.child = None;
                    p.paused = false;
                    false
                }
                None => false,
            }
        })
    }

    async fn start(&self) -> Result<()> {
        for n in &self.nodes {
            self.spawn(n)?;
        }
        for n in &self.nodes {
            self.wait_healthy(n).await?;
        }
        if self.program == Program::Etcd {
            self.learn_etcd_ids().await?;
        }
        Ok(())
    }

    async fn stop(&self, node: NodeId) -> Result<()> {
        let n = self.node(node)?;
        if self.signal(n, libc::SIGCONT)? {
            self.signal(n, libc::SIGTERM)?;
        }
        self.reap_child(n, Duration::from_secs(5), false).await
    }

    async fn kill(&self, node: NodeId) -> Result<()> {
        let n = self.node(node)?;
        self.reap_child(n, Duration::from_secs(5), true).await
    }

    async fn reap(&self, node: NodeId, grace: Duration) -> Result<()> {
        let n = self.node(node)?;
        self.reap_child(n, grace, false).await
    }

    async fn restart(&self, node: NodeId) -> Result<()> {
        let n = self.node(node)?;
        if self.is_running(node) {
            return Ok(());
        }
        self.spawn(n)?;
        self.wait_healthy(n).await
    }

    fn pause(&self, node: NodeId) -> Result<()> {
        let n = self.node(node)?;
        let mut p = lock(&n.proc);
        if p.paused {
            return Ok(());
        }
        let Some(pid) = p.child.as_ref().and_then(|c| c.id()) else {
            return Ok(());
        };
        // SAFETY: see `signal`.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) } != 0 {
            return Err(NemesisError::io(
                format!("cannot pause node {node}"),
                std::io::Error::last_os_error(),
            ));
        }
        p.paused = true;
        Ok(())
    }

    fn resume(&self, node: NodeId) -> Result<()> {
        let n = self.node(node)?;
        let mut p = lock(&n.proc);
        if let Some(pid) = p.child.as_ref().and_then(|c| c.id()) {
            // SAFETY: see `signal`. Sent even if we think it runs: SIGCONT
            // to a running process is harmless, and this heals any doubt.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
        }
        p.paused = false;
        Ok(())
    }

    fn set_link(&self, link: Link, fault: LinkFault) -> Result<()> {
        if self.program == Program::Etcd {
            // The link's bytes travel on connections `from` opened to `to`
            // (its requests) and on those `to` opened to `from` (replies,
            // and the raft streams `to` subscribed to).
            let members = lock(&self.members);
            return match (members.get(&link.to), members.get(&link.from)) {
                (Some(to), Some(from)) => {
                    to.set_inbound(link.from, fault);
                    from.set_outbound(link.to, fault);
                    Ok(())
                }
                // After teardown there is nothing to fault.
                _ if members.is_empty() => Ok(()),
                (None, _) => Err(NemesisError::UnknownNode(link.to)),
                (_, None) => Err(NemesisError::UnknownNode(link.from)),
            };
        }
        let links = lock(&self.links);
        match links.get(&link) {
            Some(proxy) => {
                proxy.set(fault);
                Ok(())
            }
            // After teardown there is nothing to fault, and healing is done.
            None if links.is_empty() => Ok(()),
            None => Err(NemesisError::UnknownNode(link.to)),
        }
    }

    async fn report_leader(&self) -> LeaderReport {
        if self.program != Program::Etcd {
            return LeaderReport::AskAdmin;
        }
        // The member whose status names itself as leader (each member
        // reports whom it follows; a cut-off old leader may still believe
        // it leads, as a Synod node would).
        let ids = lock(&self.etcd_ids).clone();
        for n in &self.nodes {
            if !self.is_running(n.id) {
                continue;
            }
            let Some(status) = self.etcd_call(n, "/v3/maintenance/status").await else {
                continue;
            };
            let me = status.pointer("/header/member_id").and_then(etcd_id);
            let leader = status.get("leader").and_then(etcd_id);
            if let (Some(me), Some(leader)) = (me, leader) {
                if me == leader && ids.get(&me) == Some(&n.id) {
                    return LeaderReport::Reported(Some(n.id));
                }
            }
        }
        LeaderReport::Reported(None)
    }

    async fn teardown(&self) {
        for proxy in lock(&self.links).values() {
            proxy.set(LinkFault::default());
        }
        for proxy in lock(&self.members).values() {
            proxy.heal();
        }
        for n in &self.nodes {
            if let Err(e) = self.reap_child(n, Duration::from_secs(5), true).await {
                tracing::warn!(node = %n.id, error = %e, "teardown could not reap a node");
            }
        }
        // Dropping the proxies stops them and closes their connections.
        let links = std::mem::take(&mut *lock(&self.links));
        drop(links);
        let members = std::mem::take(&mut *lock(&self.members));
        drop(members);
    }
}

impl Drop for LocalBackend {
    /// The last line of defence (a panic, an early return): continue,
    /// kill and reap every child synchronously.
    fn drop(&mut self) {
        for n in &self.nodes {
            let mut p = lock(&n.proc);
            if let Some(mut child) = p.child.take() {
                if let Some(pid) = child.id() {
                    // SAFETY: see `signal`.
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGCONT);
                        libc::kill(pid as libc::pid_t, libc::SIGKILL);
                    }
                }
                for _ in 0..200 {
                    if !matches!(child.try_wait(), Ok(None)) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_member_ids_come_from_the_gateway_member_list() {
        // As etcd 3.4's gateway answers POST /v3/cluster/member/list.
        let reply = json!({"header": {"cluster_id": "7266900810802666328"}, "members": [
            {"ID": "2825987797056917605", "name": "n2", "peerURLs": ["http://127.0.0.1:23802"]},
            {"ID": "4627081221937520288", "name": "n1", "peerURLs": ["http://127.0.0.1:23801"]},
            {"ID": "9272732848952112643", "name": "n3", "peerURLs": ["http://127.0.0.1:23803"]}
        ]});
        let nodes = [NodeId(1), NodeId(2), NodeId(3)];
        let ids = etcd_member_ids(&reply, &nodes).unwrap();
        // The same id X-Server-From carries in hex.
        assert_eq!(ids.get(&0x4036b1db24775ea0), Some(&NodeId(1)));
        assert_eq!(ids.len(), 3);
        // A member missing (not started yet) is an error, not a guess.
        let err = etcd_member_ids(&reply, &[NodeId(1), NodeId(4)]).unwrap_err();
        assert!(err.contains("n4"), "{err}");
        assert!(etcd_member_ids(&json!({}), &nodes).is_err());
    }
}
