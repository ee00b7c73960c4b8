//! The node's own clients: their requests queued as commands, the replies
//! they wait for, lease reads, and deadlines.

use crate::config::{Learn, Reads};
use crate::types::{
    ClientRequest, ClientSeq, CmdId, Command, KvOp, RequestId, RequestOutcome, Slot,
};

use super::{Outputs, Replica, Role};

/// A client request this node owns until it replies.
#[derive(Debug)]
pub(super) struct Waiting {
    pub(super) request: RequestId,
    pub(super) deadline: u64,
    /// Left this node (proposed or forwarded): past the deadline the
    /// outcome is unknown rather than "not proposed".
    pub(super) sent: bool,
    /// The command, kept once sent if it carries a client's sequence
    /// number, so it can be sent again when the leader changes (see
    /// [`Replica::reclaim_sent`]).
    pub(super) resend: Option<Command>,
    /// Queued again by `reclaim_sent`: the copy leaves the queue when the
    /// command is answered.
    pub(super) requeued: bool,
}

/// A lease read waiting for the leader to apply up to `read_index`.
#[derive(Debug)]
pub(super) struct LeaseRead {
    pub(super) request: RequestId,
    pub(super) key: String,
    pub(super) read_index: Slot,
    pub(super) deadline: u64,
}

impl Replica {
    /// Queues a command of this node's own client, which waits for its
    /// reply (or its deadline) here.
    pub(super) fn queue_own(
        &mut self,
        request: RequestId,
        dedup: Option<ClientSeq>,
        op: KvOp,
        deadline: u64,
    ) {
        let cmd = Command {
            id: CmdId {
                node: self.cfg.id,
                boot: self.boot,
                request,
            },
            dedup,
            op,
        };
        let waiting = Waiting {
            request,
            deadline,
            sent: false,
            resend: None,
            requeued: false,
        };
        self.waiting.insert(cmd.id, waiting);
        self.queue.push_back(cmd);
    }

    /// A request of this node's own client: answered at once (local
    /// reads), held for the lease (lease reads), or queued as a command.
    pub(super) fn on_client(&mut self, req: ClientRequest, out: &mut Outputs) {
        if let KvOp::Read { key } = &req.op {
            if self.cfg.reads == Reads::Local {
                // Unsafe on purpose: whatever this replica has applied.
                let outcome = self.kv.read(key);
                self.reply(req.id, outcome, out);
                return;
            }
            if self.lease_mode() && self.now < self.lease_until() {
                if let Role::Leader(l) = &self.role {
                    // The read must see every write acknowledged before it.
                    // With learn=leader only this leader declares slots
                    // chosen, so its commit point (and its term's first
                    // slots) suffice; with learn=all a follower may have
                    // learned (and acknowledged) a slot this leader has not
                    // counted yet, so wait for every slot proposed so far.
                    let read_index = match self.cfg.learn {
                        Learn::Leader => self.commit.max(l.term_start),
                        Learn::All => l.next_slot,
                    };
                    self.lease_reads.push(LeaseRead {
                        request: req.id,
                        key: key.clone(),
                        read_index,
                        deadline: self.now + self.cfg.request_timeout_ms,
                    });
                    // Answered on the next tick: only a tick carries a
                    // fresh clock to check the lease against.
                    return;
                }
            }
        }
        let deadline = self.now + self.cfg.request_timeout_ms;
        self.queue_own(req.id, req.dedup, req.op, deadline);
    }

    /// Answers lease reads whose read index is applied, while the lease
    /// holds; without a lease they go through the log. Called on ticks
    /// only, so the lease is checked against a fresh clock.
    pub(super) fn serve_lease_reads(&mut self, out: &mut Outputs) {
        if self.lease_reads.is_empty() {
            return;
        }
        let valid = self.now < self.lease_until();
        let reads = std::mem::take(&mut self.lease_reads);
        for r in reads {
            if !valid {
                self.queue_own(r.request, None, KvOp::Read { key: r.key }, r.deadline);
            } else if self.kv.applied >= r.read_index {
                let outcome = self.kv.read(&r.key);
                self.reply(r.request, outcome, out);
            } else {
                self.lease_reads.push(r);
            }
        }
    }

