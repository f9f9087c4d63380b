//! Container addresses, shared by every Nimbus server of the host (they share the bridge): one
//! file per address taken, `<dir>/<address>`, holding its owner — the server's pid and start
//! time, and the host end of the container's veth — created while holding an exclusive lock on
//! `<dir>/lock`, as CNI's host-local IPAM does. Addresses are handed out round-robin from the one
//! after the last taken (`<dir>/last`), so a released address is not reused at once. An entry
//! whose owner process is gone (a crashed server) is stale: it is taken over, and its veth is
//! reported so the caller can delete it. Never touches anything outside `dir`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::subnet::Subnet;

/// The address allocator of one bridge.
#[derive(Clone, Debug)]
pub struct Ipam {
    dir: PathBuf,
    subnet: Subnet,
}

/// An address taken for one container, given back when dropped.
#[derive(Debug)]
pub struct Lease {
    pub addr: Ipv4Addr,
    path: PathBuf,
}

/// Who holds an address: a live process (pid and start time, so a reused pid does not count).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owner {
    pid: u32,
    start: u64,
    veth: String,
}

// === impl Ipam ===

impl Ipam {
    pub fn new(dir: impl Into<PathBuf>, subnet: Subnet) -> Self {
        Self {
            dir: dir.into(),
            subnet,
        }
    }

    /// Take a free address for the container whose host-side veth is `veth`. Also returns the
    /// veth of a stale entry taken over (to delete), if any.
    pub fn allocate(&self, veth: &str) -> io::Result<(Lease, Option<String>)> {
        let _lock = self.lock()?;
        let me = Owner::current(veth)?;
        let capacity = self.subnet.capacity();
        let start = self.last().map_or(0, |n| (n + 1) % capacity);
        for offset in 0..capacity {
            let n = (start + offset) % capacity;
            let addr = self.subnet.host(n).expect("below capacity");
            if let Some(stale) = self.try_take(addr, &me)? {
                self.set_last(n)?;
                let path = self.entry(addr);
                return Ok((Lease { addr, path }, stale));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("every address of {} is taken", self.subnet),
        ))
    }

    /// Remove every stale entry; returns their veths (to delete).
    pub fn sweep(&self) -> io::Result<Vec<String>> {
        let _lock = self.lock()?;
        let mut veths = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let is_addr = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.parse::<Ipv4Addr>().is_ok());
            if !is_addr {
                continue;
            }
            if let Some(owner) = read_owner(&path)
                && !owner.alive()
            {
                remove(&path)?;
                veths.push(owner.veth);
            }
        }
        Ok(veths)
    }

    /// `Some(stale veth or None)` when `addr` is now `me`'s; `None` when a live owner has it.
    fn try_take(&self, addr: Ipv4Addr, me: &Owner) -> io::Result<Option<Option<String>>> {
        let path = self.entry(addr);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                file.write_all(me.line().as_bytes())?;
                Ok(Some(None))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_owner(&path) {
                Some(owner) if owner.alive() => Ok(None),
                stale => {
                    std::fs::write(&path, me.line())?;
                    Ok(Some(stale.map(|o| o.veth)))
                }
            },
            Err(e) => Err(e),
        }
    }

    fn lock(&self) -> io::Result<Flock<File>> {
        std::fs::create_dir_all(&self.dir)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("lock"))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| io::Error::from(errno))
    }

    fn entry(&self, addr: Ipv4Addr) -> PathBuf {
        self.dir.join(addr.to_string())
    }

    fn last(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir.join("last")).ok()?;
        text.trim().parse().ok()
    }

    fn set_last(&self, n: u32) -> io::Result<()> {
        std::fs::write(self.dir.join("last"), n.to_string())
    }
}

// === impl Lease ===

impl Lease {
    /// Give the address back (as dropping it does).
    pub fn release(self) {}
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Err(e) = remove(&self.path) {
            tracing::warn!(address = %self.addr, "cannot release a container address: {e}");
        }
    }
}

// === impl Owner ===

impl Owner {
    fn current(veth: &str) -> io::Result<Self> {
        let pid = std::process::id();
        let start = start_time(pid).ok_or_else(|| io::Error::other("no /proc/self/stat"))?;
        Ok(Self {
            pid,
            start,
            veth: veth.to_owned(),
        })
    }

    fn line(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start, self.veth)
    }

    fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        Some(Self {
            pid: words.next()?.parse().ok()?,
            start: words.next()?.parse().ok()?,
            veth: words.next()?.to_owned(),
        })
    }

    fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

fn read_owner(path: &Path) -> Option<Owner> {
    Owner::parse(&std::fs::read_to_string(path).ok()?)
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// When process `pid` started (clock ticks after boot: field 22 of `/proc/<pid>/stat`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(dir: &Path, subnet: &str) -> Ipam {
        Ipam::new(dir.join("ipam"), subnet.parse().unwrap())
    }

    #[test]
    fn addresses_are_distinct_and_round_robin() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.87.0.0/29");
        let (a, _) = ipam.allocate("va").unwrap();
        let (b, _) = ipam.allocate("vb").unwrap();
        assert_eq!(a.addr, Ipv4Addr::new(10, 87, 0, 2));
        assert_eq!(b.addr, Ipv4Addr::new(10, 87, 0, 3));
        a.release();
        let (c, _) = ipam.allocate("vc").unwrap();
        assert_eq!(
            c.addr,
            Ipv4Addr::new(10, 87, 0, 4),
            "not the one just released"
        );
    }

    #[test]
    fn a_full_subnet_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.87.0.0/30");
        let (_held, _) = ipam.allocate("va").unwrap();
        let e = ipam.allocate("vb").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
    }

    #[test]
    fn stale_entries_of_dead_owners_are_taken_over_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.87.0.0/30");
        std::fs::create_dir_all(dir.path().join("ipam")).unwrap();
        // A pid that is alive (ours) but with another start time: its server is gone.
        let dead = format!("{} 1 nvdead\n", std::process::id());
        std::fs::write(dir.path().join("ipam/10.87.0.2"), &dead).unwrap();
        let (lease, stale) = ipam.allocate("vnew").unwrap();
        assert_eq!(lease.addr, Ipv4Addr::new(10, 87, 0, 2));
        assert_eq!(stale.as_deref(), Some("nvdead"));
        assert!(ipam.sweep().unwrap().is_empty(), "a live entry is kept");
        std::fs::write(dir.path().join("ipam/10.87.0.2"), &dead).unwrap();
        assert_eq!(ipam.sweep().unwrap(), ["nvdead"]);
        assert!(!dir.path().join("ipam/10.87.0.2").exists());
    }

    #[test]
    fn start_times_identify_processes() {
        assert!(start_time(std::process::id()).is_some());
        let owner = Owner::current("v1").unwrap();
        assert!(owner.alive());
        assert_eq!(Owner::parse(&owner.line()), Some(owner));
    }
}
