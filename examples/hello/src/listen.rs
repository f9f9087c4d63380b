//! Where the server listens: a socket handed over by the parent (systemd socket activation,
//! `LISTEN_FDS=1` + `LISTEN_PID=<our pid>`, socket on fd 3) or `0.0.0.0:$PORT`.
//!
//! Socket activation lets a runtime bind the port before the program starts, so connections made
//! while the program boots wait in the kernel's backlog instead of being refused.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;

/// The first file descriptor passed by socket activation (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// Set once fd 3 has been adopted, so it can never be owned twice.
static ADOPTED: AtomicBool = AtomicBool::new(false);

/// A listening socket and how it was obtained.
pub(crate) struct Listening {
    pub listener: TcpListener,
    /// Whether the socket was handed over on fd 3 rather than bound here.
    pub activated: bool,
}

/// Adopt fd 3 if the environment says it is ours, otherwise bind `0.0.0.0:port`.
pub(crate) fn listener(port: u16) -> io::Result<Listening> {
    let fds = std::env::var("LISTEN_FDS").ok();
    let pid = std::env::var("LISTEN_PID").ok();
    if activation_requested(fds.as_deref(), pid.as_deref(), std::process::id()) {
        return Ok(Listening {
            listener: adopt_fd3()?,
            activated: true,
        });
    }
    let std = std::net::TcpListener::bind(("0.0.0.0", port))?;
    std.set_nonblocking(true)?;
    Ok(Listening {
        listener: TcpListener::from_std(std)?,
        activated: false,
    })
}

/// Whether the socket-activation variables hand exactly one socket to the process `my_pid`.
fn activation_requested(listen_fds: Option<&str>, listen_pid: Option<&str>, my_pid: u32) -> bool {
    let pid_matches = listen_pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(my_pid);
    pid_matches && listen_fds.map(str::trim) == Some("1")
}

/// Take ownership of fd 3 as a TCP listener.
fn adopt_fd3() -> io::Result<TcpListener> {
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other(
            "the socket-activation fd 3 was already adopted",
        ));
    }
    // SAFETY: `OwnedFd::from_raw_fd` requires that fd 3 is open and owned by nobody else.
    // The socket-activation protocol (`LISTEN_PID` equal to our pid, `LISTEN_FDS=1`, checked by
    // the caller) guarantees the parent left fd 3 open for this process and that nothing in the
    // process claimed it: std and tokio only use descriptors they opened themselves. The `ADOPTED`
    // flag above makes this the only place that ever wraps it, so it is owned exactly once.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    let std = std::net::TcpListener::from(fd);
    std.local_addr()?; // fails unless fd 3 really is an IP socket
    std.set_nonblocking(true)?;
    TcpListener::from_std(std)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_needs_matching_pid_and_one_fd() {
        assert!(activation_requested(Some("1"), Some("42"), 42));
        assert!(!activation_requested(Some("1"), Some("43"), 42));
        assert!(!activation_requested(Some("2"), Some("42"), 42));
        assert!(!activation_requested(None, Some("42"), 42));
        assert!(!activation_requested(Some("1"), None, 42));
        assert!(!activation_requested(Some("1"), Some("x"), 42));
    }
}
