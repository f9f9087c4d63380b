use super::*;

fn doc(api_version: &str) -> &'static Value {
    let found = documents().v3.iter().find(|d| d.api_version == api_version);
    &found.expect("a document").document
}

#[test]
fn kinds_carry_their_gvk_and_traffic_is_documented() {
    let schemas = &doc(nimbus_api::API_VERSION)["components"]["schemas"];
    let svc = &schemas["dev.knative.serving.v1.Service"];
    assert_eq!(svc["x-kubernetes-group-version-kind"][0]["kind"], "Service");
    let spec = &schemas["dev.knative.serving.v1.ServiceSpec"];
    assert_eq!(spec["properties"]["traffic"]["type"], "array");
    let target = &schemas["dev.knative.serving.v1.TrafficTarget"];
    assert_eq!(target["properties"]["percent"]["type"], "integer");
    assert!(target["properties"]["percent"].get("nullable").is_none());
    assert!(schemas["io.k8s.api.core.v1.Container"]["properties"]["image"].is_object());
    assert_eq!(
        schemas["dev.knative.serving.v1.RevisionList"]["x-kubernetes-group-version-kind"][0]["kind"],
        "RevisionList"
    );
}

#[test]
fn one_document_per_group_version_with_only_its_kinds() {
    let versions: Vec<&str> = documents().v3.iter().map(|d| d.api_version).collect();
    assert_eq!(
        versions,
        [
            "serving.knative.dev/v1",
            "autoscaling.internal.knative.dev/v1alpha1",
            "networking.internal.knative.dev/v1alpha1",
            "v1",
            "run.nimbus.dev/v1",
            "keda.sh/v1alpha1",
            "sources.knative.dev/v1alpha1",
            "sources.nimbus.dev/v1alpha1"
        ]
    );
    for kind in Kind::ALL {
        let schemas = &doc(kind.api_version())["components"]["schemas"];
        let gvks = |name: &str| {
            schemas[definition_name(kind, name)]["x-kubernetes-group-version-kind"].clone()
        };
        let want = |name: &str| json!([{ "group": kind.group(), "version": kind.version(), "kind": name }]);
        assert_eq!(gvks(kind.as_str()), want(kind.as_str()), "{kind}");
        assert_eq!(gvks(&list_kind(kind)), want(&list_kind(kind)), "{kind}");
        for other in Kind::ALL
            .into_iter()
            .filter(|o| o.api_version() != kind.api_version())
        {
            assert!(
                schemas
                    .get(definition_name(other, other.as_str()))
                    .is_none(),
                "{other} in {kind}'s document"
            );
        }
    }
    let pa = &doc("autoscaling.internal.knative.dev/v1alpha1");
    assert!(pa["paths"]["/apis/autoscaling.internal.knative.dev/v1alpha1/namespaces/{namespace}/podautoscalers/{name}/status"].is_object());
    assert_eq!(
        definition_name(Kind::Ingress, "Ingress"),
        "dev.knative.internal.networking.v1alpha1.Ingress"
    );
    assert_eq!(
        tag(Kind::PodAutoscaler),
        "autoscalingInternalKnativeDev_v1alpha1"
    );
}

#[test]
fn the_core_document_has_secrets_and_config_maps_without_status() {
    let core = doc("v1");
    let paths = core["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/v1/namespaces/{namespace}/secrets/{name}"));
    assert!(paths.contains_key("/api/v1/configmaps"));
    assert!(
        paths.keys().all(|p| !p.ends_with("/status")),
        "{:?}",
        paths.keys()
    );
    let secret = &core["components"]["schemas"]["io.k8s.api.core.v1.Secret"];
    assert_eq!(
        secret["x-kubernetes-group-version-kind"][0],
        json!({"group": "", "version": "v1", "kind": "Secret"})
    );
    assert_eq!(
        secret["properties"]["data"]["additionalProperties"]["format"],
        "byte"
    );
    assert_eq!(tag(Kind::ConfigMap), "core_v1");
}

#[test]
fn every_reference_resolves() {
    for d in &documents().v3 {
        let text = d.document.to_string();
        for piece in text.split(REF_V3).skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(
                d.document["components"]["schemas"].get(name).is_some(),
                "{name} in {}",
                d.api_version
            );
        }
    }
}

#[test]
fn patch_advertises_field_validation_for_kubectl() {
    let doc = doc(nimbus_api::API_VERSION);
    let patch = &doc["paths"]["/apis/serving.knative.dev/v1/namespaces/{namespace}/services/{name}"]
        ["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Service");
    let names: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"fieldValidation"), "{names:?}");
}

#[test]
fn v2_has_every_kind_with_v2_references() {
    let v2 = &documents().v2;
    assert!(!v2.to_string().contains(REF_V3));
    for kind in Kind::ALL {
        assert!(
            v2["definitions"][definition_name(kind, kind.as_str())].is_object(),
            "{kind}"
        );
    }
}
