//! The node's clock: the only time the protocol sees.
//!
//! The clock-skew fault (`POST /admin/clock`) sets an offset and a rate.
//! The rate applies from the moment it is set, so a skewed clock drifts
//! from then on instead of jumping by `uptime * (rate - 1)`; setting
//! `{"offset_ms": 0, "rate": 1}` makes it true again. The core never lets
//! its time go backwards, so a negative jump freezes the node's timers
//! until the clock catches up, which is exactly what a skewed node does.

use std::time::Instant;

/// Added to every reading so negative offsets stay representable as `u64`
/// (about 11.5 days of headroom).
const BASE_MS: f64 = 1e9;

/// The largest offset accepted, in either direction.
pub const MAX_OFFSET_MS: i64 = 900_000_000;

/// A skewable clock owned by the replica task (no lock needed).
#[derive(Debug)]
pub struct NodeClock {
    /// The true, monotonic time origin.
    origin: Instant,
    offset_ms: i64,
    rate: f64,
    /// True milliseconds since `origin` when the rate was set.
    rate_since_ms: f64,
}

impl NodeClock {
    pub fn new() -> Self {
        NodeClock {
            origin: Instant::now(),
            offset_ms: 0,
            rate: 1.0,
            rate_since_ms: 0.0,
        }
    }

    fn real_ms(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * 1000.0
    }

    /// The node's time in milliseconds: true time, plus the offset, plus
    /// the drift accumulated at `rate` since the skew was set.
    pub fn now_ms(&self) -> u64 {
        let real = self.real_ms();
        let t = BASE_MS
            + real
            + (real - self.rate_since_ms) * (self.rate - 1.0)
            + self.offset_ms as f64;
        t.max(0.0) as u64
    }

    /// Sets the skew. The caller has validated the values.
    pub fn set(&mut self, offset_ms: i64, rate: f64) {
        self.offset_ms = offset_ms;
        self.rate = rate;
        self.rate_since_ms = self.real_ms();
    }

    pub fn skew(&self) -> (i64, f64) {
        (self.offset_ms, self.rate)
    }
}

/// Why a requested skew is refused, if it is.
pub fn validate_skew(offset_ms: i64, rate: f64) -> Result<(), String> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 100.0) {
        return Err(format!("rate must be a number in (0, 100], got {rate}"));
    }
    if offset_ms.abs() > MAX_OFFSET_MS {
        return Err(format!(
            "offset_ms must be within ±{MAX_OFFSET_MS}, got {offset_ms}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_shifts_and_a_reset_restores_true_time() {
        let mut c = NodeClock::new();
        let t0 = c.now_ms();
        c.set(5_000, 1.0);
        assert!(c.now_ms() >= t0 + 5_000);
        c.set(0, 1.0);
        assert!(c.now_ms() < t0 + 1_000);
    }

    #[test]
    fn a_rate_drifts_from_when_it_is_set_without_jumping() {
        let mut c = NodeClock::new();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let before = c.now_ms();
        c.set(0, 10.0);
        let after = c.now_ms();
        assert!(after - before < 10, "no jump: {before} -> {after}");
    }

    #[test]
    fn absurd_skews_are_refused() {
        assert!(validate_skew(0, 0.0).is_err());
        assert!(validate_skew(0, f64::NAN).is_err());
        assert!(validate_skew(i64::MAX, 1.0).is_err());
        assert!(validate_skew(-1000, 1.5).is_ok());
    }
}
