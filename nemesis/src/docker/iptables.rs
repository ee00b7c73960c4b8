//! The iptables side of network faults: the rules of a node's `SYNOD`
//! chain for the links in force, as `iptables-restore` text (the ssh
//! backend's hosts take the same text), and their installation in a
//! container's network namespace through `nsenter`, kept as data so a
//! restarted container gets them back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command as StdCommand, Stdio};

use super::{lock, other, pid_alive, run_sync, DockerBackend, CHAIN, NODE_PORT};
use crate::backend::{Link, LinkFault, NodeName};
use crate::error::{NemesisError, Result};

/// The iptables rules a node's chain holds for the links in force, in
/// `iptables-restore` form (`-A SYNOD ...` lines), for peer traffic on
/// `port` (the node port for Synod; etcd's peer port). The ssh backend's
/// hosts take the same rules.
///
/// What `from` sends to `to` is taken to be the connections `from` opens
/// to `to`'s port, both ways: exactly one direction for Synod, whose
/// nodes send on connections of their own. A symmetric cut (a partition,
/// a reset) is both links, so every connection between the two.
pub(crate) fn chain_rules(
    me: NodeName,
    addrs: &BTreeMap<NodeName, String>,
    links: &BTreeMap<Link, LinkFault>,
    port: u16,
) -> String {
    let mut rules = String::new();
    for (link, fault) in links {
        let action = if fault.blackhole {
            "-j DROP"
        } else if fault.reset {
            "-j REJECT --reject-with tcp-reset"
        } else {
            continue;
        };
        // What `from` sends to `to` is TCP to `to`'s port, and its replies.
        let (out_match, in_match) = if link.to == me {
            let Some(peer) = addrs.get(&link.from) else {
                continue;
            };
            (
                format!("-d {peer}/32 -p tcp --sport {port}"),
                format!("-s {peer}/32 -p tcp --dport {port}"),
            )
        } else if link.from == me {
            let Some(peer) = addrs.get(&link.to) else {
                continue;
            };
            (
                format!("-d {peer}/32 -p tcp --dport {port}"),
                format!("-s {peer}/32 -p tcp --sport {port}"),
            )
        } else {
            continue;
        };
        for m in [out_match, in_match] {
            let _ = writeln!(rules, "-A {CHAIN} {m} {action}");
        }
    }
    rules
}

/// Random packet loss rules for `(link, probability)` pairs, for
/// [`DockerBackend::set_loss`].
fn loss_rules(
    me: NodeName,
    addrs: &BTreeMap<NodeName, String>,
    loss: &BTreeMap<Link, f64>,
) -> String {
    let mut rules = String::new();
    for (link, p) in loss {
        if link.to != me && link.from != me {
            continue;
        }
        let peer_id = if link.to == me { link.from } else { link.to };
        let Some(peer) = addrs.get(&peer_id) else {
            continue;
        };
        let (o, i) = if link.to == me {
            ("--sport", "--dport")
        } else {
            ("--dport", "--sport")
        };
        let stat = format!("-m statistic --mode random --probability {p:.4} -j DROP");
        let _ = writeln!(
            rules,
            "-A {CHAIN} -d {peer}/32 -p tcp {o} {NODE_PORT} {stat}"
        );
        let _ = writeln!(
            rules,
            "-A {CHAIN} -s {peer}/32 -p tcp {i} {NODE_PORT} {stat}"
        );
    }
    rules
}

/// Runs iptables in the network namespace of `pid`.
fn iptables(pid: u32, args: &[&str]) -> Result<String> {
    run_sync(
        StdCommand::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "iptables", "-w", "5"])
            .args(args),
        &format!("nsenter -t {pid} -n iptables {}", args.join(" ")),
    )
}

/// Whether our chain exists in the network namespace of `pid`.
pub(crate) fn chain_exists(pid: u32) -> bool {
    iptables(pid, &["-S", CHAIN]).is_ok()
}

pub(crate) fn remove_chain(pid: u32) -> Result<()> {
    for hook in ["INPUT", "OUTPUT"] {
        while iptables(pid, &["-D", hook, "-j", CHAIN]).is_ok() {}
    }
    let _ = iptables(pid, &["-F", CHAIN]);
    let _ = iptables(pid, &["-X", CHAIN]);
    Ok(())
}

/// Creates our chain in the namespace of `pid`, jumped to first from
/// `INPUT` and `OUTPUT`.
fn add_chain(pid: u32) -> Result<()> {
    // -N fails if the chain exists (a previous run of ours in this
    // namespace cannot be, but be idempotent); the jumps are
    // checked before they are inserted, so there is one of each.
    let _ = iptables(pid, &["-N", CHAIN]);
    for hook in ["INPUT", "OUTPUT"] {
        if iptables(pid, &["-C", hook, "-j", CHAIN]).is_err() {
            iptables(pid, &["-I", hook, "1", "-j", CHAIN])?;
        }
    }
    Ok(())
}

/// The `iptables-restore --noflush` input that makes our chain hold
/// exactly `rules`: declaring the chain flushes it, `--noflush` leaves
/// every other chain alone. The ssh backend feeds its hosts the same.
pub(crate) fn restore_input(rules: &str) -> String {
    format!("*filter\n:{CHAIN} - [0:0]\n{rules}COMMIT\n")
}

