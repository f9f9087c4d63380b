//! The Rust example component (`examples/hello-wasm`, built here for wasm32-wasip2): serving,
//! environment, scaling, and its fault routes contained. Skipped, with the reason printed,
//! when the wasm32-wasip2 target is not installed (`faults.rs` still covers the runtime).

mod support;

use std::sync::Arc;

use nimbus_runtime::Runtime;
use nimbus_runtime::env::{EnvVarRef, KeyRef, SourceKind};
use nimbus_runtime::volumes::{Volume, VolumeMount};
use support::*;

/// The example's image, or return early (skipping the test) when it cannot be built.
macro_rules! hello_or_skip {
    () => {
        match hello_wasm() {
            Some(path) => path.to_string_lossy().into_owned(),
            None => return,
        }
    };
}

#[tokio::test]
async fn answers_with_the_env_var_and_the_path() {
    let image = hello_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let mut spec = spec("hello-00001", &format!("file://{image}"));
    spec.env.extend([
        ("TARGET".into(), "first".into()),
        ("TARGET".into(), "Nimbus".into()),
    ]);
    let instance = serve_one(&runtime, &spec).await;
    let endpoints = runtime.endpoints().get(&spec.revision).unwrap();
    assert_eq!(endpoints.ready[0].id, "hello-00001-1");
    assert_eq!(endpoints.ready[0].addr(), None, "in process, no socket");
    let (status, body) = get(&instance, "/some/path?x=1").await;
    assert_eq!(status, 200);
    assert_eq!(body, "Hello Nimbus! You asked for /some/path?x=1\n");
    runtime.shutdown().await;
    assert!(runtime.endpoints().get(&spec.revision).is_none());
}

