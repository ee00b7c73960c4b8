//! Everything checked before anything starts: the fault mix parsed and
//! matched against what the backend and target can do, the workload mix,
//! the seed. A run that cannot go as asked is refused here, by name,
//! before a directory or a node exists.

use anyhow::bail;
use synod_nemesis::external::EXTERNAL_FAULTS;
use synod_nemesis::{Disk, FaultKind, Step};

use super::args::{BackendKind, ClockFault, RunArgs, Target, DEFAULT_NEMESIS};
use crate::workload::Mix;

/// Everything checked before anything starts.
pub struct Plan {
    /// What the nemesis picks from.
    pub steps: Vec<Step>,
    pub mix: Mix,
    pub seed: u64,
    pub etcd: Vec<(String, String)>,
}

pub fn plan(args: &RunArgs) -> anyhow::Result<Plan> {
    let mut steps = Step::parse_list(&args.nemesis)?;
    // Shapes that do not exist in a cluster this size (quorum-loss with
    // three nodes) are refused now, not drawn as nothing later.
    Step::check_nodes(&steps, args.nodes as usize)?;
    backend_faults(args, &mut steps)?;
    let faults = Step::kinds(&steps);
    let mix: Mix = args.mix.parse()?;
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of ops/s, got {rate}");
        }
    }
    if args.nemesis_interval <= 0.0 && !faults.is_empty() {
        bail!("--nemesis-interval must be positive");
    }
    let etcd = match (&args.target, &args.etcd_endpoints) {
        (Target::Etcd, None) => {
            // An etcd cluster Synod starts: its peer traffic runs through
            // member proxies (local) or iptables (ssh), its power loss
            // through the filesystem; it has no admin API for clocks and
            // crashes.
            if faults.contains(&FaultKind::Clock) || args.clock_fault == ClockFault::Faketime {
                let takes = match args.backend {
                    BackendKind::Ssh => "partition, pause, kill, power-loss, reset and flap",
                    _ => "partition, one-way, pause, kill, power-loss, delay, reset and flap",
                };
                bail!(
                    "clock faults cannot reach an etcd cluster: {}. It takes {takes} faults: \
                     pass e.g. --nemesis partition,pause,kill,power-loss",
                    synod_nemesis::faketime::ETCD_UNREACHABLE
                );
            }
            if args.admin_crash {
                bail!(
                    "--admin-crash is Synod's own crash endpoint, which etcd does not have: \
                     leave it out and power loss goes through the filesystem"
                );
            }
            Vec::new()
        }
        (Target::Etcd, Some(list)) => {
            let urls: Vec<(String, String)> = list
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .enumerate()
                .map(|(i, u)| (format!("e{}", i + 1), u.trim_end_matches('/').to_string()))
                .collect();
            for (_, u) in &urls {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    bail!("etcd endpoint {u:?} is not an http:// URL");
                }
            }
            if urls.is_empty() {
                bail!("--etcd-endpoints is empty");
            }
            if args.backend != BackendKind::Local {
                bail!(
                    "--etcd-endpoints names an etcd cluster someone else started, which no \
                     backend runs: leave --backend out"
                );
            }
            if args.etcd_bin.is_some() {
                bail!("--etcd-bin is for an etcd cluster Synod starts, not --etcd-endpoints");
            }
            if !faults.is_empty() {
                bail!(
                    "synod cannot inject faults into an etcd cluster it did not start: \
                     pass --nemesis none with --etcd-endpoints, or leave the endpoints out \
                     to run a local etcd cluster"
                );
            }
            urls
        }
        (Target::Synod, _) => Vec::new(),
    };
    // The ssh hosts' FUSE is checked on the hosts.
    if !matches!(args.backend, BackendKind::External | BackendKind::Ssh) {
        if let Disk::Lazy(_) = data_disk(args, &steps) {
            if let Err(e) = synod_lazyfs::available() {
                let hint = if args.target == Target::Synod && !args.lying_fsync {
                    "; or pass --admin-crash to cut power through Synod's own crash endpoint, \
                     or leave power-loss out of --nemesis"
                } else {
                    "; or leave power-loss out of --nemesis"
                };
                bail!("power loss goes through a FUSE filesystem: {e}{hint}");
            }
        }
    }
    let seed = args.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ u64::from(std::process::id()).rotate_left(32)
    });
    Ok(Plan {
        steps,
        mix,
        seed,
        etcd,
    })
}

