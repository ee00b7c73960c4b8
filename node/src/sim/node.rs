//! The node driver: each simulated node runs the server's own I/O order,
//! a replica task that handles every waiting input as one batch and ships
//! the outputs through [`durability::split`], and a disk thread that takes
//! every waiting group through the same [`Pipeline`] the server runs, with
//! fsyncs that take time. Pauses stop both; each node's clock runs at its
//! own rate.

use rand::Rng;

use super::{Event, Sim, SimBug, SimConfig};
use crate::config::{Config, Fsync};
use crate::durability::{self, Group, Lsn, Pipeline, PipelineBugs, Release};
use crate::message::Message;
use crate::replica::{Input, Outputs, Replica};
use crate::storage::{MemStorage, Record, Storage};
use crate::types::{ClientReply, Entry, Slot, TxnId};

/// One simulated node: its replica task, its disk thread, its clock, and
/// what the invariants track of it.
pub(super) struct SimNode {
    pub(super) replica: Option<Replica>,
    pub(super) incarnation: u32,
    /// Inputs waiting for the replica task (a kill loses them).
    pub(super) inputs: Vec<Queued>,
    pub(super) run_scheduled: bool,
    /// Groups shipped to the disk thread, not taken yet (lost on a kill).
    pub(super) disk_queue: Vec<Group<ClientReply>>,
    /// A take or an fsync is under way.
    pub(super) disk_busy: bool,
    pub(super) lazy_scheduled: bool,
    /// The disk side; its storage outlives every incarnation.
    pub(super) pipeline: Pipeline<MemStorage, ClientReply>,
    /// Nothing runs before this time.
    pub(super) paused_until: u64,
    /// The nemesis crashes this node (a power loss if `true`) at its next
    /// fsync, while the write is in flight.
    pub(super) crash_at_fsync: Option<bool>,
    /// The clock reads `base_local + (now - base_real) * rate`.
    pub(super) rate: f64,
    pub(super) base_local: u64,
    pub(super) base_real: u64,
    // Invariant state.
    /// This incarnation's records, by LSN.
    pub(super) emitted: Vec<Record>,
    /// Records of this incarnation below this LSN were stood on by an
    /// output that left.
    pub(super) depended_upto: Lsn,
    /// Records (not `Chosen` marks) a released output stood on, from any
    /// incarnation: the disk must keep holding them.
    pub(super) claims: Vec<Record>,
    /// This incarnation's beliefs not yet durable: `(need, slot, entry)`
    /// chosen, and `(need, applied, digest)` of its state machine.
    pub(super) beliefs: Vec<(Lsn, Slot, Entry)>,
    /// Two-phase commit: this incarnation's commit records not yet
    /// durable, `(need, txn)`.
    pub(super) tpc_commits: Vec<(Lsn, TxnId)>,
    pub(super) applied_states: Vec<(Lsn, Slot, u64)>,
}

/// An input waiting for the replica task. A tick reads the clock when it
/// is handled, as the server's does.
#[derive(Debug)]
pub(super) enum Queued {
    Input(Input),
    Tick,
}

impl Sim {
    /// The protocol configuration of node `i`, tuned for simulation: small
    /// batches and windows, frequent snapshots, so every path is exercised.
    pub fn node_config(cfg: &SimConfig, i: usize) -> Config {
        let members = (1..=cfg.nodes as u64).collect();
        let mut c = Config::new(i as u64 + 1, members);
        c.protocol = cfg.protocol;
        c.proposers = cfg.proposers;
        c.learn = cfg.learn;
        c.reads = cfg.reads;
        c.fsync = cfg.fsync;
        c.batch_size = 4;
        c.pipeline = 4;
        c.snapshot_every = 40;
        c.catch_up_batch = 16;
        c.bug_ignore_promised_values = cfg.bug == SimBug::IgnorePromised;
        c.bug_campaign_in_lease_guard = cfg.bug == SimBug::LeaseCampaign;
        c.bug_tpc_early_commit = cfg.bug == SimBug::TpcEarlyCommit;
        c.bug_tpc_commit_on_majority = cfg.bug == SimBug::TpcCommitOnMajority;
        c.bug_on_purpose = cfg.bug != SimBug::None;
        c.phase1_quorum = cfg.q1;
        c.phase2_quorum = cfg.q2;
        c.unsafe_quorums = cfg.unsafe_quorums();
        c
    }

