//! [`Cgroups`]: the detected layout (which hierarchy hosts memory, cpu and pids, under which
//! parent cgroup) and the operations on the whole parent: detecting it, creating instance
//! cgroups in it, and cleaning what a crashed run left behind. It never touches cgroups outside
//! `<hierarchy root>/<parent>`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cgroup::Cgroup;
use crate::kill::{self, KILL_DEADLINE};
use crate::layout::{self, Hierarchy};
use crate::mountinfo::{self, CgroupMount};
use crate::{CgroupError, CgroupVersion, Controller, Limits, fsio, name, subtree};

/// How often `create` retries when a concurrent `remove` pruned an intermediate directory.
const CREATE_ATTEMPTS: usize = 5;

/// The cgroup hierarchies of this host and the parent cgroup Nimbus owns in them.
///
/// The parent must belong to one Nimbus process: [`Cgroups::clean_stale`] kills everything in it.
#[derive(Clone, Debug)]
pub struct Cgroups {
    /// Relative to each hierarchy root, without outer slashes (`nimbus`).
    parent: String,
    hierarchies: Vec<Hierarchy>,
}

// === impl Cgroups ===

impl Cgroups {
    /// Detect the hierarchies from `/proc/self/mountinfo` (memory, cpu and pids are needed; a
    /// controller mounted as cgroup v1 is used there, otherwise it must be on cgroup v2), create
    /// `<root>/<parent>` in each (enabling the v2 controllers from the root down), and check that
    /// a cgroup can be created in it. `Err(Unavailable)` says what is missing: not root, no
    /// delegation, a read-only cgroup filesystem, or which controller.
    pub fn detect(parent: &str) -> Result<Self, CgroupError> {
        let parent = name::parent(parent)?;
        let mounts = read_mounts()?;
        let hierarchies = layout::plan(&mounts, &v2_controllers)
            .map_err(|why| CgroupError::Unavailable { why })?;
        let cgroups = Self {
            parent,
            hierarchies,
        };
        for hierarchy in &cgroups.hierarchies {
            cgroups.prepare_parent(hierarchy).map_err(unavailable)?;
        }
        cgroups.probe()?;
        Ok(cgroups)
    }

    /// [`CgroupVersion::V2`] when memory, cpu and pids are all on the unified hierarchy,
    /// otherwise [`CgroupVersion::V1`] (hybrid hosts whose controllers are mounted as v1).
    pub fn version(&self) -> CgroupVersion {
        let all_v2 = self
            .hierarchies
            .iter()
            .all(|h| h.version == CgroupVersion::V2);
        if all_v2 {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        }
    }

