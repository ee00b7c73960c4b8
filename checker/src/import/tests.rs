//! Unit tests of the importers: guessing, each format's reader, the
//! normalisation rules and each format's semantics.

use super::*;
use crate::history::{EventType, Fun, Process};

#[test]
fn guesses_each_format() {
    assert_eq!(
        guess_format("INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"),
        Format::JepsenLog
    );
    assert_eq!(guess_format("{:process 0, :type :invoke}\n"), Format::Edn);
    assert_eq!(guess_format("[{:process 0}]"), Format::JepsenEdn);
    assert_eq!(guess_format("{\"index\":0}\n"), Format::Jsonl);
    assert_eq!(guess_format("3 :invoke :read nil\n"), Format::JepsenLog);
}

#[test]
fn jepsen_log_with_tabs_or_spaces_and_info_reasons() {
    let text = "INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]\n\
                    INFO  jepsen.util - 1   :info   :cas    :timed-out\n\
                    INFO  jepsen.util - 1\t:invoke\t:read\tnil\n\
                    INFO  jepsen.util - 1\t:ok\t:read\t3\n";
    let imp = read_str(text, Format::Auto).unwrap();
    let ev = &imp.history.events;
    assert_eq!(ev.len(), 4);
    assert_eq!(ev[1].kind, EventType::Info);
    assert_eq!(ev[1].value, serde_json::json!([1, 2]));
    assert_eq!(ev[1].error.as_deref(), Some("timed-out"));
    // The process went on after its info: it must be a fresh id.
    assert_eq!(ev[0].process, Process::Client(1));
    assert_eq!(ev[2].process, Process::Client(2));
    assert_eq!(ev[3].value, serde_json::json!(3));
}

#[test]
fn porcupine_kv_maps_get_put_and_reads_empty_initial() {
    let text = "{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n\
                    {:process 0, :type :ok, :f :get, :key \"1\", :value \"\"}\n";
    let imp = read_str(text, Format::Auto).unwrap();
    assert_eq!(imp.format, Format::Edn);
    assert_eq!(imp.semantics.initial, Value::String(String::new()));
    assert_eq!(imp.history.events[0].f, Fun::Read);
    assert_eq!(imp.history.events[0].key.as_deref(), Some("1"));
}

#[test]
fn jepsen_edn_vector_with_times_and_nemesis() {
    let text = "[{:process 0, :type :invoke, :f :write, :value 1, :time 10}\n\
                     {:process :nemesis, :type :info, :f :start-partition, :value nil, :time 15}\n\
                     {:process 0, :type :ok, :f :write, :value 1, :time 20}]";
    let imp = read_str(text, Format::Auto).unwrap();
    assert_eq!(imp.format, Format::JepsenEdn);
    assert_eq!(imp.semantics.initial, Value::Null);
    let ev = &imp.history.events;
    assert_eq!(ev[1].process, Process::Nemesis);
    assert_eq!(ev[2].time, 20);
}

#[test]
fn completion_without_invoke_names_the_line() {
    let err = read_str("INFO  jepsen.util - 1\t:ok\t:read\t3\n", Format::Auto).unwrap_err();
    assert!(err.in_file("h.log").starts_with("h.log:1: "), "{err}");
    let err = read_str("{:process 0, :type :invoke, :f :frob}\n", Format::Edn).unwrap_err();
    assert!(
        err.to_string().contains("unknown client operation"),
        "{err}"
    );
}

