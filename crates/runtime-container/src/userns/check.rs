//! [`check`]: whether this host can give containers user namespaces, asked once at startup so
//! that a server configured for them refuses to start, saying why, rather than failing every
//! container. It does what each container start will do, and undoes it: user namespaces are
//! allowed, the server may make one with its mapping, the roots' directories can be prepared,
//! and the image store's filesystem takes an idmapped mount that overlayfs accepts as a lower
//! layer (mounted at `<roots>/<server>/.check/root`, then taken down).

use std::path::Path;

use super::{Pinned, Roots, UserNamespaces, UserNsError, mount_root};
use crate::setup::{self, Layout};

/// The kernel's limit on user namespaces per user; 0 disables them.
const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// runc mounts a container's cgroup from inside its user namespace, so the mapped root must
/// search every directory above it. Earlier servers ran runc with their own umask (077), and
/// the `nimbus` directories it made then in some hierarchies are 0700: open them to search
/// (0755, as runc makes them now). Best effort: what cannot be changed is logged, and the
/// container start that needs it will say why it failed.
fn open_cgroup_dirs(root: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let hierarchies = std::fs::read_dir(root).into_iter().flatten().flatten();
    let dirs = hierarchies
        .map(|h| h.path().join("nimbus"))
        .chain(std::iter::once(root.join("nimbus")));
    for dir in dirs {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if meta.is_dir() && meta.permissions().mode() & 0o001 == 0 {
            let opened = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
            match opened {
                Ok(()) => {
                    tracing::info!(path = %dir.display(), "made a cgroup directory searchable for user namespaces")
                }
                Err(e) => {
                    tracing::warn!(path = %dir.display(), "cannot make a cgroup directory searchable: {e}")
                }
            }
        }
    }
}

/// What else of the launcher's configuration user namespaces depend on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setup<'a> {
    /// Containers get networks of their own.
    pub has_network: bool,
    /// Containers get overlays.
    pub overlay: bool,
    /// Where images are unpacked (the nearest existing directory above it is checked if it
    /// does not exist yet).
    pub images: &'a Path,
}

/// Check the host for `userns` as configured by `setup`, container roots in `roots`.
pub(crate) fn check(
    userns: &UserNamespaces,
    setup: &Setup<'_>,
    roots: &Roots,
) -> Result<(), UserNsError> {
    if !setup.has_network {
        return Err(UserNsError::NeedsNetwork);
    }
    if !setup.overlay {
        return Err(UserNsError::NoOverlay);
    }
    let max = std::fs::read_to_string(MAX_USER_NAMESPACES)
        .map_err(UserNsError::io("reading", MAX_USER_NAMESPACES))?;
    if max.trim() == "0" {
        return Err(UserNsError::Disabled {
            path: MAX_USER_NAMESPACES,
            value: max.trim().to_owned(),
        });
    }
    let pinned = Pinned::new(userns.range)?;
    roots.prepare()?;
    open_cgroup_dirs(Path::new(CGROUP_ROOT));
    let images = (setup.images.ancestors())
        .find(|dir| dir.is_dir())
        .unwrap_or(Path::new("/"));
    let probe = roots.probe_dir();
    let layout = Layout {
        root: probe.join("root"),
        bundle: probe,
    };
    setup::remove_bundle(&layout); // what a check that crashed left
    let mounted = mount_root(
        images,
        pinned.user(),
        userns.range,
        &layout.bundle,
        &layout.root,
    );
    setup::remove_bundle(&layout);
    mounted
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn closed_nimbus_cgroup_directories_are_opened_to_search() {
        let root = tempfile::tempdir().unwrap();
        for hierarchy in ["cpuacct", "memory"] {
            let dir = root.path().join(hierarchy).join("nimbus");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let other = root.path().join("blkio/other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o700)).unwrap();
        open_cgroup_dirs(root.path());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root.path().join("cpuacct/nimbus")), 0o755);
        assert_eq!(mode(&root.path().join("memory/nimbus")), 0o755);
        assert_eq!(mode(&other), 0o700, "only Nimbus's own");
    }
}
