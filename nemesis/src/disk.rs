//! The nodes' data directories as mounts of the lose-unsynced-writes
//! filesystem ([`synod_lazyfs`]), for the backends that cut power through
//! it: `nodes/nK/data` is the mount (what the node, or its container
//! through a bind mount, sees), `nodes/nK/fs/` its state (`disk/` what was
//! durable).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::backend::NodeName;
use crate::error::{NemesisError, Result};
use crate::lock;

/// What the nodes' data directories are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disk {
    /// The run directory's own filesystem: a power loss needs the node's
    /// admin crash.
    Plain,
    /// A mount of the lose-unsynced-writes filesystem each, honest or
    /// lying about fsync.
    Lazy(synod_lazyfs::Fsync),
}

/// One mount per node, or none with [`Disk::Plain`].
pub(crate) struct DataDisks {
    /// Emptied (unmounted) by [`DataDisks::unmount_all`].
    mounts: Mutex<BTreeMap<NodeName, synod_lazyfs::Mount>>,
}

/// `nodes/nK/data` under the run directory's `nodes/`.
pub(crate) fn data_dir(nodes_dir: &Path, node: NodeName) -> PathBuf {
    nodes_dir.join(node.to_string()).join("data")
}

impl DataDisks {
    /// Creates every node's data directory and, with [`Disk::Lazy`],
    /// mounts the filesystem over it, its root owned by `owner` (uid, gid)
    /// if given (a container's user); refuses where FUSE is missing.
    pub(crate) fn new(
        nodes_dir: &Path,
        nodes: &[NodeName],
        disk: Disk,
        owner: Option<(u32, u32)>,
    ) -> Result<DataDisks> {
        if let Disk::Lazy(_) = disk {
            synod_lazyfs::available()?;
        }
        let mut mounts = BTreeMap::new();
        for &id in nodes {
            let dir = data_dir(nodes_dir, id);
            std::fs::create_dir_all(&dir)
                .map_err(|e| NemesisError::io(format!("cannot create {}", dir.display()), e))?;
            if let Disk::Lazy(fsync) = disk {
                let state = nodes_dir.join(id.to_string()).join("fs");
                if let Some((uid, gid)) = owner {
                    // The durable root's owner is the mount root's, at
                    // every power loss too.
                    let root = state.join("disk");
                    std::fs::create_dir_all(&root)
                        .and_then(|()| std::os::unix::fs::chown(&root, Some(uid), Some(gid)))
                        .map_err(|e| {
                            NemesisError::io(format!("cannot give {} to {uid}", root.display()), e)
                        })?;
                }
                let mount = synod_lazyfs::Mount::new(&synod_lazyfs::Config {
                    mountpoint: dir,
                    state,
                    fsync,
                    metadata: synod_lazyfs::Metadata::Ordered,
                })?;
                mounts.insert(id, mount);
            }
        }
        Ok(DataDisks {
            mounts: Mutex::new(mounts),
        })
    }

    /// Whether the data directories forget unsynced writes.
    pub(crate) fn lazy(&self) -> bool {
        !lock(&self.mounts).is_empty()
    }

    /// Drops what `node` had not synced: call once it is dead.
    pub(crate) fn power_loss(&self, node: NodeName) -> Result<()> {
        let mounts = lock(&self.mounts);
        let Some(mount) = mounts.get(&node) else {
            // After teardown there is nothing left to lose.
            return Ok(());
        };
        let dropped = mount.power_loss()?;
        tracing::info!(%node, files = dropped.files, bytes = dropped.bytes, dirs = dropped.dirs,
            "power lost: unsynced changes dropped");
        Ok(())
    }

    /// The refusal when power is to be cut through plain directories.
    pub(crate) fn not_lazy(node: NodeName) -> NemesisError {
        NemesisError::Unsupported(format!(
            "power loss of {node}: the data directories are not on the lose-unsynced-writes \
             filesystem"
        ))
    }

    /// Unmounts every data directory (the nodes must be dead).
    pub(crate) fn unmount_all(&self) {
        let mounts = std::mem::take(&mut *lock(&self.mounts));
        for (node, mount) in mounts {
            if let Err(e) = mount.unmount() {
                tracing::warn!(%node, error = %e, "teardown could not unmount a data directory");
            }
        }
    }
}
