//! An IPv4 subnet (`10.87.0.0/16`): parsing, its gateway (the first address, the bridge's), the
//! addresses handed to containers (every other one but the broadcast address), and whether two
//! subnets overlap. Pure; no I/O.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: a base address with its host bits zero, and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    base: Ipv4Addr,
    prefix: u8,
}

/// Why a subnet was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid subnet {text:?}: {why} (write it as 10.87.0.0/16, with /8 to /30)")]
pub struct SubnetError {
    text: String,
    why: &'static str,
}

// === impl Subnet ===

impl Subnet {
    /// The subnet of `base`/`prefix`; `None` when host bits are set or the prefix leaves no
    /// room for a gateway and one container (more than 30) or is wider than a /8.
    pub fn new(base: Ipv4Addr, prefix: u8) -> Option<Self> {
        let subnet = Self { base, prefix };
        let valid = (8..=30).contains(&prefix) && u32::from(base) & !subnet.mask() == 0;
        valid.then_some(subnet)
    }

    /// The network address (`10.87.0.0`).
    pub fn base(&self) -> Ipv4Addr {
        self.base
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// The bridge's address, the containers' default gateway: the first one.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// How many addresses containers can get (all but the network, gateway and broadcast).
    pub fn capacity(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix))) - 3
    }

    /// The `n`th container address (`0..capacity()`), after the gateway.
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        (n < self.capacity()).then(|| Ipv4Addr::from(u32::from(self.base) + 2 + n))
    }

    /// Whether `addr` is inside.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.base)
    }

    /// Whether the two share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.overlaps_route(other.base, other.prefix)
    }

    /// Like [`Subnet::overlaps`], for a route's destination (`prefix` 0 to 32).
    pub fn overlaps_route(&self, dest: Ipv4Addr, prefix: u8) -> bool {
        if prefix == 0 {
            return false; // the default route covers everything and is not a collision
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let (dest, ours) = (u32::from(dest) & mask, u32::from(self.base));
        if prefix <= self.prefix {
            ours & mask == dest
        } else {
            self.contains(Ipv4Addr::from(dest))
        }
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |why| SubnetError {
            text: text.to_owned(),
            why,
        };
        let (addr, prefix) = text.split_once('/').ok_or_else(|| fail("no /prefix"))?;
        let base: Ipv4Addr = addr.parse().map_err(|_| fail("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| fail("the prefix is not a number"))?;
        if !(8..=30).contains(&prefix) {
            return Err(fail("the prefix must be 8 to 30"));
        }
        Self::new(base, prefix).ok_or_else(|| fail("the address has host bits set"))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Subnet {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(net("10.87.0.0/16").to_string(), "10.87.0.0/16");
        for bad in [
            "10.87.0.0",
            "10.87.0.1/16",
            "10.87.0.0/31",
            "10.0.0.0/7",
            "x/16",
            "1/a",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
        let e = "10.87.0.1/16".parse::<Subnet>().unwrap_err().to_string();
        assert!(e.contains("host bits"), "{e}");
    }

    #[test]
    fn gateway_hosts_and_capacity() {
        let s = net("10.87.0.0/16");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 87, 0, 1));
        assert_eq!(s.host(0), Some(Ipv4Addr::new(10, 87, 0, 2)));
        assert_eq!(s.capacity(), 65533);
        assert_eq!(s.host(65532), Some(Ipv4Addr::new(10, 87, 255, 254)));
        assert_eq!(s.host(65533), None);
        assert_eq!(net("10.1.2.0/30").capacity(), 1);
    }

    #[test]
    fn overlaps() {
        let s = net("10.87.0.0/16");
        assert!(s.overlaps(&net("10.87.3.0/24")));
        assert!(net("10.87.3.0/24").overlaps(&s));
        assert!(s.overlaps(&net("10.0.0.0/8")));
        assert!(!s.overlaps(&net("10.88.0.0/16")));
        assert!(s.overlaps_route(Ipv4Addr::new(10, 87, 9, 0), 24));
        assert!(s.overlaps_route(Ipv4Addr::new(10, 0, 0, 0), 8));
        assert!(s.overlaps_route(Ipv4Addr::new(10, 87, 1, 1), 32));
        assert!(!s.overlaps_route(Ipv4Addr::new(10, 244, 0, 0), 24));
        assert!(!s.overlaps_route(Ipv4Addr::UNSPECIFIED, 0));
    }
}
