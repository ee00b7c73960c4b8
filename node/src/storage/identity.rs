//! A data directory's identity: which cluster and which node it belongs
//! to, and which other members this node has ever acted on a message from.
//!
//! `IDENTITY` is written once when a node joins its cluster, before it
//! answers any peer, and rewritten (atomically) the first time it hears
//! each other member. That last part is what tells a brand-new member
//! from one that lost its disk: a node that starts on an empty directory
//! asks every peer whether it has heard from it; if one has, this node's
//! promises and votes are gone and it must not come back as a fresh
//! acceptor (see the server's bootstrap and the replica's "Rejoining").

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::codec::{self, Frame};
use super::StorageError;
use crate::types::NodeId;

/// The file's name in the data directory.
pub const FILE: &str = "IDENTITY";

/// Who a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The cluster's id, drawn at random by its first member (hex).
    pub cluster: String,
    pub node: NodeId,
    /// Members this node has handled a message from (and may have acted on).
    #[serde(default)]
    pub seen: BTreeSet<NodeId>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads `dir/IDENTITY`, `None` if there is none.
pub fn read(dir: &Path) -> Result<Option<Identity>, StorageError> {
    let path = dir.join(FILE);
    let mut buf = Vec::new();
    match File::open(&path) {
        Ok(mut f) => {
            f.read_to_end(&mut buf).map_err(io_err(&path))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    }
    let corrupt = |reason: String| StorageError::Corrupt {
        file: path.display().to_string(),
        offset: 0,
        reason,
    };
    match codec::decode::<Identity>(&buf, 0) {
        Frame::Good(id, end) if end == buf.len() => Ok(Some(id)),
        Frame::Good(..) => Err(corrupt("trailing bytes after the identity".into())),
        // Written by an atomic rename: a short file is damage, not a tear.
        Frame::Torn => Err(corrupt(
            "incomplete (shorter than its header says, or with a hole of zeros)".into(),
        )),
        Frame::Damaged(reason) => Err(corrupt(reason)),
    }
}

/// Writes `dir/IDENTITY` atomically: a temporary file, fsync, rename,
/// fsync of the directory.
pub fn write(dir: &Path, id: &Identity) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let dst = dir.join(FILE);
    let mut bytes = Vec::new();
    codec::encode(id, &mut bytes);
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}
