//! The deterministic simulation (in progress).
