//! The `docker` backend: each node a container from the top-level
//! `docker-compose.yml`, on a private bridge network with its own address;
//! faults done by the operating system, not by the code under test.
//!
//! - **Up**: builds the image with `docker/build-image.sh` if it is missing
//!   (offline: a static binary in a `FROM scratch` image), brings the
//!   compose file up under a unique project name (`synod-<unique>`), with
//!   the run's node settings, its own subnet and its labels in a generated
//!   override file in the run directory, and waits for every node's
//!   `/health`. Compose is `docker compose` (v2) where it answers, else
//!   `docker-compose` (v1).
//! - **Runs side by side**: each run reserves a `/24` of
//!   `172.28.16-250.0/24` that no Docker network uses and no live run has
//!   reserved (a file per subnet in `$TMPDIR/synod-docker-subnets/`,
//!   created exclusively), records it in the run's `docker.json`, and
//!   labels its containers, network and volumes [`RUN_LABEL`]`=<project>`.
//! - **Process faults**: `docker kill` and `docker start` (the container
//!   keeps its volume and address), `docker pause` and `docker unpause`.
//! - **Network faults**: iptables rules in a chain of our own, `SYNOD`,
//!   inside each container's network namespace (`nsenter -t PID -n`),
//!   jumped to first from `INPUT` and `OUTPUT`. A directed link `a -> b`
//!   (what `a` sends to `b`) is matched as TCP to `b`'s port 7000 from `a`
//!   and its replies, on both ends, so a one-way fault stays one-way.
//!   `DROP` applies to every packet, those of established connections too:
//!   the namespace's filter chains hold no `ESTABLISHED` accept before our
//!   jump, so conntrack lets nothing through. Resets are `REJECT
//!   --reject-with tcp-reset`; packet loss is the `statistic` match.
//!   Delay needs `tc netem`, which this backend does not do: it is refused
//!   with a message saying so. Healing deletes our chain and its jumps;
//!   Docker's own chains are never touched.
//! - **Power loss**: with [`Disk::Lazy`] each node's `/data` is a host-side
//!   mount of the lose-unsynced-writes filesystem, bind-mounted in place
//!   of its named volume (the mount allows other users, so the container's
//!   root may use it): `docker kill`, then the filesystem forgets what was
//!   not synced, then `docker start`. The container itself needs no
//!   `/dev/fuse` and no capability. Without it, the node's admin crash.
//! - **Clock** goes through the node's admin API (see [`crate::admin`]):
//!   the image's node is static, so libfaketime cannot preload into it.
//! - **Down, always**: [`Backend::teardown`](crate::Backend::teardown)
//!   copies every container's log into `nodes/nK.log` of the run
//!   directory, then `compose down
//!   --volumes --remove-orphans` and releases the subnet; `Drop` does the
//!   same synchronously if teardown never ran (an early return, a panic).
//!   A bench killed outright leaves its project up; every container,
//!   network and volume carries the owner labels of [`crate::leftovers`],
//!   by which `synod clean` removes them (docker-compose.yml reads them
//!   from [`OWNER_ENV_VAR`] and [`RUN_ENV_VAR`]).
//! - **The token** reaches compose through its environment only, never a
//!   file in the run directory.
//!
//! A container's network namespace lives as long as its process: a killed
//! and restarted node comes back with empty chains, so the rules are kept
//! as data and re-applied after every restart.
//!
//! # Layout
//!
//! - [`compose`]: the compose project and its image: the engine, the
//!   workspace, the subnet, the override file, bringing the project up
//!   and down.
//! - [`iptables`]: the rule text of a node's `SYNOD` chain (which the ssh
//!   backend's hosts take too) and its installation in a namespace.
//! - [`backend`]: the [`Backend`](crate::Backend) impl: containers killed, started,
//!   paused and waited for.
//!
//! The backend's state ([`DockerBackend`], one `Container` per node) is
//! defined here, so each of the three adds its own methods to it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::Command;

use crate::backend::{Link, LinkFault, NodeName};
use crate::disk::{DataDisks, Disk};
use crate::error::{NemesisError, Result};
use crate::lock;

pub mod backend;
pub mod compose;
pub mod iptables;

pub use compose::{compose_command, engine_available, ensure_image, find_workspace, flags_to_env};
pub(crate) use iptables::{chain_exists, chain_rules, remove_chain};

use compose::Subnet;

/// The port every node listens on inside its container.
pub const NODE_PORT: u16 = 7000;

/// The user and group the image's node runs as (`USER` in
/// `docker/Dockerfile`): the owner of its `/data`.
pub const NODE_USER: (u32, u32) = (10001, 10001);

