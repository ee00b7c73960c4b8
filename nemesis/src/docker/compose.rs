//! The compose project and its image: whether the engine answers, where
//! the workspace with `docker-compose.yml` is, the image built if it is
//! missing, the run's own subnet, the override file with the node
//! settings, and bringing the project up (in [`DockerBackend::new`]) and
//! down with the node logs copied out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::{
    lock, other, pid_alive, run_sync, DockerBackend, DockerConfig, NODE_PORT, NODE_USER,
    OWNER_ENV_VAR, PROJECT_PREFIX, RUN_ENV_VAR, RUN_LABEL,
};
use crate::backend::NodeName;
use crate::disk::{data_dir, DataDisks};
use crate::error::{NemesisError, Result};
use crate::leftovers::owner_mark;

/// Runs take their subnet from `172.28.X.0/24`, X in this range;
/// `172.28.5.0/24` stays for the cluster `docker-compose.yml` brings up
/// by hand.
const SUBNET_THIRD: std::ops::RangeInclusive<u8> = 16..=250;

/// The compose command: `docker compose` (v2) where the plugin answers,
/// else `docker-compose` (v1).
pub fn compose_command() -> Vec<String> {
    let v2 = StdCommand::new("docker")
        .args(["compose", "version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// A `/24` this run holds: reserved with a file of its own (created
/// exclusively, so two runs starting at once never pick the same one),
/// released when dropped.
pub(super) struct Subnet {
    /// `172.28.X`.
    prefix: String,
    reservation: PathBuf,
}

impl Subnet {
    /// Picks a free subnet: none of the engine's networks use it, and no
    /// live run has reserved it (reservations of dead processes are
    /// taken over).
    pub(super) fn allocate(seed: u64) -> Result<Subnet> {
        let used = docker_subnets();
        let dir = std::env::temp_dir().join("synod-docker-subnets");
        std::fs::create_dir_all(&dir)
            .map_err(|e| NemesisError::io(format!("cannot create {}", dir.display()), e))?;
        let thirds: Vec<u8> = SUBNET_THIRD.collect();
        let n = thirds.len();
        for i in 0..n {
            let third = thirds[(seed as usize + i) % n];
            let prefix = format!("172.28.{third}");
            if used.iter().any(|u| u.starts_with(&format!("{prefix}."))) {
                continue;
            }
            let reservation = dir.join(&prefix);
            if let Ok(text) = std::fs::read_to_string(&reservation) {
                match text.trim().parse::<u32>() {
                    Ok(pid) if pid_alive(pid) => continue,
                    // A dead run's: take it over.
                    _ => {
                        let _ = std::fs::remove_file(&reservation);
                    }
                }
            }
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&reservation)
            {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Subnet {
                        prefix,
                        reservation,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(NemesisError::io(
                        format!("cannot reserve {}", reservation.display()),
                        e,
                    ))
                }
            }
        }
        Err(other(format!(
            "no free subnet in 172.28.{}-{}.0/24: every one is used by a Docker network or \
             reserved by a running synod (see {})",
            SUBNET_THIRD.start(),
            SUBNET_THIRD.end(),
            dir.display()
        )))
    }

    pub(super) fn cidr(&self) -> String {
        format!("{}.0/24", self.prefix)
    }

    /// Node K's address: `.1K` as in `docker-compose.yml`.
    fn addr(&self, k: u32) -> String {
        format!("{}.{}", self.prefix, 10 + k)
    }
}

impl Drop for Subnet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.reservation);
    }
}

