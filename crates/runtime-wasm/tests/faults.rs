//! Bad components and misbehaving requests, with components kept as WAT text (no wasm32
//! toolchain needed): each bad input fails the revision with its reason; each fault is
//! answered cleanly and stays inside its request.

mod support;

use nimbus_runtime::{RevisionPhase, Runtime};
use support::*;

async fn failure_of(image: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = spec("bad-00001", image);
    runtime.set_desired(&spec, 1).await.unwrap();
    let failure = wait_failed(&runtime, &spec.revision).await;
    let endpoints = runtime.endpoints().get(&spec.revision).unwrap();
    assert!(endpoints.ready.is_empty());
    let published = endpoints
        .failure
        .clone()
        .expect("failure published for waiters");
    assert!(published.starts_with(&failure.0), "{published}");
    runtime.shutdown().await;
    failure
}

#[tokio::test]
async fn a_core_module_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let (reason, message) = failure_of(&wat_fixture(dir.path(), "core_module")).await;
    assert_eq!(reason, "InvalidComponent");
    assert!(
        message.contains("core WebAssembly module, not a component"),
        "{message}"
    );
    assert!(message.contains("default/bad-00001"), "{message}");
}

#[tokio::test]
async fn garbage_is_an_invalid_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.wasm");
    std::fs::write(&path, b"this is not wasm").unwrap();
    let (reason, message) = failure_of(path.to_str().unwrap()).await;
    assert_eq!(reason, "InvalidComponent");
    assert!(
        message.contains("not a valid WebAssembly component"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_file_is_image_not_found() {
    let (reason, message) = failure_of("file:///nonexistent/nope.wasm").await;
    assert_eq!(reason, "ImageNotFound");
    assert!(message.contains("/nonexistent/nope.wasm"), "{message}");
}

#[tokio::test]
async fn an_oci_reference_is_unsupported() {
    let (reason, message) = failure_of("ghcr.io/acme/hello:1.0").await;
    assert_eq!(reason, "UnsupportedImage");
    assert!(
        message.contains("OCI artifacts are not supported"),
        "{message}"
    );
}

#[tokio::test]
async fn a_component_without_the_http_export_is_the_wrong_world() {
    let dir = tempfile::tempdir().unwrap();
    let (reason, message) = failure_of(&wat_fixture(dir.path(), "no_export")).await;
    assert_eq!(reason, "WrongWorld");
    assert!(message.contains("wasi:http/incoming-handler"), "{message}");
}

#[tokio::test]
async fn a_component_with_unknown_imports_is_the_wrong_world() {
    let dir = tempfile::tempdir().unwrap();
    let (reason, message) = failure_of(&wat_fixture(dir.path(), "unknown_import")).await;
    assert_eq!(reason, "WrongWorld");
    assert!(message.contains("acme:billing/charge"), "{message}");
}

#[tokio::test]
async fn a_trap_is_a_500_and_the_next_request_runs() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let addr = serve_one(
        &runtime,
        &spec("trap-00001", &wat_fixture(dir.path(), "trap")),
    )
    .await;
    for _ in 0..3 {
        let (status, body) = get(&addr, "/").await;
        assert_eq!(status, 500);
        assert!(body.contains("the component trapped"), "{body}");
        assert!(body.contains("unreachable"), "{body}");
    }
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_loop_is_a_504_at_the_timeout_and_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spin = serve_one(
        &runtime,
        &spec("spin-00001", &wat_fixture(dir.path(), "spin")),
    )
    .await;
    let trap = serve_one(
        &runtime,
        &spec("trap-00001", &wat_fixture(dir.path(), "trap")),
    )
    .await;
    let started = std::time::Instant::now();
    let (spun, trapped) = tokio::join!(get(&spin, "/"), get(&trap, "/"));
    assert_eq!(trapped.0, 500, "a spinning request does not hold up others");
    assert_eq!(spun.0, 504, "{}", spun.1);
    assert!(spun.1.contains("request timeout"), "{}", spun.1);
    let took = started.elapsed();
    // Only a lower bound is a property: the deadline is counted in epoch ticks, so it may land
    // up to one tick early, and how late depends on the load.
    assert!(took >= TIMEOUT * 8 / 10, "{took:?}");
    assert_eq!(get(&spin, "/").await.0, 504, "the instance still serves");
    runtime.shutdown().await;
}

#[tokio::test]
async fn growing_past_the_memory_limit_is_a_500_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let addr = serve_one(
        &runtime,
        &spec("grow-00001", &wat_fixture(dir.path(), "grow")),
    )
    .await;
    for _ in 0..2 {
        let (status, body) = get(&addr, "/").await;
        assert_eq!(status, 500);
        assert!(body.contains("memory limit of 32 MiB"), "{body}");
    }
    runtime.shutdown().await;
}

