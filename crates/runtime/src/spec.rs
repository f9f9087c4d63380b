//! What a runtime is asked to run, and what it reports back.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::Protocol;

/// Identifies a revision: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSpec {
    pub revision: RevisionKey,
    /// Which backend should run it (`process`, later `oci`, `wasm`).
    pub runtime_class: String,
    /// Container image reference (unused by the process runtime).
    pub image: Option<String>,
    /// argv\[0\] and the arguments, exactly as given (`command` + `args`).
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// Environment, in order; `PORT` and the `K_*` variables are added by the runtime.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    /// Protocol spoken by the instance on its port.
    pub protocol: Protocol,
    /// How long an instance may take to start listening before it is declared failed.
    pub startup_timeout: Duration,
    /// Pass a pre-bound listening socket as fd 3 (`LISTEN_FDS=1`, systemd convention) so the
    /// first request waits in the kernel backlog instead of for readiness polling.
    pub socket_activation: bool,
    /// Labels useful to runtimes (service / configuration names, used for `K_SERVICE` etc.).
    pub labels: BTreeMap<String, String>,
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
