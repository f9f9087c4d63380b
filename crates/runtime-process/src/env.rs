//! An instance's Secret and ConfigMap values at its start: the spec's env with its references
//! read now (`nimbus_runtime::env::resolve`), and its volumes written out now
//! (`nimbus_runtime::volumes::materialize`), so a restarted or new instance sees the current
//! values and a running one keeps those it started with. A reference that cannot be resolved
//! fails the start as the kubelet does (`CreateContainerConfigError`, never quoting a value),
//! and the supervisor retries it with back-off.

use std::borrow::Cow;
use std::path::Path;

use nimbus_runtime::env::{CONFIG_ERROR_REASON, ConfigError, resolve};
use nimbus_runtime::volumes::{Bind, materialize};

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
        let source = self.shared.config_source.get().map(|s| &**s);
        let env = resolve(&self.spec, source).map_err(config_error)?;
        Ok(Cow::Owned(env))
    }

    /// The instance's volumes, written into `scratch` now, as the binds its launcher mounts
    /// (none when it mounts no volume). The caller removes `scratch` when the start fails.
    pub(crate) fn start_volumes(&self, scratch: &Path) -> Result<Vec<Bind>, StartError> {
        if self.spec.volume_mounts.is_empty() {
            return Ok(Vec::new());
        }
        let source = self.shared.config_source.get().map(|s| &**s);
        materialize(&self.spec, source, &scratch.join("volumes")).map_err(config_error)
    }
}

fn config_error(e: ConfigError) -> StartError {
    StartError::Launch(LaunchError::new(CONFIG_ERROR_REASON, e.message))
}