#[tokio::test]
async fn the_revisions_memory_limit_replaces_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let mut spec = spec("grow-00001", &wat_fixture(dir.path(), "grow"));
    spec.resources.memory_limit = Some(8 << 20);
    let small = serve_one(&runtime, &spec).await;
    spec.revision.name = "grow-00002".into();
    spec.resources.memory_limit = Some(POOL_MEMORY as u64);
    let large = serve_one(&runtime, &spec).await;
    let (status, body) = get(&small, "/").await;
    assert_eq!(status, 500);
    assert!(body.contains("memory limit of 8 MiB"), "{body}");
    let (status, body) = get(&large, "/").await;
    assert_eq!(status, 500);
    assert!(body.contains("memory limit of 64 MiB"), "{body}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_memory_limit_above_the_pool_fails_the_revision_before_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let mut spec = spec("big-00001", &wat_fixture(dir.path(), "grow"));
    spec.resources.memory_limit = Some(1 << 30);
    runtime.set_desired(&spec, 1).await.unwrap();
    let status = runtime.status(&spec.revision).unwrap();
    let RevisionPhase::Failed { reason, message } = status.phase else {
        panic!("failed at set_desired, not later: {status:?}");
    };
    assert_eq!(reason, "MemoryLimitTooLarge");
    assert!(message.contains("default/big-00001"), "{message}");
    assert!(message.contains("1073741824 bytes (1 GiB)"), "{message}");
    assert!(message.contains("67108864 bytes (64 MiB)"), "{message}");
    assert!(
        message.contains("lower resources.limits.memory"),
        "{message}"
    );
    let endpoints = runtime.endpoints().get(&spec.revision).unwrap();
    assert!(
        endpoints
            .failure
            .as_deref()
            .unwrap()
            .starts_with("MemoryLimitTooLarge")
    );
    runtime.set_desired(&spec, 2).await.unwrap();
    assert_eq!(runtime.status(&spec.revision).unwrap().ready, 0);
    assert_eq!(
        runtime.compile_stats(),
        Default::default(),
        "nothing compiled"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn the_revisions_timeout_replaces_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_with(dir.path(), |c| c.request_timeout = PATIENCE);
    let mut spec = spec("spin-00001", &wat_fixture(dir.path(), "spin"));
    spec.request_timeout = Some(TIMEOUT);
    let addr = serve_one(&runtime, &spec).await;
    let started = std::time::Instant::now();
    let (status, body) = get(&addr, "/").await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("500ms"), "{body}");
    // Only a lower bound is a property: the deadline is counted in epoch ticks, so it may land
    // up to one tick early, and how late depends on the load.
    assert!(took >= TIMEOUT * 8 / 10, "{took:?}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_declared_oversized_body_is_a_413_before_instantiation() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let addr = serve_one(
        &runtime,
        &spec("trap-00001", &wat_fixture(dir.path(), "trap")),
    )
    .await;
    let big = vec![b'x'; MAX_BODY as usize + 1];
    let (status, body) = send(&addr, http::Method::POST, "/", Body::Fixed(big)).await;
    assert_eq!(status, 413, "the trapping guest never ran: {body}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn scaling_starts_and_stops_instances() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = spec("scale-00001", &wat_fixture(dir.path(), "trap"));
    runtime.set_desired(&spec, 3).await.unwrap();
    let status = wait_ready(&runtime, &spec.revision, 3).await;
    assert_eq!(status.phase, RevisionPhase::Ready);
    let endpoints = runtime.endpoints().get(&spec.revision).unwrap();
    let ids: Vec<&str> = endpoints.ready.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["scale-00001-1", "scale-00001-2", "scale-00001-3"]);
    let third = in_process(&endpoints.ready[2]);
    runtime.set_desired(&spec, 2).await.unwrap();
    assert_eq!(
        runtime.status(&spec.revision).unwrap().ready,
        2,
        "scale-down is immediate"
    );
    assert!(
        !instances(&runtime, &spec.revision).contains(&third),
        "newest stopped first"
    );
    runtime.set_desired(&spec, 0).await.unwrap();
    let status = runtime.status(&spec.revision).unwrap();
    assert_eq!((status.ready, status.phase), (0, RevisionPhase::Ready));
    assert!(runtime.endpoints().get(&spec.revision).is_none());
    runtime.set_desired(&spec, 1).await.unwrap();
    assert_eq!(
        runtime.status(&spec.revision).unwrap().ready,
        1,
        "from zero without waiting"
    );
    runtime.remove(&spec.revision).await;
    assert!(runtime.status(&spec.revision).is_none());
    assert!(runtime.endpoints().get(&spec.revision).is_none());
    runtime.shutdown().await;
}

