//! Real `synod-node` processes on loopback for the server tests: start a
//! cluster on free ports, kill (SIGKILL) and restart nodes, and speak the
//! documented HTTP API to them.
//!
//! Ports are picked by binding `127.0.0.1:0` and releasing; another
//! process could grab one in between, so a start that fails (a node exits
//! or never gets healthy) is retried with fresh ports. Children are killed
//! when the cluster drops, even on a failed assertion. Each node's stdout
//! and stderr go to files under the cluster's directory, which is kept
//! (and printed) when a test fails.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use synod_wire::api::{CasRequest, WriteRequest};
use synod_wire::Role;

pub const TOKEN: &str = "test-token-0123456789";

pub struct Node {
    pub id: u64,
    pub port: u16,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: PathBuf,
    extra: Vec<String>,
    pub http: reqwest::Client,
    /// With [`Cluster::start_on_lazyfs`], each node's data directory is a
    /// mount of the lose-unsynced-writes filesystem, so a power loss drops
    /// what the kernel had but no fsync made durable (a SIGKILL or
    /// `/admin/crash` alone keeps the page cache).
    disks: std::collections::BTreeMap<u64, synod_lazyfs::Mount>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn free_ports(n: usize) -> Vec<u16> {
    // Hold them all at once so the n ports differ.
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

impl Cluster {
    /// Starts `n` nodes with extra flags and waits until every one answers
    /// `/health` and a leader is elected.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, false).await
    }

    /// Like [`Cluster::start`], with every node's data directory on the
    /// lose-unsynced-writes filesystem (strict metadata: a name is durable
    /// only once its directory is fsynced). Panics where FUSE is missing:
    /// the tests that need it run where it is.
    pub async fn start_on_lazyfs(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, true).await
    }

