//! Joining the cluster: what an empty data directory means, decided with
//! the peers before this node answers any protocol message.
//!
//! A data directory with an `IDENTITY` file belongs to one node of one
//! cluster and starts at once. Without one, this node is either brand new
//! or lost its disk, and only the peers can tell which: each remembers
//! the members it ever acted on a message from (`IDENTITY.seen`), so this
//! node asks every other member (`GET /peer/v1/identity`), serving the
//! same question itself meanwhile, and then:
//!
//! * if any peer has heard from it, its promises and votes are gone: it
//!   refuses to start ([`JoinError::LostState`]) unless `--rejoin` says to
//!   recover (see the replica's "Rejoining"), which needs every other
//!   member's promise to set its floor;
//! * if every peer answered and none has heard from it, it is new: it
//!   takes the cluster id of the peers that have one, or, if none has, the
//!   lowest member draws one at random (the others wait for it), so a
//!   brand-new cluster forms when every member starts empty.
//!
//! The cluster id travels with every peer batch afterwards, so a node on
//! another cluster's data directory (or peers list) is refused.

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use synod_node::storage::identity::{self, Identity};
use synod_node::storage::{FileStorage, Record, Recovered, Storage, StorageError};
use synod_node::{Ballot, Config, NodeId};

/// How often an undecided node asks its peers again.
const POLL: Duration = Duration::from_millis(100);

/// How often it says whom it is waiting for.
const REPORT: Duration = Duration::from_secs(2);

/// `GET /peer/v1/identity`: what a node says about itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdentityView {
    pub node: NodeId,
    /// `None` while the node has not joined a cluster yet.
    pub cluster: Option<String>,
    /// Members this node has acted on a message from.
    #[serde(default)]
    pub seen: Vec<NodeId>,
    /// Its promise (`None` while it has not joined).
    pub promised: Option<Ballot>,
}

/// Why a node must not start.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("{dir}: the data directory is empty, but node {peer} of cluster {cluster} has heard from this node (n{node}) before: its promises and votes are lost, and coming back as a fresh acceptor could undo chosen values. Restore the directory from a backup, or start this node with --rejoin to recover safely (it learns from the others and votes again once a leader elected after its restart has re-chosen everything its lost votes counted for)")]
    LostState {
        dir: String,
        node: NodeId,
        peer: NodeId,
        cluster: String,
    },
}

/// Where a starting node stands once it has decided.
pub struct Joined {
    pub identity: Identity,
    pub recovered: Recovered,
}

/// What one peer said.
#[derive(Debug)]
enum Answer {
    Unreachable(String),
    Says(IdentityView),
}

