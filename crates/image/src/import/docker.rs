//! `docker save` archives: `manifest.json` lists images as a config file, layer tars and
//! `RepoTags`. Such archives hold no registry manifest, so one is written (OCI, with the
//! layers as they are) to give the image a manifest digest; the same archive always gives
//! the same digest. Integrity: names that carry a digest (`<hex>.json`,
//! `blobs/sha256/<hex>`) are checked, and every uncompressed layer against the config's
//! `rootfs.diff_ids`.

use serde::Deserialize;

use super::{Ctx, digest_in_name};
use crate::blobs::Staging;
use crate::digest::Digest;
use crate::spec::{self, Compression, ConfigFile, Descriptor, Manifest};
use crate::store::StagedImage;
use crate::{ImageError, reference};

/// One image in manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

pub(super) fn read(ctx: &Ctx<'_>, staging: &mut Staging) -> Result<Vec<StagedImage>, ImageError> {
    let entries: Vec<Entry> = ctx.json("manifest.json")?;
    if entries.is_empty() {
        return Err(ctx.invalid("manifest.json lists no images"));
    }
    entries.iter().map(|e| image(ctx, staging, e)).collect()
}

fn image(ctx: &Ctx<'_>, staging: &mut Staging, entry: &Entry) -> Result<StagedImage, ImageError> {
    let tags = entry.repo_tags.clone().unwrap_or_default();
    ctx.progress.message(&format!(
        "importing {}",
        if tags.is_empty() {
            "an untagged image".into()
        } else {
            tags.join(", ")
        }
    ));
    let config_bytes = ctx.source.read_small(&entry.config)?;
    let config_digest = Digest::of(&config_bytes);
    check_named(ctx, &entry.config, &config_digest)?;
    let config = ConfigFile::parse(&config_bytes).map_err(|e| ctx.invalid(e))?;
    config
        .check_platform()
        .map_err(|e| ImageError::unsupported(ctx.archive, e))?;
    staging.add_bytes(&config_digest, &config_bytes, "image config")?;
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();
    if diff_ids.len() != entry.layers.len() {
        return Err(ctx.invalid(format!(
            "the config lists {} layers, manifest.json {}",
            diff_ids.len(),
            entry.layers.len()
        )));
    }
    let mut layers = Vec::new();
    for (name, diff_id) in entry.layers.iter().zip(&diff_ids) {
        layers.push(layer(ctx, staging, name, diff_id)?);
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(spec::OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: spec::OCI_CONFIG.into(),
            digest: config_digest.to_string(),
            size: config_bytes.len() as u64,
            ..Default::default()
        },
        layers,
    };
    let bytes = serde_json::to_vec(&manifest).expect("a manifest serialises");
    let digest = Digest::of(&bytes);
    staging.add_bytes(&digest, &bytes, "manifest")?;
    Ok(StagedImage {
        digest,
        manifest,
        config,
        references: references(ctx, &tags),
    })
}

/// Stage one layer tar and check it against the name and the config's diff id.
fn layer(
    ctx: &Ctx<'_>,
    staging: &mut Staging,
    name: &str,
    diff_id: &str,
) -> Result<Descriptor, ImageError> {
    let (writer, compression) = ctx.stage(name, diff_id, staging)?;
    let size = writer.len();
    let digest = staging.finish_unverified(writer)?;
    check_named(ctx, name, &digest)?;
    if compression == Compression::None && diff_id != digest.to_string() {
        return Err(ImageError::DigestMismatch {
            what: format!("layer {name} in {}", ctx.archive),
            expected: diff_id.to_string(),
            actual: digest.to_string(),
        });
    }
    Ok(Descriptor {
        media_type: compression.oci_media_type().into(),
        digest: digest.to_string(),
        size,
        ..Default::default()
    })
}

/// A member whose name is a digest must have that digest.
fn check_named(ctx: &Ctx<'_>, name: &str, actual: &Digest) -> Result<(), ImageError> {
    match digest_in_name(name) {
        Some(named) if &named != actual => Err(ImageError::DigestMismatch {
            what: format!("{name} in {}", ctx.archive),
            expected: named.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

/// RepoTags as normalised references; a tag that does not parse is skipped, with a message.
fn references(ctx: &Ctx<'_>, tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| match reference::parse(t) {
            Ok(r) => Some(reference::key(&r)),
            Err(e) => {
                ctx.progress.message(&format!("skipping tag {t}: {e}"));
                None
            }
        })
        .collect()
}
