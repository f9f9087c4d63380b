//! The files of one instance's container (its bundle, `<scratch>/bundle`, and where its root
//! is mounted: [`Layout`]): making a fresh one, mounting its root filesystem, writing
//! `config.json`, and taking it all down again. Never removes a directory that still has a
//! filesystem mounted inside it, and never writes to an image's shared rootfs.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::Spec;

use crate::bundle::RootChoice;
use crate::error::ContainerError;
use crate::mounts::HostFiles;
use crate::rootfs;
use crate::runc::Runc;
use crate::userns::Roots;

/// The bundle directory inside an instance's scratch directory.
pub fn bundle_dir(scratch: &Path) -> PathBuf {
    scratch.join("bundle")
}

/// Where one instance's container files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The bundle: `config.json`, the overlay's upper and work directories, host files.
    pub bundle: PathBuf,
    /// Where the root filesystem is mounted: `<bundle>/rootfs`, or for a container with a user
    /// namespace its mount point under the roots directory.
    pub root: PathBuf,
}

impl Layout {
    /// The layout of instance `id` with scratch directory `scratch`.
    pub fn new(scratch: &Path, roots: Option<&Roots>, id: &str) -> Self {
        let bundle = bundle_dir(scratch);
        let root = match roots {
            Some(roots) => roots.mount_point(id),
            None => bundle.join(rootfs::ROOTFS),
        };
        Self { bundle, root }
    }

    /// The root as `config.json` names it: relative to the bundle when inside it.
    pub fn spec_root(&self) -> PathBuf {
        match self.root.strip_prefix(&self.bundle) {
            Ok(relative) => relative.to_owned(),
            Err(_) => self.root.clone(),
        }
    }

    fn root_is_outside(&self) -> bool {
        !self.root.starts_with(&self.bundle)
    }
}

/// Clear what a crashed earlier run with the same id left (runc state, a mounted rootfs, the
/// bundle) and create an empty bundle directory.
pub fn fresh_bundle(runc: &Runc, layout: &Layout, id: &str) -> Result<(), ContainerError> {
    if runc.has_state(id) {
        tracing::info!(
            container = id,
            "deleting a leftover container with the same id"
        );
        run_quietly(runc.delete(id), id);
    }
    if layout.bundle.exists() || layout.root.exists() {
        remove_bundle(layout);
    }
    let bundle = &layout.bundle;
    std::fs::create_dir_all(bundle).map_err(ContainerError::io("creating bundle", bundle))
}

/// The host's resolv.conf and hosts files, or minimal stand-ins written into the bundle
/// when the host has none (so the container always has both).
pub fn host_files(
    resolv_conf: &Path,
    hosts: &Path,
    bundle: &Path,
) -> Result<HostFiles, ContainerError> {
    let pick = |host: &Path, name: &str, fallback: &str| -> Result<PathBuf, ContainerError> {
        if host.is_file() {
            return Ok(host.to_owned());
        }
        let path = bundle.join(name);
        std::fs::write(&path, fallback).map_err(ContainerError::io("writing", &path))?;
        // Readable by the container's user whatever the server's umask (077).
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(ContainerError::io("setting the mode of", &path))?;
        Ok(path)
    };
    Ok(HostFiles {
        resolv_conf: pick(resolv_conf, "resolv.conf", "")?,
        hosts: pick(hosts, "hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n")?,
    })
}

/// Mount the overlay over `lower` when `overlay` is wanted; on failure fall back to the shared
/// rootfs, read-only, calling `on_fallback` with the reason.
pub fn mount_root(
    lower: &Path,
    layout: &Layout,
    overlay: bool,
    on_fallback: impl FnOnce(&rootfs::OverlayError),
) -> RootChoice {
    if !overlay {
        return RootChoice::ReadOnly(lower.to_owned());
    }
    match rootfs::mount_overlay(lower, &layout.bundle, &layout.root, None) {
        Ok(()) => RootChoice::Overlay(layout.spec_root()),
        Err(e) => {
            on_fallback(&e);
            RootChoice::ReadOnly(lower.to_owned())
        }
    }
}

