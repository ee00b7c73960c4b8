//! Property tests: simulated linearizable histories are judged valid, and
//! one impossible read makes them invalid; the search agrees with a
//! brute-force oracle on small histories full of equal times; random
//! bytes are never a verdict, and a truncated history is one only where
//! the cut falls on an event boundary.

use proptest::prelude::*;
use serde_json::{json, Value};
use synod_checker::gen::{simulate, GenConfig, Rng};
use synod_checker::history::{Event, EventType, Fun, History, Process};
use synod_checker::import::{read_str, Format};
use synod_checker::{check, Options, Semantics, Ties, Verdict};

fn config() -> impl Strategy<Value = GenConfig> {
    configs(120, 0.3)
}

/// Invalid histories make the search exhaust every placement of the
/// `info` ops before the violation (2^info sets): keep those smaller.
fn small_config() -> impl Strategy<Value = GenConfig> {
    configs(60, 0.1)
}

fn configs(max_ops: usize, max_info: f64) -> impl Strategy<Value = GenConfig> {
    (
        any::<u64>(),
        1usize..4,
        1usize..7,
        1usize..max_ops,
        0.0f64..max_info,
    )
        .prop_map(
            |(seed, keys, processes_per_key, ops, info_rate)| GenConfig {
                seed,
                keys,
                processes_per_key,
                ops,
                info_rate,
                ..GenConfig::default()
            },
        )
}

/// Fuzzed histories only need to not panic: bound their search.
fn limited(semantics: Semantics) -> Options {
    Options {
        semantics,
        time_limit: Some(std::time::Duration::from_millis(200)),
        ..Options::default()
    }
}

/// What `synod check` would conclude of `text` read as `format`: the
/// verdict, or `None` for bad input (exit 3); rendering the report and the
/// explanation on the way, as the CLI does.
fn judge(text: &str, format: Format) -> Option<(Verdict, History, bool)> {
    let imported = read_str(text, format).ok()?;
    let checked = check(&imported.history, &limited(imported.semantics.clone())).ok()?;
    let report = synod_checker::report::report(&imported.history);
    let _ = synod_checker::html::report_page("fuzz", &checked, &report);
    let _ = synod_checker::html::explanation_page("fuzz", &checked.explanations);
    let torn = imported.notes.truncated_line.is_some();
    Some((checked.verdict, imported.history, torn))
}

const FORMATS: [Format; 5] = [
    Format::Auto,
    Format::Jsonl,
    Format::JepsenLog,
    Format::Edn,
    Format::JepsenEdn,
];

/// EDN text of a JSON value (`nil`, vectors, strings, numbers).
fn edn(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Array(xs) => format!("[{}]", xs.iter().map(edn).collect::<Vec<_>>().join(" ")),
        other => other.to_string(),
    }
}

/// `[key value]`, as `jepsen.independent` writes a keyed value.
fn tuple(e: &Event) -> String {
    format!("[{:?} {}]", e.key(), edn(&e.value))
}

/// A history in each format, one event per line (the EDN vector, one map
/// per line inside `[...]`).
fn render(h: &History, format: Format) -> String {
    let mut out = String::new();
    let process = |e: &Event| match e.process {
        Process::Client(p) => p.to_string(),
        Process::Nemesis => ":nemesis".into(),
    };
    match format {
        Format::Jsonl | Format::Auto => {
            let mut bytes = Vec::new();
            h.write_to(&mut bytes).unwrap();
            return String::from_utf8(bytes).unwrap();
        }
        Format::JepsenLog | Format::Edn => {
            let line = |e: &Event| match format {
                Format::JepsenLog => format!(
                    "INFO  jepsen.util - {}\t:{}\t:{}\t{}\n",
                    process(e),
                    e.kind,
                    e.f,
                    tuple(e)
                ),
                _ => format!(
                    "{{:process {}, :type :{}, :f :{}, :key {:?}, :value {}}}\n",
                    process(e),
                    e.kind,
                    e.f,
                    e.key(),
                    edn(&e.value)
                ),
            };
            out.extend(h.events.iter().map(line));
        }
        Format::JepsenEdn => {
            out.push('[');
            for e in &h.events {
                out += &format!(
                    "{{:process {}, :type :{}, :f :{}, :value {}}}\n",
                    process(e),
                    e.kind,
                    e.f,
                    tuple(e)
                );
            }
            out.push_str("]\n");
        }
    }
    out
}

