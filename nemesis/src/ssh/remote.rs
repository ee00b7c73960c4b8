//! The shell scripts the ssh backend runs on a host, one per action, all
//! POSIX `sh` with nothing beyond coreutils, `iptables` and (for the
//! filesystem) `fusermount`. Each starts by naming the node's directory
//! `D`; the helpers below every script know the node only by it.
//!
//! A node's directory on its host (`ROOT/<run>-nK`, one per node, so
//! hosts that share a filesystem never share a directory):
//!
//! - `synod-node` (or `etcd` from `--etcd-bin`; and `synod-lazyfs`): the
//!   uploaded binaries (an etcd member may run the host's own `etcd`);
//! - `token` (mode 0600): the cluster token, read into the node's
//!   environment by `run.sh`, so it is on no command line;
//! - `run.sh`: writes its pid to `pid`, then `exec`s the node with its
//!   output appended to `node.log`;
//! - `data/`: the node's (or etcd member's) data directory (with power loss, the mount of
//!   the lose-unsynced-writes filesystem, its state in `fs/`, its pid in
//!   `fs.pid`, its count of power losses done in `fs.ack`);
//! - `faketime`: libfaketime's control file, with the clock fault.

use std::fmt::Write as _;

use super::session::quote;

/// What every script starts with: the directory, the privilege prefix
/// for iptables, and the helpers.
fn prelude(dir: &str, sudo: bool) -> String {
    let d = quote(dir);
    let sudo = if sudo { "sudo -n " } else { "" };
    format!(
        "D={d}\n\
         IPT='{sudo}iptables -w 5'\n\
         # Whether pid $1 is this directory's node (not a reused pid, not a zombie): its\n\
         # command line names the directory (the binary in it, or an etcd's --data-dir).\n\
         alive() {{ [ -n \"$1\" ] && tr '\\0' ' ' < /proc/$1/cmdline 2>/dev/null | grep -qF \"$D/\"; }}\n\
         nodepid() {{ cat \"$D/pid\" 2>/dev/null || true; }}\n\
         # Kills the node with signal $1, waiting up to $2 hundredths of a second.\n\
         stop() {{\n  p=$(nodepid)\n  alive \"$p\" || return 0\n  kill -CONT \"$p\" 2>/dev/null || true\n  \
         kill -\"$1\" \"$p\" 2>/dev/null || true\n  i=0\n  while alive \"$p\"; do\n    i=$((i+1))\n    \
         [ $i -gt \"$2\" ] && return 1\n    sleep 0.01\n  done\n}}\n"
    )
}

/// What a host has, as `key=value` lines ([`super::preflight`] reads
/// them): its user and architecture, iptables and whether it works,
/// a SYNOD chain already there, FUSE, systemd, libfaketime, its own
/// `etcd`, and whether `root` can hold the run's directories.
pub(crate) fn probe(root: &str) -> String {
    let r = quote(root);
    format!(
        "uid=$(id -u); echo uid=$uid\n\
         echo arch=$(uname -m)\n\
         SUDO=; [ \"$uid\" = 0 ] || {{ sudo -n true 2>/dev/null && SUDO='sudo -n '; }}\n\
         echo sudo=${{SUDO:+yes}}\n\
         if command -v iptables >/dev/null 2>&1 && command -v iptables-restore >/dev/null 2>&1; then\n  \
         echo iptables=yes\n  \
         if err=$($SUDO iptables -w 5 -S INPUT 2>&1 >/dev/null); then echo iptables_works=yes; \
         else echo \"iptables_error=$(echo $err | head -c 300)\"; fi\n  \
         $SUDO iptables -w 5 -S SYNOD >/dev/null 2>&1 && echo chain=yes\n\
         fi\n\
         [ -c /dev/fuse ] && echo fuse=yes\n\
         {{ [ \"$uid\" = 0 ] || command -v fusermount3 >/dev/null 2>&1 || command -v fusermount >/dev/null 2>&1; }} && echo fusermount=yes\n\
         [ -d /run/systemd/system ] && [ \"$uid\" = 0 ] && command -v systemd-run >/dev/null 2>&1 && echo systemd=yes\n\
         for f in /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do\n  \
         [ -f \"$f\" ] && {{ echo faketime=$f; break; }}\n\
         done\n\
         e=$(command -v etcd 2>/dev/null) && echo etcd=$e\n\
         mkdir -p {r} 2>/dev/null && [ -w {r} ] && echo root_writable=yes\n\
         true\n"
    )
}

