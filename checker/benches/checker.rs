//! Benchmarks that print figures (no timed assertions): the etcd corpus,
//! Porcupine's kv/c50-ok, and generated histories of 1,000,000 and
//! 10,000,000 operations.
//!
//! `cargo bench -p synod-checker --bench checker` runs all four; pass
//! `etcd`, `kv`, `big` or `huge` to run some. The generated histories are
//! written once into the temp directory (streamed: the 10M one is 2 GB),
//! then judged by a child process as `synod check` judges them (streamed
//! read, split by key, report, check; no files), so its peak memory
//! (VmHWM) counts that alone.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use synod_checker::gen::{simulate_each, GenConfig};
use synod_checker::import::{self, read_file, Format};
use synod_checker::{check, check_input, Options, Verdict};

const RUNS: usize = 10;

/// Reads and checks one file as its format says; the verdict.
fn parse_and_check(path: &Path) -> Verdict {
    let imported = read_file(path, Format::Auto).expect("corpus file reads");
    let options = Options {
        semantics: imported.semantics.clone(),
        ..Options::default()
    };
    check(&imported.history, &options)
        .expect("corpus file checks")
        .verdict
}

/// CPU time (user + system, all threads) this process has used so far.
/// On a shared, loaded machine wall time says little; CPU time is what
/// the work costs.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    // The kernel's USER_HZ is 100 on every Linux we run on.
    Duration::from_millis(ticks * 10)
}

fn stats(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms over {} runs",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

fn etcd(dir: &Path) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("jepsen"))
        .expect("corpus has jepsen/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    files.sort();
    let mut times = Vec::new();
    let cpu = cpu_time();
    for _ in 0..RUNS {
        let t = Instant::now();
        for f in &files {
            std::hint::black_box(parse_and_check(f));
        }
        times.push(t.elapsed());
    }
    let cpu = (cpu_time() - cpu) / RUNS as u32;
    println!(
        "etcd corpus: {} histories, parse + check, total per pass: {}; CPU {:.0} ms per pass  (target <= 240 ms)",
        files.len(),
        stats(&mut times),
        cpu.as_secs_f64() * 1e3
    );
}

fn kv(dir: &Path) {
    let path = dir.join("kv/c50-ok.txt");
    let mut times = Vec::new();
    let cpu = cpu_time();
    for _ in 0..RUNS {
        let t = Instant::now();
        assert_eq!(parse_and_check(&path), Verdict::Valid);
        times.push(t.elapsed());
    }
    let cpu = (cpu_time() - cpu) / RUNS as u32;
    println!(
        "kv/c50-ok.txt: parse + check: {}; CPU {:.0} ms per run (all threads)  (target <= 85 ms)",
        stats(&mut times),
        cpu.as_secs_f64() * 1e3
    );
}

fn generated_config(ops: usize) -> GenConfig {
    GenConfig {
        seed: 42,
        keys: ops / 1000,
        processes_per_key: 10,
        ops,
        info_rate: 0.01,
        ..GenConfig::default()
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Generates (once) and judges a history of `ops` operations over
/// `ops / 1000` keys, in a child process; `target` is printed with it.
fn generated(ops: usize, target: &str) {
    let path = std::env::temp_dir().join(format!("synod-bench-{}m-v2.jsonl", ops / 1_000_000));
    if !path.exists() {
        let t = Instant::now();
        let tmp = path.with_extension("tmp");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).expect("temp file"));
        let mut events = 0u64;
        simulate_each(&generated_config(ops), |e| {
            serde_json::to_writer(&mut out, &e).expect("write history");
            out.write_all(b"\n").expect("write history");
            events += 1;
        });
        out.flush().expect("write history");
        drop(out);
        std::fs::rename(&tmp, &path).expect("rename history");
        println!(
            "generated {} ({events} events) in {:.1} s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let exe = std::env::current_exe().expect("current exe");
    let status = std::process::Command::new(exe)
        .arg("measure")
        .arg(&path)
        .arg(target)
        .status()
        .expect("run the measuring child");
    assert!(status.success(), "measuring child failed");
}

fn measure(path: &Path, target: &str) {
    let t = Instant::now();
    let input = import::open(path, Format::Jsonl).expect("open the generated history");
    let options = Options {
        semantics: input.semantics(),
        ..Options::default()
    };
    let outcome = check_input(input, &options).expect("check");
    let total = t.elapsed();
    let checked = &outcome.checked;
    println!(
        "generated history: {} ops over {} keys, 10 processes per key, 1% info: read + split + report {:.2} s, search {:.2} s, total {:.2} s (CPU {:.2} s, all threads), verdict {}, peak memory {:.0} MiB  (target {target})",
        outcome.report.operations,
        checked.keys.len(),
        total.as_secs_f64() - checked.millis / 1e3,
        checked.millis / 1e3,
        total.as_secs_f64(),
        cpu_time().as_secs_f64(),
        checked.verdict.as_str(),
        peak_rss_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("measure") {
        if let (Some(p), Some(target)) = (args.get(1), args.get(2)) {
            measure(Path::new(p), target);
        }
        return;
    }
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    let dir = common::corpus();
    if want("etcd") {
        etcd(&dir);
    }
    if want("kv") {
        kv(&dir);
    }
    if want("big") {
        generated(1_000_000, "<= 3 s, <= 400 MiB");
    }
    if want("huge") {
        generated(10_000_000, "checked on a 24 GiB machine");
    }
}
