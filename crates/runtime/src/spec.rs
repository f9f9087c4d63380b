//! What a runtime is asked to run, and what it reports back.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::Protocol;

/// Identifies a revision: namespace and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RevisionKey {
    pub namespace: String,
    pub name: String,
}

impl RevisionKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for RevisionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Everything a runtime needs to start one instance of a revision. Built by the controller from
/// the Revision's spec; runtimes never read API objects themselves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstanceSpec {
    pub revision: RevisionKey,
    /// Which backend runs it (`process`, `oci`, `wasm`; see `nimbus_api::runtime`).
    pub runtime_class: String,
    /// Container image reference (unused by the process runtime).
    pub image: Option<String>,
    /// argv\[0\] and the arguments, exactly as given (`command` + `args`).
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// Environment, in order: the manifest's literal values, then Knative's runtime contract
    /// (`K_SERVICE`, `K_CONFIGURATION`, `K_REVISION`), built by the controller. Runtimes add
    /// only `PORT`, and the values of [`InstanceSpec::env_refs`] through
    /// [`crate::env::resolve`] at every start.
    pub env: Vec<(String, String)>,
    /// The variables that come from Secrets and ConfigMaps (`envFrom`, `env[].valueFrom`),
    /// resolved when an instance starts, never stored here.
    pub env_refs: crate::env::EnvRefs,
    /// Secret and ConfigMap volumes (`volumes`) and where they are mounted, read-only
    /// (`volumeMounts`); written out at every start by [`crate::volumes::materialize`].
    pub volumes: Vec<crate::volumes::Volume>,
    pub volume_mounts: Vec<crate::volumes::VolumeMount>,
    pub working_dir: Option<PathBuf>,
    /// Protocol spoken by the instance on its port.
    pub protocol: Protocol,
    /// `ports[0].containerPort`: where the program listens when it has its own network
    /// namespace (Knative sets `PORT` to it; default 8080). Host-network instances get a
    /// free loopback port instead.
    pub container_port: Option<u16>,
    /// How long an instance may take to start listening before it is declared failed.
    pub startup_timeout: Duration,
    /// Pass a pre-bound listening socket as fd 3 (`LISTEN_FDS=1`, systemd convention) so the
    /// first request waits in the kernel backlog instead of for readiness polling.
    pub socket_activation: bool,
    /// The revision's labels (informational: runtimes derive nothing from them).
    pub labels: BTreeMap<String, String>,
    /// `resources` of the container, converted to plain numbers.
    pub resources: Resources,
    /// Kubernetes probes; `None` means the runtime's default (readiness: the port accepts).
    pub probes: Probes,
    /// `securityContext.runAsUser` / `runAsGroup` (containers; otherwise the image's user).
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    /// `securityContext.runAsNonRoot` (container's, else the pod's): refuse to run as root.
    pub run_as_non_root: bool,
    /// The rest of the container's and pod's `securityContext` that runtimes honour.
    pub security: Security,
    /// How long after SIGTERM an instance may take to exit before SIGKILL
    /// (`terminationGracePeriodSeconds`); `None`: the runtime's default.
    pub termination_grace: Option<Duration>,
    /// The revision's `timeoutSeconds`: the longest a request may run (`None`: the default).
    pub request_timeout: Option<Duration>,
    /// `containerConcurrency`: requests one instance handles at once (0 = unlimited).
    pub container_concurrency: u32,
    /// Hosts (`host` or `host:port`) the instance may call out to, for runtimes that mediate
    /// outbound requests (Wasm: `nimbus.dev/allowed-outbound-hosts`, comma-separated). Empty:
    /// none.
    pub allowed_outbound_hosts: Vec<String>,
}

