//! synod-node: a Multi-Paxos key-value node.
//!
//! # Layout
//!
//! - [`types`]: ballots, slots, values, commands, log entries, client
//!   requests and outcomes.
//! - [`config`]: the protocol settings (`docs/api.md`'s flags).
//! - [`message`]: the protocol messages between nodes (JSON on the wire).
//! - [`replica`]: the pure Multi-Paxos core. **Start here**: its module doc
//!   explains the algorithm and how a shell drives it (inputs in, outputs
//!   out, each output saying which records it stands on). With
//!   [`Protocol::TwoPhaseCommit`] the same replica runs the blocking
//!   two-phase-commit baseline instead (`replica/twopc.rs`), through the
//!   same shell contract.
//! - [`durability`]: the one release policy: which message or reply may
//!   leave before which sync, run by the server's disk thread and by the
//!   simulation alike.
//! - [`kv`]: the replicated state machine with per-client deduplication.
//! - [`storage`]: durable records, the [`storage::Storage`] trait, the
//!   file-backed log (CRC frames, group commit, atomic snapshots, a sync
//!   mark, the data directory's identity) and the simulation's in-memory
//!   disk that models kills and power loss.
//! - [`sim`]: the deterministic simulation: a seeded cluster, a faulty
//!   network, crashes, pauses, clock skew and clients recording a history,
//!   all through the server's durability pipeline; and scripted runs.
//!
//! The HTTP server (a thin async shell over [`replica::Replica`]) is the
//! `synod-node` binary of the `synod-server` crate (`../server`), so
//! embedding this library (as the simulation does) compiles no HTTP, async
//! runtime or command line: `cargo tree -p synod-node -e normal` lists
//! none of axum, hyper, reqwest, tokio, clap or tracing-subscriber.
//!
//! # Proving it
//!
//! ```text
//! cargo test -p synod-node --release --test sim          # 2,700 seeds, all configurations (450 of 2PC)
//! SYNOD_SIM_SEEDS=16000 cargo test -p synod-node --release --test sim
//! cargo test -p synod-node --release --test teeth        # broken modes and bugs put back must be caught
//! cargo test -p synod-node --release --test regressions  # one scripted interleaving per bug fixed
//! cargo test -p synod-node --release --test two_phase_commit  # 2PC blocks, and recovers, as it should
//! cargo test -p synod-node --release --test liveness
//! cargo test -p synod-node --release --test storage
//! cargo test -p synod-server --release --test server_durability --test server_kills
//! cargo bench -p synod-node --bench core                 # commands/s of the core alone
//! ```
//!
//! The simulation runs the server's own I/O order ([`durability`]): the
//! same batching, disk sets, early releases and compactions, over storage
//! that a kill or a power loss cuts at the right level. A failing seed
//! prints the one command that replays it
//! (`SYNOD_SIM_SEED=.. SYNOD_SIM_CONFIG='..' ... --test sim replay`);
//! `SYNOD_SIM_TRACE=1` added to it prints every step. [`sim::script`]
//! drives a cluster one step at a time, for tests that pin one
//! interleaving.

pub mod config;
pub mod durability;
pub mod kv;
pub mod message;
pub mod replica;
pub mod sim;
pub mod storage;
pub mod types;

pub use config::{Config, Fsync, Learn, Proposers, Protocol, QuorumSize, Reads};
pub use durability::{Lsn, Outgoing};
pub use message::Message;
pub use replica::{Input, Outputs, Replica, Status};
pub use storage::{Record, Snapshot, Storage, StorageError};
pub use types::*;
