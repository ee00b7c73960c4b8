//! The bench must never be the bottleneck: the workload and the recorder
//! against the in-process null target, history streamed to disk, must
//! sustain at least 100,000 ops/s. Prints the figures `synod bench-workload`
//! measures, closed loop and open loop, with the client's CPU per op.

use std::process::Command;

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    let synod = env!("CARGO_BIN_EXE_synod");
    let mut worst = f64::INFINITY;
    for (label, extra) in [
        ("closed loop, 64 workers", vec![]),
        (
            "open loop, 64 workers, 150k ops/s",
            vec!["--rate", "150000"],
        ),
    ] {
        let out = Command::new(synod)
            .args(["bench-workload", "--seconds", "5", "--concurrency", "64"])
            .args(&extra)
            .output()
            .expect("cannot run synod bench-workload");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            panic!("synod bench-workload failed: {}", out.status);
        }
        let figures: serde_json::Value =
            serde_json::from_str(stdout.lines().next().unwrap_or("{}")).expect("figures as JSON");
        let rate = figures["ops_per_sec"].as_f64().unwrap_or(0.0);
        println!("workload/{label}: {}", stdout.lines().nth(1).unwrap_or(""));
        if let Some(cpu) = figures["client_cpu_us_per_op"].as_f64() {
            println!("workload/{label}: client CPU {cpu:.2} µs/op");
        }
        if label.starts_with("closed") {
            worst = worst.min(rate);
        }
    }
    println!("workload: closed-loop throughput {worst:.0} ops/s (floor 100000)");
    assert!(
        worst >= 100_000.0,
        "the bench itself is too slow: {worst:.0} ops/s"
    );
}
