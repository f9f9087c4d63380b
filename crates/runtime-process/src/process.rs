//! One operating-system process of an instance: spawning the command a launcher built (in its
//! own process group, stdin at EOF, stdout/stderr piped into the logs, moved into its cgroup
//! before it executes) or adopting a stub that executed the program (spawned the same way, ahead
//! of time; see `stub`), waiting for it, and stopping it (SIGTERM to the group, SIGKILL after a
//! grace period). A [`RunningProcess`] that is dropped without being waited for kills its whole
//! group, so no path leaves orphans behind.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nimbus_cgroup::Joiner;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;

use crate::activation::ActivationSocket;
use crate::launcher::LaunchError;
use crate::output::{OutputSink, Pumps};
use crate::ports::PortLease;

/// How long to wait for the output readers after a process exited.
const DRAIN_LIMIT: Duration = Duration::from_millis(200);

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// argv\[0\] does not exist (on `PATH` or as given).
    #[error("command {command:?} not found: {source}")]
    CommandNotFound { command: String, source: io::Error },
    /// Any other error from `fork`/`exec` (permissions, bad environment, resource limits).
    #[error("command {command:?} could not be started: {source}")]
    Spawn { command: String, source: io::Error },
    /// No loopback port could be reserved.
    #[error("no free loopback port: {0}")]
    NoPort(#[source] io::Error),
    /// The launcher could not prepare or build the instance (image, bundle, user).
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

impl StartError {
    /// `command` could not be executed: `CommandNotFound` for a missing program, else `Spawn`.
    pub(crate) fn spawn(command: String, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::NotFound => Self::CommandNotFound { command, source },
            _ => Self::Spawn { command, source },
        }
    }

    /// The CamelCase reason reported in the revision's phase.
    pub fn reason(&self) -> String {
        match self {
            Self::CommandNotFound { .. } => "CommandNotFound".to_owned(),
            Self::Launch(e) => e.reason.clone(),
            _ => "StartFailed".to_owned(),
        }
    }
}

/// Where an instance listens: a leased port it binds itself (`$PORT`), or a socket Nimbus bound
/// and passes down (socket activation). Held for as long as the process runs.
pub(crate) enum Listen {
    Port(PortLease),
    Activated(ActivationSocket),
}

impl Listen {
    pub fn port(&self) -> u16 {
        match self {
            Self::Port(lease) => lease.port(),
            Self::Activated(socket) => socket.port(),
        }
    }
}

/// A started process and the readers of its output.
pub(crate) struct RunningProcess {
    child: Child,
    group: Pid,
    pumps: Pumps,
    /// Set once the leader has been reaped; the group id may then be reused and is not signalled.
    reaped: bool,
    /// The exit status, once waited for (and the output drained).
    exited: Option<ExitStatus>,
}

/// Start `cmd` (built by a launcher) with piped output, in its own process group.
pub(crate) fn spawn(
    mut cmd: std::process::Command,
    sink: &OutputSink,
) -> Result<RunningProcess, StartError> {
    let argv0 = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = tokio::process::Command::from(cmd)
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| StartError::spawn(argv0, source))?;
    Ok(RunningProcess::adopt(child, sink))
}

/// Make `cmd`'s child join a cgroup between `fork` and `exec`, before any other `pre_exec` hook
/// installed later (socket activation's runs `execve` itself).
pub(crate) fn join_before_exec(cmd: &mut std::process::Command, joiner: Joiner) {
    // SAFETY: the hook runs in the forked child, so it must be async-signal-safe: `Joiner::join`
    // only calls write(2) on descriptors opened before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || joiner.join());
    }
}

impl RunningProcess {
    /// A started process with piped stdout/stderr, in its own process group (its pid is the
    /// group's id): its output goes to `sink` from now on.
    pub(crate) fn adopt(mut child: Child, sink: &OutputSink) -> Self {
        let pid = child.id().expect("a just-spawned child has a pid");
        let (stdout, stderr) = (
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        let pumps = Pumps::start(stdout, stderr, sink);
        let group = Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"));
        Self {
            child,
            group,
            pumps,
            reaped: false,
            exited: None,
        }
    }
}

/// `PORT`, then the spec's env in order (which already holds the rest of the runtime contract,
/// `K_SERVICE`, `K_CONFIGURATION` and `K_REVISION`; later wins when applied).
pub(crate) fn contract_env(spec_env: &[(String, String)], port: u16) -> Vec<(String, String)> {
    let mut env = vec![("PORT".to_owned(), port.to_string())];
    env.extend(spec_env.iter().cloned());
    env
}

impl RunningProcess {
    /// The leader's pid (also the process group id).
    pub fn pid(&self) -> i32 {
        self.group.as_raw()
    }

    /// Wait for the leader to exit, then kill what is left of its group and let the output
    /// readers finish. Cancel-safe.
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let status = self.child.wait().await.unwrap_or_else(|error| {
            // Only possible if something else reaped our child; report it as killed.
            tracing::warn!(
                pid = self.pid(),
                "cannot wait for instance process: {error}"
            );
            std::os::unix::process::ExitStatusExt::from_raw(Signal::SIGKILL as i32)
        });
        if !self.reaped {
            self.reaped = true;
            // Stragglers (daemonised helpers) die with the instance. Right after reaping the
            // group id cannot have been reused yet if any member is left.
            let _ = killpg(self.group, Signal::SIGKILL);
        }
        self.pumps.drained(DRAIN_LIMIT).await;
        self.exited = Some(status);
        status
    }

    /// SIGTERM the group, wait up to `grace` for the leader, then SIGKILL the group.
    pub async fn stop(&mut self, grace: Duration) -> ExitStatus {
        if !self.reaped {
            let _ = killpg(self.group, Signal::SIGTERM);
        }
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::debug!(pid = self.pid(), "grace period over, sending SIGKILL");
                self.kill();
                self.wait().await
            }
        }
    }

    fn kill(&self) {
        if !self.reaped {
            let _ = killpg(self.group, Signal::SIGKILL);
        }
    }
}

impl Drop for RunningProcess {
    fn drop(&mut self) {
        // Tokio reaps the leader in the background after this; the group dies now.
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nimbus_runtime::{InstanceSpec, Protocol, RevisionKey};

    use super::*;

    fn spec() -> InstanceSpec {
        InstanceSpec {
            revision: RevisionKey::new("default", "hello-00001"),
            runtime_class: "process".into(),
            command: vec!["true".into()],
            protocol: Protocol::Http1,
            startup_timeout: Duration::from_secs(1),
            labels: BTreeMap::new(),
            ..Default::default()
        }
    }

    #[test]
    fn contract_env_is_port_then_the_spec() {
        let mut s = spec();
        s.env = vec![
            ("A".into(), "1".into()),
            ("K_REVISION".into(), "hello-00001".into()),
        ];
        let names: Vec<String> = contract_env(&s.env, 9)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(names, ["PORT", "A", "K_REVISION"]);
        assert_eq!(contract_env(&s.env, 9)[0].1, "9");
    }

    #[test]
    fn start_errors_have_reasons() {
        let e = StartError::NoPort(io::ErrorKind::AddrInUse.into());
        assert_eq!(e.reason(), "StartFailed");
        let e = StartError::CommandNotFound {
            command: "x".into(),
            source: io::ErrorKind::NotFound.into(),
        };
        assert_eq!(e.reason(), "CommandNotFound");
        let e = StartError::Launch(LaunchError::new("ImagePullFailed", "no"));
        assert_eq!(e.reason(), "ImagePullFailed");
    }
}
