//! Property tests: simulated linearizable histories are judged valid, and
//! one impossible read makes them invalid; random bytes never panic a reader.

use proptest::prelude::*;
use serde_json::json;
use synod_checker::gen::{simulate, GenConfig};
use synod_checker::history::{EventType, Fun, HistoryReader};
use synod_checker::import::{read_str, Format};
use synod_checker::{check, Options, Verdict};

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
fn limited() -> Options {
    Options {
        time_limit: Some(std::time::Duration::from_millis(200)),
        ..Options::default()
    }
}

/// Everything a history goes through in `synod check`, minus the files.
fn judge_and_render(h: &synod_checker::History) {
    if let Ok(checked) = check(h, &limited()) {
        let report = synod_checker::report::report(h);
        let _ = synod_checker::html::report_page("fuzz", &checked, &report);
        let _ = synod_checker::html::explanation_page("fuzz", &checked.explanations);
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

    #[test]
    fn random_bytes_never_panic_a_reader(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        for format in [Format::Auto, Format::Jsonl, Format::JepsenLog, Format::Edn, Format::JepsenEdn] {
            if let Ok(imported) = read_str(&text, format) {
                judge_and_render(&imported.history);
            }
        }
        let _ = HistoryReader::new(&bytes[..]).count();
        let _ = synod_checker::edn::parse_all(&text);
    }

    #[test]
    fn mangled_histories_never_panic(cfg in config(), cut in any::<prop::sample::Index>(), noise in any::<u8>()) {
        // Valid text with one byte changed: near-misses reach deeper code
        // than random bytes do.
        let h = simulate(&cfg);
        let mut out = Vec::new();
        h.write_to(&mut out).unwrap();
        if !out.is_empty() {
            let i = cut.index(out.len());
            out[i] = noise;
        }
        let text = String::from_utf8_lossy(&out);
        if let Ok(imported) = read_str(&text, Format::Auto) {
            judge_and_render(&imported.history);
        }
        let edn = text.replace('"', "").replace("{", "{:").replace(':', " :");
        let _ = read_str(&edn, Format::Edn);
        let log: String = text.lines().map(|l| format!("INFO  jepsen.util - {l}\n")).collect();
        let _ = read_str(&log, Format::JepsenLog);
    }
}
