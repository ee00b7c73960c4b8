//! The colours of every picture Synod draws: the report's plots here and
//! `synod compare`'s overlaid plots in the bench. One module, so a colour
//! is changed in one place; two lists, because the two pictures colour
//! different things (fault names within one run, and runs side by side)
//! and each list keeps the order its pictures have always used.
//!
//! All are from the Okabe-Ito palette (distinguishable with the common
//! colour-vision deficiencies), plus grey and the outcome colours.

use plotters::style::RGBColor;

/// The report's fault windows: the n-th distinct fault name of a run gets
/// the n-th colour (wrapping).
pub const FAULT_WINDOWS: [RGBColor; 5] = [
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(204, 121, 167),
    RGBColor(0, 158, 115),
    RGBColor(240, 228, 66),
];

/// `synod compare`: the n-th run compared gets the n-th colour (wrapping),
/// for its lines, its shaded fault windows and its key.
pub const RUNS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(240, 228, 66),
];

/// Completed with `ok` (and the report's p50 and availability lines).
pub const OK: RGBColor = RGBColor(0, 128, 64);
/// Completed with `fail` (and the report's max-latency line).
pub const FAIL: RGBColor = RGBColor(200, 30, 30);
/// Completed with `info`, outcome unknown (and the report's p99 line).
pub const INFO: RGBColor = RGBColor(230, 140, 0);
