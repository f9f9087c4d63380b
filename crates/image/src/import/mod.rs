//! Importing images from files: `docker save` archives ([`docker`]) and OCI image layouts
//! ([`oci`]), read through a [`Source`] (a directory, or a tar indexed once for random
//! access). Every blob is staged and checked against the digest the archive claims before
//! anything is committed.

mod docker;
mod oci;
mod source;

use std::io::Read;
use std::path::Path;

use crate::blobs::Staging;
use crate::digest::Digest;
use crate::spec::Compression;
use crate::store::StagedImage;
use crate::{ImageError, Progress};

use source::{DirSource, Source, TarSource};

/// Read the images in `path` into `staging`.
pub(crate) fn read(
    path: &Path,
    staging: &mut Staging,
    progress: &dyn Progress,
) -> Result<Vec<StagedImage>, ImageError> {
    let archive = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(ImageError::io(format!("opening {archive}")))?;
    let source: Box<dyn Source> = if meta.is_dir() {
        Box::new(DirSource::new(path))
    } else {
        Box::new(TarSource::open(path, staging.dir())?)
    };
    let ctx = Ctx {
        source: &*source,
        archive: &archive,
        progress,
    };
    if source.has("manifest.json") {
        docker::read(&ctx, staging)
    } else if source.has("oci-layout") && source.has("index.json") {
        oci::read(&ctx, staging)
    } else {
        Err(ctx.invalid(
            "it has neither manifest.json (a `docker save` archive) nor oci-layout and index.json \
             (an OCI image layout)",
        ))
    }
}

/// What an importer works with.
struct Ctx<'a> {
    source: &'a dyn Source,
    archive: &'a str,
    progress: &'a dyn Progress,
}

impl Ctx<'_> {
    fn invalid(&self, detail: impl Into<String>) -> ImageError {
        ImageError::invalid_archive(self.archive, detail)
    }

    /// A small JSON member, parsed.
    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, ImageError> {
        let bytes = self.source.read_small(name)?;
        serde_json::from_slice(&bytes).map_err(|e| self.invalid(format!("{name}: {e}")))
    }

    /// Copy member `name` into staging, reporting progress under `label`; returns its
    /// digest, size and compression. The caller checks the digest.
    fn stage(
        &self,
        name: &str,
        label: &str,
        staging: &mut Staging,
    ) -> Result<(crate::blobs::BlobWriter, Compression), ImageError> {
        let mut reader = self.source.open(name)?;
        let total = self.source.size(name);
        let mut writer = staging.writer()?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut compression = None;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| self.invalid(format!("reading {name}: {e}")))?;
            if n == 0 {
                break;
            }
            compression.get_or_insert_with(|| Compression::sniff(&buf[..n]));
            std::io::Write::write_all(&mut writer, &buf[..n])
                .map_err(ImageError::io("staging a blob"))?;
            self.progress.layer(label, writer.len(), total);
        }
        Ok((writer, compression.unwrap_or(Compression::None)))
    }
}

/// The digest a member's name promises: `blobs/sha256/<hex>`, `<hex>.json`, `<hex>.tar`.
fn digest_in_name(name: &str) -> Option<Digest> {
    let file = name.rsplit('/').next()?;
    let stem = file
        .strip_suffix(".json")
        .or_else(|| file.strip_suffix(".tar"))
        .unwrap_or(file);
    Digest::from_hex(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_in_member_names() {
        let hex = "a".repeat(64);
        for name in [
            format!("blobs/sha256/{hex}"),
            format!("{hex}.json"),
            format!("{hex}.tar"),
        ] {
            assert_eq!(digest_in_name(&name).unwrap().hex(), hex, "{name}");
        }
        assert!(digest_in_name(&format!("{hex}/layer.tar")).is_none());
        assert!(digest_in_name("manifest.json").is_none());
    }
}
