//! How Kubernetes-mode commands find the cluster, with kube-rs's (and kubectl's) rules:
//!
//! - `--kubeconfig FILE`: that file (its `current-context`, or `--context`);
//! - else `--context NAME`: that context of the files in `KUBECONFIG` (colon-separated), else
//!   of `~/.kube/config`;
//! - else the same files' current context, and inside a pod the pod's service account (the
//!   in-cluster config the operator and the router run with).
//!
//! Every authentication a kubeconfig can name works (client certificates, tokens, exec
//! plugins), unlike the embedded API's kubeconfig reader in the CLI.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

/// The cluster could not be reached from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("reading kubeconfig {path}")]
    File {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    #[error("kubeconfig (KUBECONFIG or ~/.kube/config)")]
    Kubeconfig(#[source] KubeconfigError),
    #[error(
        "no cluster configured: no --kubeconfig, no KUBECONFIG, no ~/.kube/config, and not \
         running in a pod"
    )]
    Infer(#[source] kube::config::InferConfigError),
    #[error("creating the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// A client for the cluster `kubeconfig`/`context` name (see the module docs).
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, ConnectError> {
    kube::Client::try_from(config(kubeconfig, context).await?).map_err(ConnectError::Client)
}

/// The API server's URL in the configuration `kubeconfig`/`context` name.
pub async fn server(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<http::Uri, ConnectError> {
    Ok(config(kubeconfig, context).await?.cluster_url)
}

async fn config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Config, ConnectError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let file = |source| ConnectError::File {
                path: path.to_path_buf(),
                source,
            };
            let parsed = Kubeconfig::read_from(path).map_err(file)?;
            kube::Config::from_custom_kubeconfig(parsed, &options)
                .await
                .map_err(file)?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(ConnectError::Kubeconfig)?,
        (None, None) => kube::Config::infer().await.map_err(ConnectError::Infer)?,
    };
    Ok(config)
}
