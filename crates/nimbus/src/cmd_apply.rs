//! `nimbus apply -f FILE`: parse locally (errors name file, line and field), then create or
//! replace each object.

use std::io::Read;
use std::path::Path;

use anyhow::Context as _;
use nimbus_api::Object;

use crate::ClientOpts;
use crate::client::{Client, display_name};

pub async fn run(opts: &ClientOpts, file: &Path) -> anyhow::Result<()> {
    let (source, text) = read_source(file)?;
    let objects = nimbus_api::parse::parse_manifests(&source, &text)?;
    if objects.is_empty() {
        anyhow::bail!(
            "{source}: no objects found; expected Knative Service, Configuration or Route documents"
        );
    }
    let client = Client::new(opts)?;
    for mut obj in objects {
        if obj.metadata().namespace.is_none() {
            obj.metadata_mut().namespace = Some(opts.namespace.clone());
        }
        let outcome = apply_one(&client, obj.clone()).await?;
        println!("{} {outcome}", display_name(obj.kind(), obj.name()));
    }
    Ok(())
}

fn read_source(file: &Path) -> anyhow::Result<(String, String)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok(("<stdin>".to_string(), text));
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok((file.display().to_string(), text))
}

/// Create, or replace spec/labels/annotations of the existing object. Returns what happened.
async fn apply_one(client: &Client, obj: Object) -> anyhow::Result<&'static str> {
    let scoped = client.with_namespace(obj.namespace());
    match scoped.get(obj.kind(), obj.name()).await? {
        None => {
            client.create(&obj).await?;
            Ok("created")
        }
        Some(existing) => {
            let before = existing.metadata().resource_version.clone();
            let mut next = obj;
            let meta = next.metadata_mut();
            meta.resource_version = before.clone();
            let after = client.replace(&next).await?;
            Ok(if after.metadata().resource_version == before {
                "unchanged"
            } else {
                "configured"
            })
        }
    }
}
