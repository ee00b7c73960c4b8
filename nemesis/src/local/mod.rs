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
//! are signals; power loss goes through the lose-unsynced-writes
//! filesystem for either program. etcd has no clock API and libfaketime
//! does not reach it ([`crate::faketime`]), so clock faults are Synod's
//! only; etcd's leader is found through its v3 gateway
//! (`/v3/maintenance/status`), member ids through `/v3/cluster/member/list`.
//!
//! Inside the run directory it keeps, per node, `nodes/nK/data/` (the
//! node's durable state, kept across kills and restarts) and `nodes/nK.log`
//! (stdout and stderr, appended across restarts). With [`Disk::Lazy`] each
//! `data/` is a mount of the lose-unsynced-writes filesystem
//! ([`synod_lazyfs`]), its state in `nodes/nK/fs/` (`disk/` what was
//! durable, `cache/` what the node saw), so a power loss works for any
//! program: SIGKILL, then the filesystem forgets what was not synced. Listen ports are fixed
//! for the cluster's life, so a restarted node is found where it was.
//!
//! Children are killed whatever happens to us: explicitly in
//! [`Backend::teardown`], synchronously in `Drop` (a panic or an early
//! return), by tokio's `kill_on_drop`, and by the kernel through
//! `PR_SET_PDEATHSIG` if the bench itself is killed; and each carries the
//! owner mark of [`crate::leftovers`] in its environment, by which `synod
//! clean` finds any that outlived us. A node gets the cluster token in its
//! environment (`SYNOD_TOKEN`), not on its command line.
//!
//! Here: the configuration, the cluster's construction and the
//! [`Backend`] impl. `process` holds the child processes (spawn, wait,
//! signal, reap, the synchronous kill in `Drop`) and `etcd` what only
//! an etcd cluster needs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::Child;

use crate::backend::{Backend, LeaderReport, Link, LinkFault, NodeName};
pub use crate::disk::Disk;
use crate::disk::{data_dir, DataDisks};
use crate::error::{NemesisError, Result};
use crate::lock;
use crate::member_proxy::MemberProxy;
use crate::proxy::LinkProxy;

mod etcd;
mod process;

use process::{pick_port, PortHold};

pub use crate::etcd::{find_etcd_binary, ETCD_BIN_ENV};

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

/// The file an environment variable names, if it is set: `Ok` if it is a
/// file, `Err` with the path if not.
pub(crate) fn file_from_env(var: &str) -> Option<std::result::Result<PathBuf, PathBuf>> {
    let p = PathBuf::from(std::env::var_os(var)?);
    Some(if p.is_file() { Ok(p) } else { Err(p) })
}

/// How clock faults reach the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Synod's `POST /admin/clock`.
    Admin,
    /// libfaketime preloaded into every node, its control file
    /// `nodes/nK/faketime` rewritten by the nemesis ([`crate::faketime`]).
    Faketime,
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
    /// What the data directories are on.
    pub disk: Disk,
    /// How clock faults reach the nodes.
    pub clock: Clock,
}

