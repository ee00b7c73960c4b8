//! Hand-written histories, one per rule of `docs/history.md` the checker
//! must honour; each is named after the behaviour it pins.

use std::time::Duration;

use serde_json::{json, Value};
use synod_checker::gen::{simulate, GenConfig};
use synod_checker::history::{Event, EventType, Fun, History, Process, NOT_PROPOSED};
use synod_checker::model::ModelError;
use synod_checker::{check, FailedCas, ModelKind, NilRead, Options, Semantics, Ties, Verdict};

/// `(process, type, f, value, time)` rows on the single register.
fn history(rows: &[(u64, &str, &str, Value, u64)]) -> History {
    let events = rows
        .iter()
        .enumerate()
        .map(|(i, (p, kind, f, value, time))| Event {
            index: i as u64,
            time: *time,
            process: Process::Client(*p),
            kind: match *kind {
                "invoke" => EventType::Invoke,
                "ok" => EventType::Ok,
                "fail" => EventType::Fail,
                _ => EventType::Info,
            },
            f: Fun::client_op(f).unwrap(),
            key: None,
            value: value.clone(),
            error: None,
            node: None,
            mismatch: false,
            not_proposed: false,
        })
        .collect();
    History::validated(events).unwrap()
}

fn verdict(h: &History) -> Verdict {
    check(h, &Options::default()).unwrap().verdict
}

fn verdict_with(h: &History, semantics: Semantics) -> Verdict {
    let options = Options {
        semantics,
        ..Options::default()
    };
    check(h, &options).unwrap().verdict
}

#[test]
fn info_write_may_take_effect_late() {
    // p1's write of 1 timed out; the register read null, then 1: the write
    // took effect after the client gave up.
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "info", "write", json!(1), 1),
        (2, "invoke", "read", Value::Null, 2),
        (2, "ok", "read", Value::Null, 3),
        (2, "invoke", "read", Value::Null, 4),
        (2, "ok", "read", json!(1), 5),
    ]);
    assert_eq!(verdict(&h), Verdict::Valid);
}

#[test]
fn info_write_may_never_take_effect() {
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "info", "write", json!(1), 1),
        (2, "invoke", "read", Value::Null, 2),
        (2, "ok", "read", Value::Null, 3),
    ]);
    assert_eq!(verdict(&h), Verdict::Valid);
}

#[test]
fn info_write_cannot_take_effect_before_its_invocation() {
    let h = history(&[
        (2, "invoke", "read", Value::Null, 0),
        (2, "ok", "read", json!(1), 1),
        (1, "invoke", "write", json!(1), 2),
        (1, "info", "write", json!(1), 3),
    ]);
    assert_eq!(verdict(&h), Verdict::Invalid);
}

#[test]
fn an_applied_info_write_cannot_be_undone() {
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "info", "write", json!(1), 1),
        (2, "invoke", "read", Value::Null, 2),
        (2, "ok", "read", json!(1), 3),
        (2, "invoke", "read", Value::Null, 4),
        (2, "ok", "read", Value::Null, 5),
    ]);
    assert_eq!(verdict(&h), Verdict::Invalid);
}

#[test]
fn open_invocation_at_the_end_is_info() {
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (2, "invoke", "read", Value::Null, 2),
        (2, "ok", "read", json!(1), 3),
    ]);
    assert_eq!(verdict(&h), Verdict::Valid);
}

/// write 1 ok, then cas [1 2] fails: the issue's minimal case.
fn write_then_failed_cas() -> History {
    history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "ok", "write", json!(1), 1),
        (2, "invoke", "cas", json!([1, 2]), 2),
        (2, "fail", "cas", json!([1, 2]), 3),
    ])
}

