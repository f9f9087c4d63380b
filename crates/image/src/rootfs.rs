//! Unpacked root filesystems, `rootfs/<manifest hex>/`: built in a temporary directory from
//! the layers in order, then renamed into place, so a directory under `rootfs/` is always
//! complete. Two builders racing for the same manifest are harmless: the loser's copy is
//! deleted.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::ImageError;
use crate::digest::Digest;
use crate::unpack;

/// The directory of unpacked root filesystems.
#[derive(Clone, Debug)]
pub(crate) struct Rootfs {
    dir: PathBuf,
}

/// A layer to apply: where its blob is and how errors name it.
pub(crate) struct LayerFile {
    pub blob: PathBuf,
    pub what: String,
}

/// A root filesystem unpacked but not yet in place (deleted if dropped).
pub(crate) struct Unpacked(tempfile::TempDir);

impl Rootfs {
    pub fn open(dir: PathBuf) -> Result<Self, ImageError> {
        std::fs::create_dir_all(&dir)
            .map_err(ImageError::io(format!("creating {}", dir.display())))?;
        Ok(Self { dir })
    }

    pub fn path(&self, manifest: &Digest) -> PathBuf {
        self.dir.join(manifest.hex())
    }

    pub fn exists(&self, manifest: &Digest) -> bool {
        self.path(manifest).is_dir()
    }

    /// Apply `layers` in order into a new directory under `tmp`.
    pub fn unpack(tmp: &Path, layers: &[LayerFile]) -> Result<Unpacked, ImageError> {
        let dir = tempfile::Builder::new()
            .prefix("rootfs-")
            .tempdir_in(tmp)
            .map_err(ImageError::io(format!(
                "creating a directory in {}",
                tmp.display()
            )))?;
        for layer in layers {
            unpack::apply_layer(dir.path(), &layer.blob, &layer.what)?;
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(ImageError::io("setting the root filesystem's mode"))?;
        Ok(Unpacked(dir))
    }

    /// Move `unpacked` into place as the root filesystem of `manifest`.
    pub fn install(&self, manifest: &Digest, unpacked: Unpacked) -> Result<PathBuf, ImageError> {
        let dest = self.path(manifest);
        let src = unpacked.0.keep();
        match std::fs::rename(&src, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if dest.is_dir() => {
                let _ = std::fs::remove_dir_all(&src);
                Ok(dest)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&src);
                Err(ImageError::io(format!(
                    "moving a root filesystem to {}",
                    dest.display()
                ))(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(dir: &Path, name: &str, file: &str) -> LayerFile {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, file, &b"hi"[..]).unwrap();
        let blob = dir.join(name);
        std::fs::write(&blob, b.into_inner().unwrap()).unwrap();
        LayerFile {
            blob,
            what: name.into(),
        }
    }

    #[test]
    fn unpack_then_install_and_race_loser_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let tmp = root.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let rootfs = Rootfs::open(root.path().join("rootfs")).unwrap();
        let layers = [layer(root.path(), "l1", "a"), layer(root.path(), "l2", "b")];
        let d = Digest::of(b"m");
        let first = Rootfs::unpack(&tmp, &layers).unwrap();
        let second = Rootfs::unpack(&tmp, &layers).unwrap();
        assert!(!rootfs.exists(&d));
        let path = rootfs.install(&d, first).unwrap();
        assert!(path.join("a").is_file() && path.join("b").is_file());
        assert_eq!(rootfs.install(&d, second).unwrap(), path);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn a_bad_layer_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let tmp = root.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(root.path().join("bad"), vec![7u8; 2048]).unwrap();
        let layers = [
            layer(root.path(), "l1", "a"),
            LayerFile {
                blob: root.path().join("bad"),
                what: "layer bad".into(),
            },
        ];
        let err = Rootfs::unpack(&tmp, &layers).err().unwrap();
        assert_eq!(err.reason(), "InvalidImageArchive");
        assert!(err.to_string().contains("layer bad"), "{err}");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }
}
