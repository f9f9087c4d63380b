//! Applying a layer (a tar, plain or gzip-compressed) to a root filesystem, with OCI
//! whiteouts: `.wh.<name>` deletes `<name>` from lower layers and `.wh..wh..opq` empties its
//! directory of everything lower layers put there.
//!
//! Nothing is ever read, written, removed or changed outside the root, whatever the layer
//! holds (issue #13). Every step works relative to a directory file descriptor, never on a
//! host path: a directory is opened with `openat2(RESOLVE_IN_ROOT)` from the root's
//! descriptor, so the kernel resolves symlinks already in the root as if the root were `/` (a
//! link to `/etc` or `../../..` stays inside) and no later entry can swap a path for a link
//! between a check and a use; the final name is then created, linked, removed or chowned with
//! `*at` calls that do not follow it, and a file's mode and owner are set through its own
//! descriptor. Entry paths with `..` or a leading `/` are refused, as are whiteouts of empty,
//! `.` and `..` names. Modes and ownership are kept (ownership only when running as root);
//! device nodes and FIFOs are skipped (the OCI runtime provides `/dev`); extended attributes
//! are dropped.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::ImageError;
use crate::spec::Compression;

const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT: &str = ".wh.";
/// Symlinks followed while finding where to create a missing directory, as Linux's own limit
/// (40) with room to spare.
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

    /// A failed system call on `path` (an archive path): what the layer did wrong when the
    /// error says so (a loop of links, a file where a directory must be), else local.
    fn errno(context: &str, path: &Path) -> impl FnOnce(Errno) -> Self {
        let what = format!("{context} {}", path.display());
        move |e| match e {
            Errno::LOOP => Self::Corrupt(format!("{what}: too many symlinks")),
            Errno::NOTDIR => Self::Corrupt(format!("{what}: a path component is not a directory")),
            Errno::XDEV => Self::Corrupt(format!("{what}: points outside the root filesystem")),
            Errno::NOSYS => {
                Self::Unsupported("unpacking images needs openat2 (Linux 5.6 or newer)".to_string())
            }
            e => Self::Local(what, e.into()),
        }
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
pub struct Stats {
    pub entries: u64,
    /// Device nodes, FIFOs and unknown entry types left out.
    pub skipped: u64,
}

/// Apply the layer blob at `blob` to `root`; `what` names the layer in errors.
pub fn apply_layer(root: &Path, blob: &Path, what: &str) -> Result<Stats, ImageError> {
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
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Fault::Local(format!("opening {}", root.display()), e.into()))?;
    let mut archive = tar::Archive::new(input);
    let mut layer = Layer {
        root: Root(root_fd),
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
struct Layer {
    root: Root,
    /// Paths (relative to the root) this layer wrote, which an opaque whiteout must keep.
    written: HashSet<PathBuf>,
    /// Directories (archive paths) whose mode is set once all their entries are in.
    dirs: Vec<(PathBuf, u32)>,
    stats: Stats,
}

impl Layer {
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
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT.as_bytes()) {
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(Fault::Corrupt(format!(
                    "whiteout {} names no entry of its directory",
                    raw.display()
                )));
            }
            let parent = match self.root.dir(parents) {
                Err(Errno::NOENT) => return Ok(()), // nothing there to delete
                other => other.map_err(Fault::errno("opening", &raw))?,
            };
            return remove_at(&parent, OsStr::from_bytes(hidden), None, &raw);
        }
        let parent = self.root.make_dirs(parents, &raw)?;
        self.written.insert(parts.iter().collect());
        self.write(entry, &parent, name, &raw)
    }

    fn write<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &OsStr,
        raw: &Path,
    ) -> Result<(), Fault> {
        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|e| Fault::Corrupt(format!("bad mode: {e}")))?
            & 0o7777;
        let owner = owner(header);
        use tar::EntryType as T;
        match header.entry_type() {
            T::Directory => {
                make_dir(parent, name, raw)?;
                chown_at(parent, name, owner, raw)?;
                self.dirs.push((raw.components().collect(), mode));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let mtime = header.mtime().unwrap_or(0);
                write_file(entry, parent, name, raw, owner, mode, mtime)?;
            }
            T::Symlink => {
                let target = link_name(entry)?;
                remove_at(parent, name, None, raw)?;
                rustix::fs::symlinkat(&target, parent, name)
                    .map_err(Fault::errno("linking", raw))?;
                chown_at(parent, name, owner, raw)?;
            }
            T::Link => {
                let target = link_name(entry)?;
                self.hard_link(&target, parent, name, raw)?;
            }
            _ => self.stats.skipped += 1,
        }
        Ok(())
    }

    /// A hard link to `target`, an archive path of an earlier entry.
    fn hard_link(
        &self,
        target: &Path,
        parent: &OwnedFd,
        name: &OsStr,
        raw: &Path,
    ) -> Result<(), Fault> {
        let parts = clean(target)?;
        let Some((source_name, source_parents)) = parts.split_last() else {
            return Err(Fault::Corrupt("hard link to the root directory".into()));
        };
        let missing = || {
            Fault::Corrupt(format!(
                "hard link to {} which the layer does not contain",
                target.display()
            ))
        };
        let source_parent = self.root.dir(source_parents).map_err(|_| missing())?;
        let source = rustix::fs::statat(
            &source_parent,
            source_name.as_os_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|_| missing())?;
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(dest) if (dest.st_dev, dest.st_ino) == (source.st_dev, source.st_ino) => {
                return Ok(());
            }
            Ok(dest) => {
                remove_at(
                    parent,
                    name,
                    Some(FileType::from_raw_mode(dest.st_mode)),
                    raw,
                )?;
            }
            Err(_) => {}
        }
        // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never what it points at.
        rustix::fs::linkat(
            &source_parent,
            source_name.as_os_str(),
            parent,
            name,
            AtFlags::empty(),
        )
        .map_err(Fault::errno("linking", raw))
    }

    /// `.wh..wh..opq` in `dir`: drop what lower layers put there, keep this layer's entries.
    fn opaque(&mut self, dir: &[OsString]) -> Result<(), Fault> {
        let rel: PathBuf = dir.iter().collect();
        match self.root.dir(dir) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Fault::errno("opening", &rel)(e)),
            Ok(fd) => prune(&fd, &rel, &self.written),
        }
    }

    /// Set directory modes now that nothing more is written into them. A directory a later
    /// entry replaced (by a file or a symlink) is no longer there to set.
    fn finish(self) -> Result<Stats, Fault> {
        for (dir, mode) in self.dirs.iter().rev() {
            let opened = rustix::fs::openat2(
                &self.root.0,
                dir,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT,
            );
            let fd = match opened {
                Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT) => continue,
                other => other.map_err(Fault::errno("opening", dir))?,
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(*mode))
                .map_err(Fault::errno("setting the mode of", dir))?;
        }
        Ok(self.stats)
    }
}

