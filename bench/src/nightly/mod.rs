//! Nightly runs and comparisons: `synod suite`, `synod compare`,
//! `synod serve`.
//!
//! # Layout
//!
//! - `figures`: what one run directory says (config, verdict, throughput,
//!   latency, availability, recovery), read back from its `config.json`
//!   and `results.json`; the one reader the three commands share.
//! - `suite`: a TOML matrix of runs, run one after another through
//!   `synod run`, summarised as a table, `summary.json` and JUnit XML.
//! - `shard`: `--shard K/N`, deterministic slices of a suite balanced by
//!   expected run time, for CI workers in parallel.
//! - `merge`: `synod suite merge`, the shards' outputs as one suite's.
//! - `compare`: runs side by side, overlaid SVG plots, differences beyond
//!   noise marked; `compare.html` and `compare.md`.
//! - `serve`: an axum page over the store (list, filter, compare,
//!   download a run as a tar archive).
//! - `trends`: one line per run of every suite in `STORE/_trends.jsonl`,
//!   and the page that draws each figure over the nights (`/trends`).
//! - `tar`: the small ustar writer behind the download.

pub mod compare;
pub mod figures;
pub mod merge;
pub mod serve;
pub mod shard;
pub mod suite;
pub mod tar;
pub mod trends;
