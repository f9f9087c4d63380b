//! An instance's environment at its start: the spec's env with the values of its Secret and
//! ConfigMap references read now (`nimbus_runtime::env::resolve`), so a restarted or new
//! instance sees the current values and a running one keeps those it started with. A
//! reference that cannot be resolved fails the start as the kubelet does
//! (`CreateContainerConfigError`, never quoting a value), and the supervisor retries it with
//! back-off.

use std::borrow::Cow;

use nimbus_runtime::env::{CONFIG_ERROR_REASON, resolve};

use crate::launcher::LaunchError;
use crate::process::StartError;
use crate::supervisor::Supervisor;

impl Supervisor {
    /// The env an instance starting now gets (before `PORT`): the revision's own when it has
    /// no references, else the resolved one. Called before anything is leased for the start,
    /// so a failure leaves nothing to clean up.
    pub(crate) fn start_env(&self) -> Result<Cow<'_, [(String, String)]>, StartError> {
        if self.spec.env_refs.is_empty() {
            return Ok(Cow::Borrowed(&self.spec.env));
        }
        let source = self.shared.env_source.get().map(|s| &**s);
        let env = resolve(&self.spec, source)
            .map_err(|e| StartError::Launch(LaunchError::new(CONFIG_ERROR_REASON, e.message)))?;
        Ok(Cow::Owned(env))
    }
}
