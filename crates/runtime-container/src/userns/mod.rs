//! Optional user namespaces (`nimbus serve --container-user-namespaces`): every container's
//! ids 0–65535 are host ids `base`…`base + 65535` of one range per server (default
//! [`DEFAULT_HOST_BASE`]), so the container's root is an unprivileged nobody on the host, and
//! the capabilities it holds act only on the namespaces its user namespace owns.
//!
//! **The namespaces.** For each container the launcher first creates a user namespace with the
//! server's mapping and, owned by it, the container's network namespace ([`Pinned`]: a
//! short-lived child of the server made by `clone(CLONE_NEWUSER | CLONE_NEWNET)`, held by
//! descriptor like the network namespace without one). runc 1.1 joins both by path (user
//! first) and creates the pid, ipc, uts, mount (and cgroup) namespaces inside. That the network
//! namespace is the user namespace's own matters: the kernel lets only its owner mount sysfs
//! (runc 1.1 fails the start otherwise), bind ports below 1024 with `NET_BIND_SERVICE`, or use
//! `NET_ADMIN` there. It is also why a container on the host's network cannot have a user
//! namespace: as in Kubernetes (`hostNetwork` needs `hostUsers`), such a container is refused.
//!
//! **The root filesystem.** The image's unpacked rootfs is owned by host ids (root is 0), which
//! inside the namespace would all be nobody, and runc 1.1 cannot remap it. Two ways were
//! weighed: a chowned copy per (image, range), or an idmapped mount. The copy doubles the disk
//! an image takes, makes the first start pay a full tree walk, must be kept in step with the
//! image it copies, and has to rewrite what `chown` gets wrong (it clears setuid/setgid bits,
//! and file capabilities and ACLs carry ids of their own). An idmapped mount
//! (`mount_setattr(MOUNT_ATTR_IDMAP)`, Linux 5.12; as an overlayfs lower layer, 5.19) copies
//! nothing, costs a few system calls per start and shows every id through the container's
//! mapping, so it is what Nimbus does ([`idmap`], [`mount_root`]): a read-only idmapped clone
//! of the shared rootfs becomes the lower layer of the container's overlay (the upper directory
//! is owned by the mapped owner of the image's `/`, and what the container writes is stored
//! with its mapped ids). Without overlayfs there is no fallback to a read-only root: runc must
//! create mount points in the root. The shared rootfs is never written to or chowned; its
//! filesystem must support idmapped mounts (ext4, xfs, btrfs; tmpfs from 6.3), and the kernel
//! overlays over them, which [`check`] proves at startup.
//!
//! **Reaching it.** runc 1.1 mounts the root filesystem from inside the user namespace, so the
//! mapped root must be able to search every directory above it, which the data directory
//! (0700) forbids. The root of such a container is therefore mounted at
//! `<roots_dir>/<server>/<instance>` (default `/run/nimbus/roots`) rather than in its bundle:
//! `roots_dir` is searchable by anyone (0711), `<server>` only by the server's mapped root
//! group (root:`base`, 0710, as Docker does for its remapped root), so no other host user can
//! reach a container's files. Everything else runc binds (resolv.conf, /etc/hosts, Secret and
//! ConfigMap volumes) it opens from the host's side, and a file owned by a host id outside the
//! range, such as those, shows as `nobody` inside: readable when its mode lets others read it.
//!
//! **Ids.** A process, file or group id above 65535 has no host id: `runAsUser`, `runAsGroup`
//! and supplemental groups above it are refused, as Kubernetes refuses them with
//! `hostUsers: false`. All containers of one server share the range (Docker's `userns-remap`
//! model; Kubernetes and Podman's `--userns=auto` give each pod its own): the host is protected
//! from an escaped process, but such a process has the same host ids as the other containers'
//! roots. Give each server of a host its own `base`.
//!
//! Never writes to an image's rootfs; changes no directory but `roots_dir`, what it creates
//! below, and `roots_dir`'s parent, to which it only adds search permission for others.

mod check;
mod idmap;
mod overlay;
mod pin;
mod roots;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::OciSpecError;
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};

pub(crate) use self::check::{Setup, check};
pub(crate) use self::idmap::IdmappedTree;
pub(crate) use self::overlay::mount_root;
pub(crate) use self::pin::Pinned;
pub(crate) use self::roots::Roots;

/// How many ids a container has: 0–65535, every id a Linux distribution hands out.
pub const IDS: u32 = 65_536;

/// The default first host id of a server's range: 0x10000000, far above the ids of host users
/// and of `/etc/subuid` ranges made by `useradd` (from 100000).
pub const DEFAULT_HOST_BASE: u32 = 0x1000_0000;

/// The default directory the roots of containers with a user namespace are mounted under.
pub const DEFAULT_ROOTS_DIR: &str = "/run/nimbus/roots";

/// The host ids a server's containers run as: container id `n` is host id `base + n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostIdRange {
    base: u32,
}

