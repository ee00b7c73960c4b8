//! The binaries the suite tests run: `synod` itself, and the fake node
//! `cargo test` builds from `examples/fake_node.rs`.

use std::path::PathBuf;

pub fn synod_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_synod"))
}

/// The fake node; a test fails (not skips) when it is not built, since a
/// build step missing is not a facility the machine lacks.
pub fn fake_node() -> PathBuf {
    let p = synod_bin()
        .parent()
        .expect("the binary has a directory")
        .join("examples")
        .join("fake_node");
    assert!(
        p.is_file(),
        "the fake node is not built at {} (cargo build -p synod-bench --examples, or run \
         `cargo test -p synod-bench` without a --test filter)",
        p.display()
    );
    p
}
