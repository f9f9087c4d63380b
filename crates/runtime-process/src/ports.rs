//! Loopback port allocation.
//!
//! A port is chosen by binding `127.0.0.1:0` and then *closing* that socket, because ordinary
//! programs (`python3 -m http.server $PORT`) bind `$PORT` themselves and would fail with
//! `EADDRINUSE` if we kept it. The kernel's choice is then leased until the instance stops, so two
//! of our instances never get the same port. The remaining race (an unrelated program grabbing the
//! port in the microseconds before the child binds it) makes the child fail to bind and exit, which
//! the supervisor reports and retries with a fresh port.
//!
//! Socket-activated instances (see `activation`) avoid the race: Nimbus keeps the bound socket
//! and passes it down, and leases its port here too, so the two kinds never collide.

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex};

/// Hands out loopback ports no other instance of this runtime holds.
#[derive(Default)]
pub(crate) struct PortAllocator {
    leased: Mutex<HashSet<u16>>,
}

/// A port held by one instance; released on drop.
pub(crate) struct PortLease {
    port: u16,
    allocator: Arc<PortAllocator>,
}

/// How often to ask the kernel again when it offers a port we already leased.
const ATTEMPTS: usize = 32;

impl PortAllocator {
    /// Lease a currently free loopback port (the probe socket is closed again).
    pub fn lease(self: &Arc<Self>) -> io::Result<PortLease> {
        let (_, lease) = self.lease_with(|| {
            let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
                .local_addr()?
                .port();
            Ok(((), port))
        })?;
        Ok(lease)
    }

    /// Lease the port of a socket `open` binds (and keeps), asking again while it picks a port
    /// another instance holds.
    pub fn lease_with<T>(
        self: &Arc<Self>,
        mut open: impl FnMut() -> io::Result<(T, u16)>,
    ) -> io::Result<(T, PortLease)> {
        for _ in 0..ATTEMPTS {
            let (socket, port) = open()?;
            if self.leased.lock().expect("port set poisoned").insert(port) {
                let lease = PortLease {
                    port,
                    allocator: Arc::clone(self),
                };
                return Ok((socket, lease));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "the kernel kept offering leased ports",
        ))
    }
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.allocator
            .leased
            .lock()
            .expect("port set poisoned")
            .remove(&self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_distinct_and_released() {
        let ports = Arc::new(PortAllocator::default());
        let leases: Vec<_> = (0..20).map(|_| ports.lease().unwrap()).collect();
        let distinct: HashSet<u16> = leases.iter().map(PortLease::port).collect();
        assert_eq!(distinct.len(), 20);
        drop(leases);
        assert!(ports.leased.lock().unwrap().is_empty());
    }
}
