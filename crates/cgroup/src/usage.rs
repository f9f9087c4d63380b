//! [`UsageReader`]: an instance's CPU time and memory use, read from its cgroup's accounting
//! files without owning the cgroup (the supervisor keeps that; `/metrics` reads at scrape time).

use std::path::{Path, PathBuf};

use crate::fsio::{read_key, read_number};
use crate::{Cgroup, CgroupVersion, Controller};

/// Reads one cgroup's CPU and memory accounting. Cheap to clone; reading a cgroup that is gone
/// gives `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageReader {
    cpu: (PathBuf, CgroupVersion),
    memory: (PathBuf, CgroupVersion),
}

// === impl UsageReader ===

impl UsageReader {
    /// The reader of `cgroup`'s accounting.
    pub fn new(cgroup: &Cgroup) -> Self {
        let of = |c| (cgroup.dir(c), cgroup.version(c));
        Self {
            cpu: of(Controller::Cpu),
            memory: of(Controller::Memory),
        }
    }

    /// CPU time used by every process that ran in the cgroup, in seconds: `usage_usec` of
    /// `cpu.stat` (v2) or `cpuacct.usage` (v1, nanoseconds; the `cpuacct` controller is mounted
    /// with `cpu` on every common v1 layout).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let (dir, version) = &self.cpu;
        match version {
            CgroupVersion::V2 => read_key(&dir.join("cpu.stat"), "usage_usec").map(micros),
            CgroupVersion::V1 => v1_cpuacct(dir).map(|ns| ns as f64 / 1e9),
        }
    }

    /// Memory charged to the cgroup now, in bytes: `memory.current` (v2) or
    /// `memory.usage_in_bytes` (v1).
    pub fn memory_bytes(&self) -> Option<u64> {
        let (dir, version) = &self.memory;
        let file = match version {
            CgroupVersion::V2 => "memory.current",
            CgroupVersion::V1 => "memory.usage_in_bytes",
        };
        read_number(&dir.join(file)).ok()
    }
}

fn micros(usec: u64) -> f64 {
    usec as f64 / 1e6
}

/// `cpuacct.usage` in the cpu hierarchy's directory, or in a separately mounted `cpuacct` one.
fn v1_cpuacct(cpu_dir: &Path) -> Option<u64> {
    if let Ok(ns) = read_number(&cpu_dir.join("cpuacct.usage")) {
        return Some(ns);
    }
    let (root, path) = split_v1(cpu_dir)?;
    read_number(&root.join("cpuacct").join(path).join("cpuacct.usage")).ok()
}

/// `/sys/fs/cgroup/cpu/a/b` → (`/sys/fs/cgroup`, `a/b`): the mount's parent and the cgroup path.
fn split_v1(cpu_dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut ancestors = cpu_dir.ancestors();
    for mount in ancestors.by_ref() {
        let name = mount.file_name()?.to_string_lossy();
        if name == "cpu" || name == "cpu,cpuacct" {
            let rest = cpu_dir.strip_prefix(mount).ok()?.to_path_buf();
            return Some((mount.parent()?.to_path_buf(), rest));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(dir: &Path, version: CgroupVersion) -> UsageReader {
        UsageReader {
            cpu: (dir.to_path_buf(), version),
            memory: (dir.to_path_buf(), version),
        }
    }

    #[test]
    fn reads_v2_accounting() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cpu.stat"), "usage_usec 1500000\nuser_usec 1\n").unwrap();
        std::fs::write(dir.path().join("memory.current"), "4096\n").unwrap();
        let r = reader(dir.path(), CgroupVersion::V2);
        assert_eq!(r.cpu_seconds(), Some(1.5));
        assert_eq!(r.memory_bytes(), Some(4096));
    }

    #[test]
    fn reads_v1_accounting() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cpuacct.usage"), "250000000\n").unwrap();
        std::fs::write(dir.path().join("memory.usage_in_bytes"), "8192\n").unwrap();
        let r = reader(dir.path(), CgroupVersion::V1);
        assert_eq!(r.cpu_seconds(), Some(0.25));
        assert_eq!(r.memory_bytes(), Some(8192));
    }

    #[test]
    fn a_removed_cgroup_reads_as_nothing() {
        let r = reader(Path::new("/nonexistent/nimbus/x"), CgroupVersion::V1);
        assert_eq!((r.cpu_seconds(), r.memory_bytes()), (None, None));
    }

    #[test]
    fn v1_cpuacct_may_be_its_own_mount() {
        let (root, path) = split_v1(Path::new("/sys/fs/cgroup/cpu/nimbus/a")).unwrap();
        assert_eq!((root.as_path(), path.as_path()), (Path::new("/sys/fs/cgroup"), Path::new("nimbus/a")));
    }
}
