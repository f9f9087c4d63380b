//! [`HostLauncher`]: instances as plain host processes. The program is `command + args` exactly
//! as given; the environment is [`BASE_PATH`] under the contract environment and the
//! manifest's `env`, nothing of the server's own (issue #13: it may hold credentials); the
//! working directory is the spec's.

use std::collections::BTreeMap;
use std::ffi::OsString;

use async_trait::async_trait;
use nimbus_runtime::InstanceSpec;

use crate::activation::{ActivatedExec, ActivationSocket};
use crate::launcher::{ExecSpec, LaunchContext, LaunchError, Launcher};

/// `PATH` of an instance whose manifest sets none (the usual default of a Linux login), so
/// `command: [sh, -c, ...]` finds its programs as it would in a container.
pub(crate) const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs instances as host processes (`runtimeClassName: process`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HostLauncher;

#[async_trait]
impl Launcher for HostLauncher {
    fn validate(&self, spec: &InstanceSpec) -> Result<(), String> {
        match spec.command.first() {
            Some(argv0) if !argv0.is_empty() => Ok(()),
            _ => Err("the process runtime needs a command (argv[0])".to_owned()),
        }
    }

    async fn prepare(&self, spec: &InstanceSpec) -> Result<(), LaunchError> {
        match &spec.working_dir {
            Some(dir) if !dir.is_dir() => Err(LaunchError::new(
                "StartFailed",
                format!(
                    "working directory {} does not exist or is not a directory; fix workingDir",
                    dir.display()
                ),
            )),
            _ => Ok(()),
        }
    }

    fn command(
        &self,
        spec: &InstanceSpec,
        instance: &LaunchContext,
    ) -> Result<std::process::Command, LaunchError> {
        Ok(exec_spec(spec, instance, &argv(spec)).command())
    }

    fn exec(
        &self,
        spec: &InstanceSpec,
        instance: &LaunchContext,
        argv: &[String],
    ) -> std::process::Command {
        exec_spec(spec, instance, argv).command()
    }

    async fn cleanup(&self, _instance: &LaunchContext) {}

    fn socket_activation(&self) -> bool {
        true
    }

    fn exec_spec(&self, spec: &InstanceSpec, instance: &LaunchContext) -> Option<ExecSpec> {
        Some(exec_spec(spec, instance, &argv(spec)))
    }
}

/// The instance's argv: `command + args`.
fn argv(spec: &InstanceSpec) -> Vec<String> {
    spec.command.iter().chain(&spec.args).cloned().collect()
}

/// `argv` with [`environment`] in the spec's working directory.
fn exec_spec(spec: &InstanceSpec, instance: &LaunchContext, argv: &[String]) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(OsString::from).collect(),
        env: environment(&instance.env).into_iter().collect(),
        cwd: spec.working_dir.clone(),
    }
}

/// The command for a socket-activated host instance: `socket` arrives on fd 3. With `join`, the
/// child joins its cgroup first (the activation hook ends in `execve`, so nothing after it runs).
pub(crate) fn activated_command(
    spec: &InstanceSpec,
    instance: &LaunchContext,
    socket: &ActivationSocket,
    join: Option<nimbus_cgroup::Joiner>,
) -> std::io::Result<std::process::Command> {
    let argv = argv(spec);
    let mut cmd = std::process::Command::new(&argv[0]);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    if let Some(joiner) = join {
        crate::process::join_before_exec(&mut cmd, joiner);
    }
    let cwd = spec.working_dir.as_deref();
    ActivatedExec::new(&argv, environment(&instance.env), cwd, socket)?.install(&mut cmd);
    Ok(cmd)
}

/// The child's whole environment: `PATH` ([`BASE_PATH`]), then `contract` (the runtime
/// contract and the manifest's env; later wins). Nothing is inherited from the server.
pub(crate) fn environment(contract: &[(String, String)]) -> BTreeMap<OsString, OsString> {
    let mut env = BTreeMap::from([(OsString::from("PATH"), OsString::from(BASE_PATH))]);
    env.extend(
        contract
            .iter()
            .map(|(name, value)| (name.into(), value.into())),
    );
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #13, 5: nothing of the server's environment reaches an instance.
    #[test]
    fn environment_is_a_base_path_then_the_contract_and_nothing_of_ours() {
        let env = environment(&[
            ("PORT".into(), "9".into()),
            ("EXTRA".into(), "1".into()),
            ("EXTRA".into(), "2".into()),
        ]);
        let get = |name: &str| env.get(std::ffi::OsStr::new(name)).cloned();
        assert_eq!(get("PORT"), Some("9".into()));
        assert_eq!(get("EXTRA"), Some("2".into()), "later entries win");
        assert_eq!(get("PATH"), Some(BASE_PATH.into()));
        assert_eq!(env.len(), 3, "{env:?}");
        let own = environment(&[("PATH".into(), "/opt/bin".into())]);
        assert_eq!(
            own[std::ffi::OsStr::new("PATH")],
            "/opt/bin",
            "the manifest's PATH wins"
        );
    }
}
