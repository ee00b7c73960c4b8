//! The store: every run gets a directory `store/<name>/<timestamp>/`, and
//! `store/latest` points at the newest one.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// Creates `root/<name>/<timestamp>/` (with a suffix if two runs start in
/// the same second) and points `root/latest` at it.
pub fn new_run_dir(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        !name.is_empty()
            && !name.contains(['/', '\\'])
            && name != "."
            && name != ".."
            && name != "latest",
        "bad run name {name:?}: use a plain name without slashes"
    );
    let stamp = timestamp(SystemTime::now());
    let parent = root.join(name);
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let mut dir = parent.join(&stamp);
    let mut n = 1;
    loop {
        match std::fs::create_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                n += 1;
                dir = parent.join(format!("{stamp}-{n}"));
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    point_latest(root, &dir)?;
    Ok(dir)
}

/// The run directory a caller chose (`synod run --run-dir`, which
/// `synod suite` passes after [`new_run_dir`]): created if missing, and
/// refused unless empty, so a run never mixes its files with another's.
pub fn given_run_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    anyhow::ensure!(
        entries.next().is_none(),
        "--run-dir {}: not empty (a run directory holds one run)",
        dir.display()
    );
    Ok(dir.to_path_buf())
}

/// Replaces `root/latest` with a relative symlink to `dir`, atomically.
fn point_latest(root: &Path, dir: &Path) -> anyhow::Result<()> {
    let target = dir.strip_prefix(root).unwrap_or(dir);
    let tmp = root.join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    std::fs::rename(&tmp, root.join("latest"))
        .with_context(|| format!("cannot update {}/latest", root.display()))?;
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ` in UTC; sorts in time order.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_and_sortable() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_710_000);
        assert_eq!(timestamp(t), "20261126T162000Z");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
    }

    #[test]
    fn run_dirs_are_unique_and_latest_follows() {
        let root = std::env::temp_dir().join(format!("synod-store-{}", std::process::id()));
        let a = new_run_dir(&root, "demo").unwrap();
        let b = new_run_dir(&root, "demo").unwrap();
        assert_ne!(a, b);
        assert_eq!(
            std::fs::canonicalize(root.join("latest")).unwrap(),
            std::fs::canonicalize(&b).unwrap()
        );
        assert!(new_run_dir(&root, "../x").is_err());
        // A chosen directory: made if missing, refused once it holds a run.
        let chosen = root.join("chosen/run");
        assert_eq!(given_run_dir(&chosen).unwrap(), chosen);
        std::fs::write(chosen.join("config.json"), "{}").unwrap();
        let err = given_run_dir(&chosen).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        std::fs::remove_dir_all(&root).ok();
    }
}
