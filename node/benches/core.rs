//! How fast the pure core chooses commands: three replicas in one thread,
//! zero network cost (messages delivered in order, at once), an in-memory
//! disk, batching and pipelining at the defaults of `docs/api.md`.
//!
//! `cargo bench -p synod-node --bench core` prints commands chosen per
//! second; the core must never be the bottleneck (>= 500,000/s).
//! `SYNOD_BENCH_COMMANDS` sets how many commands to run (default 2,000,000).

use std::collections::VecDeque;
use std::time::Instant;

use synod_node::durability::{self, Pipeline, Release};
use synod_node::storage::MemStorage;
use synod_node::{
    ClientReply, ClientRequest, Config, Fsync, Input, KvOp, Message, Replica, RequestOutcome, Value,
};

struct Cluster {
    nodes: Vec<Replica>,
    disks: Vec<Pipeline<MemStorage, ClientReply>>,
    wire: VecDeque<(u64, u64, Message)>,
    done: u64,
    failed: u64,
}

impl Cluster {
    /// One input through the core and the durability pipeline, synced at
    /// once (the disk costs nothing here).
    fn drive(&mut self, i: usize, input: Input) {
        let mut out = self.nodes[i].handle(input);
        let mut released = Vec::new();
        let disk = &mut self.disks[i];
        let group = durability::split(&mut out, disk.durable(), Some, |r, _| released.push(r));
        disk.take(group, &mut |r, _| released.push(r))
            .expect("memory disk");
        disk.sync(&mut |r, _| released.push(r))
            .expect("memory disk");
        let from = i as u64 + 1;
        for r in released {
            match r {
                Release::Message(to, m) => self.wire.push_back((from, to, m)),
                Release::Reply(r) => match r.outcome {
                    RequestOutcome::Ok { .. } => self.done += 1,
                    _ => self.failed += 1,
                },
            }
        }
    }

    fn deliver_all(&mut self) {
        while let Some((from, to, msg)) = self.wire.pop_front() {
            self.drive((to - 1) as usize, Input::Message { from, msg });
        }
    }
}

/// CPU time of this thread, in seconds: the figure that does not depend on
/// what else the machine is running.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Returns (commands per wall second, per CPU second, slots, failures).
fn run(total: u64, window: u64, batch: usize, pipeline: usize) -> (f64, f64, u64, u64) {
    let members = vec![1, 2, 3];
    let nodes = members
        .iter()
        .map(|&id| {
            let mut c = Config::new(id, members.clone());
            c.batch_size = batch;
            c.pipeline = pipeline;
            c.fsync = Fsync::Always;
            c.request_timeout_ms = u64::MAX / 4;
            Replica::new(c, id, 0)
        })
        .collect();
    let mut cl = Cluster {
        nodes,
        disks: (0..3)
            .map(|_| Pipeline::new(MemStorage::new(Fsync::Always), Fsync::Always))
            .collect(),
        wire: VecDeque::new(),
        done: 0,
        failed: 0,
    };
    // Node 1 times out first and is elected.
    cl.drive(0, Input::Tick { now: 10_000 });
    cl.deliver_all();
    assert!(cl.nodes[0].is_leader(), "node 1 should lead");
    let start = Instant::now();
    let cpu_start = thread_cpu_secs();
    let mut sent = 0u64;
    while cl.done + cl.failed < total {
        // Keep `window` client requests outstanding at the leader.
        while sent < total && sent - (cl.done + cl.failed) < window {
            sent += 1;
            let req = ClientRequest {
                id: sent,
                dedup: None,
                op: KvOp::Write {
                    key: format!("k{}", sent % 1000),
                    value: Value::Int(sent as i64),
                },
            };
            cl.drive(0, Input::Client(req));
        }
        // One round of message delivery (no network cost).
        let n = cl.wire.len();
        for _ in 0..n.max(1) {
            if let Some((from, to, msg)) = cl.wire.pop_front() {
                cl.drive((to - 1) as usize, Input::Message { from, msg });
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_secs() - cpu_start;
    let slots = cl.nodes[0].status().commit_index;
    (
        cl.done as f64 / secs,
        cl.done as f64 / cpu,
        slots,
        cl.failed,
    )
}

fn main() {
    let total = std::env::var("SYNOD_BENCH_COMMANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000u64);
    println!("synod-node core benchmark: 3 replicas, zero network cost, in-memory disk");
    println!(
        "{:>6} {:>8} {:>7} {:>16} {:>16} {:>9}",
        "batch", "pipeline", "window", "commands/wall-s", "commands/cpu-s", "slots"
    );
    let rows = [
        (64, 16, 1024),
        (64, 16, 4096),
        (256, 16, 4096),
        (1, 16, 256),
    ];
    for (batch, pipeline, window) in rows {
        let n = if batch == 1 { total / 10 } else { total };
        let (wall, cpu, slots, failed) = run(n, window, batch, pipeline);
        assert_eq!(failed, 0, "every command succeeds");
        println!("{batch:>6} {pipeline:>8} {window:>7} {wall:>16.0} {cpu:>16.0} {slots:>9}");
    }
    println!(
        "(first row: the defaults of docs/api.md; the core must stay above 500,000 commands/s)"
    );
}
