//! The ssh backend against real sshd's: three hosts, each a network
//! namespace on a bridge of its own (`ssh_support/netns-hosts.sh`), each
//! running OpenSSH's sshd with a generated host key (written into a test
//! known_hosts) and the test's client key authorized. The bench runs
//! outside the namespaces and reaches the hosts only over ssh and their
//! addresses; peer traffic goes between the namespaces' addresses, so the
//! iptables rules in each namespace really partition.
//!
//! The namespaces share this machine's filesystem and process table, so
//! every "nothing left" check is per host: the processes in its network
//! namespace (`ip netns pids`), its own iptables, the mounts its sshd
//! sees, the directories of its node (`ROOT/<run>-nK`).
//!
//! One test function runs every scenario in sequence, each `synod run`
//! bounded in time; the namespaces are removed at the end whatever
//! happened. It prints `SKIPPED: reason` and passes only where the machine
//! lacks what it needs: root, `ip netns`, sshd.

// SKIPPED lines go straight to stderr, which the test harness does not
// capture, so a skip shows in `cargo test`'s output.
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/ssh_support/netns-hosts.sh"
);

fn synod_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_synod"))
}

fn sh(cmd: &mut Command) -> (bool, String) {
    match cmd.stdin(Stdio::null()).output() {
        Ok(out) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        ),
        Err(e) => (false, format!("cannot run {cmd:?}: {e}")),
    }
}

/// Why this machine cannot run the test, if it cannot.
fn missing() -> Option<String> {
    let (_, uid) = sh(Command::new("id").arg("-u"));
    if uid.trim() != "0" {
        return Some("not root (network namespaces and sshd need it)".into());
    }
    for (bin, pkg) in [
        ("/usr/sbin/sshd", "openssh-server"),
        ("/usr/bin/ssh", "openssh-client"),
        ("/usr/bin/ssh-keygen", "openssh-client"),
    ] {
        if !Path::new(bin).exists() {
            return Some(format!("no {bin} (apt-get install {pkg})"));
        }
    }
    if !sh(Command::new("ip").arg("-V")).0 {
        return Some("no ip (apt-get install iproute2)".into());
    }
    let probe = format!("synod-probe-{}", std::process::id());
    let (ok, out) = sh(Command::new("ip").args(["netns", "add", &probe]));
    let _ = sh(Command::new("ip").args(["netns", "del", &probe]));
    if !ok {
        return Some(format!("cannot create a network namespace: {}", out.trim()));
    }
    None
}

/// The three hosts; removed when dropped.
struct Hosts {
    dir: PathBuf,
    tag: String,
    net: String,
}

const N: usize = 3;

