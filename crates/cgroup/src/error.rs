//! [`CgroupError`]: everything this crate can fail with. Each message names the file or cgroup
//! involved and, where there is one, what the operator can do about it.

use std::io;
use std::path::PathBuf;

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Cgroups cannot be used here at all (not root, no delegation, a controller missing, a
    /// read-only cgroup filesystem). Callers run without limits and say so once.
    #[error("cgroups are unavailable, instances will run without resource limits: {why}")]
    Unavailable {
        /// What is missing and how to provide it.
        why: String,
    },
    /// A cgroup name or parent that cannot be used as a path below the hierarchy root.
    #[error("invalid cgroup name {name:?}: {why}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// Reading, creating or removing a cgroup file or directory failed.
    #[error("cgroup file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The kernel refused a write: a limit out of range, a memory limit below what the cgroup
    /// already uses, a pid that is gone, or a cgroup removed meanwhile.
    #[error(
        "could not write {value:?} to {path}: {source} (for a limit: check the instance's \
         resources; otherwise the process or cgroup may be gone)"
    )]
    Write {
        /// The control file.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// Processes were still in the cgroup after the kill deadline, so it could not be removed.
    #[error(
        "cgroup {path} still has processes after SIGKILL ({pids:?}); they may be stuck in the \
         kernel (uninterruptible I/O): remove it by hand once they exit"
    )]
    Busy {
        /// The cgroup directory.
        path: PathBuf,
        /// The processes still listed in it.
        pids: Vec<u32>,
    },
}

impl CgroupError {
    /// An [`CgroupError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether this error means cgroups cannot be used on this machine (as opposed to one
    /// operation failing).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}
