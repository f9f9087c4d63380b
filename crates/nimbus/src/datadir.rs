//! The server's data directory (`--data-dir`): state, logs, images, the API token, the TLS
//! key. Owned by the server alone (issue #13):
//!
//! - It is created (and kept) mode 0700, and the server runs with umask 077, so nothing it
//!   writes — the database and logs hold env values, images hold setuid binaries — is
//!   readable or reachable by another local user.
//! - One server per directory: `nimbus serve` holds an exclusive lock (`flock`) on
//!   `<data-dir>/nimbus.lock` for as long as it runs, and writes its pid there. A second
//!   server on the same directory is refused before it touches anything (it would remove the
//!   first one's cgroups as stale and write the same database), with the first one's pid.
//!   The lock goes with the process, also when it is killed. Image commands (`nimbus image
//!   import|pull`) take no lock: the image store is safe for concurrent processes (atomic
//!   renames), so they work beside a running server.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context as _, bail};
use rustix::fs::FlockOperation;

/// The data directory, locked for this process while the value lives.
#[derive(Debug)]
pub struct DataDir {
    /// Holds the lock.
    _lock: File,
}

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "nimbus.lock";

impl DataDir {
    /// Set umask 077 for this process, make `path` (0700, parents too) or tighten it to 0700,
    /// and take the server lock; refused when another process holds it.
    pub fn lock(path: &Path) -> anyhow::Result<Self> {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating the data directory {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "making the data directory {} private (0700)",
                    path.display()
                )
            },
        )?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("another nimbus serve (pid {pid})"),
                };
                bail!(
                    "the data directory {} is in use by {holder}; stop it first, or give this \
                     server its own --data-dir",
                    path.display()
                );
            }
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking {}", lock_path.display()));
            }
        }
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .with_context(|| format!("writing {}", lock_path.display()))?;
        Ok(Self { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_private_and_locked_once() {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("a/data");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let first = DataDir::lock(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "an existing directory is tightened");
        let pid = std::fs::read_to_string(path.join(LOCK_FILE)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // flock locks belong to the open file description: a second open in this process
        // conflicts as another process's would.
        let err = DataDir::lock(&path).unwrap_err().to_string();
        assert!(
            err.contains("in use by another nimbus serve (pid") && err.contains("--data-dir"),
            "{err}"
        );
        drop(first);
        DataDir::lock(&path).expect("free again once the holder is gone");
        let file = path.join("written");
        std::fs::write(&file, "x").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "umask 077");
    }
}