impl Hosts {
    fn up() -> Hosts {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("synod-ssh-hosts-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        let tag = format!("sy{}", pid % 100_000);
        let net = format!("10.77.{}", 20 + pid % 200);
        let hosts = Hosts { dir, tag, net };
        let (ok, out) = sh(Command::new("bash").args([
            SCRIPT,
            "up",
            hosts.dir.to_str().unwrap(),
            &hosts.tag,
            &hosts.net,
            &N.to_string(),
        ]));
        assert!(ok, "setting the hosts up failed: {out}");
        std::fs::create_dir_all(hosts.root()).unwrap();
        hosts
    }

    fn addr(&self, k: usize) -> String {
        format!("{}.1{k}", self.net)
    }

    fn ns(&self, k: usize) -> String {
        format!("{}-h{k}", self.tag)
    }

    fn all(&self) -> String {
        (1..=N).map(|k| self.addr(k)).collect::<Vec<_>>().join(",")
    }

    /// The directory under which every node gets its own, on every host.
    fn root(&self) -> PathBuf {
        self.dir.join("remote")
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Everything of a run left on host `k`, in words.
    fn leftovers(&self, k: usize) -> Vec<String> {
        let mut found = Vec::new();
        let root = self.root().display().to_string();
        let (_, pids) = sh(Command::new("ip").args(["netns", "pids", &self.ns(k)]));
        for pid in pids.split_whitespace() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&root)
                || cmdline.contains("synod-node")
                || cmdline.contains("synod-lazyfs")
            {
                found.push(format!("process {pid}: {cmdline}"));
            }
        }
        let (chain, _) = sh(Command::new("ip").args([
            "netns",
            "exec",
            &self.ns(k),
            "iptables",
            "-w",
            "5",
            "-S",
            "SYNOD",
        ]));
        if chain {
            found.push("a SYNOD chain".into());
        }
        let sshd =
            std::fs::read_to_string(self.dir.join(format!("h{k}/sshd.pid"))).unwrap_or_default();
        let mounts =
            std::fs::read_to_string(format!("/proc/{}/mounts", sshd.trim())).unwrap_or_default();
        for m in mounts.lines().filter(|l| l.contains(&root)) {
            found.push(format!("mount {m}"));
        }
        for e in std::fs::read_dir(self.root())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(&format!("-n{k}")) {
                found.push(format!("directory {name}"));
            }
        }
        found
    }

    fn assert_clean(&self, after: &str) {
        for k in 1..=N {
            let left = self.leftovers(k);
            assert!(left.is_empty(), "host {k} after {after}: {left:?}");
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = sh(Command::new("bash").args([
            SCRIPT,
            "down",
            self.dir.to_str().unwrap(),
            &self.tag,
            &N.to_string(),
        ]));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Run {
    code: Option<i32>,
    out: String,
    history: String,
}

/// `synod run --backend ssh` with the test's key and known_hosts, killed
/// if it takes longer than `limit`.
fn ssh_run(hosts: &Hosts, tag: &str, extra: &[&str], limit: Duration) -> Run {
    let store = hosts.dir.join(format!("store-{tag}"));
    let node_bin = synod_bin().with_file_name("synod-node");
    assert!(
        node_bin.is_file(),
        "synod-node is not built at {} (cargo build --release --workspace)",
        node_bin.display()
    );
    let mut cmd = Command::new(synod_bin());
    cmd.args(["run", "--backend", "ssh", "--ssh-user", "root"]);
    // The test's key and known_hosts, unless the scenario brings its own.
    for (flag, file) in [
        ("--ssh-key", "client_key"),
        ("--known-hosts", "known_hosts"),
    ] {
        if !extra.contains(&flag) {
            cmd.args([flag, &hosts.file(file)]);
        }
    }
    cmd.args(["--ssh-dir", hosts.root().to_str().unwrap()])
        .args(["--store", store.to_str().unwrap()])
        .args(extra)
        .env("SYNOD_NODE_BIN", &node_bin)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("synod runs");
    // Drained while it runs: an invalid run's explanation alone fills a
    // pipe, and a child blocked writing to it would never exit.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + limit;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            killed = true;
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let text = String::from_utf8_lossy(&stdout).into_owned() + &String::from_utf8_lossy(&stderr);
    assert!(!killed, "synod run {tag} took over {limit:?}: {text}");
    assert!(!text.contains("panicked"), "{text}");
    let history = std::fs::read_dir(store.join("default"))
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|e| std::fs::read_to_string(e.path().join("history.jsonl")).ok())
        .unwrap_or_default();
    Run {
        code: status.code(),
        out: text,
        history,
    }
}

/// `synod run --backend ssh --target etcd`: valid, every fault asked for
/// done, isolate-leader aimed through etcd's own status, nothing left.
fn etcd_run(hosts: &Hosts, all: &str, started: Instant) {
    let (found, etcd) = sh(Command::new("sh").args(["-c", "command -v etcd"]));
    if !found {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the etcd run: no etcd here or on the hosts (apt-get install etcd-server)"
        );
        return;
    }
    let lazyfs = synod_bin().with_file_name("synod-lazyfs").is_file();
    let mut kinds = vec!["partition", "pause", "kill"];
    if lazyfs {
        kinds.push("power-loss");
    }
    // Partitions aimed at the leader etcd's status names.
    let nemesis = kinds
        .join(",")
        .replace("partition", "partition:isolate-leader");
    let r = ssh_run(
        hosts,
        "etcd",
        &[
            "--hosts",
            all,
            "--target",
            "etcd",
            "--nemesis",
            &nemesis,
            "--nemesis-interval",
            "1",
            "--time-limit",
            "20",
            "--recovery",
            "5",
            // Its first four faults are a kill, a power loss, a
            // partition and a pause.
            "--seed",
            "2",
        ],
        Duration::from_secs(150),
    );
    let done = assert_valid_with_every_fault(&r, &kinds, "the etcd run");
    let ops = r
        .out
        .lines()
        .find(|l| l.contains(" events, ok "))
        .unwrap_or("no ops line");
    let verdict = r.out.lines().find(|l| l.starts_with("valid")).unwrap_or("");
    // The members ran the hosts' etcd, under the run's directory.
    let run_dir = std::fs::read_dir(hosts.dir.join("store-etcd/default"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .unwrap();
    let record = std::fs::read_to_string(run_dir.join("ssh.json")).unwrap();
    assert!(
        record.contains(&format!("\"program\": \"{}\"", etcd.trim())),
        "{record}"
    );
    let log = std::fs::read_to_string(run_dir.join("nodes/n1.log")).unwrap_or_default();
    assert!(
        log.contains("etcd"),
        "n1's etcd log was not fetched: {log:.300}"
    );
    hosts.assert_clean("the etcd run");
    eprintln!(
        "ssh: etcd run at {:?}: {verdict}; {ops}; faults {done:?}; every host clean",
        started.elapsed()
    );

    // --etcd-bin: the binary uploaded into every node's directory instead.
    let r = ssh_run(
        hosts,
        "etcd-bin",
        &[
            "--hosts",
            all,
            "--target",
            "etcd",
            "--etcd-bin",
            etcd.trim(),
            "--nemesis",
            "partition",
            "--nemesis-interval",
            "1",
            "--time-limit",
            "3",
            "--recovery",
            "1",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.out);
    let record = std::fs::read_dir(hosts.dir.join("store-etcd-bin/default"))
        .unwrap()
        .flatten()
        .find_map(|e| std::fs::read_to_string(e.path().join("ssh.json")).ok())
        .unwrap_or_default();
    assert!(record.contains("-n1/etcd\""), "not uploaded: {record}");
    hosts.assert_clean("the --etcd-bin run");
    eprintln!(
        "ssh: etcd uploaded with --etcd-bin valid at {:?}",
        started.elapsed()
    );
}

/// A run that exited valid, and whose history shows every fault of `kinds`
/// started (so "valid" was earned under those faults); the faults it saw.
fn assert_valid_with_every_fault(r: &Run, kinds: &[&str], what: &str) -> Vec<String> {
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains("valid"), "{}", r.out);
    let done = faults(&r.history);
    for kind in kinds {
        assert!(
            done.iter().any(|f| f == kind),
            "no {kind} in {what}: {done:?}"
        );
    }
    done
}

/// The nemesis' start events of a history.
fn faults(history: &str) -> Vec<String> {
    history
        .lines()
        .filter(|l| l.contains("\"process\":\"nemesis\""))
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let f = v["f"].as_str()?;
            f.strip_prefix("start-").map(str::to_string)
        })
        .collect()
}

