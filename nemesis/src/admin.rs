//! The node's admin API (`docs/api.md`), as the nemesis uses it: find the
//! leader, skew a clock, crash a node with its unsynced writes lost.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use synod_wire::Role;

use crate::backend::{Backend, LeaderReport, NodeName};
use crate::error::{NemesisError, Result};

/// What `GET /admin/status` says; only the fields the nemesis reads.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeStatus {
    /// `None` if the node does not say (not a Synod node).
    #[serde(default)]
    pub role: Option<Role>,
    /// Who this node believes leads, if it says.
    #[serde(default)]
    pub leader: Option<serde_json::Value>,
}

/// An authenticated client for the admin routes of a cluster.
#[derive(Clone)]
pub struct Admin {
    /// Short timeouts: a paused or partitioned node must not stall the
    /// nemesis' schedule.
    http: reqwest::Client,
    token: String,
}

/// A fresh cluster token: 32 hex digits from the OS's random source. A
/// token derived from anything a run records (its seed is in
/// `config.json`) would be published with the run.
pub fn random_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A client for nodes' HTTP APIs: every call bounded by `timeout`, so a
/// paused or partitioned node cannot stall the nemesis.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| NemesisError::io("cannot build an HTTP client", std::io::Error::other(e)))
}

impl Admin {
    pub fn new(token: &str) -> Result<Admin> {
        let http = http_client(Duration::from_secs(1))?;
        Ok(Admin {
            http,
            token: token.to_string(),
        })
    }

    fn err(node: NodeName, what: &'static str, e: impl std::fmt::Display) -> NemesisError {
        NemesisError::Admin {
            node,
            what,
            reason: e.to_string(),
        }
    }

    /// `GET /admin/status`.
    pub async fn status<B: Backend>(&self, backend: &B, node: NodeName) -> Result<NodeStatus> {
        let url = format!("{}/admin/status", backend.url(node)?);
        let r = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| Self::err(node, "status", e))?;
        if !r.status().is_success() {
            return Err(Self::err(node, "status", r.status()));
        }
        r.json().await.map_err(|e| Self::err(node, "status", e))
    }

    /// The node that says it is the leader, if exactly one does (ties go to
    /// the lowest id; `None` if nobody claims it or no node answers). A
    /// backend that knows its own way (etcd) is asked instead.
    pub async fn find_leader<B: Backend>(&self, backend: &B) -> Option<NodeName> {
        if let LeaderReport::Reported(leader) = backend.report_leader().await {
            return leader;
        }
        for node in backend.nodes() {
            if let Ok(s) = self.status(backend, node).await {
                if s.role == Some(Role::Leader) {
                    return Some(node);
                }
            }
        }
        None
    }

    /// `POST /admin/clock`: `now = real_now * rate + offset`.
    pub async fn set_clock<B: Backend>(
        &self,
        backend: &B,
        node: NodeName,
        offset_ms: i64,
        rate: f64,
    ) -> Result<()> {
        let url = format!("{}/admin/clock", backend.url(node)?);
        let r = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(&json!({"offset_ms": offset_ms, "rate": rate}))
            .send()
            .await
            .map_err(|e| Self::err(node, "clock", e))?;
        if !r.status().is_success() {
            return Err(Self::err(node, "clock", r.status()));
        }
        Ok(())
    }

    /// `POST /admin/crash {"lose_unsynced": true}`: the node drops what it
    /// has not fsynced and exits. The connection may die with the node, so
    /// a transport error after sending is expected and not an error.
    pub async fn crash<B: Backend>(&self, backend: &B, node: NodeName) -> Result<()> {
        let url = format!("{}/admin/crash", backend.url(node)?);
        match self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(&json!({"lose_unsynced": true}))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(Self::err(node, "crash", r.status())),
            Err(e) if e.is_connect() => Err(Self::err(node, "crash", e)),
            Err(_) => Ok(()),
        }
    }
}
