//! The install manifests: what they contain and how their parts refer to each other.

use super::*;
use serde_json::json;

fn installed() -> Vec<Manifest> {
    manifests(&InstallOptions::default()).expect("the manifests")
}

fn find<'a>(all: &'a [Manifest], kind: &str, name: &str) -> &'a Value {
    &all.iter()
        .find(|m| m.resource.kind == kind && m.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .object
}

#[test]
fn every_object_is_labelled_and_namespaced_in_nimbus_system() {
    let all = installed();
    assert_eq!(all[0].display_name(), "namespace/nimbus-system");
    for m in &all {
        let labels = &m.object["metadata"]["labels"];
        assert_eq!(labels[LABEL_MANAGED_BY], "nimbus", "{}", m.display_name());
        assert_eq!(labels[LABEL_PART_OF], "nimbus", "{}", m.display_name());
        assert_eq!(m.object["kind"], m.resource.kind.as_str());
        assert_eq!(m.object["apiVersion"], m.resource.api_version.as_str());
        let cluster_scoped = [
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        ];
        match cluster_scoped.contains(&m.resource.kind.as_str()) {
            true => assert_eq!(m.namespace(), None, "{}", m.display_name()),
            false => assert_eq!(m.namespace(), Some(NAMESPACE), "{}", m.display_name()),
        }
    }
    let crds = all.iter().filter(|m| m.is_crd()).count();
    assert_eq!(crds, nimbus_api::Kind::on_cluster().count());
    assert_eq!(
        crds, 15,
        "Knative's six kinds, Nimbus's Job, Execution and Schedule, four event sources and \
         KEDA's two kinds"
    );
    let first_workload = all
        .iter()
        .position(|m| m.resource.kind == "Deployment")
        .unwrap();
    let last_rbac = all
        .iter()
        .rposition(|m| m.resource.group == "rbac.authorization.k8s.io")
        .unwrap();
    assert!(
        last_rbac < first_workload,
        "permissions before the pods that need them"
    );
}

#[test]
fn display_names_are_kubectls() {
    let all = installed();
    let names: Vec<String> = all.iter().map(Manifest::display_name).collect();
    for expected in [
        "customresourcedefinition.apiextensions.k8s.io/services.serving.knative.dev",
        "customresourcedefinition.apiextensions.k8s.io/podautoscalers.autoscaling.internal.knative.dev",
        "serviceaccount/nimbus-operator",
        "clusterrole.rbac.authorization.k8s.io/nimbus-router",
        "deployment.apps/nimbus-operator",
        "service/nimbus-router",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:#?}"
        );
    }
}

#[test]
fn the_operator_and_the_router_run_the_image_with_their_flags() {
    let options = InstallOptions {
        image: "registry.example/nimbus:test".into(),
        ..InstallOptions::default()
    };
    let all = manifests(&options).unwrap();
    for (name, args, replicas) in [
        (
            OPERATOR,
            json!(["operator", "--metrics-addr", "0.0.0.0:9090"]),
            1,
        ),
        (
            ROUTER,
            json!([
                "router",
                "--http-addr",
                "0.0.0.0:8080",
                "--admin-addr",
                "0.0.0.0:9091"
            ]),
            2,
        ),
    ] {
        let deployment = find(&all, "Deployment", name);
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], replicas);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], name);
        let container = &pod["containers"][0];
        assert_eq!(container["image"], "registry.example/nimbus:test");
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(container["args"], args);
        assert!(
            container.get("command").is_none(),
            "the image's entrypoint runs"
        );
        // The probe names a port the container declares.
        let probe = &container["readinessProbe"]["httpGet"];
        assert_eq!(probe["path"], "/healthz");
        let ports = container["ports"].as_array().unwrap();
        assert!(ports.iter().any(|p| p["name"] == probe["port"]), "{probe}");
        for (env, field) in [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
        ] {
            let var = container["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == env);
            assert_eq!(var.unwrap()["valueFrom"]["fieldRef"]["fieldPath"], field);
        }
        assert!(container["resources"]["requests"]["cpu"].is_string());
        assert!(container["resources"]["requests"]["memory"].is_string());
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        // The selector picks the template's pods.
        let selector = spec["selector"]["matchLabels"].as_object().unwrap();
        for (k, v) in selector {
            assert_eq!(&spec["template"]["metadata"]["labels"][k], v);
        }
        assert!(find(&all, "ServiceAccount", name).is_object());
    }
}

