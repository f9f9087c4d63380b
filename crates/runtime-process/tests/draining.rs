//! Draining scale-down: an instance chosen for removal is unpublished first, keeps running while
//! the load probe (the router) reports requests in flight to it, and is signalled only then (or
//! after the drain timeout); the least busy instance is the one chosen.

mod support;

use std::sync::Arc;
use std::time::Duration;

use nimbus_runtime::Runtime;
use nimbus_runtime_process::{ProcessRuntime, ProcessRuntimeConfig};
use support::*;

fn runtime_with_probe(
    adjust: impl FnOnce(&mut ProcessRuntimeConfig),
) -> (Arc<ProcessRuntime>, Arc<FakeProbe>) {
    let runtime = runtime_with(adjust);
    let probe = Arc::new(FakeProbe::default());
    runtime.set_load_probe(probe.clone()).unwrap();
    (runtime, probe)
}

#[tokio::test]
async fn a_request_in_flight_completes_before_the_instance_is_stopped() {
    let (runtime, probe) = runtime_with_probe(|_| {});
    let spec = sleepy_server("drain-00001");
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let endpoint = endpoints(&runtime, &spec.revision)[0].clone();
    let pids = instance_pids(&spec.revision);
    assert!(!pids.is_empty());
    probe.set(&endpoint, 1); // the router counts the request before sending it
    let slow = tokio::spawn(get(endpoint.addr().unwrap(), "/sleep?ms=300"));
    runtime.set_desired(&spec, 0).await.unwrap(); // returns while the instance drains
    assert!(
        addrs(&runtime, &spec.revision).is_empty(),
        "unpublished first"
    );
    let body = slow.await.unwrap();
    assert!(body.starts_with("slept 300 ms"), "{body}");
    assert!(
        pids.iter().all(|&pid| alive(pid)),
        "not stopped while the probe still counts a request"
    );
    probe.set(&endpoint, 0);
    for pid in pids {
        wait_gone(pid).await;
    }
}

#[tokio::test]
async fn remove_waits_for_the_drain_and_the_stop() {
    let (runtime, probe) = runtime_with_probe(|_| {});
    let spec = sleepy_server("drain-remove-00001");
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let endpoint = endpoints(&runtime, &spec.revision)[0].clone();
    let pids = instance_pids(&spec.revision);
    probe.set(&endpoint, 1);
    let remove = tokio::spawn({
        let (runtime, key) = (runtime.clone(), spec.revision.clone());
        async move { runtime.remove(&key).await }
    });
    wait_published(&runtime, &spec.revision, "unpublished", |e| {
        e.ready.is_empty()
    })
    .await;
    let body = get(endpoint.addr().unwrap(), "/sleep?ms=50").await;
    assert!(body.starts_with("slept 50 ms"), "{body}");
    assert!(
        !remove.is_finished(),
        "remove waits while requests are in flight"
    );
    probe.set(&endpoint, 0);
    remove.await.unwrap();
    for pid in pids {
        assert!(!alive(pid), "remove returns once the process is gone");
    }
}

#[tokio::test]
async fn the_drain_timeout_bounds_the_wait() {
    let (runtime, probe) = runtime_with_probe(|c| c.drain_timeout = Duration::from_millis(100));
    let spec = sleepy_server("drain-stuck-00001");
    runtime.set_desired(&spec, 1).await.unwrap();
    wait_ready(&runtime, &spec.revision, 1).await;
    let endpoint = endpoints(&runtime, &spec.revision)[0].clone();
    let pids = instance_pids(&spec.revision);
    probe.set(&endpoint, 1); // never finishes
    runtime.set_desired(&spec, 0).await.unwrap();
    for pid in pids {
        wait_gone(pid).await;
    }
    runtime.shutdown().await;
}

#[tokio::test]
async fn scale_down_stops_the_idle_instance_not_the_busy_one() {
    let (runtime, probe) = runtime_with_probe(|_| {});
    let spec = sleepy_server("drain-pick-00001");
    runtime.set_desired(&spec, 2).await.unwrap();
    wait_ready(&runtime, &spec.revision, 2).await;
    let all = endpoints(&runtime, &spec.revision);
    // Without load, the newest would go; make it the busy one.
    let busy = all.iter().find(|e| e.id.ends_with("-2")).unwrap().clone();
    probe.set(&busy, 1);
    let slow = tokio::spawn(get(busy.addr().unwrap(), "/sleep?ms=200"));
    runtime.set_desired(&spec, 1).await.unwrap();
    assert_eq!(
        endpoints(&runtime, &spec.revision),
        std::slice::from_ref(&busy)
    );
    let body = slow.await.unwrap();
    assert!(body.starts_with("slept 200 ms"), "{body}");
    probe.set(&busy, 0);
    let status = runtime.status(&spec.revision).unwrap();
    assert_eq!((status.desired, status.actual, status.ready), (1, 1, 1));
    runtime.shutdown().await;
}

#[tokio::test]
async fn the_load_probe_is_set_once() {
    let (runtime, _) = runtime_with_probe(|_| {});
    let again = runtime.set_load_probe(Arc::new(FakeProbe::default()));
    assert!(again.is_err());
}
