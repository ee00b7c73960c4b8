//! A small ustar writer: enough to hand a run directory to someone as one
//! file (regular files and directories, names up to 255 bytes, no links).
//! Symlinks, FIFOs and devices are skipped rather than followed or read,
//! so an archive of a run can never reach outside it nor wait forever.

use std::io::{Read, Write};
use std::path::Path;

/// Appends `dir` (recursively) to the archive under the name `prefix`.
pub fn append_dir(out: &mut impl Write, dir: &Path, prefix: &str) -> std::io::Result<()> {
    header(out, &format!("{prefix}/"), 0, b'5', 0o755)?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ty = e.file_type()?;
        let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
        if ty.is_dir() {
            append_dir(out, &e.path(), &name)?;
        } else if ty.is_file() {
            // Streamed: a file of any size costs a buffer, not its size.
            // Its length is fixed when opened; a file that grows is cut
            // there, one that shrinks is padded with zeros, so the header
            // always tells the truth about what follows.
            let Ok((file, len)) = super::figures::open_regular(&e.path()) else {
                continue;
            };
            header(out, &name, len, b'0', 0o644)?;
            let copied = std::io::copy(&mut file.take(len), out)?;
            let pad = (len - copied) + (512 - len % 512) % 512;
            std::io::copy(&mut std::io::repeat(0).take(pad), out)?;
        }
    }
    Ok(())
}

/// Ends the archive (two zero blocks).
pub fn finish(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(&[0u8; 1024])
}

fn header(out: &mut impl Write, name: &str, size: u64, kind: u8, mode: u32) -> std::io::Result<()> {
    let mut h = [0u8; 512];
    let bytes = name.as_bytes();
    // ustar splits long names into prefix (155) and name (100) at a '/'.
    let (pre, base) = if bytes.len() <= 100 {
        (&[][..], bytes)
    } else {
        let cut = bytes[..bytes.len().min(156)]
            .iter()
            .rposition(|&b| b == b'/')
            .filter(|&i| bytes.len() - i - 1 <= 100 && i <= 155)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("name too long for ustar: {name}"),
                )
            })?;
        (&bytes[..cut], &bytes[cut + 1..])
    };
    h[..base.len()].copy_from_slice(base);
    let octal = |h: &mut [u8], v: u64, width: usize| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[..width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h[100..108], u64::from(mode), 8);
    octal(&mut h[108..116], 0, 8);
    octal(&mut h[116..124], 0, 8);
    octal(&mut h[124..136], size, 12);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    octal(&mut h[136..148], mtime, 12);
    h[148..156].copy_from_slice(b"        ");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + pre.len()].copy_from_slice(pre);
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.write_all(&h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_tar_lists_what_we_wrote() {
        let root = std::env::temp_dir().join(format!("synod-tar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("run/nodes")).unwrap();
        std::fs::write(root.join("run/results.json"), "{}").unwrap();
        std::fs::write(root.join("run/nodes/n1.log"), "x".repeat(700)).unwrap();
        let mut buf = Vec::new();
        append_dir(&mut buf, &root.join("run"), "run").unwrap();
        finish(&mut buf).unwrap();
        assert_eq!(buf.len() % 512, 0);
        let archive = root.join("run.tar");
        std::fs::write(&archive, &buf).unwrap();
        if let Ok(out) = std::process::Command::new("tar")
            .arg("tf")
            .arg(&archive)
            .output()
        {
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{listing}");
            assert!(listing.contains("run/nodes/n1.log"), "{listing}");
            assert!(listing.contains("run/results.json"), "{listing}");
        }
        std::fs::remove_dir_all(&root).ok();
    }
}