#[test]
fn the_router_service_sends_port_80_to_the_routers_http_port() {
    let all = installed();
    let service = find(&all, "Service", ROUTER);
    assert_eq!(service["spec"]["type"], "NodePort");
    let port = &service["spec"]["ports"][0];
    assert_eq!(port["port"], 80);
    assert_eq!(port["targetPort"], "http");
    let router = &find(&all, "Deployment", ROUTER)["spec"]["template"];
    let http = router["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .unwrap();
    assert_eq!(http["containerPort"], ROUTER_HTTP_PORT);
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&router["metadata"]["labels"][k], v);
    }
}

#[test]
fn the_default_image_is_the_versioned_local_tag() {
    assert_eq!(
        InstallOptions::default().image,
        format!("localhost/nimbus/nimbus:{}", env!("CARGO_PKG_VERSION"))
    );
}

/// The named port `name` of `component`'s pods.
fn container_port(all: &[Manifest], deployment: &str, name: &str) -> Value {
    let pod = &find(all, "Deployment", deployment)["spec"]["template"]["spec"];
    pod["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{deployment} has no port {name}"))["containerPort"]
        .clone()
}

#[test]
fn each_side_finds_the_other_by_the_port_names_the_commands_default_to() {
    for options in [
        InstallOptions::default(),
        InstallOptions {
            host_network: Some(HostNetwork {
                api_host: "127.0.0.1".into(),
                api_port: 6443,
            }),
            ..InstallOptions::default()
        },
    ] {
        let all = manifests(&options).unwrap();
        // `nimbus operator` reads load from Service nimbus-router, port `admin`; `nimbus
        // router` sends activations to Service nimbus-operator, port `metrics`.
        for (service, port, deployment, flag) in [
            (ROUTER, "admin", ROUTER, "--admin-addr"),
            (OPERATOR, "metrics", OPERATOR, "--metrics-addr"),
        ] {
            let svc = find(&all, "Service", service);
            let ports = svc["spec"]["ports"].as_array().unwrap();
            let named = ports.iter().find(|p| p["name"] == port).unwrap();
            assert_eq!(named["targetPort"], port);
            let listening = container_port(&all, deployment, port);
            let args = &find(&all, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
                [0]["args"];
            let args: Vec<&str> = args
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let at = args.iter().position(|a| *a == flag).unwrap();
            assert_eq!(args[at + 1], format!("0.0.0.0:{listening}"));
        }
    }
}

#[test]
fn with_host_network_the_pods_use_the_nodes_network_and_reach_the_api_as_it_does() {
    let options = InstallOptions {
        host_network: Some(HostNetwork {
            api_host: "127.0.0.1".into(),
            api_port: 6443,
        }),
        ..InstallOptions::default()
    };
    let all = manifests(&options).unwrap();
    for name in [OPERATOR, ROUTER] {
        let pod = &find(&all, "Deployment", name)["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true);
        assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
        let env = pod["containers"][0]["env"].as_array().unwrap();
        let var = |n: &str| env.iter().find(|e| e["name"] == n).unwrap()["value"].clone();
        assert_eq!(var("KUBERNETES_SERVICE_HOST"), "127.0.0.1");
        assert_eq!(var("KUBERNETES_SERVICE_PORT"), "6443");
    }
    assert_eq!(container_port(&all, ROUTER, "http"), HOST_PORTS.router_http);
    assert_eq!(
        container_port(&all, ROUTER, "admin"),
        HOST_PORTS.router_admin
    );
    assert_eq!(
        container_port(&all, OPERATOR, "metrics"),
        HOST_PORTS.operator_metrics
    );
    // Two pods cannot bind one node's port: one router, and each pod replaced by stopping
    // it first.
    assert_eq!(find(&all, "Deployment", ROUTER)["spec"]["replicas"], 1);
    for name in [OPERATOR, ROUTER] {
        assert_eq!(
            find(&all, "Deployment", name)["spec"]["strategy"]["type"],
            "Recreate",
            "{name}"
        );
    }
    // Without the option, none of it.
    let plain = installed();
    let pod = &find(&plain, "Deployment", ROUTER)["spec"]["template"]["spec"];
    assert!(pod.get("hostNetwork").is_none());
    assert_eq!(find(&plain, "Deployment", ROUTER)["spec"]["replicas"], 2);
    // Both strategies are written out, so that switching leaves nothing of the other behind.
    for name in [OPERATOR, ROUTER] {
        let strategy = &find(&plain, "Deployment", name)["spec"]["strategy"];
        assert_eq!(strategy["type"], "RollingUpdate", "{name}");
        assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 0, "{name}");
    }
}
