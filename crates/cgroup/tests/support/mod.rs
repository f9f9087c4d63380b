//! Helpers for the tests that need root and a cgroup filesystem: a [`Fixture`] owning a parent
//! cgroup unique to the test (removed on drop), the skip rule (print `SKIPPED: <why>` and pass,
//! except when `CI` is set), and small process helpers.
#![allow(dead_code)] // each test binary uses a different subset

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nimbus_cgroup::{Cgroup, CgroupVersion, Cgroups, Controller};

/// A parent cgroup for one test, with everything below it removed on drop.
pub struct Fixture {
    pub cgroups: Cgroups,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Err(e) = self.cgroups.remove_all() {
            eprintln!("cleanup of {} failed: {e}", self.cgroups.parent());
        }
    }
}

/// The parent name for `test` in this test process.
pub fn parent_name(test: &str) -> String {
    format!("nimbus-test-{}-{test}", std::process::id())
}

/// Detect cgroups under a parent unique to `test`, or `None` (after printing why) when this
/// machine cannot run the test. Under `CI`, not being able to is a failure.
pub fn fixture(test: &str) -> Option<Fixture> {
    match Cgroups::detect(&parent_name(test)) {
        Ok(cgroups) => Some(Fixture { cgroups }),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("cgroup tests must run in CI (CI is set): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

/// A control file of `cgroup`, trimmed.
pub fn read(cgroup: &Cgroup, controller: Controller, file: &str) -> String {
    let path = cgroup.dir(controller).join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Whether the cgroup uses v1 files for `controller`.
pub fn is_v1(cgroup: &Cgroup, controller: Controller) -> bool {
    cgroup.version(controller) == CgroupVersion::V1
}

/// Spawn `sh -c script` that joins `cgroup` between fork and exec.
pub fn spawn_in(cgroup: &Cgroup, script: &str) -> Child {
    let joiner = cgroup.joiner().expect("open cgroup.procs");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: `Joiner::join` only calls write(2) on descriptors opened before the fork.
    unsafe { cmd.pre_exec(move || joiner.join()) };
    cmd.spawn().expect("spawn sh")
}

/// Wait for `child` at most `limit`; `None` if it is still running.
pub fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if start.elapsed() > limit {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `/proc/<pid>/cgroup` places the process in `cgroup` for every needed controller.
pub fn lists_process(cgroup: &Cgroup, pid: u32) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let expected = cgroup.absolute_path();
    [Controller::Memory, Controller::Cpu, Controller::Pids]
        .iter()
        .all(|&c| {
            text.lines().any(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) =
                    (fields.next(), fields.next().unwrap_or(""), fields.next());
                let hosts = if is_v1(cgroup, c) {
                    controllers.split(',').any(|n| n == c.name())
                } else {
                    controllers.is_empty()
                };
                hosts && path == Some(expected)
            })
        })
}

/// Whether the cgroup's directory is gone from every hierarchy.
pub fn gone(cgroup_dirs: &[std::path::PathBuf]) -> bool {
    cgroup_dirs.iter().all(|d| !Path::new(d).exists())
}

/// The cgroup's directory in each hierarchy.
pub fn dirs(cgroup: &Cgroup) -> Vec<std::path::PathBuf> {
    [Controller::Memory, Controller::Cpu, Controller::Pids]
        .iter()
        .map(|&c| cgroup.dir(c))
        .collect()
}
