//! One host reached through OpenSSH's `ssh`: a ControlMaster connection
//! opened once, then every command multiplexed over its socket, so a
//! command costs a round trip and not a handshake.
//!
//! Every command is a shell script fed to `sh -s` on the host's stdin: no
//! argument is ever re-parsed by the remote shell, so nothing needs
//! quoting but the paths the scripts name ([`quote`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use crate::error::{NemesisError, Result};

/// How to reach every host: what `ssh` is told besides the host.
#[derive(Clone, Debug, Default)]
pub struct SshOptions {
    /// `-l USER`; else the user's ssh config or the local user name.
    pub user: Option<String>,
    /// `-i FILE` with `IdentitiesOnly`: only this key is offered, so a
    /// wrong key fails instead of an agent's key quietly succeeding.
    pub key: Option<PathBuf>,
    /// `-p PORT`; else the ssh config's or 22.
    pub port: Option<u16>,
    /// The only known_hosts file consulted (the system-wide one is then
    /// ignored too); else the user's and the system's, as ssh does.
    pub known_hosts: Option<PathBuf>,
    /// How long a connection may take before the host counts as
    /// unreachable.
    pub connect_timeout: Duration,
}

/// What went wrong reaching a host, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// No connection: refused, no route, timed out, unknown name.
    Unreachable(String),
    /// The host key is not in known_hosts (or no longer matches it):
    /// there is no trust on first use.
    HostKey(String),
    /// The server turned every offered key down.
    Auth(String),
    /// Anything else `ssh` said.
    Other(String),
}

impl Problem {
    /// Sorts `ssh`'s own error output into the problem a user must fix.
    pub fn classify(stderr: &str) -> Problem {
        // One line: ssh ends its lines with \r\n.
        let text = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        let lower = text.to_lowercase();
        let has = |s: &str| lower.contains(s);
        if has("host key verification failed")
            || has("no matching host key")
            || has("host key is known")
            || has("remote host identification has changed")
            || has("host key for") && has("has changed")
        {
            Problem::HostKey(text)
        } else if has("permission denied") || has("too many authentication failures") {
            Problem::Auth(text)
        } else if has("connection refused")
            || has("no route to host")
            || has("timed out")
            || has("could not resolve hostname")
            || has("network is unreachable")
            || has("name or service not known")
            || has("connection closed by")
            || has("connection reset")
        {
            Problem::Unreachable(text)
        } else {
            Problem::Other(text)
        }
    }

    /// The sentence for the error message, after the host's name.
    pub fn describe(&self, known_hosts: Option<&Path>) -> String {
        match self {
            Problem::Unreachable(e) => format!("unreachable over ssh ({e})"),
            Problem::HostKey(e) => format!(
                "its host key is not in {} or does not match it ({e}); add the host's key \
                 there (e.g. `ssh-keyscan HOST >> FILE`, after checking its fingerprint): \
                 hosts are never trusted on first use",
                known_hosts
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "your known_hosts files".into())
            ),
            Problem::Auth(e) => format!(
                "authentication failed ({e}): the key (--ssh-key) or user (--ssh-user) is \
                 wrong, or the key is not in the user's authorized_keys"
            ),
            Problem::Other(e) => format!("ssh failed: {e}"),
        }
    }
}

/// Quotes `s` for a POSIX shell: single quotes, each `'` as `'\''`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One host and its ControlMaster socket.
pub(crate) struct Session {
    /// The host as the user named it (an address, a name, an ssh alias).
    pub(crate) host: String,
    /// `-o`, `-l`, `-i`, `-p` arguments shared by every invocation.
    args: Vec<String>,
    /// The master's socket (in a directory of ours, mode 0700).
    control: PathBuf,
    /// Where the master's stderr goes: a pipe would be held open by the
    /// master for as long as it lives.
    master_log: PathBuf,
    connect_timeout: Duration,
    /// For the message when the host key is unknown.
    known_hosts: Option<PathBuf>,
}

