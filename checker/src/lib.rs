//! synod-checker: the judge of every Synod run.
//!
//! # Layout
//!
//! - [`history`]: the JSON Lines history format (`docs/history.md`), its
//!   types, a streaming writer and a validating streaming reader.
pub mod history;
