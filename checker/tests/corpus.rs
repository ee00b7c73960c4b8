//! Every history of Porcupine's corpus (in `tests/data/porcupine`, with its
//! licence) gets the verdict it is known to have: read as its format says
//! (Jepsen's meaning of a fail and of a `nil` read, Porcupine's `""` for a
//! missing key), and again under the stronger reading of a failed cas,
//! which Porcupine's own etcd model uses. A missing corpus fails the test.

mod common;

use std::path::Path;

use common::corpus;

use synod_checker::check::CheckError;
use synod_checker::import::{read_file, Format};
use synod_checker::model::ModelError;
use synod_checker::{check, FailedCas, Options, Verdict};

/// The verdict of one file, or `None` if it is refused as no history.
fn verdict(path: &Path, failed_cas: Option<FailedCas>) -> Option<Verdict> {
    let imported =
        read_file(path, Format::Auto).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut options = Options {
        semantics: imported.semantics.clone(),
        ..Options::default()
    };
    if let Some(f) = failed_cas {
        options.semantics.failed_cas = f;
    }
    match check(&imported.history, &options) {
        Ok(c) => {
            if c.verdict == Verdict::Invalid {
                assert!(
                    !c.explanations.is_empty(),
                    "{}: no explanation",
                    path.display()
                );
            }
            Some(c.verdict)
        }
        Err(CheckError::Model(ModelError::NoOperations)) => None,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

#[test]
fn every_corpus_file_gets_its_expected_verdict() {
    let dir = corpus();
    let tsv = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in tsv.lines().skip(1) {
        let Some((file, expected)) = line.split_once('\t') else {
            continue;
        };
        let path = dir.join(file);
        let want = match expected {
            "linearizable" => Some(Verdict::Valid),
            "not-linearizable" => Some(Verdict::Invalid),
            // etcd_095.log is empty: the cluster never started.
            "skip" => None,
            other => panic!("unknown expectation {other}"),
        };
        let readings: &[Option<FailedCas>] = if file.starts_with("jepsen/") {
            &[None, Some(FailedCas::Mismatch)]
        } else {
            &[None]
        };
        for &reading in readings {
            let got = match want {
                None => {
                    let err = read_file(&path, Format::Auto).err();
                    let refused = err.is_some() || verdict(&path, reading).is_none();
                    (!refused).then_some(Verdict::Valid)
                }
                Some(_) => verdict(&path, reading),
            };
            if got != want {
                wrong.push(format!("{file} ({reading:?}): got {got:?}, want {want:?}"));
            }
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(checked, 109, "every corpus file is checked");
}