    /// The parent cgroup, relative to each hierarchy root (`nimbus`).
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// Create `<parent>/<name>` in every hierarchy and write `limits`. `name` may contain `/`
    /// (`default/hello-00001/hello-00001-3`); missing intermediate cgroups are created. A
    /// cgroup left over with that name is emptied (its processes killed) and made anew, so
    /// `name` must not be the name of a live instance. Blocks for up to a few seconds when
    /// there is such a leftover to kill.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        name::instance(name)?;
        self.clear_leftover(name);
        // From here on, dropping `cgroup` on an error removes whatever was made.
        let mut cgroup = Cgroup::new(&self.parent, name, self.hierarchies.clone());
        let mut attempt = 1;
        while let Err(e) = self.make_dirs(name) {
            if !is_not_found(&e) || attempt == CREATE_ATTEMPTS {
                return Err(e);
            }
            attempt += 1;
        }
        cgroup.apply(limits)?;
        cgroup.record_baselines();
        Ok(cgroup)
    }

    /// Kill the processes in, and remove, every cgroup below the parent: what a previous run
    /// that crashed left behind. Best effort: tries all of them and returns the first failure.
    /// Call it at startup, before creating any instance. Blocks while killing (a few seconds
    /// at most).
    pub fn clean_stale(&self) -> Result<(), CgroupError> {
        let stale: Vec<PathBuf> = self
            .parent_dirs()
            .iter()
            .flat_map(|dir| kill::subdirs(dir))
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        tracing::info!(count = stale.len(), parent = %self.parent, "removing stale cgroups");
        kill::kill_tree(&stale, KILL_DEADLINE);
        first_error(stale.iter().map(|dir| kill::remove_tree(dir)))
    }

    /// Kill everything below the parent and remove the parent itself, in every hierarchy (for
    /// a clean shutdown, and for tests).
    pub fn remove_all(&self) -> Result<(), CgroupError> {
        let dirs = self.parent_dirs();
        kill::kill_tree(&dirs, KILL_DEADLINE);
        first_error(dirs.iter().map(|dir| kill::remove_tree(dir)))
    }

    /// The hierarchy hosting `controller`.
    pub(crate) fn hierarchy_of(&self, controller: Controller) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.hosts(controller))
    }

    fn parent_dirs(&self) -> Vec<PathBuf> {
        let parent = &self.parent;
        self.hierarchies
            .iter()
            .map(|h| h.root.join(parent))
            .collect()
    }

    /// Create the parent down from the root; on v2, enable the controllers at every level.
    fn prepare_parent(&self, hierarchy: &Hierarchy) -> Result<(), CgroupError> {
        let mut dir = hierarchy.root.clone();
        for part in self.parent.split('/') {
            self.delegate(hierarchy, &dir)?;
            dir.push(part);
            fsio::make_dir(&dir).map_err(|e| CgroupError::io(&dir, e))?;
        }
        self.delegate(hierarchy, &dir)
    }

    /// Create and remove a cgroup below the parent, checking each controller's files appear.
    fn probe(&self) -> Result<(), CgroupError> {
        // Unique per call: runtimes detected at once in one process (tests) must not remove
        // each other's probe while they look at it.
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = format!("nimbus-probe-{}-{n}", std::process::id());
        for hierarchy in &self.hierarchies {
            let dir = hierarchy.root.join(&self.parent).join(&probe);
            fsio::make_dir(&dir).map_err(|e| unavailable(CgroupError::io(&dir, e)))?;
            let missing = hierarchy
                .controllers
                .iter()
                .find(|c| !dir.join(probe_file(**c, hierarchy.version)).exists());
            let _ = fs::remove_dir(&dir);
            if let Some(controller) = missing {
                return Err(CgroupError::Unavailable {
                    why: format!(
                        "the {controller} controller is not enabled for cgroups under {}: \
                         enable it in the ancestors' cgroup.subtree_control",
                        dir.parent().unwrap_or(&dir).display()
                    ),
                });
            }
        }
        Ok(())
    }

    fn delegate(&self, hierarchy: &Hierarchy, dir: &Path) -> Result<(), CgroupError> {
        match hierarchy.version {
            CgroupVersion::V1 => Ok(()),
            CgroupVersion::V2 => subtree::enable(dir, &hierarchy.controllers),
        }
    }

    /// Empty and remove a cgroup with this name left by an earlier instance; if it cannot be
    /// removed, `create` reuses it (its counters are then taken relative to now).
    fn clear_leftover(&self, name: &str) {
        let leftovers: Vec<PathBuf> = self
            .parent_dirs()
            .iter()
            .map(|dir| dir.join(name))
            .filter(|dir| dir.exists())
            .collect();
        if leftovers.is_empty() {
            return;
        }
        kill::kill_tree(&leftovers, KILL_DEADLINE);
        for dir in &leftovers {
            if let Err(e) = kill::remove_tree(dir) {
                tracing::warn!(error = %e, "reusing a cgroup that could not be removed");
            }
        }
    }

    fn make_dirs(&self, name: &str) -> Result<(), CgroupError> {
        for hierarchy in &self.hierarchies {
            let mut dir = hierarchy.root.join(&self.parent);
            let mut parts = name.split('/').peekable();
            while let Some(part) = parts.next() {
                dir.push(part);
                fsio::make_dir(&dir).map_err(|e| CgroupError::io(&dir, e))?;
                if parts.peek().is_some() {
                    self.delegate(hierarchy, &dir)?;
                }
            }
        }
        Ok(())
    }
}

