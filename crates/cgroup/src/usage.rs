//! Resource accounting of instance cgroups, read-only (it never creates, moves or removes
//! anything): [`UsageReader`], one instance's CPU time and memory use, read from its cgroup's
//! accounting files without owning the cgroup (the supervisor keeps that; `/metrics` reads at
//! scrape time); and [`Cgroups::usage`], every instance cgroup below the parent at once, for
//! metering (`nimbus-usage`).

use std::path::{Path, PathBuf};

use crate::cgroups::Cgroups;
use crate::fsio::{read_key, read_number};
use crate::{Cgroup, CgroupVersion, Controller, kill};

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

/// `cpuacct.usage` in the cpu hierarchy's directory, or in a separately mounted `cpuacct` one
/// when the instance has a cgroup there; else the CPU time of the processes in the cgroup now
/// (with their reaped children's) from `/proc`, as Nimbus makes no `cpuacct` cgroup of its own.
fn v1_cpuacct(cpu_dir: &Path) -> Option<u64> {
    if let Ok(ns) = read_number(&cpu_dir.join("cpuacct.usage")) {
        return Some(ns);
    }
    let (root, path) = split_v1(cpu_dir)?;
    let own = root.join("cpuacct").join(path).join("cpuacct.usage");
    read_number(&own).ok().or_else(|| procs_cpu_nanos(cpu_dir))
}

/// The summed CPU time of the processes listed in `dir`'s `cgroup.procs`, in nanoseconds
/// (`None` when the cgroup is gone).
fn procs_cpu_nanos(dir: &Path) -> Option<u64> {
    let pids = crate::fsio::read_pids(&dir.join("cgroup.procs")).ok()?;
    let ticks: u64 = pids.iter().filter_map(|pid| proc_ticks(*pid)).sum();
    Some(ticks.saturating_mul(1_000_000_000) / clock_ticks())
}

/// utime + stime + cutime + cstime of `/proc/<pid>/stat`, in clock ticks.
fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

/// The four CPU fields (14–17) after the command name, which may hold spaces and parentheses.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): fields 14..=17 are at 11..=14.
    let ticks = fields.get(11..15)?;
    ticks.iter().map(|f| f.parse::<u64>().ok()).sum()
}

fn clock_ticks() -> u64 {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 100,
    }
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

// === impl Cgroups ===

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
        let reader = self
            .dir_of(Controller::Cpu, name)
            .zip(self.dir_of(Controller::Memory, name))
            .map(|(cpu, memory)| UsageReader { cpu, memory });
        InstanceUsage {
            name: name.to_owned(),
            cpu_usec: reader
                .as_ref()
                .and_then(UsageReader::cpu_seconds)
                .map(|s| (s * 1e6) as u64),
            memory_bytes: reader.as_ref().and_then(UsageReader::memory_bytes),
        }
    }

    fn dir_of(&self, controller: Controller, name: &str) -> Option<(PathBuf, CgroupVersion)> {
        let h = self.hierarchy_of(controller)?;
        Some((h.root.join(self.parent()).join(name), h.version))
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
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 1500000\nuser_usec 1\n",
        )
        .unwrap();
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
    fn proc_stat_cpu_fields_survive_odd_command_names() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 5 1 1";
        assert_eq!(parse_stat_ticks(stat), Some(310));
        assert_eq!(parse_stat_ticks("42 (x"), None);
    }

    #[test]
    fn own_process_has_cpu_time() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id().to_string();
        std::fs::write(dir.path().join("cgroup.procs"), me).unwrap();
        let busy: u64 = (0..3_000_000u64).fold(0, |a, b| a ^ b.wrapping_mul(31));
        assert!(procs_cpu_nanos(dir.path()).is_some(), "{busy}");
    }

    #[test]
    fn v1_cpuacct_may_be_its_own_mount() {
        let (root, path) = split_v1(Path::new("/sys/fs/cgroup/cpu/nimbus/a")).unwrap();
        assert_eq!(
            (root.as_path(), path.as_path()),
            (Path::new("/sys/fs/cgroup"), Path::new("nimbus/a"))
        );
    }

    #[test]
    fn leaves_are_the_deepest_directories() {
        let root = std::env::temp_dir().join(format!("nimbus-cgroup-usage-{}", std::process::id()));
        std::fs::create_dir_all(root.join("tag/default/a-1")).unwrap();
        std::fs::create_dir_all(root.join("tag/default/b-2")).unwrap();
        std::fs::create_dir_all(root.join("lone")).unwrap();
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
        std::fs::remove_dir_all(root).unwrap();
    }
}
