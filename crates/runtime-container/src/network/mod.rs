//! A network namespace per container: the container gets its own loopback and an `eth0` with an
//! address of its own on a bridge of the host (default `nimbus0`, 10.87.0.0/16), and listens on
//! its container port there; the host reaches it at that address, and the host's loopback is
//! not the container's. Every Nimbus server of the host shares the bridge and records the
//! addresses it takes in one directory ([`ipam`]).
//!
//! For each container [`Network::attach`], on a thread of its own, creates the namespace
//! (`unshare(CLONE_NEWNET)`; the thread then leaves) or, for a container with a user namespace,
//! enters the one that namespace owns (see `userns`), holds it by an open descriptor that runc
//! joins through `/proc/<server pid>/fd/<n>`, creates the veth pair with its inner end made
//! directly inside the namespace as `eth0`, and configures the inside; [`Network::detach`]
//! deletes the host end (which takes the pair with it), closes the descriptor (the namespace
//! goes with the container's last process) and gives the address back. Holding namespaces by
//! descriptor rather than by a bind mount means a crashed server leaves none behind: they end
//! with their containers, which a restarted server deletes; the addresses a dead server held
//! are reclaimed (and their veths deleted) when a server next sets up the bridge.
//!
//! Beyond the host, containers reach out through source NAT ([`egress`]: a table `ip nimbus` of
//! Nimbus's own and IPv4 forwarding, set up with the bridge; without `nft`, a warning and no
//! outbound access); from other interfaces only replies are forwarded in. Their resolv.conf is
//! the host's less the nameservers they cannot reach ([`dns`]). The host's default route, other
//! devices and other firewall tables are never touched.

mod dns;
mod egress;
mod ipam;
mod netlink;
mod subnet;

use std::fs::File;
use std::hash::{Hash as _, Hasher as _};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sched::CloneFlags;

use self::ipam::{Ipam, Lease};
use self::netlink::Netlink;
pub use self::subnet::{Subnet, SubnetError};

/// The port a container in its own network namespace listens on (`$PORT`): Knative's default
/// `containerPort`.
pub const CONTAINER_PORT: u16 = 8080;

/// How containers are networked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The host bridge containers are attached to (default `nimbus0`; at most 15 bytes).
    pub bridge: String,
    /// Its subnet: the bridge has the first address, containers the others (default
    /// `10.87.0.0/16`). Must not overlap a route of the host.
    pub subnet: Subnet,
    /// Where taken addresses are recorded, shared by every server using the bridge (default
    /// `/run/nimbus/ipam/<bridge>`).
    pub ipam_dir: PathBuf,
}

impl NetworkConfig {
    /// The defaults with bridge `bridge` and subnet `subnet`.
    pub fn new(bridge: &str, subnet: Subnet) -> Self {
        Self {
            bridge: bridge.to_owned(),
            subnet,
            ipam_dir: PathBuf::from("/run/nimbus/ipam").join(bridge),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        let subnet = Subnet::new(Ipv4Addr::new(10, 87, 0, 0), 16).expect("a valid subnet");
        Self::new("nimbus0", subnet)
    }
}

/// Why a container's network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{action}: {source}")]
    Netlink {
        action: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the container subnet {subnet} overlaps the host's route to {route}: give `nimbus serve \
         --container-subnet` a free range"
    )]
    SubnetInUse { subnet: Subnet, route: String },
    #[error("network device {0} vanished while being set up")]
    Gone(String),
    #[error("the thread setting up the container's network panicked")]
    Panicked,
}

impl NetworkError {
    fn netlink(action: String, source: rtnetlink::Error) -> Self {
        Self::Netlink { action, source }
    }

    fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io { action, source }
    }
}

/// The containers' network of one launcher.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    ipam: Ipam,
    /// Tells this server's veth names from other servers' (its runc state directory).
    tag: String,
    /// The bridge's index once set up (and the host checked) by this launcher.
    bridge: Mutex<Option<u32>>,
    /// Whether a rewrite of the host's resolv.conf was logged.
    dns_told: AtomicBool,
}

