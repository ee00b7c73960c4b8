//! The null target: an in-process, trivially linearizable register map.
//! It costs next to nothing, so a workload against it measures the bench
//! (generator, recorder, disk) and nothing else.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;
use synod_checker::history::{Fun, CAS_MISMATCH};

use super::{cas_parts, Client, ClientOp, Completion};

/// A map of registers behind one lock: every op is atomic, so histories
/// against it are linearizable by construction.
#[derive(Default)]
pub struct NullClient {
    /// The registers; a key never written reads as `null`.
    state: Mutex<HashMap<String, Value>>,
}

impl NullClient {
    pub fn new() -> NullClient {
        NullClient::default()
    }

    fn apply(&self, op: &ClientOp) -> Completion {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match op.f {
            Fun::Read => Completion::ok(state.get(&op.key).cloned().unwrap_or(Value::Null)),
            Fun::Write => {
                state.insert(op.key.clone(), op.value.clone());
                Completion::ok(op.value.clone())
            }
            Fun::Cas => match cas_parts(&op.value) {
                Some((expected, new)) => {
                    let current = state.get(&op.key).unwrap_or(&Value::Null);
                    if current == expected {
                        state.insert(op.key.clone(), new.clone());
                        Completion::ok(op.value.clone())
                    } else {
                        Completion::mismatch(op, CAS_MISMATCH)
                    }
                }
                None => Completion::fail(op, "cas value is not [expected, new]"),
            },
            _ => Completion::fail(op, format!("the null target does not do {}", op.f)),
        }
    }
}

impl Client for NullClient {
    async fn invoke(&self, op: &ClientOp) -> Completion {
        let outcome = self.apply(op);
        // Every op is instant; yielding keeps a worker from hogging its
        // thread so the recorder and the clock keep up.
        tokio::task::yield_now().await;
        outcome
    }

    fn node_of(&self, _process: u64) -> Option<&str> {
        None
    }
}