/// Finds `synod-node`: `$SYNOD_NODE_BIN`, else next to the running
/// executable (cargo puts every binary of the workspace in
/// `target/<profile>/`; tests run from `target/<profile>/deps/`).
pub fn find_node_binary() -> Result<PathBuf> {
    if let Some(p) = file_from_env(NODE_BIN_ENV) {
        return p.map_err(|path| NemesisError::NodeBinaryMissing { path });
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
    /// The process's clock under libfaketime, kept continuous across
    /// settings ([`crate::faketime::FakeClock`]).
    clock: crate::faketime::FakeClock,
}

struct LocalNode {
    id: NodeName,
    /// Fixed for the cluster's life so proxies and clients keep working
    /// across restarts.
    listen: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// libfaketime's control file for this node (used with
    /// [`Clock::Faketime`]).
    clock_file: PathBuf,
    /// The full command line after the binary, the same on every restart.
    args: Vec<String>,
    /// The ports the node listens on, held from the pick to its first
    /// start.
    ports: Mutex<Vec<PortHold>>,
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
    members: Mutex<BTreeMap<NodeName, MemberProxy>>,
    /// etcd's member ids, learnt once the cluster is up (they never change:
    /// a restarted member keeps its data directory).
    etcd_ids: Mutex<BTreeMap<u64, NodeName>>,
    /// With [`Clock::Faketime`], the library preloaded into every node.
    faketime: Option<PathBuf>,
    /// With [`Disk::Lazy`], each node's mounted data directory; unmounted
    /// by teardown, after the nodes are dead.
    disks: DataDisks,
}

impl LocalBackend {
    /// Checks the ports and the binary, creates the directories and starts
    /// the proxies. No node runs until [`Backend::start`].
    pub async fn new(config: LocalConfig) -> Result<LocalBackend> {
        let n = config.nodes;
        let ids: Vec<NodeName> = (1..=n).map(NodeName).collect();
        // Held until each node's first start (see `PortHold`).
        let mut holds = Vec::new();
        for (k, _) in ids.iter().enumerate() {
            holds.push(pick_port(config.base_port, k as u16)?);
        }
        let ports: Vec<u16> = holds.iter().map(|h| h.port).collect();
        let etcd = config.program == Program::Etcd;
        let bin = match config.node_bin.clone() {
            Some(p) if p.is_file() => p,
            Some(p) if etcd => return Err(NemesisError::EtcdBinaryMissing { path: p }),
            Some(p) => return Err(NemesisError::NodeBinaryMissing { path: p }),
            None if etcd => find_etcd_binary()?,
            None => find_node_binary()?,
        };
        // etcd also needs a peer port per member, behind its proxy.
        let (peer_holds, members) = if etcd {
            etcd::start_member_proxies(&ids).await?
        } else {
            (Vec::new(), BTreeMap::new())
        };
        let peer_ports: Vec<u16> = peer_holds.iter().map(|h| h.port).collect();
        let mut holds: Vec<Vec<PortHold>> = holds.into_iter().map(|h| vec![h]).collect();
        for (k, h) in peer_holds.into_iter().enumerate() {
            holds[k].push(h);
        }
        let mut holds = holds.into_iter();
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
        let faketime = match config.clock {
            Clock::Faketime if etcd => {
                return Err(NemesisError::Unsupported(format!(
                    "clock faults on etcd: {}",
                    crate::faketime::ETCD_UNREACHABLE
                )))
            }
            Clock::Faketime => Some(crate::faketime::find_library()?),
            Clock::Admin => None,
        };
        let mut nodes = Vec::new();
        let disks = DataDisks::new(&nodes_dir, &ids, config.disk, None)?;
        for &id in &ids {
            let data_dir = data_dir(&nodes_dir, id);
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
                etcd::member_args(
                    id,
                    &ids,
                    &data_dir,
                    ports[(id.0 - 1) as usize],
                    peer_ports[(id.0 - 1) as usize],
                    &members,
                    &config.token,
                )
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
                ]
            };
            args.extend(config.node_args.iter().cloned());
            nodes.push(LocalNode {
                id,
                listen: listen[(id.0 - 1) as usize],
                data_dir,
                log_path,
                clock_file: nodes_dir.join(id.to_string()).join("faketime"),
                args,
                ports: Mutex::new(holds.next().unwrap_or_default()),
                proc: Mutex::new(Proc {
                    child: None,
                    paused: false,
                    clock: crate::faketime::FakeClock::started_now(),
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
            faketime,
            disks,
        })
    }

    fn node(&self, id: NodeName) -> Result<&LocalNode> {
        self.nodes
            .get((id.0 as usize).wrapping_sub(1))
            .filter(|n| n.id == id)
            .ok_or(NemesisError::UnknownNode(id))
    }

    /// The OS process id of `node`, if it runs.
    pub fn pid(&self, node: NodeName) -> Option<u32> {
        let n = self.node(node).ok()?;
        let p = lock(&n.proc);
        p.child.as_ref().and_then(|c| c.id())
    }

    /// The binary the nodes run.
    pub fn node_binary(&self) -> &Path {
        &self.bin
    }

    /// The node's data directory.
    pub fn data_dir(&self, node: NodeName) -> Option<PathBuf> {
        self.node(node).ok().map(|n| n.data_dir.clone())
    }
}

impl Backend for LocalBackend {
    fn nodes(&self) -> Vec<NodeName> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn url(&self, node: NodeName) -> Result<String> {
        Ok(format!("http://{}", self.node(node)?.listen))
    }

    fn token(&self) -> &str {
        &self.token
    }

    fn log_path(&self, node: NodeName) -> Option<PathBuf> {
        self.node(node).ok().map(|n| n.log_path.clone())
    }

    fn is_running(&self, node: NodeName) -> bool {
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

    async fn stop(&self, node: NodeName) -> Result<()> {
        let n = self.node(node)?;
        if self.signal(n, libc::SIGCONT)? {
            self.signal(n, libc::SIGTERM)?;
        }
        self.reap_child(n, Duration::from_secs(5), false).await
    }

    async fn kill(&self, node: NodeName) -> Result<()> {
        let n = self.node(node)?;
        self.reap_child(n, Duration::from_secs(5), true).await
    }

    async fn reap(&self, node: NodeName, grace: Duration) -> Result<()> {
        let n = self.node(node)?;
        self.reap_child(n, grace, false).await
    }

    async fn restart(&self, node: NodeName) -> Result<()> {
        let n = self.node(node)?;
        if self.is_running(node) {
            return Ok(());
        }
        self.spawn(n)?;
        self.wait_healthy(n).await
    }

    fn pause(&self, node: NodeName) -> Result<()> {
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

    fn resume(&self, node: NodeName) -> Result<()> {
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

    fn loses_unsynced_writes(&self) -> bool {
        self.disks.lazy()
    }

    fn skews_clocks(&self) -> bool {
        self.faketime.is_some()
    }

    fn skew_clock(&self, node: NodeName, offset_ms: i64, rate: f64) -> Result<()> {
        let n = self.node(node)?;
        if self.faketime.is_none() {
            return Err(NemesisError::Unsupported(
                "this cluster's clocks are set through the admin API".into(),
            ));
        }
        let line = lock(&n.proc)
            .clock
            .line(offset_ms, rate, std::time::Instant::now());
        crate::faketime::write(&n.clock_file, &line)
    }

    async fn power_off(&self, node: NodeName) -> Result<()> {
        let n = self.node(node)?;
        if !self.disks.lazy() {
            return Err(DataDisks::not_lazy(node));
        }
        // Dead first: nothing may write between the kill and the drop.
        self.reap_child(n, Duration::from_secs(5), true).await?;
        self.disks.power_loss(node)
    }

    async fn report_leader(&self) -> LeaderReport {
        if self.program != Program::Etcd {
            return LeaderReport::AskAdmin;
        }
        LeaderReport::Reported(self.etcd_leader().await)
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
        // The nodes are dead: nothing holds the mounts.
        self.disks.unmount_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn in_use(port: u16) -> bool {
        matches!(
            TcpListener::bind(("127.0.0.1", port)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
        )
    }

    #[test]
    fn a_picked_port_is_held_until_released() {
        let mut a = pick_port(None, 0).unwrap();
        assert!(in_use(a.port), "a picked port is still bound");
        // The next pick cannot be handed the same port.
        let b = pick_port(None, 0).unwrap();
        assert_ne!(a.port, b.port);
        a.release();
        assert!(!in_use(a.port), "released for the node to bind");
        a.release();
        // With a base port, the port the user named is held the same way,
        // and a second pick of it is refused as in use.
        let c = pick_port(Some(b.port), 0);
        assert!(matches!(c, Err(NemesisError::PortInUse { port }) if port == b.port));
    }

    /// The nodes' ports stay bound while the link proxies (which bind
    /// ephemeral ports of their own) start, and are freed only as each
    /// node is spawned; before this, a proxy or the next pick could be
    /// handed a node's port and the node failed to start.
    #[tokio::test]
    async fn a_clusters_ports_are_held_from_the_pick_to_the_start() {
        let dir = std::env::temp_dir().join(format!("synod-port-hold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let backend = LocalBackend::new(LocalConfig {
            program: Program::Synod,
            nodes: 3,
            // Any program passes the binary check; `true` exits at once.
            node_bin: Some(PathBuf::from("/bin/true")),
            dir: dir.clone(),
            token: "port-hold-test".into(),
            node_args: Vec::new(),
            base_port: None,
            ready_timeout: Duration::from_secs(1),
            disk: Disk::Plain,
            clock: Clock::Admin,
        })
        .await
        .unwrap();
        let ports: Vec<u16> = backend.nodes.iter().map(|n| n.listen.port()).collect();
        for &p in &ports {
            assert!(in_use(p), "node port {p} is held before the start");
        }
        let proxies: Vec<u16> = lock(&backend.links)
            .values()
            .map(|l| l.listen_addr().port())
            .collect();
        assert_eq!(proxies.len(), 6);
        assert!(proxies.iter().all(|p| !ports.contains(p)));
        // The "node" is `true`: what matters is that spawning frees the
        // port.
        for n in &backend.nodes {
            backend.spawn(n).unwrap();
        }
        for &p in &ports {
            assert!(!in_use(p), "node port {p} is free for the node to bind");
        }
        backend.teardown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