/// Makes the node's directory (empty, private) and its data directory.
pub(crate) fn make_dir(dir: &str) -> String {
    let d = quote(dir);
    format!("set -e\nrm -rf {d}\nmkdir -p -m 0700 {d}\nmkdir -p {d}/data\n")
}

/// Writes the token and `run.sh`: `node_cmd` is the node's command line,
/// already quoted, `env` extra `NAME=value` exports (libfaketime).
pub(crate) fn write_start(
    dir: &str,
    token: &str,
    node_cmd: &str,
    env: &[(String, String)],
) -> String {
    let d = quote(dir);
    let mut run = String::from(
        "#!/bin/sh\n# Written by synod run: one node, supervised by nohup or systemd.\n",
    );
    let _ = writeln!(run, "echo $$ > {d}/pid.tmp && mv {d}/pid.tmp {d}/pid");
    let _ = writeln!(run, "SYNOD_TOKEN=$(cat {d}/token); export SYNOD_TOKEN");
    for (k, v) in env {
        let _ = writeln!(run, "{k}={}; export {k}", quote(v));
    }
    let _ = writeln!(run, "exec {node_cmd} >> {d}/node.log 2>&1");
    // The heredoc delimiters are quoted: nothing in them is expanded.
    format!(
        "set -e\numask 077\ncat > {d}/token <<'SYNOD_TOKEN_EOF'\n{token}\nSYNOD_TOKEN_EOF\n\
         cat > {d}/run.sh <<'SYNOD_RUN_EOF'\n{run}SYNOD_RUN_EOF\nchmod 0700 {d}/run.sh\n"
    )
}

/// Starts the node under its supervisor and prints its pid: a transient
/// systemd unit `unit` where systemd runs, else `nohup setsid`, detached
/// from the ssh session either way.
pub(crate) fn launch(dir: &str, unit: Option<&str>) -> String {
    let mut s = prelude(dir, false);
    s.push_str("p=$(nodepid)\nif alive \"$p\"; then echo \"$p\"; exit 0; fi\nrm -f \"$D/pid\"\n");
    match unit {
        Some(u) => {
            let u = quote(u);
            let _ = writeln!(
                s,
                "systemctl reset-failed {u} 2>/dev/null || true\n\
                 systemd-run --quiet --collect --unit={u} sh \"$D/run.sh\""
            );
        }
        None => s.push_str("nohup setsid sh \"$D/run.sh\" </dev/null >/dev/null 2>&1 &\n"),
    }
    s.push_str(
        "i=0\nwhile [ ! -s \"$D/pid\" ]; do\n  i=$((i+1))\n  \
         [ $i -gt 1000 ] && { echo 'the node wrote no pid file within 10 s' >&2; tail -n 5 \"$D/node.log\" >&2; exit 1; }\n  \
         sleep 0.01\ndone\ncat \"$D/pid\"\n",
    );
    s
}

/// Whether the node runs: prints `running` or `down`.
pub(crate) fn status(dir: &str) -> String {
    let mut s = prelude(dir, false);
    s.push_str("if alive \"$(nodepid)\"; then echo running; else echo down; fi\n");
    s
}

/// Sends `signal` (`STOP`, `CONT`) to the node, if it runs.
pub(crate) fn signal(dir: &str, signal: &str) -> String {
    let mut s = prelude(dir, false);
    let _ = writeln!(
        s,
        "p=$(nodepid)\nif alive \"$p\"; then kill -{signal} \"$p\"; fi"
    );
    s
}

/// Kills the node (SIGKILL, continuing it first) and waits until it is
/// gone; with `term`, SIGTERM first and SIGKILL after 5 s.
pub(crate) fn kill(dir: &str, term: bool) -> String {
    let mut s = prelude(dir, false);
    if term {
        s.push_str("stop TERM 500 || ");
    }
    s.push_str(
        "stop KILL 1000 || { echo \"the node (pid $(nodepid)) survives SIGKILL\" >&2; exit 1; }\n",
    );
    s
}

