//! The local nodes as child processes: spawned with their log, their
//! environment and a parent-death signal, waited for until they answer
//! `/health`, signalled, reaped, and killed synchronously by `Drop` if
//! teardown never ran; and the ports they listen on.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{lock, LocalBackend, LocalNode, Program};
use crate::error::{NemesisError, Result};
use crate::leftovers::{owner_mark, OWNER_ENV};

impl LocalBackend {
    pub(super) fn spawn(&self, node: &LocalNode) -> Result<()> {
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
        if let Some(lib) = &self.faketime {
            // Every start begins on true time, as the admin clock does.
            crate::faketime::write(
                &node.clock_file,
                &crate::faketime::spec(0, 1.0, Duration::ZERO),
            )?;
            cmd.envs(crate::faketime::env(lib, &node.clock_file));
        }
        cmd.args(&node.args)
            // Marks the process as ours for `synod clean`.
            .env(OWNER_ENV, owner_mark());
        if self.program == Program::Synod {
            // In the environment, not on the command line, where `ps`
            // would show it to everyone.
            cmd.env("SYNOD_TOKEN", &self.token)
                .env_remove("SYNOD_TOKEN_FILE");
            // Every node of a local cluster shares this machine's cores:
            // one async worker each (unless the caller chose) spends less
            // CPU on waking threads than one per core does, and loses no
            // throughput (issue 19's closing note has the figures).
            if std::env::var_os("SYNOD_WORKER_THREADS").is_none() {
                cmd.env("SYNOD_WORKER_THREADS", "1");
            }
        }
        cmd.stdin(Stdio::null())
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
        // The node binds its ports as it starts; until now they were held.
        for hold in lock(&node.ports).iter_mut() {
            hold.release();
        }
        let child = cmd.spawn().map_err(|source| NemesisError::Spawn {
            node: node.id,
            bin: self.bin.clone(),
            source,
        })?;
        tracing::debug!(node = %node.id, pid = ?child.id(), "node started");
        p.child = Some(child);
        p.paused = false;
        p.clock = crate::faketime::FakeClock::started_now();
        Ok(())
    }

    /// Polls `/health` until it answers 200, failing early if the process
    /// exits.
    pub(super) async fn wait_healthy(&self, node: &LocalNode) -> Result<()> {
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

    /// Sends `signal` to the node's process, if it runs.
    pub(super) fn signal(&self, node: &LocalNode, signal: libc::c_int) -> Result<bool> {
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
    pub(super) async fn reap_child(
        &self,
        node: &LocalNode,
        grace: Duration,
        kill_first: bool,
    ) -> Result<()> {
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

/// A port picked for a node, held bound until the node's first start.
///
/// A free port picked and released at once could go to the next pick, to
/// a link proxy's listener or to a client's connection before the node
/// binds it, and the node would fail to start. Held, the port is ours
/// until [`PortHold::release`], right before the node's process is
/// spawned.
pub(super) struct PortHold {
    pub port: u16,
    listener: Option<TcpListener>,
}

impl PortHold {
    /// Frees the port for the node about to bind it. Later calls do
    /// nothing: a restarted node binds the port it had.
    pub fn release(&mut self) {
        self.listener = None;
    }
}

/// Picks a port to listen on, `base + k` if it is free, else a free
/// ephemeral one, and holds it (see [`PortHold`]).
pub(super) fn pick_port(base: Option<u16>, k: u16) -> Result<PortHold> {
    let listener = match base {
        Some(base) => {
            let port = base.checked_add(k).ok_or_else(|| {
                NemesisError::io(
                    format!("--base-port {base} leaves no room for node {}", k + 1),
                    std::io::Error::from(std::io::ErrorKind::InvalidInput),
                )
            })?;
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(NemesisError::PortInUse { port })
                }
                Err(e) => return Err(NemesisError::io(format!("cannot bind 127.0.0.1:{port}"), e)),
            }
        }
        None => TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| NemesisError::io("cannot find a free port", e))?,
    };
    let port = listener
        .local_addr()
        .map_err(|e| NemesisError::io("cannot find a free port", e))?
        .port();
    Ok(PortHold {
        port,
        listener: Some(listener),
    })
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

impl Drop for LocalBackend {
    /// The last line of defence (a panic, an early return): continue,
    /// kill and reap every child synchronously (the mounts unmount as
    /// they drop, after this).
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
