//! Benchmarks that print figures (no timed assertions): the etcd corpus,
//! Porcupine's kv/c50-ok, and a generated history of 1,000,000 operations.
//!
//! `cargo bench -p synod-checker --bench checker` runs all three;
//! pass `etcd`, `kv` or `big` to run one. The big history is generated
//! once into the temp directory, then read and checked by a child process
//! so its peak memory (VmHWM) counts the reading and checking only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use synod_checker::gen::{simulate, GenConfig};
use synod_checker::import::{read_file, Format};
use synod_checker::{check, History, Options, Verdict};

const RUNS: usize = 10;

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/porcupine");
    dir.join("expected.tsv").exists().then_some(dir)
}

/// Reads and checks one file; the verdict.
fn parse_and_check(path: &Path) -> Verdict {
    let imported = read_file(path, Format::Auto).expect("corpus file reads");
    let options = Options {
        initial: imported.initial.clone(),
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

fn big_config() -> GenConfig {
    GenConfig {
        seed: 42,
        keys: 1000,
        processes_per_key: 10,
        ops: 1_000_000,
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

fn big() {
    let path = std::env::temp_dir().join("synod-bench-1m.jsonl");
    if !path.exists() {
        let t = Instant::now();
        let h = simulate(&big_config());
        let tmp = path.with_extension("tmp");
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp).expect("temp file"));
        h.write_to(file).expect("write history");
        std::fs::rename(&tmp, &path).expect("rename history");
        println!(
            "generated {} ({} events) in {:.1} s",
            path.display(),
            h.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let exe = std::env::current_exe().expect("current exe");
    let status = std::process::Command::new(exe)
        .arg("measure-big")
        .arg(&path)
        .status()
        .expect("run the measuring child");
    assert!(status.success(), "measuring child failed");
}

fn measure_big(path: &Path) {
    let t = Instant::now();
    let h = History::read_path(path).expect("read the generated history");
    let read = t.elapsed();
    let t = Instant::now();
    let checked = check(&h, &Options::default()).expect("check");
    let checking = t.elapsed();
    let ops = h.events.len() / 2;
    println!(
        "generated history: {ops} ops over {} keys, 10 processes per key, 1% info: read {:.2} s + check {:.2} s = {:.2} s (CPU {:.2} s, all threads), verdict {}, peak memory {:.0} MiB  (target <= 10 s, <= 2048 MiB)",
        checked.keys.len(),
        read.as_secs_f64(),
        checking.as_secs_f64(),
        (read + checking).as_secs_f64(),
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
    if args.first().map(String::as_str) == Some("measure-big") {
        if let Some(p) = args.get(1) {
            measure_big(Path::new(p));
        }
        return;
    }
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    match corpus() {
        Some(dir) => {
            if want("etcd") {
                etcd(&dir);
            }
            if want("kv") {
                kv(&dir);
            }
        }
        None => println!("skipping corpus benchmarks: ../shared/data/porcupine not found"),
    }
    if want("big") {
        big();
    }
}