    /// The disk side of a node, as the server builds it (plus a bug put
    /// back on purpose, for teeth).
    pub(super) fn pipeline(cfg: &SimConfig, disk: MemStorage) -> Pipeline<MemStorage, ClientReply> {
        let bugs = PipelineBugs {
            release_before_earlier_groups: cfg.bug == SimBug::EarlyRelease,
            compact_after_the_group: cfg.bug == SimBug::CompactLate,
        };
        Pipeline::new(disk, cfg.fsync).with_bugs(bugs)
    }

    pub(super) fn clock(&self, i: usize) -> u64 {
        let n = &self.nodes[i];
        n.base_local + ((self.now - n.base_real) as f64 * n.rate) as u64
    }

    pub(super) fn start_node(&mut self, i: usize) {
        let cfg = Self::node_config(&self.cfg, i);
        let recovered = match self.nodes[i].pipeline.storage_mut().load() {
            Ok(r) => r,
            Err(e) => unreachable!("the memory disk cannot fail: {e}"),
        };
        let seed = self.rng.gen();
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.emitted.clear();
        node.depended_upto = 0;
        node.beliefs.clear();
        node.tpc_commits.clear();
        node.applied_states.clear();
        let replica = Replica::recover(cfg, seed, recovered, now);
        let promised = replica.promised();
        node.replica = Some(replica);
        if promised < self.max_promised[i] && self.cfg.fsync == Fsync::Always {
            let msg = format!(
                "restarted with promise {promised} below {} that a released message revealed",
                self.max_promised[i]
            );
            self.violation(i, msg);
        }
        self.check_node(i, &Outputs::default());
    }

    pub(super) fn running(&self, i: usize) -> bool {
        self.nodes[i].replica.is_some() && self.now >= self.nodes[i].paused_until
    }

    /// Whether node `i` is up and still incarnation `inc` (events of a
    /// crashed incarnation are void).
    pub(super) fn current(&self, i: usize, inc: u32) -> bool {
        self.nodes[i].replica.is_some() && self.nodes[i].incarnation == inc
    }

    /// A paused node's threads run nothing: `event` waits for the resume.
    /// Returns whether it may run now.
    pub(super) fn wait_for_resume(&mut self, i: usize, event: Event) -> bool {
        if self.now >= self.nodes[i].paused_until {
            return true;
        }
        let wait = self.nodes[i].paused_until - self.now;
        self.schedule(wait, event);
        false
    }

    /// An input reaches node `i`'s replica task, which wakes soon and
    /// handles everything queued by then as one batch.
    pub(super) fn enqueue(&mut self, i: usize, q: Queued) {
        let node = &mut self.nodes[i];
        node.inputs.push(q);
        if !node.run_scheduled {
            node.run_scheduled = true;
            let inc = node.incarnation;
            let d = self.rng.gen_range(0..=1);
            self.schedule(d, Event::Run(i, inc));
        }
    }

    /// The replica task: handles every queued input into one `Outputs`,
    /// then ships it as the server's does (`durability::split` against the
    /// disk thread's durable point).
    pub(super) fn run_replica(&mut self, i: usize) {
        let trace = self.trace;
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        node.run_scheduled = false;
        let inputs = std::mem::take(&mut node.inputs);
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        let mut out = Outputs::default();
        for q in inputs {
            let input = match q {
                Queued::Input(input) => input,
                Queued::Tick => Input::Tick { now },
            };
            let before = trace.then(|| (r.status(), describe(&input), out.send.len()));
            r.handle_into(input, &mut out);
            if let Some((b, what, sent)) = before {
                let a = r.status();
                let sends: Vec<String> = out.send[sent..]
                    .iter()
                    .map(|o| format!("{}->n{} after {}", o.msg.kind(), o.to, o.after))
                    .collect();
                eprintln!(
                    "{:>6}ms n{} {what} | {:?}/{} commit {} leader {:?} -> {:?}/{} commit {} leader {:?} | {sends:?} replies {}",
                    self.now,
                    i + 1,
                    b.role,
                    b.ballot,
                    b.commit_index,
                    b.leader,
                    a.role,
                    a.ballot,
                    a.commit_index,
                    a.leader,
                    out.replies.len()
                );
            }
        }
        self.check_node(i, &out);
        let node = &mut self.nodes[i];
        node.emitted.extend(out.persist.iter().cloned());
        let durable = node.pipeline.durable();
        let mut now_out = Vec::new();
        let group = durability::split(&mut out, durable, Some, |r, after| now_out.push((r, after)));
        if let Some(g) = group {
            node.disk_queue.push(g);
            if !node.disk_busy {
                node.disk_busy = true;
                let inc = node.incarnation;
                // Mostly at once; sometimes the disk thread is slow to run
                // (a loaded machine), so later groups join the set.
                let d = if self.rng.gen_bool(0.25) {
                    self.rng.gen_range(2..=12)
                } else {
                    self.rng.gen_range(0..=1)
                };
                self.schedule(d, Event::DiskTake(i, inc));
            }
        }
        self.release(i, now_out);
    }

