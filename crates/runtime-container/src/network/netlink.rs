//! The network devices of containers, through rtnetlink: the bridge (created once, with the
//! gateway address, up), one veth pair per container (the host end on the bridge, the other
//! end created directly inside the container's network namespace as `eth0`), and, from inside
//! that namespace, loopback up, `eth0`'s address and the default route via the bridge. Every
//! call works on the network namespace its [`Netlink`] socket was opened in. Never touches a
//! device, address or route it did not create, except to read the host's routes.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;

use futures::TryStreamExt as _;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::NetworkError;
use super::subnet::Subnet;

const EEXIST: i32 = nix::libc::EEXIST;
const ENODEV: i32 = nix::libc::ENODEV;

/// A route netlink socket of one network namespace (the one the calling thread was in).
pub(super) struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Open a socket in the calling thread's network namespace; its connection runs on the
    /// current tokio runtime.
    pub fn connect() -> Result<Self, NetworkError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(NetworkError::io("opening a netlink socket"))?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The index of device `name`, if there is one.
    pub async fn index(&self, name: &str) -> Result<Option<u32>, NetworkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(NetworkError::netlink(format!("looking up {name}"), e)),
        }
    }

    /// Make bridge `name` with `subnet`'s gateway address, up; keep one that exists.
    pub async fn ensure_bridge(&self, name: &str, subnet: &Subnet) -> Result<u32, NetworkError> {
        let created = self.handle.link().add(LinkBridge::new(name).up().build());
        allow_exists(created.execute().await)
            .map_err(|e| NetworkError::netlink(format!("creating bridge {name}"), e))?;
        let index = self.existing(name).await?;
        let gateway = IpAddr::V4(subnet.gateway());
        let address = self.handle.address().add(index, gateway, subnet.prefix());
        allow_exists(address.execute().await)
            .map_err(|e| NetworkError::netlink(format!("adding {gateway} to {name}"), e))?;
        self.up(index, name).await?;
        Ok(index)
    }

    /// A host route other than through device `bridge` that overlaps `subnet`, as text.
    pub async fn overlapping_route(
        &self,
        subnet: &Subnet,
        bridge: Option<u32>,
    ) -> Result<Option<String>, NetworkError> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = self.handle.route().get(query).execute();
        let listing = |e| NetworkError::netlink("listing the host's routes".to_owned(), e);
        while let Some(route) = routes.try_next().await.map_err(listing)? {
            let prefix = route.header.destination_prefix_length;
            let (mut dest, mut oif) = (None, None);
            for attribute in &route.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => dest = Some(*a),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            let Some(dest) = dest else { continue };
            if oif.is_some() && oif == bridge {
                continue;
            }
            if subnet.overlaps_route(dest, prefix) {
                return Ok(Some(format!("{dest}/{prefix}")));
            }
        }
        Ok(None)
    }

    /// A veth pair: `host` on bridge `bridge`, up; its peer `eth0` inside namespace `netns`.
    pub async fn add_veth(
        &self,
        host: &str,
        bridge: u32,
        netns: RawFd,
    ) -> Result<(), NetworkError> {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name("eth0")
            .setns_by_fd(netns)
            .build();
        let pair = LinkVeth::new(host, "eth0")
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .controller(bridge)
            .up()
            .build();
        self.handle
            .link()
            .add(pair)
            .execute()
            .await
            .map_err(|e| NetworkError::netlink(format!("creating veth {host}"), e))
    }

    /// Delete device `name`; nothing when there is none.
    pub async fn delete(&self, name: &str) -> Result<(), NetworkError> {
        let Some(index) = self.index(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(index).execute().await {
            Err(e) if errno(&e) != Some(ENODEV) => {
                Err(NetworkError::netlink(format!("deleting {name}"), e))
            }
            _ => Ok(()),
        }
    }

    /// Inside a container's namespace: loopback up, `eth0` with `addr` up, and the default
    /// route via the gateway.
    pub async fn configure_inside(
        &self,
        addr: Ipv4Addr,
        subnet: &Subnet,
    ) -> Result<(), NetworkError> {
        let lo = self.existing("lo").await?;
        self.up(lo, "lo").await?;
        let eth0 = self.existing("eth0").await?;
        let address = self
            .handle
            .address()
            .add(eth0, IpAddr::V4(addr), subnet.prefix());
        address
            .execute()
            .await
            .map_err(|e| NetworkError::netlink(format!("adding {addr} to eth0"), e))?;
        self.up(eth0, "eth0").await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(subnet.gateway())
            .output_interface(eth0)
            .build();
        self.handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(|e| NetworkError::netlink("adding the default route".to_owned(), e))
    }

    /// The index of device `name`, which must exist.
    async fn existing(&self, name: &str) -> Result<u32, NetworkError> {
        self.index(name)
            .await?
            .ok_or_else(|| NetworkError::Gone(name.to_owned()))
    }

    async fn up(&self, index: u32, name: &str) -> Result<(), NetworkError> {
        let up: LinkMessage = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(up)
            .execute()
            .await
            .map_err(|e| NetworkError::netlink(format!("bringing {name} up"), e))
    }
}

/// The errno of a netlink error answer.
pub(super) fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|c| -c.get()),
        _ => None,
    }
}

fn allow_exists(result: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match result {
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        other => other,
    }
}
