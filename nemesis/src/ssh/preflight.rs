//! What a host must have before a run may start on it, checked on every
//! host before any node starts and so before any fault: the connection
//! (reachable, host key known, key accepted, see
//! [`super::session::Problem`]), then what `remote::probe`
//! reports. Each refusal names the host and says what to do. All hosts
//! are checked at once, and every host's problems are reported together.

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::path::Path;
use std::sync::Mutex;

use super::session::{Problem, Session};
use super::{remote, HostNode, NodeState, SshBackend, SshConfig};
use crate::backend::NodeName;
use crate::error::{NemesisError, Result};

/// What the run needs of every host.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Needs {
    /// Partitions and other link faults: iptables that works.
    pub(crate) iptables: bool,
    /// Power loss through the lose-unsynced-writes filesystem: FUSE.
    pub(crate) fuse: bool,
    /// Clock faults through libfaketime.
    pub(crate) faketime: bool,
    /// etcd members from the host's own `etcd` (no `--etcd-bin`).
    pub(crate) host_etcd: bool,
    /// Binaries built here are uploaded (synod-node, synod-lazyfs), so
    /// the host must be of this machine's architecture.
    pub(crate) arch: bool,
}

/// What a host has, from the probe's `key=value` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Host {
    /// Whether iptables must go through `sudo -n` (a user other than
    /// root with password-less sudo).
    pub(crate) sudo: bool,
    /// Whether nodes start as transient systemd units.
    pub(crate) systemd: bool,
    /// Where libfaketime is, if anywhere.
    pub(crate) faketime: Option<String>,
    /// `uname -m`.
    pub(crate) arch: String,
    /// Where the host's own `etcd` is, if on the PATH of a session.
    pub(crate) etcd: Option<String>,
}

/// Reads the probe's output against what the run needs: the host as
/// found, or every problem it has, each a sentence.
pub(crate) fn judge(
    probe: &str,
    needs: Needs,
    local_arch: &str,
    root: &str,
) -> Result<Host, Vec<String>> {
    let kv: BTreeMap<&str, &str> = probe
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let yes = |k: &str| kv.get(k) == Some(&"yes");
    let mut problems = Vec::new();
    let arch = kv.get("arch").copied().unwrap_or("").to_string();
    if needs.arch && !arch.is_empty() && arch != local_arch {
        problems.push(format!(
            "it is {arch} and the binaries uploaded from here are built for {local_arch}: \
             point SYNOD_NODE_BIN (and SYNOD_LAZYFS_BIN) at builds for {arch}"
        ));
    }
    let etcd = kv.get("etcd").map(|s| s.to_string());
    if needs.host_etcd && etcd.is_none() {
        problems.push(
            "it has no etcd on the PATH of an ssh session (--target etcd runs the host's own \
             etcd): install it there (Debian: apt-get install etcd-server), or pass \
             --etcd-bin FILE to upload one"
                .to_string(),
        );
    }
    if needs.iptables {
        if !yes("iptables") {
            problems.push(
                "iptables is not installed (no iptables and iptables-restore on the PATH of \
                 an ssh session): partitions are iptables rules on the hosts; install the \
                 iptables package, or leave partition, one-way and reset out of --nemesis"
                    .to_string(),
            );
        } else if !yes("iptables_works") {
            let why = kv.get("iptables_error").copied().unwrap_or("no error text");
            problems.push(format!(
                "iptables does not work for this user ({why}): partitions need root, \
                 password-less sudo, or CAP_NET_ADMIN; log in as root with --ssh-user root"
            ));
        } else if yes("chain") {
            problems.push(
                "it already has a SYNOD iptables chain: another synod run uses this host, or \
                 a dead one left it; when none runs, remove it with `iptables -D INPUT -j \
                 SYNOD; iptables -D OUTPUT -j SYNOD; iptables -F SYNOD; iptables -X SYNOD`"
                    .to_string(),
            );
        }
    }
    if needs.fuse && !(yes("fuse") && yes("fusermount")) {
        problems.push(
            "it has no FUSE (/dev/fuse, and fusermount3 for a user other than root): power \
             loss goes through the lose-unsynced-writes filesystem on the host; install \
             fuse3, pass --admin-crash to cut power through Synod's own crash endpoint, or \
             leave power-loss out of --nemesis"
                .to_string(),
        );
    }
    let faketime = kv.get("faketime").map(|s| s.to_string());
    if needs.faketime && faketime.is_none() {
        problems.push(
            "it has no libfaketime (--clock-fault faketime preloads it into the node): \
             install the faketime package there, or use --clock-fault admin"
                .to_string(),
        );
    }
    if !yes("root_writable") {
        problems.push(format!(
            "cannot create its run directories under {root}: choose a writable --ssh-dir"
        ));
    }
    if problems.is_empty() {
        Ok(Host {
            sudo: yes("sudo"),
            systemd: yes("systemd"),
            faketime,
            arch,
            etcd,
        })
    } else {
        Err(problems)
    }
}

/// The IPv4 address `name` resolves to here.
fn resolve(name: &str) -> std::result::Result<String, String> {
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(name.to_string());
    }
    let addrs = (name, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {name}: {e}"))?;
    addrs
        .filter(|a| a.is_ipv4())
        .map(|a| a.ip().to_string())
        .next()
        .ok_or_else(|| format!("{name} has no IPv4 address"))
}