#[test]
fn a_failed_cas_marked_mismatch_means_the_value_was_not_expected() {
    // The register held 1 throughout the cas' window, yet it found
    // another value.
    let mut h = write_then_failed_cas();
    h.events[3].mismatch = true;
    assert_eq!(verdict(&h), Verdict::Invalid);
    // With a concurrent write of 3, it may have seen 3: valid.
    let mut h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "ok", "write", json!(1), 1),
        (2, "invoke", "cas", json!([1, 2]), 2),
        (3, "invoke", "write", json!(3), 3),
        (2, "fail", "cas", json!([1, 2]), 4),
        (3, "ok", "write", json!(3), 5),
    ]);
    h.events[4].mismatch = true;
    assert_eq!(verdict(&h), Verdict::Valid);
}

/// A fail means only "it did not happen" unless it says it compared: a
/// cas refused with 503 (never proposed), a connection refused, any
/// unmarked failure is dropped. (Regression: the bench recorded a 503 cas
/// as a plain `fail`, the checker read it as a mismatch and called a valid
/// power-loss run invalid.)
#[test]
fn an_unmarked_failed_cas_is_dropped() {
    let mut h = write_then_failed_cas();
    for error in [
        None,
        Some(format!("{NOT_PROPOSED}: 503 no leader")),
        Some("connection-refused".into()),
    ] {
        h.events[3].error = error;
        assert_eq!(verdict(&h), Verdict::Valid);
    }
}

/// Histories written before the `mismatch` field said so in the error.
#[test]
fn old_histories_mark_mismatches_by_their_error() {
    let mut h = write_then_failed_cas();
    for error in [
        "cas-mismatch: found Some(Int(1))",
        "cas-mismatch",
        "409 cas-mismatch expected 1, found 1",
    ] {
        h.events[3].error = Some(error.into());
        assert_eq!(verdict(&h), Verdict::Invalid, "{error}");
    }
}

#[test]
fn failed_cas_semantics_drop_and_mismatch() {
    let mut h = write_then_failed_cas();
    h.events[3].mismatch = true;
    let with = |failed_cas| Semantics {
        failed_cas,
        ..Semantics::default()
    };
    // Jepsen's and Knossos' reading: a fail only did not happen.
    assert_eq!(verdict_with(&h, with(FailedCas::Drop)), Verdict::Valid);
    // The stronger reading, marked or not.
    h.events[3].mismatch = false;
    assert_eq!(
        verdict_with(&h, with(FailedCas::Mismatch)),
        Verdict::Invalid
    );
    assert_eq!(verdict_with(&h, with(FailedCas::Marked)), Verdict::Valid);
}

#[test]
fn a_nil_read_matches_any_state_only_where_the_format_says_so() {
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "ok", "write", json!(1), 1),
        (2, "invoke", "read", Value::Null, 2),
        (2, "ok", "read", Value::Null, 3),
    ]);
    // Synod's histories: null is the value read (a lost write here).
    assert_eq!(verdict(&h), Verdict::Invalid);
    // Knossos: `(or (nil? (:value op)) (= value (:value op)))`.
    let any = Semantics {
        nil_read: NilRead::Any,
        ..Semantics::default()
    };
    assert_eq!(verdict_with(&h, any.clone()), Verdict::Valid);
    // A non-nil read is still compared.
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "ok", "write", json!(1), 1),
        (2, "invoke", "read", Value::Null, 2),
        (2, "ok", "read", json!(2), 3),
    ]);
    assert_eq!(verdict_with(&h, any), Verdict::Invalid);
}

#[test]
fn models_start_from_the_initial_value() {
    // A cas from 0 and a read of 0 before any write.
    let h = history(&[
        (1, "invoke", "read", Value::Null, 0),
        (1, "ok", "read", json!(0), 1),
        (1, "invoke", "cas", json!([0, 5]), 2),
        (1, "ok", "cas", json!([0, 5]), 3),
    ]);
    for model in [ModelKind::CasRegister, ModelKind::Kv, ModelKind::Auto] {
        let at = |initial: Value| Options {
            model,
            semantics: Semantics {
                initial,
                ..Semantics::default()
            },
            ..Options::default()
        };
        assert_eq!(
            check(&h, &at(Value::Null)).unwrap().verdict,
            Verdict::Invalid,
            "{model:?}"
        );
        assert_eq!(
            check(&h, &at(json!(0))).unwrap().verdict,
            Verdict::Valid,
            "{model:?}"
        );
    }
}

