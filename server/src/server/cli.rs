//! Command-line flags (each also read from a `SYNOD_*` environment
//! variable), exactly as `docs/api.md` lists them, and their translation
//! into the core's [`Config`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use synod_node::{Config, Fsync, Learn, NodeId, Proposers, Protocol, QuorumSize, Reads};

/// A Multi-Paxos key-value node: client, peer and admin HTTP APIs around
/// the pure protocol core (see docs/api.md). With `--protocol
/// two-phase-commit` it runs the two-phase-commit baseline instead.
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
    /// and admin routes: at least 16 bytes of visible ASCII. Prefer
    /// --token-file (or SYNOD_TOKEN): a flag's value shows in `ps`.
    #[arg(
        long,
        env = "SYNOD_TOKEN",
        hide_env_values = true,
        required_unless_present = "token_file",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,

    /// A file holding the cluster token (surrounding whitespace ignored),
    /// so the token does not show in `ps`.
    #[arg(long, env = "SYNOD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// A connection must deliver a complete request head (request line
    /// and headers) within this many milliseconds of its first byte.
    #[arg(long, env = "SYNOD_HEADER_TIMEOUT_MS", default_value_t = 5_000)]
    pub header_timeout_ms: u64,

    /// A connection with no request in progress is closed after this many
    /// milliseconds of silence.
    #[arg(long, env = "SYNOD_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// A request body must arrive within this many milliseconds of its
    /// head, or the answer is 408.
    #[arg(long, env = "SYNOD_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,

    /// Most connections open at once, peer connections included; the
    /// default is derived from the descriptor limit (half of it, less a
    /// margin, at most 4096).
    #[arg(long, env = "SYNOD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// The commit protocol: `paxos` (Multi-Paxos: keeps going while a
    /// majority lives), or `two-phase-commit`, the blocking baseline to
    /// compare it with: node 1 (the lowest id) is the fixed coordinator,
    /// every write needs every node's vote, and nothing completes while
    /// the coordinator is down. It takes none of the Paxos flags below
    /// (--proposers, --learn, --reads, quorums, --rejoin) but their
    /// defaults.
    #[arg(long, env = "SYNOD_PROTOCOL", value_enum, default_value_t = ProtocolArg::Paxos)]
    pub protocol: ProtocolArg,

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

    /// Promises that elect a leader (phase 1): `majority`, `all` or a
    /// number of nodes. Flexible Paxos: any sizes with Q1 + Q2 > N are
    /// safe; a larger Q1 lets Q2 shrink.
    #[arg(long, env = "SYNOD_PHASE1_QUORUM", default_value = "majority")]
    pub phase1_quorum: QuorumSize,

    /// Votes that choose a value (phase 2): `majority`, `all` or a number
    /// of nodes.
    #[arg(long, env = "SYNOD_PHASE2_QUORUM", default_value = "majority")]
    pub phase2_quorum: QuorumSize,

    /// UNSAFE ON PURPOSE: start even when Q1 + Q2 <= N, where a phase 1
    /// quorum can miss every vote of a phase 2 quorum and two values can
    /// be chosen for one slot. For tests that show the checker catches it.
    #[arg(long, env = "SYNOD_UNSAFE_QUORUMS")]
    pub unsafe_quorums: bool,

    /// Client commands per log slot.
    #[arg(long, env = "SYNOD_BATCH_SIZE", default_value_t = 64)]
    pub batch_size: usize,

    /// Slots in phase 2 at once. Commands that arrive while the window is
    /// full wait and then share the next slot: a small window batches by
    /// itself under load, where every slot costs messages, records and
    /// syncs on every node.
    #[arg(long, env = "SYNOD_PIPELINE", default_value_t = 2)]
    pub pipeline: usize,

    /// Thrifty phase 2 (with --learn leader): a new slot's accept goes at
    /// once only to enough followers for a phase 2 quorum (those whose
    /// votes last completed one) and to every follower with clients (it forwarded commands in
    /// the last request timeout); the others get it at the next heartbeat
    /// if it is still unchosen, and catch up on chosen values. false sends
    /// every accept to every follower.
    #[arg(long, env = "SYNOD_THRIFTY", default_value_t = true, action = clap::ArgAction::Set)]
    pub thrifty: bool,

    /// Leader heartbeat interval, in milliseconds.
    #[arg(long, env = "SYNOD_HEARTBEAT_MS", default_value_t = 50)]
    pub heartbeat_ms: u64,

    /// Followers start an election after a random timeout in [MS, 2*MS]
    /// without hearing the leader.
    #[arg(long, env = "SYNOD_ELECTION_TIMEOUT_MS", default_value_t = 300)]
    pub election_timeout_ms: u64,

    /// Clock-drift bound subtracted from the leader lease (reads=lease).
    /// The lease is safe while, over one election timeout, no two clocks
    /// drift apart by more than this (defaults: rates within about 15%).
    /// Clocks that jump are not covered: a backward jump on the leader or
    /// a forward one on a follower can break a lease by the jump's size
    /// (docs/api.md, "Leases and clocks").
    #[arg(long, env = "SYNOD_LEASE_DRIFT_MS", default_value_t = 50)]
    pub lease_drift_ms: u64,

    /// Deadline of a client request: past it the node answers 503
    /// not-proposed or 504 indeterminate.
    #[arg(long, env = "SYNOD_REQUEST_TIMEOUT_MS", default_value_t = 1000)]
    pub request_timeout_ms: u64,

    /// Recover a node whose data directory was lost or damaged: it learns
    /// from the others, promises and votes for nothing, and refuses every
    /// ballot that existed before it started, until a leader elected
    /// after it has re-chosen everything its lost votes counted for. Needs
    /// every other member reachable. Without it, a node that was part of
    /// the cluster refuses to start on an empty or damaged directory.
    #[arg(long, env = "SYNOD_REJOIN")]
    pub rejoin: bool,

    /// Test-only: the replica task panics after this many milliseconds
    /// (to prove the process then exits instead of lingering).
    #[arg(long, hide = true, env = "SYNOD_TEST_CORE_PANIC_AFTER_MS")]
    pub test_core_panic_after_ms: Option<u64>,

    /// Test-only: the disk thread panics after this many milliseconds.
    #[arg(long, hide = true, env = "SYNOD_TEST_DISK_PANIC_AFTER_MS")]
    pub test_disk_panic_after_ms: Option<u64>,

    /// Tracing output on stderr (filter with RUST_LOG, default `info`).
    #[arg(long, env = "SYNOD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// Multi-Paxos (the default).
    Paxos,
    /// Two-phase commit with a fixed coordinator (blocking baseline).
    TwoPhaseCommit,
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

