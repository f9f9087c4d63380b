//! The requests an install sends, against a mock API server (tower-test): the check for
//! foreign CRDs before anything is written, forced server-side applies, and the wait.

use super::*;
use crate::install::{InstallOptions, manifests};
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock() -> (kube::Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

fn reply(code: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn not_found() -> Response<Body> {
    reply(
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found"}),
    )
}

fn crd(name: &str, labels: Value, conditions: Value) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "labels": labels},
        "spec": {"group": "g", "names": {"kind": "K", "plural": "p"}, "scope": "Namespaced", "versions": []},
        "status": {"conditions": conditions}})
}

fn established() -> Value {
    json!([{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}])
}

async fn body_of(req: Request<Body>) -> Value {
    let bytes = http_body_util::BodyExt::collect(req.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn knative_servings_crds_are_refused_before_anything_is_written() {
    let (client, mut handle) = mock();
    let all = manifests(&InstallOptions::default()).unwrap();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(
            req.uri().path(),
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/services.serving.knative.dev"
        );
        let knative =
            json!({"app.kubernetes.io/name": "knative-serving", "knative.dev/crd-install": "true"});
        send.send_response(reply(
            200,
            crd("services.serving.knative.dev", knative, established()),
        ));
        handle
    });
    let mut lines = Vec::new();
    let err = apply(&client, &all, TIMEOUT, |l| lines.push(l.to_string()))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApplyError::ForeignCrd { .. }), "{text}");
    for part in [
        "customresourcedefinition services.serving.knative.dev already exists and is not Nimbus's",
        "no label app.kubernetes.io/managed-by=nimbus",
        "labelled app.kubernetes.io/name=knative-serving",
        "remove Knative Serving",
        "Nothing was changed",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    assert!(lines.is_empty());
    drop(client);
    let mut handle = server.await.unwrap();
    assert!(
        handle.next_request().await.is_none(),
        "no write after the refusal"
    );
}

#[tokio::test]
async fn every_object_is_applied_by_nimbus_install_then_the_crds_are_awaited() {
    let (client, mut handle) = mock();
    let all = manifests(&InstallOptions::default()).unwrap();
    let count = all.len();
    let crds = nimbus_api::Kind::on_cluster().count();
    let server = tokio::spawn(async move {
        // The check: the first CRD is already Nimbus's, the others are new.
        for i in 0..crds {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), Method::GET);
            let ours = json!({"app.kubernetes.io/managed-by": "nimbus"});
            send.send_response(match i {
                0 => reply(200, crd("x", ours, established())),
                _ => not_found(),
            });
        }
        let mut applied = Vec::new();
        for _ in 0..count {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), Method::PATCH);
            let query = req.uri().query().unwrap_or("").to_string();
            assert!(query.contains("fieldManager=nimbus-install"), "{query}");
            assert!(query.contains("force=true"), "{query}");
            assert_eq!(
                req.headers()["content-type"],
                "application/apply-patch+yaml"
            );
            applied.push(req.uri().path().to_string());
            let body = body_of(req).await;
            send.send_response(reply(200, body));
        }
        for _ in 0..crds {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), Method::GET);
            send.send_response(reply(200, crd("x", json!({}), established())));
        }
        applied
    });
    let mut lines = Vec::new();
    apply(&client, &all, TIMEOUT, |l| lines.push(l.to_string()))
        .await
        .unwrap();
    let applied = server.await.unwrap();
    assert_eq!(applied[0], "/api/v1/namespaces/nimbus-system");
    assert!(
        applied.contains(
            &"/apis/apps/v1/namespaces/nimbus-system/deployments/nimbus-router".to_string()
        )
    );
    assert_eq!(lines.len(), count + crds);
    assert_eq!(
        lines[1],
        "customresourcedefinition.apiextensions.k8s.io/services.serving.knative.dev serverside-applied"
    );
    assert_eq!(
        lines[count],
        "customresourcedefinition.apiextensions.k8s.io/services.serving.knative.dev condition met"
    );
}

#[tokio::test(start_paused = true)]
async fn refused_names_fail_the_wait_at_once() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.unwrap();
        let conditions = json!([{"type": "NamesAccepted", "status": "False", "reason": "ListKindConflict", "message": "\"ServiceList\" is already in use"}]);
        send.send_response(reply(
            200,
            crd("services.serving.knative.dev", json!({}), conditions),
        ));
    });
    let deadline = Instant::now() + TIMEOUT;
    let err = wait_established(&client, "services.serving.knative.dev", deadline, TIMEOUT)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("NamesAccepted=False ListKindConflict"),
        "{text}"
    );
    server.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_wait_polls_until_established_or_the_deadline() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        let mut polls = 0;
        while let Some((_, send)) = handle.next_request().await {
            polls += 1;
            let conditions = json!([{"type": "Established", "status": "False", "reason": "Installing", "message": "the initial names have not been accepted"}]);
            send.send_response(reply(200, crd("x", json!({}), conditions)));
        }
        polls
    });
    let deadline = Instant::now() + TIMEOUT;
    let err = wait_established(&client, "x", deadline, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Established=False Installing"),
        "{err}"
    );
    drop(client);
    let polls = server.await.unwrap();
    assert!(polls > 10, "{polls} polls in {TIMEOUT:?}");
}
