//! Starting and releasing one attempt of an instance — the steps around the launcher: lease a
//! port (or bind the activation socket), take the cgroup with the revision's limits (a spare
//! made ahead, with a stub waiting in it for host processes), start the program in it — the
//! stub `execve`s it, or else the launcher's command is spawned and joins the cgroup between
//! fork and exec — and afterwards remove the cgroup and let the launcher clean up. The
//! supervisor decides when; this module only does.

use std::path::PathBuf;
use std::sync::Arc;

use nimbus_cgroup::Cgroup;
use nimbus_runtime::ProbeAction;
use tokio::process::Child;

use crate::activation::{self, ActivationSocket};
use crate::cgroup_pool::Spare;
use crate::failure::Failure;
use crate::host;
use crate::launcher::{LaunchContext, LaunchError};
use crate::output::{OutputSink, OutputTail};
use crate::probe::{self, ProbeTarget};
use crate::process::{self, Listen, RunningProcess, StartError};
use crate::readiness;
use crate::stub::{Handover, Stub};
use crate::supervisor::Supervisor;

/// Pause after a failed exec readiness check while an instance starts.
const EXEC_READY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

impl Supervisor {
    /// Lease a port, take the cgroup (and the stub waiting in it), and start the instance in it.
    pub(crate) async fn launch(&self, tail: &OutputTail) -> Result<Instance, StartError> {
        let launcher = &self.shared.launcher;
        let ports = &self.shared.ports;
        let env = self.start_env()?;
        let scratch = self.scratch_dir();
        let mounts = self
            .start_volumes(&scratch)
            .inspect_err(|_| remove_scratch(&scratch))?;
        let leased = async {
            let listen = if self.spec.socket_activation && launcher.socket_activation() {
                Listen::Activated(ActivationSocket::bind(ports).map_err(StartError::NoPort)?)
            } else {
                Listen::Port(ports.lease().map_err(StartError::NoPort)?)
            };
            Ok::<_, StartError>((listen, self.spare().await?))
        };
        let (listen, spare) = leased.await.inspect_err(|_| remove_scratch(&scratch))?;
        let (stub, cgroup) = match spare {
            Some(Spare { stub, cgroup }) => (stub, Some(cgroup)),
            None => (None, None),
        };
        let ctx = LaunchContext {
            id: self.id.clone(),
            port: listen.port(),
            env: process::contract_env(&env, listen.port()),
            cgroup: cgroup.as_ref().map(|c| c.path().to_owned()),
            scratch,
            mounts,
        };
        let sink = OutputSink {
            instance: self.id.clone(),
            log_file: self.log_file(),
            tail: tail.clone(),
        };
        let started = match self.exec_in_stub(stub, &listen, &ctx).await {
            Some(started) => started.map(|child| RunningProcess::adopt(child, &sink)),
            None => self.start_process(&listen, &ctx, cgroup.as_ref(), &sink),
        };
        match started {
            Ok(process) => {
                tracing::debug!(instance = %self.id, pid = process.pid(), port = ctx.port, "instance started");
                let target = self.probe_target(&ctx);
                Ok(Instance {
                    process,
                    listen,
                    ctx,
                    cgroup,
                    target,
                })
            }
            Err(error) => {
                launcher.cleanup(&ctx).await;
                remove_scratch(&ctx.scratch);
                Err(error)
            }
        }
    }

    /// Have the spare's stub (already in the cgroup) `execve` the instance. `None` when there
    /// is no stub, the launcher's command is not a plain exec, or the stub was gone: then the
    /// instance is started the ordinary way.
    async fn exec_in_stub(
        &self,
        stub: Option<Stub>,
        listen: &Listen,
        ctx: &LaunchContext,
    ) -> Option<Result<Child, StartError>> {
        let stub = stub?;
        let mut exec = self.shared.launcher.exec_spec(&self.spec, ctx)?;
        if !exec.mounts.is_empty() {
            return None; // the stub cannot make a mount namespace
        }
        let socket = match listen {
            Listen::Activated(socket) => {
                activation::activate_env(&mut exec.env, stub.pid()?);
                Some(socket.as_fd())
            }
            Listen::Port(_) => None,
        };
        let limit = self.spec.startup_timeout;
        match stub.exec(&exec, socket, limit).await {
            Ok(child) => Some(Ok(child)),
            Err(Handover::Failed(source)) => {
                let command = exec.argv[0].to_string_lossy().into_owned();
                Some(Err(StartError::spawn(command, source)))
            }
            Err(Handover::Gone(why)) => {
                tracing::warn!(instance = %self.id, "{why}; starting the instance without it");
                None
            }
        }
    }

    /// Start the launcher's command, joining the cgroup between fork and exec unless the
    /// launcher's command joins it itself.
    fn start_process(
        &self,
        listen: &Listen,
        ctx: &LaunchContext,
        cgroup: Option<&Cgroup>,
        sink: &OutputSink,
    ) -> Result<RunningProcess, StartError> {
        let launcher = &self.shared.launcher;
        let join = match cgroup {
            Some(cgroup) if !launcher.joins_cgroup_itself() => {
                Some(cgroup.joiner().map_err(cgroup_error)?)
            }
            _ => None,
        };
        let cmd = match listen {
            Listen::Activated(socket) => {
                let exec = launcher.exec_spec(&self.spec, ctx).ok_or_else(|| {
                    LaunchError::new("StartFailed", "this runtime cannot pass a listening socket")
                })?;
                host::activated_command(&exec, socket, join).map_err(|source| {
                    let command = exec.argv[0].to_string_lossy().into_owned();
                    StartError::spawn(command, source)
                })?
            }
            Listen::Port(_) => {
                let mut cmd = launcher.command(&self.spec, ctx)?;
                if let Some(joiner) = join {
                    process::join_before_exec(&mut cmd, joiner);
                }
                cmd
            }
        };
        process::spawn(cmd, sink)
    }

