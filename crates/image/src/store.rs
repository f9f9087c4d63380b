//! [`ImageStore`]: the public face of the crate. It resolves references against
//! `refs.json`, pulls or imports what is missing into a [`Staging`], and commits in an order
//! that never exposes half an image: blobs, then the root filesystem, then the reference.
//! Pulls of one reference are serialised by a per-reference async mutex; everything else
//! relies on atomic renames, so concurrent processes sharing a store are safe too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::blobs::{Blobs, Staging};
use crate::digest::Digest;
use crate::refs::Refs;
use crate::rootfs::{LayerFile, Rootfs, Unpacked};
use crate::spec::{self, ConfigFile, Document, Manifest};
use crate::{Image, ImageError, ImageSummary, Progress, import, reference, registry};

/// How the store reaches registries.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// `host[:port]` of registries spoken to over plain HTTP. Loopback registries
    /// (`localhost`, `127.0.0.0/8`, `[::1]`) always are, as with Docker.
    pub insecure_registries: Vec<String>,
    /// Credentials in Docker's `config.json` format (see [`crate::login`]); `None` pulls
    /// anonymously.
    pub auth_file: Option<PathBuf>,
}

/// A local image store rooted at one directory (see the crate docs for its layout).
pub struct ImageStore {
    paths: Paths,
    options: StoreOptions,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An image whose blobs are staged, ready to commit.
pub(crate) struct StagedImage {
    /// The platform manifest's digest.
    pub digest: Digest,
    pub manifest: Manifest,
    pub config: ConfigFile,
    /// The references to point at it once committed (none: by digest only).
    pub references: Vec<String>,
}

impl ImageStore {
    /// Open (creating if missing) the store at `root`, e.g. `<data-dir>/images`.
    pub fn open(root: impl Into<PathBuf>, options: StoreOptions) -> Result<Self, ImageError> {
        Ok(Self {
            paths: Paths::open(root.into())?,
            options,
            locks: Mutex::default(),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.paths.root
    }

    /// The image for `reference`, pulled only if it is not stored yet: a digest reference
    /// is satisfied by any stored manifest with that digest, a tag by the last pull or
    /// import of it. The root filesystem is unpacked once per manifest.
    pub async fn ensure(
        &self,
        reference: &str,
        progress: &dyn Progress,
    ) -> Result<Image, ImageError> {
        let image = reference::parse(reference)?;
        let key = reference::key(&image);
        let lock = self.lock_for(&key);
        let _guard = lock.lock().await;
        let stored = match reference::pinned(&image) {
            Some(d) => Some(d),
            None => self
                .paths
                .refs
                .get(&key)?
                .and_then(|d| Digest::parse(&d).ok()),
        };
        if let Some(digest) = stored {
            let (paths, name) = (self.paths.clone(), key.clone());
            if let Some(found) = blocking(move || paths.open_local(name, &digest)).await? {
                return Ok(found);
            }
        }
        self.pull_locked(&image, progress).await
    }

    /// Pull `reference` from its registry (always asking it), store and unpack it.
    pub async fn pull(
        &self,
        reference: &str,
        progress: &dyn Progress,
    ) -> Result<Image, ImageError> {
        let image = reference::parse(reference)?;
        let lock = self.lock_for(&reference::key(&image));
        let _guard = lock.lock().await;
        self.pull_locked(&image, progress).await
    }

    /// Import a `docker save` archive (a tar with manifest.json, gzip-compressed or not) or
    /// an OCI image layout (a directory or tar with oci-layout and index.json). Returns one
    /// image per tag (RepoTags, or the `org.opencontainers.image.ref.name` /
    /// `io.containerd.image.name` annotation when it is a full reference); an untagged
    /// image is stored by digest only and returned with its digest as reference.
    pub fn import(&self, path: &Path, progress: &dyn Progress) -> Result<Vec<Image>, ImageError> {
        let mut staging = Staging::new(&self.paths.tmp, self.paths.blobs.clone())?;
        let staged = import::read(path, &mut staging, progress)?;
        progress.message("unpacking");
        self.paths.commit(staging, staged)
    }

    /// The stored references, sorted.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let table = self.paths.refs.load()?;
        Ok(table
            .into_iter()
            .map(|(reference, digest)| self.paths.summary(reference, digest))
            .collect())
    }

    async fn pull_locked(
        &self,
        image: &oci_client::Reference,
        progress: &dyn Progress,
    ) -> Result<Image, ImageError> {
        let mut staging = Staging::new(&self.paths.tmp, self.paths.blobs.clone())?;
        let staged = registry::pull(image, &self.options, &mut staging, progress).await?;
        progress.message(&format!("unpacking {image}"));
        let paths = self.paths.clone();
        let mut images = blocking(move || paths.commit(staging, vec![staged])).await?;
        let mut pulled = images.swap_remove(0);
        pulled.reference = reference::key(image);
        Ok(pulled)
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(key.to_string()).or_default().clone()
    }
}

/// Run blocking store work (unpacking, renames) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ImageError::io("image store worker")(std::io::Error::other(e)))?
}

/// The store's directories.
#[derive(Clone, Debug)]
struct Paths {
    root: PathBuf,
    tmp: PathBuf,
    blobs: Blobs,
    rootfs: Rootfs,
    refs: Refs,
}

impl Paths {
    fn open(root: PathBuf) -> Result<Self, ImageError> {
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(ImageError::io(format!("creating {}", tmp.display())))?;
        remove_stale(&tmp);
        Ok(Self {
            blobs: Blobs::open(root.join("blobs/sha256"))?,
            rootfs: Rootfs::open(root.join("rootfs"))?,
            refs: Refs::new(&root),
            tmp,
            root,
        })
    }

