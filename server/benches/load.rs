//! Load benchmark: a 3-node cluster of real `synod-node` processes on
//! loopback with `--fsync always`.
//!
//! 1. One client writes sequentially to the leader over one bare HTTP/1
//!    connection: its write latency (target: p50 at most 0.5 ms and at
//!    most 4x the fdatasync p50 the bench measures on the nodes'
//!    filesystem before the run).
//! 2. 64 concurrent clients, 50% reads and 50% writes over 1,000 keys, for
//!    `SYNOD_LOAD_SECS` seconds (default 30): throughput and latency
//!    (target: at least 5,000 ops/s with p99 at most 50 ms).
//!
//! Clients spread over all nodes (followers forward to the leader); set
//! `SYNOD_LOAD_TARGET=leader` to send everything to the leader instead.
//! `SYNOD_LOAD_NODE_WORKERS=N` sets each node's tokio worker threads
//! (`SYNOD_WORKER_THREADS`; default 1, as `synod run`'s local backend
//! gives nodes that share a machine; `0` is the node's own default, one
//! per core).
//! `SYNOD_LOAD_NODE_BIN=PATH` runs another `synod-node` build (for A/B
//! comparisons of two builds on the same machine state);
//! `SYNOD_LOAD_FSYNC=never` shows the floor without the disk.
//!
//! Each phase also prints its cost: the CPU time of all three nodes
//! (utime + stime from `/proc/PID/stat`, every thread) over the operations
//! it completed, and the same for this bench's own client. On a shared
//! machine, CPU per op holds from run to run where wall-clock figures do
//! not.
//!
//! `cargo bench -p synod-server --bench load`, or `cargo bench -p
//! synod-node --bench load` (the same file; the node package cannot build
//! the binary, so it runs `target/release/synod-node`, built by `cargo
//! build --release -p synod-server`).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};
use synod_wire::api::WriteRequest;
use synod_wire::Role;

const NODES: usize = 3;
const CLIENTS: usize = 64;
const KEYS: usize = 1000;
const TOKEN: &str = "bench-token-0123456789";

