//! Container images end to end with the real binary, runc and a local registry: an image pushed
//! to a registry (with basic auth) is deployed by reference and served through the router, with
//! the Knative runtime contract inside (limits as cgroup values, /tmp, /dev, /proc/sys, the
//! image's user); the same image imported from a `docker save` archive with `nimbus image
//! import`; registry and image faults become the revision's reason; a container's memory hog is
//! OOM-killed. Skipped (saying why) without root, runc, skopeo or docker-registry, except in CI.

use std::path::Path;
use std::time::{Duration, Instant};

use nimbus_testkit::image::{Registry, skopeo_copy, test_rootfs, write_oci_layout};
use nimbus_testkit::{Nimbus, RouterClient, condition, manifest};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const LAYOUT_REF: &str = "test.local/test-app:1";

fn can_run() -> bool {
    nimbus_testkit::image::can_run_containers(&["runc", "skopeo", "docker-registry"])
}

/// A temp dir with an OCI layout of the test app (entrypoint `/app/test-app`, user `app`), or
/// with `config` as the image config.
fn layout(config: serde_json::Value) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    test_rootfs(&rootfs).unwrap();
    let layout = dir.path().join("layout");
    write_oci_layout(&rootfs, &layout, LAYOUT_REF, &config).unwrap();
    (dir, layout)
}

fn app_config() -> serde_json::Value {
    serde_json::json!({
        "Entrypoint": ["/app/test-app"],
        "Env": ["PATH=/bin", "FROM_IMAGE=yes"],
        "WorkingDir": "/app",
        "User": "app",
    })
}

/// A Service running `image` (minScale 1) with `extra` container fields.
fn service(name: &str, image: &str, extra: &str) -> String {
    let scale = [("autoscaling.knative.dev/min-scale", "1")];
    manifest::service(name, &scale, "", &format!("image: {image}\n{extra}"))
}