/// The root directory's descriptor: every path is resolved under it, by the kernel.
struct Root(OwnedFd);

impl Root {
    /// The directory at the archive path `parts`, symlinks resolved inside the root.
    fn dir(&self, parts: &[OsString]) -> Result<OwnedFd, Errno> {
        let path: PathBuf = parts.iter().collect();
        let path = if parts.is_empty() {
            Path::new(".")
        } else {
            &path
        };
        rustix::fs::openat2(
            &self.0,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
    }

    /// The directory at `parts`, made (mode 0755, as tar does) where missing. A dangling
    /// symlink on the way is followed inside the root, as the kernel would resolve it, and
    /// its target made.
    fn make_dirs(&self, parts: &[OsString], raw: &Path) -> Result<OwnedFd, Fault> {
        let mut parts = parts.to_vec();
        for _ in 0..MAX_LINK_HOPS {
            match self.dir(&parts) {
                Ok(fd) => return Ok(fd),
                Err(Errno::NOENT) => {}
                Err(e) => return Err(Fault::errno("opening the directory of", raw)(e)),
            }
            // Find the deepest existing ancestor, then make each missing level under it.
            let mut have = parts.len();
            let mut fd = loop {
                have -= 1;
                match self.dir(&parts[..have]) {
                    Ok(fd) => break fd,
                    Err(Errno::NOENT) if have > 0 => {}
                    Err(e) => return Err(Fault::errno("opening the directory of", raw)(e)),
                }
            };
            let mut followed = false;
            for i in have..parts.len() {
                let name = parts[i].as_os_str();
                match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        // A dangling symlink: continue at its target, inside the root.
                        let target = rustix::fs::readlinkat(&fd, name, Vec::new())
                            .map_err(Fault::errno("creating the directory of", raw))?;
                        let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                        let mut next: Vec<OsString> = match target.is_absolute() {
                            true => Vec::new(),
                            false => parts[..i].to_vec(),
                        };
                        for c in target.components() {
                            match c {
                                Component::Normal(p) => next.push(p.to_os_string()),
                                Component::ParentDir => {
                                    next.pop();
                                }
                                _ => {}
                            }
                        }
                        next.extend_from_slice(&parts[i + 1..]);
                        parts = next;
                        followed = true;
                        break;
                    }
                    Err(e) => return Err(Fault::errno("creating the directory of", raw)(e)),
                }
                fd = open_subdir(&fd, name)
                    .map_err(Fault::errno("opening the directory of", raw))?;
                // 0755 whatever the umask (the server's is 077): a directory the layer does
                // not list gets what tar gives it, so the image's users can traverse it.
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))
                    .map_err(Fault::errno("setting the mode of the directory of", raw))?;
            }
            if !followed {
                return Ok(fd);
            }
        }
        Err(Fault::Corrupt(format!(
            "{}: too many symlinks",
            raw.display()
        )))
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

/// The directory `name` in `parent`, never through a symlink.
fn open_subdir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH,
    )
}

