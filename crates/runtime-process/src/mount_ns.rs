//! Volumes for host processes: a host process sees the host's file system, so its Secret and
//! ConfigMap volumes are bound read-only at their mount paths in a mount namespace of its own,
//! made between fork and exec. Only a root server can; the mount points must exist on the
//! host (Nimbus does not create directories in the host's file system), which the host
//! launcher checks before a start.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use nimbus_runtime::volumes::Bind;

/// Binds as C strings, made before the fork so the child only makes system calls.
pub(crate) struct PreparedMounts(Vec<(CString, CString)>);

impl PreparedMounts {
    /// `None` without binds; an error when a path holds a NUL byte.
    pub fn new(binds: &[Bind]) -> io::Result<Option<Self>> {
        if binds.is_empty() {
            return Ok(None);
        }
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "a mount path holds a NUL byte")
            })
        };
        let pairs = binds
            .iter()
            .map(|b| Ok((c(&b.host)?, c(&b.path)?)))
            .collect::<io::Result<_>>()?;
        Ok(Some(Self(pairs)))
    }

    /// Enter a new mount namespace that receives nothing from the host's and gives it nothing,
    /// and bind each volume read-only (and nosuid, nodev, noexec) at its path.
    ///
    /// # Safety
    /// Meant for a forked child before `execve`: it only makes `unshare` and `mount` system
    /// calls on strings allocated before the fork, and allocates nothing.
    pub unsafe fn enter(&self) -> io::Result<()> {
        let none = c"none".as_ptr();
        let root = c"/".as_ptr();
        // SAFETY (of each call below): plain system calls with NUL-terminated strings that
        // live as long as `self`, and null pointers where the kernel accepts them.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                none,
                root,
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for (host, path) in &self.0 {
                check(libc::mount(
                    host.as_ptr(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
                let read_only = libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC;
                check(libc::mount(
                    none,
                    path.as_ptr(),
                    std::ptr::null(),
                    read_only,
                    std::ptr::null(),
                ))?;
            }
        }
        Ok(())
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}
