//! `nimbus export`: a Knative Service as plain Kubernetes manifests, for users who leave Nimbus
//! (or Knative) — the lock-in exit serverless platforms lack.
//!
//! For each revision the Service's traffic reaches: a Deployment (the same pod spec and runtime
//! contract Nimbus runs it with) and a Service; for the Service's own host, a Service selecting
//! the pods of every routed revision and a `networking.k8s.io/v1` Ingress (one rule per tag,
//! too). Scaling becomes an `autoscaling/v2` HorizontalPodAutoscaler on CPU, or fixed replicas
//! when `min-scale` equals `max-scale`. What plain Kubernetes cannot express is said in
//! annotations on the objects concerned: scale to zero (an HPA keeps at least one replica), the
//! concurrency target, and percentage splits (plain Services split by pod count, so replicas
//! are made proportional to the percents).
//!
//! Pure: a function of the Service and its Revisions.

use std::collections::BTreeMap;

use nimbus_api::autoscaling::ScalingSpec;
use nimbus_api::names::tag_host;
use nimbus_api::{Revision, Service};
use serde_json::{Value, json};

use crate::workload;

/// Label every exported object carries, naming the Knative Service it came from.
pub const LABEL_APP: &str = "app.kubernetes.io/name";
/// Annotation on exported objects explaining what did not translate.
pub const ANNOTATION_NOTE: &str = "nimbus.dev/export-note";
/// `maxReplicas` of an exported HPA when the Service set no `max-scale`.
pub const DEFAULT_MAX_REPLICAS: u32 = 10;

/// The manifests for `svc` (its status names the routed revisions) given its `revisions`, with
/// route hosts under `domain`.
pub fn export(svc: &Service, revisions: &[Revision], domain: &str) -> Result<Vec<Value>, String> {
    let status = svc.status.clone().unwrap_or_default();
    if status.traffic.is_empty() {
        return Err(format!(
            "service {:?} has no resolved traffic yet (is it Ready?); nothing to export",
            svc.name()
        ));
    }
    let mut out = Vec::new();
    let mut main_backends: BTreeMap<String, i64> = BTreeMap::new();
    for t in &status.traffic {
        let Some(name) = &t.revision_name else {
            continue;
        };
        let rev = revisions
            .iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| format!("revision {name:?} named in traffic is not there"))?;
        let backend =
            nimbus_api::runtime::runtime_choice(rev.metadata.annotations.as_ref(), &rev.spec)
                .backend;
        if backend != nimbus_api::runtime::Backend::Oci {
            return Err(format!(
                "revision {name:?} runs on Nimbus's {backend} backend, which plain Kubernetes \
                 cannot run (a Deployment needs a container image); only image-based services \
                 can be exported"
            ));
        }
        if t.percent.unwrap_or(0) > 0 {
            *main_backends.entry(name.clone()).or_default() += t.percent.unwrap_or(0);
        }
        if !out
            .iter()
            .any(|o: &Value| o["metadata"]["name"] == json!(name))
        {
            out.extend(revision_objects(svc, rev));
        }
    }
    split_replicas(&mut out, &main_backends);
    let port = revisions
        .iter()
        .find(|r| main_backends.contains_key(r.name()))
        .map_or(workload::DEFAULT_PORT, workload::serving_port);
    out.push(main_service(svc, &main_backends, port));
    out.push(ingress(svc, &status.traffic, domain));
    Ok(out)
}

/// Deployment, Service and scaling of one revision, detached from Nimbus.
fn revision_objects(svc: &Service, rev: &Revision) -> Vec<Value> {
    let scaling = ScalingSpec::from_annotations(
        rev.metadata.annotations.as_ref(),
        rev.spec.container_concurrency.unwrap_or(0),
        "metadata.annotations",
    )
    .unwrap_or_default();
    let fixed = scaling.min_scale > 0 && scaling.min_scale == scaling.max_scale;
    let replicas = scaling.min_scale.max(1);
    let mut deployment = detach(
        svc,
        serde_json::to_value(workload::deployment(rev, replicas)),
    );
    let mut service = detach(svc, serde_json::to_value(workload::service(rev)));
    deployment["metadata"]["name"] = json!(rev.name());
    service["metadata"]["name"] = json!(rev.name());
    let mut objects = vec![deployment, service];
    if !fixed {
        objects.push(hpa(svc, rev, &scaling));
    }
    objects
}

