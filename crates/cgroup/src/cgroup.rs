//! [`Cgroup`]: one instance's cgroup, present in every hierarchy that hosts a needed controller.
//! Moves processes in, reads the OOM and pids counters, kills everything in it, and removes it
//! (also on drop). Counters are taken relative to the moment it was created, so a reused
//! cgroup does not report an earlier instance's OOM kills.

use std::path::PathBuf;

use crate::fsio::{self, read_key};
use crate::kill::{self, KILL_DEADLINE};
use crate::layout::Hierarchy;
use crate::settings::settings;
use crate::{CgroupError, CgroupVersion, Controller, Joiner, Limits};

/// One instance's cgroup. Dropping it kills its processes and removes it (best effort); call
/// [`Cgroup::remove`] to see errors. Killing and removing block the thread (a few seconds at
/// worst, usually well under a millisecond): from async code, do it in `spawn_blocking`.
#[derive(Debug)]
pub struct Cgroup {
    /// `/<parent>/<name>`: the absolute cgroup path; [`Cgroup::path`] is this without the `/`.
    absolute: String,
    /// `<parent>`, where pruning of empty intermediate cgroups stops.
    parent: String,
    hierarchies: Vec<Hierarchy>,
    oom_base: OomReading,
    pids_base: u64,
    removed: bool,
}

/// What the kernel offers to count OOM kills with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OomReading {
    /// `oom_kill` of `memory.events` (v2) or `memory.oom_control` (v1, kernel ≥ 4.13).
    Kills(u64),
    /// Older v1 kernels: `memory.failcnt`, how often usage hit the limit.
    LimitHits(u64),
}

// === impl Cgroup ===

impl Cgroup {
    pub(crate) fn new(parent: &str, name: &str, hierarchies: Vec<Hierarchy>) -> Self {
        Self {
            absolute: format!("/{parent}/{name}"),
            parent: parent.to_owned(),
            hierarchies,
            oom_base: OomReading::Kills(0),
            pids_base: 0,
            removed: false,
        }
    }

    /// The path relative to each hierarchy root, e.g. `nimbus/default/hello-00001-3`.
    pub fn path(&self) -> &str {
        &self.absolute[1..]
    }

    /// The same path with a leading `/` (`/nimbus/default/hello-00001-3`): the form runc's
    /// `linux.cgroupsPath` needs with the cgroupfs driver (a relative one would be taken as
    /// relative to runc's own cgroup).
    pub fn absolute_path(&self) -> &str {
        &self.absolute
    }

    /// The directory of this cgroup in the hierarchy hosting `controller`.
    pub fn dir(&self, controller: Controller) -> PathBuf {
        self.hierarchy(controller).root.join(self.path())
    }

    /// The version of the hierarchy hosting `controller` (they differ on hybrid hosts).
    pub fn version(&self, controller: Controller) -> CgroupVersion {
        self.hierarchy(controller).version
    }

    /// Open the `cgroup.procs` files now, for a child to join between fork and exec; see
    /// [`Joiner`].
    pub fn joiner(&self) -> Result<Joiner, CgroupError> {
        Joiner::open(&self.procs_files())
    }

    /// Move the running process `pid` (and all its threads) into this cgroup. Its children
    /// forked before the move stay where they are: prefer [`Cgroup::joiner`].
    pub fn add_pid(&self, pid: u32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for file in self.procs_files() {
            fsio::write_value(&file, &pid)?;
        }
        Ok(())
    }

    /// The processes in this cgroup (and any cgroup below it), sorted.
    pub fn procs(&self) -> Vec<u32> {
        kill::pids_below(&self.dirs())
    }

