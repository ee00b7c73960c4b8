//! Fan-out equals one run: `synod suite FILE --shard K/N` slices a suite
//! so that every run is in exactly one slice, and `synod suite merge` of
//! the slices' outputs gives the table the unsharded suite gives.
//!
//! The smoke half runs real `synod-node`s and skips, saying so, when
//! `synod-node` has not been built next to `synod`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn synod_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_synod"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// The run names a dry run lists.
fn dry_run(extra: &[&str]) -> Vec<String> {
    let out = Command::new(synod_bin())
        .arg("suite")
        .arg(repo().join("suites/nightly.toml"))
        .arg("--dry-run")
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let names: Vec<String> = text
        .lines()
        .filter(|l| l.contains("  synod run "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let count = format!("{} runs", names.len());
    assert!(text.contains(&count), "{text}");
    names
}

#[test]
fn the_nightly_in_four_shards_lists_every_run_exactly_once() {
    let all = dry_run(&[]);
    assert!(all.len() > 100, "the nightly has its runs: {}", all.len());
    let mut sharded = Vec::new();
    for k in 1..=4 {
        let slice = dry_run(&["--shard", &format!("{k}/4")]);
        assert!(!slice.is_empty(), "shard {k}/4 is empty");
        // Deterministic: the same slice every time it is asked for.
        assert_eq!(slice, dry_run(&["--shard", &format!("{k}/4")]));
        sharded.extend(slice);
    }
    assert_eq!(sharded.len(), all.len(), "a run listed twice or left out");
    let (mut a, mut b) = (all.clone(), sharded);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Bad slices are refused by clap, before anything runs.
    let out = Command::new(synod_bin())
        .args(["suite", "suites/nightly.toml", "--shard", "5/4"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected K/N"));
}

/// (name, args, expect, verdict) of every run in a summary, in order.
fn rows(summary: &Path) -> Vec<(String, String, String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["args"].to_string(),
                r["expect"].to_string(),
                r["figures"]["verdict"]
                    .as_str()
                    .unwrap_or("error")
                    .to_string(),
            )
        })
        .collect()
}

fn suite(store: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(synod_bin())
        .arg("suite")
        .arg(repo().join("suites/smoke.toml"))
        .arg("--store")
        .arg(store)
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The table's rows without the figures that differ run to run.
fn table_rows(table: &str) -> Vec<String> {
    table
        .lines()
        .filter(|l| l.starts_with("smoke-"))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn the_smoke_suite_in_two_shards_merges_into_the_unsharded_table() {
    let node = synod_bin().with_file_name("synod-node");
    if std::env::var_os("SYNOD_NODE_BIN").is_none() && !node.is_file() {
        panic!(
            "synod-node is not built at {} (cargo build --release --workspace); the smoke suite needs it",
            node.display()
        );
    }
    let tmp = std::env::temp_dir().join(format!("synod-suite-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let store = tmp.join("store");
    let whole = tmp.join("whole");
    let (code, whole_table) = suite(&store, &["--out", whole.to_str().unwrap()]);
    assert!(matches!(code, Some(0 | 2)), "{whole_table}");
    let mut shards = Vec::new();
    for k in 1..=2 {
        let out = tmp.join(format!("shard-{k}"));
        let (code, table) = suite(
            &store,
            &["--shard", &format!("{k}/2"), "--out", out.to_str().unwrap()],
        );
        assert!(matches!(code, Some(0 | 2)), "{table}");
        assert_eq!(
            table_rows(&table).len(),
            2,
            "two of four runs each: {table}"
        );
        shards.push(out);
    }
    let merged = tmp.join("merged");
    let out = Command::new(synod_bin())
        .args(["suite", "merge"])
        .args(&shards)
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    let merged_table = String::from_utf8_lossy(&out.stdout).to_string();
    let whole_rows = rows(&whole.join("summary.json"));
    assert_eq!(whole_rows.len(), 4);
    assert_eq!(rows(&merged.join("summary.json")), whole_rows);
    assert_eq!(table_rows(&merged_table), table_rows(&whole_table));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        out.status.code(),
        summary["exit"].as_i64().map(|c| c as i32)
    );
    let junit = std::fs::read_to_string(merged.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 4, "{junit}");
    let html = std::fs::read_to_string(merged.join("compare.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("smoke-any-all-kill"));
    // One shard alone is not the suite: the merge says which runs are
    // missing and fails.
    let out = Command::new(synod_bin())
        .args(["suite", "merge"])
        .arg(&shards[0])
        .arg("--out")
        .arg(tmp.join("half"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in no shard given"));
    std::fs::remove_dir_all(&tmp).ok();
}
