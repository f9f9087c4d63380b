//! The operator's ClusterRole allows every request `KubeResources` sends, found by running
//! each of its methods on every kind against a mock API server and judging each request as
//! Kubernetes' RBAC authorizer would (verb, API group, resource and subresource).

use super::*;
use crate::resources::KubeResources;
use futures::StreamExt;
use http::{Method, Request, Response};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::client::Body;
use nimbus_api::Object;
use nimbus_controller::Resources;
use serde_json::{Value, json};

/// What RBAC sees of a request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Attributes {
    verb: String,
    group: String,
    /// `revisions` or `revisions/status`.
    resource: String,
}

/// The RBAC attributes of a request path such as
/// `/apis/serving.knative.dev/v1/namespaces/default/revisions/r/status?...`.
fn attributes(method: &Method, uri: &http::Uri) -> Attributes {
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a resource path: {uri}"),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => panic!("not a resource path: {uri}"),
    };
    let watch = uri.query().unwrap_or("").contains("watch=true");
    let verb = match (method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (m, _) => panic!("unexpected method {m}"),
    };
    Attributes {
        verb: verb.into(),
        group: group.into(),
        resource,
    }
}

fn allows(rules: &[PolicyRule], a: &Attributes) -> bool {
    let has = |list: &Option<Vec<String>>, want: &str| {
        list.iter().flatten().any(|x| x == want || x == "*")
    };
    rules.iter().any(|r| {
        has(&r.api_groups, &a.group)
            && has(&r.resources, &a.resource)
            && r.verbs.iter().any(|v| v == &a.verb || v == "*")
    })
}

fn object(kind: Kind) -> Object {
    let mut obj = Object::from_json(
        kind,
        json!({"metadata": {"name": "x", "namespace": "default", "uid": "u", "resourceVersion": "1"}}),
    )
    .unwrap();
    obj.set_type_meta();
    obj
}

/// Answer like an API server would, enough for each call to succeed; watches never answer
/// (held open).
async fn answer(req: Request<Body>, kind: Kind) -> Option<Response<Body>> {
    let list = req.method() == Method::GET && !req.uri().path().ends_with("/x");
    if req.uri().query().unwrap_or("").contains("watch=true") {
        return None;
    }
    let body = match (req.method().as_str(), list) {
        ("GET", true) => json!({"apiVersion": kind.api_version(), "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": "1"}, "items": []}),
        ("GET", false) | ("DELETE", _) => object(kind).to_json(),
        _ => {
            let bytes = http_body_util::BodyExt::collect(req.into_body())
                .await
                .unwrap()
                .to_bytes();
            match serde_json::from_slice::<Value>(&bytes).unwrap() {
                // A JSON patch (a list of operations): the patched object.
                Value::Array(_) => object(kind).to_json(),
                sent => sent,
            }
        }
    };
    let bytes = serde_json::to_vec(&body).unwrap();
    Some(Response::new(Body::from(bytes)))
}

/// Every request one call of each `Resources` method on `kind` sends, except the watch.
async fn requests_of(kind: Kind) -> Vec<Attributes> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let resources = KubeResources::new(kube::Client::new(service, "default"));
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            seen.push(attributes(req.method(), req.uri()));
            if let Some(resp) = answer(req, kind).await {
                send.send_response(resp);
            }
        }
        seen
    });
    resources.get(kind, "default", "x").await.unwrap();
    resources
        .list(kind, Some("default"), &[("a", "b")])
        .await
        .unwrap();
    resources.list(kind, None, &[]).await.unwrap();
    resources.create(object(kind)).await.unwrap();
    resources.apply(object(kind), "m").await.unwrap();
    resources.replace_meta(object(kind)).await.unwrap();
    resources.replace_status(object(kind)).await.unwrap();
    resources
        .delete(kind, "default", "x", Some("u"))
        .await
        .unwrap();
    drop(resources);
    server.await.unwrap()
}

/// The requests `watch` sends for all kinds: a list, then a watch, per kind.
async fn watch_requests() -> Vec<Attributes> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let resources = KubeResources::new(kube::Client::new(service, "default"));
    let kinds: Vec<Kind> = Kind::knative().collect();
    let mut stream = resources.watch(&kinds, 0);
    let mut held = Vec::new();
    let mut seen = Vec::new();
    let want = 2 * kinds.len();
    while seen.len() < want {
        tokio::select! {
            next = handle.next_request() => {
                let (req, send) = next.unwrap();
                seen.push(attributes(req.method(), req.uri()));
                let kind = Kind::ALL.into_iter().find(|k| req.uri().path().ends_with(k.plural())).unwrap();
                match answer(req, kind).await {
                    Some(resp) => send.send_response(resp),
                    None => held.push(send),
                }
            }
            _ = stream.next() => {}
        }
    }
    seen
}

