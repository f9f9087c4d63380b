//! How the container launcher is set up: which runc, where its state and instances' files go,
//! default limits. Plain data with documented defaults; no I/O.

use std::path::PathBuf;
use std::sync::Arc;

use nimbus_image::{NoProgress, Progress};

use crate::network::NetworkConfig;
use crate::userns::UserNamespaces;

/// Configuration of an [`crate::OciLauncher`].
#[derive(Clone)]
pub struct OciConfig {
    /// The runc binary (default `runc`, looked up on `PATH`).
    pub runc: PathBuf,
    /// runc's state directory (`runc --root`), e.g. `<data-dir>/runc`. Must be on a local
    /// filesystem; containers left there by a crash are deleted before their id is reused.
    pub state_root: PathBuf,
    /// `pids.max` of a container whose revision sets none (default 4096).
    pub default_pids_limit: u64,
    /// Give each container a private overlayfs over the image's shared rootfs (default true).
    /// When false, or when overlayfs cannot be mounted, containers run on the shared rootfs
    /// mounted read-only (writable only in /tmp and /dev/shm).
    pub overlay: bool,
    /// The host file bound at /etc/resolv.conf (default the host's own).
    pub resolv_conf: PathBuf,
    /// The host file bound at /etc/hosts (default the host's own).
    pub hosts: PathBuf,
    /// Told about image pulls started by `prepare` (default: nothing).
    pub pull_progress: Arc<dyn Progress>,
    /// Give each container a network namespace of its own on this bridge (default: `nimbus0`,
    /// 10.87.0.0/16); `None`: every container shares the host's network, as do those whose
    /// revision says `nimbus.dev/host-network: "true"`.
    pub network: Option<NetworkConfig>,
    /// Run every container in a user namespace of its own, its ids 0–65535 mapped to this
    /// server's host range (see [`UserNamespaces`]; default `None`: containers share the host's
    /// ids). Needs `network`, and a host that [`crate::OciLauncher::check`] accepts.
    pub user_namespaces: Option<UserNamespaces>,
}

impl OciConfig {
    /// Defaults, with runc's state in `state_root`.
    pub fn new(state_root: impl Into<PathBuf>) -> Self {
        Self {
            runc: PathBuf::from("runc"),
            state_root: state_root.into(),
            default_pids_limit: 4096,
            overlay: true,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hosts: PathBuf::from("/etc/hosts"),
            pull_progress: Arc::new(NoProgress),
            network: Some(NetworkConfig::default()),
            user_namespaces: None,
        }
    }
}

impl std::fmt::Debug for OciConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciConfig")
            .field("runc", &self.runc)
            .field("state_root", &self.state_root)
            .field("default_pids_limit", &self.default_pids_limit)
            .field("overlay", &self.overlay)
            .field("resolv_conf", &self.resolv_conf)
            .field("hosts", &self.hosts)
            .field("network", &self.network)
            .field("user_namespaces", &self.user_namespaces)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = OciConfig::new("/data/runc");
        assert_eq!(config.runc, PathBuf::from("runc"));
        assert_eq!(config.state_root, PathBuf::from("/data/runc"));
        assert_eq!(config.default_pids_limit, 4096);
        assert!(config.overlay);
        assert_eq!(config.network, Some(NetworkConfig::default()));
        assert_eq!(config.user_namespaces, None, "opt-in");
        assert!(format!("{config:?}").contains("/data/runc"));
    }
}
