//! `synod run` end to end, through the built binary.
//!
//! Against the fake node (`examples/fake_node.rs`, built by `cargo test`)
//! these exercise the runner itself: cluster up behind proxies, faults in
//! the history, the store layout, and teardown on SIGTERM in the middle of
//! a fault. Against the real `synod-node` (when it has been built next to
//! `synod`), a short default chaos run. Against a local etcd cluster (when
//! Debian's `etcd` is on PATH), linearizable reads stay valid under every
//! network fault and serializable reads are caught stale under partitions.
//! A test whose binary is missing fails and says how to build it; one
//! whose facility (FUSE, etcd) the machine lacks prints SKIPPED.
//!
//! One test binary (`--test run_e2e`), its tests grouped by what they run
//! against: `fake_cluster`, `real_cluster`, `lease` (the lease trap on the
//! real node) and `etcd`; `support` holds what they share.

#[path = "../browser/mod.rs"]
mod browser;
mod etcd;
mod fake_cluster;
mod lease;
mod real_cluster;
mod shapes;
mod support;