/// Without Nimbus's owner references and management label, with the app label.
fn detach(svc: &Service, value: Result<Value, serde_json::Error>) -> Value {
    let mut v = value.unwrap_or_default();
    if let Some(meta) = v["metadata"].as_object_mut() {
        meta.remove("ownerReferences");
    }
    for labels in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(Value::Object(l)) = v.pointer_mut(labels) {
            l.remove(crate::install::LABEL_MANAGED_BY);
            l.insert(LABEL_APP.into(), json!(svc.name()));
        }
    }
    v
}

fn hpa(svc: &Service, rev: &Revision, scaling: &ScalingSpec) -> Value {
    let max = match scaling.max_scale {
        0 => DEFAULT_MAX_REPLICAS.max(scaling.min_scale.max(1)),
        m => m,
    };
    let mut notes = vec![format!(
        "Knative scaled on {:?} with target {} per instance; plain Kubernetes scales on CPU here",
        scaling.metric, scaling.target
    )];
    if scaling.min_scale == 0 {
        notes.push("an HPA keeps at least one replica: no scale to zero".into());
    }
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": rev.name(),
            "namespace": rev.namespace(),
            "labels": {LABEL_APP: svc.name()},
            "annotations": {ANNOTATION_NOTE: notes.join("; ")},
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": rev.name()},
            "minReplicas": scaling.min_scale.max(1),
            "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}],
        },
    })
}

/// A split's Deployments get replicas in proportion to their percents (a plain Service
/// balances over pods), and say so.
fn split_replicas(objects: &mut [Value], backends: &BTreeMap<String, i64>) {
    if backends.len() < 2 {
        return;
    }
    let smallest = backends
        .values()
        .copied()
        .filter(|p| *p > 0)
        .min()
        .unwrap_or(1);
    for o in objects.iter_mut().filter(|o| o["kind"] == "Deployment") {
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let Some(percent) = backends.get(&name) else {
            continue;
        };
        let replicas = ((*percent as f64) / (smallest as f64)).round().max(1.0);
        o["spec"]["replicas"] = json!(replicas as i64);
        o["metadata"]["annotations"] = json!({ANNOTATION_NOTE: format!(
            "{percent}% of the traffic in Knative; a plain Service splits by pod count, so the replicas are proportional to the percents"
        )});
    }
}

/// The Service for the Knative Service's own host: the pods of every revision with traffic.
fn main_service(svc: &Service, backends: &BTreeMap<String, i64>, port: i32) -> Value {
    let revisions: Vec<&String> = backends.keys().collect();
    let selector = match revisions.as_slice() {
        [one] => json!({nimbus_api::constants::LABEL_REVISION: one}),
        _ => json!({nimbus_api::constants::LABEL_SERVICE: svc.name()}),
    };
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name(), "namespace": svc.namespace(), "labels": {LABEL_APP: svc.name()}},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": port}]},
    })
}