/// Whether `text[..cut]` ends where an event does.
fn on_boundary(text: &str, cut: usize, format: Format) -> bool {
    let kept = text[..cut].trim_end_matches([' ', '\t']);
    match format {
        Format::JepsenEdn => text[cut..].trim().is_empty(),
        Format::JepsenLog => kept.is_empty() || kept.ends_with('\n'),
        _ => kept.is_empty() || kept.ends_with('\n') || kept.ends_with('}'),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn simulated_register_histories_are_valid(cfg in config()) {
        let h = simulate(&cfg);
        let checked = check(&h, &Options::default()).unwrap();
        prop_assert_eq!(checked.verdict, Verdict::Valid, "seed {}", cfg.seed);
    }

    #[test]
    fn one_impossible_read_makes_them_invalid(cfg in small_config(), pick in any::<prop::sample::Index>()) {
        let mut h = simulate(&cfg);
        let reads: Vec<usize> = h.events.iter().enumerate()
            .filter(|(_, e)| e.kind == EventType::Ok && e.f == Fun::Read)
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!reads.is_empty());
        // No write or cas ever uses a negative value.
        h.events[reads[pick.index(reads.len())]].value = json!(-1);
        let checked = check(&h, &Options::default()).unwrap();
        prop_assert_eq!(checked.verdict, Verdict::Invalid, "seed {}", cfg.seed);
        prop_assert_eq!(checked.explanations.len(), 1);
    }

    /// Random bytes are never a history: never a verdict, never a panic.
    #[test]
    fn random_bytes_are_never_a_verdict(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        for format in FORMATS {
            let verdict = judge(&text, format).map(|j| j.0);
            prop_assert!(verdict.is_none(), "{:?} read as {:?} gave {:?}", text, format, verdict);
        }
        prop_assert!(History::read_from(&bytes[..]).map(|h| h.is_empty()).unwrap_or(true));
        let _ = synod_checker::edn::parse_all(&text);
    }

    /// A history cut at any byte is bad input, unless the cut falls on an
    /// event boundary; in Synod's JSON Lines a last object cut off by the
    /// end of the file is a crashed writer's tail, ignored with a warning,
    /// so what is read is then exactly the events before it.
    #[test]
    fn truncated_histories_are_verdicts_only_at_event_boundaries(
        cfg in configs(30, 0.2),
        cut in any::<prop::sample::Index>(),
        which in 0usize..4,
    ) {
        let format = [Format::Jsonl, Format::JepsenLog, Format::Edn, Format::JepsenEdn][which];
        let h = simulate(&cfg);
        let text = render(&h, format);
        let whole = judge(&text, format);
        prop_assert!(whole.is_some(), "the whole {:?} history is read: {}", format, text);
        let cut = cut.index(text.len() + 1);
        if let Some((_, read, torn)) = judge(&text[..cut], format) {
            if !on_boundary(&text, cut, format) {
                prop_assert!(format == Format::Jsonl && torn, "{:?} cut at {} of {:?}", format, cut, text);
                let before = &text[..text[..cut].rfind('\n').map_or(0, |i| i + 1)];
                prop_assert_eq!(read.events, History::read_from(before.as_bytes()).unwrap().events);
            }
        }
    }

    /// Near-misses reach deeper code than random bytes do.
    #[test]
    fn mangled_histories_never_panic(cfg in config(), cut in any::<prop::sample::Index>(), noise in any::<u8>()) {
        let h = simulate(&cfg);
        for format in [Format::Jsonl, Format::JepsenLog, Format::Edn, Format::JepsenEdn] {
            let mut out = render(&h, format).into_bytes();
            let i = cut.index(out.len());
            out[i] = noise;
            let _ = judge(&String::from_utf8_lossy(&out), format);
        }
    }

    /// The search agrees with brute force on small histories in which
    /// equal times are common, with ties ordered or concurrent.
    #[test]
    fn the_search_agrees_with_brute_force(seed in any::<u64>(), ordered in any::<bool>()) {
        let h = tiny_history(seed);
        let ties = if ordered { Ties::Ordered } else { Ties::Concurrent };
        let options = Options {
            semantics: Semantics { ties, ..Semantics::default() },
            ..Options::default()
        };
        let checked = check(&h, &options).unwrap();
        let expected = if brute_force(&h, ordered) { Verdict::Valid } else { Verdict::Invalid };
        prop_assert_eq!(checked.verdict, expected, "{:?}", h.events);
    }
}

