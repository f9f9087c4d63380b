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