impl SshBackend {
    /// Connects to every host and probes it; every host's problems in
    /// one error if any has some.
    pub(super) fn check_hosts(
        config: &SshConfig,
        control_dir: &Path,
        run: &str,
        needs: Needs,
        upload: Option<&str>,
    ) -> Result<Vec<HostNode>> {
        let local_arch = std::env::consts::ARCH;
        let checks: Vec<_> = config
            .hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let session = Session::new(host, i + 1, &config.options, control_dir);
                let root = config.root.clone();
                std::thread::spawn(move || {
                    let found = Self::check_host(&session, needs, local_arch, &root);
                    (session, found)
                })
            })
            .collect();
        let mut nodes = Vec::new();
        let mut problems: Vec<NemesisError> = Vec::new();
        for (i, check) in checks.into_iter().enumerate() {
            let Ok((session, found)) = check.join() else {
                problems.push(NemesisError::Host {
                    host: config.hosts[i].clone(),
                    problem: "its check panicked".into(),
                });
                continue;
            };
            match found {
                Ok((addr, host)) => {
                    let id = NodeName(i as u32 + 1);
                    let dir = format!("{}/{run}-{id}", config.root.trim_end_matches('/'));
                    // Uploaded into the node's directory, or the host's
                    // etcd (the pre-flight insisted on one).
                    let bin = match upload {
                        Some(name) => format!("{dir}/{name}"),
                        None => host.etcd.clone().unwrap_or_else(|| "etcd".into()),
                    };
                    nodes.push(HostNode {
                        id,
                        addr,
                        dir,
                        bin,
                        host,
                        session,
                        state: Mutex::new(NodeState::default()),
                    });
                }
                Err(e) => {
                    session.close();
                    problems.push(e);
                }
            }
        }
        if problems.is_empty() {
            return Ok(nodes);
        }
        for n in &nodes {
            n.session.close();
        }
        if problems.len() == 1 {
            return Err(problems.remove(0));
        }
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Err(NemesisError::Hosts(all.join("; ")))
    }

    /// One host: its address, then the connection, then the probe.
    fn check_host(
        session: &Session,
        needs: Needs,
        local_arch: &str,
        root: &str,
    ) -> Result<(String, Host)> {
        let name = session.hostname()?;
        let addr = resolve(&name).map_err(|e| session.error(Problem::Unreachable(e)))?;
        session.connect().map_err(|p| session.error(p))?;
        let probe = session.run(&remote::probe(root), "the probe")?;
        let host =
            judge(&probe, needs, local_arch, root).map_err(|problems| NemesisError::Host {
                host: session.host.clone(),
                problem: problems.join("; "),
            })?;
        Ok((addr, host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "uid=0\narch=x86_64\nsudo=\niptables=yes\niptables_works=yes\n\
                        fuse=yes\nfusermount=yes\nroot_writable=yes\n";
    const ALL: Needs = Needs {
        iptables: true,
        fuse: true,
        faketime: false,
        host_etcd: false,
        arch: true,
    };

    #[test]
    fn a_host_with_everything_passes() {
        let h = judge(GOOD, ALL, "x86_64", "/tmp").unwrap();
        assert!(!h.sudo && !h.systemd && h.faketime.is_none());
        assert_eq!(h.arch, "x86_64");
    }

    #[test]
    fn a_host_without_iptables_is_refused_with_what_to_do() {
        let probe = GOOD.replace("iptables=yes\niptables_works=yes\n", "");
        let e = judge(&probe, ALL, "x86_64", "/tmp").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("iptables is not installed"), "{e:?}");
        // Without network faults it is not needed.
        let pauses = Needs {
            iptables: false,
            ..ALL
        };
        assert!(judge(&probe, pauses, "x86_64", "/tmp").is_ok());
    }

    #[test]
    fn iptables_that_fails_and_a_leftover_chain_are_refused() {
        let probe = GOOD.replace(
            "iptables_works=yes",
            "iptables_error=Permission denied (you must be root)",
        );
        let e = judge(&probe, ALL, "x86_64", "/tmp").unwrap_err();
        assert!(e[0].contains("you must be root"), "{e:?}");
        let probe = format!("{GOOD}chain=yes\n");
        let e = judge(&probe, ALL, "x86_64", "/tmp").unwrap_err();
        assert!(e[0].contains("already has a SYNOD iptables chain"), "{e:?}");
    }

    #[test]
    fn power_loss_without_fuse_and_a_foreign_arch_are_refused() {
        let probe = GOOD.replace("fuse=yes\n", "").replace("x86_64", "aarch64");
        let e = judge(&probe, ALL, "x86_64", "/tmp").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|p| p.contains("--admin-crash")), "{e:?}");
        assert!(e.iter().any(|p| p.contains("SYNOD_NODE_BIN")), "{e:?}");
    }

    #[test]
    fn faketime_is_needed_only_when_asked_for() {
        let ft = Needs {
            faketime: true,
            ..ALL
        };
        assert!(judge(GOOD, ft, "x86_64", "/tmp").is_err());
        let probe = format!("{GOOD}faketime=/usr/lib/faketime/libfaketime.so.1\n");
        let h = judge(&probe, ft, "x86_64", "/tmp").unwrap();
        assert_eq!(
            h.faketime.as_deref(),
            Some("/usr/lib/faketime/libfaketime.so.1")
        );
    }

    #[test]
    fn etcd_from_the_host_must_be_on_its_path_and_any_arch_will_do() {
        let etcd = Needs {
            host_etcd: true,
            arch: false,
            fuse: false,
            ..ALL
        };
        let e = judge(GOOD, etcd, "x86_64", "/tmp").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("no etcd") && e[0].contains("--etcd-bin"),
            "{e:?}"
        );
        // The host's own etcd runs on the host's architecture.
        let probe = format!("{GOOD}etcd=/usr/bin/etcd\n").replace("x86_64", "aarch64");
        let h = judge(&probe, etcd, "x86_64", "/tmp").unwrap();
        assert_eq!(h.etcd.as_deref(), Some("/usr/bin/etcd"));
    }
}