/// One container's network: its namespace (held open), address and host-side veth.
#[derive(Debug)]
pub struct Attachment {
    netns: File,
    pub addr: Ipv4Addr,
    veth: String,
    lease: Lease,
}

// === impl Network ===

impl Network {
    pub fn new(config: NetworkConfig, tag: &str) -> Self {
        Self {
            ipam: Ipam::new(&config.ipam_dir, config.subnet),
            config,
            tag: tag.to_owned(),
            bridge: Mutex::new(None),
            dns_told: AtomicBool::new(false),
        }
    }

    /// A network namespace for container `id`, attached to the bridge: `netns` (an empty one
    /// made beforehand), else a new one. Blocking: it runs on a thread of its own, which enters
    /// the namespace.
    pub fn attach(&self, id: &str, netns: Option<&File>) -> Result<Attachment, NetworkError> {
        let veth = self.veth_name(id);
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| self.attach_on_this_thread(&veth, netns));
            worker.join().unwrap_or(Err(NetworkError::Panicked))
        })
    }

    /// The file to bind at a container's /etc/resolv.conf, given the host's `host` ([`dns`]):
    /// `host` itself, or a rewritten copy in `bundle`.
    pub fn resolv_conf(&self, host: &Path, bundle: &Path) -> Result<PathBuf, NetworkError> {
        let text = std::fs::read_to_string(host)
            .map_err(NetworkError::io("reading the host's resolv.conf"))?;
        let upstream = std::fs::read_to_string(dns::SYSTEMD_RESOLVED_UPSTREAM).ok();
        let Some(rewrite) = dns::rewrite(&text, upstream.as_deref()) else {
            return Ok(host.to_owned());
        };
        let path = bundle.join("resolv.conf");
        std::fs::write(&path, &rewrite.text)
            .map_err(NetworkError::io("writing a container's resolv.conf"))?;
        // Readable by the container's user whatever the server's umask (077).
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).map_err(
            NetworkError::io("setting the mode of a container's resolv.conf"),
        )?;
        if !self.dns_told.swap(true, Ordering::Relaxed) {
            tell_dns(host, &rewrite);
        }
        Ok(path)
    }

    /// Undo [`Network::attach`] once the container is gone.
    pub async fn detach(&self, attachment: Attachment) {
        let Attachment {
            netns, veth, lease, ..
        } = attachment;
        let deleted = async { Netlink::connect()?.delete(&veth).await };
        if let Err(e) = deleted.await {
            tracing::warn!(veth, "cannot delete a container's veth: {e}");
        }
        drop(netns);
        lease.release();
    }

    /// The body of [`Network::attach`]: this thread leaves the host's namespace.
    fn attach_on_this_thread(
        &self,
        veth: &str,
        netns: Option<&File>,
    ) -> Result<Attachment, NetworkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(NetworkError::io("starting a netlink runtime"))?;
        let host = rt.block_on(async { Netlink::connect() })?;
        let bridge = self.bridge(&rt, &host)?;
        let netns = enter(netns)?;
        let inside = rt.block_on(async { Netlink::connect() })?;
        let (lease, stale) = self
            .ipam
            .allocate(veth)
            .map_err(NetworkError::io("taking a container address"))?;
        let wired = rt.block_on(async {
            if let Some(stale) = stale {
                host.delete(&stale).await?;
            }
            host.delete(veth).await?; // a crashed predecessor's, same name
            host.add_veth(veth, bridge, netns.as_raw_fd()).await?;
            inside
                .configure_inside(lease.addr, &self.config.subnet)
                .await
        });
        match wired {
            Ok(()) => Ok(Attachment {
                netns,
                addr: lease.addr,
                veth: veth.to_owned(),
                lease,
            }),
            Err(e) => {
                let _ = rt.block_on(host.delete(veth));
                lease.release();
                Err(e)
            }
        }
    }

    /// The bridge's index, setting it up on first use: refuse a subnet the host already routes
    /// elsewhere, create the bridge, and reclaim what crashed servers left.
    fn bridge(&self, rt: &tokio::runtime::Runtime, host: &Netlink) -> Result<u32, NetworkError> {
        let mut known = self.bridge.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(index) = *known {
            return Ok(index);
        }
        let (name, subnet) = (&self.config.bridge, &self.config.subnet);
        let index = rt.block_on(async {
            let existing = host.index(name).await?;
            if let Some(route) = host.overlapping_route(subnet, existing).await? {
                return Err(NetworkError::SubnetInUse {
                    subnet: *subnet,
                    route,
                });
            }
            host.ensure_bridge(name, subnet).await
        })?;
        let stale = self
            .ipam
            .sweep()
            .map_err(NetworkError::io("reclaiming container addresses"))?;
        for veth in stale {
            tracing::info!(veth, "deleting a veth a stopped server left");
            rt.block_on(host.delete(&veth))?;
        }
        egress::set_up(name, subnet);
        *known = Some(index);
        Ok(index)
    }

    /// `nv` and 12 hex digits of a hash of this server and `id` (device names are at most 15
    /// bytes).
    fn veth_name(&self, id: &str) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&self.tag, id).hash(&mut hasher);
        format!("nv{:012x}", hasher.finish() & 0xffff_ffff_ffff)
    }
}

