//! Emptying and removing cgroup directories: SIGKILL every process in a cgroup and the cgroups
//! below it until none is left (cgroup v2's `cgroup.kill` first, where the kernel has it), then
//! `rmdir` deepest first, retrying while the kernel still reports the cgroup busy.
//!
//! Between reading `cgroup.procs` and `kill(2)`, a listed process could exit and its pid be
//! reused; the window is microseconds and every process in these cgroups is ours to kill, as
//! in runc's own kill loop. Pid 0 (a process outside our pid namespace) and our own pid are
//! never signalled.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{CgroupError, fsio};

/// How long [`kill_tree`] keeps killing before giving up.
pub(crate) const KILL_DEADLINE: Duration = Duration::from_secs(2);
/// How long [`remove_tree`] retries an `rmdir` the kernel calls busy.
const RMDIR_DEADLINE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// SIGKILL every process in `dirs` and below until they are empty or `deadline` passes.
/// Returns the pids still there (empty on success). Missing directories count as empty.
pub(crate) fn kill_tree(dirs: &[PathBuf], deadline: Duration) -> Vec<u32> {
    dirs.iter().for_each(|d| trigger_cgroup_kill(d));
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let pids = pids_below(dirs);
        if pids.is_empty() || start.elapsed() >= deadline {
            return pids;
        }
        pids.iter().for_each(|&pid| sigkill(pid));
        thread::sleep(pause);
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Every pid in `dirs` and their descendant cgroups, sorted, without duplicates.
pub(crate) fn pids_below(dirs: &[PathBuf]) -> Vec<u32> {
    let mut pids = Vec::new();
    for dir in dirs {
        collect_pids(dir, &mut pids);
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// `rmdir` `dir` and every cgroup below it, deepest first. A missing `dir` is success.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    for child in subdirs(dir) {
        remove_tree(&child)?;
    }
    rmdir_retrying(dir)
}

/// Remove the now-empty ancestors of `dir`, up to but not including `stop`. Stops quietly at
/// the first one still in use (another instance of the same revision, say).
pub(crate) fn prune_ancestors(dir: &Path, stop: &Path) {
    let mut current = dir.parent();
    while let Some(ancestor) = current.filter(|a| a.starts_with(stop) && *a != stop) {
        if fs::remove_dir(ancestor).is_err() {
            return;
        }
        current = ancestor.parent();
    }
}

/// The cgroup directories directly below `dir` (none if it is unreadable or gone).
pub(crate) fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn collect_pids(dir: &Path, pids: &mut Vec<u32>) {
    if let Ok(found) = fsio::read_pids(&dir.join("cgroup.procs")) {
        pids.extend(found);
    }
    for child in subdirs(dir) {
        collect_pids(&child, pids);
    }
}

/// cgroup v2 (kernel ≥ 5.14): one write kills the whole subtree, without a race against forks.
fn trigger_cgroup_kill(dir: &Path) {
    let file = dir.join("cgroup.kill");
    if file.exists()
        && let Err(e) = fsio::write_value(&file, "1")
    {
        tracing::debug!(error = %e, "cgroup.kill failed; falling back to SIGKILL per process");
    }
}

fn sigkill(pid: u32) {
    if pid == 0 || pid == std::process::id() {
        return;
    }
    if let Ok(raw) = i32::try_from(pid) {
        // ESRCH (already gone) is the expected race; anything else shows up as a leftover pid.
        let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
    }
}

fn rmdir_retrying(dir: &Path) -> Result<(), CgroupError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if is_busy(&e) && start.elapsed() < RMDIR_DEADLINE => {
                thread::sleep(pause);
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(e) if is_busy(&e) => {
                let pids = pids_below(&[dir.to_owned()]);
                return Err(CgroupError::Busy {
                    path: dir.to_owned(),
                    pids,
                });
            }
            Err(e) => return Err(CgroupError::io(dir, e)),
        }
    }
}

fn is_busy(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ResourceBusy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("nimbus-cgroup-kill-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn prune_stops_at_the_parent_and_at_busy_ancestors() {
        let root = scratch("prune");
        let parent = root.join("nimbus");
        fs::create_dir_all(parent.join("ns/rev/leaf")).unwrap();
        fs::create_dir_all(parent.join("ns/other")).unwrap();
        fs::remove_dir(parent.join("ns/rev/leaf")).unwrap();
        prune_ancestors(&parent.join("ns/rev/leaf"), &parent);
        assert!(!parent.join("ns/rev").exists());
        assert!(parent.join("ns/other").exists(), "a used ancestor stays");
        fs::remove_dir(parent.join("ns/other")).unwrap();
        prune_ancestors(&parent.join("ns/other"), &parent);
        assert!(parent.exists() && !parent.join("ns").exists());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn missing_directories_are_empty_and_removed() {
        let gone = scratch("gone").join("missing");
        assert!(pids_below(std::slice::from_ref(&gone)).is_empty());
        assert!(kill_tree(std::slice::from_ref(&gone), Duration::ZERO).is_empty());
        remove_tree(&gone).unwrap();
    }
}
