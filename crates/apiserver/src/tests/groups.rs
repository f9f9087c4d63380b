//! Three group-versions served as a Kubernetes API server serves three CRD groups: each kind
//! under its own `/apis/{group}/{version}`, in discovery and OpenAPI, and named with its own
//! group in every message.

use super::watch::Events;
use super::*;

const PA_API: &str = "/apis/autoscaling.internal.knative.dev/v1alpha1";
const KING_API: &str = "/apis/networking.internal.knative.dev/v1alpha1";

fn pa_url(rest: &str) -> String {
    format!("{PA_API}/namespaces/default/podautoscalers{rest}")
}

fn king_url(rest: &str) -> String {
    format!("{KING_API}/namespaces/default/ingresses{rest}")
}

fn pod_autoscaler(name: &str) -> Value {
    json!({
        "apiVersion": "autoscaling.internal.knative.dev/v1alpha1",
        "kind": "PodAutoscaler",
        "metadata": { "name": name },
        "spec": {
            "scaleTargetRef": { "apiVersion": "serving.knative.dev/v1", "kind": "Revision", "name": name },
            "reachability": "Reachable",
            "protocolType": "http1"
        }
    })
}

fn ingress(name: &str) -> Value {
    json!({
        "apiVersion": "networking.internal.knative.dev/v1alpha1",
        "kind": "Ingress",
        "metadata": { "name": name },
        "spec": { "rules": [{
            "hosts": [format!("{name}.default.localhost")],
            "visibility": "ExternalIP",
            "http": { "paths": [{ "splits": [{
                "serviceNamespace": "default",
                "serviceName": format!("{name}-00001"),
                "percent": 100
            }] }] }
        }] }
    })
}

