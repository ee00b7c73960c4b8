//! The Synod target: the node's HTTP client API (`docs/api.md`).
//!
//! The status code says how to record an operation: 200 `ok`; 409
//! (`cas-mismatch`) and 503 (`not-proposed`) are definite, `fail`; 504
//! (`indeterminate`), a timeout or a connection that broke after the
//! request went out are unknown, `info`. A connection that could not be
//! opened at all is a definite `fail`: nothing was sent.
//!
//! The history format reads a failed cas as "the key did not hold the
//! expected value" (`docs/history.md`, rule 3), which is only what a 409
//! says. A cas that was never proposed (503) or never sent compared
//! nothing: it is a `fail` whose `error` begins with `not-proposed`, which
//! the checker drops like any other failure that carries no information.
//! (Recording it as a plain `fail` made the checker flag valid runs.)

use std::time::Duration;

use serde_json::{json, Value};
use synod_checker::history::{Fun, NOT_PROPOSED};

use super::{cas_parts, Client, Op, Outcome};

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
            .build()?;
        Ok(SynodClient { http, nodes })
    }

    fn base(&self, process: u64) -> &str {
        &self.nodes[(process % self.nodes.len() as u64) as usize].1
    }
}

/// A request that never left: a definite failure that compared nothing.
pub(crate) fn not_sent(op: &Op, e: reqwest::Error) -> Outcome {
    Outcome::fail(op, format!("{NOT_PROPOSED}: cannot connect: {e}"))
}

/// Maps a reply's status and body to an outcome.
fn classify(op: &Op, status: u16, body: &Value) -> Outcome {
    let reason = || {
        let error = body.get("error").and_then(Value::as_str).unwrap_or("");
        let why = body.get("reason").and_then(Value::as_str).unwrap_or("");
        format!("{status} {error} {why}").trim().to_string()
    };
    match status {
        200 => match op.f {
            Fun::Read => Outcome::ok(body.get("value").cloned().unwrap_or(Value::Null)),
            _ => Outcome::ok(op.value.clone()),
        },
        409 => Outcome::fail(op, reason()),
        503 => Outcome::fail(op, format!("{NOT_PROPOSED}: {}", reason())),
        // Anything else, 504 included, may have been chosen: unknown. A 400
        // is our own bug; recording it as unknown keeps the history honest.
        _ => {
            if status == 400 {
                tracing::warn!(status, body = %body, "the node rejected a request as malformed");
            }
            Outcome::info(op, reason())
        }
    }
}

impl Client for SynodClient {
    async fn invoke(&self, op: &Op) -> Outcome {
        let base = self.base(op.process);
        let key = &op.key;
        let request = match op.f {
            Fun::Read => self
                .http
                .get(format!("{base}/v1/kv/{key}"))
                .query(&[("client", op.process), ("seq", op.seq)]),
            Fun::Write => self.http.put(format!("{base}/v1/kv/{key}")).json(&json!({
                "value": op.value, "client": op.process, "seq": op.seq
            })),
            Fun::Cas => match cas_parts(&op.value) {
                Some((expected, new)) => {
                    self.http
                        .post(format!("{base}/v1/kv/{key}/cas"))
                        .json(&json!({
                            "expected": expected, "new": new, "client": op.process, "seq": op.seq
                        }))
                }
                None => return Outcome::fail(op, "cas value is not [expected, new]"),
            },
            _ => return Outcome::fail(op, format!("Synod does not do {}", op.f)),
        };
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.json::<Value>().await {
                    Ok(body) => classify(op, status, &body),
                    // The status came but the body broke off: for a 200 we
                    // know it happened but not (for a read) what it saw.
                    Err(_) if status == 200 && op.f != Fun::Read => Outcome::ok(op.value.clone()),
                    Err(e) => match status {
                        409 => Outcome::fail(op, format!("{status}: {e}")),
                        503 => Outcome::fail(op, format!("{NOT_PROPOSED}: {status}: {e}")),
                        _ => Outcome::info(op, format!("{status}: unreadable body: {e}")),
                    },
                }
            }
            Err(e) if e.is_connect() => not_sent(op, e),
            Err(e) if e.is_timeout() => Outcome::info(op, "timeout"),
            Err(e) => Outcome::info(op, e.to_string()),
        }
    }

    fn node_of(&self, process: u64) -> Option<&str> {
        Some(&self.nodes[(process % self.nodes.len() as u64) as usize].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(f: Fun, value: Value) -> Op {
        Op {
            process: 1,
            seq: 1,
            f,
            key: "k".into(),
            value,
        }
    }

    #[test]
    fn status_codes_map_to_history_types() {
        use synod_checker::history::EventType::*;
        let read = op(Fun::Read, Value::Null);
        assert_eq!(
            classify(&read, 200, &json!({"value": 3})),
            Outcome::ok(json!(3))
        );
        let cas = op(Fun::Cas, json!([1, 2]));
        let mismatch = json!({"error": "cas-mismatch", "definite": true, "value": 5});
        assert_eq!(classify(&cas, 409, &mismatch).kind, Fail);
        // A cas that was never proposed compared nothing: a failure the
        // checker must not read as a mismatch.
        let not_proposed = json!({"error": "not-proposed"});
        let refused = classify(&cas, 503, &not_proposed);
        assert_eq!(refused.kind, Fail);
        assert!(refused.error.unwrap().starts_with(NOT_PROPOSED));
        assert_eq!(classify(&read, 503, &not_proposed).kind, Fail);
        let w = op(Fun::Write, json!(7));
        assert_eq!(
            classify(&w, 504, &json!({"error": "indeterminate"})).kind,
            Info
        );
        assert_eq!(classify(&w, 500, &json!({})).kind, Info);
        assert_eq!(
            classify(&w, 200, &json!({"value": 7})),
            Outcome::ok(json!(7))
        );
    }
}
