//! The `runc` command lines the launcher uses, all under one state directory (`runc --root`):
//! `run --keep` in the foreground (runc forwards signals to the container's process, passes its
//! stdio through and exits with its status, 128 + n when it died of signal n; `--keep` leaves
//! the stopped container, and with it its cgroup and OOM counters, until `delete`), `exec`
//! for exec probes, and `delete --force`, which kills a container still running and succeeds
//! when there is none.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One runc binary and its state directory.
#[derive(Clone, Debug)]
pub struct Runc {
    binary: PathBuf,
    root: PathBuf,
}

impl Runc {
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            root: root.into(),
        }
    }

    /// `runc --root <root>` with nothing after it, with the usual umask (022) instead of the
    /// server's (077): what runc creates for a container (cgroup directories, mount points)
    /// must be reachable by the container's mapped root in a user namespace, and the
    /// container's process inherits it, as it does containerd's.
    fn base(&self) -> Command {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        // SAFETY: `umask` is async-signal-safe, cannot fail, and touches nothing but the
        // forked child's file mode creation mask.
        unsafe {
            cmd.pre_exec(|| {
                nix::libc::umask(0o022);
                Ok(())
            });
        }
        cmd
    }

    /// Runs container `id` from `bundle` in the foreground.
    pub fn run(&self, bundle: &Path, id: &str) -> Command {
        let mut cmd = self.base();
        cmd.args(["run", "--keep", "--bundle"]).arg(bundle).arg(id);
        cmd
    }

    /// Runs `argv` inside running container `id`, with the container's user, environment and
    /// working directory.
    pub fn exec(&self, id: &str, argv: &[String]) -> Command {
        let mut cmd = self.base();
        cmd.arg("exec").arg(id).args(argv);
        cmd
    }

    /// Kills and removes container `id`; succeeds when there is none.
    pub fn delete(&self, id: &str) -> Command {
        let mut cmd = self.base();
        cmd.args(["delete", "--force", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Whether runc keeps state for `id` (a running, stopped or half-created container).
    pub fn has_state(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(cmd: &Command) -> Vec<String> {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn command_lines() {
        let runc = Runc::new("/usr/bin/runc", "/data/runc");
        assert_eq!(
            argv(&runc.run(Path::new("/b/x-1"), "x-1")),
            [
                "/usr/bin/runc",
                "--root",
                "/data/runc",
                "run",
                "--keep",
                "--bundle",
                "/b/x-1",
                "x-1"
            ]
        );
        let probe = ["cat".to_owned(), "/tmp/ready".to_owned()];
        assert_eq!(
            argv(&runc.exec("x-1", &probe)),
            [
                "/usr/bin/runc",
                "--root",
                "/data/runc",
                "exec",
                "x-1",
                "cat",
                "/tmp/ready"
            ]
        );
        assert_eq!(
            argv(&runc.delete("x-1")),
            [
                "/usr/bin/runc",
                "--root",
                "/data/runc",
                "delete",
                "--force",
                "x-1"
            ]
        );
    }

    #[test]
    fn state_is_a_directory_per_container() {
        let dir = tempfile::tempdir().unwrap();
        let runc = Runc::new("runc", dir.path());
        assert!(!runc.has_state("a"));
        std::fs::create_dir(dir.path().join("a")).unwrap();
        assert!(runc.has_state("a"));
    }
}
