//! Command-line flags (each also read from a `SYNOD_*` environment
//! variable), exactly as `docs/api.md` lists them, and their translation
//! into the core's [`Config`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use synod_node::{Config, Fsync, Learn, NodeId, Proposers, Reads};

/// A Multi-Paxos key-value node: client, peer and admin HTTP APIs around
/// the pure protocol core (see docs/api.md).
#[derive(Parser, Debug, Clone)]
#[command(name = "synod-node", version, about, long_about = None)]
pub struct Args {
    /// This node's id: a positive integer unique in the cluster.
    #[arg(long, env = "SYNOD_ID")]
    pub id: NodeId,

    /// Address to serve the client, peer and admin APIs on. Port 0 picks a
    /// free port; the bound address is printed on stdout at start.
    #[arg(long, env = "SYNOD_LISTEN", default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,

    /// Every other node and the base URL to reach it: `2=http://10.0.0.2:7001,3=...`.
    /// Empty for a single-node cluster.
    #[arg(long, env = "SYNOD_PEERS")]
    pub peers: String,

    /// Durable state (log and snapshot). Locked: a second process on the
    /// same directory refuses to start.
    #[arg(long, env = "SYNOD_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Cluster token required (as `Authorization: Bearer <token>`) on peer
    /// and admin routes.
    #[arg(long, env = "SYNOD_TOKEN", hide_env_values = true)]
    pub token: String,

    /// Who proposes: a stable elected leader, or every node with randomized
    /// backoff (the dueling proposers of the paper; safe, may livelock).
    #[arg(long, env = "SYNOD_PROPOSERS", value_enum, default_value_t = ProposersArg::Leader)]
    pub proposers: ProposersArg,

    /// How learners hear of chosen values: from the leader (distinguished
    /// learner), or every acceptor tells every node.
    #[arg(long, env = "SYNOD_LEARN", value_enum, default_value_t = LearnArg::Leader)]
    pub learn: LearnArg,

    /// How reads are served: through the log; by a leader holding a lease;
    /// or `local` — UNSAFE ON PURPOSE: any replica answers from its own,
    /// possibly stale, state.
    #[arg(long, env = "SYNOD_READS", value_enum, default_value_t = ReadsArg::Log)]
    pub reads: ReadsArg,

    /// Whether the log is fsynced before the replies that depend on it.
    /// `never` is UNSAFE ON PURPOSE: acknowledged state can be lost on power
    /// loss (and on a kill: unsynced records stay in this process for up
    /// to half a second).
    #[arg(long, env = "SYNOD_FSYNC", value_enum, default_value_t = FsyncArg::Always)]
    pub fsync: FsyncArg,

    /// Client commands per log slot.
    #[arg(long, env = "SYNOD_BATCH_SIZE", default_value_t = 64)]
    pub batch_size: usize,

    /// Slots in phase 2 at once.
    #[arg(long, env = "SYNOD_PIPELINE", default_value_t = 16)]
    pub pipeline: usize,

    /// Leader heartbeat interval, in milliseconds.
    #[arg(long, env = "SYNOD_HEARTBEAT_MS", default_value_t = 50)]
    pub heartbeat_ms: u64,

    /// Followers start an election after a random timeout in [MS, 2*MS]
    /// without hearing the leader.
    #[arg(long, env = "SYNOD_ELECTION_TIMEOUT_MS", default_value_t = 300)]
    pub election_timeout_ms: u64,

    /// Clock-drift bound subtracted from the leader lease (reads=lease).
    #[arg(long, env = "SYNOD_LEASE_DRIFT_MS", default_value_t = 50)]
    pub lease_drift_ms: u64,

    /// Deadline of a client request: past it the node answers 503
    /// not-proposed or 504 indeterminate.
    #[arg(long, env = "SYNOD_REQUEST_TIMEOUT_MS", default_value_t = 1000)]
    pub request_timeout_ms: u64,

    /// Tracing output on stderr (filter with RUST_LOG, default `info`).
    #[arg(long, env = "SYNOD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProposersArg {
    /// A stable, elected leader proposes; followers forward to it.
    Leader,
    /// Every node proposes for its own clients (dueling proposers).
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LearnArg {
    /// Acceptors answer the leader, which announces the commit point.
    Leader,
    /// Every acceptor tells every node; each counts for itself.
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadsArg {
    /// Reads go through the log like writes (linearizable).
    Log,
    /// The leader answers while it holds a majority lease.
    Lease,
    /// UNSAFE ON PURPOSE: any replica answers from its own state.
    Local,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FsyncArg {
    /// fdatasync (group commit) before every dependent reply or message.
    Always,
    /// UNSAFE ON PURPOSE: never fsync; acknowledged writes can be lost.
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

impl Args {
    /// The peers as `id -> base URL` (no trailing slash).
    pub fn peer_urls(&self) -> anyhow::Result<BTreeMap<NodeId, String>> {
        let mut peers = BTreeMap::new();
        for part in self
            .peers
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (id, url) = part
                .split_once('=')
                .with_context(|| format!("--peers: `{part}` is not of the form ID=URL"))?;
            let id: NodeId = id
                .trim()
                .parse()
                .with_context(|| format!("--peers: `{id}` in `{part}` is not a node id"))?;
            let url = url.trim().trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--peers: the URL of node {id} (`{url}`) must start with http://");
            }
            if id == self.id {
                bail!("--peers lists this node ({id}) itself; list only the other nodes");
            }
            if peers.insert(id, url.to_string()).is_some() {
                bail!("--peers names node {id} twice");
            }
        }
        Ok(peers)
    }

    /// The core's configuration for this node.
    pub fn config(&self, peers: &BTreeMap<NodeId, String>) -> anyhow::Result<Config> {
        let mut members: Vec<NodeId> = peers.keys().copied().collect();
        members.push(self.id);
        members.sort_unstable();
        let mut cfg = Config::new(self.id, members);
        cfg.proposers = match self.proposers {
            ProposersArg::Leader => Proposers::Leader,
            ProposersArg::Any => Proposers::Any,
        };
        cfg.learn = match self.learn {
            LearnArg::Leader => Learn::Leader,
            LearnArg::All => Learn::All,
        };
        cfg.reads = match self.reads {
            ReadsArg::Log => Reads::Log,
            ReadsArg::Lease => Reads::Lease,
            ReadsArg::Local => Reads::Local,
        };
        cfg.fsync = match self.fsync {
            FsyncArg::Always => Fsync::Always,
            FsyncArg::Never => Fsync::Never,
        };
        cfg.batch_size = self.batch_size;
        cfg.pipeline = self.pipeline;
        cfg.heartbeat_ms = self.heartbeat_ms;
        cfg.election_timeout_ms = self.election_timeout_ms;
        cfg.lease_drift_ms = self.lease_drift_ms;
        cfg.request_timeout_ms = self.request_timeout_ms;
        if self.request_timeout_ms == 0 {
            bail!("--request-timeout-ms must be positive");
        }
        // The core panics on an invalid configuration; say why instead.
        if let Err(e) = cfg.validate() {
            bail!("invalid configuration: {e}");
        }
        Ok(cfg)
    }
}
