//! How an instance's process is started: the one thing that differs between the host-process
//! runtime and the container runtime. Everything else — ports, cgroup limits, probes, restarts
//! with back-off, draining, logs — is the supervisor's, shared by both.

use std::ffi::OsString;
use std::path::PathBuf;

use async_trait::async_trait;
use nimbus_runtime::InstanceSpec;
use nimbus_runtime::volumes::Bind;

/// One instance as the launcher sees it.
#[derive(Clone, Debug)]
pub struct LaunchContext {
    /// `<revision>-<ordinal>`: unique among live instances; usable as a container id.
    pub id: String,
    /// The loopback port the instance must listen on (`$PORT`; host networking).
    pub port: u16,
    /// The contract environment (`PORT`, `K_SERVICE`, `K_CONFIGURATION`, `K_REVISION`) followed
    /// by the spec's env, in order (later wins). Launchers add their own base underneath: the
    /// server's environment for host processes, the image's for containers.
    pub env: Vec<(String, String)>,
    /// The instance's cgroup, relative to each hierarchy's root (e.g. `nimbus/default/hello-1`),
    /// created with its limits before launch; `None` when cgroups are unavailable.
    pub cgroup: Option<String>,
    /// A directory the launcher may use for this instance (removed after cleanup).
    pub scratch: PathBuf,
    /// The instance's Secret and ConfigMap volumes, written out for this start (in
    /// `scratch`): each to be mounted read-only at its path inside the instance.
    pub mounts: Vec<Bind>,
}

/// Why a revision cannot be launched; becomes the revision's `Ready=False` reason and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LaunchError {
    /// CamelCase, e.g. `ImagePullFailed`, `CommandNotFound`.
    pub reason: String,
    pub message: String,
}

impl LaunchError {
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// An instance's program as one `execve`: all a host launcher's command amounts to. Such a
/// program can be started by a stub process waiting in the instance's cgroup (see
/// [`Launcher::exec_spec`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// `argv`; `argv[0]` is the program, looked up on the environment's `PATH` (relative to
    /// `cwd`) as `execvp` does unless it contains a `/`.
    pub argv: Vec<OsString>,
    /// The whole environment, in order (a later entry of the same name wins); nothing else is
    /// inherited.
    pub env: Vec<(OsString, OsString)>,
    /// The working directory; `None` keeps the server's.
    pub cwd: Option<PathBuf>,
    /// Who the program runs as; `None`: the server's own user (a server that is not root).
    pub user: Option<Credentials>,
    /// Volumes bound read-only in a mount namespace of the program's own (root servers
    /// only); a program with mounts is never started by a waiting stub.
    pub mounts: Vec<Bind>,
}

/// The user and groups an instance's program runs as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (`supplementalGroups`); none besides `gid` otherwise.
    pub groups: Vec<u32>,
}

