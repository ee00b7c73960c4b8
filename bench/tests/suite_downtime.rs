//! The suite's down-time bound end to end: `synod suite` of two runs
//! against the fake node (one node, paused by the nemesis, so the clients
//! are down for as long as each pause holds), one with a bound no pause
//! can meet (1 ms) and one with a generous bound. The tight run fails in
//! the table, `summary.json` and JUnit (a `<failure>` naming the window,
//! its down-time and the bound), and the suite exits as for an invalid
//! run; the generous one passes.

#[path = "support/bins.rs"]
mod bins;
#[path = "support/xml.rs"]
mod xml;

use bins::{fake_node, synod_bin};
use std::process::Command;
use xml::well_formed;

const SUITE: &str = r#"
name = "down"
[defaults]
nodes = 1
faults = "pause"
nemesis_interval = 0.6
time_limit = 3
recovery = 1
concurrency = 2
client_timeout_ms = 2000
check_time_limit = 30
seeds = 5

[[config]]
name = "tight"
expect_downtime_ms = 1

[[config]]
name = "generous"
expect_downtime_ms = 60000
expect_downtime_elections = 200
"#;

#[test]
fn a_run_down_longer_than_its_bound_fails_the_suite_and_junit() {
    let fake = fake_node();
    let tmp = std::env::temp_dir().join(format!("synod-suite-down-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let file = tmp.join("down.toml");
    std::fs::write(&file, SUITE).unwrap();
    let (out_dir, junit) = (tmp.join("out"), tmp.join("junit.xml"));
    let out = Command::new(synod_bin())
        .arg("suite")
        .arg(&file)
        .arg("--store")
        .arg(tmp.join("store"))
        .arg("--out")
        .arg(&out_dir)
        .arg("--junit")
        .arg(&junit)
        .env("SYNOD_NODE_BIN", &fake)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("{stderr}\n{stdout}");
    // Down too long counts as invalid does.
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{stdout}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["exit"], 1);
    let runs = summary["runs"].as_array().unwrap();
    let run = |name: &str| {
        runs.iter()
            .find(|r| r["name"] == format!("down-{name}"))
            .unwrap_or_else(|| panic!("no run {name}: {summary}"))
    };
    let (tight, generous) = (run("tight"), run("generous"));
    for r in [tight, generous] {
        // The fake node is linearizable: the verdict is not the failure.
        assert_eq!(r["exit"], 0, "{r}");
        assert_eq!(r["figures"]["verdict"], "valid", "{r}");
        // Measured per fault: the pauses, in ms and in the node's
        // default 300 ms election timeout.
        let downtime = &r["figures"]["downtime"][0];
        assert_eq!(downtime["fault"], "pause", "{r}");
        let worst = downtime["worst_ms"].as_f64().unwrap();
        assert!(worst > 100.0, "a pause of 0.6 s downs one node: {r}");
        let elections = downtime["worst_elections"].as_f64().unwrap();
        assert!((elections - worst / 300.0).abs() < 1e-9, "{r}");
        assert_eq!(r["figures"]["election_timeout_ms"], 300.0, "{r}");
    }
    let breach = tight["downtime_breach"]
        .as_str()
        .expect("the tight run is over");
    assert!(
        breach.starts_with("down-time over the bound of 1 ms: pause at ")
            && breach.contains(" s: down "),
        "{breach}"
    );
    assert_eq!(tight["expect_downtime"]["ms"], 1.0);
    assert!(generous.get("downtime_breach").is_none(), "{generous}");

    // The table marks the run and says why.
    assert!(stdout.contains("worst down-time"), "{stdout}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("down-{name} ")))
            .unwrap_or_else(|| panic!("no row {name}:\n{stdout}"))
            .to_string()
    };
    assert!(row("tight").contains(" *"), "{stdout}");
    assert!(!row("generous").contains(" *"), "{stdout}");
    assert!(
        stdout.contains(&format!("  down-tight: {breach}")),
        "{stdout}"
    );
    assert!(stdout.contains("down-time by fault"), "{stdout}");

    // JUnit: valid XML, one failure, on the tight run, naming the window,
    // its down-time and the bound.
    let xml = std::fs::read_to_string(&junit).unwrap();
    well_formed(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    assert!(
        xml.contains("tests=\"2\" failures=\"1\" errors=\"0\""),
        "{xml}"
    );
    let case = |name: &str| {
        let start = xml
            .find(&format!("name=\"down-{name}\""))
            .unwrap_or_else(|| panic!("no case {name}:\n{xml}"));
        let end = xml[start..].find("</testcase>").unwrap() + start;
        xml[start..end].to_string()
    };
    assert!(
        case("tight").contains(
            "<failure type=\"downtime\" message=\"down-time over the bound of 1 ms: pause at "
        ),
        "{xml}"
    );
    assert!(!case("generous").contains("<failure"), "{xml}");
    assert!(
        case("generous").contains("<property name=\"worst_downtime_elections\""),
        "{xml}"
    );
    std::fs::remove_dir_all(&tmp).ok();
}
