//! The Synod target: the node's HTTP client API (`docs/api.md`).
//!
//! The status code says how to record an operation: 200 `ok`; 409
//! (`cas-mismatch`) and 503 (`not-proposed`) are definite, `fail`; 504
//! (`indeterminate`), a timeout or a connection that broke after the
//! request went out are unknown, `info`. A connection that could not be
//! opened at all is a definite `fail`: nothing was sent.
//!
//! The history format reads a failed cas marked `mismatch` as "the key did
//! not hold the expected value" (`docs/history.md`, rule 3), which is only
//! what a 409 says, so only a 409 is marked. A cas that was never proposed
//! (503) or never sent compared nothing: it is a `fail` marked
//! `not_proposed` (its `error` begins with `not-proposed`), which the
//! checker drops like any other failure that carries no information.
//! (Reading every failed cas as a mismatch made the checker flag valid
//! runs.)
//!
//! Replies are read as the wire crate's [`ValueReply`] and [`ErrorReply`],
//! the types the node writes.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use synod_checker::history::Fun;
use synod_wire::api::{CasRequest, ErrorReply, ValueReply, WriteRequest};

use super::{cas_parts, Client, ClientOp, Completion};

/// A client of a Synod cluster: process `p` talks to node `p mod n`, so
/// every node serves clients and followers forward to the leader.
pub struct SynodClient {
    /// Pooled connections, one timeout for every request.
    http: reqwest::Client,
    /// `(name, base URL)` per node, e.g. `("n1", "http://127.0.0.1:7001")`.
    nodes: Vec<(String, String)>,
}

impl SynodClient {
    pub fn new(nodes: Vec<(String, String)>, timeout: Duration) -> anyhow::Result<SynodClient> {
        anyhow::ensure!(!nodes.is_empty(), "a Synod client needs at least one node");
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(1)))
            .pool_max_idle_per_host(256)
            // Below the node's idle timeout (60 s by default), so the node
            // never closes a connection we are about to reuse.
            .pool_idle_timeout(Duration::from_secs(20))
            .build()?;
        Ok(SynodClient { http, nodes })
    }

    fn base(&self, process: u64) -> &str {
        &self.nodes[(process % self.nodes.len() as u64) as usize].1
    }
}

/// A request that never left: a definite failure that compared nothing.
pub(crate) fn not_sent(op: &ClientOp, e: reqwest::Error) -> Completion {
    Completion::not_proposed(op, format_args!("cannot connect: {e}"))
}

/// Maps a reply's status and body to an outcome.
fn classify(op: &ClientOp, status: u16, body: &Value) -> Completion {
    // A body that is not the documented refusal says only its status.
    let reason = || match ErrorReply::deserialize(body) {
        Ok(e) => format!("{status} {} {}", e.error, e.reason)
            .trim()
            .to_string(),
        Err(_) => status.to_string(),
    };
    match status {
        200 => match op.f {
            Fun::Read => {
                Completion::ok(ValueReply::deserialize(body).map_or(Value::Null, |r| r.value))
            }
            _ => Completion::ok(op.value.clone()),
        },
        409 => Completion::mismatch(op, reason()),
        503 => Completion::not_proposed(op, reason()),
        // Anything else, 504 included, may have been chosen: unknown. A 400
        // is our own bug; recording it as unknown keeps the history honest.
        _ => {
            if status == 400 {
                tracing::warn!(status, body = %body, "the node rejected a request as malformed");
            }
            Completion::info(op, reason())
        }
    }
}

impl Client for SynodClient {
    async fn invoke(&self, op: &ClientOp) -> Completion {
        let base = self.base(op.process);
        let key = &op.key;
        let request = match op.f {
            Fun::Read => self
                .http
                .get(format!("{base}/v1/kv/{key}"))
                .query(&[("client", op.process), ("seq", op.seq)]),
            Fun::Write => self
                .http
                .put(format!("{base}/v1/kv/{key}"))
                .json(&WriteRequest {
                    value: op.value.clone(),
                    client: Some(op.process),
                    seq: Some(op.seq),
                }),
            Fun::Cas => match cas_parts(&op.value) {
                Some((expected, new)) => {
                    self.http
                        .post(format!("{base}/v1/kv/{key}/cas"))
                        .json(&CasRequest {
                            expected: expected.clone(),
                            new: new.clone(),
                            client: Some(op.process),
                            seq: Some(op.seq),
                        })
                }
                None => return Completion::fail(op, "cas value is not [expected, new]"),
            },
            _ => return Completion::fail(op, format!("Synod does not do {}", op.f)),
        };
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.json::<Value>().await {
                    Ok(body) => classify(op, status, &body),
                    // The status came but the body broke off: for a 200 we
                    // know it happened but not (for a read) what it saw.
                    Err(_) if status == 200 && op.f != Fun::Read => {
                        Completion::ok(op.value.clone())
                    }
                    Err(e) => match status {
                        409 => Completion::mismatch(op, format!("{status}: {e}")),
                        503 => Completion::not_proposed(op, format_args!("{status}: {e}")),
                        _ => Completion::info(op, format!("{status}: unreadable body: {e}")),
                    },
                }
            }
            Err(e) if e.is_connect() => not_sent(op, e),
            Err(e) if e.is_timeout() => Completion::info(op, "timeout"),
            Err(e) => Completion::info(op, e.to_string()),
        }
    }

    fn node_of(&self, process: u64) -> Option<&str> {
        Some(&self.nodes[(process % self.nodes.len() as u64) as usize].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use synod_wire::api::{CAS_MISMATCH, INDETERMINATE, NOT_PROPOSED};

    fn op(f: Fun, value: Value) -> ClientOp {
        ClientOp {
            process: 1,
            seq: 1,
            f,
            key: "k".into(),
            value,
        }
    }

    /// A refusal's body as the node writes it.
    fn refusal(error: &str, definite: bool, value: Option<Value>) -> Value {
        json!(ErrorReply {
            error: error.into(),
            definite,
            reason: String::new(),
            value,
        })
    }

    fn success(value: Value) -> Value {
        json!(ValueReply { value })
    }

    #[test]
    fn status_codes_map_to_history_types() {
        use synod_checker::history::EventType::*;
        let read = op(Fun::Read, Value::Null);
        assert_eq!(
            classify(&read, 200, &success(json!(3))),
            Completion::ok(json!(3))
        );
        let cas = op(Fun::Cas, json!([1, 2]));
        let mismatch = refusal(CAS_MISMATCH, true, Some(json!(5)));
        let found = classify(&cas, 409, &mismatch);
        assert_eq!(
            (found.kind, found.mismatch, found.not_proposed),
            (Fail, true, false)
        );
        assert_eq!(found.error.as_deref(), Some("409 cas-mismatch"));
        // A cas that was never proposed compared nothing: a failure the
        // checker must not read as a mismatch.
        let not_proposed = refusal(NOT_PROPOSED, true, None);
        let refused = classify(&cas, 503, &not_proposed);
        assert_eq!(
            (refused.kind, refused.mismatch, refused.not_proposed),
            (Fail, false, true)
        );
        assert_eq!(
            refused.error.as_deref(),
            Some("not-proposed: 503 not-proposed")
        );
        assert_eq!(classify(&read, 503, &not_proposed).kind, Fail);
        let w = op(Fun::Write, json!(7));
        assert_eq!(
            classify(&w, 504, &refusal(INDETERMINATE, false, None)).kind,
            Info
        );
        assert_eq!(classify(&w, 500, &json!({})).kind, Info);
        assert_eq!(
            classify(&w, 200, &success(json!(7))),
            Completion::ok(json!(7))
        );
    }
}