#[tokio::test]
async fn scales_to_zero_and_back() {
    let image = hello_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = spec("hello-00001", &image);
    let first = serve_one(&runtime, &spec).await;
    runtime.set_desired(&spec, 0).await.unwrap();
    assert!(runtime.endpoints().get(&spec.revision).is_none());
    assert_eq!(runtime.status(&spec.revision).unwrap().actual, 0);
    runtime.set_desired(&spec, 2).await.unwrap();
    let again = instances(&runtime, &spec.revision);
    assert_eq!(again.len(), 2, "running at once, no compile");
    assert!(!again.contains(&first));
    for addr in again {
        assert_eq!(
            get(&addr, "/").await,
            (200, "Hello World! You asked for /\n".into())
        );
    }
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_panic_is_a_500_and_the_next_request_is_fine() {
    let image = hello_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let addr = serve_one(&runtime, &spec("hello-00001", &image)).await;
    let (status, body) = get(&addr, "/trap").await;
    assert_eq!(status, 500);
    assert!(body.contains("the component trapped"), "{body}");
    assert_eq!(get(&addr, "/after").await.0, 200);
    runtime.shutdown().await;
}

#[tokio::test]
async fn an_infinite_loop_is_a_504_and_the_next_request_is_fine() {
    let image = hello_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let addr = serve_one(&runtime, &spec("hello-00001", &image)).await;
    let started = std::time::Instant::now();
    let (looped, meanwhile) = tokio::join!(get(&addr, "/loop"), async {
        tokio::time::sleep(TIMEOUT / 5).await;
        get(&addr, "/meanwhile").await
    });
    assert_eq!(meanwhile.0, 200, "served while another request spins");
    assert_eq!(looped.0, 504, "{}", looped.1);
    assert!(started.elapsed() < TIMEOUT * 10);
    assert_eq!(get(&addr, "/after").await.0, 200);
    runtime.shutdown().await;
}

#[tokio::test]
async fn unbounded_allocation_is_a_500_at_the_memory_limit() {
    let image = hello_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let addr = serve_one(&runtime, &spec("hello-00001", &image)).await;
    let (status, body) = get(&addr, "/alloc").await;
    assert_eq!(status, 500);
    assert!(body.contains("memory limit of 32 MiB"), "{body}");
    assert_eq!(get(&addr, "/after").await.0, 200);
    runtime.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_declared_or_streamed() {
    let image = hello_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let addr = serve_one(&runtime, &spec("hello-00001", &image)).await;
    let small = vec![b'x'; MAX_BODY as usize];
    let big = vec![b'x'; MAX_BODY as usize + 1];
    let post = |body| send(&addr, http::Method::POST, "/echo", body);
    assert_eq!(
        post(Body::Fixed(small.clone())).await,
        (200, "1024 bytes\n".into())
    );
    assert_eq!(
        post(Body::Chunked(small)).await,
        (200, "1024 bytes\n".into())
    );
    assert_eq!(post(Body::Fixed(big.clone())).await.0, 413);
    assert_eq!(post(Body::Chunked(big)).await.0, 413);
    assert_eq!(get(&addr, "/after").await.0, 200);
    runtime.shutdown().await;
}

#[tokio::test]
async fn outbound_http_is_denied_unless_the_revision_allows_the_host() {
    let image = hello_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let target = http_target().await;
    let denied = serve_one(&runtime, &spec("hello-00001", &image)).await;
    let mut allowing = spec("hello-00002", &image);
    allowing.allowed_outbound_hosts = vec!["localhost".into(), "127.0.0.1".into()];
    let allowed = serve_one(&runtime, &allowing).await;
    let (status, body) = get(&denied, &format!("/fetch?{target}")).await;
    assert_eq!(status, 200);
    assert!(body.contains("HttpRequestDenied"), "{body}");
    assert_eq!(
        get(&allowed, &format!("/fetch?{target}")).await.1,
        "fetched: 200\n"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn the_runtimes_outbound_hosts_apply_when_the_revision_names_none() {
    let image = hello_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let addr = http_target().await;
    let allowing = runtime_with(dir.path(), |c| {
        c.allowed_outbound_hosts = vec!["127.0.0.1".into()]
    });
    let by_default = serve_one(&allowing, &spec("hello-00001", &image)).await;
    assert_eq!(
        get(&by_default, &format!("/fetch?{addr}")).await.1,
        "fetched: 200\n"
    );
    let mut elsewhere = spec("hello-00002", &image);
    elsewhere.allowed_outbound_hosts = vec!["example.com".into()];
    let replaced = serve_one(&allowing, &elsewhere).await;
    let (_, body) = get(&replaced, &format!("/fetch?{addr}")).await;
    assert!(
        body.contains("HttpRequestDenied"),
        "replaced, not added: {body}"
    );
    allowing.shutdown().await;
}

#[tokio::test]
async fn what_the_component_prints_lands_in_its_instance_log() {
    let image = hello_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = spec("hello-00001", &image);
    let instance = serve_one(&runtime, &spec).await;
    assert_eq!(get(&instance, "/log?hi").await, (200, "logged\n".into()));
    let logs = dir.path().join("logs/default/hello-00001");
    let expected = [
        ("hello-00001-1", nimbus_logs::Stream::Stdout, "hi"),
        ("hello-00001-1", nimbus_logs::Stream::Stderr, "hi on stderr"),
        (
            "hello-00001-1",
            nimbus_logs::Stream::Stdout,
            "hi without newline",
        ),
    ];
    // The partial last line is written once the guest returns, which may be after the response.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let lines = nimbus_logs::read_revision(&logs, None, None).unwrap();
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l.instance.as_str(), l.stream, l.text.as_str()))
            .collect();
        if got == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    runtime.shutdown().await;
}

/// Issue #13: each instance reads its Secret references and writes its volumes when it starts
/// (a running one keeps what it read); a volume is a read-only preopened directory at its
/// mount path; a missing Secret fails the revision with `CreateContainerConfigError` until it
/// exists; an instance's files go with it.
#[tokio::test]
async fn instances_read_secrets_and_volumes_when_they_start() {
    let image = hello_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let objects = Arc::new(Objects::default());
    runtime.set_config_source(objects.clone());
    let mut spec = spec("hello-00001", &image);
    spec.env_refs.vars.push(EnvVarRef {
        name: "TARGET".into(),
        at: spec.env.len(),
        value: KeyRef {
            source: SourceKind::Secret,
            name: "db".into(),
            key: "password".into(),
            optional: false,
        },
    });
    spec.volumes.push(Volume {
        name: "cfg".into(),
        source: SourceKind::ConfigMap,
        object: "cfg".into(),
        items: None,
        default_mode: 0o644,
        optional: false,
    });
    spec.volume_mounts.push(VolumeMount {
        volume: "cfg".into(),
        mount_path: "/etc/cfg".into(),
        sub_path: None,
    });
    objects.set(SourceKind::ConfigMap, "cfg", "app.toml", "a = 1");

    runtime.set_desired(&spec, 1).await.unwrap();
    let (reason, message) = wait_failed(&runtime, &spec.revision).await;
    assert_eq!(reason, "CreateContainerConfigError");
    assert_eq!(message, "secret \"db\" not found");
    objects.set(SourceKind::Secret, "db", "password", "first");
    wait_ready(&runtime, &spec.revision, 1).await; // retried by itself
    let first = instances(&runtime, &spec.revision).remove(0);
    assert_eq!(get(&first, "/").await.1, "Hello first! You asked for /\n");
    assert_eq!(get(&first, "/file?/etc/cfg/app.toml").await.1, "a = 1");
    let outside = get(&first, "/file?/etc/passwd").await.1;
    assert!(outside.starts_with("cannot read /etc/passwd"), "{outside}");

    objects.set(SourceKind::Secret, "db", "password", "second");
    objects.set(SourceKind::ConfigMap, "cfg", "app.toml", "a = 2");
    runtime.set_desired(&spec, 2).await.unwrap();
    wait_ready(&runtime, &spec.revision, 2).await;
    let second = instances(&runtime, &spec.revision)
        .into_iter()
        .find(|i| *i != first)
        .unwrap();
    assert_eq!(get(&second, "/").await.1, "Hello second! You asked for /\n");
    assert_eq!(get(&second, "/file?/etc/cfg/app.toml").await.1, "a = 2");
    assert_eq!(get(&first, "/").await.1, "Hello first! You asked for /\n");
    assert_eq!(get(&first, "/file?/etc/cfg/app.toml").await.1, "a = 1");

    // The second instance's directory (one per start: `<id>.<start>`).
    let second_dir = std::fs::read_dir(dir.path().join("instances/default"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("hello-00001-2.")
        })
        .expect("the second instance's directory");
    let volumes = second_dir.join("volumes/cfg/app.toml");
    assert!(volumes.exists());
    runtime.set_desired(&spec, 1).await.unwrap();
    drop(second);
    assert!(!volumes.exists(), "a stopped instance's files are removed");
    runtime.shutdown().await;
}
