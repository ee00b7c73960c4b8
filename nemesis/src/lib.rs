//! synod-nemesis: the cluster under test and the faults done to it.
//!
//! A [`Backend`] brings a cluster of `synod-node`s up, addresses its nodes,
//! kills, restarts, pauses them and carries network faults on its peer
//! links; the [`Nemesis`] decides what to break and when, keeps the faults
//! in force as data and re-applies their sum idempotently, and reports every
//! start and stop as an event for the history. Whatever happens, a run ends
//! with [`Nemesis::heal_all`] and [`Backend::teardown`].
//!
//! # Layout
//!
//! - [`backend`]: the [`Backend`] trait, [`NodeName`], [`Link`] and the
//!   [`LinkFault`] every backend carries on a link.
//! - [`local`]: the `local` backend: child processes on loopback (Synod
//!   nodes, or an etcd cluster for comparison), their data directories and
//!   logs in the run directory.
//! - [`disk`]: the nodes' data directories as mounts of the
//!   lose-unsynced-writes filesystem, for power loss through it.
//! - [`docker`]: the `docker` backend: containers from
//!   `docker-compose.yml`, iptables rules in their network namespaces.
//! - [`ssh`]: the `ssh` backend: one node per host over OpenSSH,
//!   iptables, signals and the lose-unsynced-writes filesystem on the
//!   hosts themselves, checked before anything starts.
//! - [`etcd`]: what every backend that starts etcd shares: the binary,
//!   a member's command line, the leader and member ids from its v3
//!   gateway.
//! - [`external`]: a cluster someone else started; admin-API faults only.
//! - [`proxy`]: the TCP link proxy in front of every directed peer link:
//!   blackhole, delay with jitter, resets, all without root.
//! - [`member_proxy`]: for etcd, one proxy in front of each member's peer
//!   port that tells the sender by its `X-Server-From` header and applies
//!   that link's faults, each direction its own.
//! - [`fault`]: the fault kinds (`--nemesis` names), their shapes and the
//!   steps that start several together ([`fault::spec`]); a fault drawn
//!   with its targets ([`fault::schedule`]); and the state the faults in
//!   force add up to ([`fault::fold`]).
//! - [`nemesis`]: the scheduler that starts, holds and heals faults.
//! - [`admin`]: the node's admin API (status, clock, crash), and the
//!   random cluster tokens backends start nodes with.
//! - [`faketime`]: libfaketime as a clock fault for processes that read
//!   time through libc, and why it cannot reach etcd.
//! - [`leftovers`]: the owner marks on every cluster a bench starts, and
//!   the removal of a dead bench's leftovers (`synod clean`).
//! - [`error`]: [`NemesisError`], what went wrong in words a user can act on.

pub mod admin;
pub mod backend;
pub mod disk;
pub mod docker;
pub mod error;
pub mod etcd;
pub mod external;
pub mod faketime;
pub mod fault;
pub mod leftovers;
pub mod local;
pub mod member_proxy;
pub mod nemesis;
pub mod proxy;
pub mod ssh;

pub use admin::random_token;
pub use backend::{Backend, Delay, LeaderReport, Link, LinkFault, NodeName};
pub use docker::{DockerBackend, DockerConfig};
pub use error::{NemesisError, Result};
pub use external::ExternalBackend;
pub use fault::{Fault, FaultKind, FaultSpec, Step};
pub use local::{Clock, Disk, LocalBackend, LocalConfig, Program};
pub use member_proxy::MemberProxy;
pub use nemesis::{EventSink, Nemesis, NemesisEvent, PowerLossVia, Schedule};
pub use proxy::{ConnFault, LinkProxy};
pub use ssh::{SshBackend, SshConfig, SshOptions};

/// Locks a mutex, recovering the data if a panicking thread poisoned it:
/// teardown and healing must still run after a panic. Every backend keeps
/// its state behind locks (see [`Backend`]), so they all lock this way.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
