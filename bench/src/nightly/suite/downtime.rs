//! The suite's bound on down-time: `expect_downtime_ms = N` and
//! `expect_downtime_elections = K`, in `[defaults]` or a `[[config]]`.
//!
//! A window is held to the larger of its two figures (the checker's
//! [`Downtime::worst_ms`]): from the fault's start to the first ok at or
//! after it, and the longest stretch without an ok inside the window. A
//! window after whose start no op succeeded before the run ended meets no
//! bound. Any window over a bound fails the run, as an invalid verdict
//! does.

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::nightly::figures::{RunFigures, Window};

/// The suite file's keys.
pub const MS_KEY: &str = "expect_downtime_ms";
pub const ELECTIONS_KEY: &str = "expect_downtime_elections";

/// How long any fault window of a run may keep its clients down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DowntimeBound {
    /// At most this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
    /// At most this many of the nodes' election timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elections: Option<f64>,
}

/// A suite file's value as a person wrote it (the parser alone has no
/// TOML printer).
fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(_) => "a list".into(),
        other => format!("{other:?}"),
    }
}

/// A positive, finite number from the suite file.
fn positive(key: &str, v: &toml::Value) -> anyhow::Result<f64> {
    let x = match v {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        other => bail!("{key} must be one positive number, not {}", shown(other)),
    };
    if !(x.is_finite() && x > 0.0) {
        bail!("{key} must be a positive number, not {}", shown(v));
    }
    Ok(x)
}

impl DowntimeBound {
    /// Takes the two keys out of a config's table (they are not `synod
    /// run` flags); `None` if neither is there.
    pub fn take(table: &mut toml::Table) -> anyhow::Result<Option<DowntimeBound>> {
        let ms = table
            .remove(MS_KEY)
            .map(|v| positive(MS_KEY, &v))
            .transpose()?;
        let elections = table
            .remove(ELECTIONS_KEY)
            .map(|v| positive(ELECTIONS_KEY, &v))
            .transpose()?;
        Ok((ms.is_some() || elections.is_some()).then_some(DowntimeBound { ms, elections }))
    }

