//! Socket activation (systemd's `LISTEN_FDS` protocol) for revisions that opt in: Nimbus binds
//! the instance's listening socket itself and the child finds it on fd 3, told so by
//! `LISTEN_FDS=1` and `LISTEN_PID=<its own pid>`. Connections made while the program starts wait
//! in the kernel's accept queue, so the endpoint can be published the moment the process exists.
//!
//! `LISTEN_PID` must name the child, whose pid exists only after `fork`, and a child forked from
//! a multi-threaded parent may only make async-signal-safe calls before `exec` (no allocation, no
//! environment APIs). So everything that allocates — argv, the whole environment with a blank
//! `LISTEN_PID=` entry, argv\[0\] looked up on `PATH` — is prepared in the parent; a `pre_exec`
//! hook in the child then only moves the socket to fd 3, writes `getpid()` into the blank and
//! calls `execve` itself. The simpler hop through `sh -c 'LISTEN_PID=$$; exec "$0" "$@"'` costs
//! a second `exec`, about as much as the spawn itself (`examples/cold_start.rs` measures both).
//!
//! Whether the program really took the socket is learnt from the socket: the kernel reports how
//! many connections wait in its accept queue (`TCP_INFO`), so a probe connection leaving the
//! queue proves an `accept`. This module never decides what to do with that; the supervisor does.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::ports::{PortAllocator, PortLease};

/// The descriptor the child finds its socket on (`SD_LISTEN_FDS_START`).
const LISTEN_FD: RawFd = 3;
/// Connections the kernel accepts on the program's behalf before it calls `accept`.
pub(crate) const BACKLOG: i32 = 1024;
const LISTEN_PID: &[u8] = b"LISTEN_PID=";
/// Room after `LISTEN_PID=` for the longest pid (10 digits) and the NUL.
const PID_ROOM: usize = 11;
/// `PATH` when the environment has none (glibc's `execvp` default).
const DEFAULT_PATH: &str = "/bin:/usr/bin";
/// The readiness probe's connection normally completes at once; a full backlog drops it.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

// === impl ActivationSocket ===

/// A listening loopback socket (blocking, close-on-exec in Nimbus) and its leased port.
pub(crate) struct ActivationSocket {
    /// Shared with the readiness check, which may outlive a cancelled wait by one check.
    socket: Arc<Socket>,
    lease: PortLease,
}

impl ActivationSocket {
    /// Bind `127.0.0.1:0` with `SO_REUSEADDR` and listen with a [`BACKLOG`]-deep queue.
    pub fn bind(ports: &Arc<PortAllocator>) -> io::Result<Self> {
        let (socket, lease) = ports.lease_with(|| {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
            let port = socket.local_addr()?.as_socket().map_or(0, |a| a.port());
            Ok((socket, port))
        })?;
        // Listen only once the port is ours: a leased port belongs to a child about to bind it.
        socket.listen(BACKLOG)?;
        Ok(Self {
            socket: Arc::new(socket),
            lease,
        })
    }

    pub fn port(&self) -> u16 {
        self.lease.port()
    }

    /// The listening socket, to be passed to the program.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&*self.socket)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }

    /// A readiness check (for `readiness::wait_ready`) that passes once the program has
    /// accepted a connection. It makes one probe connection (closed at once, like a TCP probe)
    /// and then watches the accept queue: a shrinking queue, or an empty one on two checks in a
    /// row (the probe is queued within microseconds of `connect` returning), means `accept`.
    pub fn accepted_check(&self) -> impl FnMut() -> bool + Send + 'static {
        let (socket, addr) = (Arc::clone(&self.socket), self.addr());
        let (mut probed, mut last) = (false, None);
        move || {
            probed = probed || TcpStream::connect_timeout(&addr, PROBE_CONNECT_TIMEOUT).is_ok();
            let Some(queued) = probed.then(|| accept_queue_len(&socket).ok()).flatten() else {
                return false;
            };
            let accepted = last.is_some_and(|last| queued < last || queued == 0);
            last = Some(queued);
            accepted
        }
    }
}

/// Connections waiting in a listening socket's accept queue (Linux reports it as
/// `tcpi_unacked` of `TCP_INFO` for listeners).
fn accept_queue_len(socket: &Socket) -> io::Result<u32> {
    Ok(tcp_info(socket)?.tcpi_unacked)
}

