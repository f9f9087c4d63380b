//! Applying a layer (a tar, plain or gzip-compressed) to a root filesystem, with OCI
//! whiteouts: `.wh.<name>` deletes `<name>` from lower layers and `.wh..wh..opq` empties its
//! directory of everything lower layers put there.
//!
//! Nothing is ever written outside the root: entry paths with `..` or a leading `/` are
//! refused, and symlinks already in the root are followed as if the root were `/` (a link
//! to `/etc` or `../../..` stays inside), so a hostile layer cannot plant a link and write
//! through it. Modes and ownership are kept (ownership only when running as root); device
//! nodes and FIFOs are skipped (the OCI runtime provides `/dev`); extended attributes are
//! dropped.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use crate::ImageError;
use crate::spec::Compression;

const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT: &str = ".wh.";
/// Symlinks followed while resolving one path, as Linux's own limit (40) with room to spare.
const MAX_LINK_HOPS: usize = 64;

/// What went wrong applying a layer, before it is told which layer it was.
#[derive(Debug)]
enum Fault {
    /// The layer itself is bad (not a tar, truncated, escaping paths).
    Corrupt(String),
    /// Writing the root filesystem failed.
    Local(String, std::io::Error),
    Unsupported(String),
}

impl Fault {
    fn local(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |e| Self::Local(context, e)
    }

    fn into_error(self, what: &str) -> ImageError {
        match self {
            Self::Corrupt(detail) => ImageError::invalid_archive(what, detail),
            Self::Local(context, source) => ImageError::Io {
                context: format!("unpacking {what}: {context}"),
                source,
            },
            Self::Unsupported(detail) => ImageError::unsupported(what, detail),
        }
    }
}

/// Counts of what a layer held.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    pub entries: u64,
    /// Device nodes, FIFOs and unknown entry types left out.
    pub skipped: u64,
}

/// Apply the layer blob at `blob` to `root`; `what` names the layer in errors.
pub(crate) fn apply_layer(root: &Path, blob: &Path, what: &str) -> Result<Stats, ImageError> {
    let file = File::open(blob).map_err(ImageError::io(format!(
        "opening {what} at {}",
        blob.display()
    )))?;
    apply_stream(root, file).map_err(|f| f.into_error(what))
}

fn apply_stream(root: &Path, input: impl Read) -> Result<Stats, Fault> {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let head = input
        .fill_buf()
        .map_err(Fault::local("reading the layer"))?;
    match Compression::sniff(head) {
        Compression::None => apply_tar(root, input),
        Compression::Gzip => apply_tar(root, flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => Err(Fault::Unsupported(
            "zstd-compressed layers are not supported yet; push the image with gzip layers".into(),
        )),
    }
}

fn apply_tar(root: &Path, input: impl Read) -> Result<Stats, Fault> {
    let mut archive = tar::Archive::new(input);
    let mut layer = Layer {
        root,
        written: HashSet::new(),
        dirs: Vec::new(),
        stats: Stats::default(),
    };
    let entries = archive
        .entries()
        .map_err(|e| Fault::Corrupt(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Fault::Corrupt(format!("reading the tar: {e}")))?;
        layer.entry(&mut entry)?;
    }
    layer.finish()
}

/// The state of one layer being applied.
struct Layer<'r> {
    root: &'r Path,
    /// Paths (relative to the root) this layer wrote, which an opaque whiteout must keep.
    written: HashSet<PathBuf>,
    /// Directories whose mode is set once all their entries are in.
    dirs: Vec<(PathBuf, u32)>,
    stats: Stats,
}

impl Layer<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Fault> {
        let raw = entry
            .path()
            .map_err(|e| Fault::Corrupt(format!("bad entry name: {e}")))?
            .into_owned();
        let parts = clean(&raw)?;
        let Some((name, parents)) = parts.split_last() else {
            return Ok(()); // "./": the root itself
        };
        self.stats.entries += 1;
        let name_str = name.to_string_lossy();
        if name_str == OPAQUE {
            return self.opaque(parents);
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT) {
            let parent = resolve(self.root, parents)?;
            return remove_any(&parent.join(hidden));
        }
        let parent = resolve(self.root, parents)?;
        std::fs::create_dir_all(&parent)
            .map_err(Fault::local(format!("creating {}", parent.display())))?;
        let dest = parent.join(name);
        self.written.insert(parts.iter().collect());
        self.write(entry, &dest)
    }

    fn write<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, dest: &Path) -> Result<(), Fault> {
        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|e| Fault::Corrupt(format!("bad mode: {e}")))?
            & 0o7777;
        let owner = owner(header);
        use tar::EntryType as T;
        match header.entry_type() {
            T::Directory => {
                make_dir(dest)?;
                chown(dest, owner)?;
                self.dirs.push((dest.to_path_buf(), mode));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let mtime = header.mtime().unwrap_or(0);
                write_file(entry, dest, owner, mode, mtime)?;
            }
            T::Symlink => {
                let target = link_name(entry)?;
                remove_any(dest)?;
                std::os::unix::fs::symlink(&target, dest)
                    .map_err(Fault::local(format!("linking {}", dest.display())))?;
                chown(dest, owner)?;
            }
            T::Link => {
                let target = link_name(entry)?;
                self.hard_link(&target, dest)?;
            }
            _ => self.stats.skipped += 1,
        }
        Ok(())
    }

    /// A hard link to `target`, an archive path of an earlier entry.
    fn hard_link(&self, target: &Path, dest: &Path) -> Result<(), Fault> {
        let parts = clean(target)?;
        let Some((name, parents)) = parts.split_last() else {
            return Err(Fault::Corrupt("hard link to the root directory".into()));
        };
        let source = resolve(self.root, parents)?.join(name);
        if source.symlink_metadata().is_err() {
            return Err(Fault::Corrupt(format!(
                "hard link to {} which the layer does not contain",
                target.display()
            )));
        }
        if source == dest {
            return Ok(());
        }
        remove_any(dest)?;
        // Linux's link(2) does not follow a symlink at `source`, so this stays in the root.
        std::fs::hard_link(&source, dest)
            .map_err(Fault::local(format!("linking {}", dest.display())))
    }

    /// `.wh..wh..opq` in `dir`: drop what lower layers put there, keep this layer's entries.
    fn opaque(&mut self, dir: &[OsString]) -> Result<(), Fault> {
        let host = resolve(self.root, dir)?;
        let rel: PathBuf = dir.iter().collect();
        prune(&host, &rel, &self.written)
    }

    /// Set directory modes now that nothing more is written into them.
    fn finish(self) -> Result<Stats, Fault> {
        for (dir, mode) in self.dirs.iter().rev() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(*mode)).map_err(
                Fault::local(format!("setting the mode of {}", dir.display())),
            )?;
        }
        Ok(self.stats)
    }
}

