//! OCI image layouts: `oci-layout`, `index.json` naming manifests (or per-platform indexes),
//! and `blobs/sha256/<hex>`. Each blob read is checked against its digest. An index entry is
//! stored under `io.containerd.image.name` or, when it is a full reference (`name:tag`),
//! `org.opencontainers.image.ref.name`; a bare tag such as `latest` names no repository, so
//! such an image is stored by digest only.

use serde::Deserialize;

use super::Ctx;
use crate::blobs::Staging;
use crate::digest::Digest;
use crate::spec::{self, ConfigFile, Descriptor, Document, Index, Manifest};
use crate::store::StagedImage;
use crate::{ImageError, reference};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layout {
    image_layout_version: String,
}

pub(super) fn read(ctx: &Ctx<'_>, staging: &mut Staging) -> Result<Vec<StagedImage>, ImageError> {
    let layout: Layout = ctx.json("oci-layout")?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(ctx.invalid(format!(
            "image layout version {} is not 1.x",
            layout.image_layout_version
        )));
    }
    let index: Index = ctx.json("index.json")?;
    if index.manifests.is_empty() {
        return Err(ctx.invalid("index.json lists no manifests"));
    }
    index
        .manifests
        .iter()
        .map(|d| image(ctx, staging, d))
        .collect()
}

fn image(
    ctx: &Ctx<'_>,
    staging: &mut Staging,
    entry: &Descriptor,
) -> Result<StagedImage, ImageError> {
    let references = references(ctx, entry);
    let label = if references.is_empty() {
        entry.digest.clone()
    } else {
        references.join(", ")
    };
    ctx.progress.message(&format!("importing {label}"));
    let (digest, manifest) = platform_manifest(ctx, staging, entry)?;
    let config_digest = blob(ctx, staging, &manifest.config, "image config")?;
    let config = ConfigFile::parse(&staging.read(&config_digest)?).map_err(|e| ctx.invalid(e))?;
    config
        .check_platform()
        .map_err(|e| ImageError::unsupported(&label, e))?;
    for layer in &manifest.layers {
        blob(ctx, staging, layer, &format!("layer {}", layer.digest))?;
    }
    Ok(StagedImage {
        digest,
        manifest,
        config,
        references,
    })
}

/// The image manifest of `entry`, through a per-platform index if it is one.
fn platform_manifest(
    ctx: &Ctx<'_>,
    staging: &mut Staging,
    entry: &Descriptor,
) -> Result<(Digest, Manifest), ImageError> {
    let mut entry = entry.clone();
    for _ in 0..2 {
        let digest = blob(ctx, staging, &entry, "manifest")?;
        let parsed = spec::parse_document(&staging.read(&digest)?).map_err(|e| ctx.invalid(e))?;
        match parsed {
            Document::Image(m) => return Ok((digest, m)),
            Document::Index(index) => {
                entry = spec::select_platform(&index)
                    .map_err(|e| ImageError::unsupported(ctx.archive, e))?
                    .clone();
            }
        }
    }
    Err(ctx.invalid("an index inside an index inside index.json"))
}

/// Stage the blob `desc` names, checking its digest (skipped if the store has it).
fn blob(
    ctx: &Ctx<'_>,
    staging: &mut Staging,
    desc: &Descriptor,
    what: &str,
) -> Result<Digest, ImageError> {
    let digest = Digest::parse(&desc.digest).map_err(|e| ctx.invalid(e))?;
    if staging.has(&digest) {
        return Ok(digest);
    }
    let name = format!("blobs/sha256/{}", digest.hex());
    let (writer, _) = ctx.stage(&name, &desc.digest, staging)?;
    staging.finish(writer, &digest, &format!("{what} in {}", ctx.archive))?;
    Ok(digest)
}

/// The references an index entry names (see the module docs).
fn references(ctx: &Ctx<'_>, entry: &Descriptor) -> Vec<String> {
    let containerd = entry.annotations.get(spec::CONTAINERD_NAME);
    let ref_name = entry.annotations.get(spec::REF_NAME);
    let name = match (containerd, ref_name) {
        (Some(full), _) => full,
        (None, Some(r)) if r.contains([':', '/', '@']) => r,
        (None, Some(tag)) => {
            ctx.progress.message(&format!(
                "{} is named only {tag:?}, not name:tag; stored by digest {}",
                ctx.archive, entry.digest
            ));
            return Vec::new();
        }
        (None, None) => return Vec::new(),
    };
    match reference::parse(name) {
        Ok(r) => vec![reference::key(&r)],
        Err(e) => {
            ctx.progress.message(&format!("skipping name {name}: {e}"));
            Vec::new()
        }
    }
}