/// Refuses, by name, the faults `--backend` cannot inject.
fn backend_faults(args: &RunArgs, steps: &mut Vec<Step>) -> anyhow::Result<()> {
    let faults = Step::kinds(steps);
    if args.target != Target::Etcd && !args.etcd_args.is_empty() {
        bail!("--etcd-arg is for --target etcd; Synod nodes take --node-arg");
    }
    if args.target != Target::Etcd && args.etcd_bin.is_some() {
        bail!("--etcd-bin is for --target etcd");
    }
    if let Some(bin) = &args.etcd_bin {
        if !bin.is_file() {
            bail!("--etcd-bin {}: no such file", bin.display());
        }
    }
    if !matches!(args.backend, BackendKind::Local | BackendKind::Ssh)
        && args.clock_fault == ClockFault::Faketime
    {
        bail!(
            "--clock-fault faketime preloads libfaketime into processes the local and ssh \
             backends start; the docker image's node is static (libfaketime cannot preload into it) \
             and an external cluster is not ours to start"
        );
    }
    if args.backend == BackendKind::External && args.lying_fsync {
        bail!(
            "--lying-fsync needs the lose-unsynced-writes filesystem under the nodes' data, \
             which Synod cannot mount for a cluster it did not start"
        );
    }
    if !matches!(args.backend, BackendKind::Local | BackendKind::Ssh)
        && args.target != Target::Synod
    {
        bail!("--target etcd runs on --backend local and --backend ssh");
    }
    if args.backend != BackendKind::External && args.node_urls.is_some() {
        bail!("--node-urls is for --backend external");
    }
    if args.backend != BackendKind::Ssh && !args.ssh.hosts.is_empty() {
        bail!("--hosts is for --backend ssh");
    }
    match args.backend {
        BackendKind::Local => {}
        BackendKind::Ssh => crate::ssh::check_args(args, steps, DEFAULT_NEMESIS)?,
        BackendKind::Docker => {
            if !matches!(args.nodes, 3 | 5) {
                bail!(
                    "--nodes {} on docker: docker-compose.yml defines 3 nodes and \
                     docker-compose.five.yml 5; pass --nodes 3 or --nodes 5",
                    args.nodes
                );
            }
            if faults.contains(&FaultKind::Delay) {
                // The default mix has delay; only an explicit ask is an
                // error.
                if args.nemesis != DEFAULT_NEMESIS {
                    bail!(
                        "the docker backend cannot inject delay: it needs tc netem, which \
                         it does not do (and this machine's kernel lacks); drop delay from \
                         --nemesis"
                    );
                }
                steps.retain(|s| !s.has(FaultKind::Delay));
                eprintln!("synod: docker backend: delay left out of the default mix (no tc netem)");
            }
        }
        BackendKind::External => {
            if args.node_urls.is_none() {
                bail!("--backend external needs --node-urls URL,URL,...");
            }
            if args.token.is_none() && args.token_file.is_none() {
                bail!(
                    "--backend external needs the cluster's token: --token-file, SYNOD_TOKEN \
                     or --token"
                );
            }
            let refused: Vec<&str> = faults
                .iter()
                .filter(|k| !EXTERNAL_FAULTS.contains(k))
                .map(|k| k.name())
                .collect();
            if !refused.is_empty() {
                bail!(
                    "an external cluster supports only the {} faults, not {}: pass e.g. \
                     --nemesis clock,power-loss",
                    EXTERNAL_FAULTS.map(FaultKind::name).join(" and "),
                    refused.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// What the nodes' data directories are on (local and docker): the
/// lose-unsynced-writes filesystem when a power loss is to go through it,
/// or when it is to lie.
pub fn data_disk(args: &RunArgs, steps: &[Step]) -> Disk {
    let power_loss = Step::kinds(steps).contains(&FaultKind::PowerLoss);
    if args.lying_fsync {
        Disk::Lazy(synod_lazyfs::Fsync::Lie)
    } else if power_loss && !args.admin_crash {
        Disk::Lazy(synod_lazyfs::Fsync::Honest)
    } else {
        Disk::Plain
    }
}
