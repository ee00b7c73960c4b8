//! `check_and_report` end to end: the files a run directory gets.

use serde_json::{json, Value};
use synod_checker::history::{Event, EventType, Fun, History, Process};
use synod_checker::{check_and_report, check_and_report_with, Options, Section, Verdict};

fn ev(time: u64, process: Process, kind: EventType, f: Fun, value: Value) -> Event {
    Event {
        index: 0,
        time,
        process,
        kind,
        f,
        key: Some("k".into()),
        value,
        error: None,
        node: None,
        mismatch: false,
        not_proposed: false,
    }
}

fn numbered(mut events: Vec<Event>) -> History {
    for (i, e) in events.iter_mut().enumerate() {
        e.index = i as u64;
        if e.process == Process::Nemesis {
            e.key = None;
        }
    }
    History::validated(events).unwrap()
}

#[test]
fn an_invalid_run_gets_results_report_and_explanation() {
    let s = 1_000_000_000;
    let c = Process::Client;
    let h = numbered(vec![
        ev(0, c(1), EventType::Invoke, Fun::Write, json!(1)),
        ev(s / 2, c(1), EventType::Ok, Fun::Write, json!(1)),
        ev(
            s,
            Process::Nemesis,
            EventType::Info,
            Fun::Nemesis("start-partition".into()),
            json!({"isolated": ["n1"]}),
        ),
        ev(s + 1, c(2), EventType::Invoke, Fun::Read, Value::Null),
        ev(2 * s, c(2), EventType::Ok, Fun::Read, json!(2)),
        ev(
            3 * s,
            Process::Nemesis,
            EventType::Info,
            Fun::Nemesis("stop-partition".into()),
            Value::Null,
        ),
        ev(3 * s + 5, c(2), EventType::Invoke, Fun::Read, Value::Null),
        ev(4 * s, c(2), EventType::Ok, Fun::Read, json!(1)),
    ]);
    let dir = std::env::temp_dir().join(format!("synod-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = check_and_report(&h, &Options::default(), &dir).unwrap();
    assert_eq!(outcome.verdict(), Verdict::Invalid);
    assert_eq!(outcome.exit_code(), 1);
    assert!(
        outcome.summary().contains("read -> 2"),
        "{}",
        outcome.summary()
    );

    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["verdict"], "invalid");
    assert_eq!(results["check"]["invalid_keys"], json!(["k"]));
    assert_eq!(
        results["explanations"][0]["failing"]["description"],
        "read -> 2"
    );
    assert_eq!(results["report"]["faults"][0]["name"], "partition");
    assert_eq!(results["report"]["faults"][0]["recovery"], json!(s));
    // Down-time from the fault's start (1 s) to the first ok (2 s); no
    // election timeout was given, so no figure in its units.
    assert_eq!(
        results["report"]["faults"][0]["downtime"],
        json!({"ms": 1000.0, "resumed": true, "longest_gap_ms": 1000.0})
    );
    let summary = outcome.summary();
    assert!(
        summary.contains("fault partition at 1.000 s: down 1000.0 ms, longest gap 1000.0 ms"),
        "{summary}"
    );
    assert!(summary.contains("worst down-time"), "{summary}");
    // The same file through its one type, as every reader reads it.
    let text = std::fs::read_to_string(dir.join("results.json")).unwrap();
    let typed = synod_checker::Results::<Value>::from_json(&text).unwrap();
    let judgement = typed.judgement.expect("a judged history");
    assert_eq!(judgement.check.invalid_keys, vec!["k".to_string()]);
    assert_eq!(judgement.report.faults[0].recovery, Some(s));
    assert!(typed.run.is_none() && typed.note.is_none());

    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(report.contains("<svg") && report.contains("partition"));
    assert!(report.contains("down-time from start") && report.contains("<td>1000.0 ms</td>"));
    assert!(!report.contains("plot unavailable"));
    let explanation = std::fs::read_to_string(dir.join("explanation.html")).unwrap();
    assert!(explanation.contains("process 2") && explanation.contains("state: null -&gt; 1"));
    assert!(dir.join("latency-read-ok.hgrm").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_callers_sections_land_in_the_report_escaped() {
    let c = Process::Client;
    let h = numbered(vec![
        ev(0, c(1), EventType::Invoke, Fun::Write, json!(1)),
        ev(10, c(1), EventType::Ok, Fun::Write, json!(1)),
    ]);
    let dir = std::env::temp_dir().join(format!("synod-pipeline-sections-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let section = Section {
        heading: "Peer messages".into(),
        text: "3.00 per op <all nodes>".into(),
        header: vec!["type".into(), "sent".into()],
        rows: vec![vec!["accept".into(), "12".into()]],
    };
    let outcome = check_and_report_with(&h, &Options::default(), &dir, &[section]).unwrap();
    assert_eq!(outcome.verdict(), Verdict::Valid);
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(report.contains("<h2>Peer messages</h2>"), "{report}");
    assert!(report.contains("3.00 per op &lt;all nodes&gt;"), "{report}");
    assert!(report.contains("<td>accept</td><td>12</td>"), "{report}");
    // Without sections the page has none of it.
    check_and_report(&h, &Options::default(), &dir).unwrap();
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(!report.contains("Peer messages"));
    let _ = std::fs::remove_dir_all(&dir);
}
