//! Controller errors: which call failed and why, and how the reconcile is retried.

use crate::resources::{ResourceError, Retry};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error("runtime: {0}")]
    Runtime(#[from] nimbus_runtime::RuntimeError),
    /// A test's [`crate::Controller::settle`] ran out of rounds: some reconcile keeps changing
    /// what it reads.
    #[error("the controller did not settle within {rounds} reconciles; still queued: {queued}")]
    NotSettled { rounds: usize, queued: String },
}

impl ControllerError {
    /// How the failed reconcile is retried.
    pub fn retry(&self) -> Retry {
        match self {
            ControllerError::Resource(e) => e.retry(),
            ControllerError::Runtime(_) => Retry::Backoff,
            ControllerError::NotSettled { .. } => Retry::Slowly,
        }
    }
}
