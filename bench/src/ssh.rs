//! `synod run --backend ssh`: the flags that say how to reach the hosts,
//! what the hosts can take, and the backend they build (see
//! [`synod_nemesis::ssh`] for what happens on the hosts).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use synod_nemesis::{FaultKind, SshBackend, SshConfig, SshOptions, Step};

use crate::run::{ClockFault, RunArgs, Target};

/// How to reach the hosts of `--backend ssh`.
#[derive(clap::Args, Debug, serde::Serialize, serde::Deserialize)]
pub struct SshArgs {
    /// ssh backend: the hosts, comma-separated, one node each (node K on
    /// the K-th): addresses, names or aliases of your ssh config. Their
    /// host keys must be in known_hosts; nothing is trusted on first use.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// ssh backend: the user to log in as (else your ssh config's, or
    /// your own name). Partitions need root or password-less sudo there.
    #[arg(long)]
    pub ssh_user: Option<String>,
    /// ssh backend: the private key to log in with; only this key is
    /// offered (else your agent's and ssh config's).
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// ssh backend: the hosts' ssh port (else your ssh config's, or 22).
    #[arg(long)]
    pub ssh_port: Option<u16>,
    /// ssh backend: the known_hosts file holding the hosts' keys, the
    /// only one consulted (else yours and the system's).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// ssh backend: the directory on every host under which each node
    /// gets its own (removed at the end).
    #[arg(long, default_value = synod_nemesis::ssh::DEFAULT_ROOT)]
    pub ssh_dir: String,
}

impl SshArgs {
    /// Whether every flag has its default (no ssh run, nothing to record).
    pub fn is_unused(&self) -> bool {
        self.hosts.is_empty()
            && self.ssh_user.is_none()
            && self.ssh_key.is_none()
            && self.ssh_port.is_none()
            && self.known_hosts.is_none()
            && self.ssh_dir == synod_nemesis::ssh::DEFAULT_ROOT
    }
}

/// Refuses what the ssh backend cannot do, by name, before anything
/// connects; leaves delay out of the default mix (no `tc netem`).
pub(crate) fn check_args(
    args: &RunArgs,
    steps: &mut Vec<Step>,
    default_nemesis: &str,
) -> anyhow::Result<()> {
    let ssh = &args.ssh;
    if ssh.hosts.is_empty() {
        bail!("--backend ssh needs --hosts HOST,HOST,... (one node per host)");
    }
    if ssh.hosts.iter().any(|h| h.trim().is_empty()) {
        bail!("--hosts has an empty entry: {:?}", ssh.hosts.join(","));
    }
    if ssh.hosts.len() != args.nodes as usize {
        bail!(
            "--hosts names {} hosts and --nodes is {}: the ssh backend runs one node per host; \
             pass --nodes {}",
            ssh.hosts.len(),
            args.nodes,
            ssh.hosts.len()
        );
    }
    for (flag, file) in [
        ("--ssh-key", &ssh.ssh_key),
        ("--known-hosts", &ssh.known_hosts),
    ] {
        if let Some(f) = file {
            if !f.is_file() {
                bail!("{flag} {}: no such file", f.display());
            }
        }
    }
    if args.base_port.is_some() {
        bail!(
            "--base-port is for --backend local: on ssh hosts every node listens on port {}",
            synod_nemesis::ssh::NODE_PORT
        );
    }
    if args.target == Target::Etcd && Step::kinds(steps).contains(&FaultKind::OneWay) {
        bail!(
            "one-way on etcd over ssh: an etcd member sends its raft messages on streams its \
             peers opened, so iptables rules by port cannot cut one direction only (they cut \
             the connections, both ways); --backend local's member proxies can, or use \
             partition"
        );
    }
    if Step::kinds(steps).contains(&FaultKind::Delay) {
        if args.nemesis != default_nemesis {
            bail!(
                "the ssh backend cannot inject delay: it needs tc netem on the hosts, which it \
                 does not do; drop delay from --nemesis"
            );
        }
        steps.retain(|s| !s.has(FaultKind::Delay));
        eprintln!("synod: ssh backend: delay left out of the default mix (no tc netem)");
    }
    Ok(())
}

/// Whether the mix has faults that are iptables rules on the hosts.
fn network_faults(steps: &[Step]) -> bool {
    Step::kinds(steps).iter().any(|k| {
        matches!(
            k,
            FaultKind::Partition | FaultKind::OneWay | FaultKind::Reset | FaultKind::Flap
        )
    })
}

/// Checks every host and, if all pass, the backend for them (blocking:
/// connections and probes).
pub(crate) async fn backend(
    args: &RunArgs,
    steps: &[Step],
    dir: &Path,
    disk: synod_nemesis::Disk,
    program: synod_nemesis::Program,
) -> anyhow::Result<SshBackend> {
    let ssh = &args.ssh;
    let config = SshConfig {
        hosts: ssh.hosts.iter().map(|h| h.trim().to_string()).collect(),
        options: SshOptions {
            user: ssh.ssh_user.clone(),
            key: ssh.ssh_key.clone(),
            port: ssh.ssh_port,
            known_hosts: ssh.known_hosts.clone(),
            connect_timeout: Duration::from_secs(5),
        },
        dir: dir.to_path_buf(),
        root: ssh.ssh_dir.clone(),
        token: synod_nemesis::random_token(),
        node_args: args.node_flags(),
        program,
        // Synod's node is found next to us; etcd is the host's unless
        // --etcd-bin says.
        node_bin: args.etcd_bin.clone(),
        ready_timeout: Duration::from_secs_f64(args.ready_timeout),
        disk,
        clock: match args.clock_fault {
            ClockFault::Admin => synod_nemesis::Clock::Admin,
            ClockFault::Faketime => synod_nemesis::Clock::Faketime,
        },
        network_faults: network_faults(steps),
    };
    let backend = tokio::task::spawn_blocking(move || SshBackend::new(config)).await??;
    eprintln!(
        "synod: ssh run {} on {}",
        backend.run_name(),
        ssh.hosts.join(", ")
    );
    Ok(backend)
}
