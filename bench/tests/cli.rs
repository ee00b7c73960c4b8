//! Bad input to the built `synod` binary: a clear message and exit 3,
//! never a panic.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

fn synod(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synod"));
    cmd.args(args).env_remove("SYNOD_NODE_BIN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("cannot run synod")
}

fn store() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "synod-cli-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_clear_failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit status; stderr:\n{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");
}

#[test]
fn unknown_flag_is_rejected() {
    let out = synod(&["run", "--frobnicate"], &[]);
    assert_clear_failure(&out, "--frobnicate");
}

#[test]
fn unknown_fault_name_is_rejected_with_the_known_ones() {
    let out = synod(&["run", "--nemesis", "partition,earthquake"], &[]);
    assert_clear_failure(&out, "unknown fault \"earthquake\"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("power-loss"));
}

#[test]
fn unknown_fault_shape_is_rejected_with_the_known_ones() {
    let out = synod(&["run", "--nemesis", "partition:sideways"], &[]);
    assert_clear_failure(&out, "partition has no shape \"sideways\"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("isolate-leader"));
    let out = synod(&["run", "--nemesis", "clock:slow-leader+clock"], &[]);
    assert_clear_failure(&out, "clock twice in one step");
}

#[test]
fn a_shape_the_cluster_is_too_small_for_is_refused_before_the_run() {
    let s = store();
    let store_arg = s.to_str().unwrap();
    for (nodes, nemesis, needle) in [
        (
            "3",
            "partition:quorum-loss",
            "needs at least 4 nodes, the cluster has 3",
        ),
        ("3", "pause,partition:constrained", "needs at least 4 nodes"),
        ("2", "flap+partition:chained", "needs at least 3 nodes"),
    ] {
        let out = synod(
            &[
                "run",
                "--store",
                store_arg,
                "--nodes",
                nodes,
                "--nemesis",
                nemesis,
            ],
            &[],
        );
        assert_clear_failure(&out, needle);
    }
    // Refused before anything started: no run directory.
    assert!(!s.join("default").exists(), "a run directory was made");
    let out = synod(&["run", "--nemesis", "kill:sideways"], &[]);
    assert_clear_failure(&out, "leader, follower");
    std::fs::remove_dir_all(&s).ok();
}

#[test]
fn an_external_cluster_refuses_a_partition_even_inside_a_step() {
    let out = synod(
        &[
            "run",
            "--backend",
            "external",
            "--node-urls",
            "http://127.0.0.1:1",
            "--token",
            "external-token-0123456789",
            "--nemesis",
            "clock:slow-leader+partition:isolate-leader",
        ],
        &[],
    );
    assert_clear_failure(&out, "not partition");
}

#[test]
fn bad_mix_is_rejected() {
    let out = synod(&["run", "--mix", "read=1,append=2"], &[]);
    assert_clear_failure(&out, "unknown operation \"append\"");
}

#[test]
fn bad_node_setting_is_rejected() {
    let out = synod(&["run", "--reads", "sometimes"], &[]);
    assert_clear_failure(&out, "sometimes");
}

#[test]
fn missing_node_binary_says_how_to_build_it() {
    let s = store();
    let out = synod(
        &["run", "--store", s.to_str().unwrap(), "--time-limit", "1"],
        &[("SYNOD_NODE_BIN", "/nonexistent/synod-node")],
    );
    assert_clear_failure(&out, "cargo build --release --workspace");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/synod-node"));
    std::fs::remove_dir_all(&s).ok();
}

#[test]
fn port_in_use_is_named() {
    let s = store();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = synod(
        &[
            "run",
            "--store",
            s.to_str().unwrap(),
            "--base-port",
            &port,
            "--nodes",
            "1",
        ],
        &[("SYNOD_NODE_BIN", "/nonexistent/synod-node")],
    );
    assert_clear_failure(&out, &format!("port {port}"));
    std::fs::remove_dir_all(&s).ok();
}

#[test]
fn clock_faults_on_a_local_etcd_cluster_are_refused_with_the_reason() {
    let out = synod(
        &["run", "--target", "etcd", "--nemesis", "partition,clock"],
        &[],
    );
    assert_clear_failure(&out, "clock faults cannot reach an etcd cluster");
    assert!(String::from_utf8_lossy(&out.stderr).contains("vDSO"));
    let out = synod(
        &[
            "run",
            "--target",
            "etcd",
            "--nemesis",
            "kill",
            "--clock-fault",
            "faketime",
        ],
        &[],
    );
    assert_clear_failure(&out, "libfaketime does not reach it");
    // Power loss is no longer refused: it goes through the filesystem;
    // Synod's own crash endpoint is.
    let out = synod(
        &[
            "run",
            "--target",
            "etcd",
            "--nemesis",
            "power-loss",
            "--admin-crash",
        ],
        &[],
    );
    assert_clear_failure(&out, "etcd does not have");
}

#[test]
fn flags_for_the_wrong_backend_or_target_are_refused() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--backend", "external", "--lying-fsync"],
            "a cluster it did not start",
        ),
        (
            &["--backend", "docker", "--clock-fault", "faketime"],
            "static",
        ),
        (
            &["--etcd-arg=--snapshot-count=5"],
            "--etcd-arg is for --target etcd",
        ),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["run", "--nemesis", "none"];
        args.extend(flags);
        assert_clear_failure(&synod(&args, &[]), needle);
    }
}

#[test]
fn faults_on_an_external_etcd_are_rejected() {
    let out = synod(
        &[
            "run",
            "--target",
            "etcd",
            "--etcd-endpoints",
            "http://127.0.0.1:1",
            "--nemesis",
            "kill",
        ],
        &[],
    );
    assert_clear_failure(&out, "did not start");
}

#[test]
fn missing_etcd_binary_says_how_to_install_it() {
    let s = store();
    let out = synod(
        &[
            "run",
            "--store",
            s.to_str().unwrap(),
            "--target",
            "etcd",
            "--nemesis",
            "kill",
        ],
        &[("SYNOD_ETCD_BIN", "/nonexistent/etcd")],
    );
    assert_clear_failure(&out, "apt-get install etcd-server");
    std::fs::remove_dir_all(&s).ok();
}

#[test]
fn ssh_backend_flags_are_checked_before_anything_connects() {
    let s = store();
    let st = s.to_str().unwrap();
    let out = synod(&["run", "--backend", "ssh", "--store", st], &[]);
    assert_clear_failure(&out, "--backend ssh needs --hosts");
    let out = synod(
        &["run", "--backend", "ssh", "--hosts", "a,b", "--store", st],
        &[],
    );
    assert_clear_failure(&out, "pass --nodes 2");
    let out = synod(&["run", "--hosts", "a,b,c", "--store", st], &[]);
    assert_clear_failure(&out, "--hosts is for --backend ssh");
    let out = synod(
        &[
            "run",
            "--backend",
            "ssh",
            "--hosts",
            "a,b,c",
            "--nemesis",
            "delay",
            "--store",
            st,
        ],
        &[],
    );
    assert_clear_failure(&out, "cannot inject delay");
    let out = synod(
        &[
            "run",
            "--backend",
            "ssh",
            "--hosts",
            "a,b,c",
            "--known-hosts",
            "/nonexistent/known_hosts",
            "--store",
            st,
        ],
        &[],
    );
    assert_clear_failure(&out, "--known-hosts /nonexistent/known_hosts: no such file");
    std::fs::remove_dir_all(&s).ok();
}