/// How containers get user namespaces ([`crate::OciConfig::user_namespaces`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserNamespaces {
    /// The host ids of container ids 0–65535 (default from [`DEFAULT_HOST_BASE`]). Must not be
    /// used by anything else on the host, including another server.
    pub range: HostIdRange,
    /// Where containers' roots are mounted (default [`DEFAULT_ROOTS_DIR`]); Nimbus makes it
    /// 0711 and adds search permission for others to its parent; every directory above must
    /// already let others search it (as `/run` does).
    pub roots_dir: PathBuf,
}

/// Why a container cannot have, or a host cannot give, a user namespace.
#[derive(Debug, thiserror::Error)]
pub enum UserNsError {
    #[error(
        "{value:?} is not a valid first host id for containers: {why}; give a multiple of \
         65536 from 65536 to 4294836224, e.g. 0x10000000"
    )]
    BadBase { value: String, why: &'static str },

    #[error(
        "user namespaces are disabled on this host ({path} is {value}): allow them (`sysctl \
         -w user.max_user_namespaces=15000`), or run `nimbus serve` without \
         --container-user-namespaces"
    )]
    Disabled { path: &'static str, value: String },

    #[error(
        "this host refuses the server a user namespace ({source}; a seccomp filter, AppArmor or \
         SELinux policy, or the server running inside a container can cause this): allow it, \
         or run `nimbus serve` without --container-user-namespaces"
    )]
    Refused {
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the filesystem of {path} cannot be idmapped ({source}), and containers with a user \
         namespace see their image through an idmapped mount: keep the data directory on a \
         filesystem that supports them (ext4, xfs, btrfs; tmpfs from Linux 6.3) on Linux 5.19 or \
         later, or run `nimbus serve` without --container-user-namespaces"
    )]
    NoIdmap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "containers with user namespaces run on an overlay over their idmapped image, and this \
         server's containers get no overlay: turn overlays on, or run `nimbus serve` without \
         --container-user-namespaces"
    )]
    NoOverlay,

    #[error(
        "{source}, and a container with a user namespace runs on an overlay over its idmapped \
         image: this needs Linux 5.19 or later; or run `nimbus serve` without \
         --container-user-namespaces"
    )]
    Overlay {
        #[source]
        source: crate::rootfs::OverlayError,
    },

    #[error(
        "a container in a user namespace cannot share the host's network (as in Kubernetes, \
         where hostNetwork needs hostUsers): remove the revision's annotation \
         `nimbus.dev/host-network: \"true\"`, or run `nimbus serve` without \
         --container-user-namespaces"
    )]
    HostNetwork,

    #[error(
        "containers with user namespaces need networks of their own: run `nimbus serve` without \
         --container-host-network, or without --container-user-namespaces"
    )]
    NeedsNetwork,

    #[error(
        "{what} {id} is outside the container's user namespace, which has ids 0-65535: choose \
         a smaller id (Kubernetes requires the same with hostUsers: false), or run `nimbus \
         serve` without --container-user-namespaces"
    )]
    IdOutOfRange { what: &'static str, id: u32 },

    #[error(
        "{path} (mode {mode:o}) does not let other users search it, so a container's root user, \
         an unprivileged host user, cannot reach the root filesystem mounted below it: `chmod \
         o+x {path}`"
    )]
    Unsearchable { path: PathBuf, mode: u32 },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl UserNsError {
    /// Whether the container's manifest is at fault (rather than the host).
    pub fn is_config(&self) -> bool {
        matches!(self, Self::HostNetwork | Self::IdOutOfRange { .. })
    }

    /// An [`UserNsError::Io`] maker for `map_err`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

// === impl HostIdRange ===

impl HostIdRange {
    /// The range starting at host id `base`: a multiple of [`IDS`], neither 0 (the host's own
    /// ids) nor so high that the range reaches id 4294967295 (`(uid_t) -1`).
    pub fn new(base: u32) -> Result<Self, UserNsError> {
        let bad = |why| UserNsError::BadBase {
            value: base.to_string(),
            why,
        };
        if base == 0 {
            return Err(bad("0 would map the container's root to the host's"));
        }
        if !base.is_multiple_of(IDS) {
            return Err(bad("it is not a multiple of 65536"));
        }
        if base > u32::MAX - 2 * IDS + 1 {
            return Err(bad(
                "the range would reach id 4294967295, which means \"no id\"",
            ));
        }
        Ok(Self { base })
    }

    /// The host id of container id 0.
    pub fn base(&self) -> u32 {
        self.base
    }

    /// The host id of container id `id`; `None` when the container has no such id.
    pub fn host_id(&self, id: u32) -> Option<u32> {
        (id < IDS).then(|| self.base + id)
    }

    /// The runtime spec's `uidMappings` and `gidMappings` (both the same).
    pub(crate) fn mappings(&self) -> Result<Vec<LinuxIdMapping>, OciSpecError> {
        let mapping = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(self.base)
            .size(IDS)
            .build()?;
        Ok(vec![mapping])
    }

    /// `/proc/<pid>/uid_map` and `gid_map` text.
    fn map_text(&self) -> String {
        format!("0 {} {IDS}\n", self.base)
    }
}

impl Default for HostIdRange {
    fn default() -> Self {
        Self {
            base: DEFAULT_HOST_BASE,
        }
    }
}

/// A decimal or `0x` hexadecimal base.
impl FromStr for HostIdRange {
    type Err = UserNsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => text.parse(),
        };
        let base = parsed.map_err(|_| UserNsError::BadBase {
            value: s.to_owned(),
            why: "it is not a number",
        })?;
        Self::new(base)
    }
}

