//! `nimbus install`: Kubernetes mode's install manifests (`nimbus_kube::install`), printed as
//! multi-document YAML for `kubectl apply --server-side -f -`, or applied to the cluster of a
//! kubeconfig with `--apply` (server-side apply as `nimbus-install`, then a wait until the
//! CRDs are Established).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use nimbus_kube::install::{HostNetwork, InstallOptions, Manifest, default_image};

/// How long `--apply` waits for the CRDs to be Established.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct InstallArgs {
    /// Apply to the cluster (server-side apply) instead of printing the manifests.
    #[arg(long)]
    apply: bool,
    /// The image of the operator and the router (built by scripts/nimbus-image).
    #[arg(long, default_value_t = default_image())]
    image: String,
    /// Run the operator and the router in the node's network (hostNetwork), reaching the API
    /// server as the kubeconfig does, for clusters whose pods cannot reach it through the
    /// `kubernetes` Service (no kube-proxy: scripts/kube-cluster's). They listen on node ports
    /// 31080 (HTTP), 31091 (router admin) and 31090 (operator).
    #[arg(long)]
    host_network: bool,
    /// With --host-network: the API server's address as seen from the node, HOST:PORT
    /// [default: the kubeconfig's server].
    #[arg(long, requires = "host_network")]
    api_server: Option<String>,
    /// Kubeconfig file [default: $KUBECONFIG, else ~/.kube/config].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: its current-context].
    #[arg(long)]
    context: Option<String>,
}

pub async fn run(args: InstallArgs) -> anyhow::Result<()> {
    let host_network = match args.host_network {
        false => None,
        true => Some(host_network(&args).await?),
    };
    let options = InstallOptions {
        image: args.image.clone(),
        host_network,
    };
    let manifests = nimbus_kube::install::manifests(&options)?;
    if !args.apply {
        print!("{}", to_yaml(&manifests)?);
        return Ok(());
    }
    let client =
        nimbus_kube::kubeconfig::client(args.kubeconfig.as_deref(), args.context.as_deref())
            .await
            .map_err(|e| readable(&e))?;
    nimbus_kube::apply::apply(&client, &manifests, ESTABLISH_TIMEOUT, |line| {
        println!("{line}")
    })
    .await
    .map_err(|e| readable(&e))
}

/// The API server's address for `--host-network`: `--api-server`, else the kubeconfig's.
async fn host_network(args: &InstallArgs) -> anyhow::Result<HostNetwork> {
    let (host, port) = match &args.api_server {
        Some(addr) => {
            let (host, port) = addr.rsplit_once(':').with_context(|| {
                format!("--api-server {addr:?}: expected HOST:PORT, e.g. 127.0.0.1:6443")
            })?;
            let port = port.parse().with_context(|| {
                format!("--api-server {addr:?}: the port {port:?} is not a number")
            })?;
            (host.trim_matches(['[', ']']).to_string(), port)
        }
        None => {
            let url = nimbus_kube::kubeconfig::server(
                args.kubeconfig.as_deref(),
                args.context.as_deref(),
            )
            .await
            .map_err(|e| readable(&e))?;
            let host = url.host().context("the kubeconfig's server has no host")?;
            let port = url.port_u16().unwrap_or(443);
            (host.trim_matches(['[', ']']).to_string(), port)
        }
    };
    Ok(HostNetwork {
        api_host: host,
        api_port: port,
    })
}

/// The error and its causes in one line, each cause once: kube-rs's errors repeat their
/// sources in their own messages.
fn readable(e: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        cause = c.source();
    }
    anyhow::anyhow!(text)
}

/// `---`-separated YAML documents, one per object, in install order.
fn to_yaml(manifests: &[Manifest]) -> anyhow::Result<String> {
    let mut out = String::new();
    for m in manifests {
        let doc = serde_saphyr::to_string(&m.object)
            .with_context(|| format!("rendering {} as YAML", m.display_name()))?;
        out.push_str("---\n");
        out.push_str(&doc);
        if !doc.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_told_once() {
        let io = std::io::Error::other("refused");
        let inner = anyhow::Error::new(io).context("connect: refused");
        let outer = inner.context("reading x");
        let text = readable(outer.as_ref()).to_string();
        assert_eq!(text, "reading x: connect: refused");
    }

    #[test]
    fn yaml_documents_parse_back_to_the_manifests() {
        let manifests = nimbus_kube::install::manifests(&InstallOptions::default()).unwrap();
        let yaml = to_yaml(&manifests).unwrap();
        assert!(yaml.starts_with("---\n"));
        let docs: Vec<serde_json::Value> = yaml
            .split("\n---\n")
            .map(|d| serde_saphyr::from_str(d.trim_start_matches("---\n")).unwrap())
            .collect();
        assert_eq!(docs.len(), manifests.len());
        for (doc, m) in docs.iter().zip(&manifests) {
            assert_eq!(doc, &m.object, "{}", m.display_name());
        }
    }
}