/// The normal components of an entry path; `..`, absolute and empty paths are refused.
fn clean(path: &Path) -> Result<Vec<OsString>, Fault> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Fault::Corrupt(format!(
                    "entry {} points outside the root filesystem",
                    path.display()
                )));
            }
        }
    }
    Ok(parts)
}

/// The host path of `parts` under `root`, following symlinks already in the root as if it
/// were `/` (absolute targets restart at the root, `..` stops at it).
fn resolve(root: &Path, parts: &[OsString]) -> Result<PathBuf, Fault> {
    let mut pending: Vec<OsString> = parts.iter().rev().cloned().collect();
    let mut done: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.to_str() {
            Some("" | ".") => continue,
            Some("..") => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let here = root.join(done.iter().collect::<PathBuf>()).join(&part);
        let Ok(target) = std::fs::read_link(&here) else {
            done.push(part);
            continue;
        };
        hops += 1;
        if hops > MAX_LINK_HOPS {
            return Err(Fault::Corrupt(format!(
                "too many symlinks at {}",
                here.display()
            )));
        }
        if target.is_absolute() {
            done.clear();
        }
        let next = target.components().filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        });
        pending.extend(next.collect::<Vec<_>>().into_iter().rev());
    }
    Ok(root.join(done.iter().collect::<PathBuf>()))
}

/// Remove whatever is at `path` (a directory with its contents); nothing there is fine.
fn remove_any(path: &Path) -> Result<(), Fault> {
    let Ok(meta) = path.symlink_metadata() else {
        return Ok(());
    };
    let removed = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(Fault::local(format!("removing {}", path.display())))
}

/// Under `host` (the archive path `rel`), remove everything not in `keep`.
fn prune(host: &Path, rel: &Path, keep: &HashSet<PathBuf>) -> Result<(), Fault> {
    let Ok(children) = std::fs::read_dir(host) else {
        return Ok(());
    };
    for child in children {
        let child = child.map_err(Fault::local(format!("listing {}", host.display())))?;
        let rel_child = rel.join(child.file_name());
        let path = child.path();
        if !keep.contains(&rel_child) {
            remove_any(&path)?;
        } else if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            prune(&path, &rel_child, keep)?;
        }
    }
    Ok(())
}

fn make_dir(dest: &Path) -> Result<(), Fault> {
    if dest.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    remove_any(dest)?;
    std::fs::create_dir(dest).map_err(Fault::local(format!("creating {}", dest.display())))
}

fn write_file(
    entry: &mut impl Read,
    dest: &Path,
    owner: (u32, u32),
    mode: u32,
    mtime: u64,
) -> Result<(), Fault> {
    remove_any(dest)?;
    let context = || format!("writing {}", dest.display());
    // create_new: never follows a symlink at `dest` (there is none: just removed).
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(Fault::local(context()))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| Fault::Corrupt(format!("reading {}: {e}", dest.display())))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(Fault::local(context()))?;
    }
    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    file.set_modified(modified)
        .map_err(Fault::local(context()))?;
    drop(file);
    chown(dest, owner)?; // before chmod: chown clears set-id bits
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode))
        .map_err(Fault::local(context()))
}

/// The entry's uid and gid; an empty or unreadable field is taken as root's (as GNU tar
/// does for numeric fields it cannot parse).
fn owner(header: &tar::Header) -> (u32, u32) {
    let id = |v: std::io::Result<u64>| v.ok().and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    (id(header.uid()), id(header.gid()))
}

/// Set the owner of `path` (not following a symlink); refused when not root, which is
/// accepted (the files then belong to whoever unpacks them).
fn chown(path: &Path, (uid, gid): (u32, u32)) -> Result<(), Fault> {
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => Err(Fault::Local(
            format!("changing the owner of {}", path.display()),
            e,
        )),
        _ => Ok(()),
    }
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<PathBuf, Fault> {
    entry
        .link_name()
        .map_err(|e| Fault::Corrupt(format!("bad link target: {e}")))?
        .map(|p| p.into_owned())
        .ok_or_else(|| Fault::Corrupt("link without a target".into()))
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