impl fmt::Display for HostIdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.base, self.base + (IDS - 1))
    }
}

// === impl UserNamespaces ===

impl UserNamespaces {
    /// Refuse a process whose ids the namespace does not have.
    pub(crate) fn check_ids(
        &self,
        user: &crate::ResolvedUser,
        supplemental_groups: &[u32],
    ) -> Result<(), UserNsError> {
        let ids = [("the user id", user.uid), ("the group id", user.gid)]
            .into_iter()
            .chain(user.additional_gids.iter().map(|&g| ("the group id", g)))
            .chain(
                supplemental_groups
                    .iter()
                    .map(|&g| ("supplemental group", g)),
            );
        for (what, id) in ids {
            if self.range.host_id(id).is_none() {
                return Err(UserNsError::IdOutOfRange { what, id });
            }
        }
        Ok(())
    }
}

impl Default for UserNamespaces {
    fn default() -> Self {
        Self {
            range: HostIdRange::default(),
            roots_dir: PathBuf::from(DEFAULT_ROOTS_DIR),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ResolvedUser;

    #[test]
    fn a_base_is_a_multiple_of_the_range_size_above_the_hosts_ids() {
        assert_eq!(HostIdRange::new(0x1000_0000).unwrap().base(), 268_435_456);
        assert_eq!(HostIdRange::new(IDS).unwrap().base(), 65_536);
        for bad in [0, 1000, IDS + 1, 0xffff_0000] {
            let e = HostIdRange::new(bad).unwrap_err();
            assert!(e.to_string().contains("give a multiple of 65536"), "{e}");
        }
        // The last range stops short of 4294967295.
        let last = HostIdRange::new(4_294_836_224).unwrap();
        assert_eq!(last.host_id(IDS - 1), Some(0xfffe_ffff));
    }

    #[test]
    fn bases_parse_in_decimal_or_hex() {
        let range: HostIdRange = "0x10000000".parse().unwrap();
        assert_eq!(range, HostIdRange::default());
        assert_eq!("131072".parse::<HostIdRange>().unwrap().base(), 131_072);
        let e = "lots".parse::<HostIdRange>().unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
        assert_eq!(range.to_string(), "268435456-268500991");
    }

    #[test]
    fn container_ids_map_to_the_range_and_no_further() {
        let range = HostIdRange::default();
        assert_eq!(range.host_id(0), Some(0x1000_0000));
        assert_eq!(range.host_id(1000), Some(0x1000_0000 + 1000));
        assert_eq!(range.host_id(IDS), None);
        assert_eq!(range.map_text(), "0 268435456 65536\n");
        let json = serde_json::to_value(range.mappings().unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"containerID": 0, "hostID": 268435456, "size": 65536}])
        );
    }

    #[test]
    fn ids_outside_the_namespace_are_refused_naming_them() {
        let userns = UserNamespaces::default();
        let user = |uid, gid, extra: Vec<u32>| ResolvedUser {
            uid,
            gid,
            additional_gids: extra,
            home: "/".into(),
        };
        assert!(userns.check_ids(&user(65_535, 0, vec![5]), &[100]).is_ok());
        let e = userns.check_ids(&user(70_000, 0, vec![]), &[]).unwrap_err();
        assert!(e.is_config());
        assert!(
            e.to_string().starts_with("the user id 70000 is outside"),
            "{e}"
        );
        let e = userns
            .check_ids(&user(0, 0, vec![]), &[65_536])
            .unwrap_err();
        assert!(e.to_string().starts_with("supplemental group 65536"), "{e}");
        let e = userns
            .check_ids(&user(0, 0, vec![99_999]), &[])
            .unwrap_err();
        assert!(e.to_string().starts_with("the group id 99999"), "{e}");
    }

    #[test]
    fn messages_say_what_to_do() {
        for e in [
            UserNsError::HostNetwork,
            UserNsError::NeedsNetwork,
            UserNsError::Disabled {
                path: "/proc/sys/user/max_user_namespaces",
                value: "0".into(),
            },
        ] {
            assert!(
                e.to_string()
                    .contains("without --container-user-namespaces"),
                "{e}"
            );
        }
        assert!(UserNsError::HostNetwork.is_config());
        assert!(!UserNsError::NeedsNetwork.is_config());
    }
}