/// The image `docker-compose.yml` runs unless `SYNOD_IMAGE` says otherwise.
pub const DEFAULT_IMAGE: &str = "synod-node:latest";

/// Prefix of every compose project this backend creates; tests look for
/// leftovers by it.
pub const PROJECT_PREFIX: &str = "synod-";

/// Our iptables chain in every container's namespace.
pub const CHAIN: &str = "SYNOD";

/// The label on every container, network and volume of a run; its value
/// is the run's compose project.
pub const RUN_LABEL: &str = "synod.run";

/// The variables `docker-compose.yml` reads its owner labels from
/// ([`crate::leftovers::OWNER_LABEL`] and [`crate::leftovers::RUN_LABEL`]
/// on every container, network and volume): empty for a cluster started
/// by hand, which `synod clean` then never touches.
pub const OWNER_ENV_VAR: &str = "SYNOD_OWNER";
pub const RUN_ENV_VAR: &str = "SYNOD_RUN";

/// How to bring up a cluster of containers.
#[derive(Clone, Debug)]
pub struct DockerConfig {
    /// Cluster size: 3 (`docker-compose.yml`) or 5 (with
    /// `docker-compose.five.yml`).
    pub nodes: u32,
    /// The run directory: the compose override and node logs go here.
    pub dir: PathBuf,
    /// The cluster token, in every node's environment and admin calls.
    pub token: String,
    /// Node settings as `--flag value` (or `--flag=value`) pairs, passed
    /// to every node as `SYNOD_FLAG=value`.
    pub node_args: Vec<String>,
    /// The repository holding `docker-compose.yml` and
    /// `docker/build-image.sh`; `None` finds it with [`find_workspace`].
    pub workspace: Option<PathBuf>,
    /// The image to run; built if missing.
    pub image: String,
    /// The compose project name; `None` makes a unique `synod-...` one.
    pub project: Option<String>,
    /// How long a node may take to answer `/health` after a (re)start.
    pub ready_timeout: Duration,
    /// What the nodes' `/data` is: a named volume each, or a host-side
    /// mount of the lose-unsynced-writes filesystem bind-mounted in.
    pub disk: Disk,
}

/// An error with only a message.
fn other(msg: String) -> NemesisError {
    NemesisError::io("docker backend", std::io::Error::other(msg))
}

/// One container's state as we know it.
struct Container {
    id: NodeName,
    /// Docker's container id, fixed across kill and start.
    cid: String,
    /// Its address on the compose network, fixed by `docker-compose.yml`.
    addr: String,
    /// The process whose network namespace we enter; `None` while down.
    pid: Mutex<Option<u32>>,
    /// Whether we paused it: a kill must unpause first.
    paused: Mutex<bool>,
    /// Whether our chain and its jumps exist in the current namespace.
    chained: Mutex<bool>,
    log_path: PathBuf,
}

/// A cluster of `synod-node` containers under one compose project.
pub struct DockerBackend {
    project: String,
    /// `-f` arguments: the compose file(s) and our override.
    files: Vec<PathBuf>,
    token: String,
    image: String,
    ready_timeout: Duration,
    http: reqwest::Client,
    /// Empty until [`Backend::start`](crate::Backend::start) has found
    /// the containers.
    containers: Mutex<Vec<std::sync::Arc<Container>>>,
    /// The link faults in force, as data: re-applied after a restart.
    links: Mutex<BTreeMap<Link, LinkFault>>,
    /// Random packet loss per link ([`DockerBackend::set_loss`]).
    loss: Mutex<BTreeMap<Link, f64>>,
    /// Our mark, for the owner labels (see [`crate::leftovers`]).
    owner: String,
    /// Set by teardown, so `Drop` does not bring the project down twice.
    down: Mutex<bool>,
    /// `docker compose` or `docker-compose`.
    compose: Vec<String>,
    /// This run's network; released after the project is down.
    subnet: Mutex<Option<Subnet>>,
    /// With [`Disk::Lazy`], the host-side mount behind each container's
    /// `/data`; unmounted once the project is down.
    disks: DataDisks,
    dir: PathBuf,
    nodes: u32,
}

/// Runs a command to completion; its stdout on success, a message with its
/// stderr otherwise.
fn run_sync(cmd: &mut StdCommand, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NemesisError::io(format!("cannot run {what}"), e))?;
    stdout_of(out, what)
}

async fn run_async(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| NemesisError::io(format!("cannot run {what}"), e))?;
    stdout_of(out, what)
}

/// A finished command's trimmed stdout, or an error quoting its stderr.
fn stdout_of(out: std::process::Output, what: &str) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(other(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether a host process exists and is not a zombie.
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
