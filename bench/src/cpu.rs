//! CPU cost per operation: what a run's nodes, and the bench itself,
//! spent on the processor for each client operation completed. On a
//! machine the cluster shares with its client (and with whatever else
//! runs), throughput moves from run to run; CPU per op holds.
//!
//! **Node CPU per op**: the user + system time (`utime` + `stime` of
//! `/proc/PID/stat`) of every node process over the workload phase, summed
//! over the nodes, divided by the client operations completed (ok + fail +
//! info), in microseconds. The [`NodeCpuSampler`] reads every node right
//! before the workload, every [`INTERVAL`] while it runs and once after the
//! clients stop. A node whose process changed (killed and restarted) counts
//! its new process in full, since all of its time fell in the workload;
//! what the old process spent between its last sample and its death is
//! lost, at most one interval of one node per restart. Where the nodes'
//! processes cannot be read (ssh hosts, an external cluster, an etcd
//! cluster someone else started) the figure is not available, never 0.
//!
//! Which processes are the nodes: on the local backend the `synod-node` or
//! `etcd` children; on docker the container's process as this machine
//! sees it, when its `/proc/PID/stat` names `synod-node` (a daemon in
//! another PID namespace reports pids that are not ours to read). The
//! lose-unsynced-writes filesystem of a power-loss run is not a node and
//! is not counted.
//!
//! **Client CPU per op**: this process's own user + system time
//! (`getrusage(RUSAGE_SELF)`) over the same phase, over the same ops: the
//! workload's clients, the recorder streaming the history, the nemesis,
//! the progress bar, and on the local backend the link proxies that every
//! peer message passes through (they run in this process, so a local
//! Synod run's client figure includes the cluster's loopback network).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Time between two samples of the nodes' CPU: one small file read per
/// node, and at most this much of a killed node's time is lost.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// CPU seconds (user + system) of process `pid` so far, from
/// `/proc/PID/stat`, and the process's name; `None` if it cannot be read
/// (gone, or not in our PID namespace).
pub fn process_cpu(pid: u32) -> Option<(f64, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// `utime + stime` in seconds, and `comm`, out of a `/proc/PID/stat` line.
/// The name is in parentheses and may itself hold spaces and `)`, so the
/// fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(f64, String)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    // After the name: state (field 3), ..., utime (14), stime (15).
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some(((utime + stime) as f64 / clock_ticks(), comm))
}

/// Clock ticks per second, the unit of `/proc/PID/stat`'s times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// This process's CPU seconds so far (user + system, every thread).
pub fn own_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Microseconds of CPU per op; `None` when no op completed.
fn per_op_us(seconds: f64, ops: u64) -> Option<f64> {
    (ops > 0).then(|| seconds * 1e6 / ops as f64)
}

/// The bench's own CPU over the workload (`run.client_cpu` in
/// `results.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClientCpu {
    /// CPU seconds of the `synod` process over the workload phase.
    pub seconds: f64,
    /// Client operations completed (ok + fail + info).
    pub completed_ops: u64,
    /// `seconds / completed_ops` in µs; `None` when no op completed.
    pub per_op_us: Option<f64>,
    /// Whether the figure includes the link proxies of the local backend
    /// (every peer message of the cluster passes through them, in this
    /// process).
    #[serde(default)]
    pub with_link_proxies: bool,
}

impl ClientCpu {
    pub fn new(seconds: f64, completed_ops: u64) -> ClientCpu {
        ClientCpu {
            seconds,
            completed_ops,
            per_op_us: per_op_us(seconds, completed_ops),
            with_link_proxies: false,
        }
    }
}

/// Measures this process's CPU from [`ClientCpuClock::start`] to
/// [`ClientCpuClock::seconds`].
#[derive(Clone, Copy, Debug)]
pub struct ClientCpuClock {
    start: f64,
}

impl ClientCpuClock {
    pub fn start() -> ClientCpuClock {
        ClientCpuClock { start: own_cpu() }
    }

    /// CPU seconds this process spent since `start`.
    pub fn seconds(self) -> f64 {
        (own_cpu() - self.start).max(0.0)
    }
}

