//! The clients: one operation at a time each, a fresh process id after
//! an unknown outcome, and the history they record (with the nemesis's
//! lines) in the checker's format.

use rand::Rng;
use serde_json::{json, Value as Json};

use synod_wire::api::{CAS_MISMATCH, INDETERMINATE, NOT_PROPOSED};
use synod_wire::history::{self, EventType, Fun, Process};

use super::{Event, Sim};
use crate::config::Proposers;
use crate::types::{ClientRequest, ClientSeq, KvOp, RequestId, RequestOutcome, Value};

/// The operation a client waits on.
pub(super) struct Pending {
    pub(super) f: &'static str,
    pub(super) key: String,
    pub(super) value: Json,
    pub(super) node: usize,
    pub(super) request: RequestId,
    pub(super) invoked_at: u64,
}

/// A client: one operation at a time, as one process of the history.
pub(super) struct SimClient {
    pub(super) process: u64,
    pub(super) seq: u64,
    pub(super) pending: Option<Pending>,
}

impl Sim {
    pub(super) fn invoke(&mut self, c: usize) {
        if self.now >= self.end || self.clients[c].pending.is_some() {
            return;
        }
        let node = self.rng.gen_range(0..self.cfg.nodes);
        let key = format!("k{}", self.rng.gen_range(0..self.cfg.keys));
        let roll = self.rng.gen_range(0..100);
        let (f, op, value) = if roll < 40 {
            ("read", KvOp::Read { key: key.clone() }, Json::Null)
        } else if roll < 75 {
            let v = self.rng.gen_range(0..5);
            (
                "write",
                KvOp::Write {
                    key: key.clone(),
                    value: Value::Int(v),
                },
                json!(v),
            )
        } else {
            let (e, n) = (self.rng.gen_range(0..5), self.rng.gen_range(0..5));
            (
                "cas",
                KvOp::Cas {
                    key: key.clone(),
                    expected: Value::Int(e),
                    new: Value::Int(n),
                },
                json!([e, n]),
            )
        };
        let request = self.next_request;
        self.next_request += 1;
        let client = &mut self.clients[c];
        client.seq += 1;
        let req = ClientRequest {
            id: request,
            dedup: Some(ClientSeq {
                client: client.process,
                seq: client.seq,
            }),
            op,
        };
        let process = client.process;
        client.pending = Some(Pending {
            f,
            key: key.clone(),
            value: value.clone(),
            node,
            request,
            invoked_at: self.now,
        });
        self.requests.insert((node, request), c);
        self.line(
            Process::Client(process),
            EventType::Invoke,
            f,
            Some(key),
            value,
            None,
            Some(node),
        );
        self.schedule(1, Event::ClientArrive { node, req });
        let timeout = Self::node_config(&self.cfg, 0).request_timeout_ms + 300;
        self.schedule(timeout, Event::ClientTimeout { client: c, request });
    }

    pub(super) fn on_reply(&mut self, c: usize, request: RequestId, outcome: RequestOutcome) {
        let Some(p) = &self.clients[c].pending else {
            return;
        };
        if p.request != request {
            return;
        }
        match outcome {
            RequestOutcome::Ok { value } => {
                let v = match p.f {
                    "read" => value.map_or(Json::Null, |v| v.to_json()),
                    _ => p.value.clone(),
                };
                self.complete(c, EventType::Ok, v, None);
            }
            RequestOutcome::CasMismatch { found } => {
                let why = format!("{CAS_MISMATCH}: found {found:?}");
                let v = p.value.clone();
                self.complete(c, EventType::Fail, v, Some(why));
                let _ = self.history.last_mut().map(|l| l.mismatch = true);
            }
            RequestOutcome::NotProposed { reason } => {
                if p.f == "cas" {
                    // A failed cas tells the checker the key did not hold
                    // the expected value; a cas never proposed says
                    // nothing. It definitely did not happen, so it is
                    // dropped from the history altogether.
                    self.drop_open_invoke(c);
                } else {
                    let v = p.value.clone();
                    let why = format!("{NOT_PROPOSED}: {reason}");
                    self.complete(c, EventType::Fail, v, Some(why));
                    let _ = self.history.last_mut().map(|l| l.not_proposed = true);
                }
            }
            RequestOutcome::Indeterminate { reason } => {
                let v = p.value.clone();
                let why = format!("{INDETERMINATE}: {reason}");
                self.complete(c, EventType::Info, v, Some(why));
            }
        }
    }

    pub(super) fn drop_open_invoke(&mut self, c: usize) {
        let Some(p) = self.clients[c].pending.take() else {
            return;
        };
        let process = Process::Client(self.clients[c].process);
        if let Some(pos) = self
            .history
            .iter()
            .rposition(|l| l.process == process && l.kind == EventType::Invoke)
        {
            self.history.remove(pos);
        }
        self.stats.fail += 1;
        self.note_liveness(&p, EventType::Fail);
        let think = self.rng.gen_range(0..=10);
        self.schedule(think, Event::ClientInvoke(c));
    }

    pub(super) fn note_liveness(&mut self, p: &Pending, kind: EventType) {
        let grace = 1200;
        let late = self.healed_at.is_some_and(|h| p.invoked_at >= h + grace);
        if late && kind == EventType::Ok {
            self.stats.late_ok += 1;
        }
        if self.cfg.proposers == Proposers::Leader && kind != EventType::Ok && late {
            self.late_failures.push(format!(
                "{} on {} at node n{} invoked t={}ms (healed at {:?}) ended {kind}",
                p.f,
                p.key,
                p.node + 1,
                p.invoked_at,
                self.healed_at
            ));
        }
    }

    pub(super) fn complete(
        &mut self,
        c: usize,
        kind: EventType,
        value: Json,
        error: Option<String>,
    ) {
        let Some(p) = self.clients[c].pending.take() else {
            return;
        };
        self.requests.remove(&(p.node, p.request));
        let process = self.clients[c].process;
        // A cas that compared and failed is fine for liveness.
        let live_kind = if kind == EventType::Fail
            && error
                .as_deref()
                .is_some_and(|e| e.starts_with(CAS_MISMATCH))
        {
            EventType::Ok
        } else {
            kind
        };
        self.note_liveness(&p, live_kind);
        let f = p.f;
        self.line(
            Process::Client(process),
            kind,
            f,
            Some(p.key),
            value,
            error,
            Some(p.node),
        );
        match kind {
            EventType::Ok => self.stats.ok += 1,
            EventType::Fail => self.stats.fail += 1,
            _ => {
                self.stats.info += 1;
                // An unknown outcome retires the process.
                self.clients[c].process = self.next_process;
                self.next_process += 1;
                self.clients[c].seq = 0;
            }
        }
        let think = self.rng.gen_range(0..=10);
        self.schedule(think, Event::ClientInvoke(c));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn line(
        &mut self,
        process: Process,
        kind: EventType,
        f: &str,
        key: Option<String>,
        value: Json,
        error: Option<String>,
        node: Option<usize>,
    ) {
        let index = self.history.len() as u64;
        self.history.push(history::Event {
            index,
            time: self.now * 1_000_000,
            process,
            kind,
            f: Fun::named(f),
            key,
            value,
            error,
            node: node.map(|n| format!("n{}", n + 1)),
            mismatch: false,
            not_proposed: false,
        });
    }

    pub(super) fn nemesis_line(&mut self, f: &str, value: Json) {
        self.line(
            Process::Nemesis,
            EventType::Info,
            f,
            None,
            value,
            None,
            None,
        );
    }
}