/// Poll the first revision's Ready condition until it has `reason`; returns its message.
async fn wait_reason(nimbus: &Nimbus, name: &str, reason: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let path = format!("/apis/serving.knative.dev/v1/namespaces/default/revisions/{name}-00001");
    loop {
        let rev = nimbus.api_get(&path).await.unwrap().unwrap_or_default();
        let c = condition(&rev["status"], "Ready");
        if c.1 == reason {
            return c.2;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: no {reason}; last: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn host(name: &str) -> String {
    format!("{name}.default.localhost")
}

/// The message of an Event with `reason` about `revision`, once there is one.
async fn wait_event(nimbus: &Nimbus, revision: &str, reason: &str) -> String {
    let path = format!(
        "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{revision}%2Creason%3D{reason}"
    );
    let what = format!("a {reason} event on {revision}");
    nimbus_testkit::api::wait_until(&what, Duration::from_secs(60), async || {
        let list = nimbus.api_get(&path).await.map_err(|e| e.to_string())?;
        let first = list.and_then(|l| l["items"].get(0).cloned());
        first
            .and_then(|e| e["message"].as_str().map(str::to_string))
            .ok_or_else(|| "none yet".to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_from_a_registry_is_deployed_by_reference_with_the_runtime_contract() {
    if !can_run() {
        return;
    }
    let (_dir, layout) = layout(app_config());
    let registry = Registry::start(Some(("nimbus", "s3cret"))).unwrap();
    registry
        .push(
            &layout,
            LAYOUT_REF,
            "apps/test-app:1",
            Some(("nimbus", "s3cret")),
        )
        .unwrap();
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let image = format!("{}/apps/test-app:1", registry.addr);

    // Without credentials the registry refuses, and the revision says what to do.
    nimbus.apply_ok(&service("anon", &image, ""));
    let message = wait_reason(&nimbus, "anon", "RegistryUnauthorized").await;
    assert!(message.contains("nimbus registry login"), "{message}");

    nimbus.cli_ok(&[
        "registry",
        "login",
        &registry.addr,
        "-u",
        "nimbus",
        "-p",
        "s3cret",
    ]);
    let extra = "env: [{name: MESSAGE, value: from-registry}]\nresources: {limits: {memory: 128Mi, cpu: \"1\"}, requests: {cpu: 125m}}";
    nimbus.apply_ok(&service("reg", &image, extra));
    nimbus
        .wait_service_ready("reg", Duration::from_secs(120))
        .await
        .unwrap();
    let client = RouterClient::new(&nimbus.http_addr);
    let reply = client.get(&host("reg"), "/").await.unwrap();
    assert_eq!(reply.body.trim(), "hello from test-app: from-registry");

    let contract = client.get(&host("reg"), "/contract").await.unwrap();
    let c: serde_json::Value = serde_json::from_str(&contract.body).unwrap();
    assert_eq!(c["tmp_mode"], "1777", "{c:#}");
    assert_eq!(c["uid"], 1000, "the image's user: {c:#}");
    assert_eq!(c["proc_sys_writable"], false, "{c:#}");
    assert_eq!(c["resolv_conf"], true, "{c:#}");
    assert_eq!(c["dev"]["/dev/console"], false, "{c:#}");
    for dev in [
        "/dev/null",
        "/dev/zero",
        "/dev/urandom",
        "/dev/fd",
        "/dev/stdout",
    ] {
        assert_eq!(c["dev"][dev], true, "{dev}: {c:#}");
    }
    assert_eq!(c["dev_fd_link"], "/proc/self/fd", "{c:#}");
    let cgroup = &c["cgroup"];
    let value = |v1: &str, v2: &str| {
        cgroup[v1]
            .as_str()
            .or(cgroup[v2].as_str())
            .map(str::to_owned)
    };
    assert_eq!(
        value(
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory.max"
        )
        .as_deref(),
        Some("134217728"),
        "{c:#}"
    );
    if let Some(quota) = cgroup["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"].as_str() {
        assert_eq!(quota, "100000");
        assert_eq!(cgroup["/sys/fs/cgroup/cpu/cpu.cfs_period_us"], "100000");
        assert_eq!(cgroup["/sys/fs/cgroup/cpu/cpu.shares"], "128");
    } else {
        assert_eq!(cgroup["/sys/fs/cgroup/cpu.max"], "100000 100000", "{c:#}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_imported_from_a_docker_save_archive_is_served() {
    if !can_run() {
        return;
    }
    let (dir, layout) = layout(app_config());
    let archive = dir.path().join("test-app.tar");
    skopeo_copy(
        &format!("oci:{}:{LAYOUT_REF}", layout.display()),
        &format!("docker-archive:{}:imported/test-app:2", archive.display()),
        &[],
    )
    .unwrap();
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let out = nimbus.cli_ok(&["image", "import", archive.to_str().unwrap()]);
    assert!(out.contains("docker.io/imported/test-app:2"), "{out}");
    assert!(
        nimbus
            .cli_ok(&["image", "ls"])
            .contains("docker.io/imported/test-app:2")
    );

    // A corrupt archive is refused with its reason and stores nothing.
    let corrupt = dir.path().join("corrupt.tar");
    std::fs::write(&corrupt, b"not a tar at all").unwrap();
    let out = nimbus.cli(&["image", "import", corrupt.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt.tar"), "{stderr}");
    assert_eq!(
        nimbus.cli_ok(&["image", "ls"]).lines().count(),
        2,
        "header and one image"
    );

    let extra = "securityContext: {runAsUser: 4242}";
    nimbus.apply_ok(&service("imported", "imported/test-app:2", extra));
    nimbus
        .wait_service_ready("imported", Duration::from_secs(120))
        .await
        .unwrap();
    let client = RouterClient::new(&nimbus.http_addr);
    let reply = client.get(&host("imported"), "/contract").await.unwrap();
    let c: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        c["uid"], 4242,
        "runAsUser wins over the image's user: {c:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn image_faults_are_the_revisions_reason() {
    if !can_run() {
        return;
    }
    let (_dir, layout) = layout(serde_json::json!({"Env": ["PATH=/bin"]}));
    let registry = Registry::start(None).unwrap();
    registry
        .push(&layout, LAYOUT_REF, "apps/bare:1", None)
        .unwrap();
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();

    nimbus.apply_ok(&service(
        "missing",
        &format!("{}/apps/nope:1", registry.addr),
        "",
    ));
    wait_reason(&nimbus, "missing", "ImageNotFound").await;

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    nimbus.apply_ok(&service("offline", &format!("{closed}/apps/x:1"), ""));
    let message = wait_reason(&nimbus, "offline", "RegistryUnavailable").await;
    assert!(message.contains(&closed.to_string()), "{message}");

    nimbus.apply_ok(&service(
        "bare",
        &format!("{}/apps/bare:1", registry.addr),
        "",
    ));
    let message = wait_reason(&nimbus, "bare", "NoCommand").await;
    assert!(message.contains("command"), "{message}");

    // Issue #13: runAsNonRoot is enforced (the image has no USER, so it runs as root).
    nimbus.apply_ok(&service(
        "rootful",
        &format!("{}/apps/bare:1", registry.addr),
        "command: [/app/test-app]\nsecurityContext: {runAsNonRoot: true}",
    ));
    let message = wait_reason(&nimbus, "rootful", "CreateContainerConfigError").await;
    assert!(message.contains("runAsNonRoot"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_memory_hog_is_oom_killed() {
    if !can_run() {
        return;
    }
    let (_dir, layout) = layout(app_config());
    let registry = Registry::start(None).unwrap();
    registry
        .push(&layout, LAYOUT_REF, "apps/test-app:1", None)
        .unwrap();
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let image = format!("{}/apps/test-app:1", registry.addr);
    let extra = "resources: {limits: {memory: 32Mi}}";
    nimbus.apply_ok(&service("hog", &image, extra));
    nimbus
        .wait_service_ready("hog", Duration::from_secs(120))
        .await
        .unwrap();
    let client = RouterClient::new(&nimbus.http_addr);
    let _ = client.get(&host("hog"), "/alloc?mb=200").await;
    let message = wait_reason(&nimbus, "hog", "OOMKilled").await;
    assert!(message.contains("memory limit"), "{message}");
    // The kubelet's events on the revision: its image pulled, then the kill and the back-off.
    for reason in ["Pulled", "OOMKilled", "BackOff"] {
        let found = wait_event(&nimbus, "hog-00001", reason).await;
        assert!(!found.is_empty(), "{reason}");
    }
    let reply = client
        .get_until(&host("hog"), "/", Duration::from_secs(60), |r| {
            r.status == 200
        })
        .await
        .unwrap();
    assert!(reply.body.contains("hello from test-app"));
}
