//! The OCI container launcher: runs instances of a revision's image under `runc`.
//!
//! [`OciLauncher`] is a [`Launcher`](nimbus_runtime_process::Launcher) for the instance
//! supervisor of `nimbus-runtime-process`, which keeps everything else (ports, cgroups,
//! probes, restarts, draining, logs). For each instance it:
//!
//! 1. makes sure the image is stored and unpacked ([`nimbus_image::ImageStore::ensure`], once
//!    per revision);
//! 2. writes a bundle in the instance's scratch directory: an overlayfs whose lower layer is the
//!    image's shared rootfs (never written to) mounted at `bundle/rootfs`, and a `config.json`
//!    built from the image config and the container's fields exactly as Kubernetes combines
//!    them (`command`/`args` over ENTRYPOINT/CMD, env over the image's, `workingDir`,
//!    `runAsUser`/`runAsGroup` over the image's `User`), the resource limits converted as the
//!    kubelet converts them, and Knative's runtime contract (/tmp 1777, the standard /dev
//!    entries, no /dev/console, read-only /proc/sys, the host's /etc/resolv.conf, without its
//!    loopback nameservers for a container with a network of its own);
//! 3. returns `runc --root <state> run --keep --bundle <bundle> <id>`, which runs the
//!    container in the foreground: runc forwards SIGTERM to the container's process, passes
//!    its stdout/stderr through and exits with its status (128 + n when killed by signal n, so
//!    137 for SIGKILL and for the OOM killer alike);
//! 4. on cleanup, `runc delete --force` (kills the container if still running, removes its
//!    state and cgroup), unmounts the overlay and removes the bundle.
//!
//! **Networking**: containers get their own pid, ipc, uts (hostname = instance id), mount and
//! network namespaces: each has its own loopback and an `eth0` with an address on the host's
//! bridge (see `network`; outbound traffic is masqueraded as the host's), listens on `$PORT`
//! = its `containerPort` (default [`CONTAINER_PORT`]) there, and is reached by
//! the router and probes at `address:port` ([`Launcher::address`]); the host's loopback-only
//! ports are out of its reach. A revision annotated `nimbus.dev/host-network: "true"` (or a
//! launcher configured without a network) shares the host's network namespace instead: it
//! listens on a loopback port of the host like a host process and can reach anything the host
//! can.
//!
//! **Security context**: `allowPrivilegeEscalation` (no new privileges by default),
//! `capabilities` (over Docker's default set minus `NET_RAW`), `readOnlyRootFilesystem`,
//! `supplementalGroups`, and `seccompProfile`: Docker's and containerd's default filter
//! (`seccomp`) unless `Unconfined`.
//!
//! [`Launcher::address`]: nimbus_runtime_process::Launcher::address
//!
//! **User namespaces** (opt-in: [`OciConfig::user_namespaces`], `nimbus serve
//! --container-user-namespaces`): each container gets a user namespace of its own whose ids
//! 0–65535 are the server's host range (default from 0x10000000), so its root is an
//! unprivileged id on the host and its capabilities act only on its own namespaces. Its network
//! namespace belongs to that user namespace, its image is seen through a read-only idmapped
//! mount under the overlay (the shared rootfs is never chowned or copied), and its root is
//! mounted where only the mapped root can reach it. Ids above 65535 and the host's network are
//! refused; [`OciLauncher::check`] refuses a host that cannot do it at startup. See `userns`.
//!
//! **Signals**: the program is pid 1 of its pid namespace, so — as in Kubernetes — SIGTERM only
//! stops it if it handles SIGTERM; otherwise it runs until the supervisor's grace period ends.
//! The container's process is in its own session (runc calls `setsid`), so signalling runc's
//! process group does not reach it: SIGTERM reaches it through runc's forwarding, and after
//! SIGKILL to runc the container keeps running until `cleanup` deletes it.
//!
//! This crate never decides how many instances run, never reads API objects and never
//! writes to an image's shared root filesystem.

mod bundle;
mod caps;
mod config;
mod error;
mod launcher;
mod mounts;
mod network;
mod process;
mod resources;
mod rootfs;
mod runc;
mod seccomp;
mod setup;
mod user;
mod userns;

pub use bundle::{
    CAPABILITIES, ContainerParts, JoinedUserNamespace, OCI_VERSION, RootChoice,
    config as runtime_spec,
};
pub use config::OciConfig;
pub use error::ContainerError;
pub use launcher::OciLauncher;
pub use mounts::HostFiles;
pub use network::{CONTAINER_PORT, NetworkConfig, NetworkError, Subnet, SubnetError};
pub use resources::linux_resources;
pub use rootfs::is_mount_point;
pub use user::{ResolvedUser, UserError};
pub use userns::{
    DEFAULT_HOST_BASE, DEFAULT_ROOTS_DIR, HostIdRange, IDS, UserNamespaces, UserNsError,
};
