//! Container images: registry pulls, imports, a content-addressed store and unpacked root
//! filesystems.
//!
//! [`ImageStore`] owns one directory:
//!
//! ```text
//! <root>/blobs/sha256/<hex>    every manifest, index, config and layer, by content digest
//! <root>/refs.json             reference (e.g. 127.0.0.1:5000/hello:1) → manifest digest
//! <root>/rootfs/<hex>/         the unpacked root filesystem of manifest <hex>, shared, read-only
//! <root>/tmp/                  staging for work in progress (same filesystem, for renames)
//! ```
//!
//! Every change is staged under `tmp/` and verified before it becomes visible by `rename`:
//! a blob only after its sha256 matched, a root filesystem only once all its layers were
//! applied, a reference last. A failure at any point leaves none of it behind.
//!
//! This crate never runs containers and never talks to anything but the registries it is
//! asked to pull from.

mod auth;
mod blobs;
mod digest;
mod error;
mod import;
mod reference;
mod refs;
mod registry;
mod rootfs;
mod spec;
mod store;
mod unpack;

pub use auth::login;
pub use error::ImageError;
pub use store::{ImageStore, StoreOptions};
/// One layer blob applied to a root directory, as the store does for each layer of an image.
pub use unpack::apply_layer;

use std::path::PathBuf;

/// A stored image, ready to run.
#[derive(Clone, Debug)]
pub struct Image {
    /// The normalised reference it was asked for (e.g. `docker.io/library/nginx:latest`).
    pub reference: String,
    /// The digest of its (platform-specific) manifest, `sha256:…`.
    pub digest: String,
    /// What the image config says to run.
    pub config: ImageConfig,
    /// The unpacked root filesystem. Shared between instances: treat it as read-only.
    pub rootfs: PathBuf,
}

/// The parts of an image config that decide how its process starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `K=V` strings.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// One line of [`ImageStore::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    pub reference: String,
    /// The manifest digest, `sha256:…`.
    pub digest: String,
    /// Config plus layers as stored (compressed), in bytes.
    pub size: u64,
    /// Whether the root filesystem is unpacked already.
    pub unpacked: bool,
}

/// Receives progress of a pull or import (for a CLI progress bar or logs).
pub trait Progress: Send + Sync {
    /// `done` of `total` bytes (when known) of blob `digest` have been fetched or copied.
    fn layer(&self, digest: &str, done: u64, total: Option<u64>);
    /// A step worth telling the user ("pulling manifest", "unpacking …").
    fn message(&self, text: &str);
}

/// A [`Progress`] that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn layer(&self, _digest: &str, _done: u64, _total: Option<u64>) {}
    fn message(&self, _text: &str) {}
}