impl ExecSpec {
    /// The same program as a [`std::process::Command`].
    pub fn command(&self) -> std::process::Command {
        let program = self.argv.first().cloned().unwrap_or_default();
        let mut cmd = std::process::Command::new(program);
        cmd.args(self.argv.iter().skip(1))
            .env_clear()
            .envs(self.env.iter().map(|(name, value)| (name, value)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        restrict_before_exec(&mut cmd, self);
        cmd
    }
}

/// Make `cmd`'s child give up privileges just before it executes, after any hook installed
/// earlier (joining a cgroup needs them): first bind `exec`'s volumes in a mount namespace of
/// its own (see `mount_ns`), then the usual umask (022), no-new-privileges always (a setuid binary or file capability
/// gains nothing), and with a user, the capability bounding set emptied (unless the user is
/// root) and the groups, gid and uid switched, in that order. A uid other than 0 then holds no
/// capabilities at all: the kernel clears them on the switch.
pub(crate) fn restrict_before_exec(cmd: &mut std::process::Command, exec: &ExecSpec) {
    use std::os::unix::process::CommandExt;
    let user = exec.user.clone();
    // A path with a NUL byte (validation refuses them) fails the start.
    let mounts = crate::mount_ns::PreparedMounts::new(&exec.mounts).map_err(|e| e.kind());
    // std changes directory before the hooks run: inside a volume, that is the host's
    // directory under the mount, so change again once the volumes are mounted.
    let cwd = match (&exec.cwd, exec.mounts.is_empty()) {
        (Some(dir), false) => {
            std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str())).ok()
        }
        _ => None,
    };
    // SAFETY: the hook runs in the forked child, where only the forking thread exists, so it
    // must be async-signal-safe: it makes only `unshare`, `mount`, `chdir`, `umask`, `prctl`, `setgroups`,
    // `setgid` and `setuid` system calls on values moved in before the fork (the group list
    // and mount paths were allocated in the parent) and allocates nothing; an error is built
    // from errno (or an error kind) without allocating.
    unsafe {
        cmd.pre_exec(move || {
            match &mounts {
                Ok(Some(mounts)) => mounts.enter()?,
                Ok(None) => {}
                Err(kind) => return Err((*kind).into()),
            }
            if let Some(dir) = &cwd
                && libc::chdir(dir.as_ptr()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The usual umask, not the server's 077 (as containers get from runc).
            libc::umask(0o022);
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let Some(user) = &user else {
                return Ok(());
            };
            if user.uid != 0 {
                // Fails with EINVAL past the last capability this kernel knows, and with EPERM
                // in a server without CAP_SETPCAP, which cannot switch users either.
                for cap in 0..64 {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
                }
            }
            if libc::setgroups(user.groups.len(), user.groups.as_ptr()) != 0
                || libc::setgid(user.gid) != 0
                || libc::setuid(user.uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts instances of a revision.
#[async_trait]
pub trait Launcher: Send + Sync + 'static {
    /// Refuse a spec this launcher can never run (checked on every `set_desired`; cheap, no I/O).
    fn validate(&self, _spec: &InstanceSpec) -> Result<(), String> {
        Ok(())
    }

    /// Make the revision runnable (pull and unpack its image, …). Called before every start
    /// attempt, so it must be cheap once done; failures are reported on the revision and retried
    /// with back-off.
    async fn prepare(&self, spec: &InstanceSpec) -> Result<(), LaunchError>;

    /// The command that runs one instance in the foreground: it must exit when the instance
    /// does, forward SIGTERM to it, and write the instance's stdout/stderr to its own (the
    /// supervisor pipes them into the logs). stdin is set to null by the caller.
    fn command(
        &self,
        spec: &InstanceSpec,
        instance: &LaunchContext,
    ) -> Result<std::process::Command, LaunchError>;

    /// A command that runs `argv` inside the running instance (exec probes).
    fn exec(
        &self,
        spec: &InstanceSpec,
        instance: &LaunchContext,
        argv: &[String],
    ) -> std::process::Command;

    /// Called after the instance's command exited (or was killed), before its slot is reused:
    /// remove what `command` left behind (container state, bundle). Must not fail.
    async fn cleanup(&self, instance: &LaunchContext);

    /// Whether instances may be given a pre-bound socket (`nimbus.dev/socket-activation`); only
    /// host processes can.
    fn socket_activation(&self) -> bool {
        false
    }

    /// Whether the command places itself into [`LaunchContext::cgroup`] (runc does, through
    /// `cgroupsPath`). Otherwise the supervisor moves the child there before it executes.
    fn joins_cgroup_itself(&self) -> bool {
        false
    }

    /// The instance as one plain `execve`, when [`Launcher::command`] is nothing more (same
    /// program, arguments, environment and working directory). The supervisor may then start
    /// it from a stub process that has waited in the instance's cgroup since the cgroup was made,
    /// keeping the cgroup attach off the cold start. `None` (the default): always spawn
    /// `command`. Only asked of launchers that do not join the cgroup themselves.
    fn exec_spec(&self, _spec: &InstanceSpec, _instance: &LaunchContext) -> Option<ExecSpec> {
        None
    }

    /// Where a started instance serves when it is not loopback at [`LaunchContext::port`]: a
    /// container with a network namespace of its own is reached at its own address. Asked
    /// after [`Launcher::command`] succeeded, for the endpoint and the probes. `None` (the
    /// default): `127.0.0.1:port`.
    fn address(&self, _instance: &LaunchContext) -> Option<std::net::SocketAddr> {
        None
    }
}