#[tokio::test]
async fn the_operator_may_send_every_request_of_kube_resources() {
    let rules = operator_rules();
    let mut all = watch_requests().await;
    for kind in Kind::knative() {
        all.extend(requests_of(kind).await);
    }
    let verbs: std::collections::BTreeSet<&str> = all.iter().map(|a| a.verb.as_str()).collect();
    assert_eq!(
        verbs.into_iter().collect::<Vec<_>>(),
        [
            "create", "delete", "get", "list", "patch", "update", "watch"
        ],
        "the test saw every kind of request"
    );
    let denied: Vec<&Attributes> = all.iter().filter(|a| !allows(&rules, a)).collect();
    assert!(denied.is_empty(), "denied: {denied:#?}");
    assert!(all.iter().any(|a| a.resource == "revisions/status"));
}

#[test]
fn the_operator_runs_revisions_as_deployments_and_elects_a_leader() {
    let rules = operator_rules();
    let may = |verb: &str, group: &str, resource: &str| {
        let a = Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
        };
        allows(&rules, &a)
    };
    for verb in WRITE {
        assert!(may(verb, "apps", "deployments"), "{verb} deployments");
        assert!(may(verb, "", "services"), "{verb} services");
    }
    for verb in SUBRESOURCE {
        assert!(may(verb, "apps", "deployments/scale"), "{verb}");
    }
    for kind in Kind::knative() {
        assert!(may(
            "update",
            kind.group(),
            &format!("{}/finalizers", kind.plural())
        ));
    }
    for (group, resource) in [
        ("", "pods"),
        ("discovery.k8s.io", "endpointslices"),
        ("", "configmaps"),
        ("", "secrets"),
        ("", "events"),
    ] {
        for verb in READ {
            assert!(may(verb, group, resource), "{verb} {resource}");
        }
    }
    assert!(may("create", "events.k8s.io", "events"));
    assert!(
        !may("delete", "", "pods"),
        "the operator never deletes pods itself"
    );
    let leases = lease_rules();
    for verb in ["get", "create", "update"] {
        let a = Attributes {
            verb: verb.into(),
            group: "coordination.k8s.io".into(),
            resource: "leases".into(),
        };
        assert!(allows(&leases, &a), "{verb} leases");
    }
}

#[test]
fn the_router_reads_routing_state_and_writes_only_ingress_status() {
    let rules = router_rules();
    let may = |verb: &str, group: &str, resource: &str| {
        let a = Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
        };
        allows(&rules, &a)
    };
    let ingress_group = Kind::Ingress.group();
    for verb in READ {
        assert!(may(verb, ingress_group, "ingresses"));
        assert!(may(verb, "serving.knative.dev", "revisions"));
        assert!(may(verb, "discovery.k8s.io", "endpointslices"));
        assert!(may(verb, "", "services"));
        assert!(may(verb, "", "pods"));
    }
    for verb in SUBRESOURCE {
        assert!(may(verb, ingress_group, "ingresses/status"));
    }
    assert!(
        !may("update", ingress_group, "ingresses"),
        "the spec is the operator's"
    );
    assert!(!may("create", "apps", "deployments"));
}

#[test]
fn bindings_give_each_service_account_its_role() {
    let manifests = manifests();
    let find = |kind: &str, name: &str| {
        manifests
            .iter()
            .find(|m| m.resource.kind == kind && m.name() == name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
            .object
            .clone()
    };
    for name in [OPERATOR, ROUTER] {
        assert_eq!(
            find("ServiceAccount", name)["metadata"]["namespace"],
            NAMESPACE
        );
        let binding = find("ClusterRoleBinding", name);
        assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
        assert_eq!(binding["roleRef"]["name"], name);
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}])
        );
        assert!(find("ClusterRole", name)["rules"].is_array());
    }
    let binding = find("RoleBinding", OPERATOR);
    assert_eq!(binding["metadata"]["namespace"], NAMESPACE);
    assert_eq!(binding["roleRef"]["kind"], "Role");
}
