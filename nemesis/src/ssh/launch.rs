//! A node on its host (a Synod node or an etcd member): its command
//! line, what is uploaded and written
//! into its directory (the binaries, `run.sh` with the token in a private
//! file, the clock file, the data directory's filesystem), its start under
//! the host's supervisor, and the wait until it answers `/health`.

use std::path::Path;
use std::time::Duration;

use super::session::quote;
use super::{
    lock, remote, HostNode, NodeState, SshBackend, ETCD_CLIENT_PORT, ETCD_PEER_PORT, NODE_PORT,
};
use crate::backend::{Backend, NodeName};
use crate::error::{NemesisError, Result};
use crate::etcd;

impl SshBackend {
    /// The node's transient systemd unit, where the host has systemd.
    pub(super) fn unit(&self, n: &HostNode) -> Option<String> {
        n.host.systemd.then(|| format!("{}-{}", self.run, n.id))
    }

    /// The node's command line on its host, quoted for `run.sh`.
    pub(super) fn node_command(&self, n: &HostNode) -> String {
        let mut args = match self.program {
            crate::Program::Synod => self.synod_args(n),
            crate::Program::Etcd => self.etcd_args(n),
        };
        args.extend(self.node_args.iter().cloned());
        args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
    }

    /// An etcd member on its host: client and peer URLs on the host's own
    /// address, every host in `--initial-cluster`, the run's name as the
    /// cluster token (the bench's token is on no command line).
    fn etcd_args(&self, n: &HostNode) -> Vec<String> {
        let peer = |h: &HostNode| format!("http://{}:{ETCD_PEER_PORT}", h.addr);
        let peers: Vec<(NodeName, String)> = self.nodes.iter().map(|h| (h.id, peer(h))).collect();
        let cluster = etcd::initial_cluster(peers.iter().map(|(id, u)| (*id, u.as_str())));
        let mut args = vec![n.bin.clone()];
        args.extend(
            etcd::Member {
                name: n.id,
                data_dir: &format!("{}/data", n.dir),
                client_url: &format!("http://{}:{ETCD_CLIENT_PORT}", n.addr),
                listen_peer_url: &peer(n),
                advertised_peer_url: &peer(n),
                initial_cluster: &cluster,
                cluster_token: &self.run,
            }
            .args(),
        );
        args
    }

    /// A Synod node on its host: every address on the node port, its
    /// peers at the others' addresses.
    fn synod_args(&self, n: &HostNode) -> Vec<String> {
        let peers: Vec<String> = self
            .nodes
            .iter()
            .filter(|p| p.id != n.id)
            .map(|p| format!("{}=http://{}:{NODE_PORT}", p.id.0, p.addr))
            .collect();
        vec![
            n.bin.clone(),
            "--id".into(),
            n.id.0.to_string(),
            "--listen".into(),
            format!("0.0.0.0:{NODE_PORT}"),
            "--peers".into(),
            peers.join(","),
            "--data-dir".into(),
            format!("{}/data", n.dir),
        ]
    }

    /// Uploads and writes everything a node needs, mounts its filesystem.
    pub(super) fn install(&self, n: &HostNode) -> Result<()> {
        n.session
            .run(&remote::make_dir(&n.dir), "creating the node's directory")?;
        if let Some(bin) = &self.upload {
            n.session.upload(bin, &n.bin)?;
        }
        let mut env = Vec::new();
        if self.faketime {
            let lib = n.host.faketime.clone().unwrap_or_default();
            let control = format!("{}/faketime", n.dir);
            env = crate::faketime::env(Path::new(&lib), Path::new(&control));
            n.session.run(
                &remote::set_clock(&n.dir, &crate::faketime::spec(0, 1.0, Duration::ZERO)),
                "writing the clock file",
            )?;
        }
        n.session.run(
            &remote::write_start(&n.dir, &self.token, &self.node_command(n), &env),
            "writing run.sh",
        )?;
        if let (Some(fsync), Some(bin)) = (self.lazy, &self.lazyfs_bin) {
            n.session.upload(bin, &format!("{}/synod-lazyfs", n.dir))?;
            let lie = fsync == synod_lazyfs::Fsync::Lie;
            n.session
                .run(&remote::mount(&n.dir, lie), "mounting the data directory")?;
        }
        Ok(())
    }

    /// Starts the node if it is not running and waits until it answers.
    pub(super) async fn launch(&self, n: &HostNode) -> Result<()> {
        self.launch_detached(n).await?;
        self.wait_healthy(n).await
    }

    /// Starts the node if it is not running.
    pub(super) async fn launch_detached(&self, n: &HostNode) -> Result<()> {
        if self.faketime {
            // Every start begins on true time, as the admin clock does.
            n.session
                .run_async(
                    &remote::set_clock(&n.dir, &crate::faketime::spec(0, 1.0, Duration::ZERO)),
                    "resetting the clock file",
                )
                .await?;
        }
        let unit = self.unit(n);
        n.session
            .run_async(
                &remote::launch(&n.dir, unit.as_deref()),
                "starting the node",
            )
            .await?;
        *lock(&n.state) = NodeState {
            running: true,
            paused: false,
            clock: Some(crate::faketime::FakeClock::started_now()),
        };
        Ok(())
    }

    pub(super) async fn wait_healthy(&self, n: &HostNode) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        let url = format!("{}/health", self.url(n.id)?);
        loop {
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            let down = n
                .session
                .run_async(&remote::status(&n.dir), "status")
                .await
                .is_ok_and(|s| s == "down");
            if down || tokio::time::Instant::now() >= deadline {
                let tail = n
                    .session
                    .run_async(
                        &format!("tail -n 5 {}/node.log", quote(&n.dir)),
                        "reading the node's log",
                    )
                    .await
                    .unwrap_or_default();
                return Err(NemesisError::NotHealthy {
                    node: n.id,
                    reason: format!(
                        "{} on host {}; last log lines: {tail}",
                        if down {
                            "it exited".to_string()
                        } else {
                            format!("no answer on {url} within {:?}", self.ready_timeout)
                        },
                        n.session.host
                    ),
                    log: self.log_path(n.id).unwrap_or_default(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
