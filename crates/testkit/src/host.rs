//! What the host shows of a server's instances: the cgroups below the server's cgroup parent,
//! the processes in them (with their environment), and who holds a TCP port. Tests use it to
//! prove that nothing of a deleted revision, or of a crashed server, is left running. Linux
//! only: it reads `/proc` and the cgroup filesystem.
//!
//! ```text
//! pub fn cgroup_parent(data_dir: &Path) -> String            // nimbus/<digest>, as `nimbus serve` makes it
//! pub fn parent_dir(data_dir: &Path) -> Option<PathBuf>      // that parent in the pids hierarchy
//! pub struct Process { pub pid: u32, .. }                    // a pid and its start time (pid reuse safe)
//! impl Process { fn of(pid); fn alive(&self); fn env(&self); fn descends_from(&self, ancestor: u32) }
//! pub struct Instances { pub cgroups: Vec<InstanceCgroup> }  // a snapshot of the parent
//! impl Instances { fn of(data_dir); fn processes(); fn alive(); async fn wait_gone(timeout); fn of_revision(rev); fn ports() }
//! pub fn listeners(port: u16) -> Vec<u32>                    // pids holding a listening socket
//! ```

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// The cgroup parent of the server using `data_dir`: `nimbus/<first 6 bytes of the SHA-256 of
/// the canonical data directory, in hex>`. This is `crates/nimbus/src/limits.rs`'s rule; tests
/// that use it first check the directory exists while the server runs, so a change there makes
/// them fail rather than look at nothing.
pub fn cgroup_parent(data_dir: &Path) -> String {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("nimbus/{short}")
}

/// The server's cgroup parent in the hierarchy that hosts the pids controller (cgroup v1
/// `/sys/fs/cgroup/pids`, else the unified `/sys/fs/cgroup`); `None` when it does not exist.
pub fn parent_dir(data_dir: &Path) -> Option<PathBuf> {
    let parent = cgroup_parent(data_dir);
    [
        Path::new("/sys/fs/cgroup/pids"),
        Path::new("/sys/fs/cgroup"),
    ]
    .iter()
    .map(|root| root.join(&parent))
    .find(|dir| dir.is_dir())
}

/// Whether cgroups can be used here (root and a pids hierarchy); prints why not, and panics
/// when `$CI` is set: CI runs as root with cgroups.
pub fn have_cgroups() -> bool {
    let pids = Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists()
        || Path::new("/sys/fs/cgroup/cgroup.subtree_control").exists();
    let root = crate::image::is_root();
    if pids && root {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "cgroups are needed in CI (root: {root}, pids hierarchy: {pids})"
    );
    eprintln!("SKIPPED: instance cgroups need root and a cgroup filesystem");
    false
}

/// A process, told apart from a later one that reuses its pid by its start time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Process {
    pub pid: u32,
    start_time: u64,
}

// === impl Process ===