/// The subnets of every Docker network the engine has.
fn docker_subnets() -> Vec<String> {
    let Ok(ids) = run_sync(
        StdCommand::new("docker").args(["network", "ls", "-q"]),
        "docker network ls",
    ) else {
        return Vec::new();
    };
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Vec::new();
    }
    run_sync(
        StdCommand::new("docker")
            .args([
                "network",
                "inspect",
                "-f",
                "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            ])
            .args(&ids),
        "docker network inspect",
    )
    .map(|out| out.split_whitespace().map(str::to_string).collect())
    .unwrap_or_default()
}

/// Finds the repository with `docker-compose.yml` and
/// `docker/build-image.sh`: `$SYNOD_WORKSPACE`, else the source tree this
/// crate was built from, else the current directory or one above it.
pub fn find_workspace() -> Result<PathBuf> {
    let ok = |d: &Path| d.join("docker-compose.yml").is_file() && build_script(d).is_file();
    if let Some(p) = std::env::var_os("SYNOD_WORKSPACE") {
        let p = PathBuf::from(p);
        return if ok(&p) {
            Ok(p)
        } else {
            Err(other(format!(
                "SYNOD_WORKSPACE={} holds no docker-compose.yml and docker/build-image.sh",
                p.display()
            )))
        };
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if ok(&built_from) {
        return Ok(built_from);
    }
    let cwd = std::env::current_dir().map_err(|e| NemesisError::io("no current directory", e))?;
    cwd.ancestors()
        .find(|d| ok(d))
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            other(
                "cannot find docker-compose.yml and docker/build-image.sh: run from the Synod \
             repository or set SYNOD_WORKSPACE to it"
                    .to_string(),
            )
        })
}

fn build_script(workspace: &Path) -> PathBuf {
    workspace.join("docker").join("build-image.sh")
}

/// `--reads local` and `--reads=local` as `("SYNOD_READS", "local")`.
pub fn flags_to_env(args: &[String]) -> Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(flag) = a.strip_prefix("--") else {
            return Err(NemesisError::Unsupported(format!(
                "node argument {a:?} on docker: pass node settings as --flag value"
            )));
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => match it.next() {
                Some(v) => (flag.to_string(), v.clone()),
                None => {
                    return Err(NemesisError::Unsupported(format!(
                        "node flag {a} has no value (on docker every flag is an environment \
                         variable with a value)"
                    )))
                }
            },
        };
        let var = format!("SYNOD_{}", name.to_uppercase().replace('-', "_"));
        if matches!(
            var.as_str(),
            "SYNOD_ID" | "SYNOD_PEERS" | "SYNOD_LISTEN" | "SYNOD_DATA_DIR" | "SYNOD_TOKEN"
        ) {
            return Err(NemesisError::Unsupported(format!(
                "--{name} is set by docker-compose.yml on docker"
            )));
        }
        env.push((var, value));
    }
    Ok(env)
}

/// Whether the Docker engine answers (`docker info`).
pub fn engine_available() -> bool {
    StdCommand::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds `image` with `docker/build-image.sh` unless it exists.
pub fn ensure_image(workspace: &Path, image: &str) -> Result<()> {
    let exists = StdCommand::new("docker")
        .args(["image", "inspect", image])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| NemesisError::io("cannot run docker (is it installed?)", e))?;
    if exists.success() {
        return Ok(());
    }
    let script = build_script(workspace);
    tracing::info!(%image, "image missing; building it with {}", script.display());
    eprintln!("synod: building {image} with {} ...", script.display());
    let status = StdCommand::new("bash")
        .arg(&script)
        .arg(image)
        .current_dir(workspace)
        .stdin(Stdio::null())
        // Build output to our stderr: the user sees cargo's progress.
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| NemesisError::io(format!("cannot run {}", script.display()), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(other(format!(
            "building the image with {} failed ({status})",
            script.display()
        )))
    }
}