impl Session {
    /// A session for `host` with its control socket in `control_dir`
    /// (named after `index`, so it stays short); nothing connects yet.
    pub(crate) fn new(
        host: &str,
        index: usize,
        options: &SshOptions,
        control_dir: &Path,
    ) -> Session {
        let timeout = options.connect_timeout.as_secs().max(1);
        let mut args: Vec<String> = [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "LogLevel=ERROR",
            "ServerAliveInterval=5",
            "ServerAliveCountMax=3",
        ]
        .iter()
        .flat_map(|o| ["-o".to_string(), o.to_string()])
        .collect();
        args.extend(["-o".into(), format!("ConnectTimeout={timeout}")]);
        if let Some(k) = &options.known_hosts {
            args.extend(["-o".into(), format!("UserKnownHostsFile={}", k.display())]);
            args.extend(["-o".into(), "GlobalKnownHostsFile=/dev/null".into()]);
        }
        if let Some(key) = &options.key {
            args.extend(["-i".into(), key.display().to_string()]);
            args.extend(["-o".into(), "IdentitiesOnly=yes".into()]);
        }
        if let Some(u) = &options.user {
            args.extend(["-l".into(), u.clone()]);
        }
        if let Some(p) = options.port {
            args.extend(["-p".into(), p.to_string()]);
        }
        Session {
            host: host.to_string(),
            args,
            control: control_dir.join(format!("h{index}")),
            master_log: control_dir.join(format!("h{index}.log")),
            connect_timeout: options.connect_timeout,
            known_hosts: options.known_hosts.clone(),
        }
    }

    /// The name ssh resolves the host to (`ssh -G`: aliases, `HostName`
    /// in the user's config), without connecting.
    pub(crate) fn hostname(&self) -> Result<String> {
        let out = StdCommand::new("ssh")
            .arg("-G")
            .args(&self.args)
            .arg(&self.host)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| NemesisError::io("cannot run ssh (is openssh-client installed?)", e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("hostname "))
            .map(|h| h.trim().to_string())
            .ok_or_else(|| self.error(Problem::Other(String::from_utf8_lossy(&out.stderr).into())))
    }