/// Regression: ties counted as concurrent missed this stale read. The
/// write's completion was recorded before the read's invocation, at the
/// same time: in Synod's histories the write precedes the read.
#[test]
fn equal_times_order_by_index_in_synods_histories() {
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "ok", "write", json!(1), 5),
        (2, "invoke", "read", Value::Null, 5),
        (2, "ok", "read", Value::Null, 6),
    ]);
    assert_eq!(verdict(&h), Verdict::Invalid);
    let concurrent = Semantics {
        ties: Ties::Concurrent,
        ..Semantics::default()
    };
    assert_eq!(verdict_with(&h, concurrent.clone()), Verdict::Valid);
    // The invocation recorded first: concurrent either way.
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (2, "invoke", "read", Value::Null, 5),
        (1, "ok", "write", json!(1), 5),
        (2, "ok", "read", Value::Null, 6),
    ]);
    assert_eq!(verdict(&h), Verdict::Valid);
    assert_eq!(verdict_with(&h, concurrent), Verdict::Valid);
}

#[test]
fn an_ok_write_without_a_value_takes_its_invocations() {
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "ok", "write", Value::Null, 1),
        (2, "invoke", "read", Value::Null, 2),
        (2, "ok", "read", json!(1), 3),
    ]);
    assert_eq!(verdict(&h), Verdict::Valid);
    // A value that contradicts the invocation is an error, not a verdict.
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "ok", "write", json!(2), 1),
    ]);
    match check(&h, &Options::default()) {
        Err(synod_checker::check::CheckError::Model(ModelError::BadOp { index, reason })) => {
            assert_eq!(index, 1);
            assert!(
                reason.contains("does not match its invocation's 1"),
                "{reason}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn a_history_without_client_operations_is_an_error() {
    let nemesis_only = History::validated(vec![Event {
        index: 0,
        time: 0,
        process: Process::Nemesis,
        kind: EventType::Info,
        f: Fun::Nemesis("start".into()),
        key: None,
        value: Value::Null,
        error: None,
        node: None,
        mismatch: false,
        not_proposed: false,
    }])
    .unwrap();
    for h in [History::default(), nemesis_only] {
        assert!(matches!(
            check(&h, &Options::default()),
            Err(synod_checker::check::CheckError::Model(
                ModelError::NoOperations
            ))
        ));
    }
}

#[test]
fn failed_reads_and_writes_are_dropped() {
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "fail", "write", json!(1), 1),
        (2, "invoke", "read", Value::Null, 2),
        (2, "fail", "read", json!(7), 3),
        (2, "invoke", "read", Value::Null, 4),
        (2, "ok", "read", Value::Null, 5),
    ]);
    assert_eq!(verdict(&h), Verdict::Valid);
}

#[test]
fn concurrent_windows_allow_either_order() {
    // A read concurrent with a write may see the old or the new value...
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (2, "invoke", "read", Value::Null, 1),
        (2, "ok", "read", Value::Null, 2),
        (3, "invoke", "read", Value::Null, 3),
        (3, "ok", "read", json!(1), 4),
        (1, "ok", "write", json!(1), 10),
    ]);
    assert_eq!(verdict(&h), Verdict::Valid);
    // ...but once a later read saw the new value, an even later one cannot
    // see the old.
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (2, "invoke", "read", Value::Null, 1),
        (2, "ok", "read", json!(1), 2),
        (3, "invoke", "read", Value::Null, 3),
        (3, "ok", "read", Value::Null, 4),
        (1, "ok", "write", json!(1), 10),
    ]);
    assert_eq!(verdict(&h), Verdict::Invalid);
}

