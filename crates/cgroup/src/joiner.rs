//! [`Joiner`]: lets a freshly forked child move itself into a cgroup before it `exec`s, so the
//! workload never runs a single instruction outside its limits (unlike `add_pid` after spawn).
//!
//! The `cgroup.procs` files are opened in the parent, before the fork; in the child only
//! `write(2)` is called, which is async-signal-safe, so it is sound to use from
//! `std::os::unix::process::CommandExt::pre_exec` even when the parent is multi-threaded.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::CgroupError;

/// Open `cgroup.procs` files of one cgroup (one per hierarchy), ready for [`Joiner::join`].
///
/// ```no_run
/// # fn f(cgroup: &nimbus_cgroup::Cgroup) -> Result<(), Box<dyn std::error::Error>> {
/// use std::os::unix::process::CommandExt;
/// let joiner = cgroup.joiner()?;
/// let mut cmd = std::process::Command::new("my-function");
/// // SAFETY: `Joiner::join` only calls write(2) on descriptors opened before the fork.
/// unsafe { cmd.pre_exec(move || joiner.join()) };
/// let child = cmd.spawn()?; // fails with join's error if the child could not join
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Joiner {
    procs: Vec<OwnedFd>,
}

impl Joiner {
    /// Open each `cgroup.procs` for writing. The descriptors are close-on-exec, so the
    /// workload does not inherit them.
    pub(crate) fn open(files: &[PathBuf]) -> Result<Self, CgroupError> {
        let procs = files
            .iter()
            .map(|path| {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| CgroupError::io(path, e))?;
                Ok(OwnedFd::from(file))
            })
            .collect::<Result<_, CgroupError>>()?;
        Ok(Self { procs })
    }

    /// Move the calling process into the cgroup: writes `0` ("myself") to every `cgroup.procs`.
    ///
    /// Async-signal-safe: no allocation, no locks, only `write(2)` (retried on `EINTR`) and
    /// reading `errno`, so it may run in a child between `fork` and `exec`. Call it from the
    /// child; called in the parent it moves the parent.
    pub fn join(&self) -> io::Result<()> {
        self.procs.iter().try_for_each(write_zero)
    }
}

fn write_zero(fd: &OwnedFd) -> io::Result<()> {
    loop {
        match nix::unistd::write(fd, b"0") {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            // `From<Errno>` builds an `io::Error` from the raw code, without allocating.
            Err(errno) => return Err(io::Error::from(errno)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joiner_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Joiner>();
    }

    #[test]
    fn open_names_the_missing_file() {
        let missing = PathBuf::from("/nonexistent-nimbus-cgroup/cgroup.procs");
        let err = Joiner::open(std::slice::from_ref(&missing)).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-nimbus-cgroup"),
            "{err}"
        );
    }

    #[test]
    fn join_writes_zero_to_each_file() {
        let dir = std::env::temp_dir().join(format!("nimbus-cgroup-join-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = [dir.join("a"), dir.join("b")];
        files.iter().for_each(|f| std::fs::write(f, "").unwrap());
        Joiner::open(&files).unwrap().join().unwrap();
        for f in &files {
            assert_eq!(std::fs::read_to_string(f).unwrap(), "0");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