#[tokio::test]
async fn set_desired_after_shutdown_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    runtime.shutdown().await;
    let spec = spec("late-00001", &wat_fixture(dir.path(), "trap"));
    assert!(runtime.set_desired(&spec, 1).await.is_err());
}

#[tokio::test]
async fn the_compiled_component_is_cached_and_reused_by_the_next_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let image = wat_fixture(dir.path(), "trap");
    let first = runtime(dir.path());
    serve_one(&first, &spec("cache-00001", &image)).await;
    assert_eq!(
        (
            first.compile_stats().compiled,
            first.compile_stats().cache_hits
        ),
        (1, 0)
    );
    first.shutdown().await;
    let cache = first.cache_dir().unwrap();
    let artifacts: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert_eq!(artifacts[0].extension().unwrap(), "cwasm");
    let written = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();
    drop(first);

    let second = runtime(dir.path());
    let addr = serve_one(&second, &spec("cache-00001", &image)).await;
    assert_eq!(
        (
            second.compile_stats().compiled,
            second.compile_stats().cache_hits
        ),
        (0, 1)
    );
    assert_eq!(
        std::fs::metadata(&artifacts[0])
            .unwrap()
            .modified()
            .unwrap(),
        written
    );
    assert_eq!(get(&addr, "/").await.0, 500, "the cached component runs");
    second.shutdown().await;
}

#[tokio::test]
async fn container_concurrency_is_left_to_the_router() {
    // The router sends an instance at most `containerConcurrency` requests at once; the
    // runtime does not count again, so requests sent directly all run at once.
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let mut spec = spec("spin-00001", &wat_fixture(dir.path(), "spin"));
    spec.container_concurrency = 1;
    let addr = serve_one(&runtime, &spec).await;
    let started = std::time::Instant::now();
    let (first, second) = tokio::join!(get(&addr, "/"), get(&addr, "/"));
    assert_eq!((first.0, second.0), (504, 504));
    let took = started.elapsed();
    assert!(took < TIMEOUT * 2, "both ran at once: {took:?}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_full_instance_pool_is_a_503() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_with(dir.path(), |c| c.max_instances = 1);
    let addr = serve_one(
        &runtime,
        &spec("spin-00001", &wat_fixture(dir.path(), "spin")),
    )
    .await;
    let (first, second) = tokio::join!(get(&addr, "/"), async {
        tokio::time::sleep(TIMEOUT / 5).await;
        get(&addr, "/").await
    });
    assert_eq!(first.0, 504);
    assert_eq!(second.0, 503, "{}", second.1);
    assert!(second.1.contains("retry later"), "{}", second.1);
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_known_revision_scales_at_once_without_awaiting() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = spec("now-00001", &wat_fixture(dir.path(), "trap"));
    assert!(
        !runtime.set_desired_now(&spec, 1),
        "an unknown revision's component must be loaded first"
    );
    runtime.set_desired(&spec, 0).await.unwrap();
    wait_until(&runtime, &spec.revision, "loaded", |s| {
        s.phase == RevisionPhase::Ready
    })
    .await;
    assert!(runtime.set_desired_now(&spec, 2));
    assert_eq!(
        instances(&runtime, &spec.revision).len(),
        2,
        "published at once"
    );
    assert!(runtime.set_desired_now(&spec, 0));
    assert!(runtime.endpoints().get(&spec.revision).is_none());
    runtime.shutdown().await;
}