/// A control file each controller's cgroups have, to check the controller is really there.
fn probe_file(controller: crate::Controller, version: CgroupVersion) -> &'static str {
    use crate::Controller::{Cpu, Memory, Pids};
    match (controller, version) {
        (Memory, CgroupVersion::V1) => "memory.limit_in_bytes",
        (Memory, CgroupVersion::V2) => "memory.max",
        (Cpu, CgroupVersion::V1) => "cpu.shares",
        (Cpu, CgroupVersion::V2) => "cpu.max",
        (Pids, _) => "pids.max",
    }
}

fn read_mounts() -> Result<Vec<CgroupMount>, CgroupError> {
    if let Ok(text) = fs::read_to_string("/proc/self/mountinfo") {
        return Ok(mountinfo::parse_mountinfo(&text));
    }
    match fs::read_to_string("/proc/mounts") {
        Ok(text) => Ok(mountinfo::parse_mounts(&text)),
        Err(e) => Err(CgroupError::Unavailable {
            why: format!("cannot read /proc/self/mountinfo or /proc/mounts ({e}); mount /proc"),
        }),
    }
}

/// What a cgroup v2 mount offers: its root's `cgroup.controllers` (nothing if unreadable).
fn v2_controllers(mount: &Path) -> Vec<String> {
    fs::read_to_string(mount.join("cgroup.controllers"))
        .map(|text| text.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Turn a failure to prepare the parent into [`CgroupError::Unavailable`] with advice.
fn unavailable(err: CgroupError) -> CgroupError {
    let (path, source) = match &err {
        CgroupError::Io { path, source } | CgroupError::Write { path, source, .. } => {
            (path, source)
        }
        _ => return err,
    };
    let advice = match source.kind() {
        io::ErrorKind::PermissionDenied => {
            "run Nimbus as root, or delegate a cgroup subtree to its user (systemd: Delegate=yes) \
             and use it as the parent"
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            "the cgroup filesystem is read-only (a container without cgroup delegation?): mount \
             it read-write or run Nimbus on the host"
        }
        io::ErrorKind::ResourceBusy => {
            "cgroup v2 will not enable controllers below a cgroup that holds processes itself \
             (the no-internal-processes rule): choose a parent whose ancestors hold none"
        }
        _ => "check that the cgroup filesystem is mounted read-write",
    };
    CgroupError::Unavailable {
        why: format!("cannot set up {}: {source}; {advice}", path.display()),
    }
}

fn is_not_found(err: &CgroupError) -> bool {
    match err {
        CgroupError::Io { source, .. } | CgroupError::Write { source, .. } => {
            source.kind() == io::ErrorKind::NotFound
        }
        _ => false,
    }
}

fn first_error(results: impl Iterator<Item = Result<(), CgroupError>>) -> Result<(), CgroupError> {
    let mut first = Ok(());
    for result in results {
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not remove a cgroup");
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_become_unavailable_with_advice() {
        let denied = CgroupError::io(
            "/sys/fs/cgroup/memory/nimbus",
            io::ErrorKind::PermissionDenied.into(),
        );
        let err = unavailable(denied);
        assert!(err.is_unavailable());
        let text = err.to_string();
        assert!(text.contains("/sys/fs/cgroup/memory/nimbus"), "{text}");
        assert!(text.contains("run Nimbus as root"), "{text}");
    }

    #[test]
    fn busy_subtree_control_explains_the_v2_rule() {
        let busy = CgroupError::Write {
            path: "/sys/fs/cgroup/app/cgroup.subtree_control".into(),
            value: "+memory".into(),
            source: io::ErrorKind::ResourceBusy.into(),
        };
        assert!(
            unavailable(busy)
                .to_string()
                .contains("no-internal-processes")
        );
    }

    #[test]
    fn the_root_is_never_a_parent() {
        let err = Cgroups::detect("/").unwrap_err();
        assert!(matches!(err, CgroupError::InvalidName { .. }), "{err}");
    }
}
