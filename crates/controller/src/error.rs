//! Controller errors: which object failed and why; all are retried with backoff.

use nimbus_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("runtime: {0}")]
    Runtime(#[from] nimbus_runtime::RuntimeError),
}
