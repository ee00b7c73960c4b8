//! The one cluster a run drives, whichever backend it is on: an
//! [`AnyBackend`] is built from the flags and delegates every [`Backend`]
//! call to the local, docker, external or ssh backend inside, so the
//! phases of a run are written (and monomorphised) once rather than once
//! per backend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use synod_nemesis::{
    Backend, Clock, DockerBackend, DockerConfig, ExternalBackend, LeaderReport, Link, LinkFault,
    LocalBackend, LocalConfig, NodeName, Program, Result as NemesisResult, SshBackend,
};

use super::args::{BackendKind, ClockFault, RunArgs, Target};
use super::plan::{data_disk, Plan};

/// A cluster on one of the backends `--backend` names.
pub enum AnyBackend {
    /// Child processes on loopback (Synod nodes or a local etcd cluster).
    Local(LocalBackend),
    /// Containers from docker-compose.yml.
    Docker(DockerBackend),
    /// A cluster someone else started.
    External(ExternalBackend),
    /// One node on each of `--hosts`.
    Ssh(SshBackend),
}

/// Runs `$body` with `$b` bound to the backend inside `$any`, whichever
/// it is.
macro_rules! each {
    ($any:expr, $b:ident => $body:expr) => {
        match $any {
            AnyBackend::Local($b) => $body,
            AnyBackend::Docker($b) => $body,
            AnyBackend::External($b) => $body,
            AnyBackend::Ssh($b) => $body,
        }
    };
}

impl AnyBackend {
    /// The backend `--backend` and `--target` ask for, created (the nodes
    /// not started yet), and the program its nodes run.
    pub async fn build(
        args: &RunArgs,
        plan: &Plan,
        dir: &Path,
    ) -> anyhow::Result<(AnyBackend, Program)> {
        let dir: PathBuf = dir.to_path_buf();
        Ok(match args.target {
            Target::Synod if args.backend == BackendKind::Docker => {
                let config = DockerConfig {
                    nodes: args.nodes,
                    dir: dir.clone(),
                    token: synod_nemesis::random_token(),
                    node_args: args.node_flags(),
                    workspace: None,
                    image: std::env::var("SYNOD_IMAGE")
                        .unwrap_or_else(|_| synod_nemesis::docker::DEFAULT_IMAGE.to_string()),
                    project: None,
                    ready_timeout: Duration::from_secs_f64(args.ready_timeout),
                    disk: data_disk(args, &plan.steps),
                };
                // May build the image: blocking, and long the first time.
                let backend = tokio::task::spawn_blocking(move || DockerBackend::new(config))
                    .await
                    .context("the docker backend panicked")??;
                eprintln!("synod: docker project {}", backend.project());
                (AnyBackend::Docker(backend), Program::Synod)
            }
            Target::Synod | Target::Etcd if args.backend == BackendKind::Ssh => {
                let program = match args.target {
                    Target::Etcd => Program::Etcd,
                    Target::Synod => Program::Synod,
                };
                let disk = data_disk(args, &plan.steps);
                let backend = crate::ssh::backend(args, &plan.steps, &dir, disk, program).await?;
                (AnyBackend::Ssh(backend), program)
            }
            Target::Synod if args.backend == BackendKind::External => {
                let urls = args
                    .node_urls
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|u| !u.trim().is_empty())
                    .map(str::to_string)
                    .collect();
                let token = match (&args.token, &args.token_file) {
                    (Some(t), _) => t.clone(),
                    (None, Some(path)) => std::fs::read_to_string(path)
                        .with_context(|| format!("--token-file: cannot read {}", path.display()))?
                        .trim()
                        .to_string(),
                    (None, None) => String::new(),
                };
                let backend =
                    ExternalBackend::new(urls, token, Duration::from_secs_f64(args.ready_timeout))?;
                (AnyBackend::External(backend), Program::Synod)
            }
            Target::Synod | Target::Etcd => {
                let program = match args.target {
                    Target::Etcd => Program::Etcd,
                    Target::Synod => Program::Synod,
                };
                let backend = LocalBackend::new(LocalConfig {
                    program,
                    nodes: args.nodes,
                    node_bin: args.etcd_bin.clone(),
                    dir: dir.clone(),
                    token: synod_nemesis::random_token(),
                    node_args: args.node_flags(),
                    base_port: args.base_port,
                    ready_timeout: Duration::from_secs_f64(args.ready_timeout),
                    disk: data_disk(args, &plan.steps),
                    clock: match args.clock_fault {
                        ClockFault::Admin => Clock::Admin,
                        ClockFault::Faketime => Clock::Faketime,
                    },
                })
                .await?;
                (AnyBackend::Local(backend), program)
            }
        })
    }
}

