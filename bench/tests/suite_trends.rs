//! Trends across nights end to end: three nights of a two-configuration
//! suite against the fake node into one store, then the trend file (a
//! line per run and night), `synod serve`'s `/trends` page (a line per
//! configuration in every figure; in headless Chromium without script
//! errors, where Debian's Chromium is installed) and `synod compare
//! --last 2` of one configuration's series (its last two nights).

mod browser;
mod serve_support;

#[path = "support/bins.rs"]
mod bins;

use bins::{fake_node, synod_bin};
use std::path::Path;
use std::process::Command;

const SUITE: &str = r#"
name = "night"
[defaults]
nodes = 1
faults = "pause"
nemesis_interval = 0.5
time_limit = 2
recovery = 1
concurrency = 2
check_time_limit = 30

[[config]]
name = "a"
[[config]]
name = "b"
concurrency = 4
"#;

fn suite(file: &Path, store: &Path, fake: &Path) {
    let out = Command::new(synod_bin())
        .arg("suite")
        .arg(file)
        .arg("--store")
        .arg(store)
        .env("SYNOD_NODE_BIN", fake)
        .env("SYNOD_COMMIT", "c0ffee")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("trends: 2 lines added to"), "{stderr}");
}

#[test]
fn three_nights_draw_a_line_per_configuration() {
    let fake = fake_node();
    let tmp = std::env::temp_dir().join(format!("synod-suite-trends-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let file = tmp.join("night.toml");
    std::fs::write(&file, SUITE).unwrap();
    let store = tmp.join("store");
    for _ in 0..3 {
        suite(&file, &store, &fake);
        // Nights are named by the second the suite started.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }

    let text = std::fs::read_to_string(store.join("_trends.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{text}");
    let nights: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l["night"].as_str().unwrap()).collect();
    assert_eq!(nights.len(), 3, "{text}");
    for l in &lines {
        assert_eq!(l["verdict"], "valid", "{l}");
        assert_eq!(l["commit"], "c0ffee", "{l}");
        assert!(l["throughput"].as_f64().unwrap() > 0.0, "{l}");
        assert_eq!(l["downtime"][0]["fault"], "pause", "{l}");
        let run = store.join(l["run"].as_str().unwrap());
        assert!(run.join("results.json").is_file(), "{l}");
    }

    // The page, over HTTP and in a browser.
    let server = serve_support::Server::start(&store);
    let (status, body) = serve_support::get(&server.addr, "/trends");
    let page = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("6 runs of 2 configurations over 3 nights"),
        "{page}"
    );
    // Six figures; the fake node counts no peer messages, so that one
    // says it has no figures and the five others draw both lines.
    assert_eq!(page.matches("<h2>").count(), 6, "{page}");
    assert_eq!(page.matches(">no figures<").count(), 1, "{page}");
    for config in ["night-a", "night-b"] {
        let lines = page.matches(&format!("data-config=\"{config}\"")).count();
        assert_eq!(lines, 5, "a line for {config} in each figure with figures");
    }
    let (_, index) = serve_support::get(&server.addr, "/");
    assert!(String::from_utf8_lossy(&index).contains("href=\"/trends\""));
    if let Some((dom, log)) =
        browser::dom(&format!("{}trends", server.url()), &tmp.join("chromium"))
    {
        assert!(!log.contains("Uncaught"), "script error:\n{log}");
        assert_eq!(
            dom.matches("<polyline class=\"trend\"").count(),
            10,
            "{dom}"
        );
        let png = tmp.join("trends.png");
        browser::screenshot(
            &format!("{}trends", server.url()),
            &png,
            &tmp.join("chromium"),
        );
        eprintln!(
            "chromium: trends rendered, {} bytes",
            std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0)
        );
    }
    drop(server);

    // One configuration against its own last two nights.
    let out = Command::new(synod_bin())
        .args(["compare", "--last", "2", "--out"])
        .arg(tmp.join("cmp"))
        .arg(store.join("night-a"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(tmp.join("cmp/compare.md")).unwrap();
    let mut runs: Vec<&str> = lines
        .iter()
        .filter(|l| l["config"] == "night-a")
        .map(|l| l["run"].as_str().unwrap().trim_start_matches("night-a/"))
        .collect();
    runs.sort_unstable();
    assert_eq!(runs.len(), 3);
    assert!(!md.contains(runs[0]), "the oldest night is left out:\n{md}");
    assert!(md.contains(runs[1]) && md.contains(runs[2]), "{md}");
    std::fs::remove_dir_all(&tmp).ok();
}