/// The privileges of an instance beyond its user, from the container's `securityContext` (and
/// the pod's `supplementalGroups`). Validation refuses what a runtime cannot enforce, so a
/// runtime may apply these without checking again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Security {
    /// `pod.securityContext.supplementalGroups`: extra group ids of the process.
    pub supplemental_groups: Vec<u32>,
    /// `allowPrivilegeEscalation: true` lets `execve` gain privileges (setuid binaries, file
    /// capabilities). Nimbus's default is `false`: every instance runs with no-new-privileges.
    pub allow_privilege_escalation: bool,
    /// `capabilities.add`, as Kubernetes writes them (`NET_ADMIN`, no `CAP_` prefix).
    pub capabilities_add: Vec<String>,
    /// `capabilities.drop` (`ALL` drops every one).
    pub capabilities_drop: Vec<String>,
    /// `readOnlyRootFilesystem`.
    pub read_only_root_filesystem: bool,
    /// `seccompProfile` (container's, else the pod's).
    pub seccomp: Seccomp,
    /// `nimbus.dev/host-network: "true"`: the instance shares the host's network instead of
    /// getting its own namespace (containers only).
    pub host_network: bool,
}

/// Which seccomp filter a container gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// The container runtimes' default filter (Docker's and containerd's profile). Nimbus's
    /// default, as Cloud Run's and the kubelet's with `--seccomp-default`.
    #[default]
    RuntimeDefault,
    /// No filter (`seccompProfile: {type: Unconfined}`).
    Unconfined,
}

/// Resource requests and limits, as Kubernetes quantities converted to numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// `limits.memory` in bytes.
    pub memory_limit: Option<u64>,
    /// `requests.memory` in bytes.
    pub memory_request: Option<u64>,
    /// `limits.cpu` in millicores (1000 = one CPU).
    pub cpu_limit_millis: Option<u64>,
    /// `requests.cpu` in millicores.
    pub cpu_request_millis: Option<u64>,
    /// Most processes/threads an instance may have (`nimbus.dev/pids-limit`); `None`: the
    /// runtime's default.
    pub pids_limit: Option<u64>,
}

/// The three Kubernetes probes of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probes {
    pub readiness: Option<Probe>,
    pub liveness: Option<Probe>,
    pub startup: Option<Probe>,
}

/// One probe: what to check and how often (Kubernetes' fields and defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub action: ProbeAction,
    /// Wait before the first check (`initialDelaySeconds`, default 0).
    pub initial_delay: Duration,
    /// Time between checks (`periodSeconds`, default 10 s). Knative allows 0 for readiness,
    /// meaning "check as fast as sensible until ready".
    pub period: Duration,
    /// How long one check may take (`timeoutSeconds`, default 1 s).
    pub timeout: Duration,
    /// Consecutive successes to count as passing after a failure (`successThreshold`, default 1).
    pub success_threshold: u32,
    /// Consecutive failures to count as failed (`failureThreshold`, default 3).
    pub failure_threshold: u32,
}

impl Probe {
    /// A probe with Kubernetes' default timing.
    pub fn new(action: ProbeAction) -> Self {
        Self {
            action,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        }
    }
}

/// What a probe checks. A `port` of `None` means the instance's own serving port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    /// An HTTP GET that must answer 200..=399.
    HttpGet {
        path: String,
        port: Option<u16>,
        /// `Host` header and extra headers, as given.
        headers: Vec<(String, String)>,
    },
    /// A TCP connection that must be accepted.
    TcpSocket { port: Option<u16> },
    /// A command run inside the instance that must exit 0.
    Exec { command: Vec<String> },
}

/// Coarse state of a revision's instances as a runtime sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevisionPhase {
    /// Instances are being started; none has failed yet.
    Starting,
    /// At least one instance is ready (or zero were asked for after one had been ready).
    Ready,
    /// The latest instance failed to become ready or exited; `reason` is a CamelCase word.
    Failed { reason: String, message: String },
}

/// A runtime's report on one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionRuntimeStatus {
    pub phase: RevisionPhase,
    pub desired: u32,
    /// Instances that exist (starting or ready).
    pub actual: u32,
    pub ready: u32,
    /// Whether any instance of this revision has ever become ready.
    pub ever_ready: bool,
}

/// Sent by a runtime each time a revision's status changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub revision: RevisionKey,
}
