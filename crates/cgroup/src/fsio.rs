//! Small helpers for cgroup control files: one `write` per value (the kernel parses each write
//! on its own), flat-keyed files (`oom_kill 3`), pid lists, and `mkdir` that tolerates races.
//! Every error carries the path.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::CgroupError;

/// Write `value` to the control file `path` in a single `write(2)`. Never creates the file: a
/// missing control file means the controller is not there.
pub(crate) fn write_value(path: &Path, value: &str) -> Result<(), CgroupError> {
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.write_all(value.as_bytes())
    };
    write().map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// The whole control file.
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|e| CgroupError::io(path, e))
}

/// The value of `key` in a flat-keyed file (`memory.events`, `memory.oom_control`,
/// `pids.events`); `None` when the file or the key does not exist.
pub(crate) fn read_key(path: &Path, key: &str) -> Option<u64> {
    parse_key(&fs::read_to_string(path).ok()?, key)
}

/// The single number in a file such as `pids.current`.
pub(crate) fn read_number(path: &Path) -> Result<u64, CgroupError> {
    let text = read(path)?;
    text.trim().parse().map_err(|_| {
        let msg = format!("expected a number, found {:?}", text.trim());
        CgroupError::io(path, io::Error::new(io::ErrorKind::InvalidData, msg))
    })
}

/// The pids in a `cgroup.procs` file.
pub(crate) fn read_pids(path: &Path) -> Result<Vec<u32>, CgroupError> {
    Ok(parse_pids(&read(path)?))
}

/// `mkdir`, treating an existing directory as success. Returns whether it was created. A new
/// directory is 0755 whatever the process's umask (the server's is 077): an instance reads
/// its own limits (`memory.max`, ...) as whatever user it runs as.
pub(crate) fn make_dir(path: &Path) -> io::Result<bool> {
    match fs::create_dir(path) {
        Ok(()) => {
            fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn parse_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

pub(crate) fn parse_pids(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flat_keyed_files() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_key(oom_control, "oom_kill"), Some(3));
        assert_eq!(parse_key(oom_control, "oom"), None);
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 1\n";
        assert_eq!(parse_key(events, "oom_kill"), Some(1));
        assert_eq!(parse_key(events, "max"), Some(12));
        assert_eq!(parse_key("max", "max"), None);
    }

    #[test]
    fn parses_pid_lists() {
        assert_eq!(parse_pids("12\n345\n"), vec![12, 345]);
        assert!(parse_pids("").is_empty());
    }

    #[test]
    fn write_value_never_creates_files() {
        let dir = std::env::temp_dir().join(format!("nimbus-cgroup-fsio-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let err = write_value(&dir.join("memory.max"), "max").unwrap_err();
        assert!(matches!(err, CgroupError::Write { .. }), "{err}");
        assert!(!dir.join("memory.max").exists());
        fs::write(dir.join("pids.max"), "").unwrap();
        write_value(&dir.join("pids.max"), "10").unwrap();
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "10");
        fs::remove_dir_all(dir).unwrap();
    }
}
