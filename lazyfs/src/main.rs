//! `synod-lazyfs`: the lose-unsynced-writes filesystem as a process of its
//! own, for the ssh backend's hosts, where the bench cannot hold a
//! [`synod_lazyfs::Mount`] in its own memory.
//!
//! ```text
//! synod-lazyfs --mountpoint DIR --state DIR [--fsync honest|lie]
//!              [--ack FILE] [--pid-file FILE]
//! ```
//!
//! It mounts, writes its pid to `--pid-file`, and then waits for signals:
//! `SIGUSR1` is a power loss (every change not synced is forgotten; the
//! number of power losses done so far is then written to `--ack`, so the
//! one who signalled knows it is over), `SIGTERM`, `SIGINT` or `SIGHUP`
//! unmount and exit. Kill the processes using the mount before a power
//! loss, as [`synod_lazyfs::Mount::power_loss`] asks.

use std::path::PathBuf;
use std::process::ExitCode;

use synod_lazyfs::{Config, Fsync, Metadata, Mount};

const USAGE: &str = "usage: synod-lazyfs --mountpoint DIR --state DIR [--fsync honest|lie] \
                     [--ack FILE] [--pid-file FILE]";

#[derive(Debug)]
struct Args {
    config: Config,
    ack: Option<PathBuf>,
    pid_file: Option<PathBuf>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut mountpoint, mut state, mut ack, mut pid_file) = (None, None, None, None);
    let mut fsync = Fsync::Honest;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value; {USAGE}"));
        match flag.as_str() {
            "--mountpoint" => mountpoint = Some(PathBuf::from(value()?)),
            "--state" => state = Some(PathBuf::from(value()?)),
            "--ack" => ack = Some(PathBuf::from(value()?)),
            "--pid-file" => pid_file = Some(PathBuf::from(value()?)),
            "--fsync" => {
                fsync = match value()?.as_str() {
                    "honest" => Fsync::Honest,
                    "lie" => Fsync::Lie,
                    v => return Err(format!("--fsync {v:?}: expected honest or lie")),
                }
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            f => return Err(format!("unknown argument {f:?}; {USAGE}")),
        }
    }
    Ok(Args {
        config: Config {
            mountpoint: mountpoint.ok_or(format!("--mountpoint is missing; {USAGE}"))?,
            state: state.ok_or(format!("--state is missing; {USAGE}"))?,
            fsync,
            metadata: Metadata::Ordered,
        },
        ack,
        pid_file,
    })
}

/// Writes `text` to `path` whole (a temporary file renamed over it).
fn write_whole(path: &PathBuf, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("synod-lazyfs: {e}");
            return ExitCode::from(2);
        }
    };
    // The signals are blocked before the mount starts its threads, so
    // every thread inherits the mask and only `sigwait` below takes them.
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before
    // use; the calls have no other preconditions.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGUSR1, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let mount = match Mount::new(&args.config) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("synod-lazyfs: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(p) = &args.pid_file {
        if let Err(e) = write_whole(p, &format!("{}\n", std::process::id())) {
            eprintln!("synod-lazyfs: cannot write {}: {e}", p.display());
        }
    }
    eprintln!(
        "synod-lazyfs: mounted {} (state {})",
        args.config.mountpoint.display(),
        args.config.state.display()
    );
    let mut losses = 0u64;
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` was initialised above; `sig` is a valid out-pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        if sig != libc::SIGUSR1 {
            break;
        }
        match mount.power_loss() {
            Ok(d) => eprintln!(
                "synod-lazyfs: power lost: {} files, {} bytes, {} directories dropped",
                d.files, d.bytes, d.dirs
            ),
            Err(e) => eprintln!("synod-lazyfs: power loss failed: {e}"),
        }
        losses += 1;
        if let Some(p) = &args.ack {
            if let Err(e) = write_whole(p, &format!("{losses}\n")) {
                eprintln!("synod-lazyfs: cannot write {}: {e}", p.display());
            }
        }
    }
    match mount.unmount() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synod-lazyfs: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(str::to_string))
    }

    #[test]
    fn flags_are_read_and_bad_ones_refused() {
        let a = args("--mountpoint /m --state /s --fsync lie --ack /a").unwrap();
        assert_eq!(a.config.mountpoint, PathBuf::from("/m"));
        assert_eq!(a.config.fsync, Fsync::Lie);
        assert_eq!(a.ack, Some(PathBuf::from("/a")));
        assert!(args("--state /s")
            .unwrap_err()
            .contains("--mountpoint is missing"));
        assert!(args("--mountpoint /m --state /s --fsync maybe").is_err());
        assert!(args("--mountpoint").unwrap_err().contains("needs a value"));
    }
}