    /// Make staged images visible: blobs, then root filesystems, then references.
    fn commit(
        &self,
        mut staging: Staging,
        images: Vec<StagedImage>,
    ) -> Result<Vec<Image>, ImageError> {
        let mut unpacked: Vec<(Digest, Unpacked)> = Vec::new();
        for image in &images {
            if self.rootfs.exists(&image.digest) || unpacked.iter().any(|(d, _)| *d == image.digest)
            {
                continue;
            }
            let layers = layer_files(&image.manifest, |d| staging.path(d))?;
            unpacked.push((
                image.digest.clone(),
                Rootfs::unpack(staging.dir(), &layers)?,
            ));
        }
        staging.commit()?;
        for (digest, tree) in unpacked {
            self.rootfs.install(&digest, tree)?;
        }
        let entries: Vec<(String, String)> = images
            .iter()
            .flat_map(|i| {
                i.references
                    .iter()
                    .map(|r| (r.clone(), i.digest.to_string()))
            })
            .collect();
        self.refs.set_all(&entries)?;
        Ok(images.iter().flat_map(|i| self.images_of(i)).collect())
    }

    /// One [`Image`] per reference of a committed image (or one named by its digest).
    fn images_of(&self, staged: &StagedImage) -> Vec<Image> {
        let image = Image {
            reference: staged.digest.to_string(),
            digest: staged.digest.to_string(),
            config: staged.config.image_config(),
            rootfs: self.rootfs.path(&staged.digest),
        };
        if staged.references.is_empty() {
            return vec![image];
        }
        let named = |r: &String| Image {
            reference: r.clone(),
            ..image.clone()
        };
        staged.references.iter().map(named).collect()
    }