/// Today's Jepsen writes `jepsen.util: N` after a timestamp and a
/// thread; such a log read as empty and came out valid.
#[test]
fn todays_jepsen_log_lines_after_other_output() {
    let text = "2021-02-26 23:39:00,001{GMT}\tINFO\t[main] jepsen.core: Running test\n\
                    2021-02-26 23:39:01,200{GMT}\tINFO\t[jepsen worker 1] jepsen.util: 1\t:invoke\t:write\t2\n\
                    2021-02-26 23:39:01,201{GMT}\tINFO\t[jepsen worker 1] jepsen.util: 1\t:ok\t:write\t2\n\
                    2021-02-26 23:39:01,300{GMT}\tINFO\t[jepsen nemesis] jepsen.util: :nemesis\t:info\t:start\tnil\n\
                    2021-02-26 23:39:01,301{GMT}\tINFO\t[jepsen worker 1] jepsen.util: Waiting for workers\n";
    assert_eq!(guess_format(text), Format::JepsenLog);
    let imp = read_str(text, Format::Auto).unwrap();
    let ev = &imp.history.events;
    assert_eq!(ev.len(), 3);
    assert_eq!(
        (ev[0].kind, ev[0].value.clone()),
        (EventType::Invoke, serde_json::json!(2))
    );
    assert_eq!(ev[2].process, Process::Nemesis);
    // Source lines are kept for errors.
    assert_eq!(imp.line_of(0), 2);
}