    /// Opens the master connection: verifies the host key and logs in.
    pub(crate) fn connect(&self) -> std::result::Result<(), Problem> {
        let _ = std::fs::remove_file(&self.master_log);
        let log = std::fs::File::create(&self.master_log)
            .map_err(|e| Problem::Other(format!("cannot create the ssh log: {e}")))?;
        let status = StdCommand::new("ssh")
            .args(["-M", "-N", "-f", "-o", "ControlPersist=yes"])
            .arg("-S")
            .arg(&self.control)
            .args(&self.args)
            .arg(&self.host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .status()
            .map_err(|e| Problem::Other(format!("cannot run ssh: {e}")))?;
        if status.success() {
            return Ok(());
        }
        let said = std::fs::read_to_string(&self.master_log).unwrap_or_default();
        Err(Problem::classify(&said))
    }

    /// Closes the master connection, if it is open.
    pub(crate) fn close(&self) {
        let _ = StdCommand::new("ssh")
            .arg("-S")
            .arg(&self.control)
            .args(["-O", "exit"])
            .arg(&self.host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(&self.master_log);
    }

    /// `ssh` over the master (or, if it died, a fresh connection with
    /// the same checks) running `remote`, a command line the host's
    /// shell parses.
    fn command(&self, remote: &str) -> StdCommand {
        let mut cmd = StdCommand::new("ssh");
        cmd.args(["-o", "ControlMaster=no", "-S"])
            .arg(&self.control)
            .args(&self.args)
            .arg(&self.host)
            .arg(remote);
        cmd
    }

    /// The error naming this host and `problem`.
    pub(crate) fn error(&self, problem: Problem) -> NemesisError {
        NemesisError::Host {
            host: self.host.clone(),
            problem: problem.describe(self.known_hosts.as_deref()),
        }
    }

    /// Runs `script` on the host; its stdout, or an error naming the host
    /// with its stderr.
    pub(crate) fn run(&self, script: &str, what: &str) -> Result<String> {
        self.run_to(script, what, Stdio::piped())
    }

    /// Runs `script` with its stdout going to `stdout` (e.g. a file).
    pub(crate) fn run_to(&self, script: &str, what: &str, stdout: Stdio) -> Result<String> {
        self.exec("sh -s", script.as_bytes(), what, stdout)
    }

    /// Runs `remote` with `input` on its stdin.
    fn exec(&self, remote: &str, input: &[u8], what: &str, stdout: Stdio) -> Result<String> {
        let started = std::time::Instant::now();
        let r = self.exec_inner(remote, input, what, stdout);
        tracing::debug!(host = %self.host, what, took = ?started.elapsed(), ok = r.is_ok(), "ssh");
        r
    }

    fn exec_inner(&self, remote: &str, input: &[u8], what: &str, stdout: Stdio) -> Result<String> {
        let mut child = self
            .command(remote)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| NemesisError::io("cannot run ssh (is openssh-client installed?)", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A script that exits early closes its stdin: the error then
            // is its exit status, read below.
            let _ = stdin.write_all(input);
        }
        let deadline = std::time::Instant::now() + self.connect_timeout + Duration::from_secs(120);
        let out = wait_bounded(child, deadline)
            .map_err(|e| NemesisError::io(format!("ssh to {}", self.host), e))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        // 255 is ssh's own failure; anything else is the script's.
        let problem = if out.status.code() == Some(255) {
            Problem::classify(&stderr).describe(self.known_hosts.as_deref())
        } else {
            format!("{what} failed ({}): {stderr}", out.status)
        };
        Err(NemesisError::Host {
            host: self.host.clone(),
            problem,
        })
    }

    /// The async form of [`Session::run`], for the backend's async faults.
    pub(crate) async fn run_async(&self, script: &str, what: &str) -> Result<String> {
        let session = self.clone_handle();
        let (script, what) = (script.to_string(), what.to_string());
        tokio::task::spawn_blocking(move || session.run(&script, &what))
            .await
            .map_err(|e| NemesisError::io("ssh task", std::io::Error::other(e.to_string())))?
    }

    fn clone_handle(&self) -> Session {
        Session {
            host: self.host.clone(),
            args: self.args.clone(),
            control: self.control.clone(),
            master_log: self.master_log.clone(),
            connect_timeout: self.connect_timeout,
            known_hosts: self.known_hosts.clone(),
        }
    }

    /// Copies the local file `from` to `to` on the host, mode 0755. The
    /// file goes on ssh's stdin to `cat`, a command of its own (a shell
    /// reading a script from the same stdin might read ahead into it).
    pub(crate) fn upload(&self, from: &Path, to: &str) -> Result<()> {
        let data = std::fs::read(from)
            .map_err(|e| NemesisError::io(format!("cannot read {}", from.display()), e))?;
        let tmp = quote(&format!("{to}.part"));
        let remote = format!("cat > {tmp} && chmod 0755 {tmp} && mv {tmp} {}", quote(to));
        self.exec(&remote, &data, "upload", Stdio::piped())
            .map(|_| ())
    }
}

/// Waits for `child`, killing it at `deadline`: a host that stops
/// answering mid-command must not hang the run.
fn wait_bounded(
    mut child: std::process::Child,
    deadline: std::time::Instant,
) -> std::io::Result<std::process::Output> {
    use std::io::Read as _;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(std::process::Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_errors_are_sorted_into_what_to_fix() {
        let unknown = "No ED25519 host key is known for 10.77.0.11 and you have requested \
                       strict checking.\r\nHost key verification failed.";
        assert!(matches!(Problem::classify(unknown), Problem::HostKey(_)));
        let denied = "root@10.77.0.11: Permission denied (publickey).";
        assert!(matches!(Problem::classify(denied), Problem::Auth(_)));
        for e in [
            "ssh: connect to host 10.77.0.99 port 22: No route to host",
            "ssh: connect to host 10.77.0.11 port 2200: Connection refused",
            "ssh: connect to host 10.77.0.99 port 22: Connection timed out",
            "ssh: Could not resolve hostname nowhere: Name or service not known",
        ] {
            assert!(
                matches!(Problem::classify(e), Problem::Unreachable(_)),
                "{e}"
            );
        }
        assert!(matches!(Problem::classify("weird"), Problem::Other(_)));
    }

    #[test]
    fn the_messages_say_what_to_do() {
        let p = Problem::HostKey("Host key verification failed.".into());
        let m = p.describe(Some(Path::new("/tmp/kh")));
        assert!(
            m.contains("/tmp/kh") && m.contains("never trusted on first use"),
            "{m}"
        );
        let m = Problem::Auth("Permission denied (publickey).".into()).describe(None);
        assert!(m.contains("--ssh-key"), "{m}");
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
