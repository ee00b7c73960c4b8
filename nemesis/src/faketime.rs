//! libfaketime as a clock fault for processes that read the time through
//! libc: preloaded (`LD_PRELOAD`) into the node at every start, told its
//! offset and rate by a control file that the nemesis rewrites at run time
//! (`FAKETIME_TIMESTAMP_FILE`, re-read at every call with
//! `FAKETIME_NO_CACHE`). It fakes `CLOCK_REALTIME` and `CLOCK_MONOTONIC`
//! alike, so a Synod node's timers and leases run at the skewed rate.
//!
//! libfaketime applies a rate `xR` to the whole time since the process
//! started, so a new rate would jump the clock by `uptime * (R - 1)`.
//! [`spec`] folds that into the offset, so the rate applies from the
//! moment it is set and the clock stays continuous, as the admin clock
//! does. (`FAKETIME_XRESET` promises the same but, measured with 0.9.10,
//! then ignores later offsets.)
//!
//! A heal keeps the drift ([`FakeClock`]). libfaketime fakes
//! `CLOCK_MONOTONIC` with the wall clock, and a monotonic clock that
//! steps back is something no real machine does (NTP slews a drifting
//! clock and never steps `CLOCK_MONOTONIC`); inside the process it breaks
//! every timer at once: tokio fires a timer whose deadline it has already
//! passed immediately, so for the seconds of the step every timeout
//! expires as it starts. Measured: healing the lease trap's clocks to true
//! time stepped the fast majority back 1.5 to 3 s at every heal and left
//! runs without an ok for 6 to 10 s. So a rate's drift stays when the rate
//! changes, the clock runs on continuously at the new rate, and only an
//! explicit offset steps it.
//!
//! What it cannot reach: statically linked binaries (the docker image's
//! node), and programs that read the clock without libc. Go's runtime
//! reads it through the vDSO directly, so etcd (Debian's, dynamically
//! linked against libc) keeps true time under libfaketime: measured by
//! `faketime_does_not_reach_etcd` in `tests/faketime.rs`, which starts a
//! member an hour ahead and reads its HTTP `Date` header back. Clock
//! faults on etcd are refused for that reason.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{NemesisError, Result};

/// The environment variable that overrides where `libfaketime.so.1` is.
pub const LIB_ENV: &str = "SYNOD_FAKETIME_LIB";

/// Where Debian's `libfaketime` package puts the library.
const LIB_PATHS: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

/// Why a clock fault cannot reach etcd, for the message that refuses it.
pub const ETCD_UNREACHABLE: &str = "etcd is a Go program: Go reads the clock through the vDSO, \
    not libc, so libfaketime does not reach it (measured: a member preloaded an hour ahead \
    answers with a true Date header), and it has no admin clock";

/// Finds the library: `$SYNOD_FAKETIME_LIB`, else Debian's paths.
pub fn find_library() -> Result<PathBuf> {
    if let Some(p) = crate::local::file_from_env(LIB_ENV) {
        return p.map_err(|p| missing(&p.display().to_string()));
    }
    LIB_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| missing(&LIB_PATHS.join(" or ")))
}

fn missing(where_: &str) -> NemesisError {
    NemesisError::Unsupported(format!(
        "clock faults through libfaketime need {where_}: install it with \
         `apt-get install faketime`, or point {LIB_ENV} at libfaketime.so.1"
    ))
}

/// The control file's line (`+OFFSET_SECONDS xRATE`) that makes a process
/// running for `uptime` read `real + (real - set_at) * (rate - 1) + offset`
/// from now (`set_at`) on: libfaketime reads `start + (real - start) *
/// rate + file_offset`, so the file's offset takes `uptime * (1 - rate)`
/// more.
pub fn spec(offset_ms: i64, rate: f64, uptime: Duration) -> String {
    let secs = offset_ms as f64 / 1000.0 + uptime.as_secs_f64() * (1.0 - rate);
    let sign = if secs < 0.0 { '-' } else { '+' };
    format!("{sign}{:.3} x{rate:.3}\n", secs.abs())
}

