//! What every backend that starts etcd shares, wherever the members run
//! (child processes of the local backend, or ssh hosts): finding Debian's
//! `etcd` here, a member's command line, and what only etcd's v3 JSON
//! gateway can say: the member ids (`/v3/cluster/member/list`) and who
//! leads (`/v3/maintenance/status`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::backend::NodeName;
use crate::error::{NemesisError, Result};

/// The environment variable that overrides where `etcd` is.
pub const ETCD_BIN_ENV: &str = "SYNOD_ETCD_BIN";

/// Finds `etcd`: `$SYNOD_ETCD_BIN`, else on `PATH`.
pub fn find_etcd_binary() -> Result<PathBuf> {
    if let Some(p) = crate::local::file_from_env(ETCD_BIN_ENV) {
        return p.map_err(|path| NemesisError::EtcdBinaryMissing { path });
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

/// Where one member listens and how the others find it: the pieces of its
/// command line that differ between backends.
pub struct Member<'a> {
    pub name: NodeName,
    pub data_dir: &'a str,
    /// The client URL it listens on and advertises (the bench's).
    pub client_url: &'a str,
    /// The peer URL it listens on.
    pub listen_peer_url: &'a str,
    /// The peer URL the others reach it at (its member proxy's, locally;
    /// its own on a host).
    pub advertised_peer_url: &'a str,
    /// Every member as `name=advertised-peer-url`, comma-separated.
    pub initial_cluster: &'a str,
    /// Keeps members of another cluster out (etcd's cluster id is
    /// derived from it).
    pub cluster_token: &'a str,
}

impl Member<'_> {
    /// The flags of `etcd` for this member. `--initial-cluster-state new`
    /// is ignored by a member that restarts on its data directory.
    pub fn args(&self) -> Vec<String> {
        [
            ("--name", self.name.to_string()),
            ("--data-dir", self.data_dir.to_string()),
            ("--listen-client-urls", self.client_url.to_string()),
            ("--advertise-client-urls", self.client_url.to_string()),
            ("--listen-peer-urls", self.listen_peer_url.to_string()),
            (
                "--initial-advertise-peer-urls",
                self.advertised_peer_url.to_string(),
            ),
            ("--initial-cluster", self.initial_cluster.to_string()),
            ("--initial-cluster-token", self.cluster_token.to_string()),
            ("--initial-cluster-state", "new".to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }
}

/// `--initial-cluster` for members named by node and reached at their
/// advertised peer URLs.
pub fn initial_cluster<'a>(members: impl IntoIterator<Item = (NodeName, &'a str)>) -> String {
    members
        .into_iter()
        .map(|(name, url)| format!("{name}={url}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// POSTs `{}` to `path` of the v3 JSON gateway at `client_url`; `None` if
/// it does not answer 200 with JSON.
pub async fn call(http: &reqwest::Client, client_url: &str, path: &str) -> Option<Value> {
    let url = format!("{client_url}{path}");
    let r = http.post(url).json(&json!({})).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// The member's own id if its `/v3/maintenance/status` names itself as
/// leader. Each member reports whom it follows; a cut-off old leader may
/// still believe it leads, as a Synod node would.
pub fn leads(status: &Value) -> Option<u64> {
    let me = status.pointer("/header/member_id").and_then(id)?;
    let leader = status.get("leader").and_then(id)?;
    (me == leader).then_some(me)
}

/// Asks every member in `members` (node, client URL) for its status; the
/// first that names itself leader.
pub async fn leader(http: &reqwest::Client, members: &[(NodeName, String)]) -> Option<NodeName> {
    for (node, url) in members {
        let status = call(http, url, "/v3/maintenance/status").await;
        if status.as_ref().and_then(leads).is_some() {
            return Some(*node);
        }
    }
    None
}

/// Reads etcd's member list (`{"members":[{"ID":"<decimal>","name":"n1"},
/// ...]}`; the gateway writes 64-bit ids as strings) into id -> node, and
/// insists that every node is a member.
pub fn member_ids(
    reply: &Value,
    nodes: &[NodeName],
) -> std::result::Result<BTreeMap<u64, NodeName>, String> {
    let members = reply
        .get("members")
        .and_then(Value::as_array)
        .ok_or("the member list has no members")?;
    let mut ids = BTreeMap::new();
    for m in members {
        let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
        let id = m.get("ID").and_then(id);
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
fn id(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_come_from_the_gateway_member_list() {
        // As etcd 3.4's gateway answers POST /v3/cluster/member/list.
        let reply = json!({"header": {"cluster_id": "7266900810802666328"}, "members": [
            {"ID": "2825987797056917605", "name": "n2", "peerURLs": ["http://127.0.0.1:23802"]},
            {"ID": "4627081221937520288", "name": "n1", "peerURLs": ["http://127.0.0.1:23801"]},
            {"ID": "9272732848952112643", "name": "n3", "peerURLs": ["http://127.0.0.1:23803"]}
        ]});
        let nodes = [NodeName(1), NodeName(2), NodeName(3)];
        let ids = member_ids(&reply, &nodes).unwrap();
        // The same id X-Server-From carries in hex.
        assert_eq!(ids.get(&0x4036b1db24775ea0), Some(&NodeName(1)));
        assert_eq!(ids.len(), 3);
        // A member missing (not started yet) is an error, not a guess.
        let err = member_ids(&reply, &[NodeName(1), NodeName(4)]).unwrap_err();
        assert!(err.contains("n4"), "{err}");
        assert!(member_ids(&json!({}), &nodes).is_err());
    }

    #[test]
    fn only_a_member_that_names_itself_leads() {
        // As etcd 3.4's gateway answers POST /v3/maintenance/status.
        let leader = json!({"header": {"member_id": "4627081221937520288"},
                            "leader": "4627081221937520288", "version": "3.4.23"});
        assert_eq!(leads(&leader), Some(4627081221937520288));
        let follower = json!({"header": {"member_id": "2825987797056917605"},
                              "leader": "4627081221937520288"});
        assert_eq!(leads(&follower), None);
        assert_eq!(leads(&json!({"leader": "0"})), None);
    }

    #[test]
    fn a_member_command_line_names_the_whole_cluster() {
        let cluster = initial_cluster([
            (NodeName(1), "http://10.0.0.11:2380"),
            (NodeName(2), "http://10.0.0.12:2380"),
        ]);
        assert_eq!(cluster, "n1=http://10.0.0.11:2380,n2=http://10.0.0.12:2380");
        let args = Member {
            name: NodeName(2),
            data_dir: "/tmp/r-n2/data",
            client_url: "http://10.0.0.12:2379",
            listen_peer_url: "http://10.0.0.12:2380",
            advertised_peer_url: "http://10.0.0.12:2380",
            initial_cluster: &cluster,
            cluster_token: "synod-run",
        }
        .args();
        let flag = |f: &str| {
            let i = args.iter().position(|a| a == f).unwrap();
            args[i + 1].as_str()
        };
        assert_eq!(flag("--name"), "n2");
        assert_eq!(flag("--initial-cluster"), cluster);
        assert_eq!(flag("--advertise-client-urls"), "http://10.0.0.12:2379");
        assert_eq!(flag("--initial-cluster-state"), "new");
    }
}
