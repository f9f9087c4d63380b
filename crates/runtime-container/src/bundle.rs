//! The runtime spec (`config.json`) of one container, built from what the launcher resolved:
//! argv, environment, working directory and ids of the process; its root filesystem; mounts;
//! limits; namespaces. Pure; the launcher does the I/O around it.
//!
//! Isolation: pid, ipc, uts and mount namespaces (plus cgroup on cgroup v2), and the network
//! namespace the launcher prepared when there is one (otherwise the container shares the
//! host's network and listens on `$PORT` like a host process). No terminal (so no
//! /dev/console). The container's `securityContext` decides the rest: no new privileges unless `allowPrivilegeEscalation`,
//! the capabilities of [`crate::caps::granted`] (by default Docker's minus `NET_RAW`), none
//! inherited or ambient, so a non-root process keeps none across `execve`; the pod's
//! supplemental groups; a read-only root with `readOnlyRootFilesystem` (/tmp and /dev/shm stay
//! writable). runc supplies /dev/null, zero, full, random, urandom, tty and the /dev/fd, stdin,
//! stdout and stderr links itself.
//!
//! With a user namespace (see `userns`) the container joins the one the launcher made, by path,
//! and the spec carries its mapping (`linux.uidMappings`/`gidMappings`), which runc 1.1 needs
//! to know the host ids of the container's root; runc orders the joins (user first) itself.

use std::path::{Path, PathBuf};

use nimbus_runtime::{Resources, Seccomp, Security};
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capabilities, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

pub use crate::caps::CAPABILITIES;
use nimbus_runtime::volumes::Bind;

use crate::mounts::{self, HostFiles};
use crate::resources::linux_resources;
use crate::user::ResolvedUser;
use crate::userns::HostIdRange;
use crate::{caps, seccomp};

/// The runtime-spec version written; runc 1.1 speaks 1.0.2.
pub const OCI_VERSION: &str = "1.0.2";

/// Longest hostname the kernel accepts.
const HOSTNAME_MAX: usize = 64;

/// Where the container's root filesystem is (a path relative to the bundle, or absolute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootChoice {
    /// The per-instance overlay: `rootfs` in the bundle, or with a user namespace its mount
    /// point under the roots directory.
    Overlay(PathBuf),
    /// A root mounted read-only (when overlayfs is unavailable): the image's shared rootfs
    /// itself, or with a user namespace its idmapped mount.
    ReadOnly(PathBuf),
}

/// The user namespace a container joins.
#[derive(Clone, Debug)]
pub struct JoinedUserNamespace {
    /// A path runc can open.
    pub path: PathBuf,
    /// The mapping it was made with.
    pub range: HostIdRange,
}

/// Everything a container's runtime spec is made from.
#[derive(Clone, Debug)]
pub struct ContainerParts<'a> {
    /// The instance id; also the hostname (cut to the kernel's limit).
    pub id: &'a str,
    /// argv of the process (see [`crate::OciLauncher`] for how it is derived).
    pub args: Vec<String>,
    /// `K=V` environment, in order.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// Ids of the process.
    pub user: &'a ResolvedUser,
    pub root: RootChoice,
    /// Bound read-only at /etc/resolv.conf and /etc/hosts.
    pub host_files: &'a HostFiles,
    /// Requests and limits, converted as the kubelet does.
    pub resources: &'a Resources,
    /// `pids.max` when `resources` sets none.
    pub default_pids_limit: u64,
    /// The cgroup runc joins (relative to each hierarchy's root); `None`: runc's default.
    pub cgroup: Option<&'a str>,
    /// The host uses the unified cgroup v2 hierarchy (adds a cgroup namespace).
    pub cgroup_v2: bool,
    /// The container's `securityContext` beyond its user.
    pub security: &'a Security,
    /// The network namespace to join (a path runc can open); `None`: the host's network.
    pub netns: Option<&'a Path>,
    /// Secret and ConfigMap volumes, bound read-only (parents first).
    pub volumes: &'a [Bind],
    /// The user namespace to join; `None`: the host's ids.
    pub userns: Option<JoinedUserNamespace>,
}

/// The runtime spec for `parts`.
pub fn config(parts: &ContainerParts<'_>) -> Result<Spec, OciSpecError> {
    let granted = caps::granted(parts.security);
    SpecBuilder::default()
        .version(OCI_VERSION)
        .hostname(hostname(parts.id))
        .root(root(&parts.root, parts.security.read_only_root_filesystem)?)
        .process(process(parts, &granted)?)
        .mounts(mounts::mounts(parts.host_files, parts.volumes)?)
        .linux(linux(parts, &granted)?)
        .build()
}