/// Shortest cluster token accepted, in bytes.
pub const MIN_TOKEN_BYTES: usize = 16;

impl Args {
    /// The cluster token from --token or --token-file, refused when it is
    /// short or cannot travel in an HTTP header.
    pub fn token(&self) -> anyhow::Result<String> {
        let (token, from) = match (&self.token, &self.token_file) {
            (Some(t), _) => (t.clone(), "--token".to_string()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--token-file: cannot read {}", path.display()))?;
                (
                    text.trim().to_string(),
                    format!("--token-file {}", path.display()),
                )
            }
            (None, None) => bail!("give the cluster token with --token-file or --token"),
        };
        if token.len() < MIN_TOKEN_BYTES {
            bail!(
                "{from}: the cluster token is {} bytes; it must be at least {MIN_TOKEN_BYTES} \
                 (an empty or short token would let anyone reach the peer and admin routes)",
                token.len()
            );
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("{from}: the cluster token must be visible ASCII without spaces (it travels in an HTTP header)");
        }
        Ok(token)
    }

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
            // Peer links are plaintext (the cluster network is trusted
            // with the token already).
            let Some(addr) = url.strip_prefix("http://") else {
                bail!("--peers: the URL of node {id} (`{url}`) must start with http://");
            };
            if addr.contains('/') || addr.rsplit_once(':').is_none() {
                bail!("--peers: the URL of node {id} (`{url}`) must be http://HOST:PORT, with no path");
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
        cfg.protocol = match self.protocol {
            ProtocolArg::Paxos => Protocol::Paxos,
            ProtocolArg::TwoPhaseCommit => Protocol::TwoPhaseCommit,
        };
        if cfg.protocol == Protocol::TwoPhaseCommit && self.rejoin {
            bail!(
                "--rejoin is Paxos' recovery of a lost disk; --protocol two-phase-commit has none \
                 (a participant's votes and the coordinator's commit records must survive)"
            );
        }
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
        cfg.phase1_quorum = self.phase1_quorum;
        cfg.phase2_quorum = self.phase2_quorum;
        cfg.unsafe_quorums = self.unsafe_quorums;
        cfg.batch_size = self.batch_size;
        cfg.pipeline = self.pipeline;
        cfg.thrifty = self.thrifty;
        cfg.heartbeat_ms = self.heartbeat_ms;
        cfg.election_timeout_ms = self.election_timeout_ms;
        cfg.lease_drift_ms = self.lease_drift_ms;
        cfg.request_timeout_ms = self.request_timeout_ms;
        if self.request_timeout_ms == 0 {
            bail!("--request-timeout-ms must be positive");
        }
        // The core panics on an invalid configuration; say why instead.
        if let Err(e) = cfg.validate() {
            if cfg.protocol == Protocol::TwoPhaseCommit {
                bail!(
                    "invalid configuration: {e}; with --protocol two-phase-commit leave \
                     --proposers, --learn, --reads, --phase1-quorum, --phase2-quorum and \
                     --unsafe-quorums at their defaults"
                );
            }
            bail!("invalid configuration: {e}");
        }
        Ok(cfg)
    }
}