/// Waits up to `hundredths` for the node to exit by itself; prints
/// `exited` or `running`.
pub(crate) fn wait_exit(dir: &str, hundredths: u32) -> String {
    let mut s = prelude(dir, false);
    let _ = writeln!(
        s,
        "p=$(nodepid)\ni=0\nwhile alive \"$p\" && [ $i -lt {hundredths} ]; do i=$((i+1)); sleep 0.01; done\n\
         if alive \"$p\"; then echo running; else echo exited; fi"
    );
    s
}

/// Makes the host's SYNOD chain hold exactly `rules` (`-A SYNOD ...`
/// lines), jumped to first from INPUT and OUTPUT; with no rules, removes
/// the chain and its jumps. One `iptables-restore --noflush` replaces
/// the chain's rules at once and leaves every other chain alone.
pub(crate) fn chain(dir: &str, sudo: bool, rules: &str) -> String {
    let mut s = prelude(dir, sudo);
    if rules.is_empty() {
        s.push_str(&unchain());
        return s;
    }
    let sudo = if sudo { "sudo -n " } else { "" };
    let input = crate::docker::iptables::restore_input(rules);
    let _ = write!(
        s,
        "set -e\n$IPT -N SYNOD 2>/dev/null || true\n\
         for h in INPUT OUTPUT; do $IPT -C $h -j SYNOD 2>/dev/null || $IPT -I $h 1 -j SYNOD; done\n\
         {sudo}iptables-restore -w 5 --noflush <<'SYNOD_RULES_EOF'\n{input}SYNOD_RULES_EOF\n"
    );
    s
}

/// Deletes the SYNOD chain and its jumps, if they exist.
fn unchain() -> String {
    "for h in INPUT OUTPUT; do while $IPT -D $h -j SYNOD 2>/dev/null; do :; done; done\n\
     $IPT -F SYNOD 2>/dev/null || true\n$IPT -X SYNOD 2>/dev/null || true\n"
        .to_string()
}

/// Mounts the lose-unsynced-writes filesystem at `data/` (state in
/// `fs/`), with the uploaded `synod-lazyfs` detached like the node, and
/// waits until the mount is there.
pub(crate) fn mount(dir: &str, lie: bool) -> String {
    let mut s = prelude(dir, false);
    let fsync = if lie { "lie" } else { "honest" };
    let _ = write!(
        s,
        "nohup setsid \"$D/synod-lazyfs\" --mountpoint \"$D/data\" --state \"$D/fs\" --fsync {fsync} \
         --ack \"$D/fs.ack\" --pid-file \"$D/fs.pid\" </dev/null >>\"$D/fs.log\" 2>&1 &\n\
         i=0\nuntil grep -qF \" $D/data fuse\" /proc/self/mounts; do\n  i=$((i+1))\n  \
         [ $i -gt 1000 ] && {{ echo 'the lose-unsynced-writes filesystem did not mount within 10 s:' >&2; \
         tail -n 5 \"$D/fs.log\" >&2; exit 1; }}\n  sleep 0.01\ndone\n"
    );
    s
}

/// Power loss: the node killed, then the filesystem told to forget what
/// was not synced (SIGUSR1); waits for its acknowledgement in `fs.ack`.
pub(crate) fn power_loss(dir: &str) -> String {
    let mut s = kill(dir, false);
    s.push_str(
        "a=$(cat \"$D/fs.ack\" 2>/dev/null || echo 0)\n\
         kill -USR1 \"$(cat \"$D/fs.pid\")\"\n\
         i=0\nwhile [ \"$(cat \"$D/fs.ack\" 2>/dev/null || echo 0)\" = \"$a\" ]; do\n  i=$((i+1))\n  \
         [ $i -gt 1000 ] && { echo 'the filesystem did not acknowledge the power loss within 10 s' >&2; exit 1; }\n  \
         sleep 0.01\ndone\n",
    );
    s
}

/// Writes libfaketime's control file (whole, then renamed).
pub(crate) fn set_clock(dir: &str, spec: &str) -> String {
    let d = quote(dir);
    format!(
        "printf '%s' {} > {d}/faketime.tmp && mv {d}/faketime.tmp {d}/faketime\n",
        quote(spec)
    )
}