struct Cluster {
    children: Vec<Child>,
    urls: Vec<String>,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_cluster() -> Cluster {
    let ls: Vec<TcpListener> = (0..NODES)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let ports: Vec<u16> = ls
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect();
    drop(ls);
    let dir = std::env::temp_dir().join(format!("synod-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut children = Vec::new();
    for i in 0..NODES {
        let peers: Vec<String> = (0..NODES)
            .filter(|&j| j != i)
            .map(|j| format!("{}=http://127.0.0.1:{}", j + 1, ports[j]))
            .collect();
        let log = std::fs::File::create(dir.join(format!("n{}.log", i + 1))).expect("log");
        let bin = node_bin();
        let child = Command::new(bin)
            .args(["--id", &(i + 1).to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", ports[i])])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(dir.join(format!("n{}", i + 1)))
            .args(["--token", TOKEN, "--fsync", &fsync_mode()])
            .env("RUST_LOG", "warn")
            .env(
                "SYNOD_WORKER_THREADS",
                std::env::var("SYNOD_LOAD_NODE_WORKERS").unwrap_or_else(|_| "1".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn synod-node");
        children.push(child);
    }
    Cluster {
        children,
        urls: ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect(),
        dir,
    }
}

/// The `synod-node` binary to run: `SYNOD_LOAD_NODE_BIN`, else the one
/// cargo built for this package (synod-server), else the release build
/// beside this bench's own executable (`cargo bench -p synod-node`).
fn node_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SYNOD_LOAD_NODE_BIN") {
        return PathBuf::from(bin);
    }
    if let Some(bin) = option_env!("CARGO_BIN_EXE_synod-node") {
        return PathBuf::from(bin);
    }
    // target/release/deps/load-HASH -> target/release/synod-node
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join("synod-node")));
    match beside {
        Some(bin) if bin.is_file() => bin,
        _ => {
            eprintln!(
                "load bench: no synod-node binary beside this bench; build it with \
                 `cargo build --release -p synod-server` or set SYNOD_LOAD_NODE_BIN"
            );
            std::process::exit(2);
        }
    }
}

/// `always` unless `SYNOD_LOAD_FSYNC` says otherwise.
fn fsync_mode() -> String {
    std::env::var("SYNOD_LOAD_FSYNC").unwrap_or_else(|_| "always".into())
}

/// A write's body, as the wire crate defines it.
fn write(value: Value) -> WriteRequest {
    WriteRequest {
        value,
        client: None,
        seq: None,
    }
}

async fn find_leader(http: &reqwest::Client, c: &Cluster) -> usize {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        for (i, u) in c.urls.iter().enumerate() {
            if let Ok(r) = http
                .get(format!("{u}/admin/status"))
                .bearer_auth(TOKEN)
                .send()
                .await
            {
                if let Ok(s) = r.json::<Value>().await {
                    if Role::deserialize(&s["role"]).ok() == Some(Role::Leader) {
                        return i;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader in 15 s (logs in {})", c.dir.display());
}

/// CPU seconds (user + system, all threads) a process has used so far,
/// from `/proc/PID/stat`; `None` off Linux or once it has gone.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields count from after
    // its closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// CPU seconds this process (the bench's client) has used so far.
fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(f64::NAN)
}

/// The nodes' CPU seconds and the client's, read together.
#[derive(Clone, Copy)]
struct Cpu {
    nodes: f64,
    client: f64,
}

impl Cpu {
    fn now(c: &Cluster) -> Cpu {
        Cpu {
            nodes: c
                .children
                .iter()
                .map(|ch| cpu_seconds(ch.id()).unwrap_or(f64::NAN))
                .sum(),
            client: own_cpu_seconds(),
        }
    }

    /// `since` to now, per op, in microseconds of CPU.
    fn per_op(self, since: Cpu, ops: u64) -> String {
        let per = |a: f64, b: f64| (a - b) * 1e6 / ops.max(1) as f64;
        format!(
            "cpu per op: nodes {:.0} us, client {:.0} us",
            per(self.nodes, since.nodes),
            per(self.client, since.client)
        )
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn main() {
    let secs: u64 = std::env::var("SYNOD_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let to_leader = std::env::var("SYNOD_LOAD_TARGET").is_ok_and(|t| t == "leader");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(secs, to_leader));
}

/// fdatasync latency of the filesystem the nodes use, right now: the
/// floor under every write's latency, printed so the figures can be read
/// in context (a shared machine's disk varies by an order of magnitude).
fn probe_fsync(dir: &std::path::Path) -> (f64, f64) {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let Ok(mut f) = std::fs::File::create(&path) else {
        return (f64::NAN, f64::NAN);
    };
    let mut us = Vec::new();
    for _ in 0..200 {
        let _ = f.write_all(&[b'x'; 256]);
        let t = Instant::now();
        let _ = f.sync_data();
        us.push(t.elapsed().as_micros() as u64);
    }
    let _ = std::fs::remove_file(&path);
    us.sort_unstable();
    (ms(us[us.len() / 2]), ms(us[us.len() * 99 / 100]))
}

/// Sequential writes to one node for 3 s (at least 500): their latency.
///
/// The client is one bare HTTP/1 connection (hyper's, with no pool,
/// redirect or timeout layers around it), reopened if it breaks: the
/// figure is the node's write latency with as little client in it as a
/// client can have. Every write is timed from before its request is built
/// to its whole response; a failed one is counted, not timed.
async fn single_client(url: String) -> (Histogram<u64>, u64) {
    use http_body_util::{BodyExt, Full};
    let addr = url
        .strip_prefix("http://")
        .expect("an http:// URL")
        .to_string();
    let mut single = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>>> = None;
    let mut failed = 0;
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_secs(3) || n < 500 {
        if sender.is_none() {
            sender = connect(&addr).await;
        }
        // Ready for the next request (hyper's connection has read the
        // last answer), outside the timing.
        if let Some(tx) = sender.as_mut() {
            if tx.ready().await.is_err() {
                // Closed under us: counted as a failed write.
                sender = None;
                failed += 1;
                n += 1;
                continue;
            }
        }
        let s = Instant::now();
        let ok = match sender.as_mut() {
            Some(tx) => {
                let body = serde_json::to_vec(&write(json!(n))).expect("json");
                let req = hyper::Request::put(format!("/v1/kv/single{}", n % KEYS as u64))
                    .header(hyper::header::HOST, &addr)
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(bytes::Bytes::from(body)))
                    .expect("request");
                let exchange = async {
                    let r = tx.send_request(req).await.ok()?;
                    let status = r.status();
                    r.into_body().collect().await.ok()?;
                    Some(status == 200)
                };
                match tokio::time::timeout(Duration::from_secs(5), exchange).await {
                    Ok(Some(ok)) => ok,
                    _ => {
                        sender = None;
                        false
                    }
                }
            }
            None => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                false
            }
        };
        if ok {
            let _ = single.record(s.elapsed().as_micros() as u64);
        } else {
            failed += 1;
        }
        n += 1;
    }
    (single, failed)
}

/// One HTTP/1 connection to `addr`, its task spawned on this runtime.
async fn connect(
    addr: &str,
) -> Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(tx)
}

async fn run(secs: u64, to_leader: bool) {
    let cluster = start_cluster();
    let (f50, f99) = probe_fsync(&cluster.dir);
    println!("disk: fdatasync p50={f50:.3} ms p99={f99:.3} ms (200 appends, before the run)");
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CLIENTS)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let leader = find_leader(&http, &cluster).await;
    println!(
        "synod-node load bench: {NODES} nodes on loopback, fsync={}, leader is node {}",
        fsync_mode(),
        leader + 1
    );

    // Warm-up: connections, allocator, page cache.
    for i in 0..200 {
        let _ = http
            .put(format!("{}/v1/kv/warm{}", cluster.urls[leader], i % 10))
            .json(&write(json!(i)))
            .send()
            .await;
    }

    // 1. One client, sequential writes to the leader, on a thread and
    //    runtime of its own: the request and its connection's task then
    //    run on one thread, as in a sequential client, so the figure
    //    holds no hops between the bench's own threads.
    let cpu0 = Cpu::now(&cluster);
    let url = cluster.urls[leader].clone();
    let single = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(single_client(url))
    })
    .join()
    .expect("the single-client thread panicked");
    let (single, failed) = single;
    println!(
        "single client, writes to the leader: n={} failed={failed} p50={:.3} ms p90={:.3} ms p99={:.3} ms",
        single.len(),
        ms(single.value_at_quantile(0.5)),
        ms(single.value_at_quantile(0.9)),
        ms(single.value_at_quantile(0.99)),
    );
    println!("  {}", Cpu::now(&cluster).per_op(cpu0, single.len()));

    // 2. 64 clients, 50/50 reads and writes over 1,000 keys.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let http = http.clone();
        let url = cluster.urls[if to_leader { leader } else { c % NODES }].clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(c as u64);
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = rng.gen_range(0..KEYS);
                let s = Instant::now();
                let r = if rng.gen_bool(0.5) {
                    http.get(format!("{url}/v1/kv/k{key}")).send().await
                } else {
                    http.put(format!("{url}/v1/kv/k{key}"))
                        .json(&write(json!(n)))
                        .send()
                        .await
                };
                let status = match r {
                    Ok(r) => {
                        let st = r.status().as_u16();
                        if r.bytes().await.is_ok() {
                            st
                        } else {
                            0
                        }
                    }
                    Err(_) => 0,
                };
                *statuses.entry(status).or_insert(0) += 1;
                if status == 200 {
                    let _ = h.record(s.elapsed().as_micros() as u64);
                }
                n += 1;
            }
            (h, statuses)
        }));
    }
    let cpu0 = Cpu::now(&cluster);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for task in tasks {
        let (h, s) = task.await.expect("client task");
        all.add(&h).expect("merge");
        for (k, v) in s {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    let elapsed = t.elapsed().as_secs_f64();
    let cpu1 = Cpu::now(&cluster);
    let ok = all.len();
    let ops = ok as f64 / elapsed;
    println!(
        "{CLIENTS} clients ({}), 50% reads 50% writes over {KEYS} keys, {elapsed:.1} s:",
        if to_leader {
            "all to the leader"
        } else {
            "spread over all nodes"
        }
    );
    println!(
        "  {ops:.0} ops/s ok; p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms; statuses {statuses:?}",
        ms(all.value_at_quantile(0.5)),
        ms(all.value_at_quantile(0.9)),
        ms(all.value_at_quantile(0.99)),
        ms(all.max()),
    );
    println!("  {}", cpu1.per_op(cpu0, ok));
    let p99 = ms(all.value_at_quantile(0.99));
    let p50_single = ms(single.value_at_quantile(0.5));
    // A failed write is not a fast one: any failure misses both targets.
    let single_ok = failed == 0 && !single.is_empty();
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "targets: >= 5000 ops/s [{}], p99 <= 50 ms [{}], single-client write p50 <= 0.5 ms [{}] \
         and <= 4x the fdatasync p50 ({:.1}x) [{}]",
        met(ops >= 5000.0),
        met(p99 <= 50.0),
        met(single_ok && p50_single <= 0.5),
        p50_single / f50,
        met(single_ok && p50_single <= 4.0 * f50),
    );
    // Per-node fsync counts: how much group commit batched.
    for (i, u) in cluster.urls.iter().enumerate() {
        if let Ok(r) = http
            .get(format!("{u}/admin/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            if let Ok(text) = r.text().await {
                let pick = |name: &str| {
                    text.lines()
                        .find(|l| l.starts_with(name))
                        .and_then(|l| l.rsplit(' ').next())
                        .unwrap_or("?")
                        .to_string()
                };
                println!(
                    "  node {}: fsyncs {} (sum {} s), records {}, peer batches ok {}",
                    i + 1,
                    pick("synod_fsyncs_total "),
                    pick("synod_fsync_seconds_sum "),
                    pick("synod_records_appended_total "),
                    pick("synod_peer_batches_total{result=\"ok\"}"),
                );
            }
        }
    }
}
