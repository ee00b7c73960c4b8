//! The matrix of a suite file: `[defaults]` and `[[config]]` tables
//! expanded into [`PlannedRun`]s, each one's flags checked with clap
//! before the first run starts.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde::{Deserialize, Serialize};

use super::downtime::{DowntimeBound, ELECTIONS_KEY};
use crate::run::RunArgs;

/// The verdict a run must reach to pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The default: the configuration is meant to be linearizable.
    #[default]
    Valid,
    /// A teeth run: an unsafe configuration the checker must catch.
    Invalid,
}

impl Expect {
    fn parse(v: &toml::Value) -> anyhow::Result<Expect> {
        match v.as_str() {
            Some("valid") => Ok(Expect::Valid),
            Some("invalid") => Ok(Expect::Invalid),
            _ => bail!("expect must be \"valid\" or \"invalid\", not {v:?}"),
        }
    }
}

/// One run of the matrix: its name and its `synod run` flags.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedRun {
    pub name: String,
    pub args: Vec<String>,
    pub expect: Expect,
    /// How long any fault window may keep the clients down
    /// (`expect_downtime_ms`, `expect_downtime_elections`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_bound: Option<DowntimeBound>,
    /// Seconds the child may take before it is stopped.
    #[serde(skip)]
    pub deadline: Duration,
    /// Seconds the run is expected to take (workload, recovery and
    /// start-up), what `--shard` balances.
    #[serde(skip)]
    pub expected_seconds: f64,
}

/// What a run costs besides its workload and recovery: nodes starting,
/// a leader found, the history checked, the cluster torn down.
const SETUP_SECONDS: f64 = 5.0;

/// Wraps [`RunArgs`] so the suite can validate a run's flags with clap.
#[derive(Parser)]
#[command(name = "synod run", no_binary_name = true)]
struct RunOnly {
    #[command(flatten)]
    args: RunArgs,
}

/// Keys whose array value is one flag's list, not an axis.
const LIST_KEYS: [&str; 1] = ["node_args"];

/// Expands a suite file into its runs, every one validated.
pub fn plan(text: &str, origin: &str) -> anyhow::Result<(String, Vec<PlannedRun>)> {
    let doc: toml::Table = toml::from_str(text).with_context(|| format!("{origin}: not TOML"))?;
    let suite = doc
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("suite")
        .to_string();
    let clean = sanitize(&suite);
    for key in doc.keys() {
        if !matches!(key.as_str(), "name" | "description" | "defaults" | "config") {
            bail!("{origin}: unknown top-level key {key:?} (expected name, description, defaults, config)");
        }
    }
    let defaults = match doc.get("defaults") {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => bail!("{origin}: [defaults] must be a table"),
        None => toml::Table::new(),
    };
    let configs = match doc.get("config") {
        Some(toml::Value::Array(a)) => a.clone(),
        Some(_) => bail!("{origin}: config must be [[config]] tables"),
        None => vec![toml::Value::Table(toml::Table::new())],
    };
    let mut runs = Vec::new();
    for (ci, config) in configs.iter().enumerate() {
        let toml::Value::Table(config) = config else {
            bail!("{origin}: config #{} is not a table", ci + 1);
        };
        let mut merged = defaults.clone();
        for (k, v) in config {
            merged.insert(k.clone(), v.clone());
        }
        let label = merged
            .remove("name")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("c{}", ci + 1));
        let expect = match merged.remove("expect") {
            Some(v) => Expect::parse(&v).with_context(|| format!("{origin}: config {label:?}"))?,
            None => Expect::Valid,
        };
        let downtime_bound = DowntimeBound::take(&mut merged)
            .with_context(|| format!("{origin}: config {label:?}"))?;
        // Axes: every array except list-valued flags, in key order.
        let axes: Vec<(String, Vec<toml::Value>)> = merged
            .iter()
            .map(|(k, v)| match v {
                toml::Value::Array(a) if !LIST_KEYS.contains(&k.as_str()) => (k.clone(), a.clone()),
                other => (k.clone(), vec![other.clone()]),
            })
            .collect();
        if let Some((k, _)) = axes.iter().find(|(_, vs)| vs.is_empty()) {
            bail!("{origin}: config {label:?}: {k} is an empty list");
        }
        let mut index = vec![0usize; axes.len()];
        loop {
            let mut name = format!("{clean}-{}", sanitize(&label));
            let mut flags = Vec::new();
            for (i, (k, vs)) in axes.iter().enumerate() {
                let v = &vs[index[i]];
                if vs.len() > 1 {
                    // Faults and seeds read well bare; settings need
                    // their key (`nodes=3`, not `3`).
                    let value = sanitize(&scalar(v)?);
                    name.push('-');
                    match k.as_str() {
                        "faults" | "fault" => name.push_str(&value),
                        "seeds" => name.push_str(&format!("s{value}")),
                        _ => name.push_str(&format!("{k}={value}")),
                    }
                }
                push_flag(&mut flags, k, v)
                    .with_context(|| format!("{origin}: config {label:?}"))?;
            }
            let parsed = RunOnly::try_parse_from(&flags).map_err(|e| {
                anyhow::anyhow!("{origin}: run {name} has bad settings: {}", e.render())
            })?;
            let a = &parsed.args;
            if downtime_bound.is_some_and(|b| b.elections.is_some())
                && a.election_timeout_ms().is_none()
            {
                bail!(
                    "{origin}: run {name}: {ELECTIONS_KEY} needs the nodes' election timeout, \
                     which this run does not know: give it (election_timeout_ms for an \
                     external cluster, etcd_arg = \"--election-timeout=MS\" for etcd) or \
                     bound the down-time in ms with expect_downtime_ms"
                );
            }
            let deadline = Duration::from_secs_f64(
                a.time_limit
                    + a.recovery
                    + if a.check_time_limit > 0.0 {
                        a.check_time_limit
                    } else {
                        3600.0
                    }
                    + a.ready_timeout
                    + 120.0,
            );
            runs.push(PlannedRun {
                name,
                args: flags,
                expect,
                downtime_bound,
                deadline,
                expected_seconds: a.time_limit + a.recovery + SETUP_SECONDS,
            });
            let lens: Vec<usize> = axes.iter().map(|(_, vs)| vs.len()).collect();
            if !advance(&mut index, &lens) {
                break;
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for r in &runs {
        if !seen.insert(r.name.clone()) {
            bail!(
                "{origin}: two runs are both named {:?}: give the configs distinct names",
                r.name
            );
        }
    }
    Ok((suite, runs))
}

/// The next combination of axis indices, last axis fastest; false once
/// every combination has been made.
fn advance(index: &mut [usize], lens: &[usize]) -> bool {
    for i in (0..index.len()).rev() {
        index[i] += 1;
        if index[i] < lens[i] {
            return true;
        }
        index[i] = 0;
    }
    false
}

/// A scalar as text (for run names and flag values).
fn scalar(v: &toml::Value) -> anyhow::Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!("expected a string, number or boolean, got {other:?}"),
    })
}

