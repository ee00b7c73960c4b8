//! The etcd side of the local backend: the member proxies in front of
//! each member's peer port, each member's command line behind them, and
//! the member ids the proxies tell senders by. What any backend that
//! starts etcd needs (the binary, the command line, the v3 gateway's
//! answers) is in [`crate::etcd`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{lock, pick_port, LocalBackend, LocalNode, PortHold};
use crate::backend::{Backend, NodeName};
use crate::error::{NemesisError, Result};
use crate::etcd;
use crate::member_proxy::MemberProxy;

/// A peer port for every member, held until the member starts, and the
/// [`MemberProxy`] in front of it.
pub(super) async fn start_member_proxies(
    ids: &[NodeName],
) -> Result<(Vec<PortHold>, BTreeMap<NodeName, MemberProxy>)> {
    let mut peer_ports = Vec::new();
    let mut members = BTreeMap::new();
    for &id in ids {
        let hold = pick_port(None, 0)?;
        let port = hold.port;
        peer_ports.push(hold);
        let proxy = MemberProxy::start(id, SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .map_err(|e| NemesisError::io(format!("cannot start the member proxy of {id}"), e))?;
        members.insert(id, proxy);
    }
    Ok((peer_ports, members))
}

/// Member `id`'s command line: its client port, its peer port behind its
/// proxy, and the cluster as the proxies' addresses.
pub(super) fn member_args(
    id: NodeName,
    ids: &[NodeName],
    data_dir: &Path,
    client_port: u16,
    peer_port: u16,
    members: &BTreeMap<NodeName, MemberProxy>,
    token: &str,
) -> Vec<String> {
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    // Members find each other at their proxies; each listens on its own
    // port behind its proxy.
    let advertised: BTreeMap<NodeName, String> = ids
        .iter()
        .map(|&j| {
            let proxy = members
                .get(&j)
                .map(|p| format!("http://{}", p.listen_addr()));
            (j, proxy.unwrap_or_default())
        })
        .collect();
    let cluster = etcd::initial_cluster(advertised.iter().map(|(j, u)| (*j, u.as_str())));
    etcd::Member {
        name: id,
        data_dir: &data_dir.display().to_string(),
        client_url: &url(client_port),
        listen_peer_url: &url(peer_port),
        advertised_peer_url: advertised.get(&id).map(String::as_str).unwrap_or_default(),
        initial_cluster: &cluster,
        cluster_token: token,
    }
    .args()
}

impl LocalBackend {
    /// POSTs `{}` to `path` of an etcd member's v3 JSON gateway.
    async fn etcd_call(&self, node: &LocalNode, path: &str) -> Option<Value> {
        etcd::call(&self.http, &format!("http://{}", node.listen), path).await
    }

    /// Learns etcd's member ids (`/v3/cluster/member/list`, names are our
    /// node names) and hands them to every member proxy, so each
    /// connection follows its own link.
    pub(super) async fn learn_etcd_ids(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        let mut last = String::from("no member answered");
        loop {
            for n in &self.nodes {
                let Some(reply) = self.etcd_call(n, "/v3/cluster/member/list").await else {
                    continue;
                };
                match etcd::member_ids(&reply, &self.nodes()) {
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

    /// The member whose status names itself as leader, if any answers so.
    pub(super) async fn etcd_leader(&self) -> Option<NodeName> {
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
            let me = etcd::leads(&status);
            if me.is_some_and(|me| ids.get(&me) == Some(&n.id)) {
                return Some(n.id);
            }
        }
        None
    }
}
