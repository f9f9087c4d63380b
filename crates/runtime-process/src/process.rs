//! One operating-system process of an instance: building its command line and environment per
//! the Knative runtime contract, spawning it in its own process group (with a pre-bound socket on
//! fd 3 when the revision uses socket activation), waiting for it, and stopping it (SIGTERM to the
//! group, SIGKILL after a grace period). A [`RunningProcess`] that is dropped without being waited
//! for kills its whole group, so no path leaves orphans behind.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nimbus_runtime::InstanceSpec;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::activation::{ActivatedExec, ActivationSocket};
use crate::output::{OutputSink, Pumps};
use crate::ports::PortLease;

/// Variables a parent's own socket activation or service manager set; never inherited.
const NOT_INHERITED: [&str; 4] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
];

/// How long to wait for the output readers after a process exited.
const DRAIN_LIMIT: Duration = Duration::from_millis(200);

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// argv\[0\] does not exist (on `PATH` or as given).
    #[error("command {command:?} not found: {source}")]
    CommandNotFound { command: String, source: io::Error },
    /// The spec's working directory is missing or not a directory.
    #[error("working directory {} does not exist or is not a directory", dir.display())]
    WorkingDir { dir: PathBuf },
    /// Any other error from `fork`/`exec` (permissions, bad environment, resource limits).
    #[error("command {command:?} could not be started: {source}")]
    Spawn { command: String, source: io::Error },
    /// No loopback port could be reserved.
    #[error("no free loopback port: {0}")]
    NoPort(#[source] io::Error),
}

impl StartError {
    /// The CamelCase reason reported in the revision's phase.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CommandNotFound { .. } => "CommandNotFound",
            _ => "StartFailed",
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

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }
}

/// A started process and the readers of its output.
pub(crate) struct RunningProcess {
    child: Child,
    group: Pid,
    pumps: Pumps,
    /// Set once the leader has been reaped; the group id may then be reused and is not signalled.
    reaped: bool,
}

/// Start one process for `spec`, listening as `listen` says.
pub(crate) fn spawn(
    spec: &InstanceSpec,
    listen: &Listen,
    sink: &OutputSink,
) -> Result<RunningProcess, StartError> {
    let argv0 = spec.command.first().cloned().unwrap_or_default();
    if let Some(dir) = spec.working_dir.as_ref().filter(|d| !d.is_dir()) {
        return Err(StartError::WorkingDir { dir: dir.clone() });
    }
    let mut child = command(spec, listen)
        .and_then(|mut cmd| cmd.spawn())
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StartError::CommandNotFound {
                command: argv0.clone(),
                source,
            },
            _ => StartError::Spawn {
                command: argv0.clone(),
                source,
            },
        })?;
    let pid = child.id().expect("a just-spawned child has a pid");
    let (stdout, stderr) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let pumps = Pumps::start(stdout, stderr, sink);
    let group = Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"));
    Ok(RunningProcess {
        child,
        group,
        pumps,
        reaped: false,
    })
}

/// argv = command + args exactly; environment = [`environment`]; stdin at EOF; its own process
/// group. A socket-activated child gets its socket and `LISTEN_*` from [`ActivatedExec`].
fn command(spec: &InstanceSpec, listen: &Listen) -> io::Result<Command> {
    let env = environment(spec, listen.port());
    let mut cmd = Command::new(&spec.command[0]);
    cmd.args(&spec.command[1..]).args(&spec.args);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.process_group(0);
    match listen {
        Listen::Port(_) => {
            cmd.env_clear().envs(env);
        }
        Listen::Activated(socket) => {
            let argv: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
            let cwd = spec.working_dir.as_deref();
            ActivatedExec::new(&argv, env, cwd, socket)?.install(&mut cmd);
        }
    }
    Ok(cmd)
}

/// The child's whole environment: ours minus [`NOT_INHERITED`], then `PORT` and the `K_*`
/// variables, then the spec's env in order (later wins).
pub(crate) fn environment(spec: &InstanceSpec, port: u16) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os()
        .filter(|(name, _)| !NOT_INHERITED.iter().any(|n| name == n))
        .collect();
    let contract = contract_env(spec, port)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value));
    let overrides = contract.chain(spec.env.iter().cloned());
    env.extend(overrides.map(|(name, value)| (name.into(), value.into())));
    env
}

/// `PORT`, and `K_SERVICE` / `K_CONFIGURATION` (when labelled) and `K_REVISION`.
pub(crate) fn contract_env(spec: &InstanceSpec, port: u16) -> Vec<(&'static str, String)> {
    let mut env = vec![("PORT", port.to_string())];
    let label = |key: &str| spec.labels.get(key).cloned();
    if let Some(service) = label("serving.knative.dev/service") {
        env.push(("K_SERVICE", service));
    }
    if let Some(configuration) = label("serving.knative.dev/configuration") {
        env.push(("K_CONFIGURATION", configuration));
    }
    env.push(("K_REVISION", spec.revision.name.clone()));
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

    use nimbus_runtime::{Protocol, RevisionKey};

    use super::*;

    fn spec() -> InstanceSpec {
        InstanceSpec {
            revision: RevisionKey::new("default", "hello-00001"),
            runtime_class: "process".into(),
            image: None,
            command: vec!["true".into()],
            args: vec![],
            env: vec![],
            working_dir: None,
            protocol: Protocol::Http1,
            startup_timeout: Duration::from_secs(1),
            socket_activation: false,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn contract_env_comes_from_labels() {
        let mut s = spec();
        assert_eq!(
            contract_env(&s, 9),
            [("PORT", "9".into()), ("K_REVISION", "hello-00001".into())]
        );
        s.labels
            .insert("serving.knative.dev/service".into(), "hello".into());
        s.labels.insert(
            "serving.knative.dev/configuration".into(),
            "hello-cfg".into(),
        );
        let names: Vec<_> = contract_env(&s, 9).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"]
        );
    }

    #[test]
    fn environment_is_ours_then_the_contract_then_the_spec() {
        let mut s = spec();
        s.env = vec![
            ("K_REVISION".into(), "mine".into()),
            ("EXTRA".into(), "1".into()),
            ("EXTRA".into(), "2".into()),
        ];
        let env = environment(&s, 9);
        let get = |name: &str| env.get(std::ffi::OsStr::new(name)).cloned();
        assert_eq!(get("PORT"), Some("9".into()));
        assert_eq!(
            get("K_REVISION"),
            Some("mine".into()),
            "the spec's env wins"
        );
        assert_eq!(get("EXTRA"), Some("2".into()), "later entries win");
        assert!(NOT_INHERITED.iter().all(|name| get(name).is_none()));
        assert_eq!(get("PATH").is_some(), std::env::var_os("PATH").is_some());
    }

    #[test]
    fn start_errors_have_reasons() {
        let e = StartError::WorkingDir {
            dir: "/nope".into(),
        };
        assert_eq!(e.reason(), "StartFailed");
        let e = StartError::CommandNotFound {
            command: "x".into(),
            source: io::ErrorKind::NotFound.into(),
        };
        assert_eq!(e.reason(), "CommandNotFound");
    }
}
