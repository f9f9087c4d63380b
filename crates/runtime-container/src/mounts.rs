//! The container's mounts and the Linux hardening that goes with them: runc's default
//! filesystems (/proc, a 755 tmpfs /dev with /dev/pts, /dev/shm and /dev/mqueue, a read-only
//! /sys and /sys/fs/cgroup), `/tmp` as a 1777 tmpfs (Knative's runtime contract), and a
//! resolv.conf and /etc/hosts bound read-only: the host's, or for a container with a network
//! namespace of its own a copy without the loopback nameservers it cannot reach (see
//! `network::dns`). Masked and read-only /proc paths are runc's defaults, which keeps
//! `/proc/sys` read-only. Pure; no I/O.

use std::path::{Path, PathBuf};

use nimbus_runtime::volumes::Bind;
use oci_spec::OciSpecError;
use oci_spec::runtime::{Mount, MountBuilder, get_default_maskedpaths, get_default_readonly_paths};

/// Host files bound into every container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFiles {
    /// Bound at /etc/resolv.conf.
    pub resolv_conf: PathBuf,
    /// Bound at /etc/hosts.
    pub hosts: PathBuf,
}

/// Every mount, in the order runc applies them: the platform's, then the instance's Secret
/// and ConfigMap `volumes` (read-only, never executable; runc makes their mount points).
pub fn mounts(host: &HostFiles, volumes: &[Bind]) -> Result<Vec<Mount>, OciSpecError> {
    let mut all = vec![
        fs("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        fs(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        fs(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        fs(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        fs(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        fs(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        fs(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
        fs("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777"])?,
        bind_ro("/etc/resolv.conf", &host.resolv_conf)?,
        bind_ro("/etc/hosts", &host.hosts)?,
    ];
    for volume in volumes {
        let at = volume.path.to_string_lossy();
        all.push(bind(&at, &volume.host, &["noexec"])?);
    }
    Ok(all)
}

/// runc's default masked paths (/proc/kcore, /proc/keys, /sys/firmware, …).
pub fn masked_paths() -> Vec<String> {
    get_default_maskedpaths()
}

/// runc's default read-only paths (/proc/sys, /proc/sysrq-trigger, …).
pub fn readonly_paths() -> Vec<String> {
    get_default_readonly_paths()
}

fn fs(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, OciSpecError> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
}

fn bind_ro(destination: &str, source: &Path) -> Result<Mount, OciSpecError> {
    bind(destination, source, &[])
}

/// A read-only, nosuid, nodev bind mount, with `extra` options.
fn bind(destination: &str, source: &Path, extra: &[&str]) -> Result<Mount, OciSpecError> {
    let options = ["rbind", "ro", "nosuid", "nodev"].iter().chain(extra);
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options.map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostFiles {
        HostFiles {
            resolv_conf: "/etc/resolv.conf".into(),
            hosts: "/etc/hosts".into(),
        }
    }

    fn find<'a>(mounts: &'a [Mount], destination: &str) -> &'a Mount {
        mounts
            .iter()
            .find(|m| m.destination() == Path::new(destination))
            .unwrap_or_else(|| panic!("no mount at {destination}"))
    }

    #[test]
    fn tmp_is_a_world_writable_sticky_tmpfs() {
        let mounts = mounts(&host(), &[]).unwrap();
        let tmp = find(&mounts, "/tmp");
        assert_eq!(tmp.typ().as_deref(), Some("tmpfs"));
        assert!(
            tmp.options()
                .as_ref()
                .unwrap()
                .contains(&"mode=1777".to_owned())
        );
    }

    #[test]
    fn host_files_are_read_only_binds() {
        let mounts = mounts(&host(), &[]).unwrap();
        for destination in ["/etc/resolv.conf", "/etc/hosts"] {
            let m = find(&mounts, destination);
            assert_eq!(m.typ().as_deref(), Some("bind"));
            assert!(m.options().as_ref().unwrap().contains(&"ro".to_owned()));
        }
        let sys = find(&mounts, "/sys");
        assert!(sys.options().as_ref().unwrap().contains(&"ro".to_owned()));
    }

    #[test]
    fn volumes_are_read_only_binds_after_the_platforms_mounts() {
        let volumes = [Bind {
            host: "/data/instances/default/r-1/volumes/db".into(),
            path: "/etc/db".into(),
        }];
        let mounts = mounts(&host(), &volumes).unwrap();
        let db = mounts.last().unwrap();
        assert_eq!(db.destination(), Path::new("/etc/db"));
        assert_eq!(db.source().as_deref(), Some(volumes[0].host.as_path()));
        let options = db.options().clone().unwrap();
        assert_eq!(options, ["rbind", "ro", "nosuid", "nodev", "noexec"]);
    }

    #[test]
    fn proc_sys_is_read_only() {
        assert!(readonly_paths().contains(&"/proc/sys".to_owned()));
        assert!(masked_paths().contains(&"/proc/kcore".to_owned()));
    }
}
