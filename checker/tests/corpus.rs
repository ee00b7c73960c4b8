//! Every history of Porcupine's corpus gets the verdict it is known to have.

use std::path::PathBuf;

use synod_checker::import::{read_file, Format};
use synod_checker::{check, Options, Verdict};

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/porcupine");
    if dir.join("expected.tsv").exists() {
        Some(dir)
    } else {
        println!("skipping: no corpus at {}", dir.display());
        None
    }
}

#[test]
fn every_corpus_file_gets_its_expected_verdict() {
    let Some(dir) = corpus() else { return };
    let tsv = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in tsv.lines().skip(1) {
        let Some((file, expected)) = line.split_once('\t') else {
            continue;
        };
        let path = dir.join(file);
        if std::fs::metadata(&path)
            .map(|m| m.len() == 0)
            .unwrap_or(false)
        {
            println!("skipping empty {file}");
            continue;
        }
        let imported = read_file(&path, Format::Auto).unwrap_or_else(|e| panic!("{file}: {e}"));
        let options = Options {
            initial: imported.initial.clone(),
            ..Options::default()
        };

        let result = check(&imported.history, &options).unwrap();
        let want = match expected {
            "linearizable" => Verdict::Valid,
            "not-linearizable" => Verdict::Invalid,
            other => panic!("unknown expectation {other}"),
        };
        if result.verdict != want {
            wrong.push(format!("{file}: got {:?}, want {want:?}", result.verdict));
        }
        if want == Verdict::Invalid {
            assert!(!result.explanations.is_empty(), "{file}: no explanation");
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(checked, 108, "every non-empty corpus file is checked");
}
