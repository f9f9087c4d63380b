//! Where the roots of a server's containers with user namespaces are mounted:
//! `<roots_dir>/<server>/<instance>`, `<server>` being a hash of the server's runc state
//! directory (stable across restarts, so a restarted server finds what a crashed one left).
//! `roots_dir` is 0711, `<server>` root:`base` 0710: the path is walkable by root and by the
//! server's mapped root group, and by nobody else (see the module docs of `userns`). Creates
//! directories and sets their modes; never removes one.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::{HostIdRange, UserNamespaces, UserNsError};

/// Search permission for users other than the owner and group.
const OTHERS_SEARCH: u32 = 0o001;

/// The mount points of one server's containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Roots {
    roots_dir: PathBuf,
    server_dir: PathBuf,
    range: HostIdRange,
}

impl Roots {
    /// The mount points of the server whose runc state is in `state_root`; creates nothing.
    pub fn new(userns: &UserNamespaces, state_root: &Path) -> Self {
        let name = format!("{:016x}", fnv1a(state_root.as_os_str().as_encoded_bytes()));
        Self {
            roots_dir: userns.roots_dir.clone(),
            server_dir: userns.roots_dir.join(name),
            range: userns.range,
        }
    }

    /// Where instance `id`'s root is mounted.
    pub fn mount_point(&self, id: &str) -> PathBuf {
        self.server_dir.join(id)
    }

    /// A directory of the server's own for [`super::check`] to mount a root in.
    pub fn probe_dir(&self) -> PathBuf {
        self.server_dir.join(".check") // instance ids never start with a dot
    }

    /// Make the directories above the mount points walkable as described above (idempotent).
    pub fn prepare(&self) -> Result<(), UserNsError> {
        let roots = &self.roots_dir;
        std::fs::create_dir_all(roots).map_err(UserNsError::io("creating", roots))?;
        if let Some(parent) = roots.parent() {
            add_mode(parent, OTHERS_SEARCH)?;
            for above in parent.ancestors().skip(1) {
                require_searchable(above)?;
            }
        }
        set_mode(roots, 0o711)?;
        let server = &self.server_dir;
        match std::fs::create_dir(server) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(UserNsError::io("creating", server)(e));
            }
            _ => {}
        }
        let group = Some(self.range.base());
        std::os::unix::fs::chown(server, Some(0), group)
            .map_err(UserNsError::io("changing the owner of", server))?;
        set_mode(server, 0o710)
    }
}

fn mode(path: &Path) -> Result<u32, UserNsError> {
    let meta = std::fs::metadata(path).map_err(UserNsError::io("reading", path))?;
    Ok(meta.mode() & 0o7777)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), UserNsError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(UserNsError::io("setting the mode of", path))
}

/// Add `bits` to `path`'s mode, taking none away.
fn add_mode(path: &Path, bits: u32) -> Result<(), UserNsError> {
    let current = mode(path)?;
    if current & bits == bits {
        return Ok(());
    }
    set_mode(path, current | bits)
}

fn require_searchable(path: &Path) -> Result<(), UserNsError> {
    let mode = mode(path)?;
    if mode & OTHERS_SEARCH == 0 {
        return Err(UserNsError::Unsearchable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// 64-bit FNV-1a: a hash that stays the same from one build to the next.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn userns(dir: &Path) -> UserNamespaces {
        UserNamespaces {
            roots_dir: dir.join("parent/roots"),
            ..UserNamespaces::default()
        }
    }

    #[test]
    fn mount_points_are_per_server_and_stable() {
        let userns = userns(Path::new("/r"));
        let a = Roots::new(&userns, Path::new("/data/a/runc"));
        let b = Roots::new(&userns, Path::new("/data/b/runc"));
        let point = a.mount_point("hello-00001-1");
        assert!(point.starts_with("/r/parent/roots"), "{}", point.display());
        assert_eq!(point.file_name().unwrap(), "hello-00001-1");
        assert_eq!(point, a.mount_point("hello-00001-1"));
        assert_ne!(point, b.mount_point("hello-00001-1"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn an_unsearchable_directory_above_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let above = dir.path().join("closed");
        std::fs::create_dir(&above).unwrap();
        set_mode(&above, 0o700).unwrap();
        let userns = UserNamespaces {
            roots_dir: above.join("parent/roots"),
            ..UserNamespaces::default()
        };
        let e = Roots::new(&userns, Path::new("/s")).prepare().unwrap_err();
        let text = e.to_string();
        assert!(text.contains("closed (mode 700)"), "{text}");
        assert!(text.contains("`chmod o+x"), "{text}");
    }

    #[test]
    fn preparing_opens_the_path_to_the_mapped_root_group_only() {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var_os("CI").is_none(), "needs root in CI (chown)");
            eprintln!("SKIPPED: not root (chown)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o711).unwrap();
        let userns = userns(dir.path());
        let roots = Roots::new(&userns, Path::new("/s"));
        std::fs::create_dir(dir.path().join("parent")).unwrap();
        set_mode(&dir.path().join("parent"), 0o750).unwrap();
        roots.prepare().unwrap();
        roots.prepare().unwrap(); // idempotent
        assert_eq!(mode(&dir.path().join("parent")).unwrap(), 0o751);
        assert_eq!(mode(&userns.roots_dir).unwrap(), 0o711);
        let server = roots.mount_point("x").parent().unwrap().to_owned();
        let meta = std::fs::metadata(&server).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o710);
        assert_eq!((meta.uid(), meta.gid()), (0, userns.range.base()));
    }
}
