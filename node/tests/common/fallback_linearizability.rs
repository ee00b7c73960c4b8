//! FALLBACK linearizability check, used until (or where) the real checker
//! is not available: an exhaustive Wing-Gong search with Lowe's
//! memoisation over (linearized set, register value), one key at a time
//! (P-compositionality). Small and slow; fine for simulation histories.
//!
//! `info` operations may take effect at any point after their invocation,
//! or never; a failed `cas` (definite) says the key did not hold the
//! expected value; failed reads and writes carry nothing and are dropped.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::Judgement;

#[derive(Clone, Debug)]
enum Kind {
    Read(Option<String>),
    Write(String),
    Cas(String, String),
    CasFailed(String),
}

#[derive(Clone, Debug)]
struct KOp {
    call: u64,
    ret: u64,
    kind: Kind,
    desc: String,
}

fn text(v: &Value) -> String {
    v.to_string()
}

/// Checks a history given as JSON lines (already parsed).
pub fn check(lines: &[Value]) -> Judgement {
    let mut open: HashMap<String, (u64, Value)> = HashMap::new();
    let mut per_key: BTreeMap<String, Vec<KOp>> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        let i = i as u64;
        let process = l["process"].to_string();
        if process == "\"nemesis\"" {
            continue;
        }
        let kind = l["type"].as_str().unwrap_or("");
        if kind == "invoke" {
            open.insert(process, (i, l.clone()));
            continue;
        }
        let Some((call, inv)) = open.remove(&process) else {
            return Judgement::Unknown(format!("line {i}: completion without invoke"));
        };
        let key = inv["key"].as_str().unwrap_or("").to_string();
        let f = inv["f"].as_str().unwrap_or("");
        let ret = if kind == "info" { u64::MAX } else { i };
        let op = match (f, kind) {
            ("read", "ok") => Kind::Read(match &l["value"] {
                Value::Null => None,
                v => Some(text(v)),
            }),
            ("read", _) => continue,
            ("write", "ok" | "info") => Kind::Write(text(&inv["value"])),
            ("write", _) => continue,
            ("cas", "ok" | "info") => Kind::Cas(text(&inv["value"][0]), text(&inv["value"][1])),
            ("cas", _) => Kind::CasFailed(text(&inv["value"][0])),
            _ => return Judgement::Unknown(format!("line {i}: unknown op {f}")),
        };
        let desc = format!("p{process} {f} {} -> {kind} {}", inv["value"], l["value"]);
        per_key.entry(key).or_default().push(KOp {
            call,
            ret,
            kind: op,
            desc,
        });
    }
    // Invocations never completed are info.
    for (process, (call, inv)) in open {
        let key = inv["key"].as_str().unwrap_or("").to_string();
        let op = match inv["f"].as_str().unwrap_or("") {
            "write" => Kind::Write(text(&inv["value"])),
            "cas" => Kind::Cas(text(&inv["value"][0]), text(&inv["value"][1])),
            _ => continue,
        };
        per_key.entry(key).or_default().push(KOp {
            call,
            ret: u64::MAX,
            kind: op,
            desc: format!("p{process} open"),
        });
    }
    for (key, ops) in per_key {
        match check_key(&ops) {
            Some(true) => {}
            Some(false) => {
                return Judgement::NotLinearizable(format!(
                    "key {key} ({} operations) has no linearization",
                    ops.len()
                ))
            }
            None => return Judgement::Unknown(format!("key {key}: search budget exhausted")),
        }
    }
    Judgement::Linearizable
}

fn step(state: &Option<String>, k: &Kind) -> Option<Option<String>> {
    match k {
        Kind::Read(v) => (v == state).then(|| state.clone()),
        Kind::Write(v) => Some(Some(v.clone())),
        Kind::Cas(e, n) => (state.as_ref() == Some(e)).then(|| Some(n.clone())),
        Kind::CasFailed(e) => (state.as_ref() != Some(e)).then(|| state.clone()),
    }
}

struct Search<'a> {
    ops: &'a [KOp],
    done: Vec<u64>,
    memo: HashSet<(Vec<u64>, Option<String>)>,
    must: usize,
    linearized_must: usize,
}

const BUDGET: usize = 3_000_000;

fn check_key(ops: &[KOp]) -> Option<bool> {
    let must = ops.iter().filter(|o| o.ret != u64::MAX).count();
    let mut s = Search {
        ops,
        done: vec![0; ops.len().div_ceil(64)],
        memo: HashSet::new(),
        must,
        linearized_must: 0,
    };
    s.go(&None)
}

impl Search<'_> {
    fn is_done(&self, i: usize) -> bool {
        self.done[i / 64] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: usize) {
        self.done[i / 64] ^= 1 << (i % 64);
    }

    fn go(&mut self, state: &Option<String>) -> Option<bool> {
        if self.linearized_must == self.must {
            return Some(true);
        }
        if self.memo.len() > BUDGET {
            return None;
        }
        let min_ret = (0..self.ops.len())
            .filter(|&i| !self.is_done(i))
            .map(|i| self.ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..self.ops.len() {
            if self.is_done(i) || self.ops[i].call > min_ret {
                continue;
            }
            let Some(next) = step(state, &self.ops[i].kind) else {
                continue;
            };
            self.flip(i);
            let key = (self.done.clone(), next.clone());
            if self.memo.insert(key) {
                let must = self.ops[i].ret != u64::MAX;
                self.linearized_must += must as usize;
                let r = self.go(&next);
                self.linearized_must -= must as usize;
                if r != Some(false) {
                    self.flip(i);
                    return r;
                }
            }
            self.flip(i);
        }
        let _ = &self.ops[0].desc;
        Some(false)
    }
}