    /// How many times the kernel OOM-killed a process in this cgroup since it was created:
    /// `oom_kill` in `memory.events` (v2) or `memory.oom_control` (v1, kernel ≥ 4.13). On older
    /// v1 kernels there is no such counter: this returns 1 when `memory.failcnt` grew (usage hit
    /// the limit), which is an OOM only if the instance also died of SIGKILL.
    pub fn oom_kills(&self) -> u64 {
        match (self.oom_reading(), self.oom_base) {
            (OomReading::Kills(now), OomReading::Kills(base)) => now.saturating_sub(base),
            (OomReading::LimitHits(now), OomReading::LimitHits(base)) => u64::from(now > base),
            _ => 0,
        }
    }

    /// How many times a fork or clone failed because `pids.max` was reached since creation
    /// (`max` in `pids.events`; 0 where the kernel lacks the file).
    pub fn pids_limit_hits(&self) -> u64 {
        self.pids_events().saturating_sub(self.pids_base)
    }

    /// The number of processes and threads now counted against `pids.max`.
    pub fn pids_current(&self) -> Result<u64, CgroupError> {
        fsio::read_number(&self.dir(Controller::Pids).join("pids.current"))
    }

    /// SIGKILL every process in the cgroup until it is empty (at most about two seconds;
    /// `cgroup.kill` first on cgroup v2). Catches daemonised children that left the process
    /// group. Processes still there at the deadline are logged.
    pub fn kill_all(&self) {
        let left = kill::kill_tree(&self.dirs(), KILL_DEADLINE);
        if !left.is_empty() {
            tracing::warn!(cgroup = %self.absolute, pids = ?left, "processes survived SIGKILL");
        }
    }

    /// [`Cgroup::kill_all`], then remove the cgroup in every hierarchy (retrying briefly while
    /// the kernel reports it busy), and any intermediate cgroups below the parent left empty.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.removed = true;
        self.teardown()
    }

    pub(crate) fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        for hierarchy in &self.hierarchies {
            let dir = hierarchy.root.join(self.path());
            for &controller in &hierarchy.controllers {
                for setting in settings(controller, hierarchy.version, limits) {
                    let file = dir.join(setting.file);
                    if setting.optional && !file.exists() {
                        continue;
                    }
                    fsio::write_value(&file, &setting.value)?;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn record_baselines(&mut self) {
        self.oom_base = self.oom_reading();
        self.pids_base = self.pids_events();
    }

    fn teardown(&self) -> Result<(), CgroupError> {
        self.kill_all();
        let mut first = Ok(());
        for hierarchy in &self.hierarchies {
            let dir = hierarchy.root.join(self.path());
            match kill::remove_tree(&dir) {
                Ok(()) => kill::prune_ancestors(&dir, &hierarchy.root.join(&self.parent)),
                Err(e) if first.is_ok() => first = Err(e),
                Err(_) => {}
            }
        }
        first
    }

    fn hierarchy(&self, controller: Controller) -> &Hierarchy {
        self.hierarchies
            .iter()
            .find(|h| h.hosts(controller))
            .expect("layout::plan places every controller in a hierarchy")
    }

    fn dirs(&self) -> Vec<PathBuf> {
        let path = self.path();
        self.hierarchies.iter().map(|h| h.root.join(path)).collect()
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    fn oom_reading(&self) -> OomReading {
        let dir = self.dir(Controller::Memory);
        let kills = match self.version(Controller::Memory) {
            CgroupVersion::V2 => read_key(&dir.join("memory.events"), "oom_kill"),
            CgroupVersion::V1 => read_key(&dir.join("memory.oom_control"), "oom_kill"),
        };
        match kills {
            Some(kills) => OomReading::Kills(kills),
            None => {
                let hits = fsio::read_number(&dir.join("memory.failcnt")).unwrap_or(0);
                OomReading::LimitHits(hits)
            }
        }
    }

    fn pids_events(&self) -> u64 {
        read_key(&self.dir(Controller::Pids).join("pids.events"), "max").unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Err(e) = self.teardown() {
            tracing::warn!(cgroup = %self.absolute, error = %e, "could not remove cgroup");
        }
    }
}