impl Process {
    /// The process with this pid now, if there is one (zombies count as gone).
    pub fn of(pid: u32) -> Option<Self> {
        let stat = Stat::read(pid)?;
        (stat.state != 'Z').then_some(Self {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether this very process still runs (not a zombie, not a new one with its pid).
    pub fn alive(&self) -> bool {
        Self::of(self.pid).is_some_and(|p| p == *self)
    }

    /// Its environment (`/proc/<pid>/environ`, as it was at exec); empty when gone.
    pub fn env(&self) -> BTreeMap<String, String> {
        let raw = std::fs::read(format!("/proc/{}/environ", self.pid)).unwrap_or_default();
        raw.split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// Whether `ancestor` is this process's parent, grandparent, ...
    pub fn descends_from(&self, ancestor: u32) -> bool {
        let mut pid = self.pid;
        for _ in 0..64 {
            match Stat::read(pid) {
                Some(stat) if stat.ppid == ancestor => return true,
                Some(stat) if stat.ppid > 1 => pid = stat.ppid,
                _ => return false,
            }
        }
        false
    }
}

/// The fields of `/proc/<pid>/stat` tests need.
struct Stat {
    state: char,
    ppid: u32,
    start_time: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses; it ends at the last ')'.
        let rest = &text[text.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(Self {
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }
}

/// The pids of the children of `pid` (every thread's `children` file).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// One instance cgroup (`<parent>/<runtime>/<namespace>/<revision>-<n>`) and what ran in it.
#[derive(Clone, Debug)]
pub struct InstanceCgroup {
    pub path: PathBuf,
    /// The directory's inode: a cgroup made again under the same name has another.
    pub inode: u64,
    pub namespace: String,
    /// The revision, from the name (the `-<n>` suffix removed).
    pub revision: String,
    pub processes: Vec<Process>,
}

impl InstanceCgroup {
    /// Whether this very cgroup still exists (the path with the same inode).
    pub fn exists(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode)
    }
}

/// The instance cgroups below a server's cgroup parent at one moment.
#[derive(Clone, Debug, Default)]
pub struct Instances {
    pub cgroups: Vec<InstanceCgroup>,
}

// === impl Instances ===

impl Instances {
    /// What is below the parent of the server using `data_dir` now (nothing if it is absent).
    pub fn of(data_dir: &Path) -> Self {
        let Some(parent) = parent_dir(data_dir) else {
            return Self::default();
        };
        let cgroups = leaf_dirs(&parent)
            .into_iter()
            .filter_map(|dir| instance_cgroup(&parent, dir))
            .collect();
        Self { cgroups }
    }

    /// Every process in every instance cgroup.
    pub fn processes(&self) -> Vec<Process> {
        self.cgroups
            .iter()
            .flat_map(|c| c.processes.iter().cloned())
            .collect()
    }

    /// The pids of this snapshot's processes that still run.
    pub fn alive(&self) -> Vec<u32> {
        let processes = self.processes().into_iter();
        processes.filter(Process::alive).map(|p| p.pid).collect()
    }

    /// Wait until none of this snapshot's processes runs and none of its cgroups exists (what
    /// a server killed with SIGKILL left must be gone once the next one is up).
    pub async fn wait_gone(&self, timeout: std::time::Duration) {
        crate::api::wait_until("the killed server's instances gone", timeout, async || {
            let cgroups: Vec<&PathBuf> = (self.cgroups.iter())
                .filter(|c| c.exists())
                .map(|c| &c.path)
                .collect();
            match (self.alive(), cgroups) {
                (alive, cgroups) if alive.is_empty() && cgroups.is_empty() => Ok(()),
                (alive, cgroups) => Err(format!("processes {alive:?}, cgroups {cgroups:?}")),
            }
        })
        .await;
    }

    /// The cgroups of one revision.
    pub fn of_revision<'a>(
        &'a self,
        revision: &'a str,
    ) -> impl Iterator<Item = &'a InstanceCgroup> {
        self.cgroups.iter().filter(move |c| c.revision == revision)
    }

    /// The processes that are instances (they carry `K_REVISION`; spare cgroups hold stubs
    /// that have not executed an instance yet), with their revision.
    pub fn instances(&self) -> Vec<(Process, String)> {
        self.processes()
            .into_iter()
            .filter_map(|p| {
                let rev = p.env().get("K_REVISION")?.clone();
                Some((p, rev))
            })
            .collect()
    }

    /// The `PORT`s the instances were given.
    pub fn ports(&self) -> Vec<u16> {
        self.instances()
            .iter()
            .filter_map(|(p, _)| p.env().get("PORT")?.parse().ok())
            .collect()
    }
}

/// Every directory below `dir` that has no subdirectory.
fn leaf_dirs(dir: &Path) -> Vec<PathBuf> {
    let subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    subdirs
        .into_iter()
        .flat_map(|d| {
            let below = leaf_dirs(&d);
            if below.is_empty() { vec![d] } else { below }
        })
        .collect()
}

/// `dir` as an instance cgroup if it is three levels below `parent`.
fn instance_cgroup(parent: &Path, dir: PathBuf) -> Option<InstanceCgroup> {
    let rel: Vec<String> = dir
        .strip_prefix(parent)
        .ok()?
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let [_runtime, namespace, name] = rel.as_slice() else {
        return None;
    };
    let revision = name.rsplit_once('-')?.0.to_string();
    let inode = std::fs::metadata(&dir).ok()?.ino();
    let processes = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter_map(Process::of)
        .collect();
    Some(InstanceCgroup {
        path: dir,
        inode,
        namespace: namespace.clone(),
        revision,
        processes,
    })
}

/// The pids holding a listening TCP socket (IPv4 or IPv6) on `port`.
pub fn listeners(port: u16) -> Vec<u32> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| holds_any(*pid, &inodes))
        .collect();
    pids.sort_unstable();
    pids
}

/// Socket inodes in state LISTEN (0A) on `port` in `/proc/net/tcp` and `/proc/net/tcp6`.
fn listening_inodes(port: u16) -> HashSet<String> {
    let hex_port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    let listening = f.get(1)?.ends_with(&hex_port) && f.get(3) == Some(&"0A");
                    if !listening {
                        return None;
                    }
                    f.get(9).map(|s| s.to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn holds_any(pid: u32, inodes: &HashSet<String>) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let t = target.to_string_lossy();
            t.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .is_some_and(|inode| inodes.contains(inode))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_has_an_env() {
        let me = Process::of(std::process::id()).unwrap();
        assert!(me.alive());
        assert!(!me.env().is_empty());
        assert!(me.descends_from(1) || std::process::id() == 1);
    }

    #[test]
    fn a_listener_is_found_by_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(listeners(port), [std::process::id()]);
        drop(l);
        assert!(listeners(port).is_empty());
    }

    #[test]
    fn a_dead_child_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let p = Process::of(child.id());
        child.wait().unwrap();
        assert!(p.is_none_or(|p| !p.alive()));
    }
}