impl AnyBackend {
    /// Whether the nodes' CPU can be read from this machine's `/proc`:
    /// `Ok` with the process name to insist on (docker's pids come from
    /// its daemon, which may live in another PID namespace), or why not.
    pub fn node_cpu_access(&self) -> Result<Option<&'static str>, &'static str> {
        match self {
            AnyBackend::Local(_) => Ok(None),
            AnyBackend::Docker(_) => Ok(Some("synod-node")),
            AnyBackend::External(_) => Err("an external cluster's processes are not ours to read"),
            AnyBackend::Ssh(_) => Err("the nodes run on other hosts"),
        }
    }

    /// Every node's process id now (`None` while it is down, or where
    /// the backend cannot tell), by node name.
    pub fn node_pids(&self) -> Vec<(String, Option<u32>)> {
        self.nodes()
            .into_iter()
            .map(|n| {
                let pid = match self {
                    AnyBackend::Local(b) => b.pid(n),
                    AnyBackend::Docker(b) => b.pid(n),
                    AnyBackend::External(_) | AnyBackend::Ssh(_) => None,
                };
                (n.to_string(), pid)
            })
            .collect()
    }
}

impl Backend for AnyBackend {
    fn nodes(&self) -> Vec<NodeName> {
        each!(self, b => b.nodes())
    }

    fn url(&self, node: NodeName) -> NemesisResult<String> {
        each!(self, b => b.url(node))
    }

    fn token(&self) -> &str {
        each!(self, b => b.token())
    }

    fn log_path(&self, node: NodeName) -> Option<PathBuf> {
        each!(self, b => b.log_path(node))
    }

    fn is_running(&self, node: NodeName) -> bool {
        each!(self, b => b.is_running(node))
    }

    async fn start(&self) -> NemesisResult<()> {
        each!(self, b => b.start().await)
    }

    async fn stop(&self, node: NodeName) -> NemesisResult<()> {
        each!(self, b => b.stop(node).await)
    }

    async fn kill(&self, node: NodeName) -> NemesisResult<()> {
        each!(self, b => b.kill(node).await)
    }

    async fn reap(&self, node: NodeName, grace: Duration) -> NemesisResult<()> {
        each!(self, b => b.reap(node, grace).await)
    }

    async fn restart(&self, node: NodeName) -> NemesisResult<()> {
        each!(self, b => b.restart(node).await)
    }

    fn pause(&self, node: NodeName) -> NemesisResult<()> {
        each!(self, b => b.pause(node))
    }

    fn resume(&self, node: NodeName) -> NemesisResult<()> {
        each!(self, b => b.resume(node))
    }

    fn set_link(&self, link: Link, fault: LinkFault) -> NemesisResult<()> {
        each!(self, b => b.set_link(link, fault))
    }

    fn commit_links(&self) -> NemesisResult<()> {
        each!(self, b => b.commit_links())
    }

    fn loses_unsynced_writes(&self) -> bool {
        each!(self, b => b.loses_unsynced_writes())
    }

    async fn power_off(&self, node: NodeName) -> NemesisResult<()> {
        each!(self, b => b.power_off(node).await)
    }

    fn skews_clocks(&self) -> bool {
        each!(self, b => b.skews_clocks())
    }

    fn skew_clock(&self, node: NodeName, offset_ms: i64, rate: f64) -> NemesisResult<()> {
        each!(self, b => b.skew_clock(node, offset_ms, rate))
    }

    async fn report_leader(&self) -> LeaderReport {
        each!(self, b => b.report_leader().await)
    }

    async fn teardown(&self) {
        each!(self, b => b.teardown().await)
    }
}