/// Replaces the rules of our chain in the namespace of `pid` (node
/// `node`'s) with `rules`, in one atomic step.
fn restore_chain(pid: u32, node: NodeName, rules: &str) -> Result<()> {
    let input = restore_input(rules);
    let mut child = StdCommand::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "iptables-restore",
            "-w",
            "5",
            "--noflush",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NemesisError::io("cannot run nsenter iptables-restore", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| NemesisError::io("cannot feed iptables-restore", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NemesisError::io("iptables-restore", e))?;
    if !out.status.success() {
        return Err(other(format!(
            "iptables-restore in {node}'s namespace failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl DockerBackend {
    /// Drops packets on `link` with `probability` (0 heals), with the
    /// `statistic` match; kept with the other link rules.
    pub fn set_loss(&self, link: Link, probability: f64) -> Result<()> {
        let mut loss = lock(&self.loss);
        if probability <= 0.0 {
            loss.remove(&link);
        } else {
            loss.insert(link, probability.min(1.0));
        }
        drop(loss);
        self.apply(link.from)?;
        self.apply(link.to)
    }

    fn addrs(&self) -> BTreeMap<NodeName, String> {
        lock(&self.containers)
            .iter()
            .map(|c| (c.id, c.addr.clone()))
            .collect()
    }

    /// Makes `node`'s chain hold exactly the rules for the links in force;
    /// with none, deletes the chain and its jumps. Does nothing while the
    /// node is down: a restart re-applies.
    pub(super) fn apply(&self, node: NodeName) -> Result<()> {
        let c = self.container(node)?;
        let Some(pid) = *lock(&c.pid) else {
            return Ok(());
        };
        if !pid_alive(pid) {
            return Ok(());
        }
        let addrs = self.addrs();
        let mut rules = chain_rules(node, &addrs, &lock(&self.links), NODE_PORT);
        rules.push_str(&loss_rules(node, &addrs, &lock(&self.loss)));
        let mut chained = lock(&c.chained);
        if rules.is_empty() {
            if *chained {
                remove_chain(pid)?;
                *chained = false;
            }
            return Ok(());
        }
        if !*chained {
            add_chain(pid)?;
            *chained = true;
        }
        restore_chain(pid, node, &rules)
    }

    /// The rules in `node`'s chain as `iptables -S SYNOD` prints them;
    /// `None` if the chain does not exist.
    pub fn chain(&self, node: NodeName) -> Result<Option<String>> {
        let pid = self
            .pid(node)
            .ok_or_else(|| other(format!("{node} is not running")))?;
        Ok(iptables(pid, &["-S", CHAIN]).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> BTreeMap<NodeName, String> {
        (1..=3)
            .map(|k| (NodeName(k), format!("172.28.5.1{k}")))
            .collect()
    }

    #[test]
    fn a_one_way_fault_matches_only_that_direction_on_both_ends() {
        let link = Link {
            from: NodeName(1),
            to: NodeName(2),
        };
        let links = BTreeMap::from([(
            link,
            LinkFault {
                blackhole: true,
                ..LinkFault::default()
            },
        )]);
        let at1 = chain_rules(NodeName(1), &addrs(), &links, NODE_PORT);
        assert_eq!(
            at1,
            "-A SYNOD -d 172.28.5.12/32 -p tcp --dport 7000 -j DROP\n\
             -A SYNOD -s 172.28.5.12/32 -p tcp --sport 7000 -j DROP\n"
        );
        let at2 = chain_rules(NodeName(2), &addrs(), &links, NODE_PORT);
        assert_eq!(
            at2,
            "-A SYNOD -d 172.28.5.11/32 -p tcp --sport 7000 -j DROP\n\
             -A SYNOD -s 172.28.5.11/32 -p tcp --dport 7000 -j DROP\n"
        );
        assert_eq!(chain_rules(NodeName(3), &addrs(), &links, NODE_PORT), "");
    }

    #[test]
    fn a_partition_on_etcd_cuts_every_connection_on_its_peer_port() {
        let cut = LinkFault {
            blackhole: true,
            ..LinkFault::default()
        };
        let links = BTreeMap::from([
            (
                Link {
                    from: NodeName(1),
                    to: NodeName(2),
                },
                cut,
            ),
            (
                Link {
                    from: NodeName(2),
                    to: NodeName(1),
                },
                cut,
            ),
        ]);
        // Connections either end opened, and nothing on the client port.
        assert_eq!(
            chain_rules(NodeName(1), &addrs(), &links, 2380),
            "-A SYNOD -d 172.28.5.12/32 -p tcp --dport 2380 -j DROP\n\
             -A SYNOD -s 172.28.5.12/32 -p tcp --sport 2380 -j DROP\n\
             -A SYNOD -d 172.28.5.12/32 -p tcp --sport 2380 -j DROP\n\
             -A SYNOD -s 172.28.5.12/32 -p tcp --dport 2380 -j DROP\n"
        );
    }

    #[test]
    fn loss_uses_the_statistic_match() {
        let link = Link {
            from: NodeName(3),
            to: NodeName(1),
        };
        let rules = loss_rules(NodeName(1), &addrs(), &BTreeMap::from([(link, 0.25)]));
        assert!(rules.contains("-m statistic --mode random --probability 0.2500 -j DROP"));
        assert_eq!(rules.lines().count(), 2);
    }
}