/// Write `<bundle>/config.json`.
pub fn write_config(spec: &Spec, bundle: &Path) -> Result<(), ContainerError> {
    let path = bundle.join("config.json");
    spec.save(&path).map_err(|e| match e {
        oci_spec::OciSpecError::Io(source) => ContainerError::Io {
            action: "writing",
            path,
            source,
        },
        other => ContainerError::Spec(other),
    })
}

/// Unmount the container's rootfs (and an idmapped layer a crash left mounted) and remove the
/// bundle, and the root's mount point when it is outside the bundle (only ever an empty
/// directory). Leaves everything in place (and says so) when an unmount fails, so nothing
/// mounted is ever deleted through.
pub fn remove_bundle(layout: &Layout) {
    for mount in [&layout.root, &layout.bundle.join(rootfs::LOWER)] {
        if let Err(errno) = rootfs::unmount(mount) {
            tracing::warn!(path = %mount.display(), "cannot unmount container rootfs: {errno}");
            return;
        }
    }
    let bundle = &layout.bundle;
    match std::fs::remove_dir_all(bundle) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(bundle = %bundle.display(), "cannot remove bundle: {e}"),
    }
    if layout.root_is_outside() {
        match std::fs::remove_dir(&layout.root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %layout.root.display(), "cannot remove: {e}"),
        }
    }
}

/// Run a runc housekeeping command to completion, logging a failure.
pub fn run_quietly(mut cmd: Command, id: &str) {
    match cmd.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => tracing::warn!(
            container = id,
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => tracing::warn!(container = id, "cannot run {cmd:?}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_host_files_get_stand_ins_in_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("present");
        std::fs::write(&present, "nameserver 10.0.0.1\n").unwrap();
        let files = host_files(&present, &dir.path().join("absent"), dir.path()).unwrap();
        assert_eq!(files.resolv_conf, present);
        assert_eq!(files.hosts, dir.path().join("hosts"));
        let hosts = std::fs::read_to_string(&files.hosts).unwrap();
        assert!(hosts.contains("localhost"));
    }

    #[test]
    fn a_fresh_bundle_replaces_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let runc = Runc::new("/nonexistent/runc", dir.path().join("state"));
        let layout = Layout::new(dir.path(), None, "x-1");
        let bundle = &layout.bundle;
        std::fs::create_dir_all(bundle.join("upper/old")).unwrap();
        fresh_bundle(&runc, &layout, "x-1").unwrap();
        assert!(bundle.is_dir());
        assert!(!bundle.join("upper").exists());
    }

    #[test]
    fn a_root_outside_the_bundle_is_named_absolutely_and_removed_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let userns = crate::UserNamespaces {
            roots_dir: dir.path().join("roots"),
            ..Default::default()
        };
        let roots = Roots::new(&userns, Path::new("/state"));
        let layout = Layout::new(&dir.path().join("scratch"), Some(&roots), "x-1");
        assert_eq!(layout.root, roots.mount_point("x-1"));
        assert_eq!(layout.spec_root(), layout.root);
        let inside = Layout::new(dir.path(), None, "x-1");
        assert_eq!(inside.spec_root(), PathBuf::from("rootfs"));

        std::fs::create_dir_all(layout.root.join("left")).unwrap();
        remove_bundle(&layout);
        assert!(layout.root.exists(), "a directory that is not empty stays");
        std::fs::remove_dir(layout.root.join("left")).unwrap();
        std::fs::create_dir_all(&layout.bundle).unwrap();
        remove_bundle(&layout);
        assert!(!layout.root.exists() && !layout.bundle.exists());
    }

    #[test]
    fn without_overlay_the_shared_rootfs_is_used_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut told = false;
        let layout = Layout::new(dir.path(), None, "x-1");
        let root = mount_root(Path::new("/img"), &layout, false, |_| told = true);
        assert_eq!(root, RootChoice::ReadOnly("/img".into()));
        assert!(!told);
    }
}
