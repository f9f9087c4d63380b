//! OpenTelemetry traces end to end: `nimbus serve --otlp-endpoint` exports the spans of a
//! routed request by OTLP/HTTP protobuf to a receiver built on the official protobuf
//! definitions (`nimbus_testkit::otlp`), continuing the client's `traceparent`; a cold start
//! has its phases; the instance (the test app, echoing its request headers) gets a
//! `traceparent` whose parent is the `instance.call` span.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nimbus_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use nimbus_testkit::{Nimbus, image::test_app_binary, manifest};
use nimbus_traces::names;

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const HOST: &str = "traced.default.localhost";
/// OTLP's span kinds.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// The test app as a host process that scales to zero soon after its last request.
fn service() -> String {
    let annotations = [
        ("autoscaling.knative.dev/window", "6s"),
        ("nimbus.dev/scale-to-zero-grace-period", "0s"),
    ];
    let container = format!("command: [\"{}\"]", test_app_binary().display());
    manifest::service(
        "traced",
        &annotations,
        "runtimeClassName: process",
        &container,
    )
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found = spans.iter().find(|s| s.name == name);
    found.unwrap_or_else(|| panic!("no {name} span in {spans:#?}"))
}

fn of_trace(spans: Vec<ReceivedSpan>, trace: &str) -> Vec<ReceivedSpan> {
    spans.into_iter().filter(|s| s.trace_id == trace).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_request_is_traced_from_the_client_through_the_router_to_the_instance() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let endpoint = receiver.endpoint();
    let extra = ["--otlp-endpoint", &endpoint, "--autoscaler-tick", "250ms"];
    let (nimbus, client) = Nimbus::start_serving(
        Path::new(BIN),
        &extra,
        &service(),
        "traced",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let announced = format!("nimbus: exporting traces to {endpoint}/v1/traces");
    assert!(
        nimbus
            .startup_output
            .iter()
            .any(|l| l.starts_with(&announced)),
        "{:?}",
        nimbus.startup_output
    );

    // A warm request without a traceparent starts a trace of its own, with no cold start.
    let warm = client.get(HOST, "/headers").await.unwrap();
    assert_eq!(warm.status, 200);
    let sent = warm
        .body
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: 00-"));
    let new_trace = sent.expect("a traceparent for the instance")[..32].to_owned();
    assert_ne!(new_trace, TRACE);
    let spans = receiver
        .wait_for("the warm request's spans", Duration::from_secs(30), |s| {
            s.iter()
                .any(|s| s.trace_id == new_trace && s.name == names::ROUTING)
        })
        .await
        .unwrap();
    let spans = of_trace(spans, &new_trace);
    let routing = named(&spans, names::ROUTING);
    assert_eq!(routing.parent_span_id, "", "a root span");
    assert_eq!(routing.attr(names::NIMBUS_COLD_START), Some("false"));
    assert!(
        spans.iter().all(|s| s.name != names::COLD_START),
        "{spans:#?}"
    );

    // Then, once the revision is at zero, a cold request continuing the client's trace.
    nimbus
        .wait_replicas("traced-00001", Duration::from_secs(40), |a, d| {
            a == 0 && d == 0
        })
        .await;
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let headers = [
        ("traceparent", traceparent.as_str()),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("authorization", "Bearer hush"),
    ];
    let path = "/headers?token=s3cret";
    let reply = client
        .send(reqwest::Method::GET, HOST, path, &headers, Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.headers.contains_key("x-nimbus-cold-start"),
        "the first request is a cold start: {reply:?}"
    );

    let spans = receiver
        .wait_for("the request's spans", Duration::from_secs(30), |spans| {
            let ours = spans.iter().filter(|s| s.trace_id == TRACE);
            ours.filter(|s| s.name == names::ROUTING || s.name == names::INSTANCE_CALL)
                .count()
                == 2
        })
        .await
        .unwrap();
    let spans = of_trace(spans, TRACE);
    let routing = named(&spans, names::ROUTING);
    let call = named(&spans, names::INSTANCE_CALL);
    let wait = named(&spans, names::ACTIVATOR_WAIT);
    let cold = named(&spans, names::COLD_START);

    // Parent links: client → routing → (activator.wait → cold_start → phases, instance.call).
    assert_eq!(routing.parent_span_id, PARENT);
    assert_eq!((routing.kind, call.kind), (SERVER, CLIENT));
    assert_eq!(call.parent_span_id, routing.span_id);
    assert_eq!(wait.parent_span_id, routing.span_id);
    assert_eq!(cold.parent_span_id, wait.span_id);
    let mut at = cold.start_unix_nano;
    for phase in [
        names::COLD_START_DECIDE,
        names::COLD_START_START,
        names::COLD_START_READY,
    ] {
        let phase = named(&spans, phase);
        assert_eq!(phase.parent_span_id, cold.span_id, "{phase:?}");
        assert_eq!(
            phase.start_unix_nano, at,
            "{} follows the last phase",
            phase.name
        );
        at = phase.end_unix_nano;
    }
    assert_eq!(at, cold.end_unix_nano);
    // A host process is started, then probed: both phases took time.
    let took = |name| {
        let s = named(&spans, name);
        s.end_unix_nano - s.start_unix_nano
    };
    assert!(took(names::COLD_START_START) > 0 && took(names::COLD_START_READY) > 0);

    // Attributes by the HTTP semantic conventions and Nimbus's; nothing secret.
    assert_eq!(routing.service_name, "nimbus");
    assert_eq!(routing.attr(names::HTTP_REQUEST_METHOD), Some("GET"));
    assert_eq!(routing.attr(names::URL_PATH), Some("/headers"));
    assert_eq!(routing.attr(names::SERVER_ADDRESS), Some(HOST));
    assert_eq!(routing.attr(names::HTTP_RESPONSE_STATUS_CODE), Some("200"));
    assert_eq!(routing.attr(names::NIMBUS_REVISION), Some("traced-00001"));
    assert_eq!(routing.attr(names::NIMBUS_COLD_START), Some("true"));
    assert_eq!(call.attr(names::HTTP_RESPONSE_STATUS_CODE), Some("200"));
    let everything = format!("{spans:?}");
    for secret in ["s3cret", "hush", "congo"] {
        assert!(!everything.contains(secret), "spans leak {secret}");
    }

    // The instance's parent is the instance-call span; the client's tracestate goes on.
    let expected = format!("traceparent: 00-{TRACE}-{}-01", call.span_id);
    assert!(reply.body.lines().any(|l| l == expected), "{}", reply.body);
    assert!(
        reply
            .body
            .lines()
            .any(|l| l == "tracestate: congo=t61rcWkgMzE"),
        "{}",
        reply.body
    );
}

#[test]
fn an_unusable_tracing_setting_stops_the_server_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--otlp-endpoint", "http://127.0.0.1:4318"])
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("OTEL_TRACES_SAMPLER=\"sometimes\" is not a sampler"),
        "{stderr}"
    );
}