#[test]
fn stale_read_is_invalid() {
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "ok", "write", json!(1), 1),
        (1, "invoke", "write", json!(2), 2),
        (1, "ok", "write", json!(2), 3),
        (2, "invoke", "read", Value::Null, 4),
        (2, "ok", "read", json!(1), 5),
    ]);
    let checked = check(&h, &Options::default()).unwrap();
    assert_eq!(checked.verdict, Verdict::Invalid);
    let e = &checked.explanations[0];
    assert_eq!(e.failing.description, "read -> 1");
    assert_eq!(e.prefix.len(), 2, "both writes linearize before the read");
    assert_eq!(e.state_after_prefix, "2");
}

#[test]
fn lost_acknowledged_write_is_invalid() {
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "ok", "write", json!(1), 1),
        (2, "invoke", "read", Value::Null, 2),
        (2, "ok", "read", Value::Null, 3),
    ]);
    assert_eq!(verdict(&h), Verdict::Invalid);
}

#[test]
fn cas_applied_twice_is_invalid() {
    // One cas 0->1 acknowledged; a write of 0 later, and the register is 1
    // again without any other op that could set it.
    let h = history(&[
        (1, "invoke", "write", json!(0), 0),
        (1, "ok", "write", json!(0), 1),
        (1, "invoke", "cas", json!([0, 1]), 2),
        (1, "ok", "cas", json!([0, 1]), 3),
        (2, "invoke", "read", Value::Null, 4),
        (2, "ok", "read", json!(1), 5),
        (2, "invoke", "write", json!(0), 6),
        (2, "ok", "write", json!(0), 7),
        (2, "invoke", "read", Value::Null, 8),
        (2, "ok", "read", json!(1), 9),
    ]);
    assert_eq!(verdict(&h), Verdict::Invalid);
}

#[test]
fn kv_model_appends_and_keys_are_independent() {
    let mut events = Vec::new();
    let mut ev = |p: u64, kind: EventType, f: Fun, key: &str, value: Value| {
        events.push(Event {
            index: events.len() as u64,
            time: events.len() as u64,
            process: Process::Client(p),
            kind,
            f,
            key: Some(key.into()),
            value,
            error: None,
            node: None,
            mismatch: false,
            not_proposed: false,
        })
    };
    ev(1, EventType::Invoke, Fun::Append, "a", json!("x"));
    ev(1, EventType::Ok, Fun::Append, "a", json!("x"));
    ev(1, EventType::Invoke, Fun::Append, "a", json!("y"));
    ev(1, EventType::Ok, Fun::Append, "a", json!("y"));
    ev(2, EventType::Invoke, Fun::Read, "b", Value::Null);
    ev(2, EventType::Ok, Fun::Read, "b", json!(""));
    ev(2, EventType::Invoke, Fun::Read, "a", Value::Null);
    ev(2, EventType::Ok, Fun::Read, "a", json!("xy"));
    let h = History::validated(events).unwrap();
    let opts = Options {
        model: ModelKind::Kv,
        semantics: Semantics {
            initial: json!(""),
            ..Semantics::default()
        },
        ..Options::default()
    };
    let checked = check(&h, &opts).unwrap();
    assert_eq!(checked.verdict, Verdict::Valid);
    assert_eq!(checked.keys.len(), 2);
    // With the null initial value, key b's read of "" is impossible.
    let opts = Options {
        model: ModelKind::Kv,
        ..Options::default()
    };
    let checked = check(&h, &opts).unwrap();
    assert_eq!(checked.invalid_keys, vec!["b".to_string()]);
}

#[test]
fn append_under_the_cas_register_model_is_an_error() {
    let h = History::validated(vec![Event {
        index: 0,
        time: 0,
        process: Process::Client(1),
        kind: EventType::Invoke,
        f: Fun::Append,
        key: None,
        value: json!("x"),
        error: None,
        node: None,
        mismatch: false,
        not_proposed: false,
    }])
    .unwrap();
    let opts = Options {
        model: ModelKind::CasRegister,
        ..Options::default()
    };
    assert!(check(&h, &opts).is_err());
}