/// Writes a control `line` ([`spec`], [`FakeClock::line`]) for the
/// process that reads `control`: whole to a temporary file renamed over
/// it, so a reader never sees half.
pub fn write(control: &Path, line: &str) -> Result<()> {
    let tmp = control.with_extension("tmp");
    std::fs::write(&tmp, line)
        .and_then(|()| std::fs::rename(&tmp, control))
        .map_err(|e| NemesisError::io(format!("cannot write {}", control.display()), e))
}

/// One process's faked clock: when it started and the drift its rates
/// have accumulated, so that every new setting keeps the clock continuous.
#[derive(Clone, Copy, Debug)]
pub struct FakeClock {
    /// When the process started: libfaketime's rates count from there.
    started: Instant,
    /// Drift (ms) the rates set before `since` accumulated.
    drift_ms: f64,
    rate: f64,
    since: Instant,
}

impl FakeClock {
    /// A process started now, on true time.
    pub fn started_now() -> Self {
        let now = Instant::now();
        FakeClock {
            started: now,
            drift_ms: 0.0,
            rate: 1.0,
            since: now,
        }
    }

    /// The control line that makes the clock run at `rate`, `offset_ms`
    /// away from where the drift so far has put it, from `now` on.
    pub fn line(&mut self, offset_ms: i64, rate: f64, now: Instant) -> String {
        let elapsed = now.saturating_duration_since(self.since).as_secs_f64() * 1000.0;
        self.drift_ms += elapsed * (self.rate - 1.0);
        self.rate = rate;
        self.since = now;
        let offset = offset_ms.saturating_add(self.drift_ms.round() as i64);
        spec(offset, rate, now.saturating_duration_since(self.started))
    }
}

/// The environment that preloads `lib` and points it at `control`.
pub fn env(lib: &Path, control: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        (
            "FAKETIME_TIMESTAMP_FILE".into(),
            control.display().to_string(),
        ),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        // Decimal points in the control file, whatever the locale.
        ("LC_ALL".into(), "C".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_offsets_in_seconds_and_rates() {
        let start = Duration::ZERO;
        assert_eq!(spec(0, 1.0, start), "+0.000 x1.000\n");
        assert_eq!(spec(1500, 0.25, start), "+1.500 x0.250\n");
        assert_eq!(spec(-5000, 3.0, start), "-5.000 x3.000\n");
    }

    #[test]
    fn a_heal_keeps_the_drift_and_an_offset_steps() {
        let t0 = Instant::now();
        let mut c = FakeClock {
            started: t0,
            drift_ms: 0.0,
            rate: 1.0,
            since: t0,
        };
        // x3 after 10 s of true time.
        assert_eq!(
            c.line(0, 3.0, t0 + Duration::from_secs(10)),
            "-20.000 x3.000\n"
        );
        // Healed 2 s later: the clock is 4 s ahead and stays so, at x1
        // (libfaketime then reads start + uptime + 4 s).
        assert_eq!(
            c.line(0, 1.0, t0 + Duration::from_secs(12)),
            "+4.000 x1.000\n"
        );
        // Slowed to x0.5 for 4 s: it gives 2 s of the drift back.
        let line = c.line(0, 0.5, t0 + Duration::from_secs(20));
        assert_eq!(line, spec(4000, 0.5, Duration::from_secs(20)));
        assert_eq!(
            c.line(0, 1.0, t0 + Duration::from_secs(24)),
            "+2.000 x1.000\n"
        );
        // An explicit offset is a step on top of the drift.
        assert_eq!(
            c.line(-500, 1.0, t0 + Duration::from_secs(25)),
            "+1.500 x1.000\n"
        );
    }

    #[test]
    fn a_rate_set_late_applies_from_then_on_without_a_jump() {
        // After 10 s at true time, x3: libfaketime alone would jump 20 s
        // ahead; the offset takes the 20 s back.
        assert_eq!(spec(0, 3.0, Duration::from_secs(10)), "-20.000 x3.000\n");
        // Slow clocks get the time back the other way; offsets add.
        assert_eq!(spec(500, 0.5, Duration::from_secs(4)), "+2.500 x0.500\n");
    }
}
