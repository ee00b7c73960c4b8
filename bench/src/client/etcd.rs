//! The etcd target: etcd's v3 JSON gateway (`/v3/kv/put`, `/v3/kv/range`,
//! `/v3/kv/txn`), so the same workload, faults and checker measure etcd
//! beside Synod.
//!
//! Keys and values travel base64-encoded; a register value is stored as
//! its JSON text. A cas is a txn comparing the value and putting the new
//! one on success. Reads are linearizable by default, or serializable
//! (served from the contacted member's local state) with `serializable`,
//! which a partition should expose.

use std::time::Duration;

use serde_json::{json, Value};
use synod_checker::history::{Fun, CAS_MISMATCH};

use super::{cas_parts, Client, ClientOp, Completion};

/// A client of an etcd cluster: process `p` talks to endpoint `p mod n`.
pub struct EtcdClient {
    http: reqwest::Client,
    /// `(name, base URL)` per member, e.g. `("e1", "http://127.0.0.1:2379")`.
    endpoints: Vec<(String, String)>,
    /// Serve reads from the contacted member without a quorum round.
    serializable: bool,
}

impl EtcdClient {
    pub fn new(
        endpoints: Vec<(String, String)>,
        timeout: Duration,
        serializable: bool,
    ) -> anyhow::Result<EtcdClient> {
        anyhow::ensure!(
            !endpoints.is_empty(),
            "an etcd client needs at least one endpoint"
        );
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(1)))
            .build()?;
        Ok(EtcdClient {
            http,
            endpoints,
            serializable,
        })
    }

    async fn post(&self, op: &ClientOp, path: &str, body: Value) -> Result<Value, Completion> {
        let base = &self.endpoints[(op.process % self.endpoints.len() as u64) as usize].1;
        match self
            .http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r
                .json::<Value>()
                .await
                .map_err(|e| Completion::info(op, e.to_string())),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                Err(Completion::info(op, format!("{status}: {text}")))
            }
            Err(e) if e.is_connect() => Err(super::synod::not_sent(op, e)),
            Err(e) if e.is_timeout() => Err(Completion::info(op, "timeout")),
            Err(e) => Err(Completion::info(op, e.to_string())),
        }
    }
}

impl Client for EtcdClient {
    async fn invoke(&self, op: &ClientOp) -> Completion {
        let key = b64(op.key.as_bytes());
        match op.f {
            Fun::Read => {
                let body = json!({"key": key, "serializable": self.serializable});
                match self.post(op, "/v3/kv/range", body).await {
                    Ok(reply) => {
                        let raw = reply
                            .get("kvs")
                            .and_then(|kvs| kvs.get(0))
                            .and_then(|kv| kv.get("value"))
                            .and_then(Value::as_str);
                        match raw.map(decode_value) {
                            None => Completion::ok(Value::Null),
                            Some(Some(v)) => Completion::ok(v),
                            Some(None) => Completion::fail(op, "unreadable value in range reply"),
                        }
                    }
                    Err(outcome) => outcome,
                }
            }
            Fun::Write => {
                let body = json!({"key": key, "value": b64(op.value.to_string().as_bytes())});
                match self.post(op, "/v3/kv/put", body).await {
                    Ok(_) => Completion::ok(op.value.clone()),
                    Err(outcome) => outcome,
                }
            }
            Fun::Cas => {
                let Some((expected, new)) = cas_parts(&op.value) else {
                    return Completion::fail(op, "cas value is not [expected, new]");
                };
                let body = json!({
                    "compare": [{
                        "key": key, "target": "VALUE", "result": "EQUAL",
                        "value": b64(expected.to_string().as_bytes())
                    }],
                    "success": [{"requestPut": {"key": key, "value": b64(new.to_string().as_bytes())}}]
                });
                match self.post(op, "/v3/kv/txn", body).await {
                    Ok(reply) if reply.get("succeeded").and_then(Value::as_bool) == Some(true) => {
                        Completion::ok(op.value.clone())
                    }
                    // The gateway omits false fields: no `succeeded` is a
                    // definite mismatch.
                    Ok(_) => Completion::mismatch(op, CAS_MISMATCH),
                    Err(outcome) => outcome,
                }
            }
            _ => Completion::fail(op, format!("etcd target does not do {}", op.f)),
        }
    }

    fn node_of(&self, process: u64) -> Option<&str> {
        Some(&self.endpoints[(process % self.endpoints.len() as u64) as usize].0)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as the gateway wants bytes fields.
pub fn b64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; `None` on a character outside the alphabet.
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A stored register value: base64 of its JSON text.
fn decode_value(raw: &str) -> Option<Value> {
    serde_json::from_slice(&unb64(raw)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_known_vectors() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
        for s in ["", "k1", "12345", "\"x\"", "hello world!"] {
            assert_eq!(unb64(&b64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert!(unb64("!!").is_none());
        assert_eq!(decode_value(&b64(b"42")), Some(json!(42)));
    }
}