fn tcp_info(socket: &Socket) -> io::Result<libc::tcp_info> {
    // SAFETY: `tcp_info` is a plain struct of integers, for which all-zero bytes are a value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(size_of::<libc::tcp_info>()).expect("small struct");
    // SAFETY: `info` is valid for writes of `len` bytes and the kernel writes at most `len`;
    // the descriptor is open for as long as `socket` is borrowed.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// Make `env` (a whole environment) hand the socket on fd 3 to the process `pid`: any
/// `LISTEN_FDS`/`LISTEN_PID` in it are replaced by ours.
pub(crate) fn activate_env(env: &mut Vec<(OsString, OsString)>, pid: u32) {
    env.retain(|(name, _)| !matches!(name.as_bytes(), b"LISTEN_FDS" | b"LISTEN_PID"));
    env.push(("LISTEN_FDS".into(), "1".into()));
    env.push(("LISTEN_PID".into(), pid.to_string().into()));
}

// === impl ActivatedExec ===

/// An `execve` prepared in the parent, run by the child's `pre_exec` hook.
pub(crate) struct ActivatedExec {
    program: CString,
    argv: Vec<CString>,
    /// `NAME=value\0` entries; `env[listen_pid]` is `LISTEN_PID=` and [`PID_ROOM`] blank bytes.
    env: Vec<Vec<u8>>,
    listen_pid: usize,
    socket: RawFd,
    pointers: PointerTable,
}

impl ActivatedExec {
    /// Prepare running `argv` with `env` (its `LISTEN_*` entries replaced by ours) and the
    /// socket on fd 3. argv\[0\] is looked up on the environment's `PATH` here, as `execvp`
    /// would; a relative directory or program is relative to `cwd` (the child's).
    pub fn new(
        argv: &[OsString],
        env: impl IntoIterator<Item = (OsString, OsString)>,
        cwd: Option<&Path>,
        socket: &ActivationSocket,
    ) -> io::Result<Self> {
        let mut env: Vec<(OsString, OsString)> = env
            .into_iter()
            .filter(|(name, _)| !matches!(name.as_bytes(), b"LISTEN_FDS" | b"LISTEN_PID"))
            .collect();
        let path = env
            .iter()
            .find(|(n, _)| n == "PATH")
            .map(|(_, v)| v.as_os_str());
        let program = resolve(&argv[0], path, cwd)?;
        env.push(("LISTEN_FDS".into(), "1".into()));
        let mut entries = env.into_iter().map(entry).collect::<io::Result<Vec<_>>>()?;
        let listen_pid = entries.len();
        entries.push([LISTEN_PID, &[0; PID_ROOM]].concat());
        let argv = argv
            .iter()
            .map(|a| c_string(a.clone().into_vec()))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            program: c_string(program.into_os_string().into_vec())?,
            pointers: PointerTable::new(argv.len(), entries.len()),
            argv,
            env: entries,
            listen_pid,
            socket: socket.socket.as_raw_fd(),
        })
    }

    /// Make `cmd`'s child run this `execve` instead of its own. The socket must stay open until
    /// `cmd` has been spawned.
    pub fn install(mut self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook runs in the forked child, where only the forking thread exists, so it
        // must be async-signal-safe; `exec_in_child` is: it calls only `dup2`/`fcntl`, `getpid`
        // and `execve` (all on POSIX's async-signal-safe list), writes bytes into buffers
        // allocated before `fork` (the child's own copy-on-write memory) and indexes into
        // pre-sized vectors, so it never allocates or takes a lock; its error is an `Os` variant
        // built from errno without allocating. The socket descriptor it duplicates is open in the
        // child because `fork` copies the parent's descriptors and the caller keeps the socket
        // open until `spawn` returns.
        unsafe {
            cmd.pre_exec(move || Err(self.exec_in_child()));
        }
    }

    /// In the child: socket to fd 3, pid into `LISTEN_PID`, `execve`. Returns only on failure.
    fn exec_in_child(&mut self) -> io::Error {
        // `dup2` clears close-on-exec on the copy; a socket that already is fd 3 keeps the flag
        // unless cleared. Whatever else was on fd 3 (at most a close-on-exec leftover, stdio is
        // on 0–2 by now) is replaced, as the protocol requires.
        // SAFETY: plain descriptor calls on descriptors this process owns.
        let moved = unsafe {
            if self.socket == LISTEN_FD {
                libc::fcntl(LISTEN_FD, libc::F_SETFD, 0)
            } else {
                libc::dup2(self.socket, LISTEN_FD)
            }
        };
        if moved == -1 {
            return io::Error::last_os_error();
        }
        // SAFETY: `getpid` has no preconditions and cannot fail.
        let pid = unsafe { libc::getpid() }.unsigned_abs();
        write_decimal(&mut self.env[self.listen_pid][LISTEN_PID.len()..], pid);
        let (argv, envp) = self.pointers.fill(&self.argv, &self.env);
        // SAFETY: `program` is NUL-terminated; `argv` and `envp` are null-terminated arrays of
        // pointers to NUL-terminated strings owned by `self`, which outlives the call.
        unsafe { libc::execve(self.program.as_ptr(), argv, envp) };
        io::Error::last_os_error()
    }
}