/// Remove whatever is at `name` in `parent` (a directory with its contents, never following
/// a symlink); nothing there is fine. `kind`: its type when the caller knows it already.
fn remove_at(
    parent: &OwnedFd,
    name: &OsStr,
    kind: Option<FileType>,
    raw: &Path,
) -> Result<(), Fault> {
    let kind = match kind {
        Some(kind) => kind,
        None => match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => return Ok(()),
            other => FileType::from_raw_mode(other.map_err(Fault::errno("removing", raw))?.st_mode),
        },
    };
    if kind == FileType::Directory {
        let dir = open_subdir(parent, name).map_err(Fault::errno("removing", raw))?;
        for (child, kind) in children(&dir, raw)? {
            remove_at(&dir, &child, kind, raw)?;
        }
        rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
    } else {
        rustix::fs::unlinkat(parent, name, AtFlags::empty())
    }
    .map_err(Fault::errno("removing", raw))
}

/// The entries of directory `dir`, without `.` and `..`, with their types when the file
/// system reports them.
fn children(dir: &OwnedFd, raw: &Path) -> Result<Vec<(OsString, Option<FileType>)>, Fault> {
    let mut names = Vec::new();
    let mut listing = rustix::fs::Dir::read_from(dir).map_err(Fault::errno("listing", raw))?;
    while let Some(entry) = listing.read() {
        let entry = entry.map_err(Fault::errno("listing", raw))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            let kind = Some(entry.file_type()).filter(|k| *k != FileType::Unknown);
            names.push((OsStr::from_bytes(name).to_os_string(), kind));
        }
    }
    Ok(names)
}

/// In `dir` (the archive path `rel`), remove everything not in `keep`.
fn prune(dir: &OwnedFd, rel: &Path, keep: &HashSet<PathBuf>) -> Result<(), Fault> {
    for (name, kind) in children(dir, rel)? {
        let rel_child = rel.join(&name);
        if !keep.contains(&rel_child) {
            remove_at(dir, &name, kind, &rel_child)?;
            continue;
        }
        if kind.is_none_or(|k| k == FileType::Directory)
            && let Ok(sub) = open_subdir(dir, &name)
        {
            prune(&sub, &rel_child, keep)?;
        }
    }
    Ok(())
}

/// A directory `name` in `parent`: made, or kept when one is there already; anything else
/// there is replaced.
fn make_dir(parent: &OwnedFd, name: &OsStr, raw: &Path) -> Result<(), Fault> {
    let mkdir = || rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755));
    match mkdir() {
        Err(Errno::EXIST) => {}
        other => return other.map_err(Fault::errno("creating", raw)),
    }
    let stat = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(Fault::errno("creating", raw))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind == FileType::Directory {
        return Ok(());
    }
    remove_at(parent, name, Some(kind), raw)?;
    mkdir().map_err(Fault::errno("creating", raw))
}

fn write_file(
    entry: &mut impl Read,
    parent: &OwnedFd,
    name: &OsStr,
    raw: &Path,
    owner: (u32, u32),
    mode: u32,
    mtime: u64,
) -> Result<(), Fault> {
    remove_at(parent, name, None, raw)?;
    // O_EXCL | O_NOFOLLOW: a new file, never anything a link points at.
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(Fault::errno("writing", raw))?;
    let mut file = File::from(fd);
    let context = || format!("writing {}", raw.display());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| Fault::Corrupt(format!("reading {}: {e}", raw.display())))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(Fault::local(context()))?;
    }
    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    file.set_modified(modified)
        .map_err(Fault::local(context()))?;
    // Owner before mode: chown clears set-id bits. Both through the file's own descriptor.
    match rustix::fs::fchown(
        file.as_fd(),
        Some(rustix::fs::Uid::from_raw(owner.0)),
        Some(rustix::fs::Gid::from_raw(owner.1)),
    ) {
        Err(Errno::PERM) | Ok(()) => {}
        Err(e) => return Err(Fault::errno("changing the owner of", raw)(e)),
    }
    rustix::fs::fchmod(file.as_fd(), Mode::from_raw_mode(mode))
        .map_err(Fault::errno("setting the mode of", raw))
}

/// The entry's uid and gid; an empty or unreadable field is taken as root's (as GNU tar
/// does for numeric fields it cannot parse), and so is `u32::MAX`, which chown(2) reads as
/// "leave unchanged".
fn owner(header: &tar::Header) -> (u32, u32) {
    let id = |v: std::io::Result<u64>| {
        v.ok()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&v| v != u32::MAX)
            .unwrap_or(0)
    };
    (id(header.uid()), id(header.gid()))
}

/// Set the owner of `name` in `parent` (not following a symlink); refused when not root,
/// which is accepted (the files then belong to whoever unpacks them).
fn chown_at(
    parent: &OwnedFd,
    name: &OsStr,
    (uid, gid): (u32, u32),
    raw: &Path,
) -> Result<(), Fault> {
    match rustix::fs::chownat(
        parent,
        name,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    ) {
        Err(Errno::PERM) | Ok(()) => Ok(()),
        Err(e) => Err(Fault::errno("changing the owner of", raw)(e)),
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
