//! The flags of `synod run` ([`RunArgs`] and the enums it names): what a
//! run is asked to do, parsed by clap and written, as they are, to the
//! run's `config.json`.

use std::path::PathBuf;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Where the cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Child processes on loopback behind link proxies (no root, no Docker).
    Local,
    /// Containers from docker-compose.yml (3 or 5 nodes), faults by the
    /// OS: iptables in each container's namespace, docker pause and kill.
    Docker,
    /// A cluster someone else started, at --node-urls with --token: the
    /// workload and the admin-API faults (clock, power-loss) only.
    External,
    /// One node on each of --hosts, over SSH: iptables, signals and the
    /// lose-unsynced-writes filesystem on the hosts themselves.
    Ssh,
}

/// What the clients talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Synod nodes started by the backend.
    Synod,
    /// An etcd cluster through its v3 JSON gateway: one Synod starts
    /// from the `etcd` binary, on loopback (--backend local) or one
    /// member per host (--backend ssh), with network faults, pause, kill
    /// and power loss; or an external one at `--etcd-endpoints` (no
    /// faults).
    Etcd,
}

/// Arguments of `synod run`; all of them land in the run's `config.json`
/// ([`RunConfig`](crate::artifacts::RunConfig)). Read back, a flag missing from an older run's file is
/// the flag's default ([`RunArgs::default`]).
#[derive(clap::Args, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RunArgs {
    /// Name of the run series: runs go to STORE/NAME/TIMESTAMP/.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// The store directory.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// The run's directory, chosen by the caller (`synod suite` does)
    /// instead of STORE/NAME/TIMESTAMP/: created if missing, refused if
    /// not empty. Not in `config.json`, which lives in it.
    #[arg(long)]
    #[serde(skip)]
    pub run_dir: Option<PathBuf>,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=15))]
    pub nodes: u32,
    /// Where the cluster runs.
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    pub backend: BackendKind,
    /// What the clients talk to.
    #[arg(long, value_enum, default_value_t = Target::Synod)]
    pub target: Target,
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 60.0, value_parser = parse_secs)]
    pub time_limit: f64,
    /// Seconds of workload after every fault is healed.
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub recovery: f64,
    /// Seeds faults, targets and the workload; printed, so a run can be
    /// replayed. Random if not given.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Faults to mix, comma-separated: partition, one-way, pause, kill,
    /// power-loss, clock, delay, reset, flap (one leader-follower link cut
    /// and healed every 100-500 ms); `all`; `none`. KIND:SHAPE asks for
    /// one shape (partition: isolate-one, isolate-leader, halves,
    /// majorities-ring, bridge, and only when named the partial
    /// connectivity shapes quorum-loss (4+ nodes), constrained (4+ nodes)
    /// and chained (3+ nodes); kill: leader, follower; clock:
    /// slow-leader, random; power-loss: all, minority). Faults joined
    /// by `+` start together against the same leader and heal together,
    /// e.g. clock:slow-leader+partition:isolate-leader, the trap for
    /// leases that trust the clock.
    #[arg(long, default_value = DEFAULT_NEMESIS)]
    pub nemesis: String,
    /// Seconds of quiet before each fault, and how long each fault holds.
    #[arg(long, default_value_t = 5.0, value_parser = parse_secs)]
    pub nemesis_interval: f64,
    /// Concurrent client workers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Total ops/s, open loop (intended start times are recorded); without
    /// it, a closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Keys live at once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub keys: u32,
    /// Ops on a key before clients move to a fresh one.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub ops_per_key: u64,
    /// Operation weights, e.g. read=2,write=1,cas=1.
    #[arg(long, default_value = "read=2,write=1,cas=1")]
    pub mix: String,
    /// Client request timeout in ms; a timed-out op is recorded as info.
    #[arg(long, default_value_t = 2000)]
    pub client_timeout_ms: u64,

    /// Node setting: stable leader, or every node proposes.
    #[arg(long, value_parser = ["leader", "any"])]
    pub proposers: Option<String>,
    /// Node setting: distinguished learner, or broadcast.
    #[arg(long, value_parser = ["leader", "all"])]
    pub learn: Option<String>,
    /// Node setting: how reads are served (`local` is unsafe on purpose).
    #[arg(long, value_parser = ["log", "lease", "local"])]
    pub reads: Option<String>,
    /// Node setting: `never` is unsafe on purpose.
    #[arg(long, value_parser = ["always", "never"])]
    pub fsync: Option<String>,
    /// Node setting: client commands per log slot.
    #[arg(long)]
    pub batch_size: Option<u64>,
    /// Node setting: slots in phase 2 at once.
    #[arg(long)]
    pub pipeline: Option<u64>,
    /// Node setting: leader heartbeat interval.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Node setting: election timeout.
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// Node setting: clock-drift bound subtracted from the lease.
    #[arg(long)]
    pub lease_drift_ms: Option<u64>,
    /// Node setting: deadline of a client request inside the node.
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Any other node flag, passed through as is (repeatable).
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    pub node_args: Vec<String>,
    /// Node K listens on BASE_PORT+K-1; free ports if not given.
    #[arg(long)]
    pub base_port: Option<u16>,
    /// External backend: the nodes' base URLs, comma-separated, e.g.
    /// http://172.28.5.11:7000,http://172.28.5.12:7000.
    #[arg(long)]
    pub node_urls: Option<String>,
    /// External backend: the cluster token (for the admin-API faults).
    /// Prefer --token-file or SYNOD_TOKEN: a flag's value shows in `ps`.
    #[arg(
        long,
        env = "SYNOD_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    #[serde(skip)]
    pub token: Option<String>,
    /// External backend: a file holding the cluster token.
    #[arg(long, env = "SYNOD_TOKEN_FILE")]
    #[serde(skip)]
    pub token_file: Option<PathBuf>,
    /// Seconds a node may take to answer /health after a (re)start.
    #[arg(long, default_value_t = 30.0, value_parser = parse_secs)]
    pub ready_timeout: f64,

    /// Seconds the checker may search before its verdict is unknown
    /// (0: no limit).
    #[arg(long, default_value_t = 300.0, value_parser = parse_secs)]
    pub check_time_limit: f64,

    /// etcd target: comma-separated client URLs, e.g.
    /// http://127.0.0.1:2379,http://127.0.0.1:22379.
    #[arg(long)]
    pub etcd_endpoints: Option<String>,
    /// etcd target: serializable (member-local) reads instead of
    /// linearizable ones.
    #[arg(long)]
    pub serializable: bool,
    /// etcd target: a flag for every etcd member Synod starts, as is
    /// (repeatable), e.g. --etcd-arg=--snapshot-count=1000.
    #[arg(long = "etcd-arg", allow_hyphen_values = true)]
    pub etcd_args: Vec<String>,
    /// etcd target: the etcd binary the members run. --backend local runs
    /// it (else $SYNOD_ETCD_BIN, else etcd on PATH); --backend ssh
    /// uploads it into every host's run directory (else each host runs
    /// its own etcd, found on the PATH of an ssh session).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_bin: Option<PathBuf>,

    /// Unsafe on purpose: the nodes' filesystem acknowledges fsync without
    /// making anything durable, as a disk with a volatile write cache
    /// does; a power loss then takes everything since the start. No
    /// correct database survives `--nemesis power-loss:all` on it. Local
    /// and docker backends.
    #[arg(long)]
    pub lying_fsync: bool,
    /// Cut power through Synod's own `POST /admin/crash` (the node drops
    /// what it has not synced and exits) instead of SIGKILL and the
    /// lose-unsynced-writes filesystem: a fast path, Synod nodes only, no
    /// FUSE needed. The external backend always does this.
    #[arg(long)]
    pub admin_crash: bool,
    /// How clock faults reach the nodes: Synod's admin clock, or
    /// libfaketime preloaded into every node with a control file the
    /// nemesis rewrites (any program that reads time through libc; local
    /// and ssh backends; needs `apt-get install faketime` where the nodes
    /// run).
    #[arg(long, value_enum, default_value_t = ClockFault::Admin)]
    pub clock_fault: ClockFault,

    /// Recorded only when used, so config.json of other backends keeps
    /// the fields it had before the ssh backend.
    #[command(flatten)]
    #[serde(skip_serializing_if = "crate::ssh::SshArgs::is_unused")]
    pub ssh: crate::ssh::SshArgs,
}

