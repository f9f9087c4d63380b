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
    let client = Client::new(opts).await?;
    let base = file.parent().filter(|_| file != Path::new("-"));
    for mut obj in objects {
        if obj.metadata().namespace.is_none() {
            obj.metadata_mut().namespace = Some(opts.namespace.clone());
        }
        if let Some(base) = base {
            resolve_wasm_images(&mut obj, base)?;
        }
        let outcome = apply_one(&client, obj.clone()).await?;
        println!("{} {outcome}", display_name(obj.kind(), obj.name()));
    }
    Ok(())
}

/// A Wasm revision's `image:` written relative to the manifest (`./…` or `../…`) names a file
/// on this machine: send the server its absolute `file://` URL. (With kubectl, write the
/// absolute URL yourself.)
fn resolve_wasm_images(obj: &mut Object, base: &Path) -> anyhow::Result<()> {
    let (meta, spec) = match obj {
        Object::Service(s) => (&s.spec.template.metadata, &mut s.spec.template.spec),
        Object::Configuration(c) => (&c.spec.template.metadata, &mut c.spec.template.spec),
        Object::Revision(r) => (&r.metadata, &mut r.spec),
        _ => return Ok(()),
    };
    let backend = nimbus_api::runtime::runtime_choice(meta.annotations.as_ref(), spec).backend;
    if backend != nimbus_api::runtime::Backend::Wasm {
        return Ok(());
    }
    for c in &mut spec.containers {
        let Some(image) = c.image.as_mut() else {
            continue;
        };
        if image.starts_with("./") || image.starts_with("../") {
            let path = base.join(&*image);
            let absolute = std::fs::canonicalize(&path).with_context(|| {
                format!(
                    "image {image:?} is relative to the manifest, but {} does not exist; build the component first",
                    path.display()
                )
            })?;
            *image = format!("file://{}", absolute.display());
        }
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
/// A replace that loses a race with another write (the controller's status updates) reads
/// the object again and retries.
async fn apply_one(client: &Client, obj: Object) -> anyhow::Result<&'static str> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_apply(client, obj.clone()).await {
            Err(e) if attempt < 5 && crate::client::is_conflict(&e) => continue,
            other => return other,
        }
    }
}

async fn try_apply(client: &Client, obj: Object) -> anyhow::Result<&'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm_service(image: &str) -> Object {
        let yaml = format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: w}}\nspec:\n  template:\n    metadata:\n      annotations: {{nimbus.dev/runtime: wasm}}\n    spec:\n      containers: [{{image: \"{image}\"}}]\n"
        );
        nimbus_api::parse::parse_manifests("t", &yaml)
            .unwrap()
            .remove(0)
    }

    fn image(obj: &Object) -> String {
        let Object::Service(s) = obj else {
            unreachable!()
        };
        s.spec.template.spec.containers[0].image.clone().unwrap()
    }

    #[test]
    fn relative_wasm_images_resolve_against_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.wasm"), b"\0asm").unwrap();
        let mut obj = wasm_service("./app.wasm");
        resolve_wasm_images(&mut obj, dir.path()).unwrap();
        let expected = std::fs::canonicalize(dir.path().join("app.wasm")).unwrap();
        assert_eq!(image(&obj), format!("file://{}", expected.display()));
        let mut absolute = wasm_service("file:///srv/app.wasm");
        resolve_wasm_images(&mut absolute, dir.path()).unwrap();
        assert_eq!(
            image(&absolute),
            "file:///srv/app.wasm",
            "absolute URLs are kept"
        );
        let err = resolve_wasm_images(&mut wasm_service("./missing.wasm"), dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("build the component first"),
            "{err:#}"
        );
    }
}
