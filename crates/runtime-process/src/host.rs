//! [`HostLauncher`]: instances as plain host processes. The program is `command + args` exactly
//! as given; the environment is [`BASE_PATH`] under the contract environment and the
//! manifest's `env`, nothing of the server's own (issue #13: it may hold credentials); the
//! working directory is the spec's.
//!
//! Privileges (issue #13): every program runs with no-new-privileges. A server running as root
//! runs each program as `securityContext.runAsUser`/`runAsGroup`, else as the launcher's default
//! user (`nimbus serve --process-user`, `nobody` unless set, as Cloud Run runs containers
//! unprivileged), with only its own groups and no capabilities. A server that is not root
//! cannot switch users: programs run as its own user, and a manifest asking for another user is
//! refused when the revision is prepared.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nimbus_runtime::InstanceSpec;

use crate::activation::{ActivatedExec, ActivationSocket};
use crate::launcher::{
    Credentials, ExecSpec, LaunchContext, LaunchError, Launcher, restrict_before_exec,
};

/// `PATH` of an instance whose manifest sets none (the usual default of a Linux login), so
/// `command: [sh, -c, ...]` finds its programs as it would in a container.
pub(crate) const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs instances as host processes (`runtimeClassName: process`).
#[derive(Clone, Debug, Default)]
pub struct HostLauncher {
    /// Who programs run as when the manifest names no user; `None`: the server's own user.
    default_user: Option<(u32, u32)>,
    /// Primary groups looked up in the host's user database, by uid: looked up once, not at
    /// every start and exec probe.
    primary_groups: Arc<Mutex<HashMap<u32, Option<u32>>>>,
}

impl HostLauncher {
    /// Run programs as `uid:gid` unless their manifest says otherwise (only a root server can).
    pub fn with_default_user(uid: u32, gid: u32) -> Self {
        Self {
            default_user: Some((uid, gid)),
            ..Self::default()
        }
    }

    /// The user a program of `spec` runs as (`None`: the server's own).
    fn credentials(&self, spec: &InstanceSpec) -> Option<Credentials> {
        let groups = spec.security.supplemental_groups.clone();
        match (spec.run_as_user, spec.run_as_group, self.default_user) {
            (None, None, None) => None,
            (None, None, Some((uid, gid))) => Some(Credentials { uid, gid, groups }),
            (uid, gid, default) => {
                let uid = uid
                    .or(default.map(|(uid, _)| uid))
                    .unwrap_or_else(server_uid);
                // A user without a group gets its own primary group on this host, else its
                // uid's number (never root's group by accident).
                let gid = gid.unwrap_or_else(|| self.primary_group(uid).unwrap_or(uid));
                Some(Credentials { uid, gid, groups })
            }
        }
    }