/// Opens the way into the cluster: returns this node's identity and its
/// recovered state, after asking the peers if the directory is empty (see
/// the module doc). `listener` answers their questions meanwhile.
pub async fn join(
    storage: &mut FileStorage,
    cfg: &Config,
    peers: &BTreeMap<NodeId, String>,
    token: &str,
    rejoin: bool,
    listener: &StdListener,
) -> anyhow::Result<Joined> {
    let dir = storage.dir().to_path_buf();
    if let Some(id) = identity::read(&dir)? {
        if id.node != cfg.id {
            bail!(
                "{}: this data directory belongs to node {}, not {}",
                dir.display(),
                id.node,
                cfg.id
            );
        }
        match storage.load() {
            Ok(recovered) if !rejoin => {
                return Ok(Joined {
                    identity: id,
                    recovered,
                })
            }
            Ok(recovered) => bail!(
                "{}: --rejoin is for a node whose data directory was lost or damaged, and this one holds its state ({} log records{}); start without --rejoin",
                dir.display(),
                recovered.records.len(),
                if recovered.snapshot.is_some() { " and a snapshot" } else { "" }
            ),
            Err(e @ (StorageError::Truncated { .. } | StorageError::Corrupt { .. })) if rejoin => {
                let moved = storage.set_aside()?;
                tracing::warn!(error = %e, moved = ?moved, "damaged log set aside: rejoining without it");
                let decided = ask_peers(cfg, peers, token, true, &dir, listener).await?;
                if decided.cluster != id.cluster {
                    bail!(
                        "{}: this data directory belongs to cluster {}, but the peers are cluster {}",
                        dir.display(),
                        id.cluster,
                        decided.cluster
                    );
                }
                return start_rejoin(storage, id, decided);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !storage.is_empty()? {
        bail!(
            "{}: there is a log or snapshot but no {} file: the directory was written by an older synod-node, or damaged; move it aside (and start with --rejoin if this node was a member of the cluster)",
            dir.display(),
            identity::FILE
        );
    }
    if rejoin && peers.is_empty() {
        bail!("a cluster of one cannot rejoin: its only copy of the state is gone; start it without --rejoin as a new cluster");
    }
    let decided = ask_peers(cfg, peers, token, rejoin, &dir, listener).await?;
    let id = Identity {
        cluster: decided.cluster.clone(),
        node: cfg.id,
        seen: Default::default(),
    };
    if decided.floor.is_some() {
        return start_rejoin(storage, id, decided);
    }
    identity::write(&dir, &id)?;
    tracing::info!(cluster = %id.cluster, "joined the cluster as a new member");
    let recovered = storage.load()?;
    Ok(Joined {
        identity: id,
        recovered,
    })
}

/// Writes the identity and the rejoin mark (durable before anything else
/// of this node happens), then recovers: the replica starts rejoining.
fn start_rejoin(
    storage: &mut FileStorage,
    id: Identity,
    decided: Decided,
) -> anyhow::Result<Joined> {
    let floor = decided
        .floor
        .context("a rejoin needs the peers' promises")?;
    identity::write(storage.dir(), &id)?;
    // The directory holds no log now: load (creating it) before appending.
    storage.load()?;
    storage.append(&[Record::Rejoin { floor }])?;
    storage.sync()?;
    tracing::warn!(cluster = %id.cluster, %floor, "rejoining after a lost disk: learning until a leader above the floor has re-chosen the log");
    let recovered = storage.load()?;
    Ok(Joined {
        identity: id,
        recovered,
    })
}

struct Decided {
    cluster: String,
    /// Set for a rejoin: the promise floor.
    floor: Option<Ballot>,
}

/// Asks every peer until the answers decide (see the module doc), serving
/// the same question (and nothing else) on `listener` meanwhile.
async fn ask_peers(
    cfg: &Config,
    peers: &BTreeMap<NodeId, String>,
    token: &str,
    rejoin: bool,
    dir: &std::path::Path,
    listener: &StdListener,
) -> anyhow::Result<Decided> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = serve_while_joining(cfg.id, token, listener, stop_rx)?;
    let decided = poll(cfg, peers, token, rejoin, dir).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    decided
}

async fn poll(
    cfg: &Config,
    peers: &BTreeMap<NodeId, String>,
    token: &str,
    rejoin: bool,
    dir: &std::path::Path,
) -> anyhow::Result<Decided> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_millis(500))
        .build()?;
    let lowest = cfg.members.iter().copied().min().unwrap_or(cfg.id);
    let mut last_report = Instant::now();
    loop {
        let mut answers = BTreeMap::new();
        for (&id, url) in peers {
            answers.insert(id, ask(&http, url, token).await);
        }
        match decide(cfg.id, lowest, rejoin, &answers) {
            Ok(Some(d)) => return Ok(d),
            Ok(None) => {}
            Err(Refusal::Lost { peer, cluster }) => {
                return Err(JoinError::LostState {
                    dir: dir.display().to_string(),
                    node: cfg.id,
                    peer,
                    cluster,
                }
                .into())
            }
            Err(Refusal::Other(why)) => bail!("cannot join the cluster: {why}"),
        }
        if last_report.elapsed() >= REPORT {
            last_report = Instant::now();
            let waiting: Vec<String> = answers
                .iter()
                .map(|(id, a)| match a {
                    Answer::Unreachable(why) => format!("n{id}: unreachable ({why})"),
                    Answer::Says(v) if v.cluster.is_none() => format!("n{id}: not joined yet"),
                    Answer::Says(_) => format!("n{id}: joined"),
                })
                .collect();
            tracing::info!(
                rejoin,
                "joining: waiting for every member to answer: {}",
                waiting.join("; ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn ask(http: &reqwest::Client, url: &str, token: &str) -> Answer {
    let r = http
        .get(format!("{url}/peer/v1/identity"))
        .header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => match r.json::<IdentityView>().await {
            Ok(v) => Answer::Says(v),
            Err(e) => Answer::Unreachable(format!("bad answer: {e}")),
        },
        Ok(r) => Answer::Unreachable(format!("status {}", r.status())),
        Err(e) => Answer::Unreachable(if e.is_timeout() {
            "timeout".into()
        } else {
            "no connection".into()
        }),
    }
}

#[derive(Debug, PartialEq)]
enum Refusal {
    Lost { peer: NodeId, cluster: String },
    Other(String),
}

/// The rule of the module doc, on one round of answers: `Ok(None)` to ask
/// again.
fn decide(
    me: NodeId,
    lowest: NodeId,
    rejoin: bool,
    answers: &BTreeMap<NodeId, Answer>,
) -> Result<Option<Decided>, Refusal> {
    let says: Vec<&IdentityView> = answers
        .values()
        .filter_map(|a| match a {
            Answer::Says(v) => Some(v),
            Answer::Unreachable(_) => None,
        })
        .collect();
    if !rejoin {
        if let Some(v) = says
            .iter()
            .find(|v| v.cluster.is_some() && v.seen.contains(&me))
        {
            return Err(Refusal::Lost {
                peer: v.node,
                cluster: v.cluster.clone().unwrap_or_default(),
            });
        }
    }
    if says.len() < answers.len() {
        return Ok(None); // every member must answer
    }
    let mut clusters: Vec<&String> = says.iter().filter_map(|v| v.cluster.as_ref()).collect();
    clusters.sort();
    clusters.dedup();
    if clusters.len() > 1 {
        return Err(Refusal::Other(format!(
            "the peers belong to different clusters: {clusters:?}"
        )));
    }
    if rejoin {
        if clusters.is_empty() {
            return Err(Refusal::Other(
                "no peer has joined a cluster: there is nothing to rejoin; start without --rejoin"
                    .into(),
            ));
        }
        if says.iter().any(|v| v.cluster.is_none()) {
            return Ok(None); // a member still joining: its promise is unknown
        }
        let round = says
            .iter()
            .filter_map(|v| v.promised)
            .map(|b| b.round)
            .max()
            .unwrap_or(0);
        return Ok(Some(Decided {
            cluster: clusters[0].clone(),
            floor: Some(Ballot::new(round + 1, 0)),
        }));
    }
    match clusters.first() {
        Some(c) => Ok(Some(Decided {
            cluster: (*c).clone(),
            floor: None,
        })),
        None if me == lowest => Ok(Some(Decided {
            cluster: format!("{:016x}", rand::random::<u64>()),
            floor: None,
        })),
        None => Ok(None), // the lowest member draws the id
    }
}

/// Answers `GET /peer/v1/identity` ("not joined yet") while this node
/// decides; every other route says it is joining (503).
fn serve_while_joining(
    me: NodeId,
    token: &str,
    listener: &StdListener,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let l = listener
        .try_clone()
        .context("cannot share the listening socket")?;
    l.set_nonblocking(true)?;
    let l = tokio::net::TcpListener::from_std(l)?;
    let state = JoiningState {
        me,
        token: token.into(),
    };
    let app = Router::new()
        .route("/peer/v1/identity", get(identity_while_joining))
        .fallback(joining)
        .with_state(state);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(l, app)
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            })
            .await;
    }))
}