    /// This instance's cgroup with the revision's limits (and maybe a stub waiting in it), when
    /// cgroups are in use.
    async fn spare(&self) -> Result<Option<Spare>, StartError> {
        let Some(pool) = &self.shared.cgroups else {
            return Ok(None);
        };
        pool.take(&self.spec).await.map(Some).map_err(cgroup_error)
    }

    /// How probes reach this instance: its address (the launcher's, else loopback) and port,
    /// and the launcher's way to run a command in it.
    fn probe_target(&self, ctx: &LaunchContext) -> ProbeTarget {
        let (launcher, spec, ctx) = (
            Arc::clone(&self.shared.launcher),
            Arc::clone(&self.spec),
            ctx.clone(),
        );
        let served = launcher
            .address(&ctx)
            .unwrap_or_else(|| ([127, 0, 0, 1], ctx.port).into());
        ProbeTarget {
            ip: served.ip(),
            port: served.port(),
            exec: Arc::new(move |argv: &[String]| launcher.exec(&spec, &ctx, argv)),
        }
    }

    /// After the instance's process is gone: kill what is left in its cgroup and remove it,
    /// then let the launcher clean up.
    pub(crate) async fn release(&self, instance: Instance) {
        let Instance { ctx, cgroup, .. } = instance;
        if let Some(cgroup) = cgroup {
            tokio::task::spawn_blocking(move || {
                if let Err(e) = cgroup.remove() {
                    tracing::warn!("cannot remove an instance cgroup: {e}");
                }
            })
            .await
            .ok();
        }
        self.shared.launcher.cleanup(&ctx).await;
        remove_scratch(&ctx.scratch);
    }

    /// `failure`, or `OOMKilled` when the kernel killed a process of the instance for memory.
    pub(crate) fn oom_or(
        &self,
        instance: &Instance,
        failure: Failure,
        tail: &OutputTail,
    ) -> Failure {
        match &instance.cgroup {
            Some(cgroup) if cgroup.oom_kills() > 0 => {
                Failure::oom_killed(&self.id, self.spec.resources.memory_limit, &tail.lines())
            }
            _ => failure,
        }
    }

    fn scratch_dir(&self) -> PathBuf {
        let base = match &self.shared.config.data_dir {
            Some(dir) => dir.join("instances"),
            None => std::env::temp_dir().join(format!("nimbus-instances-{}", self.shared.tag)),
        };
        base.join(&self.spec.revision.namespace).join(&self.id)
    }

    pub(crate) fn log_file(&self) -> Option<std::path::PathBuf> {
        let dir = self.shared.config.data_dir.as_ref()?;
        let revision = &self.spec.revision;
        let root = nimbus_logs::logs_root(dir);
        Some(nimbus_logs::instance_file(
            &root,
            &revision.namespace,
            &revision.name,
            &self.id,
        ))
    }
}

/// What one attempt holds: the process, its port or socket, what the launcher was given, the
/// cgroup, and where probes go.
pub(crate) struct Instance {
    pub process: RunningProcess,
    pub listen: Listen,
    pub ctx: LaunchContext,
    pub cgroup: Option<Cgroup>,
    pub target: ProbeTarget,
}

/// How a starting instance proves it serves: its readiness probe passes; without one, its port
/// accepts connections, or (socket activation) the program accepted one from its socket.
/// Knative probes a starting instance as fast as sensible whatever the probe's period.
pub(crate) fn ready_check(
    instance: &Instance,
    probe: Option<&nimbus_runtime::Probe>,
) -> Box<dyn FnMut() -> bool + Send> {
    match (probe, &instance.listen) {
        (Some(p), _) => {
            let (action, target, timeout) = (p.action.clone(), instance.target.clone(), p.timeout);
            // A command per check is costly: pace exec probes.
            let pause = matches!(action, ProbeAction::Exec { .. }).then_some(EXEC_READY_PAUSE);
            Box::new(move || {
                let passed = probe::check(&action, &target, timeout).is_ok();
                if let (false, Some(pause)) = (passed, pause) {
                    std::thread::sleep(pause);
                }
                passed
            })
        }
        (None, Listen::Port(_)) => Box::new(readiness::connects(instance.target.addr())),
        (None, Listen::Activated(socket)) => Box::new(socket.accepted_check()),
    }
}

fn cgroup_error(error: nimbus_cgroup::CgroupError) -> StartError {
    StartError::Launch(LaunchError::new(
        "CgroupError",
        format!("cannot set up the instance's resource limits: {error}"),
    ))
}

fn remove_scratch(dir: &std::path::Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %dir.display(), "cannot remove an instance's scratch directory: {e}");
    }
}