/// Everything this node's run left on the host, gone: the node killed
/// (its systemd unit stopped), the chain removed, the filesystem
/// unmounted, the directory deleted. Every step runs whatever the one
/// before did; the status says whether anything is left.
pub(crate) fn teardown(dir: &str, sudo: bool, unit: Option<&str>) -> String {
    let mut s = prelude(dir, sudo);
    s.push_str("left=\nstop KILL 1000 || left=\"$left node-process\"\n");
    if let Some(u) = unit {
        let u = quote(u);
        let _ = writeln!(
            s,
            "systemctl stop {u} 2>/dev/null || true\nsystemctl reset-failed {u} 2>/dev/null || true"
        );
    }
    s.push_str(&unchain());
    s.push_str(
        "$IPT -S SYNOD >/dev/null 2>&1 && left=\"$left SYNOD-chain\"\n\
         if [ -s \"$D/fs.pid\" ]; then\n  f=$(cat \"$D/fs.pid\")\n  kill -TERM \"$f\" 2>/dev/null || true\n  \
         i=0\n  while grep -qF \" $D/data \" /proc/self/mounts && [ $i -lt 500 ]; do i=$((i+1)); sleep 0.01; done\nfi\n\
         if grep -qF \" $D/data \" /proc/self/mounts; then\n  \
         fusermount3 -u -z \"$D/data\" 2>/dev/null || fusermount -u -z \"$D/data\" 2>/dev/null || umount -l \"$D/data\" 2>/dev/null || true\nfi\n\
         grep -qF \" $D/data \" /proc/self/mounts && left=\"$left mount\"\n\
         rm -rf \"$D\" 2>/dev/null\n[ -e \"$D\" ] && left=\"$left directory\"\n\
         if [ -n \"$left\" ]; then echo \"left behind:$left\" >&2; exit 1; fi\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Runs a script with the local `sh`, as the host's would.
    fn sh(script: &str) -> (bool, String, String) {
        use std::io::Write as _;
        let mut child = Command::new("sh")
            .arg("-s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    }

    /// The process scripts against a stand-in node (`sleep`), on this
    /// machine: start detached, pause, kill, and nothing left.
    #[test]
    fn a_node_starts_detached_and_is_killed_by_its_pid() {
        let tmp = std::env::temp_dir().join(format!("synod-ssh-remote-{}", std::process::id()));
        let dir = tmp.join("run-n1").display().to_string();
        assert!(sh(&make_dir(&dir)).0);
        // The stand-in node: `sleep` copied in, so its command line names
        // the directory as the real node's does.
        std::fs::copy("/bin/sleep", format!("{dir}/synod-node")).unwrap();
        let cmd = format!("{}/synod-node 60", quote(&dir));
        let (ok, _, err) = sh(&write_start(&dir, "secret'token", &cmd, &[]));
        assert!(ok, "{err}");
        let token = std::fs::read_to_string(format!("{dir}/token")).unwrap();
        assert_eq!(token, "secret'token\n");
        let (ok, pid, err) = sh(&launch(&dir, None));
        assert!(ok, "{err}");
        let pid: u32 = pid.parse().unwrap();
        assert_eq!(sh(&status(&dir)).1, "running");
        // The node is not our child: it was detached (setsid).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        assert_eq!(fields[3], pid.to_string(), "its own session: {stat}");
        assert!(sh(&signal(&dir, "STOP")).0);
        // The signal is delivered asynchronously: the state follows soon.
        let stopped = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") T "))
        });
        assert!(stopped, "SIGSTOP did not stop {pid}");
        // Launching again while it runs starts nothing new.
        assert_eq!(sh(&launch(&dir, None)).1, pid.to_string());
        let (ok, _, err) = sh(&kill(&dir, false));
        assert!(ok, "{err}");
        assert_eq!(sh(&status(&dir)).1, "down");
        // Teardown as an unprivileged user may not reach iptables; the
        // directory must go whatever it says.
        let _ = sh(&teardown(&dir, false, None));
        assert!(!std::path::Path::new(&dir).exists());
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn an_empty_rule_set_removes_the_chain() {
        let s = chain("/tmp/x", false, "");
        assert!(
            s.contains("-X SYNOD") && !s.contains("iptables-restore"),
            "{s}"
        );
        let s = chain("/tmp/x", true, "-A SYNOD -s 10.0.0.2/32 -j DROP\n");
        assert!(s.contains("sudo -n iptables-restore -w 5 --noflush"), "{s}");
        assert!(
            s.contains(":SYNOD - [0:0]\n-A SYNOD -s 10.0.0.2/32 -j DROP\nCOMMIT"),
            "{s}"
        );
    }
}
