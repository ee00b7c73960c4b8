//! The replicated state machine: a map of string keys to integer or string
//! values with read, write and cas, and per-client deduplication.
//!
//! Applying the chosen log in order on every replica yields the same
//! state; `digest` folds every applied command into a running hash so the
//! simulation can assert that applied prefixes are equal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Command, KvOp, RequestOutcome, Slot};

/// The state machine and everything needed to rebuild it (its snapshot).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Kv {
    /// The data.
    pub map: BTreeMap<String, crate::types::Value>,
    /// Client id -> (its last applied sequence number, that reply): a
    /// retried command is applied once and its first reply returned again.
    pub sessions: BTreeMap<u64, (u64, RequestOutcome)>,
    /// Every slot below this one has been applied.
    pub applied: Slot,
    /// A running hash over everything applied (order-sensitive).
    pub digest: u64,
}

impl Kv {
    /// Applies one chosen command and returns its outcome.
    pub fn apply(&mut self, cmd: &Command) -> RequestOutcome {
        if let Some(d) = cmd.dedup {
            if let Some((seq, reply)) = self.sessions.get(&d.client) {
                if *seq == d.seq {
                    return reply.clone();
                }
                if *seq > d.seq {
                    return RequestOutcome::Indeterminate {
                        reason: format!(
                            "client {} seq {} is older than its last applied seq {seq}",
                            d.client, d.seq
                        ),
                    };
                }
            }
        }
        let outcome = self.execute(&cmd.op);
        self.digest = mix(self.digest, hash_of(&(&cmd.op, &outcome)));
        if let Some(d) = cmd.dedup {
            self.sessions.insert(d.client, (d.seq, outcome.clone()));
        }
        outcome
    }

    /// Reads without going through the log (lease and local reads).
    pub fn read(&self, key: &str) -> RequestOutcome {
        RequestOutcome::Ok {
            value: self.map.get(key).cloned(),
        }
    }

    fn execute(&mut self, op: &KvOp) -> RequestOutcome {
        match op {
            KvOp::Read { key } => self.read(key),
            KvOp::Write { key, value } => {
                match self.map.get_mut(key) {
                    Some(v) => *v = value.clone(),
                    None => {
                        self.map.insert(key.clone(), value.clone());
                    }
                }
                RequestOutcome::Ok {
                    value: Some(value.clone()),
                }
            }
            KvOp::Cas { key, expected, new } => match self.map.get(key) {
                Some(v) if v == expected => {
                    self.map.insert(key.clone(), new.clone());
                    RequestOutcome::Ok {
                        value: Some(new.clone()),
                    }
                }
                found => RequestOutcome::CasMismatch {
                    found: found.cloned(),
                },
            },
        }
    }

    /// Marks slot `slot` applied (after its commands) and folds it into the
    /// digest.
    pub fn finish_slot(&mut self, slot: Slot) {
        assert_eq!(slot, self.applied, "slots must be applied in order");
        self.applied = slot + 1;
        self.digest = mix(self.digest, slot);
    }
}

/// A fast, deterministic hash (FxHash's mixing): the digest only has to
/// tell replicas apart, and the core's tables are keyed by ids the nodes
/// themselves assign, so nothing needs to resist an adversary.
#[derive(Default)]
pub struct Fx(u64);

/// `HashMap` builder for [`Fx`].
pub type FxBuild = std::hash::BuildHasherDefault<Fx>;

impl std::hash::Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn hash_of<T: std::hash::Hash>(t: &T) -> u64 {
    use std::hash::Hasher;
    let mut h = Fx(0);
    t.hash(&mut h);
    h.finish()
}

fn mix(a: u64, b: u64) -> u64 {
    (a ^ b)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29)
        .wrapping_add(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ClientSeq, CmdId, Value};

    fn cmd(dedup: Option<(u64, u64)>, op: KvOp) -> Command {
        Command {
            id: CmdId {
                node: 1,
                boot: 0,
                request: 0,
            },
            dedup: dedup.map(|(client, seq)| ClientSeq { client, seq }),
            op,
        }
    }

    #[test]
    fn cas_and_dedup_return_the_first_reply_again() {
        let mut kv = Kv::default();
        let w = cmd(
            Some((7, 1)),
            KvOp::Write {
                key: "x".into(),
                value: Value::Int(1),
            },
        );
        assert_eq!(
            kv.apply(&w),
            RequestOutcome::Ok {
                value: Some(Value::Int(1))
            }
        );
        let c = cmd(
            Some((7, 2)),
            KvOp::Cas {
                key: "x".into(),
                expected: Value::Int(1),
                new: Value::Int(2),
            },
        );
        assert_eq!(
            kv.apply(&c),
            RequestOutcome::Ok {
                value: Some(Value::Int(2))
            }
        );
        // The retry is not applied again: the first reply comes back.
        assert_eq!(
            kv.apply(&c),
            RequestOutcome::Ok {
                value: Some(Value::Int(2))
            }
        );
        let bad = cmd(
            None,
            KvOp::Cas {
                key: "x".into(),
                expected: Value::Int(1),
                new: Value::Int(3),
            },
        );
        assert_eq!(
            kv.apply(&bad),
            RequestOutcome::CasMismatch {
                found: Some(Value::Int(2))
            }
        );
        assert_eq!(kv.read("y"), RequestOutcome::Ok { value: None });
    }
}