    /// Refuse a user this server cannot become, or root under `runAsNonRoot`.
    fn check_user(&self, spec: &InstanceSpec) -> Result<(), LaunchError> {
        let server = server_uid();
        let user = self.credentials(spec);
        let uid = user.as_ref().map_or(server, |u| u.uid);
        if spec.run_as_non_root && uid == 0 {
            return Err(LaunchError::new(
                "CreateContainerConfigError",
                "the program would run as root (uid 0) but runAsNonRoot is set: set \
                 securityContext.runAsUser to another user",
            ));
        }
        match user {
            Some(user) if server != 0 && (user.uid != server || user.gid != server_gid()) => {
                Err(LaunchError::new(
                    "CreateContainerConfigError",
                    format!(
                        "cannot run the program as uid {} gid {}: this server runs as uid {server}, \
                         not root, so host programs run as its own user; remove \
                         securityContext.runAsUser/runAsGroup or run nimbus serve as root",
                        user.uid, user.gid
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Volumes of a host process are bound over existing paths of the host, in a mount namespace
/// only a root server can make (see `mount_ns`).
fn check_mount_points(spec: &InstanceSpec) -> Result<(), LaunchError> {
    if spec.volume_mounts.is_empty() {
        return Ok(());
    }
    if server_uid() != 0 {
        return Err(LaunchError::new(
            "CreateContainerConfigError",
            "cannot mount volumes for a host process: that needs a mount namespace, which only \
             a server running as root can make; run nimbus serve as root, use env valueFrom \
             instead of volumes, or run the revision as a container",
        ));
    }
    let missing: Vec<String> = spec
        .volume_mounts
        .iter()
        .filter(|m| std::fs::symlink_metadata(&m.mount_path).is_err())
        .map(|m| m.mount_path.display().to_string())
        .collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(LaunchError::new(
            "CreateContainerConfigError",
            format!(
                "volume mount path {} does not exist on this host: a host process sees the \
                 host's file system, where Nimbus binds volumes over existing paths and creates \
                 none; create it, pick an existing directory, or run the revision as a container",
                missing.join(", ")
            ),
        )),
    }
}

fn server_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn server_gid() -> u32 {
    nix::unistd::getegid().as_raw()
}

impl HostLauncher {
    /// `uid`'s primary group in this host's user database, if it has an entry.
    fn primary_group(&self, uid: u32) -> Option<u32> {
        let mut known = self
            .primary_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *known.entry(uid).or_insert_with(|| {
            let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
            Some(user.gid.as_raw())
        })
    }
}

#[async_trait]
impl Launcher for HostLauncher {
    fn validate(&self, spec: &InstanceSpec) -> Result<(), String> {
        match spec.command.first() {
            Some(argv0) if !argv0.is_empty() => Ok(()),
            _ => Err("the process runtime needs a command (argv[0])".to_owned()),
        }
    }

    async fn prepare(&self, spec: &InstanceSpec) -> Result<(), LaunchError> {
        self.check_user(spec)?;
        check_mount_points(spec)?;
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
        Ok(self.exec_spec_of(spec, instance, &argv(spec)).command())
    }

    fn exec(
        &self,
        spec: &InstanceSpec,
        instance: &LaunchContext,
        argv: &[String],
    ) -> std::process::Command {
        self.exec_spec_of(spec, instance, argv).command()
    }

    async fn cleanup(&self, _instance: &LaunchContext) {}

    fn socket_activation(&self) -> bool {
        true
    }

    fn exec_spec(&self, spec: &InstanceSpec, instance: &LaunchContext) -> Option<ExecSpec> {
        Some(self.exec_spec_of(spec, instance, &argv(spec)))
    }
}

impl HostLauncher {
    /// `argv` with [`environment`] in the spec's working directory, as the spec's user.
    fn exec_spec_of(
        &self,
        spec: &InstanceSpec,
        instance: &LaunchContext,
        argv: &[String],
    ) -> ExecSpec {
        ExecSpec {
            argv: argv.iter().map(OsString::from).collect(),
            env: environment(&instance.env).into_iter().collect(),
            cwd: spec.working_dir.clone(),
            user: self.credentials(spec),
            mounts: instance.mounts.clone(),
        }
    }
}

/// The instance's argv: `command + args`.
fn argv(spec: &InstanceSpec) -> Vec<String> {
    spec.command.iter().chain(&spec.args).cloned().collect()
}

/// The command for a socket-activated instance of a plain-exec launcher: `exec` with the
/// listening socket on fd 3. With `join`, the child joins its cgroup first, then gives up its
/// privileges (the activation hook ends in `execve`, so nothing after it runs).
pub(crate) fn activated_command(
    exec: &ExecSpec,
    socket: &ActivationSocket,
    join: Option<nimbus_cgroup::Joiner>,
) -> std::io::Result<std::process::Command> {
    let mut cmd = std::process::Command::new(&exec.argv[0]);
    if let Some(dir) = &exec.cwd {
        cmd.current_dir(dir);
    }
    if let Some(joiner) = join {
        crate::process::join_before_exec(&mut cmd, joiner);
    }
    restrict_before_exec(&mut cmd, exec);
    let cwd = exec.cwd.as_deref();
    ActivatedExec::new(&exec.argv, exec.env.iter().cloned(), cwd, socket)?.install(&mut cmd);
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

    /// `nobody`/`nogroup`, the default user of a root server's instances.
    const NOBODY: u32 = 65534;

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

    fn status_of(output: std::process::Output) -> String {
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    fn field<'a>(status: &'a str, name: &str) -> &'a str {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .trim()
    }

    fn spec(user: Option<u32>) -> InstanceSpec {
        InstanceSpec {
            command: vec!["/bin/cat".into(), "/proc/self/status".into()],
            run_as_user: user,
            ..Default::default()
        }
    }

    fn context() -> LaunchContext {
        LaunchContext {
            id: "t-1".into(),
            port: 1,
            env: vec![],
            cgroup: None,
            scratch: std::env::temp_dir(),
            mounts: vec![],
        }
    }

    /// Issue #13, 5: programs run with no-new-privileges, as the default user or the
    /// manifest's, with no capabilities left — on the spawn path and on the socket-activated
    /// one (the stub's path runs the same `ExecSpec::command`).
    #[test]
    fn programs_run_as_their_user_without_privileges() {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var_os("CI").is_none(), "needs root under CI");
            eprintln!("SKIPPED: switching users needs root");
            return;
        }
        let launcher = HostLauncher::with_default_user(NOBODY, NOBODY);
        let ctx = context();
        let plain = status_of(
            launcher
                .command(&spec(None), &ctx)
                .unwrap()
                .output()
                .unwrap(),
        );
        assert_eq!(field(&plain, "Uid"), "65534\t65534\t65534\t65534");
        assert_eq!(field(&plain, "Gid"), "65534\t65534\t65534\t65534");
        assert_eq!(field(&plain, "Groups"), "");
        assert_eq!(field(&plain, "NoNewPrivs"), "1");
        assert_eq!(field(&plain, "Umask"), "0022", "not the server's 077");
        for caps in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(field(&plain, caps), "0000000000000000", "{caps}");
        }
        let mut chosen = spec(Some(4242));
        chosen.security.supplemental_groups = vec![7];
        let exec = launcher.exec_spec(&chosen, &ctx).unwrap();
        let ports = std::sync::Arc::new(crate::ports::PortAllocator::default());
        let socket = ActivationSocket::bind(&ports).unwrap();
        let mut cmd = activated_command(&exec, &socket, None).unwrap();
        let activated = status_of(cmd.output().unwrap());
        assert_eq!(field(&activated, "Uid"), "4242\t4242\t4242\t4242");
        assert_eq!(field(&activated, "Groups"), "7");
        assert_eq!(field(&activated, "NoNewPrivs"), "1");
        assert_eq!(field(&activated, "CapEff"), "0000000000000000");
    }

    /// Issue #13, Secrets and ConfigMaps: a host process sees its volume read-only at its mount
    /// path, in a mount namespace of its own: the host's path stays as it was. A mount path
    /// the host lacks is refused before the start.
    #[tokio::test]
    async fn volumes_are_bound_read_only_in_a_mount_namespace_of_their_own() {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var_os("CI").is_none(), "needs root under CI");
            eprintln!("SKIPPED: mount namespaces need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("volume");
        std::fs::create_dir(&volume).unwrap();
        std::fs::write(volume.join("password"), "s3cr3t").unwrap();
        let point = dir.path().join("point");
        std::fs::create_dir(&point).unwrap();
        let launcher = HostLauncher::with_default_user(NOBODY, NOBODY);
        let mut ctx = context();
        ctx.mounts = vec![nimbus_runtime::volumes::Bind {
            host: volume.clone(),
            path: point.clone(),
        }];
        let script = format!(
            "cat password; echo; touch {p}/new 2>/dev/null && echo WROTE; grep ' {p} ' /proc/self/mountinfo",
            p = point.display()
        );
        // The working directory is inside the volume: the program starts in the mount.
        let spec = InstanceSpec {
            command: vec!["/bin/sh".into(), "-c".into(), script],
            working_dir: Some(point.clone()),
            ..Default::default()
        };
        let output = status_of(launcher.command(&spec, &ctx).unwrap().output().unwrap());
        let mut lines = output.lines();
        assert_eq!(lines.next(), Some("s3cr3t"), "{output}");
        let mount = lines.next().unwrap_or_default();
        assert!(!output.contains("WROTE"), "{output}");
        for option in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(
                mount.split([' ', ',']).any(|o| o == option),
                "{option}: {mount}"
            );
        }
        assert_eq!(
            std::fs::read_dir(&point).unwrap().count(),
            0,
            "the host's view is unchanged"
        );

        let mut lacking = spec.clone();
        lacking.volume_mounts = vec![nimbus_runtime::volumes::VolumeMount {
            volume: "v".into(),
            mount_path: dir.path().join("absent"),
            sub_path: None,
        }];
        let error = launcher.prepare(&lacking).await.unwrap_err();
        assert_eq!(error.reason, "CreateContainerConfigError");
        assert!(
            error.message.contains("does not exist on this host"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn root_under_run_as_non_root_is_refused_when_prepared() {
        let launcher = HostLauncher::with_default_user(NOBODY, NOBODY);
        let mut rooted = spec(Some(0));
        rooted.run_as_non_root = true;
        let error = launcher.prepare(&rooted).await.unwrap_err();
        assert_eq!(error.reason, "CreateContainerConfigError");
        assert!(error.message.contains("runAsNonRoot"), "{error}");
        let mut default = spec(None);
        default.run_as_non_root = true;
        if nix::unistd::geteuid().is_root() {
            launcher.prepare(&default).await.unwrap();
        }
    }

    #[test]
    fn a_user_without_a_group_gets_its_primary_group_never_roots() {
        let launcher = HostLauncher::with_default_user(NOBODY, NOBODY);
        let user = launcher.credentials(&spec(Some(0))).unwrap();
        assert_eq!(
            (user.uid, user.gid),
            (0, 0),
            "root's primary group is its own"
        );
        let unknown = launcher.credentials(&spec(Some(987_654))).unwrap();
        assert_eq!((unknown.uid, unknown.gid), (987_654, 987_654));
        assert_eq!(HostLauncher::default().credentials(&spec(None)), None);
    }
}
