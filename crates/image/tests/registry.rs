//! Pulling from a real registry (Debian's `docker-registry` on 127.0.0.1) that the test
//! fills with skopeo: pull and cache, basic auth, and each registry failure with its reason
//! and an untouched store.

mod support;

use std::path::Path;

use nimbus_image::{ImageStore, NoProgress, StoreOptions, login};
use nimbus_testkit::image::{Registry, have_tools, skopeo_copy};

use support::*;

/// A fixture and a registry holding it as `hello:1`, or `None` when the tools are missing.
fn setup(auth: Option<(&str, &str)>) -> Option<(Fixture, Registry)> {
    if !have_tools(&["docker-registry", "skopeo"]) {
        return None;
    }
    let fx = Fixture::new("hello:1");
    let registry = Registry::start(auth).unwrap();
    registry
        .push(&fx.layout, "hello:1", "hello:1", auth)
        .unwrap();
    Some((fx, registry))
}

#[tokio::test]
async fn ensure_pulls_once_then_answers_from_the_store() {
    let Some((fx, registry)) = setup(None) else {
        return;
    };
    let store = fx.store();
    let reference = format!("{}/hello:1", registry.addr);
    let progress = Recorder::default();
    let image = store.ensure(&reference, &progress).await.unwrap();
    assert_eq!(image.reference, reference);
    assert_app_config(&image.config);
    assert_rootfs(&image.rootfs);
    assert_eq!(progress.count("pulling"), 1);
    assert!(*progress.layer_updates.lock().unwrap() > 0);
    assert_eq!(store.list().unwrap()[0].reference, reference);

    drop(registry); // from now on the registry is gone
    let again = store.ensure(&reference, &progress).await.unwrap();
    assert_eq!(again.digest, image.digest);
    assert_eq!(progress.count("pulling"), 1, "no second pull");
    let err = store.pull(&reference, &NoProgress).await.unwrap_err();
    assert_eq!(err.reason(), "RegistryUnavailable", "{err}");
}

#[tokio::test]
async fn concurrent_ensures_pull_once() {
    let Some((fx, registry)) = setup(None) else {
        return;
    };
    let store = fx.store();
    let reference = format!("{}/hello:1", registry.addr);
    let progress = Recorder::default();
    let (a, b, c) = tokio::join!(
        store.ensure(&reference, &progress),
        store.ensure(&reference, &progress),
        store.ensure(&reference, &progress),
    );
    let digests = [a.unwrap().digest, b.unwrap().digest, c.unwrap().digest];
    assert!(digests.iter().all(|d| *d == digests[0]));
    assert_eq!(progress.count("pulling"), 1);
    assert_eq!(
        std::fs::read_dir(fx.store_root().join("tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn a_digest_reference_pulls_by_digest() {
    let Some((fx, registry)) = setup(None) else {
        return;
    };
    let store = fx.store();
    let reference = format!("{}/hello@{}", registry.addr, fx.digests.manifest);
    let image = store.ensure(&reference, &NoProgress).await.unwrap();
    assert_eq!(image.digest, fx.digests.manifest);
    assert!(store.list().unwrap().is_empty(), "digests are not tags");
}

#[tokio::test]
async fn basic_auth_needs_the_right_login() {
    let creds = ("alice", "s3cret");
    let Some((fx, registry)) = setup(Some(creds)) else {
        return;
    };
    let reference = format!("{}/hello:1", registry.addr);
    let auth_file = fx.path("auth.json");
    let options = StoreOptions {
        auth_file: Some(auth_file.clone()),
        ..Default::default()
    };

    let err = fx
        .store_with(options.clone())
        .ensure(&reference, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "RegistryUnauthorized", "anonymous: {err}");
    assert!(
        err.to_string().contains("no credentials are stored"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("nimbus registry login {}", registry.addr)),
        "{err}"
    );

    login(&auth_file, &registry.addr, "alice", "wrong").unwrap();
    let err = fx
        .store_with(options.clone())
        .ensure(&reference, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        err.reason(),
        "RegistryUnauthorized",
        "wrong password: {err}"
    );
    assert!(
        err.to_string()
            .contains("credentials of alice were rejected"),
        "{err}"
    );
    assert_nothing_stored(&fx.store_root());

    login(&auth_file, &registry.addr, "alice", "s3cret").unwrap();
    let image = fx
        .store_with(options)
        .ensure(&reference, &NoProgress)
        .await
        .unwrap();
    assert_rootfs(&image.rootfs);
}

#[tokio::test]
async fn unknown_tag_and_repository_are_not_found() {
    let Some((fx, registry)) = setup(None) else {
        return;
    };
    let store = fx.store();
    for name in ["hello:nope", "nobody/here:1"] {
        let reference = format!("{}/{name}", registry.addr);
        let err = store.ensure(&reference, &NoProgress).await.unwrap_err();
        assert_eq!(err.reason(), "ImageNotFound", "{reference}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(&reference) && text.contains(&registry.addr),
            "{text}"
        );
    }
    assert_nothing_stored(&fx.store_root());
}

#[tokio::test]
async fn an_unreachable_registry_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = ImageStore::open(dir.path(), StoreOptions::default()).unwrap();
    let err = store
        .ensure(&format!("127.0.0.1:{port}/hello:1"), &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "RegistryUnavailable", "{err}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert_nothing_stored(dir.path());
}

#[tokio::test]
async fn invalid_names_are_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path(), StoreOptions::default()).unwrap();
    let err = store.ensure("Not A Name", &NoProgress).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidImageName", "{err}");
}

#[tokio::test]
async fn a_blob_corrupted_in_the_registry_is_a_digest_mismatch() {
    let Some((fx, registry)) = setup(None) else {
        return;
    };
    let hex = fx.digests.layer.trim_start_matches("sha256:");
    let data = registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    tamper(&data);
    let store = fx.store();
    let err = store
        .ensure(&format!("{}/hello:1", registry.addr), &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "DigestMismatch", "{err}");
    assert_nothing_stored(&fx.store_root());
}

/// Flip the last byte of a file.
fn tamper(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn an_image_index_resolves_to_this_machines_manifest() {
    let Some((fx, registry)) = setup(None) else {
        return;
    };
    let index = make_multi_platform(&fx.layout, &fx.digests, "multi:1", true);
    skopeo_copy(
        &format!("oci:{}:multi:1", fx.layout.display()),
        &format!("docker://{}/multi:1", registry.addr),
        &["--dest-tls-verify=false", "--all"],
    )
    .unwrap();
    let store = fx.store();
    let image = store
        .ensure(&format!("{}/multi:1", registry.addr), &NoProgress)
        .await
        .unwrap();
    assert_eq!(image.digest, fx.digests.manifest);
    assert_rootfs(&image.rootfs);
    drop(registry);
    let by_index = store
        .ensure(&format!("127.0.0.1:1/multi@{index}"), &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        by_index.digest, fx.digests.manifest,
        "the index digest is satisfied locally"
    );
}
