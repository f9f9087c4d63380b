//! The stub's side: what runs in the stub process, from its `main` to its `execve`. A fresh,
//! single-threaded process (not a fork of the server), so it may allocate and use std freely.
//!
//! Its stdin is the control socket. It says [`wire::BANNER`], then waits for one launch message;
//! EOF instead (the supervisor dropped it, or the server is gone) ends it quietly. With the
//! message come, it puts the listening socket (if any) on fd 3, keeps a close-on-exec copy of
//! the control socket for a failure report, and `execve`s the program with stdin at EOF and its
//! own stdout/stderr (the supervisor's pipes). If the `execve` fails, it reports the error and
//! exits with 127.

use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use socket2::{MaybeUninitSlice, MsgHdrMut, SockRef};

use super::{send_all, wire};

/// Where a socket-activated program finds its socket (`SD_LISTEN_FDS_START`).
const LISTEN_FD: RawFd = 3;
/// Exit code when the program could not be executed (as shells use).
const EXEC_FAILED: i32 = 127;

/// The instance stub's `main`: tell the supervisor it is ready, wait for one launch and
/// `execve` it (becoming the instance), or exit when the supervisor goes away. Never returns.
///
/// Only meaningful in a process the runtime started as a stub (see [`StubCommand`]): its stdin
/// must be the runtime's control socket. Call it first thing in `main`, before anything starts
/// threads or opens descriptors — e.g. when [`stub_requested`] says so.
///
/// [`StubCommand`]: crate::StubCommand
/// [`stub_requested`]: crate::stub_requested
pub fn run() -> ! {
    let stdin = io::stdin();
    let fd = stdin.as_fd();
    let control = SockRef::from(&fd);
    let code = match wait_and_exec(&control) {
        Ok(Ended::NoLaunch) => 0,
        Ok(Ended::ExecFailed) => EXEC_FAILED,
        Err(error) => {
            // Not the program's output: stderr only ever gets here if the protocol broke.
            eprintln!("nimbus-instance-stub: {error}");
            EXEC_FAILED
        }
    };
    std::process::exit(code)
}

/// How the stub ended without becoming the instance.
enum Ended {
    /// The control socket closed before a launch came.
    NoLaunch,
    /// The `execve` failed; the error was reported on the control socket.
    ExecFailed,
}

fn wait_and_exec(control: &socket2::Socket) -> io::Result<Ended> {
    send_all(control, wire::BANNER)?;
    let Some((header, socket)) = receive_header(control)? else {
        return Ok(Ended::NoLaunch);
    };
    let (len, flags) = wire::decode_header(&header)?;
    let mut payload = vec![0; len];
    (&*control).read_exact(&mut payload)?;
    let exec = wire::decode(&payload)?;
    let _fd3 = match (flags & wire::WITH_SOCKET != 0, socket) {
        (true, Some(socket)) => Some(onto_listen_fd(socket)?),
        (false, None) => None,
        _ => {
            return Err(io::Error::other(
                "the listening socket and the flag disagree",
            ));
        }
    };
    // Close-on-exec, and above fd 3 by now: it vanishes with a successful exec.
    let report = control.try_clone()?;
    let error = exec.command().stdin(Stdio::null()).exec();
    send_all(&report, &wire::encode_failure(&error))?;
    Ok(Ended::ExecFailed)
}

/// The launch header and the descriptor sent with it; `None` at EOF before any byte.
fn receive_header(
    control: &socket2::Socket,
) -> io::Result<Option<([u8; wire::HEADER_LEN], Option<OwnedFd>)>> {
    let mut data = [MaybeUninit::new(0u8); wire::HEADER_LEN];
    let mut space = [MaybeUninit::new(0u8); wire::RIGHTS_SPACE];
    let (n, control_len) = {
        let mut bufs = [MaybeUninitSlice::new(&mut data)];
        let mut msg = MsgHdrMut::new()
            .with_buffers(&mut bufs)
            .with_control(&mut space);
        let n = control.recvmsg(&mut msg, libc::MSG_CMSG_CLOEXEC)?;
        (n, msg.control_len())
    };
    let (data, space) = (initialized(&data), initialized(&space));
    let fds = wire::received_fds(&space[..control_len.min(space.len())]);
    // SAFETY: each descriptor was just installed in this process's table by `recvmsg` for this
    // message (close-on-exec, per `MSG_CMSG_CLOEXEC`) and nothing else refers to it.
    let mut fds = fds
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    let socket = fds.next(); // any further ones are closed here
    if n == 0 {
        return Ok(None);
    }
    let mut header = [0; wire::HEADER_LEN];
    header[..n].copy_from_slice(&data[..n]);
    (&*control).read_exact(&mut header[n..])?;
    Ok(Some((header, socket)))
}

/// The bytes of a buffer initialized before the kernel wrote into it.
fn initialized(buf: &[MaybeUninit<u8>]) -> Vec<u8> {
    // SAFETY: every element was initialized (`MaybeUninit::new(0)`) when the buffer was made, and
    // `recvmsg` only ever stores initialized bytes into it.
    buf.iter().map(|b| unsafe { b.assume_init() }).collect()
}

/// Make `socket` fd 3, open across exec (the socket-activation protocol); returns what owns
/// fd 3 now. Whatever was on fd 3 before is replaced, as the protocol requires.
fn onto_listen_fd(socket: OwnedFd) -> io::Result<OwnedFd> {
    if socket.as_raw_fd() == LISTEN_FD {
        // SAFETY: F_SETFD on a descriptor this process owns; clears only close-on-exec.
        let rc = unsafe { libc::fcntl(LISTEN_FD, libc::F_SETFD, 0) };
        return if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(socket)
        };
    }
    // SAFETY: `dup2` onto fd 3 replaces whatever was there. Nothing in this process owns fd 3:
    // the stub's only descriptors are stdio, the received socket (checked above not to be 3)
    // and, later, a copy of the control socket, made after this call.
    let rc = unsafe { libc::dup2(socket.as_raw_fd(), LISTEN_FD) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup2` succeeded, so fd 3 is a new descriptor of the socket, owned only by us.
    Ok(unsafe { OwnedFd::from_raw_fd(LISTEN_FD) })
}