/// A run the pre-flight must stop: exit 3, a message naming `host` and
/// containing `problem`, no fault started, nothing left.
fn refused(hosts: &Hosts, tag: &str, extra: &[&str], host: &str, problem: &str) {
    let r = ssh_run(hosts, tag, extra, Duration::from_secs(60));
    assert_eq!(r.code, Some(3), "{tag}: {}", r.out);
    assert!(
        r.out.contains(&format!("host {host}")) && r.out.contains(problem),
        "{tag}: expected host {host} and {problem:?} in: {}",
        r.out
    );
    assert!(faults(&r.history).is_empty(), "{tag}: a fault started");
    hosts.assert_clean(tag);
    eprintln!("ssh: {tag} refused: {}", r.out.lines().last().unwrap_or(""));
}

#[test]
fn ssh_backend_on_namespace_hosts() {
    if let Some(why) = missing() {
        let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
        return;
    }
    let started = Instant::now();
    let hosts = Hosts::up();
    eprintln!("ssh: hosts up at {:?}", started.elapsed());

    // Bad input stops the run before any fault, naming the host.
    let unreachable = format!("{}.99", hosts.net);
    let three = format!("{},{},{unreachable}", hosts.addr(1), hosts.addr(2));
    refused(
        &hosts,
        "unreachable",
        &["--hosts", &three, "--nemesis", "partition"],
        &unreachable,
        "unreachable over ssh",
    );
    let wrong_key = hosts.file("wrong_key");
    refused(
        &hosts,
        "wrong-key",
        &[
            "--hosts",
            &hosts.all(),
            "--ssh-key",
            &wrong_key,
            "--nemesis",
            "partition",
        ],
        &hosts.addr(1),
        "authentication failed",
    );
    let empty = hosts.file("empty_known_hosts");
    refused(
        &hosts,
        "unknown-host-key",
        &[
            "--hosts",
            &hosts.all(),
            "--known-hosts",
            &empty,
            "--nemesis",
            "partition",
        ],
        &hosts.addr(1),
        "host key is not in",
    );
    // Host 1's second sshd (port 2222) gives sessions no sbin on PATH.
    refused(
        &hosts,
        "no-iptables",
        &[
            "--hosts",
            &hosts.addr(1),
            "--nodes",
            "1",
            "--ssh-port",
            "2222",
            "--nemesis",
            "partition",
        ],
        &hosts.addr(1),
        "iptables is not installed",
    );
    eprintln!("ssh: bad input refused at {:?}", started.elapsed());

    // A 20 s chaos run with partitions, pauses and kills is valid.
    let all = hosts.all();
    let r = ssh_run(
        &hosts,
        "chaos",
        &[
            "--hosts",
            &all,
            "--nemesis",
            "partition,pause,kill",
            "--nemesis-interval",
            "1.5",
            "--time-limit",
            "20",
            "--recovery",
            "5",
            "--seed",
            "1",
        ],
        Duration::from_secs(180),
    );
    let done = assert_valid_with_every_fault(&r, &["partition", "pause", "kill"], "the chaos run");
    for k in 1..=N {
        let log = std::fs::read_dir(hosts.dir.join("store-chaos/default"))
            .unwrap()
            .flatten()
            .map(|e| e.path().join(format!("nodes/n{k}.log")))
            .next()
            .unwrap();
        assert!(log.is_file(), "n{k}'s log was not fetched");
    }
    hosts.assert_clean("the chaos run");
    eprintln!("ssh: chaos run valid at {:?}: {done:?}", started.elapsed());

    // Power loss through the filesystem on the hosts (synod-lazyfs
    // uploaded next to the node), where this build has it.
    if synod_bin().with_file_name("synod-lazyfs").is_file() {
        let r = ssh_run(
            &hosts,
            "power-loss",
            &[
                "--hosts",
                &all,
                "--nemesis",
                "power-loss",
                "--nemesis-interval",
                "1.5",
                "--time-limit",
                "8",
                "--recovery",
                "3",
                "--seed",
                "2",
            ],
            Duration::from_secs(120),
        );
        assert_eq!(r.code, Some(0), "{}", r.out);
        let losses: Vec<&str> = r
            .history
            .lines()
            .filter(|l| l.contains("\"f\":\"start-power-loss\""))
            .collect();
        assert!(!losses.is_empty(), "no power loss: {}", r.out);
        for l in losses {
            assert!(l.contains("\"via\":\"filesystem\""), "{l}");
        }
        hosts.assert_clean("the power-loss run");
        eprintln!("ssh: power-loss run valid at {:?}", started.elapsed());
    } else {
        eprintln!("ssh: synod-lazyfs not built next to synod; the power-loss run left out");
    }

    // etcd, one member per host from the host's own etcd (the hosts share
    // this machine's filesystem), under partitions, pauses and kills, and
    // power loss where synod-lazyfs is built: valid, nothing left.
    etcd_run(&hosts, &all, started);

    // Local reads under partitions are caught (a few seeds at most).
    let mut caught = None;
    for seed in ["1", "2", "3"] {
        let r = ssh_run(
            &hosts,
            &format!("local-reads-{seed}"),
            &[
                "--hosts",
                &all,
                "--reads",
                "local",
                "--nemesis",
                "partition",
                "--nemesis-interval",
                "1.5",
                "--time-limit",
                "10",
                "--recovery",
                "3",
                "--seed",
                seed,
            ],
            Duration::from_secs(120),
        );
        assert!(matches!(r.code, Some(0..=2)), "{}", r.out);
        hosts.assert_clean("a local-reads run");
        if r.code == Some(1) {
            caught = Some(seed);
            break;
        }
    }
    assert!(
        caught.is_some(),
        "reads=local under partitions never invalid"
    );
    eprintln!("ssh: local reads invalid at {:?}", started.elapsed());

    let (tag, dir) = (hosts.tag.clone(), hosts.dir.clone());
    drop(hosts);
    let (_, list) = sh(Command::new("ip").args(["netns", "list"]));
    assert!(
        !list.lines().any(|l| l.starts_with(&format!("{tag}-"))),
        "namespaces left: {list}"
    );
    assert!(!dir.exists(), "{} left", dir.display());
    eprintln!("ssh: done in {:?}", started.elapsed());
}
