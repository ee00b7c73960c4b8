//! `synod suite FILE --shard K/N`: the K-th of N slices of a suite, for CI
//! systems that fan a nightly out across parallel workers and merge the
//! outputs after (`synod suite merge`, in [`super::merge`]).
//!
//! The slices are deterministic (the same file gives the same slices on
//! every worker, with no coordination) and balanced by each run's
//! expected time: longest first, each to the slice with the least
//! expected time so far (ties to the lower slice), the classic LPT
//! schedule, within 4/3 of the best possible makespan. Within a slice the
//! runs keep the suite's order. Every run is in exactly one slice.

use std::fmt;
use std::str::FromStr;

use super::suite::PlannedRun;

/// Slice `k` (from 1) of `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {s:?}: expected K/N with 1 <= K <= N, e.g. 2/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// The slice each run goes to (0-based), in the runs' order.
pub fn assign(runs: &[PlannedRun], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    // Longest first; equal times in suite order, so the result depends
    // on the file alone.
    order.sort_by(|&a, &b| {
        runs[b]
            .expected_seconds
            .total_cmp(&runs[a].expected_seconds)
            .then(a.cmp(&b))
    });
    let mut load = vec![0.0f64; n.max(1)];
    let mut slice = vec![0; runs.len()];
    for i in order {
        let (least, _) = load
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(&b.0)))
            .unwrap_or((0, &0.0));
        slice[i] = least;
        load[least] += runs[i].expected_seconds;
    }
    slice
}

/// The runs of `shard`, in the suite's order.
pub fn select(runs: Vec<PlannedRun>, shard: Shard) -> Vec<PlannedRun> {
    let slice = assign(&runs, shard.n);
    runs.into_iter()
        .zip(slice)
        .filter(|(_, s)| *s == shard.k - 1)
        .map(|(r, _)| r)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nightly::suite::{plan, Expect};
    use std::time::Duration;

    fn run(name: &str, secs: f64) -> PlannedRun {
        PlannedRun {
            name: name.into(),
            args: vec![],
            expect: Expect::Valid,
            downtime_bound: None,
            deadline: Duration::from_secs(1),
            expected_seconds: secs,
        }
    }

    #[test]
    fn shard_specs_are_checked() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { k: 2, n: 4 }));
        for bad in ["0/4", "5/4", "4", "a/b", "1/0", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn slices_are_balanced_by_expected_time() {
        let runs = vec![
            run("a", 60.0),
            run("b", 10.0),
            run("c", 10.0),
            run("d", 30.0),
            run("e", 30.0),
            run("f", 20.0),
        ];
        // Longest first to the least loaded: a->0 (60), d->1 (30), e->1
        // (60), f->0 on the tie (80), b->1 (70), c->1 (80).
        assert_eq!(assign(&runs, 2), vec![0, 1, 1, 1, 1, 0]);
        let one: Vec<String> = select(runs.clone(), Shard { k: 1, n: 2 })
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(one, ["a", "f"], "suite order within a slice");
        // More slices than runs: some are empty, none has a run twice.
        let slices = assign(&runs, 8);
        let mut seen = slices.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), runs.len());
    }

    /// `--shard K/4` of the nightly suite, K = 1..4, lists every run
    /// exactly once, and the slices' expected times are within one run
    /// of each other.
    #[test]
    fn the_nightly_in_four_shards_is_every_run_exactly_once() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../suites/nightly.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let (_, runs) = plan(&text, path).unwrap();
        let mut names: Vec<String> = Vec::new();
        let mut loads = Vec::new();
        for k in 1..=4 {
            let slice = select(runs.clone(), Shard { k, n: 4 });
            loads.push(slice.iter().map(|r| r.expected_seconds).sum::<f64>());
            names.extend(slice.into_iter().map(|r| r.name));
        }
        let mut all: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
        assert_eq!(names.len(), all.len(), "a run listed twice or left out");
        names.sort();
        all.sort();
        assert_eq!(names, all);
        let longest = runs.iter().map(|r| r.expected_seconds).fold(0.0, f64::max);
        let (lo, hi) = loads
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &l| (lo.min(l), hi.max(l)));
        assert!(hi - lo <= longest, "unbalanced slices: {loads:?}");
    }
}
