//! Instance stubs: processes started ahead of time inside a spare cgroup, each waiting to become
//! one instance with a single `execve`.
//!
//! Moving a task into a cgroup (writing to `cgroup.procs`) takes the kernel's
//! `cgroup_threadgroup_rwsem` for writing, and the first such write after an idle spell waits
//! for an RCU grace period: ~14 ms on the 2-core reference host, five times the rest of a cold
//! start. Cold starts follow idle spells by nature. So the attach is paid when the spare cgroup
//! is made, in the background ([`crate::cgroup_pool`]): a stub is spawned joined to it (between
//! fork and exec, as instances used to be) and blocks reading its control socket. A cold start
//! then only sends the stub its [`ExecSpec`] (argv, the whole environment, working directory,
//! and for socket activation the listening socket as `SCM_RIGHTS`); the stub `execve`s it. The
//! instance's pid is the stub's pid: its process group (made at spawn), its stdout/stderr (the
//! pipes made at spawn) and its cgroup are the stub's, so limits hold from the program's first
//! instruction and nothing forks on the request path.
//!
//! The handover mirrors `std::process::Command::spawn`: the stub's copy of the control socket is
//! close-on-exec, so EOF means the `execve` succeeded; otherwise the stub reports the OS error
//! (an `ENOENT` becomes `CommandNotFound`, as before) and exits. A stub found dead before the
//! handover is reported as [`Handover::Gone`], and the supervisor starts the instance the
//! ordinary way in the same cgroup. A stub that dies after reading its launch message but before
//! its `execve` looks like an instance that died at once.
//!
//! The stub program ([`program::run`], exported as `run_instance_stub`) is a fresh process, not
//! a fork of the server: a forked server would keep copy-on-write pages of the server's heap and
//! its descriptors for as long as it waits. Which executable runs it is [`StubCommand`]: the
//! `nimbus` binary re-executes itself with a hidden first argument; tests, examples and other
//! embedders use the small `nimbus-instance-stub` binary of this crate.
//!
//! This module never decides when a stub is made or taken; the cgroup pool and the supervisor do.

mod program;
mod wire;

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nimbus_cgroup::Joiner;
use socket2::{MsgHdr, SockRef};
use tokio::io::AsyncReadExt;
use tokio::process::Child;

use crate::launcher::ExecSpec;

pub use program::run;

/// How long a freshly spawned stub may take to say it is ready.
const BANNER_TIMEOUT: Duration = Duration::from_secs(10);
/// The name of the stub binary this crate builds.
const STUB_BINARY: &str = "nimbus-instance-stub";

// === impl StubCommand ===

/// How the runtime starts an instance stub: a program (and leading arguments) whose `main` calls
/// [`run_instance_stub`](crate::run_instance_stub). The stub gets one more argument, the
/// revision it waits for, so `ps` tells stubs apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StubCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// The first argument that makes a program that embeds the runtime run as a stub; see
/// [`StubCommand::this_executable`] and [`requested`].
pub const STUB_ARG: &str = "__nimbus-instance-stub";

/// Whether this process was started as an instance stub by [`StubCommand::this_executable`]
/// (its first argument is [`STUB_ARG`]): then `main` must call
/// [`run_instance_stub`](crate::run_instance_stub) at once.
pub fn requested() -> bool {
    std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == STUB_ARG)
}

impl StubCommand {
    /// The running executable again, with [`STUB_ARG`] first: for a binary whose `main` runs
    /// [`run_instance_stub`](crate::run_instance_stub) when
    /// [`stub_requested`](crate::stub_requested) (the `nimbus` binary does). Named
    /// `/proc/self/exe`, so a binary replaced on disk still starts its own stubs.
    pub fn this_executable() -> Self {
        Self {
            program: PathBuf::from("/proc/self/exe"),
            args: vec![STUB_ARG.into()],
        }
    }

    /// This crate's `nimbus-instance-stub` binary beside the running executable, or one
    /// directory up (cargo puts test binaries in `deps/` and examples in `examples/`); `None`
    /// if it was not built.
    pub fn beside_executable() -> Option<Self> {
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        let candidates = [dir.join(STUB_BINARY), dir.parent()?.join(STUB_BINARY)];
        let program = candidates.into_iter().find(|path| path.is_file())?;
        Some(Self {
            program,
            args: Vec::new(),
        })
    }
}

// === impl Stub ===

/// A stub process waiting in its cgroup. Dropping it kills it.
#[derive(Debug)]
pub(crate) struct Stub {
    /// Always `Some` until the handover succeeds; stdout/stderr are still inside.
    child: Option<Child>,
    control: UnixStream,
}

/// Why a stub did not become the instance.
#[derive(Debug)]
pub(crate) enum Handover {
    /// The stub was not there to take the launch (it had died): start the instance another way.
    Gone(io::Error),
    /// The program could not be executed: as `spawn` would have failed.
    Failed(io::Error),
}

