//! Kubernetes Events end to end with the real binary and the real kubectl: a service is
//! deployed (traffic shifted), scales to zero, cold-starts and gets a revision that fails;
//! each decision is an Event on the revision and on the service, seen through the core `v1`
//! API, the `events.k8s.io/v1` API, `kubectl get events`, `kubectl describe ksvc` and
//! `nimbus describe`.

use std::path::Path;
use std::time::Duration;

use nimbus_testkit::api::wait_until;
use nimbus_testkit::{Nimbus, kube, manifest};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const CORE: &str = "/api/v1/namespaces/default/events";
const EVENTS_V1: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

fn service(args: &str) -> String {
    let annotations = [
        ("autoscaling.knative.dev/window", "6s"),
        ("nimbus.dev/scale-to-zero-grace-period", "0s"),
    ];
    let container = format!("command: [\"{BIN}\"]\nargs: [\"{args}\"]");
    manifest::service("why", &annotations, "runtimeClassName: process", &container)
}

/// The events a field selector picks (`%2C`/`%3D`-encoded), through `base`.
async fn events(nimbus: &Nimbus, base: &str, selector: &str) -> Vec<Value> {
    let path = format!("{base}?fieldSelector={selector}");
    let list = nimbus.api_get(&path).await.unwrap().expect("event list");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Wait for an event with `reason` about `kind`/`name`; returns it (core `v1`).
async fn wait_event(nimbus: &Nimbus, kind: &str, name: &str, reason: &str) -> Value {
    let selector =
        format!("involvedObject.kind%3D{kind}%2CinvolvedObject.name%3D{name}%2Creason%3D{reason}");
    wait_until(
        &format!("a {reason} event on {kind} {name}"),
        Duration::from_secs(60),
        async || {
            let found = events(nimbus, CORE, &selector).await;
            found
                .into_iter()
                .next()
                .ok_or_else(|| "no such event yet".to_string())
        },
    )
    .await
}

/// How many times these events happened, together.
fn occurrences(events: &[Value]) -> i64 {
    events
        .iter()
        .map(|e| e["count"].as_i64().unwrap_or(1))
        .sum()
}

fn message(event: &Value) -> &str {
    event["message"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_decision_is_an_event_kubectl_describe_shows() {
    if !kube::have_kubectl() {
        return;
    }
    let (nimbus, client) = Nimbus::start_serving(
        Path::new(BIN),
        &["--autoscaler-tick", "250ms"],
        &service("sample-function"),
        "why",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let host = "why.default.localhost";
    assert_eq!(client.get(host, "/").await.unwrap().status, 200);

    let shifted = wait_event(&nimbus, "Route", "why", "TrafficShifted").await;
    assert_eq!(
        message(&shifted),
        "traffic shifted: nothing → why-00001 100%"
    );
    let ready = wait_event(&nimbus, "Revision", "why-00001", "RevisionReady").await;
    assert_eq!(ready["type"], "Normal");

    // Scale to zero, with the autoscaler's values.
    let zero = wait_event(&nimbus, "Revision", "why-00001", "ScaledToZero").await;
    let text = message(&zero);
    assert!(
        text.starts_with("scaled from 1 to 0 by the autoscaler: observed stable concurrency 0.00"),
        "{text}"
    );
    assert!(text.contains("target 70.00 per instance"), "{text}");
    assert_eq!(zero["reportingComponent"], "nimbus");
    assert_eq!(
        zero["involvedObject"]["apiVersion"],
        "serving.knative.dev/v1"
    );
    assert!(
        zero["involvedObject"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );

    // A cold start: the request activates the revision; the event says how long it took, and
    // the scale-up from zero is one more ScaledUp occurrence (a repeat bumps the count).
    let ups = "involvedObject.name%3Dwhy-00001%2Creason%3DScaledUp";
    let before = occurrences(&events(&nimbus, CORE, ups).await);
    let cold = client.get(host, "/").await.unwrap();
    assert_eq!(cold.status, 200);
    assert!(cold.headers.get("x-nimbus-cold-start").is_some());
    let started = wait_event(&nimbus, "Revision", "why-00001", "ColdStart").await;
    assert!(
        message(&started).starts_with("cold start took "),
        "{started}"
    );
    wait_until(
        "the scale-up from zero",
        Duration::from_secs(30),
        async || {
            let now = events(&nimbus, CORE, ups).await;
            match occurrences(&now) > before {
                true => Ok(()),
                false => Err(format!("{now:?}")),
            }
        },
    )
    .await;

    // A revision that fails: the Ready condition's reason, as a Warning.
    nimbus.apply_ok(&service("no-such-subcommand"));
    let failed = wait_event(&nimbus, "Revision", "why-00002", "RevisionFailed").await;
    assert_eq!(failed["type"], "Warning");
    assert!(message(&failed).starts_with("ExitCode"), "{failed}");

    // The runtime's restarts, as the kubelet reports them.
    let backoff = wait_event(&nimbus, "Revision", "why-00002", "BackOff").await;
    assert!(
        message(&backoff).starts_with("Back-off restarting failed instance (ExitCode2)"),
        "{backoff}"
    );

    // The service carries its objects' events too (what kubectl describe ksvc lists).
    let on_service = wait_event(&nimbus, "Service", "why", "RevisionFailed").await;
    assert!(
        message(&on_service).starts_with("revision why-00002: ExitCode"),
        "{on_service}"
    );
    wait_event(&nimbus, "Service", "why", "ScaledToZero").await;

    // The same objects through events.k8s.io/v1.
    let v1 = events(
        &nimbus,
        EVENTS_V1,
        "regarding.name%3Dwhy-00001%2Creason%3DScaledToZero",
    )
    .await;
    assert_eq!(v1.len(), 1, "{v1:?}");
    assert_eq!(v1[0]["apiVersion"], "events.k8s.io/v1");
    assert!(
        v1[0]["note"]
            .as_str()
            .unwrap()
            .starts_with("scaled from 1 to 0")
    );
    assert_eq!(v1[0]["reportingController"], "nimbus");

    // kubectl get events: kubectl's columns.
    let table = nimbus.kubectl_ok(&["get", "events"], None);
    println!("$ kubectl get events\n{table}");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(table.contains("revision/why-00001"), "{table}");
    assert!(table.contains("ScaledToZero"), "{table}");
    let warnings = nimbus.kubectl_ok(&["get", "events", "--field-selector", "type=Warning"], None);
    assert!(
        warnings.contains("RevisionFailed") && !warnings.contains("ScaledToZero"),
        "{warnings}"
    );

    // kubectl describe ksvc: its generic describer lists the service's events.
    let described = nimbus.kubectl_ok(&["describe", "ksvc", "why"], None);
    println!("$ kubectl describe ksvc why\n{described}");
    let events_part = described
        .split("Events:")
        .nth(1)
        .expect("an Events section");
    for reason in [
        "TrafficShifted",
        "ScaledToZero",
        "ColdStart",
        "RevisionFailed",
    ] {
        assert!(
            events_part.contains(reason),
            "{reason} missing:\n{described}"
        );
    }
    assert!(
        events_part.contains("revision why-00002: ExitCode"),
        "{described}"
    );

    // nimbus describe: conditions and the same events.
    let ours = nimbus.cli_ok(&["describe", "ksvc", "why"]);
    println!("$ nimbus describe ksvc why\n{ours}");
    assert!(
        ours.contains("Conditions:") && ours.contains("Events:"),
        "{ours}"
    );
    assert!(
        ours.contains("RevisionFailed") && ours.contains("ColdStart"),
        "{ours}"
    );
    let listed = nimbus.cli_ok(&["get", "events"]);
    assert!(listed.starts_with("LAST SEEN"), "{listed}");
    assert!(listed.contains("revision/why-00002"), "{listed}");
    let revision = nimbus.cli_ok(&["describe", "rev", "why-00001"]);
    assert!(revision.contains("ScaledToZero"), "{revision}");
}
