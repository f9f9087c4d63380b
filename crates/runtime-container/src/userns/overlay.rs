//! [`mount_root`]: a container's root in a user namespace, an overlay whose lower layer is an
//! idmapped view of the image (mounted at `<bundle>/lower` only while the overlay is mounted
//! over it: overlayfs keeps a reference of its own) and whose upper directory belongs to the
//! mapped owner of the image's `/`. There is no read-only fallback without overlayfs, as there
//! is for containers without user namespaces: runc must create mount points (/etc/resolv.conf,
//! volumes) in the root, which a read-only view cannot take and the shared image must not.

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::{HostIdRange, IdmappedTree, UserNsError};
use crate::rootfs;

/// Mount the root of a container in user namespace `userns` (made with `range`) at `target`,
/// over `image`, its upper and work directories in `bundle`.
pub(crate) fn mount_root(
    image: &Path,
    userns: &File,
    range: HostIdRange,
    bundle: &Path,
    target: &Path,
) -> Result<(), UserNsError> {
    let lower = bundle.join(rootfs::LOWER);
    std::fs::create_dir_all(&lower).map_err(UserNsError::io("creating", &lower))?;
    let no_idmap = |source| UserNsError::NoIdmap {
        path: image.to_owned(),
        source,
    };
    let tree = IdmappedTree::new(image, userns).map_err(no_idmap)?;
    tree.attach(&lower)
        .map_err(UserNsError::io("mounting the idmapped image at", &lower))?;
    let owner = mapped_owner(image, range);
    let mounted = rootfs::mount_overlay(&lower, bundle, target, Some(owner));
    if let Err(errno) = rootfs::unmount(&lower) {
        tracing::warn!(path = %lower.display(), "cannot unmount an idmapped layer: {errno}");
    }
    mounted.map_err(|source| UserNsError::Overlay { source })
}

/// The host ids of the image's `/` as the container sees them (root: the range's base).
fn mapped_owner(image: &Path, range: HostIdRange) -> (u32, u32) {
    let (uid, gid) = std::fs::metadata(image).map_or((0, 0), |m| (m.uid(), m.gid()));
    let map = |id| range.host_id(id).unwrap_or(range.base());
    (map(uid), map(gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_containers_root_owns_its_slash() {
        let dir = tempfile::tempdir().unwrap();
        let range = HostIdRange::default();
        let meta = std::fs::metadata(dir.path()).unwrap();
        let (uid, _) = mapped_owner(dir.path(), range);
        if meta.uid() == 0 {
            assert_eq!(uid, range.base());
        }
        assert!(range.host_id(uid - range.base()).is_some(), "{uid}");
        assert_eq!(
            mapped_owner(&dir.path().join("gone"), range).0,
            range.base()
        );
    }
}