    /// The stored image with manifest (or index) `digest`, unpacking its root filesystem if
    /// it is missing; `None` if any blob it needs is missing.
    fn open_local(&self, reference: String, digest: &Digest) -> Result<Option<Image>, ImageError> {
        let Some((digest, manifest)) = self.local_manifest(&reference, digest)? else {
            return Ok(None);
        };
        let Ok(config_digest) = Digest::parse(&manifest.config.digest) else {
            return Ok(None);
        };
        if !self.blobs.contains(&config_digest) {
            return Ok(None);
        }
        let config = ConfigFile::parse(&self.blobs.read(&config_digest)?)
            .map_err(|e| ImageError::unsupported(&reference, e))?;
        config
            .check_platform()
            .map_err(|e| ImageError::unsupported(&reference, e))?;
        if !self.rootfs.exists(&digest) {
            let layers = layer_files(&manifest, |d| self.blobs.path(d))?;
            if layers.iter().any(|l| !l.blob.is_file()) {
                return Ok(None);
            }
            let tree = Rootfs::unpack(&self.tmp, &layers)?;
            self.rootfs.install(&digest, tree)?;
        }
        Ok(Some(Image {
            reference,
            digest: digest.to_string(),
            config: config.image_config(),
            rootfs: self.rootfs.path(&digest),
        }))
    }

    /// The platform manifest stored under `digest` (following an index once).
    fn local_manifest(
        &self,
        reference: &str,
        digest: &Digest,
    ) -> Result<Option<(Digest, Manifest)>, ImageError> {
        let mut digest = digest.clone();
        for _ in 0..2 {
            if !self.blobs.contains(&digest) {
                return Ok(None);
            }
            let bytes = self.blobs.read(&digest)?;
            let parsed =
                spec::parse_document(&bytes).map_err(|e| ImageError::unsupported(reference, e))?;
            let index = match parsed {
                Document::Image(m) => return Ok(Some((digest, m))),
                Document::Index(index) => index,
            };
            let entry =
                spec::select_platform(&index).map_err(|e| ImageError::unsupported(reference, e))?;
            digest =
                Digest::parse(&entry.digest).map_err(|e| ImageError::unsupported(reference, e))?;
        }
        Err(ImageError::unsupported(
            reference,
            "an index inside an index",
        ))
    }

    fn summary(&self, reference: String, digest: String) -> ImageSummary {
        let parsed = Digest::parse(&digest).ok();
        let manifest = parsed
            .as_ref()
            .and_then(|d| self.local_manifest(&reference, d).ok().flatten());
        let size = manifest.as_ref().map_or(0, |(_, m)| {
            m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>()
        });
        let unpacked = manifest.is_some_and(|(d, _)| self.rootfs.exists(&d));
        ImageSummary {
            reference,
            digest,
            size,
            unpacked,
        }
    }
}

/// Work left in `tmp` by a process that died mid-pull is removed once it is a day old (a
/// live pull never takes that long, and may belong to another process sharing the store).
fn remove_stale(tmp: &Path) {
    const STALE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE));
        if old {
            let _ = std::fs::remove_dir_all(entry.path())
                .or_else(|_| std::fs::remove_file(entry.path()));
        }
    }
}

/// The layer blobs of `manifest`, located by `path_of`.
fn layer_files(
    manifest: &Manifest,
    path_of: impl Fn(&Digest) -> PathBuf,
) -> Result<Vec<LayerFile>, ImageError> {
    manifest
        .layers
        .iter()
        .map(|l| {
            let digest =
                Digest::parse(&l.digest).map_err(|e| ImageError::unsupported("layer", e))?;
            Ok(LayerFile {
                blob: path_of(&digest),
                what: format!("layer {}", l.digest),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_removes_only_stale_work() {
        let root = tempfile::tempdir().unwrap();
        let tmp = root.path().join("tmp");
        std::fs::create_dir_all(tmp.join("staging-old/x")).unwrap();
        std::fs::create_dir_all(tmp.join("staging-live")).unwrap();
        let two_days = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
        std::fs::File::open(tmp.join("staging-old"))
            .unwrap()
            .set_modified(two_days)
            .unwrap();
        ImageStore::open(root.path(), StoreOptions::default()).unwrap();
        assert!(!tmp.join("staging-old").exists());
        assert!(tmp.join("staging-live").exists());
    }
}