#[derive(Clone)]
struct JoiningState {
    me: NodeId,
    token: std::sync::Arc<str>,
}

async fn identity_while_joining(State(st): State<JoiningState>, req: Request) -> Response {
    if !super::api::bearer_matches(req.headers(), &st.token) {
        let body = json!({"error": "unauthorized", "definite": true, "reason": "wrong or missing cluster token"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    Json(IdentityView {
        node: st.me,
        cluster: None,
        seen: Vec::new(),
        promised: None,
    })
    .into_response()
}

async fn joining() -> Response {
    let body = json!({"error": "unavailable", "definite": true, "reason": "this node is still joining its cluster"});
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn says(node: NodeId, cluster: Option<&str>, seen: &[NodeId], round: u64) -> Answer {
        Answer::Says(IdentityView {
            node,
            cluster: cluster.map(String::from),
            seen: seen.to_vec(),
            promised: cluster.map(|_| Ballot::new(round, node)),
        })
    }

    fn answers(a: Vec<(NodeId, Answer)>) -> BTreeMap<NodeId, Answer> {
        a.into_iter().collect()
    }

    #[test]
    fn a_brand_new_cluster_waits_for_everyone_and_the_lowest_draws_the_id() {
        let all_new = answers(vec![(2, says(2, None, &[], 0)), (3, says(3, None, &[], 0))]);
        let d = decide(1, 1, false, &all_new).unwrap().expect("n1 decides");
        assert_eq!(d.cluster.len(), 16);
        assert!(d.floor.is_none());
        let from_n2 = answers(vec![(1, says(1, None, &[], 0)), (3, says(3, None, &[], 0))]);
        assert!(
            decide(2, 1, false, &from_n2).unwrap().is_none(),
            "n2 waits for n1"
        );
        let n1_joined = answers(vec![
            (1, says(1, Some("c1"), &[], 1)),
            (3, says(3, None, &[], 0)),
        ]);
        assert_eq!(
            decide(2, 1, false, &n1_joined).unwrap().unwrap().cluster,
            "c1"
        );
        let one_down = answers(vec![
            (2, says(2, None, &[], 0)),
            (3, Answer::Unreachable("no connection".into())),
        ]);
        assert!(decide(1, 1, false, &one_down).unwrap().is_none());
    }

    #[test]
    fn an_empty_node_a_peer_has_heard_from_is_refused() {
        let a = answers(vec![
            (1, says(1, Some("c1"), &[2, 3], 4)),
            (2, Answer::Unreachable("no connection".into())),
        ]);
        assert_eq!(
            decide(3, 1, false, &a).err(),
            Some(Refusal::Lost {
                peer: 1,
                cluster: "c1".into()
            })
        );
    }

    #[test]
    fn a_rejoin_waits_for_every_member_and_floors_above_every_promise() {
        let partial = answers(vec![
            (1, says(1, Some("c1"), &[3], 4)),
            (2, Answer::Unreachable("no connection".into())),
        ]);
        assert!(decide(3, 1, true, &partial).unwrap().is_none());
        let all = answers(vec![
            (1, says(1, Some("c1"), &[3], 4)),
            (2, says(2, Some("c1"), &[3], 7)),
        ]);
        let d = decide(3, 1, true, &all).unwrap().unwrap();
        assert_eq!(d.floor, Some(Ballot::new(8, 0)));
        assert!(d.floor.unwrap() > Ballot::new(7, 2));
    }

    #[test]
    fn peers_of_two_clusters_are_refused() {
        let a = answers(vec![
            (1, says(1, Some("c1"), &[], 1)),
            (2, says(2, Some("c2"), &[], 1)),
        ]);
        assert!(matches!(decide(3, 1, false, &a), Err(Refusal::Other(_))));
    }
}