    /// `500 ms`, `3 election timeouts`, or both.
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ms) = self.ms {
            parts.push(format!("{ms} ms"));
        }
        if let Some(e) = self.elections {
            parts.push(format!("{e} election timeouts"));
        }
        parts.join(" and ")
    }

    /// Why a window is over the bound, if it is; the larger figure is
    /// what counts, in ms and in election timeouts.
    fn over(&self, w: &Window) -> Option<String> {
        let Some(d) = &w.downtime else {
            return Some(format!(
                "{} has no down-time figures (a run judged before they existed)",
                w.label()
            ));
        };
        let Some(ms) = d.worst_ms() else {
            return Some(format!(
                "{}: no op succeeded after its start before the run ended (down at least {:.1} ms)",
                w.label(),
                d.longest_gap_ms
            ));
        };
        let elections = d.worst_elections();
        let shown = synod_checker::report::ms_and_elections(ms, elections);
        let over_ms = self.ms.is_some_and(|b| ms > b);
        let over_elections = match (self.elections, elections) {
            (Some(b), Some(e)) => e > b,
            (Some(_), None) => {
                return Some(format!(
                    "{}: down {shown}, but the nodes' election timeout is not known, so no \
                     figure in election timeouts to hold to the bound",
                    w.label()
                ))
            }
            (None, _) => false,
        };
        (over_ms || over_elections).then(|| format!("{}: down {shown}", w.label()))
    }

    /// Why the run is over the bound (naming the worst window, its
    /// down-time and the bound), or `None` if every window is within it.
    pub fn breach(&self, f: &RunFigures) -> Option<String> {
        let over: Vec<(f64, String)> = f
            .windows
            .iter()
            .filter_map(|w| {
                let why = self.over(w)?;
                let size = w
                    .downtime
                    .as_ref()
                    .and_then(|d| d.worst_ms())
                    .unwrap_or(f64::INFINITY);
                Some((size, why))
            })
            .collect();
        let worst = over.iter().max_by(|a, b| a.0.total_cmp(&b.0))?;
        let more = match over.len() {
            1 => String::new(),
            n => format!(
                " ({n} of {} fault windows over it; the worst shown)",
                f.windows.len()
            ),
        };
        Some(format!(
            "down-time over the bound of {}: {}{more}",
            self.text(),
            worst.1
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nightly::figures::Downtime;

    fn window(name: &str, start: f64, ms: Option<f64>, gap: f64) -> Window {
        let e = |x: f64| Some(x / 100.0);
        Window {
            name: name.into(),
            start,
            stop: Some(start + 1.0),
            recovery: None,
            downtime: Some(Downtime {
                ms,
                elections: ms.and_then(e),
                resumed: ms.is_some(),
                longest_gap_ms: gap,
                longest_gap_elections: e(gap),
            }),
            completed: 0,
            ok: 0,
            mismatch: 0,
        }
    }

    fn bound(ms: Option<f64>, elections: Option<f64>) -> DowntimeBound {
        DowntimeBound { ms, elections }
    }

    #[test]
    fn the_keys_must_be_positive_numbers() {
        let mut t: toml::Table = toml::from_str("expect_downtime_ms = 500\nx = 1").unwrap();
        assert_eq!(
            DowntimeBound::take(&mut t).unwrap(),
            Some(bound(Some(500.0), None))
        );
        assert!(t.contains_key("x") && !t.contains_key(MS_KEY));
        let mut t: toml::Table = toml::from_str("expect_downtime_elections = 2.5").unwrap();
        assert_eq!(
            DowntimeBound::take(&mut t).unwrap(),
            Some(bound(None, Some(2.5)))
        );
        assert_eq!(DowntimeBound::take(&mut toml::Table::new()).unwrap(), None);
        for bad in [
            "expect_downtime_ms = 0",
            "expect_downtime_ms = -3",
            "expect_downtime_ms = \"500\"",
            "expect_downtime_ms = [100, 200]",
            "expect_downtime_elections = nan",
            "expect_downtime_elections = inf",
        ] {
            let mut t: toml::Table = toml::from_str(bad).unwrap();
            let err = DowntimeBound::take(&mut t).unwrap_err().to_string();
            assert!(
                err.contains("must be") && err.contains("positive number"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_worst_window_over_the_bound_is_named() {
        let mut f = crate::nightly::figures::test_figures("r");
        f.windows = vec![
            window("partition", 1.0, Some(200.0), 150.0),
            // The gap inside the window is what is over.
            window("kill", 4.0, Some(50.0), 700.0),
            window("pause", 8.0, Some(400.0), 100.0),
        ];
        assert_eq!(bound(Some(1000.0), None).breach(&f), None);
        assert_eq!(bound(None, Some(7.5)).breach(&f), None);
        let why = bound(Some(300.0), None).breach(&f).unwrap();
        assert_eq!(
            why,
            "down-time over the bound of 300 ms: kill at 4.000 s: down 700.0 ms (7.00 election \
             timeouts) (2 of 3 fault windows over it; the worst shown)"
        );
        let why = bound(None, Some(5.0)).breach(&f).unwrap();
        assert!(
            why.contains("bound of 5 election timeouts: kill at 4.000 s"),
            "{why}"
        );
        // Never resumed: no bound is met.
        f.windows.push(window("partition", 9.0, None, 900.0));
        let why = bound(Some(100_000.0), None).breach(&f).unwrap();
        assert!(
            why.contains("partition at 9.000 s: no op succeeded after its start"),
            "{why}"
        );
        // No election timeout known: said, not passed.
        f.windows = vec![Window {
            downtime: Some(Downtime {
                elections: None,
                longest_gap_elections: None,
                ..window("kill", 1.0, Some(10.0), 10.0).downtime.unwrap()
            }),
            ..window("kill", 1.0, Some(10.0), 10.0)
        }];
        assert_eq!(bound(Some(100.0), None).breach(&f), None);
        let why = bound(None, Some(1.0)).breach(&f).unwrap();
        assert!(why.contains("election timeout is not known"), "{why}");
    }
}
