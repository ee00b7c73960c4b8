//! The per-key linearizability search: Wing & Gong's algorithm with Lowe's
//! memoisation, as in Porcupine.
//!
//! Every operation becomes a *call* entry at its invocation time and a
//! *return* entry at its completion time, in one doubly linked list sorted
//! by time. At equal times the order depends on the history: where its
//! order is the order one recorder observed the events in (Synod's own),
//! the earlier event comes first, so an op whose completion was recorded
//! before another's invocation precedes it; elsewhere calls come before
//! returns, so ops that touch in time are concurrent (the sound choice when
//! nothing orders them). The search walks the list from the head:
//! at a call entry it tries to linearize that operation now (the model
//! accepts it in the current state); if so it lifts both entries out of the
//! list, pushes an undo record and restarts from the head. Reaching a
//! return entry means its operation should already have taken effect and
//! did not: undo the last linearization and try the next candidate after it.
//!
//! Lowe's memoisation makes this practical: the pair (set of linearized ops,
//! model state) determines the future completely, so each pair is explored
//! once. The set is a bitset; the cache stores bitsets in one arena with a
//! 64-bit Zobrist hash kept incrementally, so a lookup neither allocates
//! nor rehashes the set.
//!
//! `info` operations have no return entry (their return is infinitely
//! late) and need not be linearized at all: the search succeeds as soon as
//! every definite operation is linearized, which is exactly "it may take
//! effect at any instant after its invocation, or never".

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use hashbrown::HashTable;

use crate::fxhash::FxHasher;
use crate::model::{KeyOp, Model};
use std::hash::{Hash, Hasher};

const NONE: u32 = u32::MAX;

/// How a key's search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchOutcome {
    Linearizable,
    NotLinearizable,
    /// The deadline passed first.
    OutOfTime,
    /// The shared memory budget ran out first.
    OutOfMemory,
    /// Another key was found not linearizable first, which settles the
    /// verdict; this key was left undecided.
    Cancelled,
}

/// Budgets shared by all keys of one check.
pub struct Limits {
    pub deadline: Option<Instant>,
    /// Bytes the caches of all keys may hold together.
    pub memory_limit: Option<usize>,
    /// Bytes the caches hold now (all keys).
    pub memory_used: AtomicUsize,
    pub cancel: AtomicBool,
}

impl Limits {
    pub fn new(deadline: Option<Instant>, memory_limit: Option<usize>) -> Self {
        Limits {
            deadline,
            memory_limit,
            memory_used: AtomicUsize::new(0),
            cancel: AtomicBool::new(false),
        }
    }

    pub fn unlimited() -> Self {
        Limits::new(None, None)
    }
}

/// The search's answer for one key.
#[derive(Clone, Debug)]
pub struct SearchResult {
    pub outcome: SearchOutcome,
    /// With `track_longest`: the longest linearization found (op indices in
    /// linearization order). For a non-linearizable key this is the longest
    /// linearizable prefix the explanation shows.
    pub longest: Vec<usize>,
    /// Distinct (set, state) pairs explored.
    pub explored: usize,
}

#[derive(Clone, Copy)]
struct Node {
    op: u32,
    is_call: bool,
    /// For a call: its return node, or NONE for an `info` op.
    ret: u32,
    prev: u32,
    next: u32,
}

/// A linked list of call/return entries with O(1) lift and unlift.
struct Entries {
    nodes: Vec<Node>,
}

