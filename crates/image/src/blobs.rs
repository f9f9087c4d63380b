//! Content-addressed blobs: [`Blobs`] reads the committed `blobs/sha256/<hex>` files, and
//! [`Staging`] collects new ones in a private temporary directory, checking each against its
//! digest, and moves them into place only on [`Staging::commit`]. Dropping a `Staging`
//! removes everything it held.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::ImageError;
use crate::digest::{Digest, Hasher, HashingWriter};

/// The committed blobs.
#[derive(Clone, Debug)]
pub(crate) struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// Blobs under `dir` (`<root>/blobs/sha256`), created if missing.
    pub fn open(dir: PathBuf) -> Result<Self, ImageError> {
        std::fs::create_dir_all(&dir)
            .map_err(ImageError::io(format!("creating {}", dir.display())))?;
        Ok(Self { dir })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest);
        std::fs::read(&path).map_err(ImageError::io(format!("reading blob {}", path.display())))
    }
}

/// New blobs on their way into the store.
pub(crate) struct Staging {
    dir: tempfile::TempDir,
    blobs: Blobs,
    staged: BTreeMap<Digest, PathBuf>,
}

impl Staging {
    /// A fresh staging directory under `tmp_root` (on the store's filesystem).
    pub fn new(tmp_root: &Path, blobs: Blobs) -> Result<Self, ImageError> {
        let dir = tempfile::Builder::new()
            .prefix("staging-")
            .tempdir_in(tmp_root)
            .map_err(ImageError::io(format!(
                "creating a directory in {}",
                tmp_root.display()
            )))?;
        Ok(Self {
            dir,
            blobs,
            staged: BTreeMap::new(),
        })
    }

    /// The private directory (also used for temporary root filesystems and archives).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the blob is staged or already committed.
    pub fn has(&self, digest: &Digest) -> bool {
        self.staged.contains_key(digest) || self.blobs.contains(digest)
    }

    /// Where the blob's bytes are now: staged, or else committed.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        match self.staged.get(digest) {
            Some(p) => p.clone(),
            None => self.blobs.path(digest),
        }
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest);
        std::fs::read(&path).map_err(ImageError::io(format!("reading blob {}", path.display())))
    }

    /// Stage `bytes`, which must hash to `expected`.
    pub fn add_bytes(
        &mut self,
        expected: &Digest,
        bytes: &[u8],
        what: &str,
    ) -> Result<(), ImageError> {
        let mut w = self.writer()?;
        w.write_all(bytes)
            .map_err(ImageError::io(format!("staging {what}")))?;
        self.finish(w, expected, what)
    }

    /// A writer for a new blob of not yet known digest.
    pub fn writer(&self) -> Result<BlobWriter, ImageError> {
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.dir())
            .map_err(ImageError::io("creating a staging file"))?;
        let (file, path) = file
            .keep()
            .map_err(|e| ImageError::io("keeping a staging file")(e.error))?;
        Ok(BlobWriter {
            path,
            out: HashingWriter {
                inner: BufWriter::new(file),
                hasher: Hasher::new(),
            },
        })
    }

    /// Finish `w`, whose bytes must hash to `expected`; on a mismatch the bytes are deleted.
    pub fn finish(
        &mut self,
        w: BlobWriter,
        expected: &Digest,
        what: &str,
    ) -> Result<(), ImageError> {
        let (path, actual) = w.close()?;
        if &actual != expected {
            let _ = std::fs::remove_file(&path);
            return Err(ImageError::DigestMismatch {
                what: what.to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        self.staged.insert(actual, path);
        Ok(())
    }

    /// Finish `w` and stage it under whatever digest its bytes have.
    pub fn finish_unverified(&mut self, w: BlobWriter) -> Result<Digest, ImageError> {
        let (path, digest) = w.close()?;
        self.staged.insert(digest.clone(), path);
        Ok(digest)
    }

    /// Move every staged blob into the store. A blob already there is left as it is (it has
    /// the same bytes, by its name).
    pub fn commit(&mut self) -> Result<(), ImageError> {
        for (digest, path) in std::mem::take(&mut self.staged) {
            let dest = self.blobs.path(&digest);
            if dest.is_file() {
                continue;
            }
            std::fs::rename(&path, &dest).map_err(ImageError::io(format!(
                "moving blob into {}",
                dest.display()
            )))?;
        }
        Ok(())
    }
}

/// A blob being written into staging; hashes as it goes.
pub(crate) struct BlobWriter {
    path: PathBuf,
    out: HashingWriter<BufWriter<File>>,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.out.hasher.len()
    }

    /// Flush and sync the file; its path and digest.
    fn close(self) -> Result<(PathBuf, Digest), ImageError> {
        let HashingWriter { inner, hasher } = self.out;
        let file = inner
            .into_inner()
            .map_err(|e| ImageError::io("writing a staging file")(e.into_error()))?;
        file.sync_all()
            .map_err(ImageError::io("syncing a staging file"))?;
        Ok((self.path, hasher.finish()))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Blobs, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(root.path().join("blobs/sha256")).unwrap();
        let tmp = root.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        (root, blobs, tmp)
    }

    #[test]
    fn staged_blobs_appear_only_on_commit() {
        let (_root, blobs, tmp) = setup();
        let mut s = Staging::new(&tmp, blobs.clone()).unwrap();
        let d = Digest::of(b"hello");
        s.add_bytes(&d, b"hello", "test").unwrap();
        assert!(s.has(&d));
        assert!(!blobs.contains(&d));
        assert_eq!(s.read(&d).unwrap(), b"hello");
        s.commit().unwrap();
        assert_eq!(blobs.read(&d).unwrap(), b"hello");
    }

    #[test]
    fn mismatch_is_refused_and_leaves_nothing() {
        let (_root, blobs, tmp) = setup();
        let mut s = Staging::new(&tmp, blobs.clone()).unwrap();
        let err = s.add_bytes(&Digest::of(b"a"), b"b", "layer x").unwrap_err();
        assert_eq!(err.reason(), "DigestMismatch");
        assert!(err.to_string().contains("layer x"));
        assert_eq!(std::fs::read_dir(s.dir()).unwrap().count(), 0);
        drop(s);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn dropped_staging_leaves_nothing() {
        let (_root, blobs, tmp) = setup();
        let mut s = Staging::new(&tmp, blobs.clone()).unwrap();
        let mut w = s.writer().unwrap();
        w.write_all(b"abc").unwrap();
        assert_eq!(w.len(), 3);
        let d = s.finish_unverified(w).unwrap();
        assert_eq!(d, Digest::of(b"abc"));
        drop(s);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        assert!(!blobs.contains(&d));
    }
}
