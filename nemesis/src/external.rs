//! The `external` backend: a cluster someone else started, known only by
//! its nodes' URLs and token. The workload runs against it and the faults
//! that go through the node's admin API (clock skew, power loss) apply;
//! everything that needs control of the processes or the network (kill,
//! pause, partitions, loss, delay, resets) is refused by name.
//!
//! After a power loss the node is down until whatever supervises it (a
//! restart policy, systemd) starts it again: `restart` waits for that.

use std::path::PathBuf;
use std::time::Duration;

use crate::backend::{Backend, Link, LinkFault, NodeName};
use crate::error::{NemesisError, Result};
use crate::fault::FaultKind;

/// The faults an external cluster supports: those of the admin API.
pub const EXTERNAL_FAULTS: [FaultKind; 2] = [FaultKind::Clock, FaultKind::PowerLoss];

/// Nodes at fixed URLs, numbered n1, n2, ... in the order given.
pub struct ExternalBackend {
    urls: Vec<String>,
    token: String,
    /// How long `start` and `restart` wait for `/health`.
    ready_timeout: Duration,
    http: reqwest::Client,
}

fn refuse(what: &str) -> NemesisError {
    NemesisError::Unsupported(format!(
        "{what} on an external cluster (only the admin API's faults apply there: {})",
        EXTERNAL_FAULTS.map(FaultKind::name).join(", ")
    ))
}

impl ExternalBackend {
    /// `urls` like `http://10.0.0.1:7000`; a trailing `/` is dropped.
    pub fn new(urls: Vec<String>, token: String, ready_timeout: Duration) -> Result<Self> {
        if urls.is_empty() {
            return Err(NemesisError::Unsupported(
                "an external cluster with no node URLs".into(),
            ));
        }
        let mut clean = Vec::new();
        for u in urls {
            let u = u.trim().trim_end_matches('/').to_string();
            if !u.starts_with("http://") && !u.starts_with("https://") {
                return Err(NemesisError::Unsupported(format!(
                    "node URL {u:?}: expected http://HOST:PORT"
                )));
            }
            clean.push(u);
        }
        let http = crate::admin::http_client(Duration::from_millis(500))?;
        Ok(ExternalBackend {
            urls: clean,
            token,
            ready_timeout,
            http,
        })
    }

    async fn healthy(&self, node: NodeName) -> bool {
        let Ok(url) = self.url(node) else {
            return false;
        };
        matches!(
            self.http.get(format!("{url}/health")).send().await,
            Ok(r) if r.status().is_success()
        )
    }

    async fn wait_healthy(&self, node: NodeName) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        while !self.healthy(node).await {
            if tokio::time::Instant::now() >= deadline {
                return Err(NemesisError::NotHealthy {
                    node,
                    reason: format!(
                        "no answer on {}/health within {:?}",
                        self.url(node)?,
                        self.ready_timeout
                    ),
                    log: PathBuf::from("(an external node: its log is wherever it runs)"),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }
}

impl Backend for ExternalBackend {
    fn nodes(&self) -> Vec<NodeName> {
        (1..=self.urls.len() as u32).map(NodeName).collect()
    }

    fn url(&self, node: NodeName) -> Result<String> {
        self.urls
            .get((node.0 as usize).wrapping_sub(1))
            .cloned()
            .ok_or(NemesisError::UnknownNode(node))
    }

    fn token(&self) -> &str {
        &self.token
    }

    fn log_path(&self, _node: NodeName) -> Option<PathBuf> {
        None
    }

    /// Assumed running: after a power loss `reap` and `restart` wait on
    /// `/health` instead.
    fn is_running(&self, _node: NodeName) -> bool {
        true
    }

    async fn start(&self) -> Result<()> {
        for node in self.nodes() {
            self.wait_healthy(node).await?;
        }
        Ok(())
    }

    async fn stop(&self, _node: NodeName) -> Result<()> {
        Err(refuse("stopping a node"))
    }

    async fn kill(&self, _node: NodeName) -> Result<()> {
        Err(refuse("kill"))
    }

    /// After an admin crash: gives the supervisor `grace` plus the ready
    /// timeout to bring the node back.
    async fn reap(&self, node: NodeName, grace: Duration) -> Result<()> {
        tokio::time::sleep(grace.min(Duration::from_secs(1))).await;
        self.wait_healthy(node).await
    }

    async fn restart(&self, node: NodeName) -> Result<()> {
        self.wait_healthy(node).await
    }

    fn pause(&self, _node: NodeName) -> Result<()> {
        Err(refuse("pause"))
    }

    /// Nothing was paused, so nothing to continue.
    fn resume(&self, _node: NodeName) -> Result<()> {
        Ok(())
    }

    fn set_link(&self, _link: Link, fault: LinkFault) -> Result<()> {
        if fault.is_healthy() {
            Ok(())
        } else {
            Err(refuse("network faults (partition, one-way, delay, reset)"))
        }
    }

    async fn teardown(&self) {}
}
