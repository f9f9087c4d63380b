//! Scaling with demand, end to end with the real binary: scale to zero and back with the
//! cold-start header, a burst scales up and back down, containerConcurrency is a hard limit,
//! and a scale-down under steady load loses no request.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nimbus_testkit::{Nimbus, RouterClient, manifest};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");

fn service(name: &str, annotations: &[(&str, &str)], spec_extra: &str) -> String {
    let mut all = vec![
        ("autoscaling.knative.dev/window", "6s"),
        ("nimbus.dev/scale-to-zero-grace-period", "0s"),
    ];
    all.extend_from_slice(annotations);
    let spec = format!("runtimeClassName: process\n{spec_extra}");
    let container = format!("command: [\"{BIN}\"]\nargs: [\"sample-function\"]");
    manifest::service(name, &all, &spec, &container)
}

async fn start_with(yaml: &str, name: &str) -> (Nimbus, RouterClient) {
    Nimbus::start_serving(
        Path::new(BIN),
        &["--autoscaler-tick", "250ms"],
        yaml,
        name,
        Duration::from_secs(30),
    )
    .await
    .unwrap()
}

/// `clients` concurrent loops GETting `path` until `stop`; returns (ok, failed) counts.
fn load(
    client: &RouterClient,
    host: &str,
    path: &str,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    let ok = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, host, path, stop, ok) = (
            client.clone(),
            host.to_string(),
            path.to_string(),
            stop.clone(),
            ok.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match client.get(&host, &path).await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failures.push(format!("{} {}", r.status, r.body.trim())),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }));
    }
    tokio::spawn(async move {
        let mut failures = Vec::new();
        for t in tasks {
            failures.extend(t.await.unwrap());
        }
        (ok.load(Ordering::SeqCst), failures)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scales_to_zero_and_back_with_the_cold_start_header() {
    let (nimbus, client) = start_with(&service("idle", &[], ""), "idle").await;
    let host = "idle.default.localhost";
    let warm = client.get(host, "/").await.unwrap();
    assert_eq!(warm.status, 200);
    assert!(
        warm.headers.get("x-nimbus-cold-start").is_none(),
        "a warm request has no cold-start header"
    );
    nimbus
        .wait_replicas("idle-00001", Duration::from_secs(40), |actual, desired| {
            actual == 0 && desired == 0
        })
        .await;
    let table = nimbus.cli_ok(&["get", "revisions"]);
    assert!(table.contains("idle-00001"), "{table}");
    let cold = client.get(host, "/").await.unwrap();
    assert_eq!(cold.status, 200, "{cold:?}");
    let waited = cold
        .headers
        .get("x-nimbus-cold-start")
        .expect("cold-start header")
        .to_str()
        .unwrap()
        .to_string();
    assert!(waited.parse::<f64>().unwrap() > 0.0, "{waited}");
    assert!(cold.body.contains("revision: idle-00001"));
    let metrics = nimbus
        .api_client()
        .get(format!("{}/metrics", nimbus.api_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"nimbus_revision_cold_starts_total{namespace="default",service="idle",configuration="idle",revision="idle-00001"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_scales_up_and_back_down() {
    let yaml = service("burst", &[("autoscaling.knative.dev/target", "10")], "");
    let (nimbus, client) = start_with(&yaml, "burst").await;
    let stop = Arc::new(AtomicBool::new(false));
    // 50 requests in flight (each holds 200 ms): target 10 at 70% → ceil(50 / 7) = 8 instances
    let running = load(
        &client,
        "burst.default.localhost",
        "/sleep?ms=200",
        50,
        stop.clone(),
    );
    let (_, desired) = nimbus
        .wait_replicas("burst-00001", Duration::from_secs(30), |a, d| {
            d >= 7 && a >= 7
        })
        .await;
    assert!(desired <= 12, "scaled far past the expected 8: {desired}");
    stop.store(true, Ordering::SeqCst);
    let (ok, failures) = running.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failures, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert!(ok > 0);
    nimbus
        .wait_replicas("burst-00001", Duration::from_secs(40), |a, d| {
            d <= 1 && a <= 1
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn container_concurrency_one_never_overlaps() {
    let yaml = service("single", &[], "containerConcurrency: 1");
    let (_nimbus, client) = start_with(&yaml, "single").await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(
        &client,
        "single.default.localhost",
        "/overlap?ms=20",
        5,
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failures) = running.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} non-200 answers, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert!(ok > 20, "only {ok} requests completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_down_under_steady_load_loses_nothing() {
    let yaml = service("steady", &[("autoscaling.knative.dev/target", "10")], "");
    let (nimbus, client) = start_with(&yaml, "steady").await;
    let host = "steady.default.localhost";
    // scale up with a burst …
    let burst_stop = Arc::new(AtomicBool::new(false));
    let burst = load(&client, host, "/sleep?ms=200", 40, burst_stop.clone());
    nimbus
        .wait_replicas("steady-00001", Duration::from_secs(30), |a, _| a >= 4)
        .await;
    // … then keep a light steady load running while the burst ends and instances are removed
    let steady_stop = Arc::new(AtomicBool::new(false));
    let steady = load(&client, host, "/sleep?ms=50", 3, steady_stop.clone());
    burst_stop.store(true, Ordering::SeqCst);
    nimbus
        .wait_replicas("steady-00001", Duration::from_secs(40), |a, d| {
            d <= 2 && a <= 2
        })
        .await;
    steady_stop.store(true, Ordering::SeqCst);
    for (what, handle) in [("burst", burst), ("steady", steady)] {
        let (ok, failures) = handle.await.unwrap();
        assert!(
            failures.is_empty(),
            "{what}: {} failures, e.g. {:?}",
            failures.len(),
            failures.first()
        );
        assert!(ok > 0, "{what}: nothing completed");
    }
}