#[tokio::test]
async fn a_plural_under_another_group_is_404() {
    let (app, _) = test_app();
    call(
        &app,
        Method::POST,
        &pa_url(""),
        Some(&pod_autoscaler("hello")),
    )
    .await;
    for path in [
        url("/namespaces/default/ingresses"),
        url("/podautoscalers"),
        url("/namespaces/default/podautoscalers/hello"),
        url("/namespaces/default/podautoscalers/hello/status"),
        format!("{PA_API}/namespaces/default/services"),
        format!("{KING_API}/routes"),
        "/apis/autoscaling.internal.knative.dev/v1/podautoscalers".to_string(),
        "/apis/networking.k8s.io/v1/namespaces/default/ingresses".to_string(),
    ] {
        let (code, body) = call(&app, Method::GET, &path, None).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}: {body}");
        let message = assert_status(&body, 404, "NotFound");
        assert_eq!(message, "the server could not find the requested resource");
    }
    let (code, body) = call(
        &app,
        Method::POST,
        &url("/namespaces/default/podautoscalers"),
        Some(&pod_autoscaler("x")),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn discovery_lists_three_groups_each_with_its_resources() {
    let (app, _) = test_app();
    let (_, groups) = call(&app, Method::GET, "/apis", None).await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "serving.knative.dev",
            "autoscaling.internal.knative.dev",
            "networking.internal.knative.dev",
            "run.nimbus.dev",
            "keda.sh",
            "sources.knative.dev",
            "sources.nimbus.dev",
            "events.k8s.io"
        ]
    );
    let expected = [
        (
            "serving.knative.dev",
            "v1",
            vec!["services", "configurations", "revisions", "routes"],
        ),
        (
            "autoscaling.internal.knative.dev",
            "v1alpha1",
            vec!["podautoscalers"],
        ),
        (
            "networking.internal.knative.dev",
            "v1alpha1",
            vec!["ingresses"],
        ),
    ];
    for (i, (group, version, plurals)) in expected.into_iter().enumerate() {
        let gv = format!("{group}/{version}");
        assert_eq!(groups["groups"][i]["preferredVersion"]["groupVersion"], gv);
        let (code, one) = call(&app, Method::GET, &format!("/apis/{group}"), None).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            (one["kind"].as_str(), one["name"].as_str()),
            (Some("APIGroup"), Some(group))
        );
        assert_eq!(
            one["versions"],
            json!([{ "groupVersion": gv, "version": version }])
        );
        let (code, list) = call(&app, Method::GET, &format!("/apis/{gv}"), None).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(list["groupVersion"], gv);
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        let want: Vec<String> = plurals
            .iter()
            .flat_map(|p| [p.to_string(), format!("{p}/status")])
            .collect();
        assert_eq!(names, want, "{gv}");
    }
    let (_, pa) = call(&app, Method::GET, PA_API, None).await;
    let pa = &pa["resources"][0];
    assert_eq!(
        (
            &pa["kind"],
            &pa["singularName"],
            &pa["shortNames"],
            &pa["categories"]
        ),
        (
            &json!("PodAutoscaler"),
            &json!("podautoscaler"),
            &json!(["kpa", "pa"]),
            &json!(["knative-internal", "autoscaling"])
        )
    );
    let (_, king) = call(&app, Method::GET, KING_API, None).await;
    let king = &king["resources"][0];
    assert_eq!(king["kind"], "Ingress");
    assert_eq!(king["shortNames"], json!(["kingress", "king"]));
    assert_eq!(
        king["categories"],
        json!(["knative-internal", "networking"])
    );
    for path in ["/apis/networking.k8s.io", "/apis/serving.knative.dev/v2"] {
        assert_eq!(
            call(&app, Method::GET, path, None).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn openapi_v3_has_one_document_per_group_version() {
    let (app, _) = test_app();
    let (_, root) = call(&app, Method::GET, "/openapi/v3", None).await;
    let paths = root["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 8, "{root}"); // and the core group's api/v1
    for (kind, schema) in [
        ("Service", "dev.knative.serving.v1.Service"),
        (
            "PodAutoscaler",
            "dev.knative.internal.autoscaling.v1alpha1.PodAutoscaler",
        ),
        (
            "Ingress",
            "dev.knative.internal.networking.v1alpha1.Ingress",
        ),
    ] {
        let k = nimbus_api::Kind::parse(kind).unwrap();
        let key = format!("apis/{}", k.api_version());
        let url = paths[&key]["serverRelativeURL"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("/openapi/v3/{key}?hash=")),
            "{url}"
        );
        let (code, doc) = call(&app, Method::GET, url, None).await;
        assert_eq!(code, StatusCode::OK);
        let schemas = &doc["components"]["schemas"];
        let gvk = json!([{ "group": k.group(), "version": k.version(), "kind": kind }]);
        assert_eq!(
            schemas[schema]["x-kubernetes-group-version-kind"], gvk,
            "{schema}"
        );
        let list = format!("{schema}List");
        assert_eq!(
            schemas[&list]["x-kubernetes-group-version-kind"][0]["kind"],
            format!("{kind}List")
        );
        let item = format!("/{key}/namespaces/{{namespace}}/{}/{{name}}", k.plural());
        assert!(doc["paths"][&item]["patch"].is_object(), "{item}");
    }
    let (_, v2) = call(&app, Method::GET, "/openapi/v2", None).await;
    for name in [
        "dev.knative.serving.v1.Revision",
        "dev.knative.internal.autoscaling.v1alpha1.PodAutoscaler",
        "dev.knative.internal.networking.v1alpha1.IngressSpec",
    ] {
        assert!(v2["definitions"][name].is_object(), "{name}");
    }
    let (code, _) = call(
        &app,
        Method::GET,
        "/openapi/v3/apis/networking.k8s.io/v1",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pod_autoscaler_crud_status_and_list() {
    let (app, _) = test_app();
    let (code, created) = call(
        &app,
        Method::POST,
        &pa_url(""),
        Some(&pod_autoscaler("hello")),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["apiVersion"],
        "autoscaling.internal.knative.dev/v1alpha1"
    );
    assert_eq!(created["spec"]["reachability"], "Reachable");
    let managed = &created["metadata"]["managedFields"][0];
    assert_eq!(
        managed["apiVersion"],
        "autoscaling.internal.knative.dev/v1alpha1"
    );

    let (code, got) = call(&app, Method::GET, &pa_url("/hello"), None).await;
    assert_eq!((code, &got), (StatusCode::OK, &created));
    for path in [format!("{PA_API}/podautoscalers"), pa_url("")] {
        let (_, list) = call(&app, Method::GET, &path, None).await;
        assert_eq!(list["kind"], "PodAutoscalerList");
        assert_eq!(
            list["apiVersion"],
            "autoscaling.internal.knative.dev/v1alpha1"
        );
        assert_eq!(list["items"], json!([created]));
    }

    let mut changed = got.clone();
    changed["spec"]["reachability"] = json!("Unreachable");
    let (code, replaced) = call(&app, Method::PUT, &pa_url("/hello"), Some(&changed)).await;
    assert_eq!(code, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["metadata"]["generation"], 2);

    let mut status = replaced.clone();
    status["status"] = json!({
        "desiredScale": 2, "actualScale": 1,
        "conditions": [{ "type": "Ready", "status": "True" }]
    });
    let (code, updated) = call(&app, Method::PUT, &pa_url("/hello/status"), Some(&status)).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["status"]["desiredScale"], 2);
    assert_eq!(
        updated["metadata"]["generation"], 2,
        "status writes keep the generation"
    );
    let patch = r#"{"status":{"actualScale":2}}"#;
    let (code, patched) = send(
        &app,
        with_body(
            Method::PATCH,
            &pa_url("/hello/status"),
            "application/merge-patch+json",
            patch,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(patched["status"]["actualScale"], 2);

    let (code, table) = send(&app, get_accepting(&pa_url(""), TABLE)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["hello", 2, 2, "True", null])
    );

    let (code, deleted) = call(&app, Method::DELETE, &pa_url("/hello"), None).await;
    assert_eq!(code, StatusCode::OK, "{deleted}");
    let (code, body) = call(&app, Method::GET, &pa_url("/hello"), None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        assert_status(&body, 404, "NotFound"),
        "podautoscalers.autoscaling.internal.knative.dev \"hello\" not found"
    );
    assert_eq!(body["details"]["group"], "autoscaling.internal.knative.dev");
    assert_eq!(body["details"]["kind"], "podautoscalers");
}

#[tokio::test]
async fn ingress_crud_patches_apply_and_watch() {
    let (app, _) = test_app();
    let mut events = Events::open(&app, &format!("{KING_API}/ingresses?watch=true")).await;
    let (code, created) = call(&app, Method::POST, &king_url(""), Some(&ingress("hello"))).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let added = events.next().await.unwrap();
    assert_eq!(added["type"], "ADDED");
    assert_eq!(
        added["object"]["apiVersion"],
        "networking.internal.knative.dev/v1alpha1"
    );
    assert_eq!(added["object"]["kind"], "Ingress");

    let json_patch = r#"[{"op":"replace","path":"/spec/rules/0/http/paths/0/splits/0/serviceName","value":"hello-00002"}]"#;
    let (code, patched) = send(
        &app,
        with_body(
            Method::PATCH,
            &king_url("/hello"),
            "application/json-patch+json",
            json_patch,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    let split = "/spec/rules/0/http/paths/0/splits/0/serviceName";
    assert_eq!(patched.pointer(split).unwrap(), "hello-00002");
    let modified = events.next().await.unwrap();
    assert_eq!(modified["type"], "MODIFIED");
    assert_eq!(modified["object"].pointer(split).unwrap(), "hello-00002");

    // Server-side apply creates an object of the group's kind when none exists.
    let uri = king_url("/other?fieldManager=controller");
    let (code, applied) = send(
        &app,
        with_body(
            Method::PATCH,
            &uri,
            "application/apply-patch+yaml",
            &ingress("other").to_string(),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{applied}");
    assert_eq!(
        applied["metadata"]["managedFields"][0]["apiVersion"],
        "networking.internal.knative.dev/v1alpha1"
    );
    assert_eq!(events.next().await.unwrap()["type"], "ADDED");

    let status = r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#;
    let (code, body) = send(
        &app,
        with_body(
            Method::PATCH,
            &king_url("/hello/status"),
            "application/merge-patch+json",
            status,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["conditions"][0]["status"], "True");
    let (_, got) = send(&app, get_accepting(&king_url("/hello"), TABLE)).await;
    assert_eq!(got["rows"][0]["cells"], json!(["hello", "True", null]));

    call(&app, Method::DELETE, &king_url("/hello"), None).await;
    let events: Vec<String> = [events.next().await.unwrap(), events.next().await.unwrap()]
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn messages_name_the_kinds_own_group() {
    let (app, _) = test_app();
    call(&app, Method::POST, &king_url(""), Some(&ingress("hello"))).await;
    let (code, body) = call(&app, Method::POST, &king_url(""), Some(&ingress("hello"))).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(
        assert_status(&body, 409, "AlreadyExists"),
        "ingresses.networking.internal.knative.dev \"hello\" already exists"
    );
    assert_eq!(body["details"]["group"], "networking.internal.knative.dev");

    let (_, got) = call(&app, Method::GET, &king_url("/hello"), None).await;
    let mut touched = got.clone();
    touched["metadata"]["labels"] = json!({ "touched": "yes" });
    let (code, body) = call(&app, Method::PUT, &king_url("/hello"), Some(&touched)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, body) = call(&app, Method::PUT, &king_url("/hello"), Some(&got)).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let message = assert_status(&body, 409, "Conflict");
    assert!(
        message.starts_with(
            "Operation cannot be fulfilled on ingresses.networking.internal.knative.dev \"hello\": the object has been modified"
        ),
        "{message}"
    );

    let mut invalid = ingress("bad");
    invalid["spec"]["rules"][0]["http"]["paths"][0]["splits"][0]["percent"] = json!("all");
    let (code, body) = call(&app, Method::POST, &king_url(""), Some(&invalid)).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = assert_status(&body, 422, "Invalid");
    assert!(
        message.starts_with("Ingress.networking.internal.knative.dev \"bad\" is invalid"),
        "{message}"
    );
    assert_eq!(body["details"]["group"], "networking.internal.knative.dev");

    let apply = |manager: &str, reachability: &str| {
        let mut pa = pod_autoscaler("hello");
        pa["spec"]["reachability"] = json!(reachability);
        with_body(
            Method::PATCH,
            &pa_url(&format!("/hello?fieldManager={manager}")),
            "application/apply-patch+yaml",
            &pa.to_string(),
        )
    };
    assert_eq!(
        send(&app, apply("revisions", "Reachable")).await.0,
        StatusCode::CREATED
    );
    let (code, body) = send(&app, apply("admin", "Unreachable")).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        assert_status(&body, 409, "Conflict"),
        "Apply failed with 1 conflict: conflict with \"revisions\" using autoscaling.internal.knative.dev/v1alpha1: .spec.reachability"
    );
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "conflict with \"revisions\" using autoscaling.internal.knative.dev/v1alpha1"
    );
    assert_eq!(body["details"]["group"], "autoscaling.internal.knative.dev");
}