/// The `argv` and `envp` pointer arrays, null in the parent and filled in the child, after the
/// child wrote its pid (pointers taken earlier would predate that write).
struct PointerTable(Vec<*const libc::c_char>);

// SAFETY: in the parent the table holds only null pointers and is never read; it is filled and
// handed to `execve` in the forked child, which runs a single thread.
unsafe impl Send for PointerTable {}
// SAFETY: as above; the parent never reads or writes through it.
unsafe impl Sync for PointerTable {}

impl PointerTable {
    fn new(args: usize, vars: usize) -> Self {
        Self(vec![std::ptr::null(); args + 1 + vars + 1])
    }

    /// Point at `argv` and `env`, keeping one null terminator after each. Does not allocate.
    fn fill(
        &mut self,
        argv: &[CString],
        env: &[Vec<u8>],
    ) -> (*const *const libc::c_char, *const *const libc::c_char) {
        let (args, vars) = self.0.split_at_mut(argv.len() + 1);
        for (slot, arg) in args.iter_mut().zip(argv) {
            *slot = arg.as_ptr();
        }
        for (slot, var) in vars.iter_mut().zip(env) {
            *slot = var.as_ptr().cast();
        }
        (args.as_ptr(), vars.as_ptr())
    }
}

/// Write `n` in decimal and a NUL to the start of `out` (11 bytes suffice). Does not allocate.
fn write_decimal(out: &mut [u8], mut n: u32) {
    let (mut digits, mut len) = ([0u8; 10], 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        (n, len) = (n / 10, len + 1);
        if n == 0 {
            break;
        }
    }
    let terminated = digits[..len].iter().rev().chain(&[0]);
    for (slot, byte) in out.iter_mut().zip(terminated) {
        *slot = *byte;
    }
}

/// `NAME=value\0`.
fn entry((name, value): (OsString, OsString)) -> io::Result<Vec<u8>> {
    let mut bytes = name.into_vec();
    bytes.push(b'=');
    bytes.extend(value.as_bytes());
    Ok(c_string(bytes)?.into_bytes_with_nul())
}

fn c_string(bytes: Vec<u8>) -> io::Result<CString> {
    CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Where `execvp` would find `program`: itself if it contains a `/`, otherwise the first
/// executable file of that name in `path`.
fn resolve(program: &OsStr, path: Option<&OsStr>, cwd: Option<&Path>) -> io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(program.into());
    }
    let dirs = std::env::split_paths(path.unwrap_or(OsStr::new(DEFAULT_PATH)));
    dirs.map(|dir| match cwd {
        Some(cwd) if dir.is_relative() => cwd.join(dir).join(program),
        _ => dir.join(program),
    })
    .find(|candidate| is_executable(candidate))
    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not found on PATH"))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(n: u32) -> Vec<u8> {
        let mut out = [0xffu8; PID_ROOM];
        write_decimal(&mut out, n);
        out[..out.iter().position(|&b| b == 0).unwrap()].to_vec()
    }

    #[test]
    fn pids_are_written_in_decimal() {
        assert_eq!(decimal(0), b"0");
        assert_eq!(decimal(7), b"7");
        assert_eq!(decimal(4_194_304), b"4194304");
        assert_eq!(decimal(u32::MAX), b"4294967295");
    }

    #[test]
    fn programs_are_looked_up_like_execvp() {
        let sh = resolve(
            OsStr::new("sh"),
            Some(OsStr::new("/nonexistent:/bin")),
            None,
        );
        assert_eq!(sh.unwrap(), Path::new("/bin/sh"));
        let as_given = resolve(OsStr::new("./x"), None, None).unwrap();
        assert_eq!(as_given, Path::new("./x"));
        let missing = resolve(OsStr::new("no-such-program-here"), None, None);
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_socket_listens_with_a_deep_backlog_and_counts_its_queue() {
        let ports = Arc::new(PortAllocator::default());
        let socket = ActivationSocket::bind(&ports).unwrap();
        let info = tcp_info(&socket.socket).unwrap();
        assert_eq!(
            info.tcpi_sacked, BACKLOG as u32,
            "listeners report their backlog here"
        );
        assert_eq!(accept_queue_len(&socket.socket).unwrap(), 0);
        let _queued = TcpStream::connect(socket.addr()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while accept_queue_len(&socket.socket).unwrap() != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the connection was never queued"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