impl Stub {
    /// Spawn a stub (joining a cgroup between fork and exec when given `joiner`) and wait until
    /// it says it is ready. Blocks (the join may wait for an RCU grace period): call it from a
    /// blocking thread inside a tokio runtime. `label` names what it waits for, in `ps`.
    pub fn spawn(command: &StubCommand, joiner: Option<Joiner>, label: &str) -> io::Result<Self> {
        let (control, theirs) = UnixStream::pair()?;
        let mut child = {
            let mut cmd = std::process::Command::new(&command.program);
            cmd.args(&command.args)
                .arg(label)
                .stdin(Stdio::from(OwnedFd::from(theirs)))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
            if let Some(joiner) = joiner {
                crate::process::join_before_exec(&mut cmd, joiner);
            }
            // The command (and with it our copy of the stub's end) is dropped right here, so
            // the control socket's EOF later means the stub's `execve`.
            tokio::process::Command::from(cmd)
                .kill_on_drop(false)
                .spawn()?
        };
        let mut banner = [0; wire::BANNER.len()];
        control.set_read_timeout(Some(BANNER_TIMEOUT))?;
        let greeted = (&control).read_exact(&mut banner);
        if let Err(error) = greeted.and_then(|()| check_banner(&banner)) {
            let _ = child.start_kill();
            return Err(error);
        }
        control.set_read_timeout(None)?;
        Ok(Self {
            child: Some(child),
            control,
        })
    }

    /// The stub's pid: the instance's, once it execs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Have the stub `execve` `exec`, with `socket` (if any) on fd 3; waits at most `limit` for
    /// the `execve`. Returns the instance's process (stdout/stderr still unread inside).
    pub async fn exec(
        mut self,
        exec: &ExecSpec,
        socket: Option<BorrowedFd<'_>>,
        limit: Duration,
    ) -> Result<Child, Handover> {
        let (header, payload) = wire::encode(exec, socket.is_some()).map_err(Handover::Failed)?;
        let child = self
            .child
            .as_mut()
            .expect("a stub has its child until handed over");
        if let Ok(Some(status)) = child.try_wait() {
            let why = format!("the instance stub had exited ({status})");
            return Err(Handover::Gone(io::Error::other(why)));
        }
        // The stub reads at once; a stalled one must not hold this thread past `limit`.
        self.control
            .set_write_timeout(Some(limit))
            .map_err(Handover::Gone)?;
        self.send(&header, &payload, socket)
            .map_err(Handover::Gone)?;
        let report = tokio::time::timeout(limit, self.report()).await;
        match report {
            Ok(Ok(report)) if report.is_empty() => Ok(self.child.take().expect("still here")),
            Ok(Ok(report)) => Err(Handover::Failed(wire::decode_failure(&report))),
            Ok(Err(error)) => Err(Handover::Failed(error)),
            Err(_) => Err(Handover::Failed(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the program was not executed within {limit:?}"),
            ))),
        }
    }

    /// The launch message: header (with the socket as `SCM_RIGHTS`), then the payload.
    fn send(
        &self,
        header: &[u8],
        payload: &[u8],
        socket: Option<BorrowedFd<'_>>,
    ) -> io::Result<()> {
        let control = SockRef::from(&self.control);
        let rights = socket.map(|fd| wire::rights(fd.as_raw_fd()));
        let bufs = [io::IoSlice::new(header)];
        let mut msg = MsgHdr::new().with_buffers(&bufs);
        if let Some(rights) = &rights {
            msg = msg.with_control(rights);
        }
        let sent = control.sendmsg(&msg, libc::MSG_NOSIGNAL)?;
        send_all(&control, &header[sent..])?;
        send_all(&control, payload)
    }

    /// Everything the stub writes back before the socket closes: nothing after a successful
    /// `execve`, a failure report otherwise.
    async fn report(&self) -> io::Result<Vec<u8>> {
        let control = self.control.try_clone()?;
        control.set_nonblocking(true)?;
        let mut control = tokio::net::UnixStream::from_std(control)?;
        let mut report = Vec::new();
        control.read_to_end(&mut report).await?;
        Ok(report)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        // Closing the control socket would end it too; SIGKILL does not wait for it to notice.
        // Tokio reaps it in the background.
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

/// Write all of `bytes` (no SIGPIPE: a gone peer is an error).
fn send_all(socket: &socket2::Socket, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.send_with_flags(bytes, libc::MSG_NOSIGNAL) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn check_banner(banner: &[u8]) -> io::Result<()> {
    if banner == wire::BANNER {
        return Ok(());
    }
    let got = String::from_utf8_lossy(banner);
    Err(io::Error::other(format!(
        "the instance stub program answered {got:?}, not {:?}",
        String::from_utf8_lossy(wire::BANNER)
    )))
}