/// An Ingress: the Service's host to the main Service, each tag's host to its revision.
fn ingress(svc: &Service, traffic: &[nimbus_api::TrafficTarget], domain: &str) -> Value {
    let rule = |host: String, service: &str| {
        json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": {"number": 80}}}}]}})
    };
    let mut rules = vec![rule(
        nimbus_api::names::route_host(svc.name(), svc.namespace(), domain),
        svc.name(),
    )];
    for t in traffic {
        if let (Some(tag), Some(rev)) = (&t.tag, &t.revision_name) {
            rules.push(rule(
                tag_host(tag, svc.name(), svc.namespace(), domain),
                rev,
            ));
        }
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": svc.name(), "namespace": svc.namespace(), "labels": {LABEL_APP: svc.name()}},
        "spec": {"rules": rules},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_api::Object;
    use nimbus_api::parse::parse_manifests;

    fn objects() -> (Service, Vec<Revision>) {
        let svc = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: hello, namespace: apps}\nspec:\n  template:\n    spec:\n      containers: [{image: example.com/hello}]\nstatus:\n  traffic:\n    - {revisionName: hello-00001, percent: 20, tag: old}\n    - {revisionName: hello-00002, percent: 80}\n";
        let rev = |n: &str, ann: &str| {
            format!(
                "apiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata:\n  name: {n}\n  namespace: apps\n  labels: {{serving.knative.dev/service: hello, serving.knative.dev/configuration: hello}}\n  annotations: {{{ann}}}\nspec:\n  containers: [{{image: example.com/hello}}]\n"
            )
        };
        let Object::Service(s) = parse_manifests("t", svc).unwrap().remove(0) else {
            unreachable!()
        };
        let revs = [
            rev(
                "hello-00001",
                "autoscaling.knative.dev/min-scale: '2', autoscaling.knative.dev/max-scale: '2'",
            ),
            rev("hello-00002", ""),
        ]
        .iter()
        .map(|y| match parse_manifests("t", y).unwrap().remove(0) {
            Object::Revision(r) => r,
            _ => unreachable!(),
        })
        .collect();
        (s, revs)
    }

    #[test]
    fn a_split_service_becomes_deployments_services_an_hpa_and_an_ingress() {
        let (svc, revs) = objects();
        let out = export(&svc, &revs, "example.com").unwrap();
        let kinds: Vec<(String, String)> = out
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap().into(),
                    o["metadata"]["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("Deployment".into(), "hello-00001".into()),
                ("Service".into(), "hello-00001".into()),
                ("Deployment".into(), "hello-00002".into()),
                ("Service".into(), "hello-00002".into()),
                ("HorizontalPodAutoscaler".into(), "hello-00002".into()),
                ("Service".into(), "hello".into()),
                ("Ingress".into(), "hello".into()),
            ],
            "fixed scale (min = max) has no HPA"
        );
        let d1 = &out[0];
        assert!(
            d1["metadata"].get("ownerReferences").is_none(),
            "detached from Nimbus"
        );
        assert_eq!(d1["metadata"]["labels"][LABEL_APP], "hello");
        assert_eq!(d1["spec"]["replicas"], 1, "20% of 80/20 → 1 : 4");
        assert_eq!(out[2]["spec"]["replicas"], 4);
        let ingress = &out[6];
        assert_eq!(
            ingress["spec"]["rules"][0]["host"],
            "hello.apps.example.com"
        );
        assert_eq!(
            ingress["spec"]["rules"][1]["host"],
            "old-hello.apps.example.com"
        );
        assert_eq!(
            ingress["spec"]["rules"][1]["http"]["paths"][0]["backend"]["service"]["name"],
            "hello-00001"
        );
        assert!(
            out[4]["metadata"]["annotations"][ANNOTATION_NOTE]
                .as_str()
                .unwrap()
                .contains("no scale to zero")
        );
    }

    #[test]
    fn host_process_revisions_cannot_be_exported() {
        let (svc, mut revs) = objects();
        revs[1]
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("nimbus.dev/runtime".into(), "process".into());
        assert!(
            export(&svc, &revs, "example.com")
                .unwrap_err()
                .contains("process backend")
        );
    }

    #[test]
    fn a_service_without_resolved_traffic_is_refused() {
        let (mut svc, revs) = objects();
        svc.status = None;
        assert!(
            export(&svc, &revs, "example.com")
                .unwrap_err()
                .contains("Ready")
        );
    }
}
