//! `nimbus export SERVICE`: the Service as plain Kubernetes manifests (see
//! `nimbus_kube::export`), from whichever API the CLI talks to: embedded or a cluster's.

use anyhow::{Context as _, bail};
use nimbus_api::constants::LABEL_SERVICE;
use nimbus_api::{Kind, Object};

use crate::ClientOpts;
use crate::client::Client;

pub async fn run(opts: &ClientOpts, name: &str, output: Option<&str>) -> anyhow::Result<()> {
    let client = Client::new(opts).await?;
    let Some(Object::Service(svc)) = client.get(Kind::Service, name).await? else {
        bail!(
            "service \"{name}\" not found in namespace \"{}\"",
            opts.namespace
        );
    };
    let revisions: Vec<_> = client
        .list(Kind::Revision, false)
        .await?
        .into_iter()
        .filter_map(|o| match o {
            Object::Revision(r)
                if r.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_SERVICE))
                    == Some(&name.to_string()) =>
            {
                Some(r)
            }
            _ => None,
        })
        .collect();
    let domain = domain_of(&svc)?;
    let objects =
        nimbus_kube::export::export(&svc, &revisions, &domain).map_err(anyhow::Error::msg)?;
    let text = match output {
        None | Some("yaml") => objects
            .iter()
            .map(|o| Ok(format!("---\n{}", serde_saphyr::to_string(o)?)))
            .collect::<anyhow::Result<String>>()?,
        Some("json") => {
            serde_json::to_string_pretty(&serde_json::json!({
                "apiVersion": "v1", "kind": "List", "items": objects
            }))? + "\n"
        }
        Some(other) => bail!("unknown output format {other:?}; use yaml or json"),
    };
    // A reader that stops early (`| head`) is not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    Ok(())
}

/// The route domain, from the Service's URL (`http://hello.default.example.com`).
fn domain_of(svc: &nimbus_api::Service) -> anyhow::Result<String> {
    let url = svc
        .status
        .as_ref()
        .and_then(|s| s.url.clone())
        .context("the service has no URL yet; is it Ready?")?;
    let host = url
        .split_once("://")
        .map_or(url.as_str(), |(_, h)| h)
        .split([':', '/'])
        .next()
        .unwrap_or_default();
    let prefix = format!("{}.{}.", svc.name(), svc.namespace());
    Ok(host.strip_prefix(&prefix).unwrap_or(host).to_string())
}