#[test]
fn a_jepsen_log_without_operations_or_cut_mid_line_is_an_error() {
    for text in ["", "hello\nworld\n", "INFO  jepsen.core - Running\n"] {
        let err = read_str(text, Format::JepsenLog).unwrap_err();
        assert!(
            err.to_string().contains("not a Jepsen log"),
            "{text:?}: {err}"
        );
    }
    let err = read_str(
        "INFO  jepsen.util - 1\t:invoke\t:write\t12\nINFO  jepsen.util - 1\t:ok\t:write\t1",
        Format::JepsenLog,
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("line 2: ") && err.to_string().contains("cut off"),
        "{err}"
    );
    // A marker line that looks like an op must be one.
    let err = read_str(
        "INFO  jepsen.util - 1\t:invok\t:write\t1\n",
        Format::JepsenLog,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown type"), "{err}");
}

#[test]
fn jepsen_independent_tuples_are_keys() {
    let text = "INFO  jepsen.util - 0\t:invoke\t:write\t[0 1]\n\
                    INFO  jepsen.util - 0\t:ok\t:write\t[0 1]\n\
                    INFO  jepsen.util - 1\t:invoke\t:read\t[1 nil]\n\
                    INFO  jepsen.util - 1\t:ok\t:read\t[1 nil]\n\
                    INFO  jepsen.util - 1\t:invoke\t:cas\t[0 [1 2]]\n\
                    INFO  jepsen.util - 1\t:info\t:cas\t:timed-out\n";
    let imp = read_str(text, Format::Auto).unwrap();
    let ev = &imp.history.events;
    assert_eq!(ev[0].key.as_deref(), Some("0"));
    assert_eq!(ev[0].value, serde_json::json!(1));
    assert_eq!(ev[3].key.as_deref(), Some("1"));
    assert_eq!(ev[3].value, Value::Null);
    assert_eq!(ev[5].key.as_deref(), Some("0"));
    assert_eq!(ev[5].value, serde_json::json!([1, 2]));
    // A plain register's cas [1 2] is no tuple: reads invoke with nil.
    let plain = read_str(
        "INFO  jepsen.util - 0\t:invoke\t:cas\t[1 2]\nINFO  jepsen.util - 0\t:fail\t:cas\t[1 2]\n\
             INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:read\t1\n",
        Format::Auto,
    )
    .unwrap();
    assert!(plain.history.events.iter().all(|e| e.key.is_none()));
    // A completion whose tuple names another key is an error.
    let err = read_str(
            "INFO  jepsen.util - 0\t:invoke\t:write\t[0 1]\nINFO  jepsen.util - 0\t:ok\t:write\t[1 1]\n",
            Format::Auto,
        )
        .unwrap_err();
    assert!(err.to_string().starts_with("line 2: "), "{err}");
}

#[test]
fn each_format_has_its_semantics() {
    let jsonl = Format::Jsonl.semantics();
    assert_eq!(
        (jsonl.failed_cas, jsonl.nil_read, jsonl.ties),
        (FailedCas::Marked, NilRead::Value, Ties::Ordered)
    );
    for f in [Format::JepsenLog, Format::JepsenEdn] {
        let s = f.semantics();
        assert_eq!(
            (s.failed_cas, s.nil_read, s.ties),
            (FailedCas::Drop, NilRead::Any, Ties::Ordered),
            "{f}"
        );
    }
    let edn = Format::Edn.semantics();
    assert_eq!(
        (edn.failed_cas, edn.nil_read, edn.ties),
        (FailedCas::Drop, NilRead::Value, Ties::Concurrent)
    );
}

#[test]
fn edn_times_that_go_backwards_are_an_error_unless_ordered() {
    let lines = "{:process 0, :type :invoke, :f :write, :value 1, :time 10}\n\
                     {:process 0, :type :ok, :f :write, :value 1, :time 5}\n";
    let err = read_str(lines, Format::Edn).unwrap_err();
    assert!(
        err.to_string().starts_with("line 2: time goes backwards"),
        "{err}"
    );
    // Jepsen's history order is the order it observed: clamped.
    let imp = read_str(lines, Format::JepsenEdn).unwrap();
    assert_eq!(imp.history.events[1].time, 10);
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let imp = read_str(
        "\u{feff}{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n",
        Format::Auto,
    )
    .unwrap();
    assert_eq!(imp.format, Format::Edn);
    let imp = read_str(
        "\u{feff}{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n",
        Format::Auto,
    )
    .unwrap();
    assert_eq!(imp.format, Format::Jsonl);
}

#[test]
fn errors_name_the_guessed_format() {
    let dir = std::env::temp_dir().join(format!("synod-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h.txt");
    std::fs::write(
        &path,
        "{:process 0, :type :ok, :f :get, :key \"1\", :value nil}\n",
    )
    .unwrap();
    let err = open(&path, Format::Auto).err().unwrap().to_string();
    assert!(
        err.contains("(read as edn, guessed from the content; --format chooses another)"),
        "{err}"
    );
    std::fs::write(&path, "{\"index\":0}\n").unwrap();
    let input = open(&path, Format::Jsonl).unwrap();
    let err = input.events(|_| Ok(())).unwrap_err().to_string();
    assert!(err.ends_with("(read as jsonl)"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks `text` as its format says (and `failed_cas`, if given).
fn check_as_read(text: &str, failed_cas: Option<FailedCas>) -> crate::Checked {
    let imp = read_str(text, Format::Auto).unwrap();
    let mut options = crate::Options {
        semantics: imp.semantics.clone(),
        ..crate::Options::default()
    };
    if let Some(f) = failed_cas {
        options.semantics.failed_cas = f;
    }
    crate::check(&imp.history, &options).unwrap()
}

/// Regression: without appends the auto model is `cas-register`, which
/// started at `null`, so a `get` of a missing key (`""`) was invalid.
#[test]
fn porcupine_get_put_starts_from_empty_under_the_auto_model() {
    let text = "{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n\
                    {:process 0, :type :ok, :f :get, :key \"1\", :value \"\"}\n\
                    {:process 0, :type :invoke, :f :put, :key \"1\", :value \"x\"}\n\
                    {:process 0, :type :ok, :f :put, :key \"1\", :value \"x\"}\n\
                    {:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n\
                    {:process 0, :type :ok, :f :get, :key \"1\", :value \"x\"}\n";
    let checked = check_as_read(text, None);
    assert_eq!(
        (checked.model.as_str(), checked.verdict),
        ("cas-register", crate::Verdict::Valid)
    );
}

/// The minimal case, in Jepsen's own format: Knossos says
/// valid, and so must the checker, unless told the stronger reading.
/// Ties end to end, per format: a write that completes at the time a
/// read is invoked, recorded first. Porcupine's EDN keeps them
/// concurrent (its times are its own clock's, its line order is not an
/// order of observation), so the read may see the value before it;
/// Jepsen's history.edn is the order Jepsen observed, so the write
/// precedes the read and a read of the old value is stale.
#[test]
fn ties_are_concurrent_in_porcupine_edn_and_ordered_in_jepsen_histories() {
    let porcupine = "{:process 0, :type :invoke, :f :put, :key \"1\", :value \"x\", :time 0}\n\
                         {:process 0, :type :ok, :f :put, :key \"1\", :value \"x\", :time 5}\n\
                         {:process 1, :type :invoke, :f :put, :key \"1\", :value \"y\", :time 6}\n\
                         {:process 1, :type :ok, :f :put, :key \"1\", :value \"y\", :time 9}\n\
                         {:process 2, :type :invoke, :f :get, :key \"1\", :value nil, :time 9}\n\
                         {:process 2, :type :ok, :f :get, :key \"1\", :value \"x\", :time 10}\n";
    assert_eq!(
        read_str(porcupine, Format::Auto).unwrap().format,
        Format::Edn
    );
    assert_eq!(
        check_as_read(porcupine, None).verdict,
        crate::Verdict::Valid
    );
    // One tick later the read follows the write in any reading.
    let later = porcupine.replace(":value nil, :time 9}", ":value nil, :time 10}");
    assert_eq!(check_as_read(&later, None).verdict, crate::Verdict::Invalid);

    let jepsen = "[{:process 0, :type :invoke, :f :write, :value 1, :time 0, :index 0}\n\
                      {:process 0, :type :ok, :f :write, :value 1, :time 5, :index 1}\n\
                      {:process 1, :type :invoke, :f :write, :value 2, :time 6, :index 2}\n\
                      {:process 1, :type :ok, :f :write, :value 2, :time 9, :index 3}\n\
                      {:process 2, :type :invoke, :f :read, :value nil, :time 9, :index 4}\n\
                      {:process 2, :type :ok, :f :read, :value 1, :time 10, :index 5}]\n";
    assert_eq!(
        read_str(jepsen, Format::Auto).unwrap().format,
        Format::JepsenEdn
    );
    assert_eq!(check_as_read(jepsen, None).verdict, crate::Verdict::Invalid);
    // Recorded the other way round (the read invoked first), the two
    // overlap and the read may come first.
    let swapped = "[{:process 0, :type :invoke, :f :write, :value 1, :time 0, :index 0}\n\
                       {:process 0, :type :ok, :f :write, :value 1, :time 5, :index 1}\n\
                       {:process 1, :type :invoke, :f :write, :value 2, :time 6, :index 2}\n\
                       {:process 2, :type :invoke, :f :read, :value nil, :time 9, :index 3}\n\
                       {:process 1, :type :ok, :f :write, :value 2, :time 9, :index 4}\n\
                       {:process 2, :type :ok, :f :read, :value 1, :time 10, :index 5}]\n";
    assert_eq!(check_as_read(swapped, None).verdict, crate::Verdict::Valid);
}

#[test]
fn a_jepsen_fail_only_says_it_did_not_happen() {
    let text = "[{:process 0, :type :invoke, :f :write, :value 1}\n\
                     {:process 0, :type :ok, :f :write, :value 1}\n\
                     {:process 1, :type :invoke, :f :cas, :value [1 2]}\n\
                     {:process 1, :type :fail, :f :cas, :value [1 2], :error :connection-refused}\n\
                     {:process 1, :type :invoke, :f :read, :value nil}\n\
                     {:process 1, :type :ok, :f :read, :value nil}]\n";
    assert_eq!(check_as_read(text, None).verdict, crate::Verdict::Valid);
    let stronger = check_as_read(text, Some(FailedCas::Mismatch));
    assert_eq!(stronger.verdict, crate::Verdict::Invalid);
}
