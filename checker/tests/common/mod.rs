//! What the tests and the bench share: where the Porcupine corpus is.

use std::path::PathBuf;

/// The corpus in the repository (`tests/data/porcupine`); panics without
/// it, so a test or bench whose data is missing fails instead of skipping.
pub fn corpus() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine");
    assert!(
        dir.join("expected.tsv").exists(),
        "the Porcupine corpus is missing from {}",
        dir.display()
    );
    dir
}
