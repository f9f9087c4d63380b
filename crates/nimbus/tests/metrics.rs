//! `/metrics` scraped by a real Prometheus (Debian's `prometheus`, started by the test on a
//! free port with a 1 s scrape interval, through the API port with the bearer token as the
//! README's scrape config does): after traffic and a cold start, Prometheus's `/api/v1/query`
//! returns the revision's, the instances' and the platform's series with plausible values.
//! Skips without `prometheus`, fails under `CI`.

use std::path::Path;
use std::time::{Duration, Instant};

use nimbus_testkit::prometheus::{Prometheus, Sample, Scrape};
use nimbus_testkit::{Nimbus, manifest};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const WAIT: Duration = Duration::from_secs(30);

fn service(name: &str) -> String {
    let annotations = [
        ("autoscaling.knative.dev/window", "6s"),
        ("nimbus.dev/scale-to-zero-grace-period", "0s"),
    ];
    let container = format!("command: [\"{BIN}\"]\nargs: [\"sample-function\"]");
    manifest::service(
        name,
        &annotations,
        "runtimeClassName: process\n",
        &container,
    )
}

/// The revision's (actual, desired) replicas from its status.
async fn replicas(nimbus: &Nimbus, revision: &str) -> (i64, i64) {
    let path = format!("/apis/serving.knative.dev/v1/namespaces/default/revisions/{revision}");
    let rev = nimbus.api_get(&path).await.unwrap().unwrap();
    let s = &rev["status"];
    let n = |f: &str| s[f].as_i64().unwrap_or(-1);
    (n("actualReplicas"), n("desiredReplicas"))
}

