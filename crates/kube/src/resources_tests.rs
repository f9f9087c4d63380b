//! The requests `KubeResources` sends, against a mock API server (tower-test), as kube-rs's
//! own tests do: no cluster needed.

use super::*;
use http::{Request, Response};
use kube::client::Body;
use nimbus_api::parse::parse_manifests;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock() -> (KubeResources, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    (KubeResources::new(client), handle)
}

fn service() -> Object {
    let yaml = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: hello, namespace: default}\nspec:\n  template:\n    spec:\n      containers: [{image: example.com/hello}]\n";
    parse_manifests("t", yaml).unwrap().remove(0)
}

fn json(code: u16, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

async fn body_of(req: Request<Body>) -> serde_json::Value {
    let bytes = http_body_util::BodyExt::collect(req.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

fn status(code: u16, reason: &str) -> serde_json::Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "code": code, "reason": reason, "message": format!("{reason} happened")})
}

#[tokio::test]
async fn apply_is_a_forced_server_side_apply_without_status() {
    let (resources, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), http::Method::PATCH);
        let uri = req.uri().to_string();
        assert!(
            uri.starts_with("/apis/serving.knative.dev/v1/namespaces/default/services/hello?"),
            "{uri}"
        );
        assert!(uri.contains("fieldManager=nimbus-controller"), "{uri}");
        assert!(uri.contains("force=true"), "{uri}");
        assert_eq!(
            req.headers()["content-type"],
            "application/apply-patch+yaml"
        );
        let body = body_of(req).await;
        assert!(body.get("status").is_none(), "{body}");
        assert_eq!(body["kind"], "Service");
        send.send_response(json(200, body));
    });
    let mut svc = service();
    if let Object::Service(s) = &mut svc {
        s.status = Some(Default::default());
    }
    let applied = resources.apply(svc, "nimbus-controller").await.unwrap();
    assert_eq!(applied.name(), "hello");
    server.await.unwrap();
}

#[tokio::test]
async fn reads_are_defaulted_and_a_missing_object_is_none() {
    let (resources, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(
            req.uri().path(),
            "/apis/serving.knative.dev/v1/namespaces/default/services/hello"
        );
        let mut svc = service().to_json();
        svc["spec"]["traffic"] = serde_json::json!([]);
        send.send_response(json(200, svc));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(json(404, status(404, "NotFound")));
    });
    let got = resources
        .get(Kind::Service, "default", "hello")
        .await
        .unwrap()
        .unwrap();
    let Object::Service(s) = got else {
        unreachable!()
    };
    assert_eq!(
        s.spec.traffic[0].percent,
        Some(100),
        "Knative's default traffic"
    );
    assert!(
        resources
            .get(Kind::Service, "default", "gone")
            .await
            .unwrap()
            .is_none()
    );
    server.await.unwrap();
}

#[tokio::test]
async fn deletes_carry_the_uid_and_errors_keep_their_kind() {
    let (resources, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), http::Method::DELETE);
        assert_eq!(
            req.uri().path(),
            "/apis/autoscaling.internal.knative.dev/v1alpha1/namespaces/default/podautoscalers/hello-00001"
        );
        let body = body_of(req).await;
        assert_eq!(body["preconditions"]["uid"], "u-1");
        assert_eq!(body["propagationPolicy"], "Background");
        send.send_response(json(409, status(409, "Conflict")));
        let (req, send) = handle.next_request().await.unwrap();
        assert!(
            req.uri().path().ends_with("/revisions/hello-00001/status"),
            "{}",
            req.uri()
        );
        assert_eq!(req.method(), http::Method::PUT);
        send.send_response(json(422, status(422, "Invalid")));
    });
    let err = resources
        .delete(Kind::PodAutoscaler, "default", "hello-00001", Some("u-1"))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let rev = parse_manifests(
        "t",
        "apiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata: {name: hello-00001, namespace: default, resourceVersion: \"7\"}\nspec:\n  containers: [{image: x}]\n",
    )
    .unwrap()
    .remove(0);
    let err = resources.replace_status(rev).await.unwrap_err();
    assert!(matches!(err, ResourceError::Invalid(_)), "{err}");
    server.await.unwrap();
}

#[tokio::test]
async fn lists_select_by_label() {
    let (resources, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.unwrap();
        let uri = req.uri().to_string();
        assert!(
            uri.starts_with("/apis/serving.knative.dev/v1/namespaces/default/revisions?"),
            "{uri}"
        );
        assert!(
            uri.contains("labelSelector=serving.knative.dev%2Fconfiguration%3Dhello"),
            "{uri}"
        );
        send.send_response(json(
            200,
            serde_json::json!({"apiVersion": "serving.knative.dev/v1", "kind": "RevisionList",
                "metadata": {"resourceVersion": "42"}, "items": []}),
        ));
    });
    let listed = resources
        .list(
            Kind::Revision,
            Some("default"),
            &[("serving.knative.dev/configuration", "hello")],
        )
        .await
        .unwrap();
    assert_eq!(listed.resource_version, 42);
    server.await.unwrap();
}

/// A metadata write is a JSON patch guarded by resourceVersion and carries no spec, so the
/// defaults applied on read never reach the stored object (a Revision's spec is immutable).
#[tokio::test]
async fn metadata_writes_patch_only_metadata_under_the_read_version() {
    let (resources, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), http::Method::PATCH);
        assert_eq!(req.headers()["content-type"], "application/json-patch+json");
        let ops = body_of(req).await;
        let paths: Vec<&str> = ops
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "/metadata/resourceVersion",
                "/metadata/labels",
                "/metadata/annotations",
                "/metadata/finalizers",
                "/metadata/ownerReferences"
            ]
        );
        assert_eq!(ops[0]["value"], "7");
        assert_eq!(ops[3]["value"], serde_json::json!(["nimbus.dev/x"]));
        let mut stored = service().to_json();
        stored["metadata"]["resourceVersion"] = "8".into();
        send.send_response(json(200, stored));
    });
    let mut svc = service();
    svc.metadata_mut().resource_version = Some("7".into());
    svc.metadata_mut().finalizers = Some(vec!["nimbus.dev/x".into()]);
    let written = resources.replace_meta(svc).await.unwrap();
    assert_eq!(written.metadata().resource_version.as_deref(), Some("8"));
    server.await.unwrap();

    let unversioned = resources.replace_meta(service()).await.unwrap_err();
    assert!(
        unversioned.to_string().contains("resourceVersion"),
        "{unversioned}"
    );
}
