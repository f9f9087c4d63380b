//! The launcher with a real image store: an image imported from an OCI layout is prepared
//! through `ImageStore::ensure` and runs (as root with runc; otherwise `SKIPPED: …`), and
//! store failures reach the revision as the image crate's reasons.

mod support;

use std::sync::Arc;

use nimbus_image::{ImageStore, NoProgress, StoreOptions};
use nimbus_runtime_container::{OciConfig, OciLauncher};
use nimbus_runtime_process::Launcher;
use support::*;

#[tokio::test]
async fn an_imported_image_is_prepared_from_the_store_and_serves() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let layout = fixture.dir.path().join("layout");
    let config = serde_json::json!({
        "Entrypoint": ["/app/test-app"],
        "Env": ["PATH=/bin", "FROM_IMAGE=yes"],
        "WorkingDir": "/app",
        "User": "app",
    });
    nimbus_testkit::image::write_oci_layout(&fixture.rootfs, &layout, REFERENCE, &config)
        .expect("OCI layout");
    let store = ImageStore::open(fixture.dir.path().join("images"), StoreOptions::default())
        .expect("store");
    store.import(&layout, &NoProgress).expect("import");
    let launcher = OciLauncher::new(Arc::new(store), fixture.config());

    let spec = spec("store-00001");
    let (id, port) = (instance_id("store"), free_port());
    let ctx = fixture.context(&id, port, None);
    let mut running = Running::start(&launcher, &spec, &ctx).await;
    wait_hello(&running).await;
    let (_, env) = get(running.addr, "/env").await.expect("/env");
    assert!(env.contains("FROM_IMAGE=yes"), "{env}");
    launcher.cleanup(&ctx).await;
    running.exit_code().await;
    assert!(!mounted_below(fixture.dir.path()));
}

#[tokio::test]
async fn an_unreachable_registry_is_the_revisions_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        ImageStore::open(dir.path().join("images"), StoreOptions::default()).expect("store");
    let launcher = OciLauncher::new(Arc::new(store), OciConfig::new(dir.path().join("runc")));
    let mut spec = spec("unreachable-00001");
    spec.image = Some("127.0.0.1:1/nothing:1".into());
    let error = launcher
        .prepare(&spec)
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(error.reason, "RegistryUnavailable", "{}", error.message);
    assert!(error.message.contains("127.0.0.1:1"), "{}", error.message);
}
