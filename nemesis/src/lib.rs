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
//! - [`backend`]: the [`Backend`] trait, [`NodeId`] and [`Link`].
//! - [`local`]: the `local` backend: child processes on loopback (Synod
//!   nodes, or an etcd cluster for comparison), their data directories and
//!   logs in the run directory.
//! - [`docker`]: the `docker` backend: containers from
//!   `docker-compose.yml`, iptables rules in their network namespaces.
//! - [`external`]: a cluster someone else started; admin-API faults only.
//! - [`proxy`]: the TCP link proxy in front of every directed peer link:
//!   blackhole, delay with jitter, resets, all without root.
//! - [`member_proxy`]: for etcd, one proxy in front of each member's peer
//!   port that tells the sender by its `X-Server-From` header and applies
//!   that link's faults, each direction its own.
//! - [`fault`]: the fault kinds (`--nemesis` names), their shapes, the
//!   steps that start several together, a fault with its targets, and the
//!   state the faults in force add up to.
//! - [`nemesis`]: the scheduler that starts, holds and heals faults.
//! - [`admin`]: the node's admin API (status, clock, crash).
//! - [`error`]: [`NemesisError`], what went wrong in words a user can act on.

pub mod admin;
pub mod backend;
pub mod docker;
pub mod error;
pub mod external;
pub mod fault;
pub mod local;
pub mod member_proxy;
pub mod nemesis;
pub mod proxy;

pub use backend::{Backend, LeaderReport, Link, NodeId};
pub use docker::{DockerBackend, DockerConfig};
pub use error::{NemesisError, Result};
pub use external::ExternalBackend;
pub use fault::{Fault, FaultKind, FaultSpec, Step};
pub use local::{LocalBackend, LocalConfig, Program};
pub use member_proxy::MemberProxy;
pub use nemesis::{EventSink, Nemesis, NemesisEvent, Schedule};
pub use proxy::{ConnFault, Delay, LinkFault, LinkProxy};
