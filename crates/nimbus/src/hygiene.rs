//! What `nimbus serve` must not hand its instances (issue #13): descriptors it inherited.
//!
//! Everything the server opens itself is close-on-exec (Rust's standard library and tokio
//! open that way), but descriptors its parent left open without the flag (a shell's `exec
//! 7<file`, a service manager's) would pass on to every host-process instance. They are
//! marked close-on-exec once, at start-up, before any instance exists. Standard input, output
//! and error stay as they are: instances get their own.

use std::os::fd::{AsRawFd as _, BorrowedFd};

use rustix::fs::{Mode, OFlags};

/// Mark every open descriptor above 2 close-on-exec.
pub fn close_inherited_descriptors_on_exec() -> std::io::Result<()> {
    let listing = rustix::fs::open(
        "/proc/self/fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let own = listing.as_raw_fd();
    let mut open = Vec::new();
    // The directory stream reads through `listing` itself (no second descriptor).
    let mut dir = rustix::fs::Dir::new(listing)?;
    while let Some(entry) = dir.read() {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Ok(fd) = name.parse::<i32>()
            && fd > 2
            && fd != own
        {
            open.push(fd);
        }
    }
    for fd in open {
        // SAFETY: `fd` was listed as open a moment ago, and nothing in this process closes
        // descriptors it did not open itself during start-up (the runtime's threads are idle,
        // the server opened no descriptor yet but `listing`, excluded above and open until the end); the borrow ends
        // with the two calls.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let flags = rustix::io::fcntl_getfd(fd)?;
        rustix::io::fcntl_setfd(fd, flags | rustix::io::FdFlags::CLOEXEC)?;
    }
    drop(dir);
    Ok(())
}

/// Whether `user` (uid, gid; no supplementary groups) could execute `path`: every directory on
/// the way searchable and the file executable for it, by the permission bits the kernel checks
/// (owner, else group, else other; root needs one execute bit on the file).
pub fn executable_by(path: &std::path::Path, (uid, gid): (u32, u32)) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let allows = |meta: &std::fs::Metadata| {
        let mode = meta.mode();
        match () {
            () if uid == 0 => mode & 0o111 != 0,
            () if meta.uid() == uid => mode & 0o100 != 0,
            () if meta.gid() == gid => mode & 0o010 != 0,
            () => mode & 0o001 != 0,
        }
    };
    let path = path.canonicalize()?;
    for dir in path.ancestors().skip(1) {
        if !allows(&std::fs::metadata(dir)?) {
            return Ok(false);
        }
    }
    Ok(allows(&std::fs::metadata(&path)?))
}

#[cfg(test)]
mod executable_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::executable_by;

    #[test]
    fn a_program_behind_a_private_directory_is_not_executable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("program");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        assert!(executable_by(&program, me).unwrap());
        let nobody = (65534, 65534);
        assert!(!executable_by(&program, nobody).unwrap());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(
            executable_by(&program, nobody).unwrap(),
            executable_by(dir.path().parent().unwrap(), nobody).unwrap(),
            "then only the directories above decide"
        );
        assert!(executable_by(std::path::Path::new("/bin/sh"), nobody).unwrap());
    }
}