    async fn start_with(n: usize, extra: &[&str], lazy: bool) -> Cluster {
        let mut last_err = String::new();
        for attempt in 0..3 {
            let k = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "synod-server-test-{}-{k}-{attempt}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the test directory");
            let ports = free_ports(n);
            let mut c = Cluster {
                nodes: ports
                    .iter()
                    .enumerate()
                    .map(|(i, &port)| Node {
                        id: i as u64 + 1,
                        port,
                        child: None,
                    })
                    .collect(),
                dir,
                extra: extra.iter().map(|s| s.to_string()).collect(),
                http: http_client(),
                disks: Default::default(),
            };
            if lazy {
                for id in 1..=n as u64 {
                    let mount = synod_lazyfs::Mount::new(&synod_lazyfs::Config {
                        mountpoint: c.data_dir(id),
                        state: c.dir.join(format!("n{id}-fs")),
                        fsync: synod_lazyfs::Fsync::Honest,
                        metadata: synod_lazyfs::Metadata::Strict,
                    })
                    .unwrap_or_else(|e| panic!("cannot mount node {id}'s data directory: {e}"));
                    c.disks.insert(id, mount);
                }
            }
            for id in 1..=n as u64 {
                c.spawn(id);
            }
            let mut ok = true;
            for id in 1..=n as u64 {
                if let Err(e) = c.wait_healthy(id, Duration::from_secs(10)).await {
                    last_err = e;
                    ok = false;
                    break;
                }
            }
            // With proposers=any nobody leads until a client asks.
            let leaderless = extra.contains(&"any");
            if ok && (leaderless || c.wait_leader(Duration::from_secs(10)).await.is_some()) {
                return c;
            }
            if ok {
                last_err = "no leader elected in 10 s".into();
            }
            eprintln!("cluster start attempt {attempt} failed: {last_err}; retrying");
        }
        panic!("cannot start a cluster of {n}: {last_err}");
    }

    pub fn url(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.node(id).port)
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// Starts node `id` (again) with the same port, data and flags.
    pub fn spawn(&mut self, id: u64) {
        self.spawn_with(id, &[]);
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("n{id}"))
    }

    /// Node `id`'s log (stdout and stderr).
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.join(format!("n{id}.log"))).unwrap_or_default()
    }

    /// Waits for node `id` to exit by itself; its status, or `None` if it
    /// is still running after `within`.
    pub async fn wait_exit(
        &mut self,
        id: u64,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < within {
            let node = &mut self.nodes[(id - 1) as usize];
            match node.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(st))) => {
                    node.child = None;
                    return Some(st);
                }
                None => return None,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Starts node `id` (again) with `more` flags on top of the cluster's.
    pub fn spawn_with(&mut self, id: u64, more: &[&str]) {
        let peers: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.id != id)
            .map(|n| format!("{}=http://127.0.0.1:{}", n.id, n.port))
            .collect();
        let node = &self.nodes[(id - 1) as usize];
        let data = self.dir.join(format!("n{id}"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{id}.log")))
            .expect("open the node log");
        let err = out.try_clone().expect("clone the log handle");
        // SYNOD_TEST_NODE_BIN runs another build (A/B against a baseline).
        let bin = std::env::var_os("SYNOD_TEST_NODE_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_synod-node")),
            PathBuf::from,
        );
        let child = Command::new(bin)
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", node.port))
            .arg("--peers")
            .arg(peers.join(","))
            .arg("--data-dir")
            .arg(&data)
            .arg("--token")
            .arg(TOKEN)
            .args(&self.extra)
            .args(more)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn synod-node");
        self.nodes[(id - 1) as usize].child = Some(child);
    }

    /// A power loss of node `id`: SIGKILL, then its filesystem forgets
    /// every write no fsync made durable. Needs [`Cluster::start_on_lazyfs`].
    /// Returns how many bytes were thrown away.
    pub fn power_loss(&mut self, id: u64) -> u64 {
        self.kill(id);
        let disk = self
            .disks
            .get(&id)
            .expect("power_loss needs a cluster started on lazyfs");
        disk.power_loss()
            .unwrap_or_else(|e| panic!("node {id}'s power loss: {e}"))
            .bytes
    }

    /// A power loss of node `id` at a moment its filesystem holds writes
    /// no fsync has made durable yet (polled every millisecond, for at
    /// most `within`; then it strikes anyway). A node that syncs before it
    /// answers is unsynced only briefly, so a power loss at a random
    /// moment mostly finds nothing to drop. Returns the bytes dropped.
    pub async fn power_loss_while_unsynced(&mut self, id: u64, within: Duration) -> u64 {
        let t = Instant::now();
        while t.elapsed() < within && self.disks.get(&id).is_some_and(|d| d.unsynced().bytes == 0) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.power_loss(id)
    }

    /// SIGKILL: no cleanup at all in the node.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[(id - 1) as usize].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let mut c = self.nodes[(id - 1) as usize].child.take()?;
        // SAFETY: sending a signal to our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().ok()
    }

    pub async fn wait_healthy(&mut self, id: u64, within: Duration) -> Result<(), String> {
        let t = Instant::now();
        let url = format!("{}/health", self.url(id));
        while t.elapsed() < within {
            if let Some(c) = self.nodes[(id - 1) as usize].child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.nodes[(id - 1) as usize].child = None;
                    return Err(format!(
                        "node {id} exited with {st} (see {})",
                        self.dir.display()
                    ));
                }
            }
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("node {id} not healthy in {within:?}"))
    }

    pub async fn status(&self, id: u64) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/admin/status", self.url(id)))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// A value of node `id`'s `/admin/metrics`: the line that starts
    /// with `series` (a name with its labels); `None` if the node does
    /// not answer or has no such line.
    pub async fn metric(&self, id: u64, series: &str) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/admin/metrics", self.url(id)))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    }

    /// The running node that says it leads, if exactly one does and every
    /// other running node that answers agrees.
    pub async fn leader(&self) -> Option<u64> {
        let mut leaders = Vec::new();
        let mut believed = Vec::new();
        for id in self.running() {
            if let Some(s) = self.status(id).await {
                if Role::deserialize(&s["role"]).ok() == Some(Role::Leader) {
                    leaders.push(id);
                }
                believed.push(s["leader"].as_u64());
            }
        }
        match leaders.as_slice() {
            [l] if believed.iter().all(|b| *b == Some(*l)) => Some(*l),
            _ => None,
        }
    }

    pub async fn wait_leader(&self, within: Duration) -> Option<u64> {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Some(l) = self.leader().await {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Waits until every running node has applied the same prefix (same
    /// applied index and digest) and returns that status.
    pub async fn wait_converged(&self, within: Duration) -> Result<Vec<Value>, String> {
        let t = Instant::now();
        let mut last = Vec::new();
        while t.elapsed() < within {
            let mut all = Vec::new();
            for id in self.running() {
                match self.status(id).await {
                    Some(s) => all.push(s),
                    None => break,
                }
            }
            let same = all.len() == self.running().len()
                && all.windows(2).all(|w| {
                    w[0]["applied_index"] == w[1]["applied_index"]
                        && w[0]["digest"] == w[1]["digest"]
                });
            if same {
                return Ok(all);
            }
            last = all;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("not converged in {within:?}: {last:?}"))
    }

    pub async fn put(&self, id: u64, key: &str, value: Value) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}/v1/kv/{key}", self.url(id)))
            .json(&WriteRequest {
                value,
                client: None,
                seq: None,
            })
            .send()
            .await;
        decode(r).await
    }

    pub async fn get(&self, id: u64, key: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/v1/kv/{key}", self.url(id)))
            .send()
            .await;
        decode(r).await
    }

    pub async fn cas(&self, id: u64, key: &str, expected: Value, new: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/kv/{key}/cas", self.url(id)))
            .json(&CasRequest {
                expected,
                new,
                client: None,
                seq: None,
            })
            .send()
            .await;
        decode(r).await
    }

    /// Retries a write through the running nodes until one succeeds.
    pub async fn put_eventually(&self, key: &str, value: Value, within: Duration) -> u64 {
        let t = Instant::now();
        loop {
            for id in self.running() {
                let (s, _) = self.put(id, key, value.clone()).await;
                if s == 200 {
                    return id;
                }
            }
            assert!(
                t.elapsed() < within,
                "no node accepted a write to {key} in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Status and JSON body; 0 for a transport error.
pub async fn decode(r: reqwest::Result<reqwest::Response>) -> (u16, Value) {
    match r {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Unmount before the directory goes (or is kept for a look).
        self.disks.clear();
        if std::thread::panicking() {
            eprintln!("node logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn median(xs: &mut [Duration]) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}
