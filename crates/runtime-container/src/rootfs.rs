//! Each container's root filesystem: an overlay whose only lower layer is the image's shared,
//! unpacked rootfs (or, in a user namespace, an idmapped view of it mounted at `<bundle>/lower`
//! just for the overlay's mount) and whose upper and work directories live in the instance's
//! bundle, mounted at `<bundle>/rootfs` (in a user namespace, under the roots directory; see
//! `userns`) before runc starts and unmounted when the instance is cleaned up. The image's
//! rootfs is never written to. Never removes anything itself.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Directory names inside a bundle.
pub const ROOTFS: &str = "rootfs";
/// Where an idmapped image is mounted while an overlay is mounted over it.
pub const LOWER: &str = "lower";
const UPPER: &str = "upper";
const WORK: &str = "work";

/// Why the overlay could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("path {0} is not valid UTF-8")]
    NotUtf8(PathBuf),
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("giving {path} to the container's root: {source}")]
    Chown {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounting overlayfs at {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

/// Mount an overlay of `lower` at `target` with its upper and work directories in `bundle`
/// (creating the directories it needs); `owner`: the host ids the upper directory, and so the
/// container's `/`, belongs to (default root).
pub fn mount_overlay(
    lower: &Path,
    bundle: &Path,
    target: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), OverlayError> {
    let target = target.to_owned();
    let (upper, work) = (bundle.join(UPPER), bundle.join(WORK));
    for dir in [&target, &upper, &work] {
        std::fs::create_dir_all(dir).map_err(|source| OverlayError::Create {
            path: dir.clone(),
            source,
        })?;
    }
    // The merged root takes the upper directory's mode: 0755 whatever the server's umask
    // (077), so the container's user can traverse its own `/`.
    for dir in [&target, &upper] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(
            |source| OverlayError::Create {
                path: dir.clone(),
                source,
            },
        )?;
    }
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&upper, Some(uid), Some(gid)).map_err(|source| {
            OverlayError::Chown {
                path: upper.clone(),
                source,
            }
        })?;
    }
    let options = overlay_options(lower, &upper, &work)?;
    mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|source| OverlayError::Mount {
        path: target.clone(),
        source,
    })
}

/// The `lowerdir=…,upperdir=…,workdir=…` mount data, with backslashes, commas and colons escaped
/// by a backslash as overlayfs expects (image directories are often named `sha256:…`).
fn overlay_options(lower: &Path, upper: &Path, work: &Path) -> Result<String, OverlayError> {
    let escape = |path: &Path| {
        let text = path
            .to_str()
            .ok_or_else(|| OverlayError::NotUtf8(path.to_owned()))?;
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if matches!(c, '\\' | ',' | ':') {
                out.push('\\');
            }
            out.push(c);
        }
        Ok(out)
    };
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        escape(lower)?,
        escape(upper)?,
        escape(work)?
    ))
}

/// Detach whatever is mounted at `target`. `Ok(false)`: nothing was mounted there.
pub fn unmount(target: &Path) -> Result<bool, Errno> {
    if !is_mount_point(target) {
        return Ok(false);
    }
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) => Ok(true),
        Err(Errno::EINVAL | Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether something is mounted at `path`, per /proc/self/mountinfo.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    nimbus_cgroup::mount_points(&info).any(|point| Path::new(&point) == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_all_three_directories() {
        let options = overlay_options(
            Path::new("/img/rootfs"),
            Path::new("/b/upper"),
            Path::new("/b/work"),
        );
        assert_eq!(
            options.unwrap(),
            "lowerdir=/img/rootfs,upperdir=/b/upper,workdir=/b/work"
        );
    }

    #[test]
    fn separators_in_paths_are_escaped() {
        let options = overlay_options(
            Path::new("/img/sha256:ab,c\\d"),
            Path::new("/u"),
            Path::new("/w"),
        );
        assert_eq!(
            options.unwrap(),
            "lowerdir=/img/sha256\\:ab\\,c\\\\d,upperdir=/u,workdir=/w"
        );
    }

    #[test]
    fn unmounting_nothing_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(ROOTFS)).unwrap();
        assert_eq!(unmount(&dir.path().join(ROOTFS)), Ok(false));
        assert_eq!(unmount(&dir.path().join("missing")), Ok(false));
    }

    #[test]
    fn mountinfo_points_are_decoded() {
        let info = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                    90 27 0:50 / /b/with\\040space rw - overlay overlay rw\n";
        let points: Vec<String> = nimbus_cgroup::mount_points(info).collect();
        assert_eq!(points, ["/proc", "/b/with space"]);
        assert!(is_mount_point(Path::new("/proc")));
    }
}
