//! The nemesis' typed errors: what can go wrong bringing a cluster up,
//! injecting a fault or tearing it down, said so a user knows what to do.

use std::path::PathBuf;

use crate::NodeName;

/// Why a backend or the nemesis could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum NemesisError {
    /// The `synod-node` binary is not where we looked.
    #[error(
        "the node binary was not found at {}: build it with `cargo build --release --workspace` \
         (it lands next to `synod`), or point SYNOD_NODE_BIN at it",
        path.display()
    )]
    NodeBinaryMissing { path: PathBuf },

    /// The `etcd` binary is not where we looked.
    #[error(
        "the etcd binary was not found at {}: install it with `apt-get install etcd-server`, \
         or point SYNOD_ETCD_BIN at it",
        path.display()
    )]
    EtcdBinaryMissing { path: PathBuf },

    /// The lose-unsynced-writes filesystem cannot be mounted here.
    #[error("{0}")]
    Filesystem(#[from] synod_lazyfs::Error),

    /// A fault this backend cannot inject.
    #[error("not supported: {0}")]
    Unsupported(String),

    /// A port the user asked for is taken by another process.
    #[error("port {port} on 127.0.0.1 is already in use: choose another --base-port or stop what holds it")]
    PortInUse { port: u16 },

    /// Spawning a node process failed.
    #[error("cannot start node {node} ({}): {source}", bin.display())]
    Spawn {
        node: NodeName,
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A node exited or never answered while we waited for it to come up.
    #[error("node {node} did not become healthy: {reason} (see its log: {})", log.display())]
    NotHealthy {
        node: NodeName,
        reason: String,
        log: PathBuf,
    },

    /// A node id that is not in this cluster.
    #[error("no such node: {0}")]
    UnknownNode(NodeName),

    /// An admin request to a node failed.
    #[error("admin request {what} to node {node} failed: {reason}")]
    Admin {
        node: NodeName,
        what: &'static str,
        reason: String,
    },

    /// A fault name on the command line that the nemesis does not know.
    #[error("unknown fault {name:?}: expected one of {known}")]
    UnknownFault { name: String, known: String },

    /// A `--nemesis` entry that names known faults but cannot be drawn:
    /// a shape the kind does not have, or a kind twice in one step.
    #[error("bad fault {spec:?}: {reason}")]
    BadFaultSpec { spec: String, reason: String },

    /// A host of the ssh backend that cannot take part, and why.
    #[error("host {host}: {problem}")]
    Host { host: String, problem: String },

    /// Several hosts of the ssh backend that cannot take part.
    #[error("the hosts are not ready: {0}")]
    Hosts(String),

    /// Any other I/O failure, with what we were doing.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl NemesisError {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        NemesisError::Io {
            what: what.into(),
            source,
        }
    }
}

/// The nemesis' result type.
pub type Result<T, E = NemesisError> = std::result::Result<T, E>;