/// The compose override of a run: its subnet and every node's address on
/// it, the run label, the host mounts behind `/data` (with the
/// lose-unsynced-writes filesystem), and its node settings, for every
/// service. YAML takes JSON strings, so values are quoted with serde_json.
/// The token is not in it (the run directory is published by `synod
/// serve`): compose reads it from our environment, as it does the owner
/// labels ([`OWNER_ENV_VAR`]).
fn override_yaml(
    project: &str,
    subnet: &Subnet,
    binds: &[String],
    nodes: u32,
    env: &[(String, String)],
) -> String {
    let json = |v: &str| serde_json::Value::from(v.to_string());
    let mut yaml = String::from(
        "# Written by synod run: this run's node settings, subnet and labels.\n\
         version: \"2.4\"\nservices:\n",
    );
    for k in 1..=nodes {
        let peers: Vec<String> = (1..=nodes)
            .filter(|&j| j != k)
            .map(|j| format!("{j}=http://{}:{NODE_PORT}", subnet.addr(j)))
            .collect();
        let _ = writeln!(yaml, "  n{k}:");
        let _ = writeln!(yaml, "    labels: {{{RUN_LABEL}: {}}}", json(project));
        let _ = writeln!(
            yaml,
            "    networks:\n      synod: {{ ipv4_address: {} }}",
            subnet.addr(k)
        );
        if let Some(bind) = binds.get((k - 1) as usize) {
            let _ = writeln!(yaml, "    volumes: [{}]", json(bind));
        }
        let _ = writeln!(yaml, "    environment:");
        let _ = writeln!(yaml, "      SYNOD_PEERS: {}", json(&peers.join(",")));
        for (var, value) in env {
            let _ = writeln!(yaml, "      {var}: {}", json(value));
        }
    }
    // A network or volume defined here replaces the base file's labels
    // rather than merging with them: the owner labels are repeated.
    let labels = format!(
        "{{{RUN_LABEL}: {}, {}: \"${{{OWNER_ENV_VAR}:-}}\", {}: \"${{{RUN_ENV_VAR}:-}}\"}}",
        json(project),
        crate::leftovers::OWNER_LABEL,
        crate::leftovers::RUN_LABEL,
    );
    let _ = writeln!(
        yaml,
        "networks:\n  synod:\n    driver: bridge\n    labels: {labels}\n    \
         ipam:\n      config:\n        - subnet: {}\nvolumes:",
        subnet.cidr()
    );
    for k in 1..=nodes {
        let _ = writeln!(yaml, "  n{k}:\n    labels: {labels}");
    }
    yaml
}

impl DockerBackend {
    /// Checks the engine, the compose files and the image (building it if
    /// missing) and writes the override with the node settings. No
    /// container runs until [`Backend::start`](crate::Backend::start).
    pub fn new(config: DockerConfig) -> Result<DockerBackend> {
        if !engine_available() {
            return Err(other(
                "the Docker engine does not answer (`docker info` failed): start it, or use \
                 --backend local"
                    .to_string(),
            ));
        }
        let workspace = match config.workspace {
            Some(w) => w,
            None => find_workspace()?,
        };
        let mut files = vec![workspace.join("docker-compose.yml")];
        match config.nodes {
            3 => {}
            5 => files.push(workspace.join("docker-compose.five.yml")),
            n => {
                return Err(NemesisError::Unsupported(format!(
                    "{n} nodes on docker: docker-compose.yml defines 3 and \
                     docker-compose.five.yml 5; pass --nodes 3 or --nodes 5"
                )))
            }
        }
        ensure_image(&workspace, &config.image)?;
        let env = flags_to_env(&config.node_args)?;
        let nodes_dir = config.dir.join("nodes");
        std::fs::create_dir_all(&nodes_dir)
            .map_err(|e| NemesisError::io(format!("cannot create {}", nodes_dir.display()), e))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let project = config
            .project
            .unwrap_or_else(|| format!("{PROJECT_PREFIX}{:x}{:x}", std::process::id(), nanos));
        let subnet = Subnet::allocate(u64::from(std::process::id()) ^ u64::from(nanos))?;
        let ids: Vec<NodeName> = (1..=config.nodes).map(NodeName).collect();
        let disks = DataDisks::new(&nodes_dir, &ids, config.disk, Some(NODE_USER))?;
        let compose = compose_command();
        let mut binds = Vec::new();
        if disks.lazy() {
            for &id in &ids {
                // The host's mount in place of the named volume: the
                // container's writes reach the filesystem that can forget.
                let host = std::path::absolute(data_dir(&nodes_dir, id))
                    .map_err(|e| NemesisError::io("cannot resolve the run directory", e))?;
                binds.push(format!("{}:/data", host.display()));
            }
        }
        let yaml = override_yaml(&project, &subnet, &binds, config.nodes, &env);
        let override_path = config.dir.join("docker-compose.run.yml");
        std::fs::write(&override_path, yaml).map_err(|e| {
            NemesisError::io(format!("cannot write {}", override_path.display()), e)
        })?;
        files.push(override_path);
        // What the run holds, for whoever looks at the run directory.
        let record = serde_json::json!({
            "project": project,
            "subnet": subnet.cidr(),
            "label": format!("{RUN_LABEL}={project}"),
            "compose": compose.join(" "),
        });
        let record_path = config.dir.join("docker.json");
        std::fs::write(&record_path, format!("{record:#}\n"))
            .map_err(|e| NemesisError::io(format!("cannot write {}", record_path.display()), e))?;
        let http = crate::admin::http_client(Duration::from_millis(500))?;
        Ok(DockerBackend {
            project,
            files,
            token: config.token,
            image: config.image,
            ready_timeout: config.ready_timeout,
            http,
            containers: Mutex::new(Vec::new()),
            links: Mutex::new(BTreeMap::new()),
            loss: Mutex::new(BTreeMap::new()),
            owner: owner_mark(),
            down: Mutex::new(false),
            compose,
            subnet: Mutex::new(Some(subnet)),
            disks,
            dir: config.dir,
            nodes: config.nodes,
        })
    }

