//! `refs.json`: which manifest digest each stored reference names. Updates take an exclusive
//! lock on `refs.lock` (so a CLI import and a running server do not lose each other's
//! writes) and replace the file atomically (write a temporary file, sync, rename).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::ImageError;

/// The reference table on disk.
#[derive(Clone, Debug)]
pub(crate) struct Refs {
    path: PathBuf,
    lock: PathBuf,
}

impl Refs {
    /// The table in `root` (`refs.json`, `refs.lock`).
    pub fn new(root: &Path) -> Self {
        Self {
            path: root.join("refs.json"),
            lock: root.join("refs.lock"),
        }
    }

    /// All references and their digests (empty before the first write).
    pub fn load(&self) -> Result<BTreeMap<String, String>, ImageError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(ImageError::io(format!("reading {}", self.path.display()))(
                    e,
                ));
            }
        };
        serde_json::from_slice(&text).map_err(|e| {
            ImageError::io(format!("parsing {}", self.path.display()))(std::io::Error::other(e))
        })
    }

    /// The digest stored for `reference`.
    pub fn get(&self, reference: &str) -> Result<Option<String>, ImageError> {
        Ok(self.load()?.remove(reference))
    }

    /// Point each reference at its digest, in one atomic replacement.
    pub fn set_all(&self, entries: &[(String, String)]) -> Result<(), ImageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let lock = std::fs::File::create(&self.lock)
            .map_err(ImageError::io(format!("opening {}", self.lock.display())))?;
        lock.lock()
            .map_err(ImageError::io(format!("locking {}", self.lock.display())))?;
        let mut table = self.load()?;
        for (reference, digest) in entries {
            table.insert(reference.clone(), digest.clone());
        }
        self.write(&table)
    }

    fn write(&self, table: &BTreeMap<String, String>) -> Result<(), ImageError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let context = || format!("writing {}", self.path.display());
        let mut tmp = tempfile::Builder::new()
            .prefix(".refs-")
            .tempfile_in(dir)
            .map_err(ImageError::io(context()))?;
        let json = serde_json::to_vec_pretty(table).expect("a string map serialises");
        tmp.write_all(&json).map_err(ImageError::io(context()))?;
        tmp.as_file()
            .sync_all()
            .map_err(ImageError::io(context()))?;
        tmp.persist(&self.path)
            .map_err(|e| ImageError::io(context())(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_get_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let refs = Refs::new(dir.path());
        assert!(refs.load().unwrap().is_empty());
        refs.set_all(&[("a:1".into(), "sha256:1".into())]).unwrap();
        refs.set_all(&[
            ("b:1".into(), "sha256:2".into()),
            ("a:1".into(), "sha256:3".into()),
        ])
        .unwrap();
        assert_eq!(refs.get("a:1").unwrap().as_deref(), Some("sha256:3"));
        assert_eq!(refs.get("b:1").unwrap().as_deref(), Some("sha256:2"));
        assert_eq!(refs.get("c:1").unwrap(), None);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".refs-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let refs = Refs::new(dir.path());
                std::thread::spawn(move || refs.set_all(&[(format!("r{i}"), format!("d{i}"))]))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(Refs::new(dir.path()).load().unwrap().len(), 8);
    }
}
