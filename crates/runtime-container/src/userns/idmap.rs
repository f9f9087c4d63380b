//! [`IdmappedTree`]: a read-only clone of a directory's mount whose file ids are seen through a
//! user namespace's mapping (host id 0 is the namespace's root), made with the new mount API:
//! `open_tree(OPEN_TREE_CLONE)` detaches a copy, `mount_setattr(MOUNT_ATTR_IDMAP)` maps it
//! (only a detached mount may be), `move_mount` attaches it where wanted. The directory itself
//! and its mount are untouched; a clone never attached goes away with its descriptor. The
//! mount API has no wrapper in `nix`, so these are raw system calls.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use nix::libc;

/// A detached, read-only, idmapped mount.
#[derive(Debug)]
pub(crate) struct IdmappedTree {
    fd: OwnedFd,
}

impl IdmappedTree {
    /// A clone of the mount at `source`, read-only, its ids mapped through `userns`.
    pub fn new(source: &Path, userns: &File) -> io::Result<Self> {
        let tree = Self {
            fd: open_tree_clone(source)?,
        };
        tree.set_idmap(userns)?;
        Ok(tree)
    }

    /// Attach it at `target`, an existing directory.
    pub fn attach(self, target: &Path) -> io::Result<()> {
        let target = c_path(target)?;
        let empty = c"";
        // SAFETY: both paths are NUL-terminated strings that outlive the call, and `self.fd` is
        // an open descriptor; move_mount only reads them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                self.fd.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn set_idmap(&self, userns: &File) -> io::Result<()> {
        let attr = libc::mount_attr {
            attr_set: libc::MOUNT_ATTR_IDMAP | libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.as_raw_fd() as u64,
        };
        let empty = c"";
        // SAFETY: the kernel reads `size_of::<mount_attr>()` bytes from `attr`, a live,
        // initialized `mount_attr` (the kernel's layout, from libc), and the NUL-terminated
        // empty path; both outlive the call, and both descriptors are open.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                self.fd.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// `open_tree(path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)`: a detached copy of the mount at
/// `path` (only that mount: no submounts).
fn open_tree_clone(path: &Path) -> io::Result<OwnedFd> {
    let path = c_path(path)?;
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: `path` is a NUL-terminated string that outlives the call; open_tree only reads
    // it and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}
