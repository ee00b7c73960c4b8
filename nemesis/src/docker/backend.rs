//! The [`Backend`] impl: the containers found after `compose up`, killed
//! and started with `docker kill` and `docker start` (the volume and the
//! address stay), paused with `docker pause`, waited for until healthy or
//! exited, and the whole project torn down at the end, by teardown or, if
//! it never ran, by `Drop`.

use std::path::PathBuf;
use std::process::Command as StdCommand;
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::Command;

use super::{lock, other, pid_alive, run_async, run_sync, Container, DockerBackend, NODE_PORT};
use crate::backend::{Backend, Link, LinkFault, NodeName};
use crate::disk::DataDisks;
use crate::error::{NemesisError, Result};

impl DockerBackend {
    pub(super) fn container(&self, node: NodeName) -> Result<std::sync::Arc<Container>> {
        lock(&self.containers)
            .iter()
            .find(|c| c.id == node)
            .cloned()
            .ok_or(NemesisError::UnknownNode(node))
    }

    /// The host PID of `node`'s container process, if it runs: what
    /// `nsenter -t PID -n` enters.
    pub fn pid(&self, node: NodeName) -> Option<u32> {
        let c = self.container(node).ok()?;
        let pid = *lock(&c.pid);
        pid.filter(|p| pid_alive(*p))
    }

    /// The container's address on the compose network.
    pub fn address(&self, node: NodeName) -> Result<String> {
        Ok(self.container(node)?.addr.clone())
    }

    /// Docker's id of `node`'s container.
    pub fn container_id(&self, node: NodeName) -> Result<String> {
        Ok(self.container(node)?.cid.clone())
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
}

impl Backend for DockerBackend {
    fn nodes(&self) -> Vec<NodeName> {
        (1..=self.nodes).map(NodeName).collect()
    }

    fn url(&self, node: NodeName) -> Result<String> {
        Ok(format!("http://{}:{NODE_PORT}", self.container(node)?.addr))
    }

    fn token(&self) -> &str {
        &self.token
    }

    fn log_path(&self, node: NodeName) -> Option<PathBuf> {
        Some(self.dir.join("nodes").join(format!("{node}.log")))
    }

    fn is_running(&self, node: NodeName) -> bool {
        self.pid(node).is_some()
    }

    async fn start(&self) -> Result<()> {
        let mut up = Command::from(self.compose());
        run_async(up.args(["up", "-d", "--no-build"]), "compose up").await?;
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
                    "compose up left no container for {id} in project {}",
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

    async fn stop(&self, node: NodeName) -> Result<()> {
        let c = self.container(node)?;
        if std::mem::take(&mut *lock(&c.paused)) {
            let _ = self.docker(&["unpause", &c.cid]).await;
        }
        self.docker(&["stop", "--time", "5", &c.cid]).await?;
        *lock(&c.pid) = None;
        Ok(())
    }

    async fn kill(&self, node: NodeName) -> Result<()> {
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

    async fn reap(&self, node: NodeName, grace: Duration) -> Result<()> {
        let c = self.container(node)?;
        if !self.wait_exited(&c, grace).await {
            return self.kill(node).await;
        }
        *lock(&c.pid) = None;
        *lock(&c.paused) = false;
        Ok(())
    }

    async fn restart(&self, node: NodeName) -> Result<()> {
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

    fn pause(&self, node: NodeName) -> Result<()> {
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

    fn resume(&self, node: NodeName) -> Result<()> {
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
        self.disks.unmount_all();
    }

    fn loses_unsynced_writes(&self) -> bool {
        self.disks.lazy()
    }

    async fn power_off(&self, node: NodeName) -> Result<()> {
        if !self.disks.lazy() {
            return Err(DataDisks::not_lazy(node));
        }
        // The container's process dead first, then its unsynced writes.
        self.kill(node).await?;
        self.disks.power_loss(node)
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
        self.disks.unmount_all();
    }
}