/// Up to 7 ops by 3 processes on one register, values 0..3, times that
/// advance by 0 or 1 (so ties abound), every outcome.
fn tiny_history(seed: u64) -> History {
    let mut rng = Rng::new(seed);
    let mut events = Vec::new();
    let mut busy: [Option<(Fun, Value)>; 3] = [None, None, None];
    let mut ids = [0u64, 1, 2];
    let mut next_id = 3;
    let (mut time, mut invoked, ops) = (0u64, 0, 1 + rng.below(7) as usize);
    let v = |rng: &mut Rng| json!(rng.below(3));
    while invoked < ops || busy.iter().any(Option::is_some) {
        time += rng.below(2);
        let slot = rng.below(3) as usize;
        let (kind, f, value, mismatch) = match busy[slot].take() {
            None if invoked < ops => {
                invoked += 1;
                let (f, value) = match rng.below(3) {
                    0 => (Fun::Read, Value::Null),
                    1 => (Fun::Write, v(&mut rng)),
                    _ => (Fun::Cas, json!([rng.below(3), rng.below(3)])),
                };
                busy[slot] = Some((f.clone(), value.clone()));
                (EventType::Invoke, f, value, false)
            }
            None => continue,
            Some((f, value)) => {
                let roll = rng.below(4);
                let (kind, value) = match (&f, roll) {
                    (Fun::Read, 0) => (EventType::Ok, Value::Null),
                    (Fun::Read, _) => (EventType::Ok, v(&mut rng)),
                    (_, 0) => (EventType::Info, value),
                    (Fun::Cas, 1) => (EventType::Fail, value),
                    _ => (EventType::Ok, value),
                };
                (kind, f, value, kind == EventType::Fail)
            }
        };
        events.push(Event {
            index: events.len() as u64,
            time,
            process: Process::Client(ids[slot]),
            kind,
            f,
            key: None,
            value,
            error: None,
            node: None,
            mismatch,
            not_proposed: false,
        });
        if kind == EventType::Info {
            ids[slot] = next_id;
            next_id += 1;
        }
    }
    History::validated(events).unwrap()
}

/// One op for the oracle: its call and return positions in time order, and
/// what it did.
struct TinyOp {
    call: (u64, u64),
    /// `None`: `info`, or never completed.
    ret: Option<(u64, u64)>,
    f: Fun,
    value: Value,
    outcome: EventType,
}

/// Whether some order of the ops is legal for a register starting at
/// null: every `ok`/`fail` op placed, `info` ops placed or left out, and
/// no op placed before one that returned before it was called.
fn brute_force(h: &History, ordered: bool) -> bool {
    let mut ops: Vec<TinyOp> = Vec::new();
    let mut open = std::collections::HashMap::new();
    // Ordered ties: (time, index). Concurrent: a call at t is after a
    // return at t' only if t' < t, so calls sort first at equal times.
    let at = |e: &Event, is_ret: bool| (e.time, if ordered { e.index } else { is_ret as u64 });
    for e in &h.events {
        let Process::Client(p) = e.process else {
            continue;
        };
        if e.kind == EventType::Invoke {
            open.insert(p, ops.len());
            ops.push(TinyOp {
                call: at(e, false),
                ret: None,
                f: e.f.clone(),
                value: e.value.clone(),
                outcome: EventType::Info,
            });
        } else if let Some(i) = open.remove(&p) {
            let op = &mut ops[i];
            op.outcome = e.kind;
            if e.kind != EventType::Info {
                op.ret = Some(at(e, true));
            }
            if e.kind == EventType::Ok && e.f == Fun::Read {
                op.value = e.value.clone();
            }
        }
    }
    // Failed reads and writes, and info reads, say nothing.
    ops.retain(|o| {
        let says_nothing = (o.outcome == EventType::Fail && o.f != Fun::Cas)
            || (o.outcome == EventType::Info && o.f == Fun::Read);
        !says_nothing
    });
    fn step(op: &TinyOp, state: &Value) -> Option<Value> {
        match (&op.f, op.outcome) {
            (Fun::Read, _) => (op.value == *state).then(|| state.clone()),
            (Fun::Write, _) => Some(op.value.clone()),
            (Fun::Cas, EventType::Fail) => (op.value[0] != *state).then(|| state.clone()),
            (Fun::Cas, _) => (op.value[0] == *state).then(|| op.value[1].clone()),
            _ => None,
        }
    }
    fn go(ops: &[TinyOp], placed: &mut Vec<bool>, state: Value) -> bool {
        let open_definite = |i: usize, placed: &[bool]| !placed[i] && ops[i].ret.is_some();
        if !(0..ops.len()).any(|i| open_definite(i, placed)) {
            return true;
        }
        for i in 0..ops.len() {
            if placed[i] {
                continue;
            }
            // Not before an unplaced op that returned before i was called.
            let blocked = (0..ops.len())
                .any(|j| open_definite(j, placed) && ops[j].ret.is_some_and(|r| r < ops[i].call));
            if blocked {
                continue;
            }
            if let Some(next) = step(&ops[i], &state) {
                placed[i] = true;
                if go(ops, placed, next) {
                    return true;
                }
                placed[i] = false;
            }
        }
        false
    }
    let mut placed = vec![false; ops.len()];
    go(&ops, &mut placed, Value::Null)
}
