//! Where log files live: `<data dir>/logs/<namespace>/<revision>/<instance>.log`, rotated
//! files beside them as `<instance>.log.<n>` (1 is the newest).

use std::path::{Path, PathBuf};

use crate::error::LogError;

/// The file name suffix of a current log file.
const SUFFIX: &str = ".log";

/// `<data_dir>/logs`: the root under which every instance log lives.
pub fn logs_root(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// The directory of one revision's instance logs. Names are used as path segments as they are;
/// Kubernetes names (DNS labels) are always safe.
pub fn revision_dir(logs_root: &Path, namespace: &str, revision: &str) -> PathBuf {
    logs_root.join(namespace).join(revision)
}

/// The current log file of one instance.
pub fn instance_file(logs_root: &Path, namespace: &str, revision: &str, instance: &str) -> PathBuf {
    revision_dir(logs_root, namespace, revision).join(format!("{instance}{SUFFIX}"))
}

/// `<path>.<n>`: the n-th rotated file (1 is the newest).
pub(crate) fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The instance files of a revision directory as (instance, path), sorted by instance.
/// A missing directory has none.
pub(crate) fn instances_in(dir: &Path) -> Result<Vec<(String, PathBuf)>, LogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io("list", dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(LogError::io("list", dir))?;
        let name = entry.file_name();
        let Some(instance) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        if !instance.is_empty() {
            found.push((instance.to_string(), entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The rotated files of `path` that exist, as (n, path), oldest (highest n) first.
pub(crate) fn rotated_files(path: &Path) -> Result<Vec<(usize, PathBuf)>, LogError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io("list", dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(LogError::io("list", dir))?;
        let file_name = entry.file_name();
        let n = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(n) = n.filter(|&n| n > 0) {
            found.push((n, entry.path()));
        }
    }
    found.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let root = logs_root(Path::new("/data"));
        assert_eq!(root, Path::new("/data/logs"));
        assert_eq!(
            instance_file(&root, "default", "hello-00001", "hello-00001-1"),
            Path::new("/data/logs/default/hello-00001/hello-00001-1.log")
        );
        assert_eq!(rotated(Path::new("/d/i.log"), 2), Path::new("/d/i.log.2"));
    }

    #[test]
    fn lists_instances_and_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "b.log",
            "a.log",
            "a.log.1",
            "a.log.10",
            "a.log.2",
            "a.log.x",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let instances: Vec<String> = instances_in(dir.path())
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(instances, ["a", "b"]);
        let rotated: Vec<usize> = rotated_files(&dir.path().join("a.log"))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(rotated, [10, 2, 1]);
        assert!(
            instances_in(&dir.path().join("missing"))
                .unwrap()
                .is_empty()
        );
    }
}