/// The instance id cut to the kernel's hostname limit (ids are ASCII).
pub fn hostname(id: &str) -> String {
    id.chars().take(HOSTNAME_MAX).collect()
}

fn root(choice: &RootChoice, readonly: bool) -> Result<oci_spec::runtime::Root, OciSpecError> {
    match choice {
        RootChoice::Overlay(path) => RootBuilder::default().path(path).readonly(readonly).build(),
        RootChoice::ReadOnly(path) => RootBuilder::default().path(path).readonly(true).build(),
    }
}

/// The process, holding `granted` (bounding, effective and permitted; none inherited or ambient).
fn process(
    parts: &ContainerParts<'_>,
    granted: &Capabilities,
) -> Result<oci_spec::runtime::Process, OciSpecError> {
    let security = parts.security;
    let user = UserBuilder::default()
        .uid(parts.user.uid)
        .gid(parts.user.gid)
        .additional_gids(additional_gids(parts))
        .build()?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(granted.clone())
        .effective(granted.clone())
        .permitted(granted.clone())
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()?;
    ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(parts.args.clone())
        .env(parts.env.clone())
        .cwd(parts.cwd.as_str())
        .no_new_privileges(!security.allow_privilege_escalation)
        .capabilities(capabilities)
        .build()
}

/// The image user's groups, then the pod's supplemental groups not already among them.
fn additional_gids(parts: &ContainerParts<'_>) -> Vec<u32> {
    let mut gids = parts.user.additional_gids.clone();
    for gid in &parts.security.supplemental_groups {
        if !gids.contains(gid) {
            gids.push(*gid);
        }
    }
    gids
}