/// The nodes' CPU over the workload (`run.node_cpu` in `results.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeCpu {
    /// CPU seconds of all nodes over the workload phase.
    pub seconds: f64,
    /// Client operations completed (ok + fail + info).
    pub completed_ops: u64,
    /// `seconds / completed_ops` in µs; `None` when no op completed.
    pub per_op_us: Option<f64>,
    /// CPU seconds by node.
    pub by_node: BTreeMap<String, f64>,
    /// New processes seen (the node restarted), by node.
    pub restarts: BTreeMap<String, u32>,
    /// Rounds of samples taken.
    pub samples: u32,
    /// Seconds between samples.
    pub interval_s: f64,
    /// What the figure misses, in words: nodes never read. Empty when
    /// every node was read from the first sample to the last.
    pub gaps: Vec<String>,
}

/// One node's running account.
#[derive(Clone, Debug, Default, PartialEq)]
struct Tally {
    /// The process last read and its CPU seconds then.
    last: Option<(u32, f64)>,
    /// Whether the node was down (no process) at the first sample: then
    /// any process it has later started during the workload.
    down_at_start: bool,
    counted: f64,
    restarts: u32,
    /// Samples in which a running process could not be read.
    unread: u32,
}

impl Tally {
    /// Adds one sample: the node's process and its CPU seconds, or `None`
    /// when it has no process (down); `first` marks the baseline round.
    fn observe(&mut self, first: bool, sample: Option<(u32, f64)>) {
        let Some((pid, cpu)) = sample else {
            if first {
                self.down_at_start = true;
            }
            return;
        };
        match self.last {
            _ if first => {}
            Some((last_pid, last_cpu)) if last_pid == pid => {
                self.counted += (cpu - last_cpu).max(0.0)
            }
            Some(_) => {
                // A new process: every second of it is in the workload.
                self.counted += cpu;
                self.restarts += 1;
            }
            None if self.down_at_start => {
                self.counted += cpu;
                self.restarts += 1;
            }
            // Running at the start but unreadable then: its earlier time
            // is not ours to count; this sample is its baseline.
            None => {}
        }
        self.last = Some((pid, cpu));
    }
}

/// Where the sampler finds the nodes' processes: per node, its name and
/// its process id if it has a process now.
pub type PidSource = Box<dyn Fn() -> Vec<(String, Option<u32>)> + Send + Sync>;

/// What the sampling task hands back: the tallies and the rounds.
type Tallied = (Vec<(String, Tally)>, u32);

/// Samples every node's CPU from before the workload to after it.
/// Dropped without [`NodeCpuSampler::finish`] (the run failed), it stops.
pub struct NodeCpuSampler {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Tallied>>,
}

impl Drop for NodeCpuSampler {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One round: every node read once.
fn round(pids: &PidSource, tallies: &mut Vec<(String, Tally)>, first: bool, comm: Option<&str>) {
    for (node, pid) in pids() {
        let sample = pid.and_then(|p| {
            let (cpu, name) = process_cpu(p)?;
            comm.is_none_or(|c| c == name).then_some((p, cpu))
        });
        let i = match tallies.iter().position(|(n, _)| *n == node) {
            Some(i) => i,
            None => {
                tallies.push((node, Tally::default()));
                tallies.len() - 1
            }
        };
        let t = &mut tallies[i].1;
        if pid.is_some() && sample.is_none() {
            // Running but unreadable: not the same as down.
            t.unread += 1;
        } else {
            t.observe(first, sample);
        }
    }
}

impl NodeCpuSampler {
    /// Takes the baseline sample, then keeps sampling every [`INTERVAL`].
    /// With `comm`, a process counts only if its name is that (the docker
    /// backend's pids come from the daemon, maybe in another namespace).
    pub fn start(pids: PidSource, comm: Option<&'static str>) -> NodeCpuSampler {
        let (stop, mut stopped) = watch::channel(false);
        let mut tallies = Vec::new();
        round(&pids, &mut tallies, true, comm);
        let task = tokio::spawn(async move {
            let mut samples = 1;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(INTERVAL) => {}
                    _ = stopped.changed() => break,
                }
                round(&pids, &mut tallies, false, comm);
                samples += 1;
            }
            round(&pids, &mut tallies, false, comm);
            (tallies, samples + 1)
        });
        NodeCpuSampler {
            stop,
            task: Some(task),
        }
    }

    /// Takes the last sample and sums the nodes; `None` when no node's
    /// process could ever be read (not available, which is not 0).
    pub async fn finish(mut self, completed_ops: u64) -> Option<NodeCpu> {
        self.stop.send_replace(true);
        let task = self.task.take()?;
        let (tallies, samples) = task.await.ok()?;
        summarise(&tallies, completed_ops, samples)
    }
}

