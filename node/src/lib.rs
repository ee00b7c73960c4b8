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
//!   out, persist before send).
//! - [`kv`]: the replicated state machine with per-client deduplication.
//! - [`storage`]: durable records, the [`storage::Storage`] trait, the
//!   file-backed log (CRC frames, group commit, atomic snapshots) and the
//!   simulation's in-memory disk that models power loss.
//! - [`sim`]: the deterministic simulation: a seeded cluster, a faulty
//!   network, crashes, pauses, clock skew and clients recording a history.
//!
//! The HTTP server (a thin async shell over [`replica::Replica`]) lives in
//! the binary.
//!
//! # Proving it
//!
//! ```text
//! cargo test -p synod-node --release --test sim        # 2,010 seeds, all configurations
//! SYNOD_SIM_SEEDS=16000 cargo test -p synod-node --release --test sim
//! cargo test -p synod-node --release --test teeth      # broken modes must be caught
//! cargo test -p synod-node --release --test liveness
//! cargo test -p synod-node --release --test storage
//! cargo bench -p synod-node --bench core               # commands/s of the core alone
//! ```
//!
//! A failing seed prints the one command that replays it
//! (`SYNOD_SIM_SEED=.. SYNOD_SIM_CONFIG='..' ... --test sim replay`);
//! `SYNOD_SIM_TRACE=1` added to it prints every step.

pub mod config;
pub mod kv;
pub mod message;
pub mod replica;
pub mod sim;
pub mod storage;
pub mod types;

pub use config::{Config, Fsync, Learn, Proposers, Reads};
pub use message::Message;
pub use replica::{Input, Outputs, Replica, Status};
pub use storage::{Record, Snapshot, Storage, StorageError};
pub use types::*;