/// Move this thread into `netns`, or a new network namespace; that namespace.
fn enter(netns: Option<&File>) -> Result<File, NetworkError> {
    let Some(netns) = netns else {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetworkError::io("creating a network namespace")(e.into()))?;
        return File::open("/proc/thread-self/ns/net")
            .map_err(NetworkError::io("opening the new network namespace"));
    };
    nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| NetworkError::io("entering the container's network namespace")(e.into()))?;
    netns.try_clone().map_err(NetworkError::io(
        "holding the container's network namespace",
    ))
}

/// Log, once, how containers' resolv.conf differs from the host's.
fn tell_dns(host: &Path, rewrite: &dns::Rewrite) {
    let host = host.display();
    let unreachable = match rewrite.dropped.as_slice() {
        [] => format!("{host} names no nameserver"),
        dropped => format!(
            "{host} names nameservers a container's own network cannot reach ({})",
            dropped.join(", ")
        ),
    };
    match rewrite.source {
        dns::Source::Host => tracing::info!("{unreachable}: containers use its others"),
        dns::Source::SystemdResolved => tracing::info!(
            "{unreachable}: containers use systemd-resolved's upstream servers ({})",
            dns::SYSTEMD_RESOLVED_UPSTREAM
        ),
        dns::Source::Fallback => tracing::warn!(
            "{unreachable}, and no other: containers use {} instead (Docker's default); name \
             your network's resolver in {host} for them to use it, or run `nimbus serve \
             --container-host-network`",
            dns::FALLBACK_NAMESERVERS.join(" and ")
        ),
    }
}

// === impl Attachment ===

impl Attachment {
    /// Give the namespace and address up without deleting the veth: for a container that
    /// never started (the namespace, with nothing in it, ends with its descriptor, and the
    /// pair with it).
    pub fn release(self) {
        drop(self.netns);
        self.lease.release();
    }

    /// The namespace as a path runc can open: this process's descriptor of it.
    pub fn netns_path(&self) -> PathBuf {
        let fd = self.netns.as_raw_fd();
        PathBuf::from(format!("/proc/{}/fd/{fd}", std::process::id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_differ_by_server_and_instance() {
        let a = Network::new(NetworkConfig::default(), "/data/a/runc");
        let b = Network::new(NetworkConfig::default(), "/data/b/runc");
        let name = a.veth_name("hello-00001-1");
        assert!(name.len() <= 15 && name.starts_with("nv"), "{name}");
        assert_eq!(name, a.veth_name("hello-00001-1"));
        assert_ne!(name, a.veth_name("hello-00001-2"));
        assert_ne!(name, b.veth_name("hello-00001-1"));
    }

    #[test]
    fn defaults() {
        let config = NetworkConfig::default();
        assert_eq!(config.bridge, "nimbus0");
        assert_eq!(config.subnet.to_string(), "10.87.0.0/16");
        assert_eq!(config.ipam_dir, PathBuf::from("/run/nimbus/ipam/nimbus0"));
    }
}