/// How clock faults reach the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockFault {
    /// `POST /admin/clock` (Synod nodes).
    Admin,
    /// libfaketime (`LD_PRELOAD`), its control file rewritten at run time.
    Faketime,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number of seconds ≥ 0, got {s:?}")),
    }
}

impl Default for RunArgs {
    /// The flags' own defaults, from clap (the environment ignored): what
    /// `synod run` with no flags means.
    fn default() -> RunArgs {
        use clap::{Args, FromArgMatches};
        let cmd = RunArgs::augment_args(clap::Command::new("run").no_binary_name(true))
            .mut_arg("token", |a| a.env(None))
            .mut_arg("token_file", |a| a.env(None));
        cmd.try_get_matches_from(std::iter::empty::<String>())
            .and_then(|m| RunArgs::from_arg_matches(&m))
            .unwrap_or_else(|e| unreachable!("synod run without flags is valid: {e}"))
    }
}

/// A Synod node's election timeout when no flag sets it: the default of
/// `synod-node --election-timeout-ms` (`server/src/server/cli.rs`,
/// `node/src/config.rs`).
pub const SYNOD_ELECTION_TIMEOUT_MS: u64 = 300;

/// The value of `--NAME=V` or `--NAME V` in a list of flags, the last one
/// given winning.
fn flag_value<'a>(flags: &'a [String], name: &str) -> Option<&'a str> {
    let mut found = None;
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        let Some(rest) = f.strip_prefix("--").and_then(|r| r.strip_prefix(name)) else {
            continue;
        };
        if let Some(v) = rest.strip_prefix('=') {
            found = Some(v);
        } else if rest.is_empty() {
            found = it.next().map(String::as_str);
        }
    }
    found
}