    /// The compose project name (`synod-...`).
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The run's subnet, e.g. `172.28.17.0/24`.
    pub fn subnet(&self) -> Option<String> {
        lock(&self.subnet).as_ref().map(Subnet::cidr)
    }

    /// The compose command with this project's arguments.
    pub(super) fn compose(&self) -> StdCommand {
        let mut cmd = StdCommand::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .args(self.compose_args())
            .env("SYNOD_IMAGE", &self.image)
            .env("SYNOD_TOKEN", &self.token)
            .env(OWNER_ENV_VAR, &self.owner)
            .env(RUN_ENV_VAR, &self.dir);
        cmd
    }

    fn compose_args(&self) -> Vec<String> {
        let mut args = vec!["-p".to_string(), self.project.clone()];
        for f in &self.files {
            args.push("-f".into());
            args.push(f.display().to_string());
        }
        args
    }

    /// Copies every container's log into the run directory.
    pub(super) fn copy_logs(&self) {
        for c in lock(&self.containers).iter() {
            let file = match std::fs::File::create(&c.log_path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(node = %c.id, error = %e, "cannot write the node log");
                    continue;
                }
            };
            let Ok(file2) = file.try_clone() else {
                continue;
            };
            let r = StdCommand::new("docker")
                .args(["logs", &c.cid])
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(file2)
                .status();
            if !r.is_ok_and(|s| s.success()) {
                tracing::warn!(node = %c.id, "docker logs failed");
            }
        }
    }

    /// Brings the project down with its volumes and network, synchronously.
    pub(super) fn compose_down(&self) {
        let r = run_sync(
            self.compose()
                .args(["down", "--volumes", "--remove-orphans", "--timeout", "2"]),
            "compose down",
        );
        if let Err(e) = r {
            tracing::warn!(project = %self.project, error = %e, "teardown: compose down failed");
        }
        // The network is gone with the project: the subnet is free again.
        lock(&self.subnet).take();
    }

    /// Where the run directory is (node logs are under `nodes/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_holds_the_settings_and_no_token() {
        let subnet = Subnet {
            prefix: "172.28.99".into(),
            reservation: PathBuf::new(),
        };
        let env = vec![("SYNOD_READS".to_string(), "local".to_string())];
        let yaml = override_yaml("synod-test", &subnet, &[], 3, &env);
        assert_eq!(
            yaml.matches("      SYNOD_READS: \"local\"\n").count(),
            3,
            "{yaml}"
        );
        assert!(yaml.contains("- subnet: 172.28.99.0/24"), "{yaml}");
        assert!(!yaml.contains("TOKEN"), "{yaml}");
        // The network and volumes keep the owner labels `synod clean` uses.
        let owner = "io.synod.owner: \"${SYNOD_OWNER:-}\"";
        assert_eq!(yaml.matches(owner).count(), 4, "{yaml}");
    }

    #[test]
    fn flags_become_environment_variables() {
        let args: Vec<String> = ["--reads", "local", "--batch-size=8"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            flags_to_env(&args).unwrap(),
            vec![
                ("SYNOD_READS".to_string(), "local".to_string()),
                ("SYNOD_BATCH_SIZE".to_string(), "8".to_string())
            ]
        );
        assert!(flags_to_env(&["--peers".to_string(), "x".to_string()]).is_err());
        assert!(flags_to_env(&["--reads".to_string()]).is_err());
    }
}
