//! [`Pinned`]: a container's user namespace, with the server's mapping, and a network namespace
//! it owns, held open by descriptor for runc to join by path. They are made by a holder: a
//! child process cloned straight into both namespaces (a thread cannot enter a new user
//! namespace, and `unshare` refuses one to a multithreaded process), which does nothing but
//! wait while the server writes its id maps and opens its namespaces, and is then killed and
//! reaped. The namespaces outlive it: a descriptor holds each, and the network namespace holds
//! its owner. A holder whose server dies first dies with it (`PR_SET_PDEATHSIG`).

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::libc;
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::{HostIdRange, UserNsError};

/// The holder's stack: it calls three system calls and never returns.
const HOLDER_STACK: usize = 64 * 1024;

/// A user namespace and the network namespace it owns.
#[derive(Debug)]
pub(crate) struct Pinned {
    user: File,
    net: File,
}

impl Pinned {
    /// New namespaces, the user namespace mapping container ids 0–65535 to `range`.
    pub fn new(range: HostIdRange) -> Result<Self, UserNsError> {
        let holder = Holder::spawn()?;
        let proc = PathBuf::from(format!("/proc/{}", holder.0));
        let text = range.map_text();
        for map in ["uid_map", "gid_map"] {
            let path = proc.join(map);
            std::fs::write(&path, &text).map_err(UserNsError::io("writing", &path))?;
        }
        let open = |name: &str| {
            let path = proc.join("ns").join(name);
            File::open(&path).map_err(UserNsError::io("opening", &path))
        };
        Ok(Self {
            user: open("user")?,
            net: open("net")?,
        })
    }

    /// The user namespace, as a path runc can open.
    pub fn user_path(&self) -> PathBuf {
        fd_path(&self.user)
    }

    /// The user namespace (for idmapped mounts).
    pub fn user(&self) -> &File {
        &self.user
    }

    /// The network namespace.
    pub fn net(&self) -> &File {
        &self.net
    }
}

/// `file` as a path any process may open: this process's descriptor of it.
pub(crate) fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        file.as_raw_fd()
    ))
}

/// The child that makes the namespaces; killed and reaped on drop.
struct Holder(Pid);

impl Holder {
    fn spawn() -> Result<Self, UserNsError> {
        let server = nix::unistd::getpid();
        let mut stack = vec![0u8; HOLDER_STACK];
        let flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET;
        // SAFETY: the child is a copy of this process with only the calling thread, so locks
        // other threads held (the allocator's among them) may never be released there: it must
        // stay async-signal-safe. It runs only `hold`, which makes the `prctl`, `getppid`,
        // `pause` and `_exit` system calls on a plain integer and allocates nothing; the boxed
        // closure and its stack were allocated here, before the clone, and stay valid in the
        // child's copy of the memory (no CLONE_VM). `hold` needs a few hundred bytes of the
        // 64 KiB stack. SIGCHLD as the exit signal makes the child reapable by `waitpid`.
        let pid = unsafe {
            nix::sched::clone(
                Box::new(move || hold(server)),
                &mut stack,
                flags,
                Some(libc::SIGCHLD),
            )
        }
        .map_err(|errno| UserNsError::Refused {
            source: errno.into(),
        })?;
        Ok(Self(pid))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGKILL);
        match waitpid(self.0, None) {
            Ok(_) | Err(Errno::ECHILD) => {}
            Err(e) => tracing::warn!(pid = %self.0, "cannot reap a namespace holder: {e}"),
        }
    }
}

/// The holder's whole life: die with the server, else wait to be killed.
fn hold(server: Pid) -> isize {
    // SAFETY: system calls on integers only (see `Holder::spawn`); `_exit` skips every
    // destructor and atexit handler, which belong to the server.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if libc::getppid() != server.as_raw() {
            libc::_exit(0); // the server died before the death signal was armed
        }
        loop {
            libc::pause();
        }
    }
}