impl RunArgs {
    /// The election timeout (ms) of the nodes this run talks to, as far
    /// as its flags say: a Synod node's `--election-timeout-ms` (the flag
    /// or a `--node-arg`), else the node's default, except on an external
    /// cluster whose settings are not ours; etcd's `--election-timeout`
    /// only when an `--etcd-arg` gives it. `None`: not known.
    pub fn election_timeout_ms(&self) -> Option<u64> {
        match self.target {
            Target::Etcd => flag_value(&self.etcd_args, "election-timeout")?
                .parse()
                .ok(),
            Target::Synod => {
                let given = self.election_timeout_ms.or_else(|| {
                    flag_value(&self.node_args, "election-timeout-ms")?
                        .parse()
                        .ok()
                });
                match (given, self.backend) {
                    (Some(ms), _) => Some(ms),
                    (None, BackendKind::External) => None,
                    (None, _) => Some(SYNOD_ELECTION_TIMEOUT_MS),
                }
            }
        }
    }

    /// The node flags to pass through, in `--flag value` form.
    pub(crate) fn node_flags(&self) -> Vec<String> {
        if self.target == Target::Etcd {
            return self.etcd_args.clone();
        }
        let mut flags = Vec::new();
        let mut push = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                flags.push(format!("--{name}"));
                flags.push(v);
            }
        };
        push("proposers", self.proposers.clone());
        push("learn", self.learn.clone());
        push("reads", self.reads.clone());
        push("fsync", self.fsync.clone());
        push("batch-size", self.batch_size.map(|v| v.to_string()));
        push("pipeline", self.pipeline.map(|v| v.to_string()));
        push("heartbeat-ms", self.heartbeat_ms.map(|v| v.to_string()));
        push(
            "election-timeout-ms",
            self.election_timeout_ms.map(|v| v.to_string()),
        );
        push("lease-drift-ms", self.lease_drift_ms.map(|v| v.to_string()));
        push(
            "request-timeout-ms",
            self.request_timeout_ms.map(|v| v.to_string()),
        );
        flags.extend(self.node_args.iter().cloned());
        flags
    }
}

/// The fault mix a run uses unless `--nemesis` says otherwise.
pub const DEFAULT_NEMESIS: &str = "partition,pause,kill,power-loss,clock,delay";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_election_timeout_comes_from_the_flags_or_the_nodes_default() {
        let mut a = RunArgs::default();
        assert_eq!(a.election_timeout_ms(), Some(SYNOD_ELECTION_TIMEOUT_MS));
        a.node_args = vec!["--election-timeout-ms".into(), "450".into()];
        assert_eq!(a.election_timeout_ms(), Some(450));
        a.node_args = vec!["--election-timeout-ms=500".into()];
        assert_eq!(a.election_timeout_ms(), Some(500));
        a.election_timeout_ms = Some(800);
        assert_eq!(a.election_timeout_ms(), Some(800));
        // An external cluster's settings are not ours to assume.
        let mut ext = RunArgs {
            backend: BackendKind::External,
            ..RunArgs::default()
        };
        assert_eq!(ext.election_timeout_ms(), None);
        ext.election_timeout_ms = Some(250);
        assert_eq!(ext.election_timeout_ms(), Some(250));
        // etcd: only when recorded in its flags.
        let mut etcd = RunArgs {
            target: Target::Etcd,
            ..RunArgs::default()
        };
        assert_eq!(etcd.election_timeout_ms(), None);
        etcd.etcd_args = vec![
            "--heartbeat-interval=100".into(),
            "--election-timeout=1200".into(),
        ];
        assert_eq!(etcd.election_timeout_ms(), Some(1200));
    }
}