    /// The disk thread takes every waiting group as one set; if outputs
    /// wait for a sync, it flushes and its fsync returns a little later.
    pub(super) fn disk_take(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let set = std::mem::take(&mut node.disk_queue);
        let mut out = Vec::new();
        let taken = match node
            .pipeline
            .take(set, &mut |r, after| out.push((r, after)))
        {
            Ok(t) => t,
            Err(e) => unreachable!("the memory disk cannot fail: {e}"),
        };
        if taken.compactions > 0 {
            self.check_compaction(i);
        }
        let node = &mut self.nodes[i];
        if node.pipeline.must_sync() {
            if let Err(e) = node.pipeline.flush() {
                unreachable!("the memory disk cannot fail: {e}");
            }
            if let Some(power) = node.crash_at_fsync.take() {
                // What the take released leaves first; then the crash.
                self.release(i, out);
                self.crash_now(i, power);
                return;
            }
            let node = &mut self.nodes[i];
            let inc = node.incarnation;
            // Mostly quick, sometimes a slow disk.
            let d = if self.rng.gen_bool(0.1) {
                self.rng.gen_range(3..=12)
            } else {
                self.rng.gen_range(0..=2)
            };
            self.schedule(d, Event::DiskSynced(i, inc));
        } else {
            self.disk_idle(i);
        }
        self.release(i, out);
    }

    pub(super) fn disk_synced(&mut self, i: usize) {
        let mut out = Vec::new();
        if let Err(e) = self.nodes[i]
            .pipeline
            .sync(&mut |r, after| out.push((r, after)))
        {
            unreachable!("the memory disk cannot fail: {e}");
        }
        if self.nodes[i].disk_queue.is_empty() {
            self.disk_idle(i);
        } else {
            let inc = self.nodes[i].incarnation;
            self.schedule(0, Event::DiskTake(i, inc));
        }
        self.release(i, out);
    }

    /// Nothing for the disk thread to do; unsynced `Chosen` marks (or,
    /// with `fsync=never`, unwritten records) wait for the lazy timer.
    pub(super) fn disk_idle(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.disk_busy = false;
        if node.pipeline.dirty() && !node.lazy_scheduled {
            node.lazy_scheduled = true;
            let inc = node.incarnation;
            let d = match self.cfg.fsync {
                Fsync::Always => 50,
                Fsync::Never => 500,
            };
            self.schedule(d, Event::LazySync(i, inc));
        }
    }

    pub(super) fn lazy_sync(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.lazy_scheduled = false;
        if node.disk_busy {
            return; // the busy disk thread re-arms the timer when it idles
        }
        let mut out = Vec::new();
        if let Err(e) = node.pipeline.sync(&mut |r, after| out.push((r, after))) {
            unreachable!("the memory disk cannot fail: {e}");
        }
        self.release(i, out);
    }

    /// Outputs of node `i` leave: messages to the network, replies to the
    /// clients. Notes what they stood on, for the durability invariants.
    pub(super) fn release(&mut self, i: usize, out: Vec<(Release<ClientReply>, Lsn)>) {
        self.confirm(i);
        for (r, after) in out {
            self.note_depended(i, after);
            match r {
                Release::Message(to, msg) => {
                    self.check_released(i, &msg);
                    self.transmit(i, (to - 1) as usize, msg);
                }
                Release::Reply(reply) => {
                    if let Some(c) = self.requests.remove(&(i, reply.id)) {
                        self.on_reply(c, reply.id, reply.outcome);
                    }
                }
            }
        }
    }
}

fn describe(input: &Input) -> String {
    match input {
        Input::Message { from, msg } => match msg {
            Message::Accept { ballot, slot, .. } => format!("accept {ballot} s{slot} from n{from}"),
            Message::Accepted { ballot, slot, .. } => {
                format!("accepted {ballot} s{slot} from n{from}")
            }
            Message::Forward { commands } => {
                let ids: Vec<u64> = commands.iter().map(|c| c.id.request).collect();
                format!("forward {ids:?} from n{from}")
            }
            m => format!("{} from n{from}", m.kind()),
        },
        Input::Tick { .. } => "tick".into(),
        Input::Client(r) => format!("client request {} {:?}", r.id, r.op),
    }
}
