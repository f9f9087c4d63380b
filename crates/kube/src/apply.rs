//! `nimbus install --apply`: the install manifests sent to a cluster with server-side apply,
//! as `kubectl apply --server-side --force-conflicts` would, then a wait for the CRDs.
//!
//! 1. **Check**: every CRD of the install that already exists must carry
//!    `app.kubernetes.io/managed-by: nimbus`. A CRD of the same name without it is someone
//!    else's (Knative Serving's): nothing is written, and the error says what to do. The
//!    optional kinds ([`nimbus_api::Kind::is_optional_on_cluster`]: KEDA's, the event
//!    sources') are the exception: another installation's CRD of one (KEDA's own) is left
//!    alone, said in a line, and the operator leaves that kind to its owner.
//! 2. **Apply**: each object in order, field manager `nimbus-install`, forced (the installer
//!    owns what it installs); a second install is a no-op.
//! 3. **Wait**: until every CRD is `Established` (its API is served), or its names are
//!    refused (`NamesAccepted=False`), or the timeout passes.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use tokio::time::Instant;

use crate::install::{FIELD_MANAGER, LABEL_MANAGED_BY, MANAGER, Manifest};

/// How often a CRD's conditions are read while waiting.
const POLL: Duration = Duration::from_millis(250);

/// Why an install stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A CRD of the same name belongs to another installation.
    #[error(
        "customresourcedefinition {name} already exists and is not Nimbus's (no label \
         {LABEL_MANAGED_BY}={MANAGER}{found}). Nimbus serves the same Knative kinds with its \
         own operator, so it cannot be installed next to Knative Serving: remove Knative \
         Serving from the cluster first (deleting its CRDs deletes every Knative Service on \
         it), or install Nimbus on another cluster. Nothing was changed."
    )]
    ForeignCrd {
        name: String,
        /// `; it is labelled app.kubernetes.io/name=knative-serving`, or empty.
        found: String,
    },
    #[error("reading {object}")]
    Read {
        object: String,
        #[source]
        source: KubeFailure,
    },
    #[error("applying {object}")]
    Apply {
        object: String,
        #[source]
        source: KubeFailure,
    },
    #[error(
        "customresourcedefinition {name} is not Established (waited up to {timeout:?}): {conditions}"
    )]
    NotEstablished {
        name: String,
        timeout: Duration,
        /// The CRD's conditions as last read.
        conditions: String,
    },
}

/// A kube-rs error as a person reads it: the API server's message for a refusal (kube-rs
/// prints its whole `Status` twice), else kube-rs's error and its causes.
#[derive(Debug)]
pub struct KubeFailure(pub kube::Error);

impl std::fmt::Display for KubeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            kube::Error::Api(status) => write!(f, "{} ({})", status.message, status.code),
            other => other.fmt(f),
        }
    }
}

impl std::error::Error for KubeFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            kube::Error::Api(_) => None,
            other => other.source(),
        }
    }
}

/// What happened, one kubectl-style line per step: `<object> serverside-applied`, then
/// `<crd> condition met` per CRD.
pub async fn apply(
    client: &kube::Client,
    manifests: &[Manifest],
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<(), ApplyError> {
    let mut foreign = Vec::new();
    for m in manifests.iter().filter(|m| m.is_crd()) {
        match check_crd(client, m.name()).await {
            Ok(()) => {}
            Err(ApplyError::ForeignCrd { found, .. }) if m.is_optional_crd() => {
                progress(&format!(
                    "{} left alone: it is not Nimbus's{found}; its owner serves that kind",
                    m.display_name()
                ));
                foreign.push(m.name().to_string());
            }
            Err(e) => return Err(e),
        }
    }
    let ours = |m: &&Manifest| !foreign.iter().any(|f| m.is_crd() && f == m.name());
    for m in manifests.iter().filter(ours) {
        apply_one(client, m).await?;
        progress(&format!("{} serverside-applied", m.display_name()));
    }
    let deadline = Instant::now() + timeout;
    for m in manifests.iter().filter(|m| m.is_crd()).filter(ours) {
        wait_established(client, m.name(), deadline, timeout).await?;
        progress(&format!("{} condition met", m.display_name()));
    }
    Ok(())
}

/// Whether the CRD `name` exists and is Nimbus's (`false` when missing or someone else's).
pub async fn is_ours(client: &kube::Client, name: &str) -> Result<bool, kube::Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(api.get_opt(name).await?.is_some_and(|crd| {
        crd.metadata
            .labels
            .unwrap_or_default()
            .get(LABEL_MANAGED_BY)
            .map(String::as_str)
            == Some(MANAGER)
    }))
}

/// Refuse a CRD of this name that is not Nimbus's.
async fn check_crd(client: &kube::Client, name: &str) -> Result<(), ApplyError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let existing = api.get_opt(name).await.map_err(|e| ApplyError::Read {
        object: format!("customresourcedefinition {name}"),
        source: KubeFailure(e),
    })?;
    let Some(crd) = existing else { return Ok(()) };
    let labels = crd.metadata.labels.unwrap_or_default();
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGER) {
        return Ok(());
    }
    let found = ["app.kubernetes.io/name", LABEL_MANAGED_BY]
        .into_iter()
        .find_map(|key| {
            labels
                .get(key)
                .map(|v| format!("; it is labelled {key}={v}"))
        })
        .unwrap_or_default();
    Err(ApplyError::ForeignCrd {
        name: name.to_string(),
        found,
    })
}

/// Server-side apply of one object, forced, as `nimbus-install`.
async fn apply_one(client: &kube::Client, m: &Manifest) -> Result<(), ApplyError> {
    let api: Api<DynamicObject> = match m.namespace() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &m.resource),
        None => Api::all_with(client.clone(), &m.resource),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(m.name(), &params, &Patch::Apply(&m.object))
        .await
        .map_err(|e| ApplyError::Apply {
            object: m.display_name(),
            source: KubeFailure(e),
        })?;
    Ok(())
}

/// Poll the CRD until `Established=True`; fail at once on `NamesAccepted=False`.
async fn wait_established(
    client: &kube::Client,
    name: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ApplyError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    loop {
        let crd = api.get_opt(name).await.map_err(|e| ApplyError::Read {
            object: format!("customresourcedefinition {name}"),
            source: KubeFailure(e),
        })?;
        let conditions = crd
            .and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .unwrap_or_default();
        let status = |type_: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == type_)
                .map(|c| c.status.as_str())
        };
        let refused = status("NamesAccepted") == Some("False");
        if status("Established") == Some("True") {
            return Ok(());
        }
        if refused || Instant::now() >= deadline {
            let conditions = conditions
                .iter()
                .map(|c| {
                    let reason = c.reason.as_deref().unwrap_or("");
                    let message = c.message.as_deref().unwrap_or("");
                    format!("{}={} {reason}: {message}", c.type_, c.status)
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ApplyError::NotEstablished {
                name: name.to_string(),
                timeout,
                conditions,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