fn big_history() -> History {
    simulate(&GenConfig {
        seed: 7,
        keys: 3,
        processes_per_key: 8,
        ops: 9000,
        ..GenConfig::default()
    })
}

#[test]
fn time_limit_gives_unknown_naming_the_keys() {
    let opts = Options {
        time_limit: Some(Duration::from_nanos(1)),
        ..Options::default()
    };
    let checked = check(&big_history(), &opts).unwrap();
    assert_eq!(checked.verdict, Verdict::Unknown);
    assert_eq!(checked.unknown_keys, vec!["k0", "k1", "k2"]);
    assert!(checked
        .keys
        .iter()
        .all(|k| k.reason.as_deref() == Some("time limit")));
}

#[test]
fn memory_limit_gives_unknown_naming_the_keys() {
    let opts = Options {
        memory_limit: Some(1),
        ..Options::default()
    };
    let checked = check(&big_history(), &opts).unwrap();
    assert_eq!(checked.verdict, Verdict::Unknown);
    assert_eq!(checked.unknown_keys.len(), 3);
    assert!(checked
        .keys
        .iter()
        .all(|k| k.reason.as_deref() == Some("memory limit")));
    // Without limits the same history is valid: unknown was not a guess.
    assert_eq!(
        check(&big_history(), &Options::default()).unwrap().verdict,
        Verdict::Valid
    );
}

#[test]
fn absurd_times_do_not_blow_up_the_report() {
    let h = history(&[
        (1, "invoke", "write", json!(1), 0),
        (1, "ok", "write", json!(1), u64::MAX / 2),
    ]);
    let r = synod_checker::report::report(&h);
    assert!(r.seconds.len() <= 100_001);
    let checked = check(&h, &Options::default()).unwrap();
    assert!(synod_checker::html::report_page("t", &checked, &r).contains("valid"));
}

/// `jepsen.independent` tuples in a Jepsen `history.edn` are keys: two
/// registers, each linearizable on its own, that as one register would
/// not be (a read of 1 after a write of 2 completed, on the other key).
#[test]
fn jepsen_independent_tuples_are_judged_per_key() {
    use synod_checker::import::{read_str, Format};
    let text = r#"[{:type :invoke, :f :write, :value [:a 1], :process 0, :time 10, :index 0}
 {:type :ok, :f :write, :value [:a 1], :process 0, :time 20, :index 1}
 {:type :invoke, :f :write, :value [:b 2], :process 1, :time 30, :index 2}
 {:type :ok, :f :write, :value [:b 2], :process 1, :time 40, :index 3}
 {:type :invoke, :f :read, :value [:a nil], :process 0, :time 50, :index 4}
 {:type :ok, :f :read, :value [:a 1], :process 0, :time 60, :index 5}]"#;
    let imported = read_str(text, Format::Auto).unwrap();
    assert_eq!(imported.format, Format::JepsenEdn);
    let keys: std::collections::BTreeSet<&str> =
        imported.history.events.iter().map(|e| e.key()).collect();
    assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(
        verdict_with(&imported.history, imported.semantics),
        Verdict::Valid
    );
    // The same ops without tuples are one register: the read of 1 after
    // the write of 2 completed is stale.
    let one = text
        .replace("[:a ", "")
        .replace("[:b ", "")
        .replace("1]", "1")
        .replace("2]", "2")
        .replace("nil]", "nil");
    let imported = read_str(&one, Format::Auto).unwrap();
    assert!(
        imported.history.events.iter().all(|e| e.key.is_none()),
        "{one}"
    );
    assert_eq!(
        verdict_with(&imported.history, imported.semantics),
        Verdict::Invalid,
        "{one}"
    );
}