async fn wait_for_zero(nimbus: &Nimbus, revision: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while replicas(nimbus, revision).await != (0, 0) {
        assert!(Instant::now() < deadline, "{revision} never scaled to zero");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn value(rows: &[Sample]) -> f64 {
    rows.iter().map(|(_, v)| v).sum()
}

/// Waits until `promql` (summed) satisfies `ok`; returns the rows.
async fn expect(prom: &Prometheus, promql: &str, ok: impl Fn(f64) -> bool) -> Vec<Sample> {
    let found = prom
        .query_until(promql, WAIT, |rows| !rows.is_empty() && ok(value(rows)))
        .await;
    found.unwrap_or_else(|e| panic!("{e:#}\nprometheus log:\n{}", prom.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_revision_instance_and_platform_series() {
    let Some(prom_bin) = nimbus_testkit::image::find_tool("prometheus") else {
        nimbus_testkit::skip("prometheus is not installed (Debian package prometheus)");
        return;
    };
    drop(prom_bin);
    let (nimbus, client) = Nimbus::start_serving(
        Path::new(BIN),
        &["--autoscaler-tick", "250ms"],
        &service("metered"),
        "metered",
        WAIT,
    )
    .await
    .unwrap();
    let prom = Prometheus::start(&[Scrape::api(&nimbus)])
        .unwrap()
        .expect("installed");
    expect(&prom, r#"up{job="nimbus"}"#, |up| up == 1.0).await;

    let host = "metered.default.localhost";
    for _ in 0..20 {
        assert_eq!(client.get(host, "/").await.unwrap().status, 200);
    }
    wait_for_zero(&nimbus, "metered-00001").await;
    let cold = client.get(host, "/").await.unwrap();
    assert_eq!(cold.status, 200);
    assert!(cold.headers.contains_key("x-nimbus-cold-start"), "{cold:?}");

    let rev =
        r#"namespace="default",service="metered",configuration="metered",revision="metered-00001""#;
    // The data path.
    let ok = format!(r#"nimbus_revision_requests_total{{{rev},code="2xx"}}"#);
    expect(&prom, &ok, |n| n >= 21.0).await;
    let latency = format!("nimbus_revision_request_duration_seconds_count{{{rev}}}");
    expect(&prom, &latency, |n| n >= 21.0).await;
    let p99 = format!(
        "histogram_quantile(0.99, nimbus_revision_request_duration_seconds_bucket{{{rev}}})"
    );
    expect(&prom, &p99, |s| s > 0.0 && s < 60.0).await;
    let cold_starts = format!("nimbus_revision_cold_start_seconds_count{{{rev}}}");
    expect(&prom, &cold_starts, |n| n >= 1.0).await;
    expect(
        &prom,
        &format!("nimbus_revision_cold_starts_total{{{rev}}}"),
        |n| n >= 1.0,
    )
    .await;
    expect(
        &prom,
        &format!("nimbus_revision_queue_wait_seconds_count{{{rev}}}"),
        |n| n >= 1.0,
    )
    .await;
    for phase in ["decide", "start", "ready"] {
        let q =
            format!(r#"nimbus_revision_cold_start_phase_seconds_count{{{rev},phase="{phase}"}}"#);
        expect(&prom, &q, |n| n >= 1.0).await;
    }
    expect(&prom, &format!("nimbus_revision_in_flight{{{rev}}}"), |n| {
        n >= 0.0
    })
    .await;
    expect(&prom, &format!("nimbus_revision_queued{{{rev}}}"), |n| {
        n == 0.0
    })
    .await;
    // Scaling: the cold start's instance is up again.
    expect(
        &prom,
        &format!("nimbus_revision_desired_instances{{{rev}}}"),
        |n| n >= 1.0,
    )
    .await;
    expect(
        &prom,
        &format!("nimbus_revision_actual_instances{{{rev}}}"),
        |n| n >= 1.0,
    )
    .await;
    expect(
        &prom,
        &format!("nimbus_revision_ready_instances{{{rev}}}"),
        |n| n >= 1.0,
    )
    .await;
    expect(
        &prom,
        &format!("nimbus_revision_autoscaler_stable_value{{{rev}}}"),
        |n| n >= 0.0,
    )
    .await;
    expect(
        &prom,
        &format!("nimbus_revision_autoscaler_panic_value{{{rev}}}"),
        |n| n >= 0.0,
    )
    .await;
    expect(
        &prom,
        &format!("nimbus_revision_autoscaler_panic_mode{{{rev}}}"),
        |n| n <= 1.0,
    )
    .await;
    expect(
        &prom,
        &format!("nimbus_revision_oom_kills_total{{{rev}}}"),
        |n| n == 0.0,
    )
    .await;
    // The instance's cgroup.
    let cpu = format!("nimbus_instance_cpu_seconds_total{{{rev}}}");
    let rows = expect(&prom, &cpu, |s| s > 0.0).await;
    assert!(
        rows.iter().all(|(l, _)| l.contains_key("instance")),
        "{rows:?}"
    );
    expect(
        &prom,
        &format!("nimbus_instance_memory_bytes{{{rev}}}"),
        |b| b > 0.0,
    )
    .await;
    // The platform.
    let reconcile = r#"nimbus_controller_reconcile_duration_seconds_count{kind="Revision"}"#;
    expect(&prom, reconcile, |n| n >= 1.0).await;
    expect(&prom, "nimbus_controller_queue_depth", |n| n >= 0.0).await;
    let gets = r#"nimbus_apiserver_requests_total{verb="get",code="200"}"#;
    expect(&prom, gets, |n| n >= 1.0).await;
    expect(&prom, "nimbus_store_size_bytes", |b| b > 0.0).await;
    expect(&prom, "nimbus_store_write_duration_seconds_count", |n| {
        n >= 1.0
    })
    .await;

    // An instance that exits is restarted, by reason; the request it dropped is a 5xx.
    let app = nimbus_testkit::image::test_app_binary();
    let container = format!("command: [\"{}\"]", app.display());
    let min_one = [("autoscaling.knative.dev/min-scale", "1")];
    let yaml = manifest::service(
        "crashy",
        &min_one,
        "runtimeClassName: process\n",
        &container,
    );
    nimbus.apply_ok(&yaml);
    nimbus.wait_service_ready("crashy", WAIT).await.unwrap();
    let dropped = client.get("crashy.default.localhost", "/exit?code=3").await;
    assert!(dropped.is_err() || dropped.unwrap().status >= 500);
    let crashy = r#"service="crashy",reason="ExitCode3""#;
    let restarts = format!("nimbus_revision_instance_restarts_total{{{crashy}}}");
    expect(&prom, &restarts, |n| n >= 1.0).await;
    let errors = r#"nimbus_revision_requests_total{service="crashy",code="5xx"}"#;
    expect(&prom, errors, |n| n >= 1.0).await;
}