impl Entries {
    /// `ordered`: ties in time are broken by event index (see the module
    /// doc); otherwise calls sort before returns at equal times.
    fn new(ops: &[KeyOp], ordered: bool) -> Self {
        let mut ents: Vec<(u64, u64, bool, u32)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            let tie = |index: u64, is_ret: bool| if ordered { index } else { is_ret as u64 };
            ents.push((op.call, tie(op.invoke_index, false), false, i as u32));
            if op.definite {
                let at = op.complete_index.unwrap_or(u64::MAX);
                ents.push((op.ret, tie(at, true), true, i as u32));
            }
        }
        ents.sort_unstable();
        let mut nodes = Vec::with_capacity(ents.len() + 1);
        nodes.push(Node {
            op: NONE,
            is_call: false,
            ret: NONE,
            prev: NONE,
            next: if ents.is_empty() { NONE } else { 1 },
        });
        let mut ret_of = vec![NONE; ops.len()];
        for (i, &(_, _, is_ret, op)) in ents.iter().enumerate() {
            let idx = i as u32 + 1;
            if is_ret {
                ret_of[op as usize] = idx;
            }
            nodes.push(Node {
                op,
                is_call: !is_ret,
                ret: NONE,
                prev: i as u32,
                next: if i + 1 < ents.len() { idx + 1 } else { NONE },
            });
        }
        for n in nodes.iter_mut().skip(1) {
            if n.is_call {
                n.ret = ret_of[n.op as usize];
            }
        }
        Entries { nodes }
    }

    fn remove(&mut self, i: u32) {
        let Node { prev, next, .. } = self.nodes[i as usize];
        self.nodes[prev as usize].next = next;
        if next != NONE {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn reinsert(&mut self, i: u32) {
        let Node { prev, next, .. } = self.nodes[i as usize];
        self.nodes[prev as usize].next = i;
        if next != NONE {
            self.nodes[next as usize].prev = i;
        }
    }

    fn lift(&mut self, call: u32) {
        self.remove(call);
        let ret = self.nodes[call as usize].ret;
        if ret != NONE {
            self.remove(ret);
        }
    }

    fn unlift(&mut self, call: u32) {
        // Reverse order of removal, as dancing links require.
        let ret = self.nodes[call as usize].ret;
        if ret != NONE {
            self.reinsert(ret);
        }
        self.reinsert(call);
    }
}

/// Zobrist keys: one random word per op, so the set's hash is a running xor.
fn zobrist(i: usize) -> u64 {
    // splitmix64 of the index: deterministic, well mixed.
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The memo of explored (linearized set, state) pairs.
struct Cache<S> {
    table: HashTable<(u64, u32, S)>,
    /// All stored bitsets, `words` each, back to back.
    arena: Vec<u64>,
    words: usize,
    /// Bytes this cache has reported to the shared budget.
    reported: usize,
}

impl<S: Eq + Hash> Cache<S> {
    fn new(words: usize) -> Self {
        Cache {
            table: HashTable::new(),
            arena: Vec::new(),
            words,
            reported: 0,
        }
    }

    /// A cache sized for a search of `ops` ops, which stores at least one
    /// pair per op it linearizes: growing by doubling from empty rehashed
    /// and copied the memo a dozen times per key. The arena's advance is
    /// capped (8 MiB), since a long key's bitsets are long too.
    fn for_ops(words: usize, ops: usize) -> Self {
        let mut cache = Self::new(words);
        cache.table.reserve(ops, |_| 0);
        cache.arena.reserve(ops.saturating_mul(words).min(1 << 20));
        cache
    }

    fn hash(set_hash: u64, state: &S) -> u64 {
        let mut h = FxHasher::default();
        h.write_u64(set_hash);
        state.hash(&mut h);
        h.finish()
    }

    /// Inserts the pair; false if it was already there.
    fn insert(&mut self, set_hash: u64, bits: &[u64], state: &S) -> bool
    where
        S: Clone,
    {
        let h = Self::hash(set_hash, state);
        let words = self.words;
        let arena = &self.arena;
        let found = self.table.find(h, |(sh, off, s)| {
            *sh == set_hash
                && s == state
                // A plain loop: bitsets are a few words, and a libc
                // memcmp call per probe showed in the etcd profile.
                && arena[*off as usize * words..(*off as usize + 1) * words]
                    .iter()
                    .zip(bits)
                    .all(|(a, b)| a == b)
        });
        if found.is_some() {
            return false;
        }
        let off = (self.arena.len() / words.max(1)) as u32;
        self.arena.extend_from_slice(bits);
        self.table
            .insert_unique(h, (set_hash, off, state.clone()), |(sh, _, s)| {
                Self::hash(*sh, s)
            });
        true
    }

    fn bytes(&self) -> usize {
        self.arena.capacity() * 8
            + self.table.capacity() * (std::mem::size_of::<(u64, u32, S)>() + 1)
    }
}

/// A resumable search of one key: [`Search::run`] works for a number of
/// steps and stops, so a check can share its cores fairly between keys
/// (a hard key must not starve an easy one whose failure would settle the
/// whole verdict).
pub struct Search<S> {
    entries: Entries,
    bits: Vec<u64>,
    set_hash: u64,
    cache: Cache<S>,
    state: S,
    /// Undo stack: (call node, state before it).
    stack: Vec<(u32, S)>,
    definite_total: usize,
    definite_done: usize,
    /// The next entry to consider.
    entry: u32,
    track_longest: bool,
    longest: Vec<usize>,
    /// The stack is deeper than `longest` and not yet copied: copying on
    /// every push would cost O(n) per push on a valid history; copying when
    /// the search first backtracks from a new peak costs nothing until it
    /// has to backtrack.
    peak_pending: bool,
    done: Option<SearchOutcome>,
    /// The memo's size when the search finished (the memo is then freed).
    explored_at_end: usize,
}

impl<S: Clone + Eq + Hash> Search<S> {
    /// `ordered`: ties in time are broken by event index (the module doc,
    /// [`crate::model::Ties`]).
    pub fn new<M: Model<State = S>>(
        model: &M,
        ops: &[KeyOp],
        ordered: bool,
        track_longest: bool,
    ) -> Self {
        let entries = Entries::new(ops, ordered);
        let words = ops.len().div_ceil(64).max(1);
        let entry = entries.nodes[0].next;
        Search {
            entries,
            bits: vec![0u64; words],
            set_hash: 0,
            cache: Cache::for_ops(words, ops.len()),
            state: model.init(),
            stack: Vec::new(),
            definite_total: ops.iter().filter(|o| o.definite).count(),
            definite_done: 0,
            entry,
            track_longest,
            longest: Vec::new(),
            peak_pending: false,
            done: None,
            explored_at_end: 0,
        }
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<SearchOutcome> {
        self.done
    }

    /// Distinct (set, state) pairs explored so far.
    pub fn explored(&self) -> usize {
        self.cache.table.len().max(self.explored_at_end)
    }

    /// The longest linearization seen (with `track_longest`).
    pub fn longest(&self) -> &[usize] {
        &self.longest
    }

    fn current(&self) -> Vec<usize> {
        self.stack
            .iter()
            .map(|&(n, _)| self.entries.nodes[n as usize].op as usize)
            .collect()
    }

    fn finish(&mut self, outcome: SearchOutcome, limits: &Limits) -> Option<SearchOutcome> {
        limits
            .memory_used
            .fetch_sub(self.cache.reported, Ordering::Relaxed);
        self.cache.reported = 0;
        self.explored_at_end = self.cache.table.len();
        // Free the memo and the lists now: a finished key keeps only its
        // verdict and its longest linearization.
        self.cache = Cache::new(self.cache.words);
        self.entries = Entries { nodes: Vec::new() };
        self.stack = Vec::new();
        self.bits = Vec::new();
        self.done = Some(outcome);
        self.done
    }

    /// Searches for at most about `budget` steps; `Some` once decided (or
    /// a limit ran out), `None` if it needs more steps.
    pub fn run<M: Model<State = S>>(
        &mut self,
        model: &M,
        ops: &[KeyOp],
        limits: &Limits,
        budget: u64,
    ) -> Option<SearchOutcome> {
        if self.done.is_some() {
            return self.done;
        }
        let mut steps = 0u64;
        loop {
            if self.definite_done == self.definite_total {
                if self.track_longest {
                    self.longest = self.current();
                }
                return self.finish(SearchOutcome::Linearizable, limits);
            }
            steps += 1;
            if steps & 1023 == 0 {
                if let Some(outcome) = over_budget(limits, &mut self.cache) {
                    return self.finish(outcome, limits);
                }
                if steps >= budget {
                    return None;
                }
            }
            let entry = self.entry;
            // A definite op remains, so its return entry is still in the
            // list and the walk meets it before running off the end.
            if entry == NONE {
                debug_assert!(false, "walked past every return entry");
                return self.finish(SearchOutcome::NotLinearizable, limits);
            }
            let node = self.entries.nodes[entry as usize];
            if node.is_call {
                let i = node.op as usize;
                let op = &ops[i];
                if let Some(next_state) = model.step(&self.state, &op.what) {
                    self.bits[i / 64] |= 1 << (i % 64);
                    let h = self.set_hash ^ zobrist(i);
                    if self.cache.insert(h, &self.bits, &next_state) {
                        self.set_hash = h;
                        let before = std::mem::replace(&mut self.state, next_state);
                        self.stack.push((entry, before));
                        if op.definite {
                            self.definite_done += 1;
                        }
                        self.entries.lift(entry);
                        if self.track_longest && self.stack.len() > self.longest.len() {
                            self.peak_pending = true;
                        }
                        self.entry = self.entries.nodes[0].next;
                        continue;
                    }
                    self.bits[i / 64] &= !(1 << (i % 64));
                }
                self.entry = node.next;
            } else {
                // A return entry: its op had to take effect by now.
                // Backtrack: undo the last linearization, try what follows.
                if self.peak_pending {
                    self.longest = self.current();
                    self.peak_pending = false;
                }
                let Some((call, prev_state)) = self.stack.pop() else {
                    return self.finish(SearchOutcome::NotLinearizable, limits);
                };
                let i = self.entries.nodes[call as usize].op as usize;
                self.state = prev_state;
                self.bits[i / 64] &= !(1 << (i % 64));
                self.set_hash ^= zobrist(i);
                if ops[i].definite {
                    self.definite_done -= 1;
                }
                self.entries.unlift(call);
                self.entry = self.entries.nodes[call as usize].next;
            }
        }
    }
}

/// Searches `ops` to the end (or until a limit runs out).
pub fn search<M: Model>(
    model: &M,
    ops: &[KeyOp],
    ordered: bool,
    limits: &Limits,
    track_longest: bool,
) -> SearchResult {
    let mut s = Search::new(model, ops, ordered, track_longest);
    loop {
        if let Some(outcome) = s.run(model, ops, limits, u64::MAX) {
            return SearchResult {
                outcome,
                explored: s.explored(),
                longest: std::mem::take(&mut s.longest),
            };
        }
    }
}

fn over_budget<S: Eq + Hash>(limits: &Limits, cache: &mut Cache<S>) -> Option<SearchOutcome> {
    if limits.cancel.load(Ordering::Relaxed) {
        return Some(SearchOutcome::Cancelled);
    }
    if let Some(deadline) = limits.deadline {
        if Instant::now() >= deadline {
            return Some(SearchOutcome::OutOfTime);
        }
    }
    let now = cache.bytes();
    if now > cache.reported {
        let grown = now - cache.reported;
        let total = limits.memory_used.fetch_add(grown, Ordering::Relaxed) + grown;
        cache.reported = now;
        if let Some(limit) = limits.memory_limit {
            if total > limit {
                return Some(SearchOutcome::OutOfMemory);
            }
        }
    }
    None
}
