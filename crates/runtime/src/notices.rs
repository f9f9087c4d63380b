//! What an instance went through that a user would ask "why?" about — killed for memory,
//! failing its liveness probe, restarting after a crash — reported by a runtime as it happens.
//! The binary turns these into Kubernetes Events on the revision (the kubelet reports the same
//! on a pod); a runtime without a sink reports nothing.

use crate::RevisionKey;

/// A sink for [`InstanceNotice`]s. Called from the runtime's tasks: must be cheap and never
/// block (the recorder queues and drops when full).
pub trait InstanceNotices: Send + Sync + 'static {
    fn notice(&self, revision: &RevisionKey, notice: InstanceNotice);
}

/// One thing that happened to an instance, with the kubelet's reason where it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceNotice {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// `OOMKilled`, `Unhealthy`, `BackOff`, ...
    pub reason: String,
    pub message: String,
}

impl InstanceNotice {
    pub fn warning(reason: &str, message: String) -> Self {
        Self {
            warning: true,
            reason: reason.into(),
            message,
        }
    }
}