/// Sums per-node tallies into the run's figure.
fn summarise(tallies: &[(String, Tally)], completed_ops: u64, samples: u32) -> Option<NodeCpu> {
    if !tallies.iter().any(|(_, t)| t.last.is_some()) {
        return None;
    }
    let mut by_node = BTreeMap::new();
    let mut restarts = BTreeMap::new();
    let mut gaps = Vec::new();
    for (node, t) in tallies {
        by_node.insert(node.clone(), t.counted);
        if t.restarts > 0 {
            restarts.insert(node.clone(), t.restarts);
        }
        if t.last.is_none() && !t.down_at_start {
            gaps.push(format!("{node}: its process could not be read"));
        } else if t.unread > 0 {
            gaps.push(format!(
                "{node}: its process could not be read in {} of {samples} samples",
                t.unread
            ));
        }
    }
    let seconds: f64 = by_node.values().sum();
    Some(NodeCpu {
        seconds,
        completed_ops,
        per_op_us: per_op_us(seconds, completed_ops),
        by_node,
        restarts,
        samples,
        interval_s: INTERVAL.as_secs_f64(),
        gaps,
    })
}

/// The summary line of a run: node and client CPU per op, or why the
/// node figure is not available.
pub fn summary(node: Result<&NodeCpu, &str>, client: &ClientCpu) -> String {
    let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} µs"));
    let node = match node {
        Ok(n) => format!(
            "nodes {} ({:.2} CPU-s over {} ops, {} nodes{})",
            us(n.per_op_us),
            n.seconds,
            n.completed_ops,
            n.by_node.len(),
            if n.restarts.is_empty() {
                ""
            } else {
                ", restarts counted"
            }
        ),
        Err(why) => format!("nodes n/a ({why})"),
    };
    format!(
        "  CPU per op: {node}; client {} ({:.2} CPU-s{})\n",
        us(client.per_op_us),
        client.seconds,
        if client.with_link_proxies {
            ", with the in-process link proxies"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let ticks = clock_ticks();
        // A name with a space and a parenthesis of its own.
        let line = "4242 (synod (x) node) S 1 4242 4242 0 -1 4194304 500 0 0 0 \
                    250 50 0 0 20 0 9 0 123 456789 100";
        let (cpu, comm) = parse_stat(line).unwrap();
        assert_eq!(comm, "synod (x) node");
        assert!((cpu - 300.0 / ticks).abs() < 1e-9, "{cpu}");
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn our_own_process_reads_and_spends_cpu() {
        let (before, comm) = process_cpu(std::process::id()).unwrap();
        assert!(!comm.is_empty());
        let clock = ClientCpuClock::start();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let c = ClientCpu::new(clock.seconds(), 1000);
        assert!(c.seconds > 0.0, "{c:?}");
        assert!(c.per_op_us.unwrap() > 0.0);
        assert_eq!(
            ClientCpu::new(ClientCpuClock::start().seconds(), 0).per_op_us,
            None
        );
        assert!(process_cpu(std::process::id()).unwrap().0 >= before);
    }

    #[test]
    fn a_restarted_node_counts_its_new_process_in_full() {
        let mut t = Tally::default();
        t.observe(true, Some((10, 5.0)));
        t.observe(false, Some((10, 6.5)));
        // Killed: no process for a sample, then a new one at 0.25 s.
        t.observe(false, None);
        t.observe(false, Some((11, 0.25)));
        t.observe(false, Some((11, 1.0)));
        assert!((t.counted - 2.5).abs() < 1e-9, "{t:?}");
        assert_eq!(t.restarts, 1);
        // Down at the start: its first process is all workload.
        let mut d = Tally::default();
        d.observe(true, None);
        d.observe(false, Some((12, 0.5)));
        assert!((d.counted - 0.5).abs() < 1e-9);
    }

    #[test]
    fn nodes_never_read_are_not_available_not_zero() {
        let tallies = vec![("n1".to_string(), Tally::default())];
        assert_eq!(summarise(&tallies, 100, 3), None);
        let mut read = Tally::default();
        read.observe(true, Some((1, 1.0)));
        read.observe(false, Some((1, 1.5)));
        let tallies = vec![
            ("n1".to_string(), read),
            ("n2".to_string(), Tally::default()),
        ];
        let n = summarise(&tallies, 1000, 2).unwrap();
        assert!((n.per_op_us.unwrap() - 500.0).abs() < 1e-6, "{n:?}");
        assert_eq!(n.gaps, ["n2: its process could not be read"]);
    }
}