/// Namespaces, limits, hardened paths, cgroup, and the seccomp filter for `granted`.
fn linux(
    parts: &ContainerParts<'_>,
    granted: &Capabilities,
) -> Result<oci_spec::runtime::Linux, OciSpecError> {
    let mut namespaces = Vec::new();
    if let Some(userns) = &parts.userns {
        let user = LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .path(&userns.path)
            .build()?;
        namespaces.push(user);
    }
    let mut kinds = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if parts.cgroup_v2 {
        kinds.push(LinuxNamespaceType::Cgroup);
    }
    for typ in kinds {
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
    }
    if let Some(path) = parts.netns {
        let network = LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path(path)
            .build()?;
        namespaces.push(network);
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(linux_resources(parts.resources, parts.default_pids_limit)?)
        .masked_paths(mounts::masked_paths())
        .readonly_paths(mounts::readonly_paths());
    if parts.security.seccomp == Seccomp::RuntimeDefault {
        linux = linux.seccomp(seccomp::runtime_default(granted)?);
    }
    if let Some(userns) = &parts.userns {
        let mappings = userns.range.mappings()?;
        linux = linux.uid_mappings(mappings.clone()).gid_mappings(mappings);
    }
    if let Some(cgroup) = parts.cgroup {
        linux = linux.cgroups_path(PathBuf::from(format!(
            "/{}",
            cgroup.trim_start_matches('/')
        )));
    }
    linux.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn user() -> ResolvedUser {
        ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![50],
            home: "/app".into(),
        }
    }

    fn host() -> HostFiles {
        HostFiles {
            resolv_conf: "/etc/resolv.conf".into(),
            hosts: "/etc/hosts".into(),
        }
    }

    fn json(root: RootChoice, cgroup: Option<&str>, cgroup_v2: bool) -> Value {
        with_security(root, cgroup, cgroup_v2, &Security::default(), None)
    }

    fn with_security(
        root: RootChoice,
        cgroup: Option<&str>,
        cgroup_v2: bool,
        security: &Security,
        netns: Option<&Path>,
    ) -> Value {
        let (user, host, resources) = (user(), host(), Resources::default());
        let parts = ContainerParts {
            id: "hello-00001-1",
            args: vec!["/app/test-app".into()],
            env: vec!["PORT=8080".into()],
            cwd: "/app".into(),
            user: &user,
            root,
            host_files: &host,
            resources: &resources,
            default_pids_limit: 4096,
            cgroup,
            cgroup_v2,
            security,
            netns,
            volumes: &[],
            userns: None,
        };
        serde_json::to_value(config(&parts).unwrap()).unwrap()
    }

    fn overlay() -> RootChoice {
        RootChoice::Overlay("rootfs".into())
    }

    fn namespaces(spec: &Value) -> Vec<String> {
        let list = spec["linux"]["namespaces"].as_array().unwrap();
        list.iter()
            .map(|n| n["type"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn process_fields_are_as_resolved() {
        let spec = json(overlay(), None, false);
        assert_eq!(spec["ociVersion"], OCI_VERSION);
        assert_eq!(spec["hostname"], "hello-00001-1");
        let process = &spec["process"];
        assert_eq!(process["terminal"], false);
        assert_eq!(process["noNewPrivileges"], true);
        assert_eq!(process["args"][0], "/app/test-app");
        assert_eq!(process["env"][0], "PORT=8080");
        assert_eq!(process["cwd"], "/app");
        assert_eq!(process["user"]["uid"], 1000);
        assert_eq!(process["user"]["gid"], 1000);
        assert_eq!(process["user"]["additionalGids"][0], 50);
    }

    #[test]
    fn capabilities_exclude_raw_sockets_and_are_never_inherited() {
        let spec = json(overlay(), None, false);
        let caps = &spec["process"]["capabilities"];
        let bounding = caps["bounding"].as_array().unwrap();
        assert_eq!(bounding.len(), CAPABILITIES.len());
        assert!(bounding.contains(&Value::from("CAP_NET_BIND_SERVICE")));
        assert!(!bounding.contains(&Value::from("CAP_NET_RAW")));
        assert!(!bounding.contains(&Value::from("CAP_SYS_ADMIN")));
        assert!(caps["ambient"].as_array().unwrap().is_empty());
        assert!(caps["inheritable"].as_array().unwrap().is_empty());
    }

    fn secured(security: Security) -> Value {
        with_security(overlay(), None, true, &security, None)
    }

    #[test]
    fn privilege_escalation_is_refused_unless_allowed() {
        let default = secured(Security::default());
        assert_eq!(default["process"]["noNewPrivileges"], true);
        let allowed = secured(Security {
            allow_privilege_escalation: true,
            ..Security::default()
        });
        assert_eq!(allowed["process"]["noNewPrivileges"], false);
    }

    #[test]
    fn capabilities_follow_add_and_drop() {
        let spec = secured(Security {
            capabilities_add: vec!["NET_ADMIN".into()],
            capabilities_drop: vec!["ALL".into()],
            ..Security::default()
        });
        let caps = &spec["process"]["capabilities"];
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(caps[set], serde_json::json!(["CAP_NET_ADMIN"]), "{set}");
        }
        assert!(caps["ambient"].as_array().unwrap().is_empty());
        assert!(caps["inheritable"].as_array().unwrap().is_empty());
    }

    #[test]
    fn supplemental_groups_follow_the_users_own() {
        let spec = secured(Security {
            supplemental_groups: vec![50, 2000, 3000],
            ..Security::default()
        });
        assert_eq!(
            spec["process"]["user"]["additionalGids"],
            serde_json::json!([50, 2000, 3000])
        );
    }

    #[test]
    fn a_read_only_root_filesystem_makes_the_overlay_read_only() {
        let spec = secured(Security {
            read_only_root_filesystem: true,
            ..Security::default()
        });
        assert_eq!(spec["root"]["readonly"], true);
        assert_eq!(secured(Security::default())["root"]["readonly"], false);
    }

    #[test]
    fn the_default_seccomp_filter_applies_unless_unconfined() {
        let default = secured(Security::default());
        let filter = &default["linux"]["seccomp"];
        assert_eq!(filter["defaultAction"], "SCMP_ACT_ERRNO");
        let allowed = |name: &str| {
            filter["syscalls"].as_array().unwrap().iter().any(|rule| {
                rule["action"] == "SCMP_ACT_ALLOW"
                    && rule.get("args").is_none()
                    && rule["names"].as_array().unwrap().contains(&name.into())
            })
        };
        assert!(allowed("read"));
        assert!(!allowed("mount"));
        let admin = secured(Security {
            capabilities_add: vec!["SYS_ADMIN".into()],
            ..Security::default()
        });
        assert!(
            admin["linux"]["seccomp"]["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["names"].as_array().unwrap().contains(&"mount".into()))
        );
        let unconfined = secured(Security {
            seccomp: Seccomp::Unconfined,
            ..Security::default()
        });
        assert!(unconfined["linux"].get("seccomp").is_none());
    }

    #[test]
    fn a_prepared_network_namespace_is_joined_by_path() {
        let path = Path::new("/proc/1/fd/7");
        let spec = with_security(overlay(), None, true, &Security::default(), Some(path));
        assert_eq!(
            namespaces(&spec),
            ["pid", "ipc", "uts", "mount", "cgroup", "network"]
        );
        let list = spec["linux"]["namespaces"].as_array().unwrap();
        assert_eq!(list[5]["path"], "/proc/1/fd/7");
    }

    #[test]
    fn a_user_namespace_is_joined_by_path_with_its_mapping() {
        let (user, host, resources) = (user(), host(), Resources::default());
        let security = Security::default();
        let userns = JoinedUserNamespace {
            path: "/proc/1/fd/8".into(),
            range: HostIdRange::default(),
        };
        let parts = ContainerParts {
            id: "hello-00001-1",
            args: vec!["/app/test-app".into()],
            env: vec![],
            cwd: "/".into(),
            user: &user,
            root: RootChoice::Overlay("/run/nimbus/roots/ab/hello-00001-1".into()),
            host_files: &host,
            resources: &resources,
            default_pids_limit: 4096,
            cgroup: None,
            cgroup_v2: true,
            security: &security,
            netns: Some(Path::new("/proc/1/fd/7")),
            volumes: &[],
            userns: Some(userns),
        };
        let spec = serde_json::to_value(config(&parts).unwrap()).unwrap();
        assert_eq!(
            namespaces(&spec),
            ["user", "pid", "ipc", "uts", "mount", "cgroup", "network"]
        );
        let linux = &spec["linux"];
        assert_eq!(linux["namespaces"][0]["path"], "/proc/1/fd/8");
        let mapping = serde_json::json!([{"containerID": 0, "hostID": 0x1000_0000, "size": 65536}]);
        assert_eq!(linux["uidMappings"], mapping);
        assert_eq!(linux["gidMappings"], mapping);
        assert_eq!(spec["root"]["path"], "/run/nimbus/roots/ab/hello-00001-1");
        // The ids inside, the capabilities, the filter and the hardening are as without one.
        assert_eq!(spec["process"]["user"]["uid"], 1000);
        let bounding = spec["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(bounding.len(), CAPABILITIES.len());
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(linux["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(!linux["maskedPaths"].as_array().unwrap().is_empty());
        let plain = secured(Security::default());
        assert!(plain["linux"].get("uidMappings").is_none());
        assert!(!namespaces(&plain).contains(&"user".to_owned()));
    }

    #[test]
    fn without_one_the_network_is_the_hosts() {
        let spec = json(overlay(), None, false);
        assert_eq!(namespaces(&spec), ["pid", "ipc", "uts", "mount"]);
        let v2 = json(overlay(), None, true);
        assert_eq!(namespaces(&v2), ["pid", "ipc", "uts", "mount", "cgroup"]);
    }

    #[test]
    fn root_is_the_overlay_or_the_shared_rootfs_read_only() {
        let overlay = json(overlay(), None, false);
        assert_eq!(overlay["root"]["path"], "rootfs");
        assert_eq!(overlay["root"]["readonly"], false);
        let shared = json(RootChoice::ReadOnly("/images/x/rootfs".into()), None, false);
        assert_eq!(shared["root"]["path"], "/images/x/rootfs");
        assert_eq!(shared["root"]["readonly"], true);
    }

    #[test]
    fn cgroups_path_is_absolute_when_given() {
        let none = json(overlay(), None, false);
        assert!(none["linux"].get("cgroupsPath").is_none());
        let given = json(overlay(), Some("nimbus/default/hello-1"), false);
        assert_eq!(given["linux"]["cgroupsPath"], "/nimbus/default/hello-1");
        assert_eq!(given["linux"]["resources"]["pids"]["limit"], 4096);
        assert!(
            given["linux"]["readonlyPaths"]
                .as_array()
                .unwrap()
                .contains(&"/proc/sys".into())
        );
    }

    #[test]
    fn long_ids_are_cut_to_a_valid_hostname() {
        assert_eq!(hostname(&"a".repeat(80)).len(), HOSTNAME_MAX);
        assert_eq!(hostname("short"), "short");
    }
}