fn push_flag(flags: &mut Vec<String>, key: &str, v: &toml::Value) -> anyhow::Result<()> {
    let flag = match key {
        "faults" | "fault" => "--nemesis".to_string(),
        "seeds" => "--seed".to_string(),
        "node_args" => "--node-arg".to_string(),
        "store" | "name" => bail!("{key} is set by the suite, not per run"),
        k => format!("--{}", k.replace('_', "-")),
    };
    match v {
        toml::Value::Boolean(true) => flags.push(flag),
        toml::Value::Boolean(false) => {}
        toml::Value::Array(items) => {
            for item in items {
                flags.push(format!("{flag}={}", scalar(item)?));
            }
        }
        other => flags.push(format!("{flag}={}", scalar(other)?)),
    }
    Ok(())
}

/// Keeps a run name a plain directory name.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' | '=' => c,
            ',' => '+',
            _ => '-',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_axes_and_configs_inherit_defaults() {
        let (name, runs) = plan(
            r#"
name = "t"
[defaults]
time_limit = 5
faults = ["partition", "kill"]
[[config]]
name = "a"
proposers = ["leader", "any"]
[[config]]
name = "b"
nodes = 5
faults = "pause"
node_args = ["--batch-size", "4"]
"#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(name, "t");
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "t-a-partition-proposers=leader",
                "t-a-partition-proposers=any",
                "t-a-kill-proposers=leader",
                "t-a-kill-proposers=any",
                "t-b"
            ]
        );
        assert!(runs[4].args.contains(&"--nodes=5".to_string()));
        assert!(runs[4]
            .args
            .contains(&"--node-arg=--batch-size".to_string()));
    }

    #[test]
    fn downtime_bounds_are_inherited_validated_and_not_run_flags() {
        let (_, runs) = plan(
            r#"
[defaults]
expect_downtime_ms = 2000
[[config]]
name = "tight"
expect_downtime_elections = 3
[[config]]
name = "loose"
expect_downtime_ms = 9000.5
"#,
            "t.toml",
        )
        .unwrap();
        let bound = |ms, elections| Some(DowntimeBound { ms, elections });
        assert_eq!(runs[0].downtime_bound, bound(Some(2000.0), Some(3.0)));
        assert_eq!(runs[1].downtime_bound, bound(Some(9000.5), None));
        assert!(runs
            .iter()
            .all(|r| !r.args.iter().any(|a| a.contains("downtime"))));
        let (_, runs) = plan("[[config]]\nname = \"none\"\n", "t.toml").unwrap();
        assert_eq!(runs[0].downtime_bound, None);
        for (bad, says) in [
            (
                "[defaults]\nexpect_downtime_ms = 0\n",
                "expect_downtime_ms must be a positive number",
            ),
            (
                "[[config]]\nexpect_downtime_elections = \"two\"\n",
                "expect_downtime_elections must be one positive number, not \"two\"",
            ),
            ("[[config]]\nexpect_downtime_ms = [1, 2]\n", "not a list"),
            // etcd's election timeout is known only when given.
            (
                "[[config]]\ntarget = \"etcd\"\nexpect_downtime_elections = 2\n",
                "needs the nodes' election timeout",
            ),
        ] {
            let err = format!("{:#}", plan(bad, "x.toml").unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
        let etcd = "[[config]]\ntarget = \"etcd\"\netcd_arg = \"--election-timeout=1000\"\n\
                    expect_downtime_elections = 2\n";
        if let Err(e) = plan(etcd, "x.toml") {
            panic!("{e:#}");
        }
    }

    #[test]
    fn a_typo_fails_before_any_run() {
        let err = plan("[defaults]\nproposer = \"any\"\n", "x.toml").unwrap_err();
        assert!(format!("{err:#}").contains("bad settings"), "{err:#}");
        let err = plan("[defaults]\nreads = \"sometimes\"\n", "x.toml").unwrap_err();
        assert!(format!("{err:#}").contains("bad settings"), "{err:#}");
    }
}