    /// Marks this node's own commands as sent (proposed or forwarded),
    /// keeping those a client numbered for [`Replica::reclaim_sent`].
    pub(super) fn mark_sent(&mut self, commands: &[Command]) {
        for c in commands {
            if c.id.node != self.cfg.id || c.id.boot != self.boot {
                continue;
            }
            if let Some(w) = self.waiting.get_mut(&c.id) {
                w.sent = true;
                if c.dedup.is_some() {
                    w.resend = Some(c.clone());
                }
            }
        }
    }

    /// The leader changed: queues again the commands this node sent
    /// (forwarded, or proposed while it led) that are still unanswered, so
    /// they reach the new leader. The old one may have dropped them: a
    /// node that is no longer leader, or never became it, drops what it is
    /// forwarded, and a slot no acceptor accepted dies with its leader.
    /// Only commands a client numbered go again: the state machine applies
    /// a client's sequence number once, whatever number of slots it lands
    /// in (`Kv::apply`), so a command that did get through loses nothing.
    /// The others stay sent; past their deadline they are indeterminate.
    pub(super) fn reclaim_sent(&mut self) {
        let queued: std::collections::HashSet<CmdId> = self.queue.iter().map(|c| c.id).collect();
        let mut again: Vec<Command> = Vec::new();
        for w in self.waiting.values_mut() {
            if let Some(c) = &w.resend {
                if !queued.contains(&c.id) {
                    w.requeued = true;
                    again.push(c.clone());
                }
            }
        }
        // In the order the clients asked.
        again.sort_unstable_by_key(|c| c.id.request);
        self.queue.extend(again);
    }

    /// This node's own command `id` was answered: a copy `reclaim_sent`
    /// queued again must not go out once more (it would cost a slot, and
    /// with `proposers=any` a campaign).
    pub(super) fn answered(&mut self, id: CmdId, w: &Waiting) {
        if w.requeued {
            self.queue.retain(|c| c.id != id);
        }
    }

    /// Replies to requests past their deadline.
    pub(super) fn expire_requests(&mut self, out: &mut Outputs) {
        let now = self.now;
        let mut expired: Vec<CmdId> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        if !expired.is_empty() {
            expired.sort_unstable_by_key(|id| id.request);
            for id in expired {
                let w = self.waiting.remove(&id).expect("collected just above");
                if !w.sent || w.requeued {
                    self.queue.retain(|c| c.id != id);
                }
                let outcome = if w.sent {
                    RequestOutcome::Indeterminate {
                        reason: "proposed, but not known to be chosen before the deadline".into(),
                    }
                } else {
                    RequestOutcome::NotProposed {
                        reason: "no leader reachable before the deadline".into(),
                    }
                };
                self.reply(w.request, outcome, out);
            }
        }
        let reads = std::mem::take(&mut self.lease_reads);
        for r in reads {
            if r.deadline <= now {
                let outcome = RequestOutcome::NotProposed {
                    reason: "lease read not served before the deadline".into(),
                };
                self.reply(r.request, outcome, out);
            } else {
                self.lease_reads.push(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::replica::tests::{msg, msgs, replica};
    use crate::replica::Input;
    use crate::types::{Ballot, ClientReply, Value};

    #[test]
    fn deadlines_tell_never_proposed_from_indeterminate() {
        // No leader known: the request never leaves the node.
        let mut r = replica(2);
        r.handle(Input::Client(ClientRequest {
            id: 1,
            dedup: None,
            op: KvOp::Read { key: "x".into() },
        }));
        let out = r.handle(Input::Tick { now: 1_000 });
        assert!(matches!(
            out.replies[..],
            [ClientReply {
                id: 1,
                outcome: RequestOutcome::NotProposed { .. },
                ..
            }]
        ));
        // Forwarded to a leader: past the deadline the outcome is unknown.
        let b = Ballot::new(7, 1);
        msg(
            &mut r,
            1,
            Message::Heartbeat {
                ballot: b,
                commit: 0,
                sent_at: 0,
                term_start: 0,
            },
        );
        let out = r.handle(Input::Client(ClientRequest {
            id: 2,
            dedup: None,
            op: KvOp::Write {
                key: "x".into(),
                value: Value::Int(1),
            },
        }));
        assert!(
            matches!(msgs(&out)[..], [(1, Message::Forward { .. })]),
            "{:?}",
            out.send
        );
        let out = r.handle(Input::Tick { now: 5_000 });
        assert!(out
            .replies
            .iter()
            .any(|x| x.id == 2 && matches!(x.outcome, RequestOutcome::Indeterminate { .. })));
    }
}
