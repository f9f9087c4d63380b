//! Resource accounting of the instance cgroups below the parent, for metering: CPU time used
//! (v2 `cpu.stat` `usage_usec`; v1 `cpuacct.usage` when cpuacct is mounted with cpu, else the
//! user and system time of the cgroup's live processes from `/proc/<pid>/stat`) and memory in
//! use (v2 `memory.current`, v1 `memory.usage_in_bytes`). Read-only: it never creates, moves
//! or removes anything.

use std::fs;
use std::path::{Path, PathBuf};

use crate::cgroups::Cgroups;
use crate::{CgroupVersion, Controller, fsio, kill};

/// `/proc/<pid>/stat` counts in USER_HZ, which Linux fixes at 100 per second for user space.
const USER_HZ: u64 = 100;

/// One instance cgroup's counters at the time it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceUsage {
    /// The cgroup's name below the parent (what [`Cgroups::create`] was given).
    pub name: String,
    /// CPU time used since the cgroup was created, in microseconds (`None`: unreadable).
    pub cpu_usec: Option<u64>,
    /// Memory in use now, in bytes (page cache included, as the kernel charges it).
    pub memory_bytes: Option<u64>,
}

// === impl Cgroups ===

impl Cgroups {
    /// The counters of every leaf cgroup below the parent (each instance's, and spares'), read
    /// now. Cgroups that disappear while being read are left out.
    pub fn usage(&self) -> Vec<InstanceUsage> {
        let Some(memory) = self.hierarchy_of(Controller::Memory) else {
            return Vec::new();
        };
        let base = memory.root.join(self.parent());
        let mut leaves = Vec::new();
        collect_leaves(&base, &mut leaves);
        leaves
            .iter()
            .filter_map(|dir| dir.strip_prefix(&base).ok())
            .filter_map(|rel| rel.to_str())
            .map(|name| self.usage_of(name))
            .collect()
    }

    fn usage_of(&self, name: &str) -> InstanceUsage {
        InstanceUsage {
            name: name.to_owned(),
            cpu_usec: self.cpu_usec(name),
            memory_bytes: self.memory_bytes(name),
        }
    }

    fn dir_of(&self, controller: Controller, name: &str) -> Option<(PathBuf, CgroupVersion)> {
        let h = self.hierarchy_of(controller)?;
        Some((h.root.join(self.parent()).join(name), h.version))
    }

    fn memory_bytes(&self, name: &str) -> Option<u64> {
        let (dir, version) = self.dir_of(Controller::Memory, name)?;
        let file = match version {
            CgroupVersion::V2 => "memory.current",
            CgroupVersion::V1 => "memory.usage_in_bytes",
        };
        fsio::read_number(&dir.join(file)).ok()
    }

    fn cpu_usec(&self, name: &str) -> Option<u64> {
        let (dir, version) = self.dir_of(Controller::Cpu, name)?;
        match version {
            CgroupVersion::V2 => fsio::read_key(&dir.join("cpu.stat"), "usage_usec"),
            CgroupVersion::V1 => fsio::read_number(&dir.join("cpuacct.usage"))
                .ok()
                .map(|ns| ns / 1000)
                .or_else(|| processes_cpu_usec(&dir)),
        }
    }
}

/// The cgroups below `dir` that have no cgroup below them.
fn collect_leaves(dir: &Path, leaves: &mut Vec<PathBuf>) {
    for child in kill::subdirs(dir) {
        if kill::subdirs(&child).is_empty() {
            leaves.push(child);
        } else {
            collect_leaves(&child, leaves);
        }
    }
}

/// The user + system time of the processes in the cgroup at `dir` now (cgroup v1 without
/// cpuacct): exited processes' time is not counted.
fn processes_cpu_usec(dir: &Path) -> Option<u64> {
    let pids = fsio::read_pids(&dir.join("cgroup.procs")).ok()?;
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| stat_ticks(&stat))
        .sum();
    Some(ticks * 1_000_000 / USER_HZ)
}

/// `utime + stime` of a `/proc/<pid>/stat` line (fields 14 and 15; the command name, field 2,
/// may hold spaces and parentheses, so fields are counted after its last `)`).
fn stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_odd_command_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 10";
        assert_eq!(stat_ticks(stat), Some(10));
        assert_eq!(stat_ticks("42 (x"), None);
        assert_eq!(stat_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn leaves_are_the_deepest_directories() {
        let root = std::env::temp_dir().join(format!("nimbus-cgroup-usage-{}", std::process::id()));
        fs::create_dir_all(root.join("tag/default/a-1")).unwrap();
        fs::create_dir_all(root.join("tag/default/b-2")).unwrap();
        fs::create_dir_all(root.join("lone")).unwrap();
        let mut leaves = Vec::new();
        collect_leaves(&root, &mut leaves);
        leaves.sort();
        let names: Vec<_> = leaves
            .iter()
            .map(|l| l.strip_prefix(&root).unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            vec![
                PathBuf::from("lone"),
                PathBuf::from("tag/default/a-1"),
                PathBuf::from("tag/default/b-2")
            ]
        );
        fs::remove_dir_all(root).unwrap();
    }
}
